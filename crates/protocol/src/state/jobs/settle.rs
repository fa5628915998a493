//! Challenge windows and payout.
//!
//! A verified stage is challengeable for `challenge_window` blocks. When the
//! window closes unchallenged, every replica whose result matches the
//! agreed one is paid `ops × its price` from the escrow and credited with a
//! success (a generation stage's ops over the steps it revealed,
//! `Job::billed_ops`); the stage is final. Once every stage is final (or cancelled) the
//! rest of the escrow goes back to the payer and the job completes (or, for
//! a failed job, settles).

use crate::event::Event;
use crate::state::{Assignment, BlockCtx, JobStatus, StagePhase, State, StateKey, Timer};
use crate::types::{Address, Amount, JobId};

impl State {
    /// Starts (or restarts) a stage's challenge window.
    pub(crate) fn open_window(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let until = self.now().plus(self.params.challenge_window);
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Challengeable { until };
        }
        self.schedule(until.plus(1), Timer::Window(job, stage));
        ctx.emit(Event::ChallengeWindowOpened { job, stage, until });
    }

    /// Pays `amount` (capped by what is left) from a job's escrow to `to`.
    pub(crate) fn pay_from_escrow(&mut self, job: JobId, to: Address, amount: Amount) -> Amount {
        let Some(j) = self.job_mut(job) else {
            return Amount::ZERO;
        };
        let paid = if amount < j.escrow { amount } else { j.escrow };
        j.escrow = j.escrow.saturating_sub(paid);
        self.credit(to, paid);
        paid
    }

    /// Per-block: a challenge window closed without a challenge; pay out.
    pub(crate) fn close_challenge_window(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let now = self.now();
        let Some(j) = self.jobs.get(&job) else { return };
        let Some(st) = j.stages.get(stage as usize) else {
            return;
        };
        let StagePhase::Challengeable { until } = st.phase else {
            return;
        };
        if until >= now {
            return;
        }
        let Some(agreed) = st.result else { return };
        let ops = j.billed_ops(stage as usize);
        let slots: Vec<Assignment> = st
            .slots
            .iter()
            .filter_map(|s| s.assignment.clone())
            .collect();
        let rp = self.reputation_params();
        for a in slots {
            if a.result.is_some_and(|r| r.output == agreed.output) {
                let bill = Amount::cost(ops, a.price).unwrap_or_default();
                let paid = self.pay_from_escrow(job, a.provider, bill);
                if let Some(p) = self.provider_mut(a.provider) {
                    p.reputation.record_success(paid.0, now.0, &rp);
                }
                ctx.emit(Event::StagePaid {
                    job,
                    stage,
                    provider: a.provider,
                    amount: paid,
                });
            }
            if let Some(p) = self.provider_mut(a.provider) {
                p.open = p.open.saturating_sub(1);
            }
        }
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Finalized;
        }
        ctx.emit(Event::StageFinalized { job, stage });
        self.settle_if_done(job, ctx);
    }

    /// Once every stage is final, refunds what is left of the escrow: an
    /// active job completes; a failed job whose delivered stages were still
    /// being verified is settled.
    pub(crate) fn settle_if_done(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let done = j
            .stages
            .iter()
            .all(|s| matches!(s.phase, StagePhase::Finalized | StagePhase::Cancelled));
        if !done {
            return;
        }
        match j.status {
            JobStatus::Active => {
                let refund = self.refund_escrow(job, JobStatus::Completed);
                ctx.emit(Event::JobCompleted { job, refund });
            }
            JobStatus::Failed => {
                let refund = self.refund_escrow(job, JobStatus::Failed);
                ctx.emit(Event::JobSettled { job, refund });
            }
            _ => {}
        }
    }

    /// Returns the unused escrow to the payer (giving the mandate room back)
    /// and sets the job's final status.
    pub(crate) fn refund_escrow(&mut self, job: JobId, status: JobStatus) -> Amount {
        let Some(j) = self.job_mut(job) else {
            return Amount::ZERO;
        };
        let refund = j.escrow;
        j.escrow = Amount::ZERO;
        j.status = status;
        let payer = j.payer;
        let mandate = j.spec.mandate;
        self.credit(payer, refund);
        self.release_roles(job);
        if let Some(mid) = mandate {
            if let Some(m) = self.mandate_mut(mid) {
                m.spent = m.spent.saturating_sub(refund);
            }
        }
        self.schedule_prune(StateKey::Job(job));
        refund
    }
}
