//! Agentic's bitwise-deterministic neural-network runtime.
//!
//! (Module docs are written by the compute work: determinism rules, metering, traces.)

pub mod activation;
pub mod error;
pub mod kernels;
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
pub use error::ComputeError;
pub use metering::InputShape;
pub use models::{Model, RunOutput};
pub use tensor::Tensor;
pub use trace::{reexecute_layer, Digest, Trace};
