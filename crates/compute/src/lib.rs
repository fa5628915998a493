//! Agentic's bitwise-deterministic neural-network runtime.
//!
//! (Module docs are written by the compute work: determinism rules, metering, traces.)

pub mod error;
pub mod kernels;
pub mod partition;
pub mod tensor;
pub mod train;

pub use error::ComputeError;
pub use tensor::Tensor;
