//! `ReplaceStage`: a generation session loses one of its stages and goes on.
//!
//! ```text
//!  stage k's link breaks, goes silent, or carries a malformed or out-of-order frame
//!    ─▶ a neighbour (any provider of another stage, or the requester) sends
//!       ReplaceStage { job, stage: k, provider }
//!    ─▶ provider pays the miss penalty (as for a missed deadline, but all of it is
//!       burned), is released and excluded from the job; stage k goes back to matching
//!    ─▶ matching fills it (the job's other stages keep their providers); every
//!       stage's deadline becomes now + the job's deadline
//!    ─▶ the replacement rebuilds its cache by prefill of the tokens so far and the
//!       session resumes where every stage agrees (the provider crate's sessions)
//! ```
//!
//! The ledger cannot see a session's links, so it cannot tell a dead provider from a
//! false report. The rules bound what a report can do: only the requester (who pays
//! and gains nothing from a slower job) or a provider of another stage of the same
//! running job may send one; only a stage that has not committed can be replaced,
//! and only while no stage has committed (a session whose stages commit has ended:
//! a report then could evict a provider that did the whole stage and is about to
//! commit; one that truly died misses its deadline, `jobs::deadlines`); a job replaces
//! at most [`limits::MAX_SESSION_REPLACEMENTS`] providers. A neighbour's report (a
//! provider of another stage, the one that saw the link fail) costs the reported
//! provider the miss penalty, never a slash, burned whole — unlike a missed
//! deadline's, whose requester share goes to the payer — so a false report earns its
//! sender nothing (it pays its fee). The requester's report only evicts: no penalty
//! and no failure on the provider's record. The requester sees no link, so its report
//! proves even less than a neighbour's, and a penalty there would let anyone who
//! buys a job burn a competitor's stake for a fee; what an eviction costs its victim
//! is that job's unpaid work, and the requester its own job's time.
//! Nobody is paid twice: the replaced provider committed nothing and is paid nothing;
//! its replacement commits the whole stage (every step, rebuilt or computed) and is
//! paid the stage's bill as any stage provider.

use crate::error::TxError;
use crate::event::Event;
use crate::state::{BlockCtx, JobStatus, StagePhase, State};
use crate::types::{limits, Address, Amount, JobId};

impl State {
    /// `ReplaceStage` (module docs).
    pub(crate) fn replace_stage(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        stage: u32,
        provider: Address,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        if !j.is_generation() {
            return Err(TxError::NotGeneration(job));
        }
        if j.status != JobStatus::Active {
            return Err(TxError::JobNotActive(job));
        }
        let st = j
            .stages
            .get(stage as usize)
            .ok_or(TxError::UnknownStage { job, stage })?;
        let holder = st.slots.first().and_then(|s| s.assignment.as_ref());
        let replaceable = matches!(
            st.phase,
            StagePhase::Running {
                reveal_deadline: None
            }
        ) && holder
            .is_some_and(|a| a.provider == provider && a.commitment.is_none())
            // Once any stage committed, the session has ended: a stage that
            // really dropped out misses its deadline. A report then could only
            // evict a provider that finished the work and has yet to commit.
            && !j.any_committed();
        if !replaceable {
            return Err(TxError::NotReplaceable { stage });
        }
        let j_requester = j.requester;
        let member = who == j.requester
            || j.stages.iter().enumerate().any(|(i, s)| {
                i != stage as usize
                    && s.slots
                        .iter()
                        .filter_map(|x| x.assignment.as_ref())
                        .any(|a| a.provider == who)
            });
        if !member || who == provider {
            return Err(TxError::NotSessionMember);
        }
        if j.excluded.len() >= limits::MAX_SESSION_REPLACEMENTS {
            return Err(TxError::TooManyReplacements);
        }
        let value = Amount::cost(
            j.billed_ops(stage as usize),
            holder.map_or(Amount::ZERO, |a| a.price),
        )
        .unwrap_or(Amount::ZERO);
        self.charge(who, fee);
        // Only a neighbour's report costs the reported provider (module docs): the
        // requester's evicts without a penalty or a failure on its record.
        let penalty = if who == j_requester {
            Amount::ZERO
        } else {
            self.penalize_reported(provider, value)
        };
        if let Some(p) = self.provider_mut(provider) {
            p.active = p.active.saturating_sub(1);
            p.open = p.open.saturating_sub(1);
        }
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].slots[0].assignment = None;
            jm.exclude(provider);
        }
        self.requeue_stages(job, &[stage]);
        ctx.emit(Event::StageReplaced {
            job,
            stage,
            provider,
            by: who,
            penalty,
        });
        Ok(())
    }
}
