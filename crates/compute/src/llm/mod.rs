//! Large language models: the Llama family from GGUF and Hugging Face checkpoints.
//!
//! ```text
//!  gguf (parser) ─┐                     ┌─ quant: weights kept quantized, f32 activations,
//!  safetensors ───┴─► llama::Llama ─────┤   one fixed reduction order per output
//!  vocab (tokenizer, chat template) ─┐  └─ forward over a batch of sequences + KV caches
//!                                    └──► generate: prefill, decode, sample, trace leaves
//! ```
//!
//! The trace of a generation has one leaf per (step, layer): step 0 is the prompt's
//! prefill, step `t ≥ 1` decodes the `t`-th generated token's predecessor; layer 0 is the
//! embedding, `1..=L` the blocks, `L+1` the head (logits of the step's last row). A
//! teacher-forced prefill over prompt + generated tokens cut into the same steps yields
//! the same leaves, bit for bit.
//!
//! [`stage`] splits a generation into pipeline stages — contiguous ranges of those
//! layers, one provider each, rows passed from one to the next — with the same leaves
//! and tokens as the whole model.

pub mod generate;
pub mod gguf;
pub mod llama;
pub mod quant;
pub mod referee;
pub mod sample;
pub mod stage;
pub mod vocab;

pub use generate::{load, Generation, LlmModel, StopReason};
pub use llama::{KvCache, Llama, LlamaConfig};
pub use sample::Sampler;
