//! `RevealResult`: phase two of a stage's commit-then-reveal, and judging
//! the revealed results.
//!
//! The reveal window opens once every replica committed and, when the
//! stage is audited, its auditor too (`open_reveals`). A reveal opens the replica's commitment. A result built on an input the
//! chain never agreed on is fraud: its provider is slashed and its slot
//! vacated. Once every replica still holding a slot revealed, the results
//! are compared: a disagreement opens a replica dispute; agreement records
//! the stage's result, gives the next stage's replicas their full deadline
//! from now, and hands the stage to its auditor (if one committed) or to
//! its challenge window (`jobs::settle`).

use crate::error::TxError;
use crate::event::Event;
use crate::state::{BlockCtx, DisputeKind, StagePhase, State, Timer};
use crate::tx::StageResult;
use crate::types::{Address, Amount, Hash, JobId};

impl State {
    /// Opens a stage's reveal window (every replica committed and, when
    /// audited, the auditor too).
    pub(crate) fn open_reveals(&mut self, job: JobId, stage: u32) {
        let rd = self.now().plus(self.params.reveal_window);
        if let Some(j) = self.job_mut(job) {
            j.stages[stage as usize].phase = StagePhase::Running {
                reveal_deadline: Some(rd),
            };
        }
        self.schedule(rd.plus(1), Timer::Stage(job, stage));
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reveal_result(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        stage: u32,
        result: &StageResult,
        salt: &Hash,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let (j, st) = self.stage_ref(job, stage)?;
        let rd = match st.phase {
            StagePhase::Running {
                reveal_deadline: Some(rd),
            } => rd,
            StagePhase::Running {
                reveal_deadline: None,
            } => return Err(TxError::RevealTooEarly),
            _ => return Err(TxError::WrongPhase("running".into())),
        };
        let r = st
            .slots
            .iter()
            .position(|s| s.assignment.as_ref().is_some_and(|a| a.provider == who))
            .ok_or(TxError::NotAssigned)?;
        let a = st.slots[r]
            .assignment
            .as_ref()
            .ok_or(TxError::NotAssigned)?;
        if a.result.is_some() {
            return Err(TxError::AlreadyRevealed);
        }
        if now > rd {
            return Err(TxError::DeadlinePassed(rd));
        }
        let c = a.commitment.ok_or(TxError::RevealTooEarly)?;
        if result.commitment(job, stage, salt, &who) != c {
            return Err(TxError::CommitmentMismatch);
        }
        let agreed = State::expected_input(j, stage)?;
        if result.input != agreed {
            // The commitment opened: the provider signed a result built on an
            // input the chain never agreed on. Honest providers commit only
            // after the previous stage's reveal, so this is fraud, not bad luck.
            self.charge(who, fee);
            self.break_chain(job, stage, r, who, result.input, agreed, ctx);
            return Ok(());
        }
        self.charge(who, fee);
        if let Some(p) = self.provider_mut(who) {
            p.active = p.active.saturating_sub(1);
        }
        let mut all = false;
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            if let Some(a) = st.slots[r].assignment.as_mut() {
                a.result = Some(*result);
            }
            // Every replica still holding its slot revealed (a slot emptied
            // after reveals began stays empty).
            all = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .all(|a| a.result.is_some());
        }
        ctx.emit(Event::ResultRevealed {
            job,
            stage,
            provider: who,
            output: result.output,
        });
        if all {
            self.on_stage_revealed(job, stage, ctx);
        }
        Ok(())
    }

    /// A revealed result that does not chain onto the previous stage: slash
    /// its provider, free its slot, and send the stage back to matching.
    #[allow(clippy::too_many_arguments)]
    fn break_chain(
        &mut self,
        job: JobId,
        stage: u32,
        slot: usize,
        who: Address,
        claimed: Hash,
        agreed: Hash,
        ctx: &mut BlockCtx,
    ) {
        let Some(payer) = self.jobs.get(&job).map(|j| j.payer) else {
            return;
        };
        ctx.emit(Event::ChainBroken {
            job,
            stage,
            provider: who,
            claimed,
            agreed,
        });
        self.slash(who, None, payer, ctx);
        if let Some(p) = self.provider_mut(who) {
            p.active = p.active.saturating_sub(1);
            p.open = p.open.saturating_sub(1);
        }
        self.vacate(job, stage, &[slot], ctx);
    }

    /// Every replica revealed: compare, then let the auditor open its
    /// commitment or open the challenge window.
    pub(super) fn on_stage_revealed(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let st = &j.stages[stage as usize];
        let results: Vec<(Address, StageResult)> = st
            .slots
            .iter()
            .filter_map(|s| s.assignment.as_ref())
            .filter_map(|a| a.result.map(|r| (a.provider, r)))
            .collect();
        let Some(&(first, r0)) = results.first() else {
            return;
        };
        if let Some(&(other, r1)) = results.iter().find(|(_, r)| r.output != r0.output) {
            // The replica dispute decides; an auditor that committed did its
            // work and is paid its fee, the game needs it no more.
            let committed = st.audit.as_ref().is_some_and(|a| a.commitment.is_some());
            if let Some((auditor, fee)) = self.release_auditor(job, stage, committed) {
                ctx.emit(Event::AuditPaid {
                    job,
                    stage,
                    auditor,
                    fee,
                });
            }
            let Some(j) = self.jobs.get(&job) else { return };
            let st = &j.stages[stage as usize];
            let price = st
                .slots
                .iter()
                .filter_map(|s| s.assignment.as_ref())
                .find(|a| a.provider == other)
                .map(|a| a.price)
                .unwrap_or_default();
            self.open_dispute(
                job,
                stage,
                DisputeKind::Replica,
                (first, r0),
                (other, r1),
                price,
                ctx,
            );
            return;
        }
        // Agreement. An auditor drawn at commit time (and committed) now opens
        // its commitment; otherwise the challenge window opens.
        let audit = st
            .audit
            .as_ref()
            .filter(|a| a.commitment.is_some())
            .map(|a| (a.auditor, a.price));
        let now = self.now();
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].result = Some(r0);
        }
        self.extend_next_stage(job, stage + 1);
        match audit {
            Some((auditor, price)) => {
                let deadline = now.plus(self.params.audit_window);
                if let Some(jm) = self.job_mut(job) {
                    jm.stages[stage as usize].phase = StagePhase::Auditing {
                        auditor,
                        price,
                        deadline,
                    };
                }
                self.schedule(deadline.plus(1), Timer::Audit(job, stage));
            }
            None => self.open_window(job, stage, ctx),
        }
    }

    /// The stage before `stage` has an agreed result: its input exists from
    /// now on, so its replicas that have not committed get the job's whole
    /// `deadline` from this block (never less than they had). Without this a
    /// downstream stage, assigned when the job was matched, would miss its
    /// deadline while an upstream stage is re-routed after a failure.
    pub(crate) fn extend_next_stage(&mut self, job: JobId, stage: u32) {
        let now = self.now();
        let Some(j) = self.job_mut(job) else { return };
        let until = now.plus(j.spec.deadline);
        let Some(st) = j.stages.get_mut(stage as usize) else {
            return;
        };
        let mut extended = false;
        for a in st.slots.iter_mut().filter_map(|s| s.assignment.as_mut()) {
            if a.commitment.is_none() && a.deadline < until {
                a.deadline = until;
                extended = true;
            }
        }
        if extended {
            self.schedule(until.plus(1), Timer::Stage(job, stage));
        }
    }
}
