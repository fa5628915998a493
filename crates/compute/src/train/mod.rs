//! Deterministic training: forward with caches, hand-written backward,
//! SGD/Adam, and a Merkle-committed trace per step.
//!
//! ```text
//!            batch ──► forward (caches) ──► loss ──► backward ──► grads
//!                                                                   │
//!   θₜ₋₁, stateₜ₋₁ ─────────────────────────────────► optimizer ◄───┘
//!                                                        │
//!                             θₜ, stateₜ ──► StepTrace { H(batch), H(loss), H(θᵢ)…, H(state)… } ─► root
//! ```
//!
//! Why it is bitwise reproducible, at any thread count and on any CPU:
//!
//! 1. Every kernel ([`ops`]) reduces each output in one fixed order and splits
//!    threads over independent outputs only; weight gradients `Xᵀ·dY` are
//!    matmuls whose reduction runs over batch rows in order, so "gradient
//!    accumulation over the batch" has one order by construction.
//! 2. Every `c + a·b` is one fused multiply-add ([`real::Real::fma`], the same
//!    operation as the inference kernels; Rust never contracts a bare `a*b + c`),
//!    transcendentals from `libm`, square roots IEEE-exact.
//! 3. Initialization and batch order come from a seeded integer PRNG
//!    ([`rng::SplitMix64`]); nothing reads a clock or the OS.
//!
//! The same generic code runs in `f64` ([`real::Real`]), which is how the
//! gradient-check tests prove each backward correct by finite differences.
//!
//! Models: [`mlp::MlpParams`] (ReLU MLP classifier) and [`gpt::GptParams`]
//! (GPT-2 architecture: token + position embeddings, pre-LN blocks with causal
//! multi-head attention and a gelu_tanh MLP, final LN, LM head tied to `wte`).
//! [`shipped`] trains the small byte-level GPT that ships in `assets/`.
//!
//! [`task`] makes training a market job (content-addressed task and state, step
//! ranges chained by hash); [`units`] cuts one step into re-executable units
//! (embedding, each block's forward and backward, head, optimizer) joined by
//! hash-addressed carries, so a dispute over a step narrows to one unit.

pub mod gpt;
pub mod mlp;
pub mod ops;
pub mod optim;
pub mod params;
pub mod real;
pub mod rng;
pub mod shipped;
pub mod task;
pub mod trace;
pub mod units;

pub use gpt::{GptConfig, GptParams, TokenBatch};
pub use mlp::{ClassBatch, MlpParams};
pub use optim::{AdamConfig, OptState, OptimizerConfig};
pub use params::{Param, ParamSet};
pub use real::Real;
pub use trace::{hash_bytes, Hash, RunTrace, StepTrace};

/// What can go wrong in a training step (all from untrusted batches or files).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The batch's shape does not match the model or itself.
    #[error("bad batch: {0}")]
    BadBatch(String),
    /// A token or label id is outside the vocabulary / class range.
    #[error("id {id} out of range (limit {limit})")]
    IdOutOfRange {
        /// The offending id.
        id: u32,
        /// The exclusive bound.
        limit: usize,
    },
    /// The sequence is longer than the model's positions.
    #[error("sequence length {seq} exceeds n_positions {max}")]
    SequenceTooLong {
        /// Requested length.
        seq: usize,
        /// The model's limit.
        max: usize,
    },
    /// A configuration is unusable (zero sizes, width not divisible by heads, …).
    #[error("bad config: {0}")]
    BadConfig(String),
    /// Reading or writing a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// A model the generic training step can drive.
pub trait Trainable<T: Real> {
    /// One step's input.
    type Batch;
    /// The parameters, canonical order.
    fn params(&self) -> &ParamSet<T>;
    /// Mutable parameters (the optimizer writes them).
    fn params_mut(&mut self) -> &mut ParamSet<T>;
    /// Mean loss of the batch (forward only).
    fn loss(&self, batch: &Self::Batch) -> Result<T, TrainError>;
    /// Mean loss and its gradient for every parameter (canonical order).
    fn loss_and_grads(&self, batch: &Self::Batch) -> Result<(T, Vec<Vec<T>>), TrainError>;
    /// The batch's canonical bytes (hashed into the step trace).
    fn batch_bytes(batch: &Self::Batch) -> Vec<u8>;
}

/// One deterministic training step: forward, backward, optimizer update, and
/// the step's trace. On error nothing is modified.
pub fn train_step<T: Real, M: Trainable<T>>(
    model: &mut M,
    opt: &mut OptState<T>,
    batch: &M::Batch,
) -> Result<StepTrace, TrainError> {
    let (loss, grads) = model.loss_and_grads(batch)?;
    Ok(apply_update(model, opt, batch, loss, &grads))
}

/// The second half of [`train_step`]: the optimizer update from the step's loss and
/// gradients, and the step's trace (also the last unit of a step cut into units,
/// [`units`]).
pub fn apply_update<T: Real, M: Trainable<T>>(
    model: &mut M,
    opt: &mut OptState<T>,
    batch: &M::Batch,
    loss: T,
    grads: &[Vec<T>],
) -> StepTrace {
    opt.apply(model.params_mut(), grads);
    let mut loss_bytes = Vec::with_capacity(T::BYTES);
    T::extend_le_bytes(&[loss], &mut loss_bytes);
    StepTrace::new(
        opt.step,
        loss.to_f64(),
        hash_bytes(&M::batch_bytes(batch)),
        hash_bytes(&loss_bytes),
        model.params().hashes(),
        opt.leaf_hashes(),
    )
}

/// A fresh optimizer state sized for `model`'s parameters.
pub fn optimizer_for<T: Real, M: Trainable<T>>(model: &M, config: OptimizerConfig) -> OptState<T> {
    let sizes: Vec<usize> = model
        .params()
        .tensors
        .iter()
        .map(|p| p.data.len())
        .collect();
    OptState::new(config, &sizes)
}
