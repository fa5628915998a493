//! The arbiter: how a validator referees one layer, with the data fetched first.
//!
//! The ledger's [`Referee`](agentic_protocol::Referee) only reads verdicts from the block
//! (see `agentic_protocol::referee`). This module produces and checks them:
//!
//! ```text
//!   propose:  for each question the ledger asks (State::referee_questions: disputes
//!             awaiting the referee, availability claims)
//!               arbiter.finding(question)  ── known? ──▶ Verdict in the block
//!                      │ not yet: a background task fetches the model and the input
//!                      ▼ (own blob store, then each party's data plane), runs ONE layer
//!   verify:   for each verdict in the block
//!               Output(h)          → run the layer (or take the cached result); refuse if ≠ h
//!               InputUnavailable   → try the fetch now; refuse if the input can be had
//!               ModelUnavailable   → the same, for the model
//!               LayerOutOfRange    → load the model; refuse if the layer exists
//! ```
//!
//! A **training stage** (the job's model blob is a training task, `AGTRAIN1`) asks about
//! one *unit* of one step (see `agentic_compute::train::units`): the question's layer is
//! the flat index `step × step_units + unit` (`Dispute::referee_layer`) and its input the
//! hash of the unit's input carry (`AGCARRY1`, or the state itself for unit 0). The
//! arbiter decodes the task, splits the index back with the task's own `step_units`
//! (a step outside the task, or a mismatch, is `LayerOutOfRange`: annulled), fetches the
//! carry like an activation, checks and decodes it for that position (bytes that do not
//! decode are as good as absent: `InputUnavailable`) and runs that one unit
//! (`reexecute_unit`); its ops are the unit's share of the step (`unit_ops`).
//!
//! A **generation stage** (the job's model is an LLM: a GGUF, or the registry's
//! `smollm2-135m` by its pinned hash, loaded from the registry's cache) asks about one
//! layer at one step: the question's input is the blob the defendant named,
//! `PrefixRows` (`agentic_compute::llm::referee`): that layer's input rows for every
//! position up to the step, each step's proven against the defendant's trace root, under
//! a header that is the ledger's `GenerationQuestion`. The arbiter checks the header's
//! model is the question's, the proofs, runs the one layer (a block over the prefix, K/V
//! rebuilt from the rows; or the head, or the embedding) and answers
//! `Output(GenerationQuestion::finding(H(0x00 ‖ output leaf)))`, which binds the header
//! it read. Bytes that do not decode or prove are as good as absent: `InputUnavailable`.
//!
//! An **input-leaf question** — layer `INPUT_LEAF_BASE + t`
//! (`agentic_protocol::referee::INPUT_LEAF_BASE`), asked when a generation dispute's
//! descent ends on stage 0's input leaf at step `t` — names the job's request blob in the
//! model slot and the transcript blob in the input slot; the arbiter fetches both and
//! derives the leaf (`llm_referee::stage0_input_leaf`): the prompt's tokens at step 0,
//! the token sampled at step `t − 1` after. It answers the leaf's node,
//! `Output(H(0x00 ‖ leaf))`; nothing runs.
//!
//! An **availability probe** — layer [`AVAILABILITY_PROBE`], asked when an assigned
//! provider claims a job's model or input cannot be fetched (`ClaimUnavailable`) — runs
//! nothing: the arbiter fetches both blobs the same way (hash-checked, kept) and answers
//! `Output(Hash::ZERO)` when it has both, `ModelUnavailable` or `InputUnavailable`
//! otherwise. The model blob is not decoded (a training task is as available as a model
//! bundle). A voter re-checks a probe verdict like any other: it refuses an
//! "unavailable" claim if it can fetch the data.
//!
//! Fetched blobs are checked against their hash and kept in the validator's blob store, so
//! a block is refereed from data the validator holds itself. Loaded models are cached (a
//! few at most). The layer runs on the blocking pool; its metered operations are recorded
//! with the finding ([`Arbiter::ops_of`]) so tests and benches can show that a dispute costs
//! the validators exactly one layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_compute::activation::{Activation, DecodeLimits};
use agentic_compute::bundle::{Bundle, BundleLimits};
use agentic_compute::llm::referee::{self as llm_referee, PrefixLimits, PrefixRows};
use agentic_compute::llm::LlmModel;
use agentic_compute::metering::OpCounter;
use agentic_compute::models::Model;
use agentic_compute::train::task::{TaskLimits, TrainTask};
use agentic_compute::train::units::{self, CarryLimits};
use agentic_protocol::referee::{input_leaf_step, GenerationQuestion, AVAILABILITY_PROBE};
use agentic_protocol::{Finding, Hash, Verdict};

use agentic_client::blobs::BlobStore;

/// How long a "not found" answer stands before a proposer asks again.
const RETRY_MISSING: Duration = Duration::from_secs(1);
/// Most models kept loaded.
const MODEL_CACHE: usize = 4;
/// Timeout of one blob download from a party's data plane.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// One referee question: layer `layer` of `model` on the activation `input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Question {
    /// The model bundle's hash.
    pub model: Hash,
    /// The absolute layer index.
    pub layer: u32,
    /// The input activation's hash.
    pub input: Hash,
}

impl Question {
    /// The question a verdict answers.
    pub fn of(v: &Verdict) -> Question {
        Question {
            model: v.model,
            layer: v.layer,
            input: v.input,
        }
    }

    /// The verdict for this question.
    pub fn verdict(&self, finding: Finding) -> Verdict {
        Verdict {
            model: self.model,
            layer: self.layer,
            input: self.input,
            finding,
        }
    }
}

/// What a job's model blob decodes to: a model bundle, or a training task.
enum Workload {
    Inference(Model),
    Training(TrainTask),
    /// A Llama-family LLM: generation stages.
    Llm(LlmModel),
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    /// A task is working on it.
    Running,
    /// Settled: the layer's output, or a layer the model does not have.
    Done { finding: Finding, ops: u64 },
    /// The model or the input could not be had (at `at`).
    Missing { finding: Finding, at: Instant },
}

struct Inner {
    blobs: Option<Arc<BlobStore>>,
    http: reqwest::Client,
    models: Mutex<Vec<(Hash, Arc<Workload>)>>,
    slots: Mutex<BTreeMap<Question, Slot>>,
}

/// Referees single layers for this validator (cheap to clone).
#[derive(Clone)]
pub struct Arbiter {
    inner: Arc<Inner>,
}

impl Default for Arbiter {
    /// An arbiter with no blob store: every question is "model unavailable" (after the
    /// ledger's patience runs out, the dispute is annulled).
    fn default() -> Self {
        Arbiter::build(None)
    }
}

impl std::fmt::Debug for Arbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arbiter")
            .field("blobs", &self.inner.blobs.is_some())
            .finish()
    }
}

impl Arbiter {
    /// An arbiter that keeps what it fetches in `blobs`.
    pub fn new(blobs: Arc<BlobStore>) -> Arbiter {
        Arbiter::build(Some(blobs))
    }

    fn build(blobs: Option<Arc<BlobStore>>) -> Arbiter {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        Arbiter {
            inner: Arc::new(Inner {
                blobs,
                http,
                models: Mutex::new(Vec::new()),
                slots: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn slot(&self, q: &Question) -> Option<Slot> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(q)
            .copied()
    }

    fn set(&self, q: Question, s: Slot) {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(q, s);
    }

    /// What this validator knows now, without waiting (the proposer's call). Starts the
    /// work in the background when nothing is known, or when a "missing" answer is older
    /// than a second (the data may have appeared). `sources` are data-plane URLs to fetch
    /// from (the dispute's parties).
    pub fn finding(&self, q: &Question, sources: &[String]) -> Option<Finding> {
        match self.slot(q) {
            Some(Slot::Done { finding, .. }) => Some(finding),
            Some(Slot::Running) => None,
            Some(Slot::Missing { finding, at }) => {
                if at.elapsed() >= RETRY_MISSING {
                    self.spawn(*q, sources.to_vec());
                }
                Some(finding)
            }
            None => {
                self.spawn(*q, sources.to_vec());
                None
            }
        }
    }

    /// Whether this validator agrees with `verdict` (the voter's call): re-runs the layer
    /// (or takes a settled result) for an output, and tries the fetch afresh for an
    /// "unavailable" claim, refusing it if the data can be had.
    pub async fn agrees(&self, verdict: &Verdict, sources: &[String]) -> bool {
        let q = Question::of(verdict);
        let mine = match self.slot(&q) {
            Some(Slot::Done { finding, .. }) => finding,
            _ => self.settle(q, sources.to_vec()).await,
        };
        mine == verdict.finding
    }

    /// The metered operations spent on a settled question (one layer's).
    pub fn ops_of(&self, q: &Question) -> Option<u64> {
        match self.slot(q)? {
            Slot::Done { ops, .. } => Some(ops),
            _ => None,
        }
    }

    fn spawn(&self, q: Question, sources: Vec<String>) {
        self.set(q, Slot::Running);
        let me = self.clone();
        tokio::spawn(async move {
            me.settle(q, sources).await;
        });
    }

    /// Fetches what is missing, runs the layer, records and returns the finding.
    async fn settle(&self, q: Question, sources: Vec<String>) -> Finding {
        let (finding, ops) = self.referee(&q, &sources).await;
        let slot = match finding {
            Finding::InputUnavailable | Finding::ModelUnavailable => Slot::Missing {
                finding,
                at: Instant::now(),
            },
            _ => Slot::Done { finding, ops },
        };
        self.set(q, slot);
        finding
    }

    async fn referee(&self, q: &Question, sources: &[String]) -> (Finding, u64) {
        if q.layer == AVAILABILITY_PROBE {
            return (self.probe(q, sources).await, 0);
        }
        if let Some(step) = input_leaf_step(q.layer) {
            return (self.input_leaf(q, step, sources).await, 0);
        }
        let Some(workload) = self.model(&q.model, sources).await else {
            return (Finding::ModelUnavailable, 0);
        };
        let model = match &*workload {
            Workload::Llm(_) => return self.referee_generation(q, workload.clone(), sources).await,
            Workload::Inference(m) => m,
            Workload::Training(task) => {
                let units = units::step_units(task);
                let (step, unit) = (u64::from(q.layer / units), q.layer % units);
                if step >= task.steps {
                    return (Finding::LayerOutOfRange, 0);
                }
                return self
                    .referee_unit(q, workload.clone(), step, unit, sources)
                    .await;
            }
        };
        if q.layer as usize >= model.layers() {
            return (Finding::LayerOutOfRange, 0);
        }
        let Some(input) = self.blob(&q.input, sources).await else {
            return (Finding::InputUnavailable, 0);
        };
        let layer = q.layer as usize;
        off_thread(move || -> Option<(Finding, u64)> {
            let Workload::Inference(model) = &*workload else {
                return None;
            };
            // Bytes that hash to the agreed name but are not an activation the layer can
            // read are as good as absent: the defendant loses, as for a missing input.
            let act = Activation::from_canonical_bytes(&input, DecodeLimits::default()).ok()?;
            let ops = OpCounter::new();
            let out = model.run_layer_counted(layer, &act, &ops).ok()?;
            Some((Finding::Output(out.hash()), ops.get()))
        })
        .await
    }

    /// One layer at one step of a generation stage, from the named prefix rows.
    async fn referee_generation(
        &self,
        q: &Question,
        workload: Arc<Workload>,
        sources: &[String],
    ) -> (Finding, u64) {
        let Some(input) = self.blob(&q.input, sources).await else {
            return (Finding::InputUnavailable, 0);
        };
        let model = q.model;
        off_thread(move || -> Option<(Finding, u64)> {
            let Workload::Llm(m) = &*workload else {
                return None;
            };
            let blob = PrefixRows::decode(&input, PrefixLimits::default()).ok()?;
            let h = blob.header;
            if h.model != model {
                return None;
            }
            let out = llm_referee::reexecute(&m.model, &blob).ok()?;
            let question = GenerationQuestion {
                model: h.model,
                root: h.root,
                leaves: h.leaves,
                width: h.width,
                first_layer: h.first_layer,
                leaf: h.leaf,
            };
            let node = Hash(agentic_protocol::merkle::hash_leaf(&out.0));
            let positions = blob.rows.len().checked_div(blob.dim as usize).unwrap_or(0);
            let layer = h.layer().unwrap_or(0) as usize;
            let ops = m.model.layer_ops(layer, 0, positions.max(1), 1);
            Some((Finding::Output(question.finding(&node)), ops))
        })
        .await
    }

    /// One unit of one training step, from the agreed carry.
    async fn referee_unit(
        &self,
        q: &Question,
        workload: Arc<Workload>,
        step: u64,
        unit: u32,
        sources: &[String],
    ) -> (Finding, u64) {
        let Some(input) = self.blob(&q.input, sources).await else {
            return (Finding::InputUnavailable, 0);
        };
        let agreed = q.input;
        off_thread(move || -> Option<(Finding, u64)> {
            let Workload::Training(task) = &*workload else {
                return None;
            };
            // A carry that hashes to the agreed name but does not decode for this
            // position is as good as absent: the defendant loses.
            let out =
                units::reexecute_unit(task, step, unit, &input, &agreed, CarryLimits::default())
                    .ok()?;
            Some((Finding::Output(out), units::unit_ops(task, unit)))
        })
        .await
    }

    /// The availability probe: both blobs fetched (hash-checked and kept), nothing run.
    async fn probe(&self, q: &Question, sources: &[String]) -> Finding {
        if !self.available(&q.model, sources).await {
            return Finding::ModelUnavailable;
        }
        if !self.available(&q.input, sources).await {
            return Finding::InputUnavailable;
        }
        Finding::Output(Hash::ZERO)
    }

    /// Stage 0's input leaf of a generation session at `step`, derived from the job's
    /// request (the question's model slot) and the session's transcript (its input slot):
    /// `Output(H(0x00 ‖ leaf))`, the leaf's node in the trace tree. A request nobody
    /// serves is `ModelUnavailable`, a transcript `InputUnavailable` (the ledger annuls
    /// either: neither party publishes them); bytes that do not decode, or a step past
    /// the transcript, answer `LayerOutOfRange` (annulled too). Nothing is executed.
    async fn input_leaf(&self, q: &Question, step: u32, sources: &[String]) -> Finding {
        let Some(request) = self.blob(&q.model, sources).await else {
            return Finding::ModelUnavailable;
        };
        let Some(transcript) = self.blob(&q.input, sources).await else {
            return Finding::InputUnavailable;
        };
        match llm_referee::stage0_input_leaf(&request, &transcript, step) {
            Ok(leaf) => Finding::Output(Hash(agentic_protocol::merkle::hash_leaf(&leaf.0))),
            Err(_) => Finding::LayerOutOfRange,
        }
    }

    /// Whether the blob is in the store or could be fetched into it (checked against
    /// its hash). A loaded model counts: it was fetched from a checked blob.
    async fn available(&self, hash: &Hash, sources: &[String]) -> bool {
        let loaded = self
            .inner
            .models
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(h, _)| h == hash);
        if loaded {
            return true;
        }
        if let Some(store) = &self.inner.blobs {
            if matches!(store.size(hash), Ok(Some(_))) {
                return true;
            }
        }
        self.blob(hash, sources).await.is_some()
    }

    async fn model(&self, hash: &Hash, sources: &[String]) -> Option<Arc<Workload>> {
        {
            let cache = self.inner.models.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, m)) = cache.iter().find(|(h, _)| h == hash) {
                return Some(m.clone());
            }
        }
        let registry = (agentic_compute::registry::SMOLLM2_GGUF_BLAKE3
            .parse::<Hash>()
            .ok()
            == Some(*hash))
        .then(agentic_compute::registry::smollm2_dir);
        let bytes = match registry {
            // The registry's LLM comes from its cache (as providers load it).
            Some(_) => Vec::new(),
            None => self.blob(hash, sources).await?,
        };
        let loaded = tokio::task::spawn_blocking(move || {
            if let Some(dir) = registry {
                let path = agentic_compute::registry::fetch_smollm2(&dir).ok()?;
                return agentic_compute::llm::generate::load_gguf(&path)
                    .ok()
                    .map(Workload::Llm);
            }
            if bytes.starts_with(b"GGUF") {
                let mut r = std::io::Cursor::new(&bytes[..]);
                return agentic_compute::llm::generate::load_gguf_from(&mut r)
                    .ok()
                    .map(Workload::Llm);
            }
            if TrainTask::is_task(&bytes) {
                return TrainTask::decode(&bytes, TaskLimits::default())
                    .ok()
                    .map(Workload::Training);
            }
            let bundle = Bundle::decode(&bytes, BundleLimits::default()).ok()?;
            bundle.load().ok().map(|l| Workload::Inference(l.model))
        })
        .await
        .ok()??;
        let m = Arc::new(loaded);
        let mut cache = self.inner.models.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MODEL_CACHE {
            cache.remove(0);
        }
        cache.push((*hash, m.clone()));
        Some(m)
    }

    /// A blob from the store, else from the first source that has it (checked against its
    /// hash and stored).
    async fn blob(&self, hash: &Hash, sources: &[String]) -> Option<Vec<u8>> {
        let store = self.inner.blobs.as_ref()?;
        if let Ok(Some(b)) = store.get(hash) {
            return Some(b);
        }
        let hex = hash.to_hex();
        for src in sources {
            // Offers publish `host:port` or a URL.
            let base = src.trim_end_matches('/');
            let url = if base.starts_with("http://") || base.starts_with("https://") {
                format!("{base}/v1/blobs/{hex}")
            } else {
                format!("http://{base}/v1/blobs/{hex}")
            };
            let Ok(resp) = self.inner.http.get(&url).send().await else {
                continue;
            };
            if !resp.status().is_success() {
                continue;
            }
            if resp.content_length().unwrap_or(0) > store.max_size() {
                continue;
            }
            let Ok(bytes) = resp.bytes().await else {
                continue;
            };
            if store.put(hash, &bytes).is_ok() {
                return Some(bytes.to_vec());
            }
            tracing::warn!(source = %src, blob = %hex, "a source served bytes that do not hash to the name");
        }
        None
    }
}

/// Runs a re-execution off the async threads. No answer (bad data, wrong workload) or a
/// failed task means the named input is as good as absent: the defendant loses.
async fn off_thread(f: impl FnOnce() -> Option<(Finding, u64)> + Send + 'static) -> (Finding, u64) {
    match tokio::task::spawn_blocking(f).await {
        Ok(Some(found)) => found,
        Ok(None) => (Finding::InputUnavailable, 0),
        Err(e) => {
            tracing::warn!(error = %e, "referee task failed");
            (Finding::InputUnavailable, 0)
        }
    }
}
