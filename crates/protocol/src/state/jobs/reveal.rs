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
//!
//! A generation job's stages ran as one session: reveals open for every
//! stage at once, when the last stage's commitments (and auditor's) are
//! final, so no stage can read another's links before committing to its
//! own. A reveal claims the steps run (`1..=max_tokens`; other stages claim
//! 0) and is not checked against the previous stage's output, but its input
//! must be the claim the stage published with its commitment
//! (`CommitSession`), or it does not open (`CommitmentMismatch`: the provider
//! then misses its reveal deadline). Each stage's agreed result is held (the
//! stage stays `Running`) until every stage has one; then [`session_break`] checks
//! the chain (same steps everywhere, stage `i`'s output = stage `i + 1`'s
//! input, the last stage's output = stage 0's input). It holds → every stage
//! goes to its auditor or challenge window as above; it is broken → the job
//! fails, nobody paid, nobody slashed, and the session's bill at the steps
//! claimed is burned from the escrow, the rest refunded
//! (`on_session_revealed`).

use crate::error::TxError;
use crate::event::Event;
use crate::state::{BlockCtx, DisputeKind, JobStatus, StagePhase, State, Timer};
use crate::tx::StageResult;
use crate::types::{Address, Amount, Hash, JobId};

impl State {
    /// Opens a stage's reveal window (every replica committed and, when
    /// audited, the auditor too).
    ///
    /// A generation session opens its reveals only once every stage is that
    /// far, and then all at once: a stage that saw another's revealed hashes
    /// before committing could claim the session's links without computing.
    /// A stage re-filled after its provider missed the reveal (`jobs::deadlines`)
    /// finds the others' reveals already open: only its own opens then (and it
    /// is audited, `jobs::audit`, for it saw their hashes).
    pub(crate) fn open_reveals(&mut self, job: JobId, stage: u32) {
        let Some(j) = self.jobs.get(&job) else { return };
        if j.is_generation() {
            let unopened = |st: &crate::state::Stage| {
                matches!(
                    st.phase,
                    StagePhase::Running {
                        reveal_deadline: None
                    }
                )
            };
            let opened = |st: &crate::state::Stage| {
                matches!(
                    st.phase,
                    StagePhase::Running {
                        reveal_deadline: Some(_)
                    }
                )
            };
            // A stage dropped from a salvaged session (`salvage_session`) holds
            // nothing back.
            let ready = |st: &crate::state::Stage| {
                matches!(st.phase, StagePhase::Cancelled)
                    || opened(st)
                    || unopened(st)
                        && st.all_committed()
                        && st.audit.as_ref().is_none_or(|a| a.commitment.is_some())
            };
            if j.stages.iter().all(ready) {
                let to_open: Vec<u32> = (0..j.stages.len() as u32)
                    .filter(|&s| unopened(&j.stages[s as usize]))
                    .collect();
                for s in to_open {
                    self.open_stage_reveals(job, s);
                }
            }
            return;
        }
        self.open_stage_reveals(job, stage);
    }

    fn open_stage_reveals(&mut self, job: JobId, stage: u32) {
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
        // A generation stage published its input claim with its commitment
        // (`CommitSession`) and its auditor checked its input rows against it:
        // a reveal claiming another input does not open that commitment.
        if j.is_generation() && a.input.is_some_and(|i| i != result.input) {
            return Err(TxError::CommitmentMismatch);
        }
        // A generation stage reveals how many steps the session ran; its
        // input is checked against the other stages' once all revealed
        // (`on_session_revealed`). Other stages reveal no steps.
        let max_steps = j.spec.generation.map_or(0, |g| g.max_tokens);
        let steps_ok = match j.spec.generation {
            Some(g) => (1..=g.max_tokens).contains(&result.steps),
            None => result.steps == 0,
        };
        if !steps_ok {
            return Err(TxError::InvalidSteps {
                steps: result.steps,
                max: max_steps,
            });
        }
        if j.spec.generation.is_none() {
            let agreed = State::expected_input(j, stage)?;
            if result.input != agreed {
                // The commitment opened: the provider signed a result built on
                // an input the chain never agreed on. Honest providers commit
                // only after the previous stage's reveal, so this is fraud, not
                // bad luck.
                self.charge(who, fee);
                self.break_chain(job, stage, r, who, result.input, agreed, ctx);
                return Ok(());
            }
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
        // Agreement. A generation stage holds its result until every stage of
        // the session revealed; any other stage goes on to verification.
        let generation = j.is_generation();
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].result = Some(r0);
        }
        if generation {
            self.on_session_revealed(job, ctx);
            return;
        }
        self.extend_next_stage(job, stage + 1);
        self.verify_stage(job, stage, ctx);
    }

    /// A stage's result is agreed: an auditor drawn at commit time (and
    /// committed) now opens its commitment; otherwise the challenge window
    /// opens.
    fn verify_stage(&mut self, job: JobId, stage: u32, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let audit = j.stages[stage as usize]
            .audit
            .as_ref()
            .filter(|a| a.commitment.is_some())
            .map(|a| (a.auditor, a.price));
        let now = self.now();
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

    /// A generation stage's result is agreed. Once every stage of the session
    /// has one (a salvaged session: every stage kept, `salvage_session`), the
    /// chain is checked ([`session_break_among`]): it holds → every stage goes
    /// on to its audit or challenge window, in stage order.
    ///
    /// It is broken → `SessionBroken`: nobody is paid (committed auditors
    /// included) and nobody is slashed — the ledger cannot tell which side of
    /// the broken link lied — but the payer is not refunded the session's
    /// bill: the stages' bills at the steps they claimed (the upper median of
    /// their claims) are burned from the escrow (`SessionCharged`), the rest
    /// refunded (an active job fails; a salvaged one, already failed,
    /// settles). A requester holding one stage through a second identity could
    /// otherwise reveal a link that does not meet and get the text for free; a
    /// provider that breaks a session earns nothing either.
    pub(crate) fn on_session_revealed(&mut self, job: JobId, ctx: &mut BlockCtx) {
        let Some(j) = self.jobs.get(&job) else { return };
        let kept = |s: &crate::state::Stage| !matches!(s.phase, StagePhase::Cancelled);
        let held = j.stages.iter().filter(|s| kept(s)).all(|s| {
            matches!(
                s.phase,
                StagePhase::Running {
                    reveal_deadline: Some(_)
                }
            )
        });
        let results: Option<Vec<Option<StageResult>>> = j
            .stages
            .iter()
            .map(|s| {
                if kept(s) {
                    s.result.map(Some)
                } else {
                    Some(None)
                }
            })
            .collect();
        let (true, Some(results)) = (held, results) else {
            // Some stage has not revealed yet: this one waits for it.
            return;
        };
        let active = j.status == JobStatus::Active;
        if results.iter().all(Option::is_none) {
            // A salvaged session whose every kept stage lapsed since.
            if !active {
                self.settle_if_done(job, ctx);
            }
            return;
        }
        if let Some(stage) = session_break_among(&results) {
            ctx.emit(Event::SessionBroken { job, stage });
            self.charge_broken_session(job, &results, ctx);
            if active {
                self.fail_job(job, ctx);
            } else {
                for s in 0..results.len() as u32 {
                    self.cancel_stage(job, s);
                }
                self.settle_if_done(job, ctx);
            }
            return;
        }
        for (stage, r) in results.iter().enumerate() {
            if r.is_some() {
                self.verify_stage(job, stage as u32, ctx);
            }
        }
    }

    /// A broken session's charge: every revealed stage's bill at `steps`, the
    /// upper median of the steps claimed (one stage that under- or overclaims
    /// cannot move it past the others' in a session of three or more; of two,
    /// the larger), burned from the escrow.
    fn charge_broken_session(
        &mut self,
        job: JobId,
        results: &[Option<StageResult>],
        ctx: &mut BlockCtx,
    ) {
        let mut claims: Vec<u32> = results.iter().flatten().map(|r| r.steps).collect();
        claims.sort_unstable();
        let Some(&steps) = claims.get(claims.len() / 2) else {
            return;
        };
        let Some(jm) = self.job_mut(job) else { return };
        let mut bill: u128 = 0;
        for (i, st) in jm.stages.iter().enumerate() {
            if results.get(i).is_none_or(Option::is_none) {
                continue;
            }
            let ops = jm.spec.stage_ops_for(i, steps).unwrap_or(0);
            for a in st.slots.iter().filter_map(|s| s.assignment.as_ref()) {
                bill = bill.saturating_add(Amount::cost(ops, a.price).unwrap_or_default().0);
            }
        }
        let burned = Amount(bill.min(jm.escrow.0));
        jm.escrow = jm.escrow.saturating_sub(burned);
        self.burn(burned);
        ctx.emit(Event::SessionCharged { job, steps, burned });
    }

    /// The stage before `stage` has an agreed result: its input exists from
    /// now on, so its replicas that have not committed get the job's whole
    /// `deadline` from this block (never less than they had). Without this a
    /// downstream stage, assigned when the job was matched, would miss its
    /// deadline while an upstream stage is re-routed after a failure.
    pub(crate) fn extend_next_stage(&mut self, job: JobId, stage: u32) {
        let now = self.now();
        let Some(j) = self.job_mut(job) else { return };
        if j.spec.generation.is_some() {
            // A session's stages do not wait for each other's results: each
            // keeps the deadline it got when the job was matched.
            return;
        }
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

/// Where the revealed results of a generation job's stages (in stage order)
/// fail to form one session, or `None` when they do:
///
/// - every stage ran the same number of steps: the first stage whose `steps`
///   differ from stage 0's;
/// - stage `i`'s output is stage `i + 1`'s input (the activations it passed
///   on), and the last stage's output is stage 0's input (both hash the token
///   transcript): the first stage `i` whose output is not the next one's input
///   (the last stage for the transcript link).
///
/// Also `None` for no results at all.
pub fn session_break(results: &[StageResult]) -> Option<u32> {
    let all: Vec<Option<StageResult>> = results.iter().copied().map(Some).collect();
    session_break_among(&all)
}

/// [`session_break`] over the stages a salvaged session kept (`None` for a
/// stage dropped): every kept stage ran the same steps as the first kept one,
/// and every link whose two ends were kept holds; a link to a dropped stage is
/// not checked. The same as [`session_break`] when every stage was kept.
pub fn session_break_among(results: &[Option<StageResult>]) -> Option<u32> {
    let first = results.iter().flatten().next()?;
    if let Some(i) = results
        .iter()
        .position(|r| r.is_some_and(|r| r.steps != first.steps))
    {
        return Some(i as u32);
    }
    let n = results.len();
    (0..n)
        .find(|&i| match (results[i], results[(i + 1) % n]) {
            (Some(a), Some(b)) => a.output != b.input,
            _ => false,
        })
        .map(|i| i as u32)
}
