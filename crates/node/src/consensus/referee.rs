//! The referee consensus hands the ledger when it applies a finalized block.

use agentic_protocol::{Hash, Referee, RefereeError};

/// A referee that cannot re-execute anything: every dispute that reaches re-execution is
/// annulled ([`RefereeError::ModelUnavailable`] is "not a party's fault").
///
/// This is a placeholder until disputes are wired to the compute runtime and the blob store
/// (a later issue): the real referee fetches the layer's input and weights and runs the layer
/// with `agentic-compute`. Every validator uses the same referee, so the outcome is still
/// deterministic.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnavailableReferee;

impl Referee for UnavailableReferee {
    fn execute_layer(
        &self,
        _model: &Hash,
        _layer: u32,
        _input: &Hash,
    ) -> Result<Hash, RefereeError> {
        Err(RefereeError::ModelUnavailable)
    }
}
