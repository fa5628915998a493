//! Audits, challenges and the dispute game.
//!
//! ```text
//!   opened (replica / auditor / outside challenger with bond)
//!     │  lo = 0 (the stage input, agreed), hi = layers (the outputs, disputed)
//!     ▼
//!   ┌─ round: both parties post their trace leaf at mid = ⌊(lo+hi)/2⌋ with a
//!   │  Merkle proof against their committed trace root (Bisect tx)
//!   │     equal leaves  → lo = mid        different → hi = mid
//!   └─ until hi = lo + 1   (⌈log2 layers⌉ rounds; a silent party loses)
//!     ▼
//!   referee re-executes layer (first_layer + lo) on the agreed input
//!     ├─ matches the defendant  → challenger loses (bond forfeited / stake slashed)
//!     ├─ matches the challenger → defendant slashed, job fails, payer refunded
//!     ├─ matches neither        → both lose, winner shares burned
//!     ├─ input unavailable      → the defendant loses
//!     └─ model unavailable      → annulled, nobody punished
//! ```
//!
//! # Generation stages
//!
//! A generation stage's trace is `steps × (layers + 1)` leaves, step-major, and the
//! layer at step `t` reads the K/V of every earlier position: the referee needs that
//! layer's input rows for the whole prefix, agreed by both parties. So the game is the
//! **descent** over the committed tree ([`crate::bisection`], "Descent"), which ends at
//! the first differing leaf with everything before it agreed — the upper rounds narrow
//! the step, the lower ones the layer:
//!
//! ```text
//!   Bisecting   each round both post (left, right) child nodes of the span (`Bisect`:
//!               leaf = left, proof = [right]); checked against their node (at the top,
//!               against their committed trace root); lefts equal → right half, else left
//!   StepRoots   one leaf f = (step t, position j) left; the defendant names the blob of
//!               layer (first + j − 1)'s input rows for positions 0..=t's last, each
//!               step's rows with a Merkle proof against its root (`StepRoot`: root = the
//!               blob, no proofs); silent → the defendant loses
//!   referee     re-runs that one block (K/V rebuilt from the rows) or the head, at step t:
//!               Output(GenerationQuestion::finding(H(0x00 ‖ output leaf)))
//!     ├─ = the defendant's finding  → challenger loses
//!     ├─ = the challenger's finding → defendant slashed
//!     ├─ neither (a blob for another trace or leaf, or both wrong) → the defendant,
//!     │  who named the blob, loses
//!     └─ rows unavailable or not proven → the defendant loses (after the patience)
//! ```
//!
//! A first difference at a step's input leaf (`j = 0`) has nothing to re-execute. Both
//! parties claimed the same input (the audit and a challenge require it); past stage 0
//! that claim is the chain of the input leaves themselves, so the leaves agree and this
//! cannot happen (annulled if it does). At stage 0 the claim is the transcript and the
//! leaf a hash of the step's tokens: the referee derives it from the job's request blob
//! and the transcript blob (`referee::INPUT_LEAF_BASE`) and the party whose node it is
//! wins (neither: both lose; blobs nobody serves: annulled, as neither party publishes
//! them).
//!
//! The descent is over the defendant's `steps × (layers + 1)` leaves: a challenger whose
//! trace has another step count cannot open the root at the top, and loses by timeout.
//!
//! An auditor or challenger of a generation stage agrees only with the same output,
//! trace root and steps: the stage's output claim is public before the audit (for an
//! honest session it is the next stage's input claim, published with its
//! `CommitSession`), so output alone could be copied. The same output over another
//! trace root opens the descent like a different output.
//!
//! A slash takes `slash_ppm` of the loser's bonded stake and splits it:
//! `slash_winner_ppm` to the winner, `slash_requester_ppm` to the job's
//! payer, the rest burned. A forfeited challenge bond is split the same way.

use super::{
    BlockCtx, Dispute, DisputeKind, DisputePhase, JobStatus, StagePhase, State, StateKey, Timer,
};
use crate::error::TxError;
use crate::event::{Event, Resolution};
use crate::referee::{GenerationQuestion, Referee, RefereeError};
use crate::tx::StageResult;
use crate::types::{Address, Amount, DisputeId, Hash, JobId};

/// How a dispute ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    DefendantWins,
    ChallengerWins,
    BothLose,
    Annulled,
}

impl State {
    /// Opens a dispute over a stage between its defendant and a challenger.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_dispute(
        &mut self,
        job: JobId,
        stage: u32,
        kind: DisputeKind,
        defendant: (Address, StageResult),
        challenger: (Address, StageResult),
        challenger_price: Amount,
        ctx: &mut BlockCtx,
    ) {
        let Some(j) = self.jobs.get(&job) else { return };
        let layers = j.spec.stages[stage as usize].layers;
        let step_units = j.spec.stages[stage as usize].step_units;
        let generation = j.is_generation();
        let id = self.meta.next_dispute;
        self.meta.next_dispute = DisputeId(id.0 + 1);
        let deadline = self.now().plus(self.params.dispute_timeout);
        let game = if generation {
            // The descent over the defendant's `steps × (layers + 1)` leaves.
            let leaves = defendant.1.steps.checked_mul(layers.saturating_add(1));
            crate::bisection::Bisection::descent(leaves.unwrap_or(0))
        } else {
            crate::bisection::Bisection::new(layers.saturating_add(1))
        };
        let Ok(game) = game else {
            return;
        };
        let phase = if generation {
            DisputePhase::Bisecting
        } else if game.is_finished() && step_units > 0 {
            DisputePhase::StepRoots
        } else if game.is_finished() {
            DisputePhase::AwaitingReferee
        } else {
            DisputePhase::Bisecting
        };
        let d = Dispute {
            job,
            stage,
            kind,
            defendant: defendant.0,
            defendant_root: defendant.1.trace_root,
            challenger: challenger.0,
            challenger_root: challenger.1.trace_root,
            challenger_price,
            game,
            // A descent has agreed on nothing yet, and its nodes start at the roots.
            agreed: if generation {
                Hash::ZERO
            } else {
                defendant.1.input
            },
            defendant_hi: if generation {
                defendant.1.trace_root
            } else {
                defendant.1.output
            },
            challenger_hi: if generation {
                challenger.1.trace_root
            } else {
                challenger.1.output
            },
            defendant_output: defendant.1.output,
            challenger_output: challenger.1.output,
            defendant_move: None,
            challenger_move: None,
            deadline,
            phase,
            step_units,
            step: (phase == DisputePhase::StepRoots).then_some(0),
        };
        self.commit.touch::<Dispute>(StateKey::Dispute(id), None);
        self.disputes.insert(id, d);
        self.add_party(defendant.0, id);
        self.add_party(challenger.0, id);
        if phase == DisputePhase::AwaitingReferee {
            self.await_referee(id);
        } else {
            self.schedule(deadline.plus(1), Timer::Dispute(id));
        }
        if let Some(j) = self.job_mut(job) {
            let st = &mut j.stages[stage as usize];
            st.phase = StagePhase::Disputed { dispute: id };
            if st.result.is_none() {
                st.result = Some(defendant.1);
            }
        }
        ctx.emit(Event::DisputeOpened {
            dispute: id,
            job,
            stage,
            defendant: defendant.0,
            challenger: challenger.0,
        });
    }

    /// The provider whose result a stage's disputes defend: the first
    /// replica that revealed the stage's agreed result.
    fn defendant_of(&self, job: JobId, stage: u32) -> Option<(Address, StageResult)> {
        let st = self.jobs.get(&job)?.stages.get(stage as usize)?;
        let agreed = st.result?;
        st.slots
            .iter()
            .filter_map(|s| s.assignment.as_ref())
            .find_map(|a| {
                a.result
                    .filter(|r| r.output == agreed.output)
                    .map(|r| (a.provider, r))
            })
    }

    /// `AuditCommit`: the drawn auditor commits to its own result before any
    /// replica of the stage may reveal; reveals open at once.
    pub(crate) fn audit_commit(
        &mut self,
        who: Address,
        fee: Amount,
        job: JobId,
        stage: u32,
        commitment: Hash,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        let st = j
            .stages
            .get(stage as usize)
            .ok_or(TxError::UnknownStage { job, stage })?;
        let audit = st.audit.as_ref().ok_or(TxError::NotAuditor)?;
        if audit.auditor != who {
            return Err(TxError::NotAuditor);
        }
        if audit.commitment.is_some() {
            return Err(TxError::AuditAlreadyCommitted);
        }
        if !matches!(
            st.phase,
            StagePhase::Running {
                reveal_deadline: None
            }
        ) {
            return Err(TxError::WrongPhase(
                "waiting for the audit commitment".into(),
            ));
        }
        if now > audit.deadline {
            return Err(TxError::DeadlinePassed(audit.deadline));
        }
        self.charge(who, fee);
        if let Some(jm) = self.job_mut(job) {
            if let Some(a) = jm.stages[stage as usize].audit.as_mut() {
                a.commitment = Some(commitment);
            }
        }
        ctx.emit(Event::AuditCommitted {
            job,
            stage,
            auditor: who,
        });
        self.open_reveals(job, stage);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit_report(
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
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        let st = j
            .stages
            .get(stage as usize)
            .ok_or(TxError::UnknownStage { job, stage })?;
        let StagePhase::Auditing {
            auditor,
            price,
            deadline,
        } = st.phase
        else {
            return Err(TxError::WrongPhase("auditing".into()));
        };
        if auditor != who {
            return Err(TxError::NotAuditor);
        }
        if now > deadline {
            return Err(TxError::DeadlinePassed(deadline));
        }
        let committed = st
            .audit
            .as_ref()
            .and_then(|a| a.commitment)
            .ok_or(TxError::WrongPhase("auditing".into()))?;
        if result.commitment(job, stage, salt, &who) != committed {
            return Err(TxError::AuditCommitmentMismatch);
        }
        let agreed = st.result.ok_or(TxError::WrongPhase("auditing".into()))?;
        if result.input != agreed.input {
            return Err(TxError::InputMismatch);
        }
        let ops = j.billed_ops(stage as usize);
        let agrees = agrees_with(j.is_generation(), result, &agreed);
        let defendant = self
            .defendant_of(job, stage)
            .ok_or(TxError::WrongPhase("auditing".into()))?;
        self.charge(who, fee);
        if let Some(p) = self.provider_mut(who) {
            p.active = p.active.saturating_sub(1);
        }
        // The audit slot ends here: agreement pays it, disagreement makes the
        // auditor the dispute's challenger.
        if let Some(jm) = self.job_mut(job) {
            jm.stages[stage as usize].audit = None;
        }
        if agrees {
            let fee_due = Amount::cost(ops, price).unwrap_or_default();
            let paid = self.pay_from_escrow(job, who, fee_due);
            let rp = self.reputation_params();
            if let Some(p) = self.provider_mut(who) {
                p.open = p.open.saturating_sub(1);
                p.reputation.record_success(paid.0, now.0, &rp);
            }
            ctx.emit(Event::AuditAgreed {
                job,
                stage,
                auditor: who,
                fee: paid,
            });
            self.open_window(job, stage, ctx);
        } else {
            self.open_dispute(
                job,
                stage,
                DisputeKind::Audit,
                defendant,
                (who, *result),
                price,
                ctx,
            );
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn challenge(
        &mut self,
        who: Address,
        fee: Amount,
        avail: Amount,
        job: JobId,
        stage: u32,
        result: &StageResult,
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let j = self.jobs.get(&job).ok_or(TxError::UnknownJob(job))?;
        let st = j
            .stages
            .get(stage as usize)
            .ok_or(TxError::UnknownStage { job, stage })?;
        let StagePhase::Challengeable { until } = st.phase else {
            return Err(TxError::WrongPhase("challengeable".into()));
        };
        if now > until {
            return Err(TxError::ChallengeWindowClosed);
        }
        if st
            .slots
            .iter()
            .any(|s| s.assignment.as_ref().is_some_and(|a| a.provider == who))
        {
            return Err(TxError::SelfChallenge);
        }
        let agreed = st
            .result
            .ok_or(TxError::WrongPhase("challengeable".into()))?;
        if result.input != agreed.input {
            return Err(TxError::InputMismatch);
        }
        if agrees_with(j.is_generation(), result, &agreed) {
            return Err(TxError::ChallengeAgrees);
        }
        let bond = self.params.challenge_bond;
        if avail < bond {
            return Err(TxError::InsufficientBalance {
                need: bond.checked_add(fee).ok_or(TxError::Overflow)?,
                have: avail.checked_add(fee).ok_or(TxError::Overflow)?,
            });
        }
        let defendant = self
            .defendant_of(job, stage)
            .ok_or(TxError::WrongPhase("challengeable".into()))?;
        self.charge(who, fee);
        let a = self.account_mut(who);
        a.balance = a.balance.saturating_sub(bond);
        self.open_dispute(
            job,
            stage,
            DisputeKind::External { bond },
            defendant,
            (who, *result),
            Amount::ZERO,
            ctx,
        );
        Ok(())
    }

    pub(crate) fn bisect(
        &mut self,
        who: Address,
        fee: Amount,
        id: DisputeId,
        leaf: Hash,
        proof: &[Hash],
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let d = self.disputes.get(&id).ok_or(TxError::UnknownDispute(id))?;
        if d.phase != DisputePhase::Bisecting {
            return Err(TxError::DisputeNotOpen);
        }
        if now > d.deadline {
            return Err(TxError::DeadlinePassed(d.deadline));
        }
        let party = d.party(who).ok_or(TxError::NotParty)?;
        if party.moved {
            return Err(TxError::AlreadyMoved);
        }
        if self.is_generation_dispute(d) {
            return self.descend(who, fee, id, leaf, proof, ctx);
        }
        let (is_defendant, root) = (party.defendant, party.root);
        let mid = d.game.midpoint().ok_or(TxError::DisputeNotOpen)?;
        let leaves = d.game.leaves();
        let siblings: Vec<[u8; 32]> = proof.iter().map(|h| h.0).collect();
        if !crate::merkle::verify(&root.0, mid as u64, leaves as u64, &leaf.0, &siblings) {
            return Err(TxError::BadProof { index: mid });
        }
        self.charge(who, fee);
        let timeout = self.params.dispute_timeout;
        let mut narrowed = None;
        let mut ready = false;
        let mut reschedule = None;
        if let Some(d) = self.dispute_mut(id) {
            if is_defendant {
                d.defendant_move = Some(leaf);
            } else {
                d.challenger_move = Some(leaf);
            }
            if let (Some(dl), Some(cl)) = (d.defendant_move, d.challenger_move) {
                // `mid` is the game's midpoint, checked above.
                let _ = d.game.record(mid, dl == cl);
                if dl == cl {
                    d.agreed = dl;
                } else {
                    d.defendant_hi = dl;
                    d.challenger_hi = cl;
                }
                d.defendant_move = None;
                d.challenger_move = None;
                d.deadline = now.plus(timeout);
                narrowed = Some((d.game.lo(), d.game.hi()));
                if d.game.is_finished() && d.step_units > 0 && d.step.is_none() {
                    // A training dispute found its step: on to the units.
                    d.phase = DisputePhase::StepRoots;
                    d.step = Some(d.game.lo());
                    reschedule = Some(d.deadline);
                } else if d.game.is_finished() {
                    d.phase = DisputePhase::AwaitingReferee;
                    ready = true;
                } else {
                    reschedule = Some(d.deadline);
                }
            }
        }
        if let Some((lo, hi)) = narrowed {
            ctx.emit(Event::BisectionNarrowed {
                dispute: id,
                lo,
                hi,
            });
        }
        if ready {
            self.await_referee(id);
        }
        if let Some(dl) = reschedule {
            self.schedule(dl.plus(1), Timer::Dispute(id));
        }
        Ok(())
    }

    /// Whether `d` is over a generation stage (module docs, "Generation stages").
    fn is_generation_dispute(&self, d: &super::Dispute) -> bool {
        self.jobs.get(&d.job).is_some_and(|j| j.is_generation())
    }

    /// One descent move of a generation dispute (`Bisect` with `leaf` = the left child
    /// node of the span and `proof = [right]`): checked against the party's node (its
    /// trace root at the top); once both moved, the game goes to the half where they
    /// differ. Down to one leaf, the defendant names the referee's rows (`StepRoots`).
    fn descend(
        &mut self,
        who: Address,
        fee: Amount,
        id: DisputeId,
        left: Hash,
        proof: &[Hash],
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let d = self.disputes.get(&id).ok_or(TxError::UnknownDispute(id))?;
        let party = d.party(who).ok_or(TxError::NotParty)?;
        let split = d.game.descent_split().ok_or(TxError::DisputeNotOpen)?;
        let [right] = proof else {
            return Err(TxError::BadProof { index: split });
        };
        let node = crate::merkle::hash_node(&left.0, &right.0);
        let ok = if d.game.round() == 0 {
            let count = u64::from(d.game.descent_leaves());
            crate::bisection::root_of_top(count, &node) == party.root.0
        } else {
            node == party.hi.0
        };
        if !ok {
            return Err(TxError::BadProof { index: split });
        }
        let width = self
            .jobs
            .get(&d.job)
            .and_then(|j| j.spec.stages.get(d.stage as usize))
            .map_or(1, |s| s.layers.saturating_add(1));
        // What both parties claimed as the stage's input (the audit and a challenge
        // require the same): for stage 0 of a session, the transcript.
        let claimed_input = self.jobs.get(&d.job).and_then(|j| {
            j.stages.get(d.stage as usize)?.slots.iter().find_map(|s| {
                let a = s.assignment.as_ref()?;
                (a.provider == d.defendant).then_some(a.result?.input)
            })
        });
        self.charge(who, fee);
        let timeout = self.params.dispute_timeout;
        let mut narrowed = None;
        if let Some(d) = self.dispute_mut(id) {
            // This round's check is done: the party's node becomes its right child, its
            // move is its left child; once both moved, the lefts decide.
            if party.defendant {
                d.defendant_move = Some(left);
                d.defendant_hi = *right;
            } else {
                d.challenger_move = Some(left);
                d.challenger_hi = *right;
            }
            if let (Some(dl), Some(cl)) = (d.defendant_move, d.challenger_move) {
                let agree = dl == cl;
                // `split` is the game's, checked above.
                let _ = d.game.record_descent(agree);
                if !agree {
                    d.defendant_hi = dl;
                    d.challenger_hi = cl;
                }
                d.defendant_move = None;
                d.challenger_move = None;
                d.deadline = now.plus(timeout);
                if let Some(f) = d.game.descent_leaf() {
                    d.step = Some(f / width.max(1));
                    // A step's input leaf has nothing to re-execute: the referee derives it
                    // (stage 0) from the request and the transcript, the stage's input.
                    d.phase = if f % width.max(1) == 0 {
                        d.agreed = claimed_input.unwrap_or(Hash::ZERO);
                        DisputePhase::AwaitingReferee
                    } else {
                        DisputePhase::StepRoots
                    };
                }
                narrowed = Some((d.game.lo(), d.game.hi(), d.deadline, d.phase));
            }
        }
        if let Some((lo, hi, deadline, phase)) = narrowed {
            ctx.emit(Event::BisectionNarrowed {
                dispute: id,
                lo,
                hi,
            });
            if phase == DisputePhase::AwaitingReferee {
                self.await_referee(id);
            } else {
                self.schedule(deadline.plus(1), Timer::Dispute(id));
            }
        }
        Ok(())
    }

    /// `StepRoot`: in a training dispute whose step-level game isolated step
    /// `t` (both agree on the state before it, `agreed`, and disagree on the
    /// state after it), a party posts its root over the step's `step_units +
    /// 1` unit leaves, proving that leaf 0 is the agreed state and the last
    /// leaf its own state after the step. Once both posted, the game restarts
    /// over the units against these roots.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step_root(
        &mut self,
        who: Address,
        fee: Amount,
        id: DisputeId,
        root: Hash,
        first_proof: &[Hash],
        last_proof: &[Hash],
        ctx: &mut BlockCtx,
    ) -> Result<(), TxError> {
        let now = self.now();
        let d = self.disputes.get(&id).ok_or(TxError::UnknownDispute(id))?;
        if d.phase != DisputePhase::StepRoots {
            return Err(TxError::WrongPhase("step roots".into()));
        }
        if now > d.deadline {
            return Err(TxError::DeadlinePassed(d.deadline));
        }
        let party = d.party(who).ok_or(TxError::NotParty)?;
        if party.moved {
            return Err(TxError::AlreadyMoved);
        }
        if self.is_generation_dispute(d) {
            if !party.defendant {
                return Err(TxError::NotParty);
            }
            if !first_proof.is_empty() || !last_proof.is_empty() {
                return Err(TxError::BadProof { index: 0 });
            }
            self.charge(who, fee);
            let timeout = self.params.dispute_timeout;
            if let Some(d) = self.dispute_mut(id) {
                d.agreed = root;
                d.defendant_move = None;
                d.challenger_move = None;
                d.phase = DisputePhase::AwaitingReferee;
                // The parties' time to serve the rows before "unavailable" counts.
                d.deadline = now.plus(timeout);
            }
            self.await_referee(id);
            return Ok(());
        }
        let (is_defendant, hi) = (party.defendant, party.hi);
        let units = d.step_units;
        let leaves = u64::from(units) + 1;
        let first: Vec<[u8; 32]> = first_proof.iter().map(|h| h.0).collect();
        if !crate::merkle::verify(&root.0, 0, leaves, &d.agreed.0, &first) {
            return Err(TxError::BadProof { index: 0 });
        }
        let last: Vec<[u8; 32]> = last_proof.iter().map(|h| h.0).collect();
        if !crate::merkle::verify(&root.0, u64::from(units), leaves, &hi.0, &last) {
            return Err(TxError::BadProof { index: units });
        }
        let game = crate::bisection::Bisection::new(units.saturating_add(1))
            .map_err(|_| TxError::WrongPhase("step roots".into()))?;
        self.charge(who, fee);
        let timeout = self.params.dispute_timeout;
        let mut started = None;
        if let Some(d) = self.dispute_mut(id) {
            if is_defendant {
                d.defendant_move = Some(root);
            } else {
                d.challenger_move = Some(root);
            }
            if let (Some(dr), Some(cr)) = (d.defendant_move, d.challenger_move) {
                d.defendant_root = dr;
                d.challenger_root = cr;
                d.game = game;
                d.defendant_move = None;
                d.challenger_move = None;
                d.deadline = now.plus(timeout);
                d.phase = if game.is_finished() {
                    DisputePhase::AwaitingReferee
                } else {
                    DisputePhase::Bisecting
                };
                started = Some((d.phase, d.deadline, d.game.lo(), d.game.hi()));
            }
        }
        match started {
            Some((DisputePhase::AwaitingReferee, _, lo, hi)) => {
                ctx.emit(Event::BisectionNarrowed {
                    dispute: id,
                    lo,
                    hi,
                });
                self.await_referee(id);
            }
            Some((_, deadline, lo, hi)) => {
                ctx.emit(Event::BisectionNarrowed {
                    dispute: id,
                    lo,
                    hi,
                });
                self.schedule(deadline.plus(1), Timer::Dispute(id));
            }
            None => {}
        }
        Ok(())
    }

    /// Per-block: a party that did not move before the round's deadline
    /// loses; if neither moved, the challenger (who carries the burden of
    /// proof) loses.
    pub(crate) fn check_dispute_timeout(&mut self, id: DisputeId, ctx: &mut BlockCtx) {
        let now = self.now();
        let Some(d) = self.disputes.get(&id) else {
            return;
        };
        if !matches!(d.phase, DisputePhase::Bisecting | DisputePhase::StepRoots)
            || d.deadline >= now
        {
            return;
        }
        let outcome = match (d.defendant_move.is_some(), d.challenger_move.is_some()) {
            // A generation dispute's rows are the defendant's to name.
            _ if d.phase == DisputePhase::StepRoots && self.is_generation_dispute(d) => {
                Outcome::ChallengerWins
            }
            (false, true) => Outcome::ChallengerWins,
            _ => Outcome::DefendantWins,
        };
        self.resolve(id, outcome, Resolution::Timeout, ctx);
    }

    /// Per-block: every dispute down to one layer is judged by the referee.
    /// A dispute without a verdict yet stays queued; "unavailable" counts only
    /// after the dispute has waited `dispute_timeout` blocks for the referee
    /// (its `deadline`, set when the game finished), the parties' time to
    /// publish the activation they agreed on.
    /// Queues dispute `id` for the referee: indexed by its question, with
    /// timers at its deadline (when "unavailable" starts to count) and at
    /// the referee timeout after it (when a question still unanswered
    /// annuls it).
    pub(crate) fn await_referee(&mut self, id: DisputeId) {
        self.referee_queue.insert(id);
        let Some(d) = self.disputes.get(&id) else {
            return;
        };
        let deadline = d.deadline;
        let question = self
            .jobs
            .get(&d.job)
            .and_then(|j| State::referee_question(d, j));
        if let Some(q) = question {
            if let Some(old) = self.referee_keys.insert(id, q) {
                if let Some(s) = self.referee_index.get_mut(&old) {
                    s.remove(&id);
                }
            }
            self.referee_index.entry(q).or_default().insert(id);
        }
        let now = self.now();
        // Asked once right away (the referee may already have the answer).
        self.referee_due.insert(id);
        if deadline >= now {
            self.schedule(deadline.plus(1), Timer::Referee(id));
        }
        self.schedule(
            deadline.plus(self.params.referee_timeout).plus(1),
            Timer::Referee(id),
        );
    }

    /// The question dispute `d` of job `j` asks the referee, `None` when it has
    /// none to ask (it is annulled): `(model, layer, agreed input)`, or for a
    /// generation session's stage-0 input leaf `(request, INPUT_LEAF_BASE + step,
    /// transcript)` ([`crate::referee::INPUT_LEAF_BASE`]). An input leaf past
    /// stage 0 is the previous stage's output, agreed by the session chain
    /// (module docs): no question. A layer question landing in the reserved
    /// range has none either.
    pub(crate) fn referee_question(
        d: &super::Dispute,
        j: &super::Job,
    ) -> Option<crate::referee::Question> {
        let spec = j.spec.stages.get(d.stage as usize)?;
        if let Some(q) = GenerationQuestion::of(d, &j.spec) {
            if q.layer().is_none() {
                if d.stage != 0 || d.agreed == Hash::ZERO {
                    return None;
                }
                let layer = crate::referee::INPUT_LEAF_BASE.checked_add(q.step())?;
                crate::referee::input_leaf_step(layer)?;
                return Some((j.spec.input, layer, d.agreed));
            }
        }
        let layer = d.referee_layer(spec.first_layer)?;
        // Reserved for input leaves and the availability probe.
        if layer >= crate::referee::INPUT_LEAF_BASE {
            return None;
        }
        Some((j.spec.model, layer, d.agreed))
    }

    /// Takes dispute `id` out of the referee's queue and index.
    fn leave_referee(&mut self, id: DisputeId) {
        self.referee_queue.remove(&id);
        self.referee_due.remove(&id);
        if let Some(q) = self.referee_keys.remove(&id) {
            if let Some(s) = self.referee_index.get_mut(&q) {
                s.remove(&id);
                if s.is_empty() {
                    self.referee_index.remove(&q);
                }
            }
        }
    }

    /// Per-block: disputes waiting for the referee whose question it answers
    /// now, or whose patience ran out, are resolved.
    ///
    /// Which disputes are asked: with a referee that lists its answers (a
    /// block's verdicts, [`Referee::answered`]), those waiting for one of
    /// those questions, found by question, plus those whose timer fired; a
    /// block without verdicts or timers costs nothing however many disputes
    /// wait. A referee that can answer anything is asked about every one.
    /// A question still unanswered `referee_timeout` blocks past the
    /// dispute's deadline annuls the dispute (the validators failed, not a
    /// party).
    pub(crate) fn run_referee(&mut self, referee: &dyn Referee, ctx: &mut BlockCtx) {
        let now = self.now();
        let due = std::mem::take(&mut self.referee_due);
        let asked: Vec<DisputeId> = match referee.answered() {
            Some(questions) => {
                let mut ids = due;
                for q in questions {
                    if let Some(s) = self.referee_index.get(&q) {
                        ids.extend(s.iter().copied());
                    }
                }
                ids.into_iter().collect()
            }
            None => self.referee_queue.iter().copied().collect(),
        };
        for id in asked {
            if !self.referee_queue.contains(&id) {
                continue;
            }
            let Some(d) = self.disputes.get(&id) else {
                self.leave_referee(id);
                continue;
            };
            if d.phase != DisputePhase::AwaitingReferee {
                self.leave_referee(id);
                continue;
            }
            let Some(j) = self.jobs.get(&d.job) else {
                self.leave_referee(id);
                continue;
            };
            let Some(spec) = j.spec.stages.get(d.stage as usize) else {
                self.leave_referee(id);
                continue;
            };
            let expired = now > d.deadline.plus(self.params.referee_timeout);
            let Some((model, layer, input)) = State::referee_question(d, j) else {
                self.leave_referee(id);
                self.resolve(id, Outcome::Annulled, Resolution::Annulled, ctx);
                continue;
            };
            let patient = now <= d.deadline;
            let answer = referee.execute_layer(&model, layer, &input);
            // No answer yet, or data the parties may still publish: ask again later.
            match answer {
                Err(RefereeError::Pending) if !expired => continue,
                Err(RefereeError::InputUnavailable | RefereeError::ModelUnavailable) if patient => {
                    continue
                }
                _ => {}
            }
            let input_leaf = crate::referee::input_leaf_step(layer).is_some();
            let (outcome, resolution) = match answer {
                Ok(out) => {
                    // What upholds each party: for a generation layer, the finding
                    // bound to the question; else (an inference layer, or stage 0's
                    // input leaf, derived from the request and the transcript) the
                    // party's own node.
                    let generation = GenerationQuestion::of(d, &j.spec).filter(|_| !input_leaf);
                    let upholds = |hi: &Hash| match &generation {
                        Some(q) => q.finding(hi),
                        None => *hi,
                    };
                    let refereed = Resolution::Refereed {
                        layer: match (&generation, input_leaf) {
                            (Some(q), _) => q.layer().unwrap_or(layer),
                            (None, true) => spec.first_layer,
                            (None, false) => layer,
                        },
                    };
                    if out == upholds(&d.defendant_hi) {
                        (Outcome::DefendantWins, refereed)
                    } else if out == upholds(&d.challenger_hi) {
                        (Outcome::ChallengerWins, refereed)
                    } else if generation.is_some() {
                        // Rows for another trace or leaf: the defendant named them.
                        (Outcome::ChallengerWins, Resolution::InputUnavailable)
                    } else {
                        (Outcome::BothLose, refereed)
                    }
                }
                // The defendant must publish the activations it claims; the blobs of
                // an input-leaf question are neither party's (annulled below).
                Err(RefereeError::InputUnavailable) if !input_leaf => {
                    (Outcome::ChallengerWins, Resolution::InputUnavailable)
                }
                Err(_) => (Outcome::Annulled, Resolution::Annulled),
            };
            self.leave_referee(id);
            self.resolve(id, outcome, resolution, ctx);
        }
    }

    /// Slashes a loser's stake and splits it; returns the amount slashed.
    pub(crate) fn slash(
        &mut self,
        loser: Address,
        winner: Option<Address>,
        payer: Address,
        ctx: &mut BlockCtx,
    ) -> Amount {
        self.slash_burning(loser, winner, payer, ctx).0
    }

    /// [`State::slash`], also returning the part burned.
    fn slash_burning(
        &mut self,
        loser: Address,
        winner: Option<Address>,
        payer: Address,
        ctx: &mut BlockCtx,
    ) -> (Amount, Amount) {
        let amount = self.take_stake(loser, self.params.slash_ppm);
        let (to_winner, to_requester, burned) = self.split(amount, winner, payer);
        let rp = self.reputation_params();
        let now = self.now().0;
        if let Some(p) = self.provider_mut(loser) {
            p.reputation.record_slash(amount.0, now, &rp);
        }
        ctx.emit(Event::Slashed {
            who: loser,
            amount,
            to_winner,
            to_requester,
            burned,
        });
        (amount, burned)
    }

    /// Splits a forfeited amount between winner, payer and burn.
    fn split(
        &mut self,
        amount: Amount,
        winner: Option<Address>,
        payer: Address,
    ) -> (Amount, Amount, Amount) {
        let to_winner = match winner {
            Some(_) => amount.mul_ppm(self.params.slash_winner_ppm),
            None => Amount::ZERO,
        };
        let to_requester = amount.mul_ppm(self.params.slash_requester_ppm);
        let burned = amount
            .saturating_sub(to_winner)
            .saturating_sub(to_requester);
        if let Some(w) = winner {
            self.credit(w, to_winner);
        }
        self.credit(payer, to_requester);
        self.burn(burned);
        (to_winner, to_requester, burned)
    }

    /// Punishes a losing challenger: forfeits an outside bond, slashes a
    /// provider challenger's stake. Returns the part burned.
    fn punish_challenger(
        &mut self,
        d: &Dispute,
        winner: Option<Address>,
        payer: Address,
        ctx: &mut BlockCtx,
    ) -> Amount {
        match d.kind {
            DisputeKind::External { bond } => {
                let (to_winner, to_requester, burned) = self.split(bond, winner, payer);
                ctx.emit(Event::BondForfeited {
                    who: d.challenger,
                    amount: bond,
                    to_winner,
                    to_requester,
                    burned,
                });
                burned
            }
            DisputeKind::Audit | DisputeKind::Replica => {
                self.slash_burning(d.challenger, winner, payer, ctx).1
            }
        }
    }

    /// Ends a dispute.
    ///
    /// ```text
    ///   upheld output   = the winner's claimed stage output (none if both lose or annulled)
    ///   every replica of the stage whose revealed output the outcome refutes
    ///   (≠ upheld; or = a loser's output when both lose) is slashed, not only
    ///   the two parties; when the challenger wins, every replica that revealed
    ///   its output is paid its bill.
    ///   defendant right / annulled → the stage goes on (fresh challenge window;
    ///                                the next stage's commit deadline restarts)
    ///   challenger right / both lose → the stage is cancelled and the job fails
    ///                                (fail_job: delivered stages are still paid)
    /// ```
    ///
    /// When the job fails, the part of this resolution's slashes that would
    /// be burned goes first to the payer, up to the bills of the job's other
    /// stages' honest work it pays for: honest work is paid from the
    /// cheater's slash first, the escrow second.
    fn resolve(
        &mut self,
        id: DisputeId,
        outcome: Outcome,
        resolution: Resolution,
        ctx: &mut BlockCtx,
    ) {
        let Some(d) = self.disputes.get(&id).cloned() else {
            return;
        };
        let Some(j) = self.jobs.get(&d.job) else {
            return;
        };
        let payer = j.payer;
        let stage_ops = j.billed_ops(d.stage as usize);
        let replicas: Vec<(Address, Hash, Amount)> = j.stages[d.stage as usize]
            .slots
            .iter()
            .filter_map(|s| s.assignment.as_ref())
            .filter_map(|a| a.result.map(|r| (a.provider, r.output, a.price)))
            .collect();
        if let Some(dm) = self.dispute_mut(id) {
            dm.phase = DisputePhase::Resolved;
        }
        self.schedule_prune(StateKey::Dispute(id));
        self.release_parties(id, [d.defendant, d.challenger]);
        let now = self.now();
        let rp = self.reputation_params();
        let winner = match outcome {
            Outcome::DefendantWins => Some(d.defendant),
            Outcome::ChallengerWins => Some(d.challenger),
            Outcome::BothLose | Outcome::Annulled => None,
        };
        let mut burned = Amount::ZERO;
        match outcome {
            Outcome::DefendantWins => {
                burned = burned.saturating_add(self.punish_challenger(
                    &d,
                    Some(d.defendant),
                    payer,
                    ctx,
                ));
            }
            Outcome::ChallengerWins | Outcome::BothLose => {
                let (_, b) = self.slash_burning(d.defendant, winner, payer, ctx);
                burned = burned.saturating_add(b);
                if outcome == Outcome::BothLose {
                    burned = burned.saturating_add(self.punish_challenger(&d, None, payer, ctx));
                } else {
                    match d.kind {
                        DisputeKind::External { bond } => {
                            self.credit(d.challenger, bond);
                            ctx.emit(Event::BondReturned {
                                who: d.challenger,
                                amount: bond,
                            });
                        }
                        DisputeKind::Audit => {
                            // The auditor did the work and was right: it earns its fee.
                            let fee =
                                Amount::cost(stage_ops, d.challenger_price).unwrap_or_default();
                            let paid = self.pay_from_escrow(d.job, d.challenger, fee);
                            if let Some(p) = self.provider_mut(d.challenger) {
                                p.reputation.record_success(paid.0, now.0, &rp);
                            }
                            ctx.emit(Event::AuditPaid {
                                job: d.job,
                                stage: d.stage,
                                auditor: d.challenger,
                                fee: paid,
                            });
                        }
                        DisputeKind::Replica => {}
                    }
                }
                self.exclude(d.job, d.defendant);
            }
            Outcome::Annulled => {
                if let DisputeKind::External { bond } = d.kind {
                    self.credit(d.challenger, bond);
                    ctx.emit(Event::BondReturned {
                        who: d.challenger,
                        amount: bond,
                    });
                }
            }
        }
        // Every other replica the outcome refutes is slashed too.
        let upheld = match outcome {
            Outcome::DefendantWins => Some(d.defendant_output),
            Outcome::ChallengerWins => Some(d.challenger_output),
            Outcome::BothLose | Outcome::Annulled => None,
        };
        let refuted: Vec<Hash> = match outcome {
            Outcome::DefendantWins => vec![d.challenger_output],
            Outcome::ChallengerWins => vec![d.defendant_output],
            Outcome::BothLose => vec![d.defendant_output, d.challenger_output],
            Outcome::Annulled => Vec::new(),
        };
        for &(p, output, _) in &replicas {
            if p == d.defendant || p == d.challenger || outcome == Outcome::Annulled {
                continue;
            }
            let wrong = match upheld {
                Some(u) => output != u,
                None => refuted.contains(&output),
            };
            if wrong {
                let (_, b) = self.slash_burning(p, winner, payer, ctx);
                burned = burned.saturating_add(b);
                self.exclude(d.job, p);
            }
        }
        // The challenger was right: every replica that revealed its output did
        // honest work and is paid (the challenger itself when it is a replica).
        // Not the defendant: a generation stage's defendant may have claimed
        // the challenger's output over another trace, and lost on that trace.
        if outcome == Outcome::ChallengerWins {
            for &(p, output, price) in &replicas {
                if p == d.defendant || output != d.challenger_output {
                    continue;
                }
                let bill = Amount::cost(stage_ops, price).unwrap_or_default();
                let paid = self.pay_from_escrow(d.job, p, bill);
                if let Some(pm) = self.provider_mut(p) {
                    pm.reputation.record_success(paid.0, now.0, &rp);
                }
                ctx.emit(Event::StagePaid {
                    job: d.job,
                    stage: d.stage,
                    provider: p,
                    amount: paid,
                });
            }
        }
        // The auditor's assignment ends with its dispute.
        if d.kind == DisputeKind::Audit {
            if let Some(p) = self.provider_mut(d.challenger) {
                p.open = p.open.saturating_sub(1);
            }
        }
        ctx.emit(Event::DisputeResolved {
            dispute: id,
            winner,
            resolution,
        });
        // What happens to the stage.
        let still_disputed = self
            .jobs
            .get(&d.job)
            .and_then(|j| j.stages.get(d.stage as usize))
            .is_some_and(|s| s.phase == StagePhase::Disputed { dispute: id });
        if !still_disputed {
            return;
        }
        match outcome {
            Outcome::DefendantWins | Outcome::Annulled => {
                self.open_window(d.job, d.stage, ctx);
                // The next stage's input stood trial: its commit deadline
                // starts over (a downstream provider never pays for an
                // upstream dispute).
                self.extend_next_stage(d.job, d.stage + 1);
            }
            Outcome::ChallengerWins | Outcome::BothLose => {
                self.cancel_stage(d.job, d.stage);
                let active = self
                    .jobs
                    .get(&d.job)
                    .is_some_and(|j| j.status == JobStatus::Active);
                if active {
                    let owed = self.honest_bills(d.job, d.stage);
                    let back = if burned < owed { burned } else { owed };
                    if back.0 > 0 {
                        self.meta.burned = self.meta.burned.saturating_sub(back);
                        self.credit(payer, back);
                        ctx.emit(Event::PayerCompensated {
                            job: d.job,
                            payer,
                            amount: back,
                        });
                    }
                    self.fail_job(d.job, ctx);
                } else {
                    self.settle_if_done(d.job, ctx);
                }
            }
        }
    }

    /// Adds `who` to the providers a job may no longer use.
    fn exclude(&mut self, job: JobId, who: Address) {
        if let Some(jm) = self.job_mut(job) {
            jm.exclude(who);
        }
    }

    /// What the payer of `job` pays for its honest delivered work outside
    /// stage `except`: the bills of every replica whose revealed output is its
    /// stage's agreed result, in stages that delivered one (finalized, or
    /// still being verified).
    fn honest_bills(&self, job: JobId, except: u32) -> Amount {
        let Some(j) = self.jobs.get(&job) else {
            return Amount::ZERO;
        };
        let mut total = Amount::ZERO;
        for (i, st) in j.stages.iter().enumerate() {
            if i as u32 == except || matches!(st.phase, StagePhase::Cancelled) {
                continue;
            }
            let Some(agreed) = st.result else { continue };
            let ops = j.billed_ops(i);
            for a in st.slots.iter().filter_map(|s| s.assignment.as_ref()) {
                if a.result.is_some_and(|r| r.output == agreed.output) {
                    let bill = Amount::cost(ops, a.price).unwrap_or_default();
                    total = total.saturating_add(bill);
                }
            }
        }
        total
    }
}

/// Whether an auditor's or challenger's `result` agrees with a stage's `agreed`
/// one: the same output — and for a generation stage the same trace root and
/// steps too. A session stage's output claim is public before its audit (for
/// an honest session it is the next stage's input claim, published with that
/// stage's `CommitSession`), so an auditor that copied it without replaying
/// would otherwise agree; the trace root it cannot know before the reveal.
fn agrees_with(generation: bool, result: &StageResult, agreed: &StageResult) -> bool {
    result.output == agreed.output
        && (!generation || (result.trace_root == agreed.trace_root && result.steps == agreed.steps))
}
