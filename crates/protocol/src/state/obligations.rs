//! Obligations: what keeps stake inside the ledger's reach.
//!
//! An account has an **open role** in a job while it holds a replica slot
//! or the audit of a stage that is not yet `Finalized` or `Cancelled`
//! (a failed job's delivered stages stay live until their verification
//! ends), and an **open dispute** while it is a party to one not yet
//! resolved. While either exists:
//!
//! ```text
//!   Retire    refused (OpenObligations)
//!   Withdraw  refused (OpenObligations)     slashable = bonded + unbonding + withdrawable
//!   Unbond    only down to max(min_provider_stake, every open job's min_stake)
//! ```
//!
//! and `Unbond` is refused outright while stake the account voted with is
//! locked (until the end of the longest vote it joined).
//!
//! The indexes here (`roles`, `role_holders`, `party_disputes`) are derived:
//! entries are added when a role or dispute starts, and every read re-checks
//! them against the job or dispute itself, so a stale entry can never grant
//! or deny anything. They are not part of the state root (a node rebuilds
//! them by replaying blocks). They hold open obligations only: a job's
//! entries are dropped when its escrow is settled with every stage final,
//! a dispute's when it is resolved, so they do not grow with history.

use super::{DisputePhase, Job, StagePhase, State};
use crate::error::TxError;
use crate::types::{Address, Amount, DisputeId, JobId};

impl State {
    /// Records that `who` took a role (slot or audit) in `job`.
    pub(crate) fn add_role(&mut self, who: Address, job: JobId) {
        self.roles.entry(who).or_default().insert(job);
        self.role_holders.entry(job).or_default().insert(who);
    }

    /// Drops `job` from the role index once every stage is final (finalized
    /// or cancelled): nobody can hold an open role in it any more.
    pub(crate) fn release_roles(&mut self, job: JobId) {
        let settled = self.jobs.get(&job).is_none_or(|j| {
            j.stages
                .iter()
                .all(|s| matches!(s.phase, StagePhase::Finalized | StagePhase::Cancelled))
        });
        if !settled {
            return;
        }
        for who in self.role_holders.remove(&job).unwrap_or_default() {
            if let Some(jobs) = self.roles.get_mut(&who) {
                jobs.remove(&job);
                if jobs.is_empty() {
                    self.roles.remove(&who);
                }
            }
        }
    }

    /// Records that `who` is a party to dispute `id`.
    pub(crate) fn add_party(&mut self, who: Address, id: DisputeId) {
        self.party_disputes.entry(who).or_default().insert(id);
    }

    /// Drops a resolved dispute from its parties' index entries.
    pub(crate) fn release_parties(&mut self, id: DisputeId, parties: [Address; 2]) {
        for who in parties {
            if let Some(ds) = self.party_disputes.get_mut(&who) {
                ds.remove(&id);
                if ds.is_empty() {
                    self.party_disputes.remove(&who);
                }
            }
        }
    }

    /// Sizes of the obligation indexes (addresses with a role, jobs with a
    /// holder, addresses with a dispute): bounded by open work, not history.
    pub fn obligation_index_sizes(&self) -> (usize, usize, usize) {
        (
            self.roles.len(),
            self.role_holders.len(),
            self.party_disputes.len(),
        )
    }

    /// Whether `who` holds an unsettled slot or audit in `job`.
    pub(crate) fn has_open_role(job: &Job, who: &Address) -> bool {
        job.stages.iter().any(|st| {
            if matches!(st.phase, StagePhase::Finalized | StagePhase::Cancelled) {
                return false;
            }
            let slot = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .any(|a| a.provider == *who);
            let audit = st.audit.as_ref().is_some_and(|a| a.auditor == *who)
                || matches!(st.phase, StagePhase::Auditing { auditor, .. } if auditor == *who);
            slot || audit
        })
    }

    /// Jobs in which `who` holds an unsettled slot or audit, in id order.
    pub fn open_roles(&self, who: &Address) -> Vec<JobId> {
        self.roles
            .get(who)
            .map(|jobs| {
                jobs.iter()
                    .copied()
                    .filter(|id| {
                        self.jobs
                            .get(id)
                            .is_some_and(|j| State::has_open_role(j, who))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Unresolved disputes `who` is a party to, in id order.
    pub fn open_disputes(&self, who: &Address) -> Vec<DisputeId> {
        self.party_disputes
            .get(who)
            .map(|ds| {
                ds.iter()
                    .copied()
                    .filter(|id| {
                        self.disputes
                            .get(id)
                            .is_some_and(|d| d.phase != DisputePhase::Resolved)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Refuses an exit while `who` has open roles or disputes.
    pub(crate) fn check_no_obligations(&self, who: &Address) -> Result<(), TxError> {
        let jobs = self.open_roles(who).len() as u32;
        let disputes = self.open_disputes(who).len() as u32;
        if jobs > 0 || disputes > 0 {
            return Err(TxError::OpenObligations { jobs, disputes });
        }
        Ok(())
    }

    /// The least `who` must keep bonded: `min_provider_stake` while it is a
    /// registered provider, and the `min_stake` of every job it holds a role in.
    pub(crate) fn required_bond(&self, who: &Address) -> Amount {
        let mut need = match self.providers.get(who) {
            Some(p) if !p.retired => self.params.min_provider_stake,
            _ => Amount::ZERO,
        };
        for id in self.open_roles(who) {
            if let Some(j) = self.jobs.get(&id) {
                if j.spec.requirements.min_stake > need {
                    need = j.spec.requirements.min_stake;
                }
            }
        }
        need
    }
}
