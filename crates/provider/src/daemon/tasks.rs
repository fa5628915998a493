//! What runs off the loop: a stage's computation, the replays a dispute needs, and the
//! workloads they run.
//!
//! ```text
//!  ComputeTask  (a stage held or audited)  fetch model + input ─▶ run layers / steps ─▶ Computed
//!  ReplayTask   (an inference dispute)     replay to leaf `lo` ─▶ the agreed activation, stored
//!  StepReplay   (a training dispute)       replay to the disputed step ─▶ StepWork (its unit leaves)
//! ```
//!
//! Every task fetches the job's model (or training task) once per daemon
//! ([`load_workload`], cached in [`Models`]) and runs in `spawn_blocking`; the loop
//! collects it later ([`Poll`], [`Provision`], [`StepPlay`]). A fetch that no source
//! can serve is [`TaskError::Unavailable`], which the stage provider may turn into an
//! availability claim; anything else is [`TaskError::Failed`]. The salt and the seed of
//! a stage ([`salt_for`], [`seed_for`]) are derived from the provider's key, so a
//! restarted daemon opens the same commitment and makes up the same cheat.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use agentic_client::Client;
use agentic_compute::activation::DecodeLimits;
use agentic_compute::bundle::{Bundle, BundleLimits};
use agentic_compute::llm::generate::LlmModel;
use agentic_compute::registry::LoadedModel;
use agentic_compute::train::task::{TaskLimits, TrainState, TrainTask};
use agentic_compute::Activation;
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Hash, JobId};

use crate::dataplane::{FetchError, Fetcher};
use crate::misbehave::{self, Misbehaviour};

/// The salt of a stage's commitment: derived from the provider's key, secret until
/// revealed, the same after a restart.
pub fn salt_for(secret: &[u8; 32], job: JobId, stage: u32) -> Hash {
    let mut msg = [0u8; 12];
    msg[..8].copy_from_slice(&job.0.to_be_bytes());
    msg[8..].copy_from_slice(&stage.to_be_bytes());
    Hash(*blake3::keyed_hash(secret, &msg).as_bytes())
}

/// The secret seed of the made-up parts of a stage (the `random` cheat), derived like
/// the salt so that a restarted daemon claims the same.
pub(crate) fn seed_for(secret: &[u8; 32], job: JobId, stage: u32) -> [u8; 32] {
    Hash::digest(
        "agentic provider misbehaviour seed v1",
        &[secret, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    )
    .0
}

/// A stage computed (or audited) but not yet committed (or reported).
#[derive(Clone, Debug)]
pub(crate) struct Computed {
    pub(crate) result: StageResult,
    /// The trace leaves behind `result.trace_root` (activation hashes for inference,
    /// state hashes for training).
    pub(crate) leaves: Vec<Hash>,
    pub(crate) ops: u64,
    /// What goes to the next stage: `result.output`, except for a colluding upstream.
    pub(crate) pushed: Hash,
}

/// A blob a stage's computation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blob {
    /// The job's model (or training task).
    Model,
    /// The stage's input: the job's input for stage 0, else the previous stage's output.
    Input,
}

impl Blob {
    /// `model` or `input`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Blob::Model => "model",
            Blob::Input => "input",
        }
    }
}

impl std::fmt::Display for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a background computation failed.
#[derive(Debug)]
pub(crate) enum TaskError {
    /// No source had the blob, or every source that had it failed to serve bytes that
    /// hash to its name.
    Unavailable {
        /// Which blob.
        what: Blob,
        /// What each source answered.
        detail: String,
    },
    /// Anything else (a model that does not decode, a failed run, local storage).
    Failed(String),
}

impl TaskError {
    /// A failed fetch of `what`: unavailable when no source had it (or none served it
    /// intact); a local failure or an oversized blob is not the data's absence.
    pub(crate) fn fetch(what: Blob, e: FetchError) -> TaskError {
        match e {
            FetchError::NotFound(_) | FetchError::Failed { .. } => TaskError::Unavailable {
                what,
                detail: e.to_string(),
            },
            other => TaskError::Failed(format!("{what}: {other}")),
        }
    }
}

impl From<String> for TaskError {
    fn from(e: String) -> TaskError {
        TaskError::Failed(e)
    }
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::Unavailable { what, detail } => write!(f, "{what}: {detail}"),
            TaskError::Failed(e) => f.write_str(e),
        }
    }
}

/// What a job's `model` blob holds, by its magic: a model bundle (`AGMODEL1`, the
/// stage runs layers on an activation) or a training task (`AGTRAIN1`, the stage runs
/// steps on a training state). See `crates/provider/README.md`, "Training jobs".
pub(crate) enum Workload {
    Inference(LoadedModel),
    Training(TrainTask),
    /// A Llama-family LLM (a GGUF file): generation jobs.
    Llm(Arc<LlmModel>),
}

/// The registry LLM whose GGUF hashes to `model`, if any.
pub(crate) fn registry_llm(model: &Hash) -> Option<&'static str> {
    (agentic_compute::registry::SMOLLM2_GGUF_BLAKE3
        .parse::<Hash>()
        .ok()
        == Some(*model))
    .then_some("smollm2-135m")
}

pub(crate) type Models = Arc<Mutex<BTreeMap<Hash, Arc<Workload>>>>;

/// The model (or training task) `model`, fetched from `sources` and decoded once per
/// daemon. A registry LLM (its GGUF's pinned hash, e.g. `smollm2-135m`) comes from the
/// registry's cache, filled from its public source on first use, like `agentic model
/// run` does; any other GGUF comes through the blob store.
pub(crate) async fn load_workload(
    fetcher: &Fetcher,
    models: &Models,
    model: Hash,
    sources: &[Client],
) -> Result<Arc<Workload>, TaskError> {
    let quiet = |_: u64, _: u64| {};
    let cached = models
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&model)
        .cloned();
    if let Some(m) = cached {
        return Ok(m);
    }
    if let Some(name) = registry_llm(&model) {
        let m = tokio::task::spawn_blocking(move || -> Result<Workload, String> {
            let path =
                agentic_compute::registry::fetch_smollm2(&agentic_compute::registry::smollm2_dir())
                    .map_err(|e| e.to_string())?;
            let mut m =
                agentic_compute::llm::generate::load_gguf(&path).map_err(|e| e.to_string())?;
            m.name = name.to_string();
            Ok(Workload::Llm(Arc::new(m)))
        })
        .await
        .map_err(|e| e.to_string())??;
        let m = Arc::new(m);
        models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model, m.clone());
        return Ok(m);
    }
    fetcher
        .fetch(&model, sources, &quiet)
        .await
        .map_err(|e| TaskError::fetch(Blob::Model, e))?;
    let store = fetcher.store().clone();
    let m = tokio::task::spawn_blocking(move || -> Result<Workload, String> {
        let bytes = store
            .get(&model)
            .map_err(|e| e.to_string())?
            .ok_or("model vanished from the store")?;
        if bytes.starts_with(b"GGUF") {
            let mut r = std::io::Cursor::new(&bytes[..]);
            return agentic_compute::llm::generate::load_gguf_from(&mut r)
                .map(|m| Workload::Llm(Arc::new(m)))
                .map_err(|e| e.to_string());
        }
        if TrainTask::is_task(&bytes) {
            return TrainTask::decode(&bytes, TaskLimits::default())
                .map(Workload::Training)
                .map_err(|e| e.to_string());
        }
        let bundle = Bundle::decode(&bytes, BundleLimits::default()).map_err(|e| e.to_string())?;
        bundle
            .load()
            .map(Workload::Inference)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let m = Arc::new(m);
    models
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(model, m.clone());
    Ok(m)
}

/// One stage's execution, off the loop.
pub(crate) struct ComputeTask {
    pub(crate) fetcher: Fetcher,
    pub(crate) models: Models,
    pub(crate) model: Hash,
    pub(crate) layers: Range<usize>,
    pub(crate) input: Hash,
    pub(crate) declared_ops: u64,
    pub(crate) sources: Vec<Client>,
    pub(crate) slowdown: u32,
    /// How to cheat (inference stages only; `None`: honestly).
    pub(crate) mode: Option<Misbehaviour>,
    /// Seed of what a cheat makes up.
    pub(crate) seed: [u8; 32],
}

impl ComputeTask {
    pub(crate) async fn run(self) -> Result<Computed, TaskError> {
        let quiet = |_: u64, _: u64| {};
        let model = load_workload(&self.fetcher, &self.models, self.model, &self.sources).await?;
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| TaskError::fetch(Blob::Input, e))?;
        let store = self.fetcher.store().clone();
        let (input, layers, declared) = (self.input, self.layers.clone(), self.declared_ops);
        let (mode, seed) = (self.mode, self.seed);
        let start = Instant::now();
        let computed = tokio::task::spawn_blocking(move || -> Result<Computed, String> {
            let bytes = store
                .get(&input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let (computed, blobs) = match &*model {
                Workload::Inference(m) => run_layers(m, &bytes, layers, mode, &seed)?,
                Workload::Training(t) => run_steps(t, &bytes, layers, mode)?,
                Workload::Llm(_) => {
                    return Err("an LLM runs generation sessions, not single passes".into())
                }
            };
            if computed.ops != declared && mode.is_none() {
                tracing::warn!(
                    metered = computed.ops,
                    declared,
                    "the job declared other ops than metered"
                );
            }
            for (hash, bytes) in blobs {
                store.put(&hash, &bytes).map_err(|e| e.to_string())?;
            }
            Ok(computed)
        })
        .await
        .map_err(|e| e.to_string())??;
        if self.slowdown > 1 {
            tokio::time::sleep(start.elapsed() * (self.slowdown - 1)).await;
        }
        Ok(computed)
    }
}

/// Replaying a stage's computation up to one trace leaf, for the referee.
pub(crate) struct ReplayTask {
    pub(crate) fetcher: Fetcher,
    pub(crate) models: Models,
    pub(crate) sources: Vec<Client>,
    pub(crate) model: Hash,
    pub(crate) layers: Range<usize>,
    /// The stage's input (leaf 0).
    pub(crate) input: Hash,
    /// The misbehaviour the disputed result was computed under.
    pub(crate) mode: Option<Misbehaviour>,
    /// The leaf whose activation is wanted.
    pub(crate) leaf: usize,
}

impl ReplayTask {
    /// Stores the activation this party claims at the leaf and returns its hash;
    /// `None` when it has none there.
    pub(crate) async fn run(self) -> Result<Option<Hash>, String> {
        let quiet = |_: u64, _: u64| {};
        let model = load_workload(&self.fetcher, &self.models, self.model, &self.sources)
            .await
            .map_err(|e| e.to_string())?;
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| format!("input: {e}"))?;
        let store = self.fetcher.store().clone();
        tokio::task::spawn_blocking(move || -> Result<Option<Hash>, String> {
            let Workload::Inference(m) = &*model else {
                return Err("a training dispute is refereed inside one step (StepPlay)".into());
            };
            let bytes = store
                .get(&self.input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let act = Activation::from_canonical_bytes(&bytes, DecodeLimits::default())
                .map_err(|e| e.to_string())?;
            let Some(a) =
                misbehave::activation_at(self.mode, &m.model, self.layers, act, self.leaf)
                    .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let hash = misbehave::digest(&a);
            store
                .put(&hash, &a.canonical_bytes())
                .map_err(|e| e.to_string())?;
            Ok(Some(hash))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The disputed step as this party computed it.
pub(crate) struct StepWork {
    /// The job's training task.
    pub(crate) task: Arc<Workload>,
    /// The stage's steps.
    pub(crate) steps: Range<u64>,
    /// The misbehaviour the disputed result was computed under.
    pub(crate) mode: Option<Misbehaviour>,
    /// The state before the step (carry 0).
    pub(crate) state_before: TrainState,
    /// The step's unit leaves (carries `0 ..= step_units`).
    pub(crate) leaves: Vec<Hash>,
}

/// Replaying a training stage up to one step and that step's units, for a dispute.
pub(crate) struct StepReplay {
    pub(crate) fetcher: Fetcher,
    pub(crate) models: Models,
    pub(crate) sources: Vec<Client>,
    pub(crate) model: Hash,
    /// The stage's steps.
    pub(crate) steps: Range<u64>,
    /// The stage's input state.
    pub(crate) input: Hash,
    /// The misbehaviour the disputed result was computed under.
    pub(crate) mode: Option<Misbehaviour>,
    /// The disputed step's position in the stage.
    pub(crate) step: u64,
}

impl StepReplay {
    pub(crate) async fn run(self) -> Result<StepWork, String> {
        let quiet = |_: u64, _: u64| {};
        let workload = load_workload(&self.fetcher, &self.models, self.model, &self.sources)
            .await
            .map_err(|e| e.to_string())?;
        if !matches!(&*workload, Workload::Training(_)) {
            return Err("not a training task: no step to replay".into());
        }
        self.fetcher
            .fetch(&self.input, &self.sources, &quiet)
            .await
            .map_err(|e| format!("input: {e}"))?;
        let store = self.fetcher.store().clone();
        tokio::task::spawn_blocking(move || -> Result<StepWork, String> {
            let Workload::Training(t) = &*workload else {
                return Err("not a training task".into());
            };
            let bytes = store
                .get(&self.input)
                .map_err(|e| e.to_string())?
                .ok_or("input vanished from the store")?;
            let input = TrainState::decode(&bytes, t).map_err(|e| e.to_string())?;
            let state_before =
                misbehave::state_at(self.mode, t, &input, self.steps.clone(), self.step)
                    .map_err(|e| e.to_string())?;
            let leaves = misbehave::step_leaves(self.mode, t, &self.steps, &state_before)
                .map_err(|e| e.to_string())?;
            Ok(StepWork {
                task: workload.clone(),
                steps: self.steps,
                mode: self.mode,
                state_before,
                leaves,
            })
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// Blobs a computation leaves to store, each under its hash.
type Blobs = Vec<(Hash, Vec<u8>)>;

/// An inference stage: layers `layers` of `m` on the input activation's bytes, as
/// `mode` runs them; the result and the blobs to store (the claimed output, and the
/// pushed one when it differs).
fn run_layers(
    m: &LoadedModel,
    input: &[u8],
    layers: Range<usize>,
    mode: Option<Misbehaviour>,
    seed: &[u8; 32],
) -> Result<(Computed, Blobs), String> {
    let act = Activation::from_canonical_bytes(input, DecodeLimits::default())
        .map_err(|e| e.to_string())?;
    let e = misbehave::execute(mode, &m.model, layers, act, seed).map_err(|e| e.to_string())?;
    let mut blobs = vec![(e.result.output, e.output.canonical_bytes())];
    let pushed = match &e.pushed {
        Some(p) => {
            let h = misbehave::digest(p);
            blobs.push((h, p.canonical_bytes()));
            h
        }
        None => e.result.output,
    };
    let computed = Computed {
        result: e.result,
        leaves: e.leaves,
        ops: e.ops,
        pushed,
    };
    Ok((computed, blobs))
}

/// A training stage: the ledger's layer range is the step range; steps `steps` of
/// task `t` on the input state's bytes, as `mode` runs them; the result (its trace
/// leaves are the state hashes, [`misbehave::execute_steps`]) and the output state to
/// store.
fn run_steps(
    t: &TrainTask,
    input: &[u8],
    steps: Range<usize>,
    mode: Option<Misbehaviour>,
) -> Result<(Computed, Blobs), String> {
    let state = TrainState::decode(input, t).map_err(|e| e.to_string())?;
    let e = misbehave::execute_steps(mode, t, &state, steps.start as u64..steps.end as u64)
        .map_err(|e| e.to_string())?;
    let bytes = e.output.encode();
    let computed = Computed {
        result: e.result,
        leaves: e.leaves,
        ops: e.ops,
        pushed: e.result.output,
    };
    Ok((computed, vec![(e.result.output, bytes)]))
}
