//! The dispute party: the open disputes this provider is defendant or challenger in.
//!
//! ```text
//!  inference dispute (over the stage's layer trace, from the journal's leaves):
//!    Bisecting, not moved this round ─▶ post_move: Bisect { my leaf at the midpoint, proof }
//!    AwaitingReferee (or lo = 0)     ─▶ provide: replay up to leaf lo (ReplayTask), check
//!                                       its hash is `agreed`, store it, upload it
//!  training dispute, once the step-level game found the step (`dispute.step`):
//!    play_step: replay the stage to the state before that step (StepReplay), then
//!    StepRoots, not moved            ─▶ StepRoot { root of the unit leaves, proofs }
//!    Bisecting, not moved            ─▶ Bisect over the unit leaves
//!    AwaitingReferee                 ─▶ provide_carry: the carry entering unit lo, checked,
//!                                       uploaded
//! ```
//!
//! The referee re-executes the one layer (or unit) the parties disagree on from what
//! both agree on (`dispute.agreed`); if neither party makes it available within
//! `dispute_timeout` blocks, the defendant loses. A `silent` daemon does not defend its
//! own results; every other mode plays disputes honestly from what it computed.

use std::sync::Arc;

use agentic_protocol::state::{Dispute, DisputePhase, Job};
use agentic_protocol::{DisputeId, Hash, JobId, Leaves, TxBody};

use super::register::send_tx;
use super::tasks::{Provision, ReplayTask, StepPlay, StepReplay, StepWork, TaskError, Workload};
use super::{Daemon, ProviderError};
use crate::journal::{Role, StageRecord};
use crate::misbehave;

impl Daemon {
    /// One turn of a dispute this provider is a party to: make the agreed activation
    /// available when the referee may need it, and post this round's move.
    pub(super) async fn play(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        jobs: &[(JobId, Job)],
    ) -> Result<(), ProviderError> {
        let Some(rec) = self.journal.get(d.job, d.stage).cloned() else {
            return Err(ProviderError::NothingToDefend {
                job: d.job,
                stage: d.stage,
            });
        };
        if d.step.is_some() {
            return self.play_step(id, d, &rec, jobs).await;
        }
        let on_chain = d.party(self.me).map(|p| p.root);
        if rec.leaves.is_empty() || on_chain != Some(rec.result.trace_root) {
            return Err(ProviderError::NoTrace {
                job: d.job,
                stage: d.stage,
                root: on_chain,
            });
        }
        let leaves = Leaves::new(rec.leaves.clone());
        // (A training dispute's referee needs a carry inside the disputed step, not a
        // state: see `play_step`.)
        if d.step_units == 0 && (d.phase == DisputePhase::AwaitingReferee || d.game.lo() == 0) {
            self.provide(id, d, &rec, jobs).await?;
        }
        self.post_move(id, d, rec.role, &leaves, None).await
    }

    /// Posts this party's next move in dispute `id` over `leaves` (the stage's trace,
    /// or one step's unit leaves: [`Leaves::next_move`] decides which move), unless it
    /// is not our turn or this daemon is `silent` about its own results.
    async fn post_move(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        role: Role,
        leaves: &Leaves,
        step: Option<u32>,
    ) -> Result<(), ProviderError> {
        // `silent` does not defend its own results.
        if role == Role::Stage && self.config.misbehave.is_some_and(|m| !m.answers_disputes()) {
            return Ok(());
        }
        let Some(tx) = leaves
            .next_move(id, d, self.me)
            .map_err(|source| ProviderError::Move {
                dispute: id,
                step,
                source,
            })?
        else {
            return Ok(());
        };
        let defendant = d.defendant == self.me;
        let root_posted = matches!(tx, TxBody::StepRoot { .. });
        let mid = d.game.midpoint();
        send_tx(&self.client, &self.config, tx).await?;
        if root_posted {
            self.status().step_roots_posted += 1;
            tracing::info!(dispute = id.0, ?step, defendant, "step root posted");
        } else {
            self.status().bisect_moves += 1;
            tracing::info!(
                dispute = id.0,
                ?step,
                ?mid,
                defendant,
                "bisection move posted"
            );
        }
        Ok(())
    }

    /// One turn of a training dispute that reached one step (`d.step`): replay this
    /// party's own computation to the state before that step and its unit leaves (in
    /// the background, once), then post the step root (`StepRoots`), this round's
    /// move over the units (`Bisecting`), or the agreed carry for the referee
    /// (`AwaitingReferee`).
    async fn play_step(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        rec: &StageRecord,
        jobs: &[(JobId, Job)],
    ) -> Result<(), ProviderError> {
        let Some(step) = d.step else {
            return Ok(());
        };
        let work = match self.step_plays.remove(&id) {
            Some(StepPlay::Ready(w)) => w,
            Some(StepPlay::Failed) => {
                self.step_plays.insert(id, StepPlay::Failed);
                return Ok(());
            }
            Some(StepPlay::Replaying(h)) if !h.is_finished() => {
                self.step_plays.insert(id, StepPlay::Replaying(h));
                return Ok(());
            }
            Some(StepPlay::Replaying(h)) => {
                match h.await.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(w) => Arc::new(w),
                    Err(e) => {
                        // Try again next turn (a fetch may have failed).
                        return Err(ProviderError::StepReplay {
                            dispute: id,
                            detail: e,
                        });
                    }
                }
            }
            None => {
                let job = match jobs.iter().find(|(j, _)| *j == d.job) {
                    Some((_, j)) => j.clone(),
                    None => self.client.job(d.job).await?,
                };
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
                self.step_plays
                    .insert(id, StepPlay::Replaying(tokio::spawn(task.run())));
                return Ok(());
            }
        };
        self.step_plays.insert(id, StepPlay::Ready(work.clone()));
        if d.phase == DisputePhase::AwaitingReferee {
            return self.provide_carry(id, d, &work).await;
        }
        let leaves = Leaves::new(work.leaves.clone());
        self.post_move(id, d, rec.role, &leaves, Some(step)).await
    }

    /// Makes the carry the referee re-runs from — `d.agreed`, the input of unit `lo`
    /// of the disputed step — available on the node, once per dispute.
    async fn provide_carry(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        work: &Arc<StepWork>,
    ) -> Result<(), ProviderError> {
        let key = (id, d.agreed);
        if self.provisions.contains_key(&key) {
            return Ok(());
        }
        let (w, k, mode) = (work.clone(), d.game.lo(), work.mode);
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
            self.provisions.insert(key, Provision::Failed);
            return Ok(());
        }
        self.fetcher.store().put(&d.agreed, &bytes)?;
        self.client.put_blob(bytes).await?;
        self.provisions.insert(key, Provision::Done);
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
    /// the node. Replays this party's own computation up to leaf `lo` when the store
    /// lacks it, and checks the replay hashes to `agreed`.
    async fn provide(
        &mut self,
        id: DisputeId,
        d: &Dispute,
        rec: &StageRecord,
        jobs: &[(JobId, Job)],
    ) -> Result<(), ProviderError> {
        let key = (id, d.agreed);
        let store = self.fetcher.store().clone();
        match self.provisions.remove(&key) {
            Some(p @ (Provision::Done | Provision::Failed)) => {
                self.provisions.insert(key, p);
                return Ok(());
            }
            Some(Provision::Replaying(h)) if !h.is_finished() => {
                self.provisions.insert(key, Provision::Replaying(h));
                return Ok(());
            }
            Some(Provision::Replaying(h)) => {
                match h.await.map_err(|e| e.to_string()).and_then(|r| r) {
                    Ok(Some(got)) if got == d.agreed => {}
                    Ok(got) => {
                        // Not this party's activation: the other party must provide it.
                        tracing::warn!(
                            dispute = id.0,
                            agreed = %d.agreed.to_hex(),
                            replayed = ?got,
                            "no activation of ours hashes to the agreed leaf"
                        );
                        self.provisions.insert(key, Provision::Failed);
                        return Ok(());
                    }
                    // Try again next turn (a fetch may have failed).
                    Err(e) => {
                        return Err(ProviderError::Replay {
                            dispute: id,
                            detail: e,
                        })
                    }
                }
            }
            None if store.size(&d.agreed)?.is_none() => {
                let job = match jobs.iter().find(|(j, _)| *j == d.job) {
                    Some((_, j)) => j.clone(),
                    None => self.client.job(d.job).await?,
                };
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
                self.provisions
                    .insert(key, Provision::Replaying(tokio::spawn(task.run())));
                return Ok(());
            }
            None => {}
        }
        let bytes = store
            .get(&d.agreed)?
            .ok_or(ProviderError::AgreedVanished { dispute: id })?;
        self.client.put_blob(bytes).await?;
        self.provisions.insert(key, Provision::Done);
        self.status().activations_provided += 1;
        tracing::info!(
            dispute = id.0,
            agreed = %d.agreed.to_hex(),
            "agreed activation available for the referee"
        );
        Ok(())
    }
}
