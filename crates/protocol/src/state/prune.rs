//! Pruning: finished work leaves the state after the governed `retention`.
//!
//! When a job settles (completed, cancelled, or failed with nothing left to
//! pay), a dispute resolves, a proposal closes (rejected, enacted or voided)
//! or a mandate is revoked, a timer is set `retention` blocks later; a
//! mandate's expiry sets one at `expiry + retention` when it is granted.
//! When the timer fires, the entity (a proposal with all its votes) is
//! removed from the state and its root, and handed to the caller in
//! [`crate::BlockOutcome::pruned`]: the node archives it and keeps serving
//! it. The timer re-checks that the entity is still final (a job with a
//! stage still being verified, an open availability claim or escrow left
//! is kept; its settlement sets a new timer).
//!
//! Nothing live refers to what is pruned: a final job has no open dispute
//! (a dispute keeps its stage `Disputed`), no queued match or claim, and
//! its roles were released at settlement; a resolved dispute released its
//! parties; a closed proposal's votes no longer lock stake (the lock is the
//! vote's end height, kept per address); a dead mandate can pay for nothing
//! (a job under it that refunds later simply gives no room back to a
//! mandate that no longer exists). A transaction naming a pruned entity is
//! refused as unknown, as it would be for an id never used.
//!
//! A change of `retention` applies to timers set after it.

use super::{Dispute, Job, Mandate, Proposal, State, StateKey, Timer, VoteRecord};
use super::{DisputePhase, JobStatus, ProposalStatus, StagePhase};
use crate::types::{Address, DisputeId, Height, JobId, MandateId, ProposalId};

/// An entity that left the state in a block, as it was when it left.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pruned {
    /// A finished job.
    Job {
        /// Its id.
        id: JobId,
        /// The job.
        job: Box<Job>,
    },
    /// A resolved dispute.
    Dispute {
        /// Its id.
        id: DisputeId,
        /// The dispute.
        dispute: Box<Dispute>,
    },
    /// A closed proposal and its votes.
    Proposal {
        /// Its id.
        id: ProposalId,
        /// The proposal.
        proposal: Box<Proposal>,
        /// Every vote cast on it, in voter order.
        votes: Vec<(Address, VoteRecord)>,
    },
    /// A revoked or expired mandate.
    Mandate {
        /// Its id.
        id: MandateId,
        /// The mandate.
        mandate: Box<Mandate>,
    },
}

impl State {
    /// Sets the prune timer of `key` `retention` blocks from now.
    pub(crate) fn schedule_prune(&mut self, key: StateKey) {
        let at = self.now().plus(self.params.retention);
        self.schedule(at, Timer::Prune(key));
    }

    /// The prune timer of `key` fired: removes it if it is still final.
    pub(crate) fn prune(&mut self, key: StateKey) {
        let pruned = match key {
            StateKey::Job(id) => self.prune_job(id),
            StateKey::Dispute(id) => self.prune_dispute(id),
            StateKey::Proposal(id) => self.prune_proposal(id),
            StateKey::Mandate(id) => self.prune_mandate(id),
            _ => None,
        };
        if let Some(p) = pruned {
            self.pruned.push(p);
        }
    }

    fn prune_job(&mut self, id: JobId) -> Option<Pruned> {
        let job = self.jobs.get(&id)?;
        let done = job.status != JobStatus::Active
            && job.escrow.0 == 0
            && job
                .stages
                .iter()
                .all(|s| matches!(s.phase, StagePhase::Finalized | StagePhase::Cancelled));
        if !done || self.claims.contains(&id) || self.matching.contains(&id) {
            return None;
        }
        self.commit.remove_job(id, job);
        let job = self.jobs.remove(&id)?;
        self.waiting.remove(&id);
        self.role_holders.remove(&id);
        Some(Pruned::Job {
            id,
            job: Box::new(job),
        })
    }

    fn prune_dispute(&mut self, id: DisputeId) -> Option<Pruned> {
        let d = self.disputes.get(&id)?;
        if d.phase != DisputePhase::Resolved || self.referee_queue.contains(&id) {
            return None;
        }
        self.commit.touch(StateKey::Dispute(id), Some(d));
        let dispute = self.disputes.remove(&id)?;
        Some(Pruned::Dispute {
            id,
            dispute: Box::new(dispute),
        })
    }

    fn prune_proposal(&mut self, id: ProposalId) -> Option<Pruned> {
        let p = self.proposals.get(&id)?;
        if !matches!(
            p.status,
            ProposalStatus::Rejected | ProposalStatus::Enacted | ProposalStatus::Voided
        ) {
            return None;
        }
        self.commit.touch(StateKey::Proposal(id), Some(p));
        let proposal = self.proposals.remove(&id)?;
        let lo = (id, Address([0; 32]));
        let hi = (id, Address([0xff; 32]));
        let keys: Vec<(ProposalId, Address)> = self.votes.range(lo..=hi).map(|(k, _)| *k).collect();
        let mut votes = Vec::with_capacity(keys.len());
        for k in keys {
            self.commit
                .touch(StateKey::Vote(k.0, k.1), self.votes.get(&k));
            if let Some(v) = self.votes.remove(&k) {
                votes.push((k.1, v));
            }
        }
        Some(Pruned::Proposal {
            id,
            proposal: Box::new(proposal),
            votes,
        })
    }

    fn prune_mandate(&mut self, id: MandateId) -> Option<Pruned> {
        let m = self.mandates.get(&id)?;
        let dead = m.revoked || self.now() >= m.terms.expiry;
        if !dead {
            return None;
        }
        self.commit.touch(StateKey::Mandate(id), Some(m));
        let mandate = self.mandates.remove(&id)?;
        Some(Pruned::Mandate {
            id,
            mandate: Box::new(mandate),
        })
    }

    /// The height a mandate expiring at `expiry` is pruned at.
    pub(crate) fn mandate_prune_height(&self, expiry: Height) -> Height {
        expiry.plus(self.params.retention)
    }
}
