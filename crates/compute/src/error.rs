//! Typed errors of the compute runtime.

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// Two tensors' shapes do not fit the operation.
    #[error("shape mismatch in {op}: {detail}")]
    ShapeMismatch { op: &'static str, detail: String },
}
