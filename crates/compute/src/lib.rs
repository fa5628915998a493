//! Agentic's bitwise-deterministic neural-network runtime.
//!
//! A provider runs a job here; an auditor re-runs it; a validator re-executes one
//! disputed layer. All three must get the same bits, on any x86-64 or ARM CPU, at any
//! thread count — that is what makes a trace a commitment and a dispute decidable.
//!
//! ```text
//!  loader (safetensors, config.json) ─► models::{Bert, Gpt, Mlp} ─ layer i ─► Activation
//!        tokenizer (tokenizer.json / bytes) ─┘        │                         │
//!        registry (minilm, tiny-gpt, a path) ─────────┘                 blake3 (canonical bytes)
//!                                                     │                         │
//!        metering: ops per layer from shapes ◄────────┘            trace: Merkle root of hashes
//!                                                                         (agentic_primitives::merkle)
//! ```
//!
//! # Determinism rules
//!
//! 1. Every output element is reduced in one fixed order, each step `acc = fma(a, b,
//!    acc)` (one fused multiply-add, rounded once, on every CPU: hardware or `libm::fmaf`);
//!    SIMD lanes and threads split *independent* outputs only
//!    ([`kernels`]). Batching sentences, splitting rows across threads and the KV cache
//!    therefore never change a bit: each row is computed by the same scalar sequence.
//! 2. Transcendentals (`exp`, `erf`, `tanh`, `sqrt`) come from `libm`, never the
//!    platform's math library.
//! 3. No clock, no OS randomness, no hash-map iteration order. Sampling uses a
//!    [`models::gpt::SplitMix64`] stream from the caller's seed and integer arithmetic
//!    over weights derived from the logits.
//! 4. Untrusted input (checkpoints, configs, token ids, activation bytes) is validated
//!    and returns a typed [`ComputeError`]; nothing panics on it.
//!
//! # Where to read next
//!
//! [`activation`] (what flows between layers, canonical bytes), [`trace`] (hashes,
//! root, re-execution), [`metering`] (the op model), [`models`] (layer boundaries),
//! [`registry`] (names → models), [`kernels`] (the arithmetic), [`partition`] (stages),
//! [`train`] (deterministic training steps).

pub mod activation;
pub mod bundle;
pub mod error;
pub mod kernels;
pub mod llm;
pub mod loader;
pub mod metering;
pub mod models;
pub mod partition;
pub mod registry;
pub mod tensor;
pub mod tokenizer;
pub mod trace;
pub mod train;

pub use activation::{Activation, ActivationKind};
pub use bundle::Bundle;
pub use error::ComputeError;
pub use metering::InputShape;
pub use models::reexecute_layer;
pub use models::{Model, RunOutput};
pub use tensor::Tensor;
pub use trace::{Hash, Trace};
