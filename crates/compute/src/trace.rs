//! Traces: the commitment to an execution, and single-layer re-execution.
//!
//! ```text
//!   input ──L0──► a1 ──L1──► a2 ── … ──L(n-1)──► an
//!     │            │          │                  │
//!   h_in         h_1        h_2      …          h_n        h = blake3(canonical bytes)
//!     └────────────┴──────────┴───── merkle ─────┘──► root
//! ```
//!
//! * `input_hash` is the hash of the activation the (stage's) first layer reads;
//!   `layer_hashes[j]` the hash of the output of layer `first_layer + j`.
//! * `root = agentic_primitives::merkle::root([input_hash, layer_hashes…])` — the same
//!   Merkle construction the ledger uses, so a trace root can be committed on chain and
//!   a dispute bisects over its leaves.
//! * Pipelines: stage `s` runs layers `a..b`; its `input_hash` equals stage `s-1`'s last
//!   layer hash, so the concatenation of the stages' leaves is the single-job trace.
//! * Referee: given the agreed input activation of layer `i` (fetched by hash from the
//!   blob store), [`crate::models::reexecute_layer`] recomputes the layer's output hash; bitwise
//!   determinism makes the result the same on every validator.
//! * A trace is just "a list of step hashes": training reuses it with one leaf per
//!   optimizer step via [`Trace::from_hashes`].

use crate::ComputeError;

/// A 32-byte blake3 digest (activation hashes, trace roots): the primitives' hash,
/// the same type the ledger stores.
pub use agentic_primitives::Hash;

/// The commitment to one execution (a whole model or one pipeline stage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// Index of the layer whose input `input_hash` commits to (0 for a whole model).
    pub first_layer: usize,
    /// Hash of the input activation.
    pub input_hash: Hash,
    /// Hash of each layer's output, in order.
    pub layer_hashes: Vec<Hash>,
    /// Merkle root over `[input_hash, layer_hashes…]`.
    pub root: Hash,
}

impl Trace {
    /// A trace from its leaves; computes the root.
    pub fn from_hashes(first_layer: usize, input_hash: Hash, layer_hashes: Vec<Hash>) -> Self {
        let root = merkle_root(input_hash, &layer_hashes);
        Trace {
            first_layer,
            input_hash,
            layer_hashes,
            root,
        }
    }

    /// The leaves in Merkle order: `[input_hash, layer_hashes…]`.
    pub fn leaves(&self) -> Vec<Hash> {
        let mut v = Vec::with_capacity(1 + self.layer_hashes.len());
        v.push(self.input_hash);
        v.extend_from_slice(&self.layer_hashes);
        v
    }

    /// Hash of the final output (the input hash for a trace of zero layers).
    pub fn output_hash(&self) -> Hash {
        self.layer_hashes.last().copied().unwrap_or(self.input_hash)
    }

    /// Joins consecutive pipeline stages into the whole-run trace; errors when a stage's
    /// input is not the previous stage's output or the layers are not contiguous.
    pub fn concat(stages: &[Trace]) -> Result<Trace, ComputeError> {
        let first = stages
            .first()
            .ok_or_else(|| ComputeError::EmptyInput("no stage trace".into()))?;
        let mut hashes = first.layer_hashes.clone();
        let mut next_layer = first.first_layer + first.layer_hashes.len();
        let mut prev_out = first.output_hash();
        for s in &stages[1..] {
            if s.input_hash != prev_out || s.first_layer != next_layer {
                return Err(ComputeError::BadActivation {
                    layer: s.first_layer,
                    detail: "stage input does not continue the previous stage".into(),
                });
            }
            hashes.extend_from_slice(&s.layer_hashes);
            next_layer += s.layer_hashes.len();
            prev_out = s.output_hash();
        }
        Ok(Trace::from_hashes(
            first.first_layer,
            first.input_hash,
            hashes,
        ))
    }
}

/// The ledger's Merkle root over `[input_hash, layer_hashes…]`
/// ([`agentic_primitives::merkle::root`]).
pub fn merkle_root(input_hash: Hash, layer_hashes: &[Hash]) -> Hash {
    let mut leaves = Vec::with_capacity(1 + layer_hashes.len());
    leaves.push(input_hash.0);
    leaves.extend(layer_hashes.iter().map(|d| d.0));
    Hash(agentic_primitives::merkle::root(&leaves))
}
