//! The dispute party: the open disputes this provider is defendant or challenger in.
//!
//! ```text
//!  inference dispute (over the stage's layer trace, from the journal's leaves):
//!    Bisecting, not moved this round ─▶ plan_move: Bisect { my leaf at the midpoint, proof }
//!    AwaitingReferee (or lo = 0)     ─▶ Provide: replay up to leaf lo (ReplayTask), check
//!                                       its hash is `agreed`, store it, upload it
//!  training dispute, once the step-level game found the step (`dispute.step`):
//!    plan_step: ReplayStep, the stage to the state before that step (StepReplay), then
//!    StepRoots, not moved            ─▶ StepRoot { root of the unit leaves, proofs }
//!    Bisecting, not moved            ─▶ Bisect over the unit leaves
//!    AwaitingReferee                 ─▶ ProvideCarry: the carry entering unit lo, checked,
//!                                       uploaded
//! ```
//!
//!  generation dispute (the descent over the stage's (step, layer) trace tree):
//!    Bisecting, not moved this round ─▶ Bisect { left child node, proof: [right] } of the
//!                                       game's span, from the journal's leaves
//!    StepRoots, defendant            ─▶ Provide: the disputed layer's input rows for the
//!                                       prefix (replayed from the prompt + transcript),
//!                                       proven against our root, stored, uploaded,
//!                                       named (StepRoot { root: the blob })
//!
//! The referee re-executes the one layer (or unit) the parties disagree on from what
//! both agree on (`dispute.agreed`); if neither party makes it available within
//! `dispute_timeout` blocks, the defendant loses. A `silent` daemon does not defend its
//! own results; every other mode plays disputes honestly from what it computed.

use std::sync::Arc;

use agentic_compute::llm::referee::{PrefixHeader, PrefixRows};
use agentic_compute::llm::stage::GenerationRequest;
use agentic_protocol::referee::GenerationQuestion;
use agentic_protocol::state::{Dispute, DisputePhase, Job};
use agentic_protocol::{DisputeId, Hash, Leaves, TxBody};

use super::plan::{send, Action, Actor, Landed, Me, Stuck, TxKey, View};
use super::tasks::{ReplayTask, StepReplay, StepWork, TaskError, Workload};
use super::{Daemon, ProviderError};
use crate::journal::Role;
use crate::misbehave;

/// One turn of a dispute this provider is a party to: make the agreed activation
/// available when the referee may need it, and post this round's move.
pub(crate) fn plan_dispute(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: DisputeId,
    d: &Dispute,
    out: &mut Vec<Action>,
) {
    let Some(rec) = view.journal.get(d.job, d.stage) else {
        out.push(Action::Stuck(Stuck::NothingToDefend {
            job: d.job,
            stage: d.stage,
        }));
        return;
    };
    let generation = view.jobs.get(&d.job).filter(|j| j.is_generation());
    if let (Some(step), None) = (d.step, generation) {
        return plan_step(view, me, actor, id, d, rec.role, step, out);
    }
    let on_chain = d.party(me.address).map(|p| p.root);
    if rec.leaves.is_empty() || on_chain != Some(rec.result.trace_root) {
        out.push(Action::Stuck(Stuck::NoTrace {
            job: d.job,
            stage: d.stage,
            root: on_chain,
        }));
        return;
    }
    if let Some(job) = generation {
        return plan_generation(view, me, actor, id, d, rec.role, &rec.leaves, job, out);
    }
    // (A training dispute's referee needs a carry inside the disputed step, not a
    // state: see `plan_step`.)
    if d.step_units == 0
        && (d.phase == DisputePhase::AwaitingReferee || d.game.lo() == 0)
        && !view.local.provided.contains(&(id, d.agreed))
        && !view.local.providing.contains(&(id, d.agreed))
    {
        out.push(Action::Provide { dispute: id });
    }
    let leaves = Leaves::new(rec.leaves.clone());
    plan_move(view, me, actor, id, d, rec.role, &leaves, None, out);
}

/// One turn of a generation dispute (module docs): this round's descent move, or — the
/// descent down to one leaf, as the defendant — the rows the referee needs.
#[allow(clippy::too_many_arguments)]
fn plan_generation(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: DisputeId,
    d: &Dispute,
    role: Role,
    leaves: &[Hash],
    job: &Job,
    out: &mut Vec<Action>,
) {
    if role == Role::Stage && actor.mode().is_some_and(|m| !m.answers_disputes()) {
        return;
    }
    let Some(party) = d.party(me.address) else {
        return;
    };
    if party.moved || view.local.pending.contains(&TxKey::Move(id)) {
        return;
    }
    match d.phase {
        DisputePhase::Bisecting => {
            let Some((left, right)) =
                agentic_protocol::bisection::descent_children(leaves, &d.game)
            else {
                out.push(Action::Stuck(Stuck::NoTrace {
                    job: d.job,
                    stage: d.stage,
                    root: Some(party.root),
                }));
                return;
            };
            tracing::info!(
                dispute = id.0,
                lo = d.game.lo(),
                hi = d.game.hi(),
                defendant = party.defendant,
                "posting a descent move"
            );
            send(
                view,
                out,
                TxKey::Move(id),
                TxBody::Bisect {
                    dispute: id,
                    leaf: left,
                    proof: vec![right],
                },
                Landed::Moved,
            );
        }
        DisputePhase::StepRoots
            if party.defendant
                && GenerationQuestion::of(d, &job.spec).is_some()
                && !view.local.provided.contains(&(id, Hash::ZERO)) =>
        {
            out.push(Action::Provide { dispute: id });
        }
        _ => {}
    }
}

/// This party's next move in dispute `id` over `leaves` (the stage's trace, or one
/// step's unit leaves: [`Leaves::next_move`] decides which move), unless it is not our
/// turn, a move is in flight, or this actor is `silent` about its own results.
#[allow(clippy::too_many_arguments)]
fn plan_move(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: DisputeId,
    d: &Dispute,
    role: Role,
    leaves: &Leaves,
    step: Option<u32>,
    out: &mut Vec<Action>,
) {
    // `silent` does not defend its own results.
    if role == Role::Stage && actor.mode().is_some_and(|m| !m.answers_disputes()) {
        return;
    }
    if view.local.pending.contains(&TxKey::Move(id)) {
        return;
    }
    match leaves.next_move(id, d, me.address) {
        Err(source) => out.push(Action::Stuck(Stuck::Move {
            dispute: id,
            step,
            source,
        })),
        Ok(None) => {}
        Ok(Some(tx)) => {
            let landed = if matches!(tx, TxBody::StepRoot { .. }) {
                Landed::StepRootPosted
            } else {
                Landed::Moved
            };
            tracing::info!(
                dispute = id.0,
                ?step,
                mid = ?d.game.midpoint(),
                defendant = d.defendant == me.address,
                "posting a move"
            );
            send(view, out, TxKey::Move(id), tx, landed);
        }
    }
}

/// One turn of a training dispute that reached one step: replay this party's own
/// computation to the state before that step and its unit leaves (in the background,
/// once), then post the step root (`StepRoots`), this round's move over the units
/// (`Bisecting`), or the agreed carry for the referee (`AwaitingReferee`).
#[allow(clippy::too_many_arguments)]
fn plan_step(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: DisputeId,
    d: &Dispute,
    role: Role,
    step: u32,
    out: &mut Vec<Action>,
) {
    let Some(work) = view.local.step_work.get(&id) else {
        if !view.local.step_replaying.contains(&id) {
            out.push(Action::ReplayStep { dispute: id });
        }
        return;
    };
    if d.phase == DisputePhase::AwaitingReferee {
        if !view.local.provided.contains(&(id, d.agreed)) {
            out.push(Action::ProvideCarry { dispute: id });
        }
        return;
    }
    let leaves = Leaves::new(work.leaves.clone());
    plan_move(view, me, actor, id, d, role, &leaves, Some(step), out);
}

impl Daemon {
    /// Starts replaying the stage of training dispute `id` to its step, in the
    /// background.
    pub(super) async fn replay_step(
        &mut self,
        id: DisputeId,
        d: &Dispute,
    ) -> Result<(), ProviderError> {
        let (Some(step), Some(rec)) = (d.step, self.journal.get(d.job, d.stage).cloned()) else {
            return Ok(());
        };
        let job = self.job(d.job).await?;
        let spec = job.spec.stages[d.stage as usize];
        let first = u64::from(spec.first_layer);
        let task = StepReplay {
            fetcher: self.fetcher.clone(),
            models: self.models.clone(),
            sources: self.sources(&job, d.stage).await,
            model: job.spec.model,
            steps: first..first + u64::from(spec.layers),
            input: rec.result.input,
            mode: rec.misbehaviour,
            step: u64::from(step),
        };
        tracing::info!(dispute = id.0, step, "replaying to the disputed step");
        self.step_replays.insert(id, tokio::spawn(task.run()));
        Ok(())
    }

    /// A generation dispute's defendant names the referee's rows (module docs): the
    /// input of the disputed leaf's layer for every position up to its step, recomputed
    /// from the prompt and the transcript, proven against our trace, stored, uploaded,
    /// then `StepRoot { root: the blob }`. Once per dispute; a failure is reported and
    /// not retried (the ledger then rules against us after `dispute_timeout`).
    async fn provide_rows(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        job: &Job,
    ) -> Result<(), ProviderError> {
        self.local.provided.insert((id, Hash::ZERO));
        let (Some(q), Some(rec)) = (
            GenerationQuestion::of(d, &job.spec),
            self.journal.get(d.job, d.stage).cloned(),
        ) else {
            return Ok(());
        };
        match self.prefix_rows(job, q, rec.leaves).await {
            Ok(bytes) => {
                let hash = Hash(*blake3::hash(&bytes).as_bytes());
                self.fetcher.store().put(&hash, &bytes)?;
                self.client.put_blob(bytes).await?;
                self.status().activations_provided += 1;
                tracing::info!(
                    dispute = id.0,
                    step = q.step(),
                    layer = ?q.layer(),
                    rows = %hash.to_hex(),
                    "prefix rows available for the referee"
                );
                let body = TxBody::StepRoot {
                    dispute: id,
                    root: hash,
                    first_proof: Vec::new(),
                    last_proof: Vec::new(),
                };
                self.sender
                    .send(TxKey::Move(id), body, Landed::StepRootPosted)
                    .await?;
            }
            Err(e) => self.report(&format!("dispute {}: the prefix rows: {e}", id.0)),
        }
        Ok(())
    }

    /// The bytes of the prefix rows of question `q`, from this party's trace `leaves`.
    async fn prefix_rows(
        &mut self,
        job: &Job,
        q: GenerationQuestion,
        leaves: Vec<Hash>,
    ) -> Result<Vec<u8>, TaskError> {
        let last = job.stages.len().saturating_sub(1) as u32;
        let sources = self.sources(job, last).await;
        let quiet = |_: u64, _: u64| {};
        let m = match &*super::tasks::load_workload(
            &self.fetcher,
            &self.models,
            job.spec.model,
            &sources,
        )
        .await?
        {
            Workload::Llm(m) => m.clone(),
            _ => return Err(TaskError::Failed("not an LLM".into())),
        };
        // The request (prompt) and the transcript (the last stage's claimed output).
        let transcript = job.stages[last as usize]
            .result
            .map(|r| r.output)
            .ok_or_else(|| TaskError::Failed("the last stage has no result".into()))?;
        let mut blobs = Vec::new();
        for hash in [job.spec.input, transcript] {
            self.fetcher
                .fetch(&hash, &sources, &quiet)
                .await
                .map_err(|e| TaskError::Failed(format!("fetching {}: {e}", hash.to_hex())))?;
            blobs.push(
                self.fetcher
                    .store()
                    .get(&hash)
                    .map_err(|e| TaskError::Failed(e.to_string()))?
                    .ok_or_else(|| TaskError::Failed("a fetched blob vanished".into()))?,
            );
        }
        let req = GenerationRequest::decode(&blobs[0])
            .map_err(|e| TaskError::Failed(format!("the request: {e}")))?;
        let tokens = crate::session::run::transcript_from_bytes(&blobs[1])
            .ok_or_else(|| TaskError::Failed("the transcript blob".into()))?;
        let header = PrefixHeader {
            model: q.model,
            root: q.root,
            leaves: q.leaves,
            width: q.width,
            first_layer: q.first_layer,
            leaf: q.leaf,
        };
        tokio::task::spawn_blocking(move || {
            let mut fed = req.prompt.clone();
            fed.extend_from_slice(&tokens);
            PrefixRows::build(&m.model, header, &fed, req.prompt.len(), &leaves)
                .map(|b| b.encode())
                .map_err(|e| TaskError::Failed(e.to_string()))
        })
        .await
        .map_err(|e| TaskError::Failed(e.to_string()))?
    }

    /// Makes the carry the referee re-runs from — `d.agreed`, the input of unit `lo`
    /// of the disputed step — available on the node, once per dispute.
    pub(super) async fn provide_carry(
        &mut self,
        id: DisputeId,
        d: &Dispute,
    ) -> Result<(), ProviderError> {
        let key = (id, d.agreed);
        let Some(work) = self.local.step_work.get(&id).cloned() else {
            return Ok(());
        };
        let (w, k, mode): (Arc<StepWork>, u32, _) = (work.clone(), d.game.lo(), work.mode);
        let bytes = tokio::task::spawn_blocking(move || {
            let Workload::Training(t) = &*w.task else {
                return Err(TaskError::Failed("not a training task".into()));
            };
            misbehave::carry_bytes_at(mode, t, &w.steps, &w.state_before, k)
                .map_err(|e| TaskError::Failed(e.to_string()))
        })
        .await?
        .map_err(|e| ProviderError::Carry {
            dispute: id,
            unit: k,
            detail: e.to_string(),
        })?;
        if Hash(*blake3::hash(&bytes).as_bytes()) != d.agreed {
            tracing::warn!(
                dispute = id.0,
                agreed = %d.agreed.to_hex(),
                "no carry of ours hashes to the agreed leaf"
            );
            self.local.provided.insert(key);
            return Ok(());
        }
        self.fetcher.store().put(&d.agreed, &bytes)?;
        self.client.put_blob(bytes).await?;
        self.local.provided.insert(key);
        self.status().activations_provided += 1;
        tracing::info!(
            dispute = id.0,
            unit = k,
            agreed = %d.agreed.to_hex(),
            "agreed carry available for the referee"
        );
        Ok(())
    }

    /// Makes `d.agreed` — the activation entering the disputed stage's layer
    /// `first_layer + lo` — available to the referee: in this data plane's store and on
    /// the node. Replays this party's own computation up to leaf `lo` (in the
    /// background) when the store lacks it; [`Daemon::observe`] checks the replay
    /// hashes to `agreed`.
    pub(super) async fn provide(
        &mut self,
        id: DisputeId,
        d: &Dispute,
    ) -> Result<(), ProviderError> {
        let job = self.job(d.job).await?;
        if job.is_generation() {
            return self.provide_rows(id, d, &job).await;
        }
        let key = (id, d.agreed);
        let store = self.fetcher.store().clone();
        if store.size(&d.agreed)?.is_none() {
            let Some(rec) = self.journal.get(d.job, d.stage).cloned() else {
                return Ok(());
            };
            let job = self.job(d.job).await?;
            let spec = job.spec.stages[d.stage as usize];
            let task = ReplayTask {
                fetcher: self.fetcher.clone(),
                models: self.models.clone(),
                sources: self.sources(&job, d.stage).await,
                model: job.spec.model,
                layers: spec.first_layer as usize..(spec.first_layer + spec.layers) as usize,
                input: rec.result.input,
                mode: rec.misbehaviour,
                leaf: d.game.lo() as usize,
            };
            tracing::info!(
                dispute = id.0,
                lo = d.game.lo(),
                "replaying to the agreed leaf"
            );
            self.replays.insert(key, tokio::spawn(task.run()));
            return Ok(());
        }
        let bytes = store
            .get(&d.agreed)?
            .ok_or(ProviderError::AgreedVanished { dispute: id })?;
        self.client.put_blob(bytes).await?;
        self.local.provided.insert(key);
        self.status().activations_provided += 1;
        tracing::info!(
            dispute = id.0,
            agreed = %d.agreed.to_hex(),
            "agreed activation available for the referee"
        );
        Ok(())
    }
}
