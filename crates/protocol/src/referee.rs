//! The referee: re-execution of the single disputed layer.
//!
//! When a bisection game ends, both parties agree on the input of one layer
//! (a hash) and disagree on its output. The validators re-execute that one
//! layer with the bitwise-deterministic compute runtime and compare. The
//! ledger stays pure: it calls this trait.
//!
//! # Data availability, deterministically
//!
//! Whether a validator *has* the layer's input tensor is local knowledge, and
//! local knowledge must never decide a block's outcome. So the node never
//! referees during execution. Instead the block's proposer fetches the blobs
//! (its own store, then the parties' data planes), runs the layer, and puts
//! a [`Verdict`] in the block; every validator re-checks each verdict before
//! it votes for the block (it re-runs the layer; for "unavailable" it tries
//! the fetch itself and refuses the block if it can get the data). Execution
//! then reads the verdicts back through [`Verdicts`], a [`Referee`] that only
//! looks them up, so every node applies the same outcome.
//!
//! A dispute with no verdict yet stays queued ([`RefereeError::Pending`]).
//! An "unavailable" verdict counts only once the dispute has waited
//! `dispute_timeout` blocks for the referee (the ledger checks the height),
//! which is the parties' time to publish the activation they agreed on.

use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};

use crate::types::Hash;

/// The layer index of an **availability probe**: a question
/// `(model, AVAILABILITY_PROBE, input)` asks only whether the model and the
/// input can be fetched (both hash-checked), not to run anything. The answer
/// is `Ok(Hash::ZERO)` when both are available, `ModelUnavailable` or
/// `InputUnavailable` otherwise. The ledger asks it when a provider claims a
/// job's data unavailable (`ClaimUnavailable`).
pub const AVAILABILITY_PROBE: u32 = u32::MAX;

/// The first layer index of **input-leaf questions**: a question
/// `(request, INPUT_LEAF_BASE + t, transcript)` asks for stage 0's input leaf
/// of a generation session at step `t`, which the validators derive from the
/// job's input blob (the `GenerationRequest`, named in the model slot) and the
/// session's transcript blob (the input slot): the prompt's tokens at step 0,
/// the token sampled at step `t − 1` after. The answer is
/// `Output(H(0x00 ‖ leaf))`, the leaf's node in the trace tree, compared with
/// both parties' nodes. Indices from here up to [`AVAILABILITY_PROBE`] are
/// reserved: `t` is below `limits::MAX_GENERATION_TOKENS` (2^20), so they never
/// meet the probe, and a layer question that would land here is annulled.
pub const INPUT_LEAF_BASE: u32 = 0xFFE0_0000;

/// The step an input-leaf question asks about, if `layer` is one
/// ([`INPUT_LEAF_BASE`]).
pub fn input_leaf_step(layer: u32) -> Option<u32> {
    (INPUT_LEAF_BASE..AVAILABILITY_PROBE)
        .contains(&layer)
        .then(|| layer - INPUT_LEAF_BASE)
}

/// What the referee re-executes for a **generation** stage's dispute (see
/// `state::disputes`, "Generation stages"): leaf `leaf` of the defendant's trace
/// (committed by `root` over `leaves` leaves, `width` per step), i.e. trace layer
/// `first_layer + leaf % width − 1` at step `leaf / width`, from that layer's input rows
/// for every position up to the step.
///
/// The question the ledger asks is `(model, layer, input)` as for any dispute, with
/// `input` the blob the defendant named (`StepRoot`): the rows, each step's with a Merkle
/// proof of its leaf against `root`, under a header that repeats these fields. The
/// validators check the rows against the proofs, run the one layer, and answer
/// `Output(finding(H(0x00 ‖ output leaf)))` — [`GenerationQuestion::finding`] binds the
/// header they read, so a blob made for another trace or position can never match the
/// finding the ledger expects for either party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenerationQuestion {
    /// The job's model.
    pub model: Hash,
    /// The defendant's trace root.
    pub root: Hash,
    /// Leaves of the trace (`steps × width`).
    pub leaves: u32,
    /// Leaves per step (the stage's layers + 1).
    pub width: u32,
    /// The stage's first trace layer.
    pub first_layer: u32,
    /// The disputed leaf (the first where the parties' traces differ).
    pub leaf: u32,
}

impl GenerationQuestion {
    /// The question a generation job's dispute asks once its descent is down to one
    /// leaf; `None` for any other dispute (or a job without that stage).
    pub fn of(d: &crate::state::Dispute, spec: &crate::tx::JobSpec) -> Option<Self> {
        spec.generation?;
        let stage = spec.stages.get(d.stage as usize)?;
        Some(GenerationQuestion {
            model: spec.model,
            root: d.defendant_root,
            leaves: d.game.descent_leaves(),
            width: stage.layers.checked_add(1)?,
            first_layer: stage.first_layer,
            leaf: d.game.descent_leaf()?,
        })
    }

    /// The step of the disputed leaf.
    pub fn step(&self) -> u32 {
        self.leaf.checked_div(self.width).unwrap_or(0)
    }

    /// The disputed leaf's position within its step (`0`: the step's input).
    pub fn position(&self) -> u32 {
        self.leaf.checked_rem(self.width).unwrap_or(0)
    }

    /// The trace layer to re-execute: `first_layer + position − 1`; `None` when the
    /// disputed leaf is a step's input (nothing to re-execute) or on overflow.
    pub fn layer(&self) -> Option<u32> {
        self.first_layer
            .checked_add(self.position().checked_sub(1)?)
    }

    /// The finding that upholds a party whose node at the disputed leaf is `node`
    /// (`H(0x00 ‖ leaf)`, as the descent left it).
    pub fn finding(&self, node: &Hash) -> Hash {
        Hash::digest(
            "agentic generation verdict v1",
            &[
                &self.model.0,
                &self.root.0,
                &self.leaves.to_le_bytes(),
                &self.width.to_le_bytes(),
                &self.first_layer.to_le_bytes(),
                &self.leaf.to_le_bytes(),
                &node.0,
            ],
        )
    }
}

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
    /// No verdict yet: the dispute waits for a later block.
    #[error("no verdict yet")]
    Pending,
}

/// A question to the referee: `(model, layer, input)`.
pub type Question = (Hash, u32, Hash);

/// Re-executes one layer of a model.
pub trait Referee {
    /// The hash of layer `layer`'s output of model `model`, given the input
    /// whose hash is `input`.
    fn execute_layer(&self, model: &Hash, layer: u32, input: &Hash) -> Result<Hash, RefereeError>;

    /// The questions this referee has answers for, when it only has a list
    /// (a block's verdicts): the ledger then looks at the disputes waiting
    /// for those questions only, by question, instead of asking about every
    /// waiting dispute. `None` (the default): it can answer anything, so
    /// every waiting dispute is asked.
    fn answered(&self) -> Option<Vec<Question>> {
        None
    }
}

/// What the referee found for one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Finding {
    /// The layer's output hash.
    Output(Hash),
    /// Nobody could provide the input activation.
    InputUnavailable,
    /// Nobody could provide the model.
    ModelUnavailable,
    /// The model has no such layer.
    LayerOutOfRange,
}

/// A referee verdict carried in a block: one layer of one model on one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// The model bundle's hash.
    pub model: Hash,
    /// The absolute layer index.
    pub layer: u32,
    /// The input activation's hash.
    pub input: Hash,
    /// What re-executing it gave.
    pub finding: Finding,
}

impl Verdict {
    /// The referee's answer this verdict stands for.
    pub fn answer(&self) -> Result<Hash, RefereeError> {
        match self.finding {
            Finding::Output(h) => Ok(h),
            Finding::InputUnavailable => Err(RefereeError::InputUnavailable),
            Finding::ModelUnavailable => Err(RefereeError::ModelUnavailable),
            Finding::LayerOutOfRange => Err(RefereeError::LayerOutOfRange(self.layer)),
        }
    }

    /// Whether it answers this question.
    pub fn answers(&self, model: &Hash, layer: u32, input: &Hash) -> bool {
        self.model == *model && self.layer == layer && self.input == *input
    }
}

impl Write for Verdict {
    fn write(&self, buf: &mut impl BufMut) {
        self.model.write(buf);
        self.layer.write(buf);
        self.input.write(buf);
        match self.finding {
            Finding::Output(h) => {
                0u8.write(buf);
                h.write(buf);
            }
            Finding::InputUnavailable => 1u8.write(buf),
            Finding::ModelUnavailable => 2u8.write(buf),
            Finding::LayerOutOfRange => 3u8.write(buf),
        }
    }
}

impl EncodeSize for Verdict {
    fn encode_size(&self) -> usize {
        32 + 4
            + 32
            + 1
            + match self.finding {
                Finding::Output(_) => 32,
                _ => 0,
            }
    }
}

impl Read for Verdict {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let model = Hash::read(buf)?;
        let layer = u32::read(buf)?;
        let input = Hash::read(buf)?;
        let finding = match u8::read(buf)? {
            0 => Finding::Output(Hash::read(buf)?),
            1 => Finding::InputUnavailable,
            2 => Finding::ModelUnavailable,
            3 => Finding::LayerOutOfRange,
            _ => return Err(CodecError::Invalid("Verdict", "unknown finding")),
        };
        Ok(Verdict {
            model,
            layer,
            input,
            finding,
        })
    }
}

/// The referee of a block: the verdicts its proposer included (and every
/// voter re-checked). A question without a verdict is [`RefereeError::Pending`].
pub struct Verdicts<'a>(pub &'a [Verdict]);

impl Referee for Verdicts<'_> {
    fn execute_layer(&self, model: &Hash, layer: u32, input: &Hash) -> Result<Hash, RefereeError> {
        self.0
            .iter()
            .find(|v| v.answers(model, layer, input))
            .map_or(Err(RefereeError::Pending), Verdict::answer)
    }

    fn answered(&self) -> Option<Vec<Question>> {
        Some(self.0.iter().map(|v| (v.model, v.layer, v.input)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn verdicts_round_trip_and_answer_only_their_question() {
        let all = [
            Finding::Output(Hash([7; 32])),
            Finding::InputUnavailable,
            Finding::ModelUnavailable,
            Finding::LayerOutOfRange,
        ];
        let verdicts: Vec<Verdict> = all
            .iter()
            .enumerate()
            .map(|(i, &finding)| Verdict {
                model: Hash([1; 32]),
                layer: i as u32,
                input: Hash([2; 32]),
                finding,
            })
            .collect();
        for v in &verdicts {
            let bytes = v.encode();
            assert_eq!(bytes.len(), v.encode_size());
            assert_eq!(Verdict::decode(bytes).unwrap(), *v);
        }
        let mut bad = verdicts[0].encode().to_vec();
        bad[68] = 9;
        assert!(Verdict::decode(bytes::Bytes::from(bad)).is_err());
        let r = Verdicts(&verdicts);
        assert_eq!(
            r.execute_layer(&Hash([1; 32]), 0, &Hash([2; 32])),
            Ok(Hash([7; 32]))
        );
        assert_eq!(
            r.execute_layer(&Hash([1; 32]), 1, &Hash([2; 32])),
            Err(RefereeError::InputUnavailable)
        );
        assert_eq!(
            r.execute_layer(&Hash([1; 32]), 3, &Hash([2; 32])),
            Err(RefereeError::LayerOutOfRange(3))
        );
        assert_eq!(
            r.execute_layer(&Hash([1; 32]), 0, &Hash([3; 32])),
            Err(RefereeError::Pending)
        );
    }
}
