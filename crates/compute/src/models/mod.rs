//! Models as sequences of layers.
//!
//! Every model is a list of layers `L0 … L(n-1)`; a layer is a pure function
//! `Activation → Activation` (see [`crate::activation`]). That one shape serves every
//! consumer:
//!
//! | consumer | calls |
//! |---|---|
//! | a provider running a whole job | [`Model::run`] → output + [`Trace`] + metered ops |
//! | a pipeline stage (layers `a..b`) | [`Model::run_range`] |
//! | the market, before execution | [`Model::meter`] → ops per layer |
//! | the dispute referee | [`Model::run_layer`] / [`reexecute_layer`] |
//! | the partitioner | [`Model::layers`], [`Model::meter`], activation sizes |
//!
//! Layer boundaries:
//!
//! ```text
//!  BERT  L0 embeddings (word+type+position, LN) │ L1..=Ln encoder blocks │ L(n+1) mean pool + L2 normalize
//!  GPT   L0 embeddings (wte+wpe)                 │ L1..=Ln decoder blocks │ L(n+1) ln_f + LM head (logits)
//!  MLP   Li = dense i (+ activation on all but the last)
//! ```

pub mod bert;
pub mod gpt;
pub mod mlp;
pub mod ops;

use std::ops::Range;

use agentic_primitives::Hash;

use crate::activation::Activation;
use crate::metering::{InputShape, OpCounter};
use crate::trace::Trace;
use crate::ComputeError;

pub use bert::{Bert, BertConfig};
pub use gpt::{GenerateConfig, Generation, Gpt, GptConfig, Sampling, StopReason};
pub use mlp::{Dense, Mlp, Nonlinearity};

/// A loaded model.
#[derive(Debug)]
pub enum Model {
    Bert(Bert),
    Gpt(Gpt),
    Mlp(Mlp),
}

/// Result of running a range of layers.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The last layer's output.
    pub output: Activation,
    /// The trace of the layers run.
    pub trace: Trace,
    /// Operations counted during execution, per layer run.
    pub ops: Vec<u64>,
}

impl RunOutput {
    /// Total operations.
    pub fn total_ops(&self) -> u64 {
        self.ops.iter().sum()
    }
}

impl Model {
    /// Architecture name (`bert`, `gpt2`, `mlp`).
    pub fn architecture(&self) -> &'static str {
        match self {
            Model::Bert(_) => "bert",
            Model::Gpt(_) => "gpt2",
            Model::Mlp(_) => "mlp",
        }
    }

    /// Number of layers.
    pub fn layers(&self) -> usize {
        match self {
            Model::Bert(m) => m.layers(),
            Model::Gpt(m) => m.layers(),
            Model::Mlp(m) => m.layers(),
        }
    }

    /// Human-readable name of layer `i` (e.g. `encoder.3`).
    pub fn layer_name(&self, i: usize) -> String {
        match self {
            Model::Bert(m) => m.layer_name(i),
            Model::Gpt(m) => m.layer_name(i),
            Model::Mlp(m) => m.layer_name(i),
        }
    }

    /// Runs layer `i` on `input`, charging `ops`.
    pub fn run_layer_counted(
        &self,
        i: usize,
        input: &Activation,
        ops: &OpCounter,
    ) -> Result<Activation, ComputeError> {
        if i >= self.layers() {
            return Err(ComputeError::LayerOutOfRange {
                layer: i,
                layers: self.layers(),
            });
        }
        match self {
            Model::Bert(m) => m.run_layer(i, input, ops),
            Model::Gpt(m) => m.run_layer(i, input, ops),
            Model::Mlp(m) => m.run_layer(i, input, ops),
        }
    }

    /// Runs layer `i` on `input`.
    pub fn run_layer(&self, i: usize, input: &Activation) -> Result<Activation, ComputeError> {
        self.run_layer_counted(i, input, &OpCounter::new())
    }

    /// Operations of each layer for an input of this shape, computed without running.
    pub fn meter(&self, shape: &InputShape) -> Result<Vec<u64>, ComputeError> {
        match self {
            Model::Bert(m) => m.meter(shape),
            Model::Gpt(m) => m.meter(shape),
            Model::Mlp(m) => m.meter(shape),
        }
    }

    /// Runs every layer: output, trace, and ops counted during execution.
    pub fn run(&self, input: Activation) -> Result<RunOutput, ComputeError> {
        self.run_range(0..self.layers(), input)
    }

    /// Runs layers `layers` (a pipeline stage) from the activation entering its first
    /// layer. The trace's `first_layer` is `layers.start`.
    pub fn run_range(
        &self,
        layers: Range<usize>,
        input: Activation,
    ) -> Result<RunOutput, ComputeError> {
        if layers.start >= layers.end || layers.end > self.layers() {
            return Err(ComputeError::LayerOutOfRange {
                layer: if layers.end > self.layers() {
                    layers.end
                } else {
                    layers.start
                },
                layers: self.layers(),
            });
        }
        run_with(layers, input, |i, a, o| self.run_layer_counted(i, a, o))
    }
}

/// The layer loop shared by every model: runs `layers` from `input`, hashing each
/// output and taking the op count of each layer.
pub(crate) fn run_with(
    layers: Range<usize>,
    input: Activation,
    run_layer: impl Fn(usize, &Activation, &OpCounter) -> Result<Activation, ComputeError>,
) -> Result<RunOutput, ComputeError> {
    let input_hash = input.hash();
    let mut hashes = Vec::with_capacity(layers.len());
    let mut ops = Vec::with_capacity(layers.len());
    let counter = OpCounter::new();
    let mut act = input;
    for i in layers.clone() {
        act = run_layer(i, &act, &counter)?;
        ops.push(counter.take());
        hashes.push(act.hash());
    }
    Ok(RunOutput {
        output: act,
        trace: Trace::from_hashes(layers.start, input_hash, hashes),
        ops,
    })
}

/// Checks that `input` is a token batch within `vocab` and `max_len`.
pub(crate) fn check_tokens(
    input: &Activation,
    layer: usize,
    vocab: usize,
    max_len: usize,
) -> Result<(), ComputeError> {
    use crate::activation::ActivationKind;
    if input.kind() != ActivationKind::Tokens {
        return Err(ComputeError::BadActivation {
            layer,
            detail: format!("expected token ids, got {}", input.kind().name()),
        });
    }
    if let Some(&len) = input.seq_lens().iter().find(|&&l| l > max_len) {
        return Err(ComputeError::InputTooLong { len, max: max_len });
    }
    if let Some(&id) = input.ids().iter().find(|&&id| id as usize >= vocab) {
        return Err(ComputeError::TokenOutOfRange { id, vocab });
    }
    Ok(())
}

/// Checks that `input` is per-token hidden states of width `width`.
pub(crate) fn check_hidden(
    input: &Activation,
    layer: usize,
    width: usize,
    max_len: usize,
) -> Result<(), ComputeError> {
    use crate::activation::ActivationKind;
    if input.kind() != ActivationKind::Hidden || input.width() != width {
        return Err(ComputeError::BadActivation {
            layer,
            detail: format!(
                "expected hidden states of width {width}, got {} of width {}",
                input.kind().name(),
                input.width()
            ),
        });
    }
    if let Some(&len) = input.seq_lens().iter().find(|&&l| l > max_len) {
        return Err(ComputeError::InputTooLong { len, max: max_len });
    }
    Ok(())
}

/// Sequence lengths of a token-shaped input, with the same checks as execution.
pub(crate) fn token_lens(shape: &InputShape, max_len: usize) -> Result<&[usize], ComputeError> {
    match shape {
        InputShape::Tokens { seq_lens } => {
            if seq_lens.is_empty() || seq_lens.contains(&0) {
                return Err(ComputeError::EmptyInput("empty sequence".into()));
            }
            if let Some(&len) = seq_lens.iter().find(|&&l| l > max_len) {
                return Err(ComputeError::InputTooLong { len, max: max_len });
            }
            Ok(seq_lens)
        }
        InputShape::Rows { .. } => Err(ComputeError::ShapeMismatch {
            op: "meter",
            detail: "a language model takes token sequences, not feature rows".into(),
        }),
    }
}

/// The referee's operation: re-executes layer `layer` of `model` on the committed input
/// and returns the output's hash, to compare with the disputed `layer_hashes` entry.
pub fn reexecute_layer(
    model: &Model,
    layer: usize,
    input: &Activation,
) -> Result<Hash, ComputeError> {
    Ok(model.run_layer(layer, input)?.hash())
}

/// Checks a stage's trace by re-running `layers` from `input` (an auditor's operation).
pub fn verify_stage(
    model: &Model,
    layers: Range<usize>,
    input: Activation,
    claimed: &Trace,
) -> Result<bool, ComputeError> {
    let out = model.run_range(layers, input)?;
    Ok(out.trace == *claimed)
}
