//! Training jobs: "N deterministic steps of a model on a data file", cut into step
//! ranges run by different providers.
//!
//! ```text
//!   JobRequest { model, input: Training { data, steps, batch, seq, optimizer, schedule, … } }
//!        │ prepare (pure)
//!        ▼
//!   model bundle ──(GPT-2 shape, weights)──▶ TrainTask (AGTRAIN1: shape, optimizer, schedule,
//!        │                                            batch, seq, seed, steps, data)  ─ blake3 ─▶ spec.model
//!        └── weights (or a seed) ──▶ initial TrainState (AGSTATE1) ─────────────────── blake3 ─▶ spec.input
//!   stages = step ranges: even (Ledger, Named) or the partitioner's (Auto);
//!            ops = steps × step_ops, known before anything runs
//!        │ submit, wait (the inference code paths: the two blobs are uploaded the same way)
//!        ▼
//!   training_result: task blob + last stage's output state, both hash-checked;
//!            the state's step log must reproduce every stage's agreed trace root
//!        ──▶ new weights (GptParams → model.safetensors), loss and root of every step
//! ```
//!
//! The ledger does not know a training job from an inference one: a stage's
//! `[first_layer, first_layer + layers)` is its step range, its input and output are
//! state hashes, and stage `i + 1` starts from stage `i`'s agreed output
//! (`agentic_compute::train::task` explains why a cut run equals the whole run).

use agentic_compute::bundle::Bundle;
use agentic_compute::train::task::{
    gpt_of_bundle, Init, TaskError, TaskLimits, TokenWidth, TrainState, TrainTask,
};
use agentic_compute::train::{units, GptConfig, GptParams};
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Hash, JobId};
use serde::Serialize;

use super::error::RequesterError;
use super::placement;
use super::request::{JobRequest, OfferView, PlacementChoice, TrainingInput};
use super::spec::{finish_spec, PreparedJob};

/// What a prepared training job is, beyond its blobs and spec.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainingSummary {
    /// Optimizer steps.
    pub steps: u64,
    /// Operations of one step (the training op model's count).
    pub step_ops: u64,
    /// Sequences per batch.
    pub batch: usize,
    /// Positions per sequence.
    pub seq: usize,
    /// Tokens in the data.
    pub tokens: usize,
    /// Parameter elements.
    pub params: usize,
    /// The model's shape.
    pub config: GptConfig,
    /// Where the weights start: `weights of MODEL` or `seed S`.
    pub init: String,
}

/// Prepares a training job (called by [`super::prepare`] for
/// [`super::JobInput::Training`]).
pub(crate) fn prepare_training(
    req: &JobRequest,
    t: &TrainingInput,
    offers: &[OfferView],
) -> Result<PreparedJob, RequesterError> {
    let model_err = |reason| RequesterError::Model {
        model: req.model.clone(),
        reason,
    };
    let train_err = |reason| RequesterError::Training {
        model: req.model.clone(),
        reason,
    };
    if t.data.is_empty() {
        return Err(RequesterError::EmptyInput(
            "the training data is empty".into(),
        ));
    }
    let bundle = Bundle::of(&req.model).map_err(model_err)?;
    let (config, weights) = gpt_of_bundle(&bundle).map_err(train_err)?;
    let task = TrainTask {
        config,
        optimizer: t.optimizer,
        schedule: t.schedule,
        steps: t.steps,
        batch: t.batch,
        seq: t.seq,
        data_seed: t.data_seed,
        token_width: TokenWidth::U8,
        data: t.data.clone(),
    };
    task.validate(TaskLimits::default()).map_err(train_err)?;
    if req.stages as u64 > t.steps {
        return Err(RequesterError::MoreStagesThanSteps {
            stages: req.stages,
            steps: t.steps,
        });
    }
    let (init, init_name) = match t.init_seed {
        None => (
            Init::Safetensors(weights),
            format!("weights of {}", req.model),
        ),
        Some(s) => (Init::Seed(s), format!("seed {s}")),
    };
    let state = task.initial_state(init).map_err(train_err)?;
    let init_bytes = state.encode();
    let steps = usize::try_from(t.steps).map_err(|_| RequesterError::MoreStagesThanSteps {
        stages: req.stages,
        steps: t.steps,
    })?;
    let step_ops = task.step_ops();
    let layer_ops = vec![step_ops; steps];
    // The state grows by one 36-byte log record per step.
    let boundary_bytes: Vec<u64> = (0..=steps as u64)
        .map(|i| init_bytes.len() as u64 + 36 * i)
        .collect();
    let (ranges, plan) = match &req.placement {
        PlacementChoice::Ledger => (
            placement::even_split(steps, req.stages).ok_or(RequesterError::ZeroStages)?,
            None,
        ),
        PlacementChoice::Named(names) => {
            if names.len() != req.stages {
                return Err(RequesterError::PlacementLength {
                    named: names.len(),
                    stages: req.stages,
                });
            }
            let even =
                placement::even_split(steps, req.stages).ok_or(RequesterError::ZeroStages)?;
            let (r, p) =
                placement::named_ranges(req, offers, names, even, &layer_ops, &boundary_bytes)?;
            (r, Some(p))
        }
        PlacementChoice::Auto => {
            let (r, p) = placement::auto(req, offers, &layer_ops, &boundary_bytes)?;
            (r, Some(p))
        }
    };
    let model_hash = task.hash();
    let input_hash = state.hash();
    let (spec, escrow) = finish_spec(
        req,
        model_hash,
        input_hash,
        &ranges,
        &layer_ops,
        &plan,
        units::step_units(&task),
    )?;
    let summary = TrainingSummary {
        steps: t.steps,
        step_ops,
        batch: t.batch,
        seq: t.seq,
        tokens: task.tokens(),
        params: state.params.params.num_elements(),
        config,
        init: init_name,
    };
    Ok(PreparedJob {
        bundle: task.encode(),
        model_hash,
        input: init_bytes,
        input_hash,
        spec,
        escrow,
        layer_ops,
        layer_names: (0..steps).map(|i| format!("step.{i}")).collect(),
        boundary_bytes,
        placement: plan,
        training: Some(summary),
    })
}

/// One step of a finished training job, as its output state records it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepSummary {
    /// 1-based step number.
    pub step: u64,
    /// The stage that ran it.
    pub stage: usize,
    /// The batch's mean loss before the update.
    pub loss: f32,
    /// The step's trace root.
    pub root: Hash,
}

/// A finished training job's output, fetched and checked.
#[derive(Clone, Debug)]
pub struct TrainingResult {
    /// The job.
    pub job: JobId,
    /// Its status when fetched.
    pub status: JobStatus,
    /// The task (the job's model blob).
    pub task: TrainTask,
    /// Hash of the final state (the last stage's agreed output).
    pub output_hash: Hash,
    /// The final state; its bytes hash to `output_hash`.
    pub state: TrainState,
    /// Every stage's agreed result, in pipeline order.
    pub stage_results: Vec<StageResult>,
    /// Every step of the job, in order; each stage's steps' roots Merkle to its
    /// agreed trace root (checked).
    pub steps: Vec<StepSummary>,
}

impl TrainingResult {
    /// The trained weights.
    pub fn params(&self) -> &GptParams<f32> {
        &self.state.params
    }
}

/// Checks a training job's fetched blobs against its record: the state decodes for
/// the task, has done every step of the job, and the stages' agreed results chain
/// from the job's input to it (so its step log, inside the state, is the one the
/// chain agreed on). Returns the per-step summary.
pub(crate) fn check_training_output(
    id: JobId,
    job: &Job,
    task_bytes: &[u8],
    output_hash: Hash,
    state_bytes: &[u8],
) -> Result<(TrainTask, TrainState, Vec<StepSummary>), RequesterError> {
    let task = TrainTask::decode(task_bytes, TaskLimits::default()).map_err(|reason| {
        RequesterError::BadTask {
            job: id,
            hash: job.spec.model,
            reason,
        }
    })?;
    let bad_output = |reason| RequesterError::BadTrainingOutput {
        job: id,
        hash: output_hash,
        reason,
    };
    let state = TrainState::decode(state_bytes, &task).map_err(bad_output)?;
    let end = job
        .spec
        .stages
        .last()
        .map_or(0, |s| u64::from(s.first_layer) + u64::from(s.layers));
    if state.step() != end {
        return Err(bad_output(TaskError::StateMismatch(format!(
            "{} steps done, the job's stages end at step {end}",
            state.step()
        ))));
    }
    let mut steps = Vec::with_capacity(state.log.len());
    for (s, (spec, st)) in job.spec.stages.iter().zip(&job.stages).enumerate() {
        let range =
            u64::from(spec.first_layer)..u64::from(spec.first_layer) + u64::from(spec.layers);
        // The log is inside the state, whose hash is the last stage's agreed output:
        // it is authenticated once the stages chain from the job's input to it.
        let want_input = if s == 0 {
            job.spec.input
        } else {
            job.stages[s - 1]
                .result
                .map_or(Hash::default(), |r| r.output)
        };
        let want_output = if s + 1 == job.spec.stages.len() {
            Some(output_hash)
        } else {
            None
        };
        match st.result {
            Some(r) if r.input == want_input && want_output.is_none_or(|o| o == r.output) => {}
            _ => return Err(RequesterError::ChainMismatch { job: id, stage: s }),
        }
        for t in range {
            let r = state.log[t as usize];
            steps.push(StepSummary {
                step: t + 1,
                stage: s,
                loss: r.loss,
                root: r.root,
            });
        }
    }
    Ok((task, state, steps))
}
