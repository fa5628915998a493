//! Ending a job early: `CancelJob`, the match timeout, and failure after a
//! lost dispute.
//!
//! The requester may withdraw its job with `CancelJob` as long as no
//! provider has committed work: every stage still `Matching` or `Running`
//! and no replica's commitment posted. The assigned providers are released
//! (their `active` and `open` counts drop, no penalty), the whole escrow
//! returns to the payer (under a mandate, `spent` drops by as much), the job
//! ends `Cancelled` with a `JobCancelled` event and leaves the matching
//! queue. Once any commitment is posted the job runs to its end (result or
//! missed deadline): a provider that already did the work is owed a fair
//! outcome.
//!
//! A job nobody qualified for within `match_timeout` is cancelled the same
//! way — except a generation session some of whose stages already committed
//! (a stage that lapsed after the session ran could not be re-filled): it is
//! salvaged (`salvage_session`), the committed stages verified and paid. A
//! job whose stage lost a dispute fails (`fail_job`): stages already
//! delivered run on to their end and pay their honest providers, the others
//! are released; the escrow is refunded at once except what the live stages
//! may still pay, which is refunded when the last of them settles.

use crate::error::TxError;
use crate::event::Event;
use crate::state::{BlockCtx, DisputeKind, JobStatus, StagePhase, State, StateKey};
use crate::types::{Address, Amount, JobId};

impl State {
    /// Releases every provider holding a role in one stage (no pay, no
    /// penalty) and marks the stage cancelled.
    pub(crate) fn cancel_stage(&mut self, job: JobId, stage: u32) {
        let Some(j) = self.jobs.get(&job) else { return };
        let Some(st) = j.stages.get(stage as usize) else {
            return;
        };
        if matches!(st.phase, StagePhase::Finalized | StagePhase::Cancelled) {
            return;
        }
        let release: Vec<(Address, bool)> = st
            .slots
            .iter()
            .filter_map(|s| s.assignment.as_ref())
            .map(|a| (a.provider, a.result.is_none()))
            .collect();
        self.release_auditor(job, stage, false);
        for (p, active) in release {
            if let Some(p) = self.provider_mut(p) {
                if active {
                    p.active = p.active.saturating_sub(1);
                }
                p.open = p.open.saturating_sub(1);
            }
        }
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Cancelled;
        }
    }

    /// Releases every provider still holding part of a stopped job and
    /// marks its unfinished stages cancelled.
    pub(crate) fn stop_stages(&mut self, job: JobId) {
        let n = self.jobs.get(&job).map_or(0, |j| j.stages.len());
        for s in 0..n as u32 {
            self.cancel_stage(job, s);
        }
        self.dequeue_match(job);
        self.claims.remove(&job);
    }

    /// `CancelJob`: the requester withdraws a job no provider has committed
    /// work for. Every assigned provider is released without penalty, the
    /// whole escrow goes back to the payer (and its room to the mandate).
    pub(crate) fn cancel_job_tx(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        if j.requester != who {
            return Err(TxError::NotRequester);
        }
        if j.status != JobStatus::Active {
            return Err(TxError::JobNotActive(job));
        }
        let started = j.any_committed()
            || j.stages.iter().any(|st| {
                !matches!(
                    st.phase,
                    StagePhase::Matching { .. } | StagePhase::Running { .. }
                )
            });
        if started {
            return Err(TxError::JobStarted);
        }
        self.charge(who, fee);
        self.cancel_job(job, ctx);
        Ok(())
    }

    /// No provider qualified in time, or the requester cancelled: release,
    /// refund, cancel.
    pub(crate) fn cancel_job(&mut self, job: JobId, ctx: &mut BlockCtx) {
        self.stop_stages(job);
        let refund = self.refund_escrow(job, JobStatus::Cancelled);
        ctx.emit(Event::JobCancelled { job, refund });
    }

    /// A stage lost a dispute (or a generation session broke or missed a
    /// deadline): the job fails.
    ///
    /// Stages that delivered a result and are still being verified (auditing,
    /// challengeable, or in a dispute of their own) run on to their end and
    /// pay their honest replicas and auditors from the escrow as usual: a
    /// provider is never unpaid for delivered work because another party
    /// cheated. Stages not yet delivered are released (no pay, no penalty).
    /// The escrow is refunded now except what those live stages may still
    /// pay; that remainder is refunded when the last of them settles
    /// (`JobSettled`).
    pub(crate) fn fail_job(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        if j.status != JobStatus::Active {
            return;
        }
        let undelivered: Vec<u32> = j
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(
                    s.phase,
                    StagePhase::Matching { .. } | StagePhase::Running { .. }
                )
            })
            .map(|(i, _)| i as u32)
            .collect();
        for s in undelivered {
            self.cancel_stage(job, s);
        }
        self.close_failed(job, ctx);
    }

    /// A generation session that cannot be completed: a stage that lapsed
    /// after the session ran went back to matching and nobody qualified for
    /// it within `match_timeout`, or the job used up its replacements.
    ///
    /// The stages whose provider committed did their work: they are kept,
    /// their reveals open (at once, as a session's do, the stages dropped
    /// left out), the links among them are checked ([`session_break_among`]),
    /// and each goes on to its audit or challenge window and is paid `ops(steps)
    /// × price` as in a completed session. Every other stage is released
    /// unpaid, the job fails, and the escrow is refunded except what the kept
    /// stages may still pay (the rest when the last of them settles,
    /// `JobSettled`). Without this a requester whose requirements admit only
    /// the providers it was matched to, one of them its own second identity,
    /// could let that stage lapse once the others committed and get the text
    /// for the burned part of one miss penalty.
    ///
    /// No stage committed: [`State::fail_job`] (nothing was delivered).
    ///
    /// [`session_break_among`]: crate::state::session_break_among
    pub(crate) fn salvage_session(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        if j.status != JobStatus::Active {
            return;
        }
        let committed = |st: &crate::state::Stage| {
            matches!(st.phase, StagePhase::Running { .. })
                && !st.slots.is_empty()
                && st.all_committed()
        };
        let (kept, dropped): (Vec<u32>, Vec<u32>) =
            (0..j.stages.len() as u32).partition(|&s| committed(&j.stages[s as usize]));
        if kept.is_empty() {
            self.fail_job(job, ctx);
            return;
        }
        for s in dropped {
            self.cancel_stage(job, s);
        }
        ctx.emit(Event::SessionSalvaged {
            job,
            stages: kept.clone(),
        });
        self.close_failed(job, ctx);
        // Reveals open for every kept stage whose auditor (if drawn) committed
        // (the others open when theirs does); stages that revealed before are
        // judged now.
        self.open_reveals(job, kept[0]);
        self.on_session_revealed(job, ctx);
    }

    /// The job fails: out of matching, refunded but for what its live stages
    /// may still pay.
    fn close_failed(&mut self, job: JobId, ctx: &mut BlockCtx) {
        self.dequeue_match(job);
        self.claims.remove(&job);
        let reserve = self.live_reserve(job);
        let Some(j) = self.job_mut(job) else { return };
        j.status = JobStatus::Failed;
        let refund = j.escrow.saturating_sub(reserve);
        j.escrow = j.escrow.saturating_sub(refund);
        let payer = j.payer;
        let mandate = j.spec.mandate;
        self.credit(payer, refund);
        if let Some(mid) = mandate {
            if let Some(m) = self.mandate_mut(mid) {
                m.spent = m.spent.saturating_sub(refund);
            }
        }
        // With no live stage left the refund above was the whole escrow;
        // otherwise the last live stage to end settles the job (`JobSettled`).
        self.release_roles(job);
        if reserve.0 == 0 {
            self.schedule_prune(StateKey::Job(job));
        }
        ctx.emit(Event::JobFailed { job, refund });
    }

    /// What a job's live (delivered, still verified) stages may yet pay: each
    /// replica's bill and each auditor's fee.
    fn live_reserve(&self, job: JobId) -> Amount {
        let Some(j) = self.jobs.get(&job) else {
            return Amount::ZERO;
        };
        let mut total = Amount::ZERO;
        for (i, st) in j.stages.iter().enumerate() {
            if matches!(st.phase, StagePhase::Finalized | StagePhase::Cancelled) {
                continue;
            }
            let ops = j.billed_ops(i);
            let mut prices: Vec<Amount> = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .map(|a| a.price)
                .collect();
            match (&st.audit, st.phase) {
                (_, StagePhase::Auditing { price, .. }) => prices.push(price),
                (Some(a), _) => prices.push(a.price),
                (None, StagePhase::Disputed { dispute }) => {
                    // An auditor that disputes is paid if it wins.
                    if let Some(d) = self.disputes.get(&dispute) {
                        if d.kind == DisputeKind::Audit {
                            prices.push(d.challenger_price);
                        }
                    }
                }
                _ => {}
            }
            for p in prices {
                let bill = Amount::cost(ops, p).unwrap_or_default();
                total = Amount(total.0.saturating_add(bill.0));
            }
        }
        total
    }
}
