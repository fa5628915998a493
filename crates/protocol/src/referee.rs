//! The referee: re-execution of the single disputed layer.
//!
//! When a bisection game ends, both parties agree on the input of one layer
//! (a hash) and disagree on its output. The validators re-execute that one
//! layer with the bitwise-deterministic compute runtime and compare. The
//! ledger stays pure: it calls this trait, which the node implements by
//! fetching the layer's input tensor and weights from the blob store (before
//! it accepts the block) and running the layer. Every honest validator gets
//! the same answer, so the block's outcome is deterministic.

use crate::types::Hash;

/// Why the referee could not produce an output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RefereeError {
    /// The layer's input tensor is not available: the defendant, which must
    /// publish the activations it claims, loses.
    #[error("input activation unavailable")]
    InputUnavailable,
    /// The model's weights are not available (not a party's fault): the
    /// dispute is annulled.
    #[error("model weights unavailable")]
    ModelUnavailable,
    /// The layer index is outside the model: the dispute is annulled.
    #[error("layer {0} is outside the model")]
    LayerOutOfRange(u32),
}

/// Re-executes one layer of a model.
pub trait Referee {
    /// The hash of layer `layer`'s output of model `model`, given the input
    /// whose hash is `input`.
    fn execute_layer(&self, model: &Hash, layer: u32, input: &Hash) -> Result<Hash, RefereeError>;
}
