//! Typed errors of the compute runtime.
//!
//! Every failure on untrusted input — a checkpoint file, a `config.json`, a token id, a
//! prompt, a committed activation handed to the referee — is one of these variants.
//! Nothing in the runtime panics on such input.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// Two tensors' shapes do not fit the operation.
    #[error("shape mismatch in {op}: {detail}")]
    ShapeMismatch { op: &'static str, detail: String },

    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not a valid safetensors file (bad header, offsets, truncated data…).
    #[error("corrupt safetensors file: {0}")]
    CorruptCheckpoint(String),

    /// A tensor the architecture needs is absent from the checkpoint.
    #[error("tensor `{name}` missing from the checkpoint")]
    MissingTensor { name: String },

    /// A GGUF file that is truncated or malformed; `offset` is where reading failed.
    #[error("corrupt GGUF file at byte {offset}: {detail}")]
    Gguf { offset: u64, detail: String },

    /// A checkpoint tensor has the wrong shape for the configuration.
    #[error("tensor `{name}` has shape {actual:?}, the configuration requires {expected:?}")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// A checkpoint tensor has a dtype the runtime does not load.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype { name: String, dtype: String },

    /// `config.json` (or an equivalent) is missing a field, malformed, or inconsistent.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),

    /// `config.json` names an architecture this runtime does not implement.
    #[error("unknown model architecture `{0}` (supported: bert, gpt2, mlp, and for LLMs llama, mistral, qwen2)")]
    UnknownArchitecture(String),

    /// No model of that name in the registry and no such directory.
    #[error("model `{name}` not found: {detail}")]
    ModelNotFound { name: String, detail: String },

    /// The tokenizer could not be loaded or failed on the text.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),

    /// A token id is outside the model's vocabulary.
    #[error("token id {id} out of range for a vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },

    /// A sequence is longer than the model's position table allows.
    #[error("sequence of {len} tokens exceeds the model's maximum of {max}")]
    InputTooLong { len: usize, max: usize },

    /// The input holds no token or no row.
    #[error("empty input: {0}")]
    EmptyInput(String),

    /// A layer index outside `0..layers`, or a stage range that does not fit the model.
    #[error("layer {layer} out of range for a model of {layers} layers")]
    LayerOutOfRange { layer: usize, layers: usize },

    /// An activation handed to a layer is not the kind or width that layer takes.
    #[error("layer {layer} cannot take this activation: {detail}")]
    BadActivation { layer: usize, detail: String },

    /// Canonical activation bytes that do not decode.
    #[error("malformed activation bytes: {0}")]
    MalformedActivation(String),

    /// A generation request's bytes that do not decode ([`crate::llm::stage::GenerationRequest`]).
    #[error("malformed generation request: {0}")]
    MalformedRequest(String),
}

impl ComputeError {
    /// Convenience constructor for [`ComputeError::InvalidConfig`].
    pub fn config(detail: impl Into<String>) -> Self {
        Self::InvalidConfig(detail.into())
    }
}
