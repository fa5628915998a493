//! Settlement: what this provider was paid, per stage and audit, once it ended.
//!
//! ```text
//!  payments::follow ──BlockPayments──▶ take_payments ──▶ journal: received += …, events_height
//!                                                              │
//!  every tick:  unpaid records + their jobs (this tick's work, else GET /v1/jobs/{id},
//!               read by Daemon::observe) ─▶ plan_settlement (pure, called by plan::plan)
//!               ─▶ [Settle] ─▶ apply_settle ─▶ journal: committed/revealed, paid
//! ```
//!
//! The amounts come from the ledger's events only (`StagePaid`, `AuditAgreed`,
//! `AuditPaid`, `ProviderCompensated`), summed into [`StageRecord::received`] as they
//! are read; nothing is recomputed from prices here. A record is settled — `paid` set
//! to what it received — once its stage ended and the events are read up to the height
//! the jobs were read at (so the block that ended it has been applied):
//!
//! * a replica's stage ends when it is `Finalized`, or when its job failed or was
//!   cancelled (an unrevealed or losing result then received nothing);
//! * an audit ends when the stage no longer names this provider as its auditor (a
//!   cancelled stage always ends it) and, if it was reported, once the stage was
//!   verified (`Challengeable`, `Finalized`) or the job stopped: a reported audit under
//!   dispute waits for the dispute.
//!
//! On the way, a replica's record catches up with the chain: a commitment or reveal
//! that landed while the daemon died before noting it is noted.

use std::collections::BTreeMap;

use agentic_protocol::state::{Job, JobStatus, Stage, StagePhase};
use agentic_protocol::{Address, Amount, Height, JobId};

use super::{Daemon, ProviderError};
use crate::journal::{Role, StageRecord};

/// What settling one record takes, as [`plan_settlement`] decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settle {
    /// The record's job.
    pub(crate) job: JobId,
    /// The record's stage.
    pub(crate) stage: u32,
    /// The record's role (a replica's stage or an audit).
    pub(crate) role: Role,
    /// The chain holds this replica's commitment but the record does not say so: note it.
    pub(crate) chain_committed: bool,
    /// The chain holds this replica's revealed result but the record does not say so:
    /// note it.
    pub(crate) chain_revealed: bool,
    /// The stage (or audit) ended: record this as what it earned (`None`: not yet).
    pub(crate) paid: Option<Amount>,
}

/// Whether the ledger's events were read up to `height` (`events_height` is the last
/// block applied to the journal).
pub(crate) fn events_read(events_height: Option<Height>, height: u64) -> bool {
    events_height.is_some_and(|h| h.0 >= height)
}

/// Decides, for each unpaid record of `me`'s, what settling it takes against its job as
/// read at `height`. Nothing while the events are not read up to `height` (the events
/// of the blocks that ended these stages may not be in `received` yet); records whose
/// job is not in `jobs` (or has no such stage) are left for later.
pub(crate) fn plan_settlement(
    me: &Address,
    records: &[StageRecord],
    jobs: &BTreeMap<JobId, Job>,
    events_height: Option<Height>,
    height: u64,
) -> Vec<Settle> {
    if !events_read(events_height, height) {
        return Vec::new();
    }
    records
        .iter()
        .filter(|rec| rec.paid.is_none())
        .filter_map(|rec| {
            let job = jobs.get(&rec.job)?;
            let st = job.stages.get(rec.stage as usize)?;
            match rec.role {
                Role::Stage => settle_stage(me, rec, job, st),
                Role::Audit { .. } => settle_audit(me, rec, job, st),
            }
        })
        .collect()
}

/// A replica's record: catch up with the chain, and settle once the stage is final or
/// the job failed or was cancelled. What the ledger paid is `StagePaid` when our result
/// was the agreed one (capped by what was left in the escrow), nothing otherwise.
fn settle_stage(me: &Address, rec: &StageRecord, job: &Job, st: &Stage) -> Option<Settle> {
    // We may have died between a transaction landing and noting it.
    let mine = st
        .slots
        .iter()
        .filter_map(|x| x.assignment.as_ref())
        .find(|a| a.provider == *me);
    let chain_committed = !rec.committed && mine.is_some_and(|a| a.commitment.is_some());
    let chain_revealed = !rec.revealed && mine.is_some_and(|a| a.result.is_some());
    let finalized = st.phase == StagePhase::Finalized;
    // A failed job's stage that is still live (delivered and being verified, or
    // kept by a salvaged session and yet to reveal) goes on to its end.
    let failed = matches!(job.status, JobStatus::Failed | JobStatus::Cancelled)
        && st.phase == StagePhase::Cancelled;
    let paid = (finalized || failed).then_some(rec.received);
    (chain_committed || chain_revealed || paid.is_some()).then_some(Settle {
        job: rec.job,
        stage: rec.stage,
        role: rec.role,
        chain_committed,
        chain_revealed,
        paid,
    })
}

/// An audit's record, once the audit ended. While the stage's audit slot (or its
/// `Auditing` phase) still names this provider, nothing is settled; a reported audit
/// under dispute is settled when the dispute ends. The amount is what the ledger's
/// events paid (`AuditAgreed`, or `AuditPaid` when the auditor won its dispute or its
/// commitment stood while the replicas disagreed), zero if none did (missed, or the
/// stage went back to matching).
fn settle_audit(me: &Address, rec: &StageRecord, job: &Job, st: &Stage) -> Option<Settle> {
    let holding = st.audit.as_ref().is_some_and(|a| a.auditor == *me)
        || matches!(st.phase, StagePhase::Auditing { auditor, .. } if auditor == *me);
    if holding && st.phase != StagePhase::Cancelled {
        return None;
    }
    let verified = matches!(
        st.phase,
        StagePhase::Challengeable { .. } | StagePhase::Finalized
    );
    if rec.revealed
        && !verified
        && job.status == JobStatus::Active
        && st.phase != StagePhase::Cancelled
    {
        // A disputed report: settled when the dispute ends.
        return None;
    }
    Some(Settle {
        job: rec.job,
        stage: rec.stage,
        role: rec.role,
        chain_committed: false,
        chain_revealed: false,
        paid: Some(rec.received),
    })
}

impl Daemon {
    /// Applies the payments the event follower read so far ([`crate::payments`]) to
    /// the journal, block by block, without waiting: while it is behind the work's
    /// height, [`plan_settlement`] settles nothing and a later turn does.
    pub(super) fn take_payments(&mut self) -> Result<(), ProviderError> {
        while let Ok(block) = self.payments.try_recv() {
            let total = self.journal.apply_payments(&block.payments, block.height)?;
            if total.0 > 0 {
                let mut status = self.status();
                status.earned = status.earned.saturating_add(total);
            }
        }
        Ok(())
    }

    /// Applies one [`Settle`] to the journal and the status.
    pub(super) fn apply_settle(&mut self, s: Settle) -> Result<(), ProviderError> {
        if s.chain_committed || s.chain_revealed {
            self.journal.update(s.job, s.stage, |r| {
                r.committed |= s.chain_committed;
                r.revealed |= s.chain_revealed;
            })?;
        }
        let Some(paid) = s.paid else {
            return Ok(());
        };
        self.journal
            .update(s.job, s.stage, |r| r.paid = Some(paid))?;
        match s.role {
            Role::Stage => {
                if paid.0 > 0 {
                    self.status().stages_paid += 1;
                }
                tracing::info!(job = s.job.0, stage = s.stage, %paid, "stage settled");
            }
            Role::Audit { .. } => {
                let reported = self.journal.get(s.job, s.stage).is_some_and(|r| r.revealed);
                tracing::info!(job = s.job.0, stage = s.stage, %paid, reported, "audit settled");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use agentic_protocol::state::{Assignment, AuditSlot, Slot};
    use agentic_protocol::test_utils::{address_of, job_spec, key};
    use agentic_protocol::tx::StageResult;
    use agentic_protocol::types::VerificationLevel;
    use agentic_protocol::Hash;

    use super::*;

    const HEIGHT: u64 = 100;

    fn me() -> Address {
        address_of(&key(1))
    }

    fn other() -> Address {
        address_of(&key(2))
    }

    fn result(n: u8) -> StageResult {
        StageResult {
            input: Hash([n; 32]),
            output: Hash([n + 1; 32]),
            trace_root: Hash([n + 2; 32]),
            steps: 0,
        }
    }

    /// `provider`'s assignment at 10 per mega-op, committed and revealed as told.
    fn assignment(provider: Address, committed: bool, revealed: bool) -> Assignment {
        Assignment {
            provider,
            price: Amount(10),
            deadline: Height(50),
            commitment: committed.then_some(Hash([9; 32])),
            result: revealed.then_some(result(1)),
            input: None,
        }
    }

    /// A one-stage job of 1,000,000 ops (ops × price would be 10) whose stage is in
    /// `phase`, with `me` in its slot as `slot`.
    fn job(status: JobStatus, phase: StagePhase, slot: Assignment) -> Job {
        let spec = job_spec(
            Hash([1; 32]),
            Hash([2; 32]),
            &[(2, 1_000_000)],
            1_000,
            VerificationLevel::Optimistic,
        );
        Job {
            requester: other(),
            payer: other(),
            spec,
            submitted_at: Height(1),
            escrow: Amount(1_000),
            status,
            stages: vec![Stage {
                phase,
                slots: vec![Slot {
                    assignment: Some(slot),
                }],
                result: None,
                audit: None,
            }],
            excluded: Vec::new(),
            claim: None,
        }
    }

    /// A replica's record of stage 0 of job 7, committed and revealed, that received
    /// `received` so far.
    fn record(role: Role, received: u128) -> StageRecord {
        let mut rec = StageRecord::new(JobId(7), 0, role, result(1), Vec::new(), 1_000_000);
        rec.committed = true;
        rec.revealed = true;
        rec.received = Amount(received);
        rec
    }

    fn plan(rec: &StageRecord, job: Job, events_height: u64) -> Vec<Settle> {
        let jobs = BTreeMap::from([(JobId(7), job)]);
        plan_settlement(
            &me(),
            std::slice::from_ref(rec),
            &jobs,
            Some(Height(events_height)),
            HEIGHT,
        )
    }

    fn settled(rec: &StageRecord, paid: u128) -> Settle {
        Settle {
            job: rec.job,
            stage: rec.stage,
            role: rec.role,
            chain_committed: false,
            chain_revealed: false,
            paid: Some(Amount(paid)),
        }
    }

    #[test]
    fn a_finalized_stage_settles_at_what_was_received() {
        // The ledger paid 7 (say, the escrow ran short), not ops × price = 10.
        let rec = record(Role::Stage, 7);
        let job = job(
            JobStatus::Completed,
            StagePhase::Finalized,
            assignment(me(), true, true),
        );
        assert_eq!(plan(&rec, job, HEIGHT), vec![settled(&rec, 7)]);
    }

    #[test]
    fn an_unfinished_stage_is_not_settled() {
        let rec = record(Role::Stage, 0);
        for phase in [
            StagePhase::Running {
                reveal_deadline: Some(Height(120)),
            },
            StagePhase::Challengeable { until: Height(110) },
            StagePhase::Disputed {
                dispute: agentic_protocol::DisputeId(3),
            },
        ] {
            let job = job(JobStatus::Active, phase, assignment(me(), true, true));
            assert_eq!(plan(&rec, job, HEIGHT), vec![], "{phase:?}");
        }
    }

    #[test]
    fn nothing_settles_before_the_events_are_read_up_to_the_height() {
        let rec = record(Role::Stage, 10);
        let final_job = || {
            job(
                JobStatus::Completed,
                StagePhase::Finalized,
                assignment(me(), true, true),
            )
        };
        assert_eq!(plan(&rec, final_job(), HEIGHT - 1), vec![]);
        let jobs = BTreeMap::from([(JobId(7), final_job())]);
        assert_eq!(
            plan_settlement(&me(), std::slice::from_ref(&rec), &jobs, None, HEIGHT),
            vec![]
        );
        // Read further than the jobs: settled.
        assert_eq!(plan(&rec, final_job(), HEIGHT + 5), vec![settled(&rec, 10)]);
    }

    #[test]
    fn a_settled_record_or_an_unknown_job_is_left_alone() {
        let mut rec = record(Role::Stage, 10);
        let final_job = job(
            JobStatus::Completed,
            StagePhase::Finalized,
            assignment(me(), true, true),
        );
        rec.paid = Some(Amount(10));
        assert_eq!(plan(&rec, final_job, HEIGHT), vec![]);
        let rec = record(Role::Stage, 10);
        assert_eq!(
            plan_settlement(
                &me(),
                &[rec],
                &BTreeMap::new(),
                Some(Height(HEIGHT)),
                HEIGHT
            ),
            vec![]
        );
    }

    #[test]
    fn a_failed_jobs_unrevealed_stage_settles_at_zero() {
        // Committed, never revealed, the job failed (another stage lost a dispute):
        // the ledger paid nothing, and the journal notes the commitment it missed.
        let mut rec = record(Role::Stage, 0);
        rec.committed = false;
        rec.revealed = false;
        let job = job(
            JobStatus::Failed,
            StagePhase::Cancelled,
            assignment(me(), true, false),
        );
        assert_eq!(
            plan(&rec, job, HEIGHT),
            vec![Settle {
                chain_committed: true,
                ..settled(&rec, 0)
            }]
        );
    }

    #[test]
    fn a_failed_jobs_live_stage_is_not_settled_yet() {
        // A salvaged session: the job failed, but this committed stage was kept and
        // must still reveal (and be paid); so must a delivered stage under audit.
        let mut rec = record(Role::Stage, 0);
        rec.committed = true;
        rec.revealed = false;
        let open = StagePhase::Running {
            reveal_deadline: Some(Height(120)),
        };
        let kept = job(JobStatus::Failed, open, assignment(me(), true, false));
        assert_eq!(plan(&rec, kept, HEIGHT), vec![]);
        rec.revealed = true;
        let window = StagePhase::Challengeable { until: Height(130) };
        let delivered = job(JobStatus::Failed, window, assignment(me(), true, true));
        assert_eq!(plan(&rec, delivered, HEIGHT), vec![]);
    }

    #[test]
    fn the_journal_catches_up_with_the_chain_before_the_stage_ends() {
        let mut rec = record(Role::Stage, 0);
        rec.committed = false;
        rec.revealed = false;
        let running = StagePhase::Running {
            reveal_deadline: Some(Height(120)),
        };
        let job = job(JobStatus::Active, running, assignment(me(), true, true));
        assert_eq!(
            plan(&rec, job, HEIGHT),
            vec![Settle {
                chain_committed: true,
                chain_revealed: true,
                paid: None,
                ..settled(&rec, 0)
            }]
        );
    }

    #[test]
    fn an_audit_still_held_is_not_settled() {
        let rec = record(Role::Audit { price: Amount(5) }, 0);
        // Drawn, not yet reported: the stage's audit slot names us.
        let mut drawn = job(
            JobStatus::Active,
            StagePhase::Running {
                reveal_deadline: None,
            },
            assignment(other(), true, false),
        );
        drawn.stages[0].audit = Some(AuditSlot {
            auditor: me(),
            price: Amount(5),
            deadline: Height(110),
            commitment: Some(Hash([4; 32])),
        });
        assert_eq!(plan(&rec, drawn, HEIGHT), vec![]);
        // Reporting.
        let reporting = job(
            JobStatus::Active,
            StagePhase::Auditing {
                auditor: me(),
                price: Amount(5),
                deadline: Height(110),
            },
            assignment(other(), true, true),
        );
        assert_eq!(plan(&rec, reporting, HEIGHT), vec![]);
    }

    #[test]
    fn a_reported_audit_settles_once_verified_not_while_disputed() {
        let rec = record(Role::Audit { price: Amount(5) }, 5);
        let disputed = job(
            JobStatus::Active,
            StagePhase::Disputed {
                dispute: agentic_protocol::DisputeId(1),
            },
            assignment(other(), true, true),
        );
        assert_eq!(plan(&rec, disputed, HEIGHT), vec![]);
        let verified = job(
            JobStatus::Active,
            StagePhase::Challengeable { until: Height(110) },
            assignment(other(), true, true),
        );
        assert_eq!(plan(&rec, verified, HEIGHT), vec![settled(&rec, 5)]);
    }

    #[test]
    fn a_missed_audit_settles_at_zero() {
        // Never reported, the stage went back to matching without us.
        let mut rec = record(Role::Audit { price: Amount(5) }, 0);
        rec.revealed = false;
        let rematched = job(
            JobStatus::Active,
            StagePhase::Matching { since: Height(90) },
            assignment(other(), false, false),
        );
        assert_eq!(plan(&rec, rematched, HEIGHT), vec![settled(&rec, 0)]);
    }
}
