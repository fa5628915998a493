//! `CommitResult` and `CommitSession`: phase one of a stage's
//! commit-then-reveal.
//!
//! A replica posts [`crate::tx::StageResult::commitment`] (binding the job, the stage,
//! its result, a secret salt and its own address) before its deadline, and
//! only once the stage's input is agreed (the job input, or the previous
//! stage's agreed output) — except in a generation job, whose stages ran
//! together as one session and may all commit as soon as they are assigned.
//! The block that completes a stage's commitments hands it to the audit
//! decision (`jobs::audit`); reveals open right away, or once the drawn
//! auditor committed too (`jobs::reveal`).
//!
//! A generation stage commits with `CommitSession`: the commitment plus its
//! input claim ([`crate::tx::StageResult::input`]) in the clear, stored on the
//! assignment. The auditor drawn at the commitment replays only the stage's
//! own layers from the stage's input rows, fetched off-chain, and checks them
//! against that public claim before it commits; the reveal must claim the
//! same input (`jobs::reveal`). `CommitResult` is refused on a generation
//! stage (`SessionCommitNeeded`), `CommitSession` on any other
//! (`NotASession`).
//!
//! Not to be confused with `state::commit`, the state root's bookkeeping.

use crate::error::TxError;
use crate::event::Event;
use crate::state::{BlockCtx, Job, Stage, StagePhase, State};
use crate::types::{Address, Amount, Hash, JobId};

impl State {
    pub(super) fn stage_ref(&self, job: JobId, stage: u32) -> Result<(&Job, &Stage), TxError> {
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        let s = j
            .stages
            .get(stage as usize)
            .ok_or(TxError::UnknownStage { job, stage })?;
        Ok((j, s))
    }

    /// `CommitResult` (`input` = `None`) or `CommitSession` (`input` = the
    /// stage's input claim, published with the commitment).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit_result(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        stage: u32,
        commitment: Hash,
        input: Option<Hash>,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let (j, st) = self.stage_ref(job, stage)?;
        // A generation stage's auditor checks the input rows it fetches
        // against the claim published here, before it commits.
        match (j.is_generation(), input.is_some()) {
            (true, false) => return Err(TxError::SessionCommitNeeded),
            (false, true) => return Err(TxError::NotASession),
            _ => {}
        }
        if !matches!(st.phase, StagePhase::Running { .. }) {
            return Err(TxError::WrongPhase("running".into()));
        }
        // A commitment needs an agreed input: the beacon of the block that
        // completes the commitments draws the audit, and the auditor must be
        // able to compute from that input at once. A generation session's
        // stages ran together off-chain and commit in any order.
        if !j.is_generation() {
            State::expected_input(j, stage)?;
        }
        let r = st
            .slots
            .iter()
            .position(|s| s.assignment.as_ref().is_some_and(|a| a.provider == who))
            .ok_or(TxError::NotAssigned)?;
        let a = st.slots[r]
            .assignment
            .as_ref()
            .ok_or(TxError::NotAssigned)?;
        if a.commitment.is_some() {
            return Err(TxError::AlreadyCommitted);
        }
        if now > a.deadline {
            return Err(TxError::DeadlinePassed(a.deadline));
        }
        self.charge(who, fee);
        let mut all = false;
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            if let Some(a) = st.slots[r].assignment.as_mut() {
                a.commitment = Some(commitment);
                a.input = input;
            }
            all = st.all_committed();
        }
        ctx.emit(Event::ResultCommitted {
            job,
            stage,
            provider: who,
        });
        if all {
            self.on_stage_committed(job, stage, ctx);
        }
        Ok(())
    }

    /// The input a stage must start from: the job input, or the previous
    /// stage's agreed output.
    pub(super) fn expected_input(j: &Job, stage: u32) -> Result<Hash, TxError> {
        if stage == 0 {
            return Ok(j.spec.input);
        }
        j.stages
            .get(stage as usize - 1)
            .and_then(|p| p.result)
            .map(|r| r.output)
            .ok_or(TxError::PreviousStageUnrevealed)
    }
}
