//! Training as a market job: a content-addressed task, a content-addressed state,
//! and step ranges that chain by hash.
//!
//! A TRAINING job is "N deterministic steps of a model on a data blob". The ledger
//! knows a job by two hashes and a list of stages; training maps onto them exactly as
//! inference does:
//!
//! ```text
//!   ledger              inference                        training
//!   ─────────────────   ──────────────────────────────   ───────────────────────────────────────
//!   spec.model          model bundle ("AGMODEL1")        TrainTask blob ("AGTRAIN1")
//!   spec.input          input activation ("AGACT1")      initial TrainState blob ("AGSTATE1")
//!   stage i range       layers [first, first+layers)     steps  [first, first+layers)
//!   StageResult.input   activation hash before           state hash before the first step
//!   StageResult.output  activation hash after            state hash after the last step
//!   trace_root          Merkle(input, layer hashes…)     Merkle(state hashes: input, after each step)
//!   StageSpec.ops       Σ metered layer ops              step_ops() × steps (known in advance)
//! ```
//!
//! ```text
//!  TrainTask ─┬─ config (GPT-2 shape), optimizer + LR schedule, batch, seq, data seed, steps N
//!             └─ data (the training tokens, inline)
//!
//!  state₀ ──run_steps(0..a)──▶ state_a ──run_steps(a..b)──▶ state_b ── … ──▶ state_N
//!   (hash = spec.input)   stage 0's output = stage 1's input          (hash = last output)
//!
//!  step t (0-based):  batch_t = windows of seq+1 tokens at offsets from SplitMix64(seed(data_seed, t))
//!                     lr      = schedule(t + 1)
//!                     θ, opt  = train_step(θ, opt, batch_t)               (crate::train::train_step)
//! ```
//!
//! # Why a split run equals the whole run
//!
//! Everything step `t` reads is either in the task or in the state before it: the
//! parameters, the optimizer moments and step count, and a batch that is a pure
//! function of `(task, t)` — each step seeds its own sampler from
//! `blake3::derive_key("agentic train batch v1", data_seed ‖ t)` instead of continuing
//! one stream, so a stage starting at step `a` needs no generator state. The learning
//! rate is a pure function of `t` and `N`. The state's canonical bytes hold all of it
//! at full precision (raw `f32` bits), so `run_steps(0..N)` and `run_steps(0..a)` →
//! encode → decode → `run_steps(a..N)` produce identical bytes, at any thread count
//! (the training kernels' rules, [`crate::train`]).
//!
//! # The trace: one state hash per step
//!
//! A stage over steps `[a, b)` commits the Merkle root of `b − a + 1` leaves: the hash
//! of its input state, then the hash of the state after each of its steps
//! ([`TrainRun::states`]). Leaf `i` is the hash of the state after `a + i` steps,
//! whoever computed it, so the leaves are split-invariant and are exactly what a
//! dispute bisects first: two parties that agree on leaf `i` and not on leaf `i + 1`
//! disagree about step `a + i`, and the game goes on inside that step
//! ([`super::units`]: leaf 0 of a step's units is the state before it, its last leaf
//! the state after it — the same two hashes).
//!
//! The state also carries its own step log: after `t` steps it holds one `(loss, step
//! root)` record per step done. The log is inside the state bytes, so the final state's
//! hash — the last stage's agreed output — authenticates every record: a requester
//! who fetches only the final state can show the loss of every step with no extra
//! blob.
//!
//! # Canonical bytes (version 1, little-endian)
//!
//! ```text
//! task  = "AGTRAIN1" | u8 arch (1 = GPT-2 decoder)
//!       | u32 n_layer | u32 n_head | u32 n_embd | u32 vocab_size | u32 n_positions | f32 layer_norm_epsilon
//!       | u8 optimizer (0 = SGD, 1 = Adam) | f32 lr | f32 h1 | f32 h2 | f32 h3 | f32 h4
//!             SGD: h1 = momentum, h2..h4 = 0      Adam: h1 = β₁, h2 = β₂, h3 = ε, h4 = weight decay
//!       | u8 schedule (0 = constant, 1 = warm-up + linear decay) | u64 warmup | f64 min_lr_frac
//!             constant: warmup = 0, min_lr_frac = 0
//!       | u64 steps | u32 batch | u32 seq | u64 data_seed
//!       | u8 token width (1 = one byte per token, 4 = u32 ids) | u64 data length | data
//!
//! state = "AGSTATE1" | u64 step | f32 β₁ᵗ | f32 β₂ᵗ | u8 moment buffers (0, 1 = m, 2 = m and v)
//!       | u64 parameter elements P
//!       | P × f32 parameters (tensor order of GptConfig::tensor_layout) | P × f32 m | P × f32 v
//!       | step × (f32 loss | 32-byte step root)
//! ```
//!
//! Every field has one valid encoding (zeros are `+0.0`, unused fields are zero, no
//! trailing bytes), so one task has exactly one hash. Decoding checks every size
//! against [`TaskLimits`] before allocating and against the bytes left, and returns a
//! typed [`TaskError`] — it never panics on untrusted bytes. A state is decoded *for a
//! task*: its layout (tensor sizes, moment buffers, step bound) comes from the task,
//! and its length must match exactly.
//!
//! # Metering (training op model v1)
//!
//! The inference op model ([`crate::metering`]) extended to the backward pass and the
//! optimizer, in the same units (a fused multiply-add is 2 ops, a transcendental is
//! [`crate::metering::TRANSCENDENTAL`]). With `n = batch·seq` rows, width `d`,
//! vocabulary `V`, `H` heads of width `h`, `S = batch·seq(seq+1)/2` causal pairs per
//! head, `P` parameter elements:
//!
//! | part | ops |
//! |---|---|
//! | forward | exactly the inference meter of `batch` sequences of `seq` tokens (embeddings, blocks, `ln_f + lm_head`) |
//! | cross-entropy | `n·(V·(6+T) + T + 2) + n + 1` |
//! | LM head backward (tied) | `2·n·V·d` (`dh`) + `2·V·n·d` (`dwte`) |
//! | layer norm backward | `rows·(13·cols + 2)` |
//! | linear backward `[m×k]→[m×n]` | `2·k·m·n` (`dW`) + `m·n` (`db`) + `2·m·n·k` (`dx`) |
//! | GELU (tanh) backward, per value | `18 + T` |
//! | attention backward, per head and pair | `8·h + 5` |
//! | embedding backward | `2·n·d` |
//! | SGD / with momentum, per element | `2` / `4` |
//! | Adam, per element; per step | `14` (+`2` with weight decay); `7` |
//!
//! A step's ops are a pure function of the task, known before anything runs
//! ([`TrainTask::step_ops`]), so a requester declares `StageSpec.ops = step_ops ×
//! steps` and the bill is exact. The training kernels are not instrumented as the
//! inference ones are: [`TrainTask::run_steps`] charges each executed step the
//! formula on the shape of the batch it actually ran, which the task fixes.
//! [`super::units::unit_ops`] splits a step's ops by unit (embedding, each block's
//! forward and backward, head, optimizer); the step's formula is written as that sum.

use std::ops::Range;

use super::gpt::{GptConfig, GptParams, TokenBatch};
use super::optim::{AdamConfig, OptState, OptimizerConfig};
use super::rng::SplitMix64;
use super::shipped::Recipe;
use super::trace::{hash_bytes, merkle_root, Hash, StepTrace};
use super::{apply_update, TrainError, Trainable};
use crate::bundle::Bundle;
use crate::metering::TRANSCENDENTAL;

/// The task blob's magic prefix (format version 1).
pub const TASK_MAGIC: &[u8; 8] = b"AGTRAIN1";
/// The state blob's magic prefix (format version 1).
pub const STATE_MAGIC: &[u8; 8] = b"AGSTATE1";
/// Version of the training op model (module docs, "Metering").
pub const TRAIN_OP_MODEL_VERSION: u32 = 1;

const ARCH_GPT: u8 = 1;
const TASK_HEADER: usize = 104;
pub(crate) const STATE_HEADER: usize = 33;
pub(crate) const LOG_ENTRY: usize = 36;
const BATCH_SEED_CONTEXT: &str = "agentic train batch v1";

/// Bounds for decoding an untrusted task (a state is bounded by its task).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLimits {
    /// Largest task blob, in bytes.
    pub max_bytes: u64,
    /// Most parameter elements (the state is `4·P·(1 + moment buffers)` bytes).
    pub max_params: u64,
    /// Most steps a task may ask for.
    pub max_steps: u64,
    /// Most tokens in one batch (`batch · seq`).
    pub max_batch_tokens: u64,
}

impl Default for TaskLimits {
    /// 256 MiB of task, 32 M parameters (a 384 MiB Adam state), 2²⁰ steps, 2²⁰
    /// tokens per batch.
    fn default() -> Self {
        TaskLimits {
            max_bytes: 256 << 20,
            max_params: 32 << 20,
            max_steps: 1 << 20,
            max_batch_tokens: 1 << 20,
        }
    }
}

/// What can go wrong with a training task or state.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The bytes are not of the expected kind (wrong magic).
    #[error("not a training {0} (bad magic)")]
    NotA(&'static str),
    /// The bytes do not decode.
    #[error("malformed training {what}: {detail}")]
    Malformed {
        /// `task` or `state`.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A size is over its limit.
    #[error("training task: {what} is {size}, over the limit of {limit}")]
    TooLarge {
        /// Which size.
        what: &'static str,
        /// Its value.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The task decodes but cannot be run as written.
    #[error("invalid training task: {0}")]
    Invalid(String),
    /// The state does not belong to the task (layout, optimizer, step count).
    #[error("the state does not fit the task: {0}")]
    StateMismatch(String),
    /// A step range that cannot run on this state.
    #[error("steps {start}..{end}: {reason}")]
    StepRange {
        /// First step asked for.
        start: u64,
        /// One past the last.
        end: u64,
        /// Why not.
        reason: String,
    },
    /// A unit of a step cannot run on this carry (wrong step, wrong position in the
    /// step, or a unit index past the step's last), [`super::units`].
    #[error("step {step}, unit {unit}: {reason}")]
    UnitMismatch {
        /// The step asked for (0-based).
        step: u64,
        /// The unit asked for.
        unit: u32,
        /// Why not.
        reason: String,
    },
    /// A training step, the initialization or a checkpoint failed.
    #[error(transparent)]
    Train(#[from] TrainError),
}

fn task_err(detail: impl Into<String>) -> TaskError {
    TaskError::Malformed {
        what: "task",
        detail: detail.into(),
    }
}

fn state_err(detail: impl Into<String>) -> TaskError {
    TaskError::Malformed {
        what: "state",
        detail: detail.into(),
    }
}

/// How the learning rate moves over the task's steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// The optimizer's `lr` at every step.
    Constant,
    /// Linear warm-up from 0 to `lr` over `warmup` steps, then linear decay to
    /// `min_lr_frac · lr` at the task's last step ([`Recipe::lr_at`], the shipped
    /// model's schedule).
    WarmupLinearDecay {
        /// Steps of warm-up.
        warmup: u64,
        /// Final rate as a fraction of the peak, in `[0, 1]`.
        min_lr_frac: f64,
    },
}

/// How the data blob spells tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWidth {
    /// One byte per token (byte-level vocabularies; needs `vocab_size ≥ 256`).
    U8,
    /// One little-endian `u32` id per token.
    U32,
}

impl TokenWidth {
    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U8 => 1,
            TokenWidth::U32 => 4,
        }
    }
}

/// One training job: what to train, how, on what, for how many steps.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTask {
    /// The model's shape (GPT-2 decoder).
    pub config: GptConfig,
    /// The optimizer; its learning rate is the schedule's peak.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule over `steps`.
    pub schedule: LrSchedule,
    /// Total steps `N`; stages run contiguous ranges of `0..N`.
    pub steps: u64,
    /// Sequences per batch.
    pub batch: usize,
    /// Predicted positions per sequence (`≤ n_positions`).
    pub seq: usize,
    /// Seed of the batch offsets.
    pub data_seed: u64,
    /// How `data` spells tokens.
    pub token_width: TokenWidth,
    /// The training tokens.
    pub data: Vec<u8>,
}

/// Where the initial parameters come from.
#[derive(Clone, Copy, Debug)]
pub enum Init<'a> {
    /// GPT-2 initialization from a seed ([`GptParams::init`]).
    Seed(u64),
    /// F32 GPT-2 `model.safetensors` bytes ([`GptParams::from_safetensors`]), e.g. a
    /// model bundle's weights.
    Safetensors(&'a [u8]),
}

/// One completed step as the state remembers it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepRecord {
    /// The batch's mean loss before the update.
    pub loss: f32,
    /// The step's trace root ([`StepTrace::root`]).
    pub root: Hash,
}

/// Everything a training run carries from one step to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// The parameters.
    pub params: GptParams<f32>,
    /// The optimizer state; `opt.step` is the number of steps done.
    pub opt: OptState<f32>,
    /// One record per step done, step 1 first.
    pub log: Vec<StepRecord>,
}

/// What [`TrainTask::run_steps`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainRun {
    /// The state after the last step.
    pub state: TrainState,
    /// Every step's trace, in order.
    pub steps: Vec<StepTrace>,
    /// The trace leaves: the input state's hash, then the hash of the state after
    /// each step (`steps.len() + 1` hashes).
    pub states: Vec<Hash>,
    /// Merkle root over `states`: the stage's committed trace root.
    pub trace_root: Hash,
    /// Operations charged (`step_ops() × steps`).
    pub ops: u64,
}

// ---- little helpers for bounded reading ----

pub(crate) struct Reader<'a> {
    pub(crate) rest: &'a [u8],
    pub(crate) what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], TaskError> {
        if self.rest.len() < n {
            return Err(TaskError::Malformed {
                what: self.what,
                detail: format!("truncated at {field}"),
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    pub(crate) fn arr<const N: usize>(&mut self, field: &str) -> Result<[u8; N], TaskError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u8(&mut self, field: &str) -> Result<u8, TaskError> {
        Ok(self.arr::<1>(field)?[0])
    }
    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, TaskError> {
        Ok(u32::from_le_bytes(self.arr(field)?))
    }
    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, TaskError> {
        Ok(u64::from_le_bytes(self.arr(field)?))
    }
    pub(crate) fn f32(&mut self, field: &str) -> Result<f32, TaskError> {
        Ok(f32::from_le_bytes(self.arr(field)?))
    }
    fn f64(&mut self, field: &str) -> Result<f64, TaskError> {
        Ok(f64::from_le_bytes(self.arr(field)?))
    }
    pub(crate) fn f32s(&mut self, n: usize, field: &str) -> Result<Vec<f32>, TaskError> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| task_err("overflow"))?, field)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

fn usize_of(x: u64, field: &str) -> Result<usize, TaskError> {
    usize::try_from(x).map_err(|_| task_err(format!("{field} does not fit this machine")))
}

/// A finite, non-negative value whose zero is `+0.0` (one encoding per value).
fn nonneg32(x: f32) -> bool {
    x.is_finite() && x.is_sign_positive()
}

/// Parameter elements of a GPT of this shape (`Σ` over [`GptConfig::tensor_layout`]),
/// in `u128` so untrusted shapes cannot overflow.
fn param_count(c: &GptConfig) -> u128 {
    let (l, d, v, p) = (
        c.n_layer as u128,
        c.n_embd as u128,
        c.vocab_size as u128,
        c.n_positions as u128,
    );
    v * d + p * d + l * (12 * d * d + 13 * d) + 2 * d
}

/// The training op model (module docs), in `u128`.
mod cost {
    use super::TRANSCENDENTAL;
    const T: u128 = TRANSCENDENTAL as u128;

    pub fn matmul(m: u128, k: u128, n: u128) -> u128 {
        2 * m * k * n
    }
    pub fn linear(m: u128, k: u128, n: u128) -> u128 {
        matmul(m, k, n) + m * n
    }
    pub fn layer_norm(rows: u128, cols: u128) -> u128 {
        rows * (7 * cols + 4)
    }
    pub fn layer_norm_backward(rows: u128, cols: u128) -> u128 {
        rows * (13 * cols + 2)
    }
    pub fn linear_backward(m: u128, k: u128, n: u128) -> u128 {
        matmul(k, m, n) + m * n + matmul(m, n, k)
    }
    pub fn gelu_tanh(n: u128) -> u128 {
        n * (7 + T)
    }
    pub fn gelu_tanh_backward(n: u128) -> u128 {
        n * (18 + T)
    }
    pub fn attention(pairs: u128, heads: u128, hd: u128) -> u128 {
        heads * pairs * (4 * hd + 1 + 4 + T)
    }
    pub fn attention_backward(pairs: u128, heads: u128, hd: u128) -> u128 {
        heads * pairs * (8 * hd + 5)
    }
    pub fn cross_entropy(rows: u128, vocab: u128) -> u128 {
        rows * (vocab * (6 + T) + T + 2) + rows + 1
    }
}

/// The op model's parts of one step, one per kind of unit of [`super::units`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StepParts {
    /// Embeddings: `n·d` additions.
    pub(crate) embed: u128,
    /// One block's forward.
    pub(crate) block: u128,
    /// `ln_f` and the LM head's matmul.
    pub(crate) head: u128,
    /// Cross-entropy (loss and `dlogits`).
    pub(crate) loss: u128,
    /// The tied head's backward (`dh`, `dwte`) and `ln_f`'s backward.
    pub(crate) head_backward: u128,
    /// One block's backward.
    pub(crate) block_backward: u128,
    /// The embeddings' backward.
    pub(crate) embed_backward: u128,
    /// The optimizer update.
    pub(crate) optimizer: u128,
}

/// The op model's parts for `batch` sequences of `seq` tokens. The forward parts are
/// the inference meter's formulas (`Model::meter`, per layer).
fn step_parts(c: &GptConfig, opt: &OptimizerConfig, batch: usize, seq: usize) -> StepParts {
    let (b, s) = (batch as u128, seq as u128);
    let (d, v, heads) = (c.n_embd as u128, c.vocab_size as u128, c.n_head as u128);
    let hd = d / heads;
    let n = b * s;
    let pairs = b * (s * (s + 1) / 2);
    let block = cost::layer_norm(n, d)
        + cost::linear(n, d, 3 * d)
        + cost::attention(pairs, heads, hd)
        + cost::linear(n, d, d)
        + n * d
        + cost::layer_norm(n, d)
        + cost::linear(n, d, 4 * d)
        + cost::gelu_tanh(n * 4 * d)
        + cost::linear(n, 4 * d, d)
        + n * d;
    let block_backward = cost::linear_backward(n, 4 * d, d)
        + cost::gelu_tanh_backward(n * 4 * d)
        + cost::linear_backward(n, d, 4 * d)
        + cost::layer_norm_backward(n, d)
        + cost::linear_backward(n, d, d)
        + cost::attention_backward(pairs, heads, hd)
        + cost::linear_backward(n, d, 3 * d)
        + cost::layer_norm_backward(n, d);
    let p = param_count(c);
    let optimizer = match opt {
        OptimizerConfig::Sgd { momentum, .. } => p * if *momentum != 0.0 { 4 } else { 2 },
        OptimizerConfig::Adam(a) => p * if a.weight_decay != 0.0 { 16 } else { 14 } + 7,
    };
    StepParts {
        embed: n * d,
        block,
        head: cost::layer_norm(n, d) + cost::matmul(n, d, v),
        loss: cost::cross_entropy(n, v),
        head_backward: cost::matmul(n, v, d)
            + cost::matmul(v, n, d)
            + cost::layer_norm_backward(n, d),
        block_backward,
        embed_backward: 2 * n * d,
        optimizer,
    }
}

/// Forward ops of `batch` sequences of `seq` tokens: the inference meter's formulas
/// (`Model::meter`, summed over layers).
fn forward_ops(c: &GptConfig, batch: usize, seq: usize) -> u128 {
    // The forward parts do not depend on the optimizer.
    let s = step_parts(
        c,
        &OptimizerConfig::Sgd {
            lr: 0.0,
            momentum: 0.0,
        },
        batch,
        seq,
    );
    s.embed + c.n_layer as u128 * s.block + s.head
}

/// Loss, backward and optimizer ops of one step (everything but the forward).
fn backward_ops(c: &GptConfig, opt: &OptimizerConfig, batch: usize, seq: usize) -> u128 {
    let s = step_parts(c, opt, batch, seq);
    s.loss + s.head_backward + c.n_layer as u128 * s.block_backward + s.embed_backward + s.optimizer
}

/// The seed of step `t`'s batch sampler.
fn batch_seed(data_seed: u64, t: u64) -> u64 {
    let mut material = [0u8; 16];
    material[..8].copy_from_slice(&data_seed.to_le_bytes());
    material[8..].copy_from_slice(&t.to_le_bytes());
    let key = blake3::derive_key(BATCH_SEED_CONTEXT, &material);
    u64::from_le_bytes(key[..8].try_into().expect("8 bytes"))
}

impl TrainTask {
    /// Whether `bytes` start like a training task (the magic only; decode to check
    /// the rest).
    pub fn is_task(bytes: &[u8]) -> bool {
        bytes.starts_with(TASK_MAGIC)
    }

    /// Tokens in the data blob.
    pub fn tokens(&self) -> usize {
        self.data.len() / self.token_width.bytes()
    }

    fn token(&self, i: usize) -> u32 {
        match self.token_width {
            TokenWidth::U8 => u32::from(self.data[i]),
            TokenWidth::U32 => {
                let b = &self.data[4 * i..4 * i + 4];
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }
        }
    }

    /// The canonical bytes (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TASK_HEADER + self.data.len());
        out.extend_from_slice(TASK_MAGIC);
        out.push(ARCH_GPT);
        let c = &self.config;
        for x in [c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.n_positions] {
            out.extend_from_slice(&(x as u32).to_le_bytes());
        }
        out.extend_from_slice(&c.layer_norm_epsilon.to_le_bytes());
        let (kind, hp) = match self.optimizer {
            OptimizerConfig::Sgd { lr, momentum } => (0u8, [lr, momentum, 0.0, 0.0, 0.0]),
            OptimizerConfig::Adam(a) => (1u8, [a.lr, a.beta1, a.beta2, a.eps, a.weight_decay]),
        };
        out.push(kind);
        for x in hp {
            out.extend_from_slice(&x.to_le_bytes());
        }
        let (kind, warmup, frac) = match self.schedule {
            LrSchedule::Constant => (0u8, 0u64, 0.0f64),
            LrSchedule::WarmupLinearDecay {
                warmup,
                min_lr_frac,
            } => (1u8, warmup, min_lr_frac),
        };
        out.push(kind);
        out.extend_from_slice(&warmup.to_le_bytes());
        out.extend_from_slice(&frac.to_le_bytes());
        out.extend_from_slice(&self.steps.to_le_bytes());
        out.extend_from_slice(&(self.batch as u32).to_le_bytes());
        out.extend_from_slice(&(self.seq as u32).to_le_bytes());
        out.extend_from_slice(&self.data_seed.to_le_bytes());
        out.push(self.token_width.bytes() as u8);
        out.extend_from_slice(&(self.data.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    /// The task's content hash: blake3 of [`TrainTask::encode`], the job's `model`.
    pub fn hash(&self) -> Hash {
        hash_bytes(&self.encode())
    }

    /// Decodes and validates untrusted bytes; every failure is a [`TaskError`].
    pub fn decode(bytes: &[u8], limits: TaskLimits) -> Result<TrainTask, TaskError> {
        if bytes.len() as u64 > limits.max_bytes {
            return Err(TaskError::TooLarge {
                what: "the task blob (bytes)",
                size: bytes.len() as u64,
                limit: limits.max_bytes,
            });
        }
        let mut r = Reader {
            rest: bytes,
            what: "task",
        };
        if r.take(8, "magic").ok() != Some(TASK_MAGIC.as_slice()) {
            return Err(TaskError::NotA("task"));
        }
        let arch = r.u8("architecture")?;
        if arch != ARCH_GPT {
            return Err(task_err(format!("unknown architecture {arch}")));
        }
        let mut dims = [0usize; 5];
        for (d, name) in
            dims.iter_mut()
                .zip(["n_layer", "n_head", "n_embd", "vocab_size", "n_positions"])
        {
            *d = usize_of(u64::from(r.u32(name)?), name)?;
        }
        let config = GptConfig {
            n_layer: dims[0],
            n_head: dims[1],
            n_embd: dims[2],
            vocab_size: dims[3],
            n_positions: dims[4],
            layer_norm_epsilon: r.f32("layer_norm_epsilon")?,
        };
        let kind = r.u8("optimizer")?;
        let mut hp = [0f32; 5];
        for x in hp.iter_mut() {
            *x = r.f32("optimizer hyper-parameter")?;
        }
        let optimizer = match kind {
            0 => {
                if hp[2..].iter().any(|x| x.to_bits() != 0) {
                    return Err(task_err("SGD's unused hyper-parameters must be zero"));
                }
                OptimizerConfig::Sgd {
                    lr: hp[0],
                    momentum: hp[1],
                }
            }
            1 => OptimizerConfig::Adam(AdamConfig {
                lr: hp[0],
                beta1: hp[1],
                beta2: hp[2],
                eps: hp[3],
                weight_decay: hp[4],
            }),
            k => return Err(task_err(format!("unknown optimizer {k}"))),
        };
        let kind = r.u8("schedule")?;
        let warmup = r.u64("warmup")?;
        let min_lr_frac = r.f64("min_lr_frac")?;
        let schedule = match kind {
            0 => {
                if warmup != 0 || min_lr_frac.to_bits() != 0 {
                    return Err(task_err("a constant schedule has no warm-up or decay"));
                }
                LrSchedule::Constant
            }
            1 => LrSchedule::WarmupLinearDecay {
                warmup,
                min_lr_frac,
            },
            k => return Err(task_err(format!("unknown schedule {k}"))),
        };
        let steps = r.u64("steps")?;
        let batch = usize_of(u64::from(r.u32("batch")?), "batch")?;
        let seq = usize_of(u64::from(r.u32("seq")?), "seq")?;
        let data_seed = r.u64("data_seed")?;
        let token_width = match r.u8("token width")? {
            1 => TokenWidth::U8,
            4 => TokenWidth::U32,
            w => return Err(task_err(format!("token width {w} (1 or 4)"))),
        };
        let len = usize_of(r.u64("data length")?, "data length")?;
        let data = r.take(len, "data")?.to_vec();
        if !r.rest.is_empty() {
            return Err(task_err(format!("{} trailing bytes", r.rest.len())));
        }
        let task = TrainTask {
            config,
            optimizer,
            schedule,
            steps,
            batch,
            seq,
            data_seed,
            token_width,
            data,
        };
        task.validate(limits)?;
        Ok(task)
    }

    /// Checks that the task can run within `limits`: a usable shape, sane
    /// hyper-parameters, batches that fit the model, data long enough for a window,
    /// every token id inside the vocabulary, and a total op count that fits `u64`.
    pub fn validate(&self, limits: TaskLimits) -> Result<(), TaskError> {
        self.check_runnable()?;
        let invalid = |s: String| Err(TaskError::Invalid(s));
        let c = &self.config;
        let params = param_count(c);
        if params > u128::from(limits.max_params) {
            return Err(TaskError::TooLarge {
                what: "the parameter count",
                size: u64::try_from(params).unwrap_or(u64::MAX),
                limit: limits.max_params,
            });
        }
        if self.steps > limits.max_steps {
            return Err(TaskError::TooLarge {
                what: "the step count",
                size: self.steps,
                limit: limits.max_steps,
            });
        }
        let tokens = self.batch as u64 * self.seq as u64;
        if tokens > limits.max_batch_tokens {
            return Err(TaskError::TooLarge {
                what: "tokens per batch",
                size: tokens,
                limit: limits.max_batch_tokens,
            });
        }
        if self.token_width == TokenWidth::U8 && c.vocab_size < 256 {
            return invalid(format!(
                "byte tokens need a vocabulary of 256, the model has {}",
                c.vocab_size
            ));
        }
        if self.token_width == TokenWidth::U32 {
            let vocab = c.vocab_size;
            if let Some(i) = (0..self.tokens()).find(|&i| self.token(i) as usize >= vocab) {
                return invalid(format!(
                    "token {i} of the data is id {}, outside the vocabulary of {vocab}",
                    self.token(i)
                ));
            }
        }
        let total = self.step_ops_u128().checked_mul(u128::from(self.steps));
        if total.is_none_or(|t| t > u128::from(u64::MAX)) {
            return invalid("the task's total operations overflow 64 bits".into());
        }
        Ok(())
    }

    /// The checks that keep [`TrainTask::run_steps`] from failing half-way (shape,
    /// hyper-parameters, window length); token ids are checked per batch by the model.
    pub(crate) fn check_runnable(&self) -> Result<(), TaskError> {
        let invalid = |s: String| Err(TaskError::Invalid(s));
        let c = &self.config;
        c.validate()
            .map_err(|e| TaskError::Invalid(format!("model shape: {e}")))?;
        let dims = [c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.n_positions];
        if dims.iter().any(|&d| d > u32::MAX as usize)
            || self.batch > u32::MAX as usize
            || self.seq > u32::MAX as usize
        {
            return invalid("a dimension exceeds 32 bits".into());
        }
        if !c.layer_norm_epsilon.is_finite() {
            return invalid("layer_norm_epsilon must be finite".into());
        }
        match self.optimizer {
            OptimizerConfig::Sgd { lr, momentum } => {
                if !nonneg32(lr) || !nonneg32(momentum) || momentum >= 1.0 {
                    return invalid(format!(
                        "SGD lr {lr}, momentum {momentum}: need lr ≥ 0 and momentum in [0, 1)"
                    ));
                }
            }
            OptimizerConfig::Adam(a) => {
                let ok = nonneg32(a.lr)
                    && nonneg32(a.beta1)
                    && a.beta1 < 1.0
                    && nonneg32(a.beta2)
                    && a.beta2 < 1.0
                    && nonneg32(a.eps)
                    && a.eps > 0.0
                    && nonneg32(a.weight_decay);
                if !ok {
                    return invalid(format!(
                        "Adam {a:?}: need lr ≥ 0, β in [0, 1), ε > 0, weight decay ≥ 0"
                    ));
                }
            }
        }
        if let LrSchedule::WarmupLinearDecay {
            warmup,
            min_lr_frac,
        } = self.schedule
        {
            if !(min_lr_frac.is_finite() && min_lr_frac.is_sign_positive() && min_lr_frac <= 1.0) {
                return invalid(format!("min_lr_frac {min_lr_frac} outside [0, 1]"));
            }
            if warmup > self.steps {
                return invalid(format!(
                    "warm-up of {warmup} steps in a {}-step task",
                    self.steps
                ));
            }
        }
        if self.steps == 0 {
            return invalid("a task runs at least one step".into());
        }
        if self.batch == 0 || self.seq == 0 {
            return invalid(format!(
                "batch {} × seq {}: both must be positive",
                self.batch, self.seq
            ));
        }
        if self.seq > c.n_positions {
            return invalid(format!(
                "seq {} exceeds the model's {} positions",
                self.seq, c.n_positions
            ));
        }
        if !self.data.len().is_multiple_of(self.token_width.bytes()) {
            return invalid("the data is not a whole number of u32 tokens".into());
        }
        if self.tokens() < self.seq + 2 {
            return invalid(format!(
                "{} tokens of data; a window needs seq + 2 = {}",
                self.tokens(),
                self.seq + 2
            ));
        }
        Ok(())
    }

    /// The op model's parts of one of this task's steps ([`super::units::unit_ops`]).
    pub(crate) fn step_parts(&self) -> StepParts {
        step_parts(&self.config, &self.optimizer, self.batch, self.seq)
    }

    fn step_ops_u128(&self) -> u128 {
        forward_ops(&self.config, self.batch, self.seq)
            + backward_ops(&self.config, &self.optimizer, self.batch, self.seq)
    }

    /// Operations of one step under the training op model (module docs), known
    /// without running anything: a stage of `k` steps declares `k × step_ops()`.
    /// Saturates at `u64::MAX` for a task [`TrainTask::validate`] refuses.
    pub fn step_ops(&self) -> u64 {
        u64::try_from(self.step_ops_u128()).unwrap_or(u64::MAX)
    }

    /// The forward part of [`TrainTask::step_ops`] — equal to the inference meter of
    /// the same model on `batch` sequences of `seq` tokens.
    pub fn forward_ops(&self) -> u64 {
        u64::try_from(forward_ops(&self.config, self.batch, self.seq)).unwrap_or(u64::MAX)
    }

    /// The learning rate of step `t` (1-based).
    pub fn lr_at(&self, t: u64) -> f32 {
        let peak = self.optimizer.lr();
        match self.schedule {
            LrSchedule::Constant => peak,
            LrSchedule::WarmupLinearDecay {
                warmup,
                min_lr_frac,
            } => Recipe {
                config: self.config,
                init_seed: 0,
                data_seed: self.data_seed,
                steps: self.steps,
                batch: self.batch,
                seq: self.seq,
                adam: AdamConfig {
                    lr: peak,
                    ..AdamConfig::default()
                },
                warmup,
                min_lr_frac,
            }
            .lr_at(t),
        }
    }

    /// The batch of step `t` (0-based): `batch` windows of `seq + 1` tokens at offsets
    /// drawn from a SplitMix64 seeded for this step alone (as
    /// [`super::shipped::sample_batch`] draws them). Errors on a task that cannot run.
    pub fn batch_at(&self, t: u64) -> Result<TokenBatch, TaskError> {
        self.check_runnable()?;
        Ok(self.sample(t))
    }

    /// [`TrainTask::batch_at`] for a task [`TrainTask::check_runnable`] accepted
    /// (the data holds at least `seq + 2` tokens, so every window fits).
    pub(crate) fn sample(&self, t: u64) -> TokenBatch {
        let mut rng = SplitMix64::new(batch_seed(self.data_seed, t));
        let span = (self.tokens() - self.seq - 1) as u64;
        let mut tokens = Vec::with_capacity(self.batch * (self.seq + 1));
        for _ in 0..self.batch {
            let off = rng.below(span + 1) as usize;
            tokens.extend((off..off + self.seq + 1).map(|i| self.token(i)));
        }
        TokenBatch {
            batch: self.batch,
            seq: self.seq,
            tokens,
        }
    }

    /// Moment buffers the optimizer keeps per tensor (0, 1 or 2).
    pub(crate) fn moment_buffers(&self) -> u8 {
        match self.optimizer {
            OptimizerConfig::Sgd { momentum, .. } => u8::from(momentum != 0.0),
            OptimizerConfig::Adam(_) => 2,
        }
    }

    /// The state before step 0: parameters from `init`, a fresh optimizer, no log.
    pub fn initial_state(&self, init: Init<'_>) -> Result<TrainState, TaskError> {
        self.check_runnable()?;
        let params = match init {
            Init::Seed(seed) => GptParams::init(self.config, seed)?,
            Init::Safetensors(bytes) => GptParams::from_safetensors(self.config, bytes)?,
        };
        let sizes: Vec<usize> = params.params.tensors.iter().map(|p| p.data.len()).collect();
        Ok(TrainState {
            params,
            opt: OptState::new(self.optimizer, &sizes),
            log: Vec::new(),
        })
    }

    /// Runs steps `steps` (0-based, absolute) from `state`, which must have done
    /// exactly `steps.start` steps; `steps.end ≤ self.steps`. Returns the new state,
    /// every step's trace, the state hash after each step, the stage's trace root
    /// (Merkle over the input state's hash and those) and the ops charged. `state` is
    /// not modified.
    pub fn run_steps(&self, state: &TrainState, steps: Range<u64>) -> Result<TrainRun, TaskError> {
        let range_err = |reason: String| TaskError::StepRange {
            start: steps.start,
            end: steps.end,
            reason,
        };
        self.check_runnable()?;
        if steps.start >= steps.end {
            return Err(range_err("empty range".into()));
        }
        if steps.end > self.steps {
            return Err(range_err(format!("the task has {} steps", self.steps)));
        }
        if state.opt.step != steps.start {
            return Err(range_err(format!(
                "the state has done {} steps",
                state.opt.step
            )));
        }
        state.check_layout(self)?;
        let mut states = Vec::with_capacity((steps.end - steps.start) as usize + 1);
        states.push(state.hash());
        let mut state = state.clone();
        let mut traces = Vec::with_capacity((steps.end - steps.start) as usize);
        let mut ops: u64 = 0;
        for t in steps.clone() {
            let batch = self.sample(t);
            let (loss, grads) = state.params.loss_and_grads(&batch)?;
            traces.push(self.finish_step(t, &mut state, &batch, loss, &grads));
            states.push(state.hash());
            // Charged from the batch that ran (its shape is the task's).
            let step_ops = forward_ops(&self.config, batch.batch, batch.seq)
                + backward_ops(&self.config, &self.optimizer, batch.batch, batch.seq);
            ops = ops.saturating_add(u64::try_from(step_ops).unwrap_or(u64::MAX));
        }
        Ok(TrainRun {
            state,
            trace_root: merkle_root(&states),
            states,
            steps: traces,
            ops,
        })
    }

    /// The end of step `t` once its loss and gradients are known: the schedule's
    /// rate, the optimizer update ([`apply_update`]) and the step's log record. The
    /// monolithic step and the optimizer unit ([`super::units`]) both end here.
    pub(crate) fn finish_step(
        &self,
        t: u64,
        state: &mut TrainState,
        batch: &TokenBatch,
        loss: f32,
        grads: &[Vec<f32>],
    ) -> StepTrace {
        state.opt.config = self.optimizer;
        state.opt.config.set_lr(self.lr_at(t + 1));
        let trace = apply_update(&mut state.params, &mut state.opt, batch, loss, grads);
        state.log.push(StepRecord {
            loss: trace.loss as f32,
            root: trace.root,
        });
        trace
    }
}

/// The GPT-2 shape and F32 weights of a model bundle, for [`TrainTask::config`] and
/// [`Init::Safetensors`].
pub fn gpt_of_bundle(bundle: &Bundle) -> Result<(GptConfig, &[u8]), TaskError> {
    let bad = |s: String| TaskError::Invalid(format!("model bundle: {s}"));
    let json = bundle
        .file("config.json")
        .ok_or_else(|| bad("no config.json".into()))?;
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| bad(format!("config.json: {e}")))?;
    if v.get("model_type").and_then(|t| t.as_str()) != Some("gpt2") {
        return Err(bad("training runs GPT-2 decoders (model_type gpt2)".into()));
    }
    let config = GptConfig::from_json(&v).map_err(|e| bad(e.to_string()))?;
    let weights = bundle
        .file("model.safetensors")
        .ok_or_else(|| bad("no model.safetensors".into()))?;
    Ok((config, weights))
}

impl TrainState {
    /// Whether `bytes` start like a training state (the magic only).
    pub fn is_state(bytes: &[u8]) -> bool {
        bytes.starts_with(STATE_MAGIC)
    }

    /// Steps done.
    pub fn step(&self) -> u64 {
        self.opt.step
    }

    fn elements(&self) -> usize {
        self.params
            .params
            .tensors
            .iter()
            .map(|p| p.data.len())
            .sum()
    }

    /// Whether this state has the task's tensor layout and optimizer buffers.
    pub(crate) fn check_layout(&self, task: &TrainTask) -> Result<(), TaskError> {
        let mismatch = |s: String| Err(TaskError::StateMismatch(s));
        if self.params.config != task.config {
            return mismatch("model shape".into());
        }
        let layout = task.config.tensor_layout();
        let t = &self.params.params.tensors;
        if t.len() != layout.len()
            || t.iter().zip(&layout).any(|(p, (name, shape))| {
                p.name != *name
                    || p.shape != *shape
                    || p.data.len() != shape.iter().product::<usize>()
            })
        {
            return mismatch("tensor layout".into());
        }
        let mb = task.moment_buffers();
        let want = |i: usize, on: bool| if on { t[i].data.len() } else { 0 };
        let ok = self.opt.m.len() == t.len()
            && self.opt.v.len() == t.len()
            && (0..t.len()).all(|i| {
                self.opt.m[i].len() == want(i, mb >= 1) && self.opt.v[i].len() == want(i, mb == 2)
            });
        if !ok {
            return mismatch("optimizer buffers".into());
        }
        if std::mem::discriminant(&self.opt.config) != std::mem::discriminant(&task.optimizer) {
            return mismatch("optimizer kind".into());
        }
        if self.log.len() as u64 != self.opt.step {
            return mismatch(format!(
                "{} log records after {} steps",
                self.log.len(),
                self.opt.step
            ));
        }
        Ok(())
    }

    /// The canonical bytes (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let p = self.elements();
        let with_m = self.opt.m.iter().any(|m| !m.is_empty());
        let with_v = self.opt.v.iter().any(|v| !v.is_empty());
        let mb = u8::from(with_m) + u8::from(with_v);
        let mut out = Vec::with_capacity(
            STATE_HEADER + 4 * p * (1 + mb as usize) + LOG_ENTRY * self.log.len(),
        );
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&self.opt.step.to_le_bytes());
        out.extend_from_slice(&self.opt.beta1_pow.to_le_bytes());
        out.extend_from_slice(&self.opt.beta2_pow.to_le_bytes());
        out.push(mb);
        out.extend_from_slice(&(p as u64).to_le_bytes());
        let mut put = |xs: &[f32]| {
            for x in xs {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
        for t in &self.params.params.tensors {
            put(&t.data);
        }
        if with_m {
            self.opt.m.iter().for_each(|m| put(m));
        }
        if with_v {
            self.opt.v.iter().for_each(|v| put(v));
        }
        for r in &self.log {
            out.extend_from_slice(&r.loss.to_le_bytes());
            out.extend_from_slice(&r.root.0);
        }
        out
    }

    /// The state's content hash: blake3 of [`TrainState::encode`].
    pub fn hash(&self) -> Hash {
        hash_bytes(&self.encode())
    }

    /// Decodes untrusted bytes as a state of `task` (which fixes the layout); the
    /// length must match exactly. Every failure is a [`TaskError`].
    pub fn decode(bytes: &[u8], task: &TrainTask) -> Result<TrainState, TaskError> {
        task.check_runnable()?;
        let mut r = Reader {
            rest: bytes,
            what: "state",
        };
        if r.take(8, "magic").ok() != Some(STATE_MAGIC.as_slice()) {
            return Err(TaskError::NotA("state"));
        }
        let step = r.u64("step")?;
        let beta1_pow = r.f32("beta1_pow")?;
        let beta2_pow = r.f32("beta2_pow")?;
        let mb = r.u8("moment buffers")?;
        let p = r.u64("parameter elements")?;
        let layout = task.config.tensor_layout();
        let want_p: usize = layout
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        if p != want_p as u64 {
            return Err(TaskError::StateMismatch(format!(
                "{p} parameter elements, the task's model has {want_p}"
            )));
        }
        if mb != task.moment_buffers() {
            return Err(TaskError::StateMismatch(format!(
                "{mb} moment buffers, the task's optimizer keeps {}",
                task.moment_buffers()
            )));
        }
        if step > task.steps {
            return Err(TaskError::StateMismatch(format!(
                "{step} steps done, the task has {}",
                task.steps
            )));
        }
        if !matches!(task.optimizer, OptimizerConfig::Adam(_))
            && (beta1_pow.to_bits() != 1f32.to_bits() || beta2_pow.to_bits() != 1f32.to_bits())
        {
            return Err(state_err("SGD keeps no bias-correction products"));
        }
        // The exact length, before reading (and allocating) anything large.
        let expected = (want_p as u128) * 4 * (1 + u128::from(mb))
            + u128::from(step) * LOG_ENTRY as u128
            + STATE_HEADER as u128;
        if expected != bytes.len() as u128 {
            return Err(state_err(format!(
                "{} bytes, the layout needs {expected}",
                bytes.len()
            )));
        }
        let read_set = |r: &mut Reader<'_>, what: &str| -> Result<Vec<Vec<f32>>, TaskError> {
            layout
                .iter()
                .map(|(_, s)| r.f32s(s.iter().product(), what))
                .collect()
        };
        let params = read_set(&mut r, "parameters")?;
        let empty = || layout.iter().map(|_| Vec::new()).collect::<Vec<_>>();
        let m = if mb >= 1 {
            read_set(&mut r, "m")?
        } else {
            empty()
        };
        let v = if mb == 2 {
            read_set(&mut r, "v")?
        } else {
            empty()
        };
        let mut log = Vec::with_capacity(step as usize);
        for _ in 0..step {
            let loss = r.f32("log loss")?;
            let root = crate::trace::Hash(r.arr::<32>("log root")?);
            log.push(StepRecord { loss, root });
        }
        let tensors = layout
            .into_iter()
            .zip(params)
            .map(|((name, shape), data)| super::params::Param { name, shape, data })
            .collect();
        let mut config = task.optimizer;
        config.set_lr(if step == 0 {
            task.optimizer.lr()
        } else {
            task.lr_at(step)
        });
        Ok(TrainState {
            params: GptParams {
                config: task.config,
                params: super::params::ParamSet { tensors },
            },
            opt: OptState {
                config,
                step,
                m,
                v,
                beta1_pow,
                beta2_pow,
            },
            log,
        })
    }
}
