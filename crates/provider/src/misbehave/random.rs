//! `random`: no compute at all.
//!
//! The cheater reads only the shape of its input and makes everything else up: an
//! output activation of the kind and shape the stage's last layer yields ([`output_shape`])
//! filled with values in `[-1, 1)`, intermediate trace leaves that are random hashes,
//! and the Merkle root over `[input hash, random leaves…, output hash]`. Leaf 0 is the
//! real input's hash (anything else is refused at reveal, the input must chain). All of
//! it comes from a seed (blake3 in XOF mode), so a restarted daemon claims the same.
//!
//! Caught by the first bisection round that reaches leaf 1: the traces agree only on
//! the input, so the game ends at the stage's first layer, the referee re-runs it from
//! the input, and no made-up leaf matches.

use std::ops::Range;

use agentic_compute::{Activation, ActivationKind, ComputeError, Model};

use super::{digest, Execution};
use agentic_protocol::leaves::result_of;

/// The output `[kind, rows, width]` of layer `last` of `model` for a batch shaped like
/// `input` (the activation entering the stage).
pub fn output_shape(
    model: &Model,
    last: usize,
    input: &Activation,
) -> Result<(ActivationKind, usize, usize), ComputeError> {
    let tokens: usize = input.seq_lens().iter().sum();
    let seqs = input.seq_lens().len();
    let n = model.layers();
    if last >= n {
        return Err(ComputeError::LayerOutOfRange {
            layer: last,
            layers: n,
        });
    }
    Ok(match model {
        Model::Gpt(g) if last + 1 == n => (ActivationKind::Logits, tokens, g.config().vocab_size),
        Model::Gpt(g) => (ActivationKind::Hidden, tokens, g.config().n_embd),
        Model::Bert(b) if last + 1 == n => (ActivationKind::Pooled, seqs, b.config().hidden_size),
        Model::Bert(b) => (ActivationKind::Hidden, tokens, b.config().hidden_size),
        Model::Mlp(m) => (
            ActivationKind::Features,
            input.rows(),
            m.layers.get(last).map_or(0, |d| d.n_out),
        ),
    })
}

/// Claims a run of `layers` without running any (see the module docs).
pub fn execute(
    model: &Model,
    layers: Range<usize>,
    input: &Activation,
    seed: &[u8; 32],
) -> Result<Execution, ComputeError> {
    let n = layers.len();
    let last = layers
        .end
        .checked_sub(1)
        .ok_or(ComputeError::LayerOutOfRange {
            layer: layers.end,
            layers: model.layers(),
        })?;
    let (kind, rows, width) = output_shape(model, last, input)?;
    let mut xof = blake3::Hasher::new_derive_key("agentic provider misbehaviour random v1");
    xof.update(seed);
    let mut xof = xof.finalize_xof();
    let mut data = vec![0f32; rows * width];
    let mut word = [0u8; 4];
    for x in data.iter_mut() {
        xof.fill(&mut word);
        // 24 random bits → [-1, 1).
        *x = (u32::from_le_bytes(word) >> 8) as f32 / (1u32 << 23) as f32 - 1.0;
    }
    let seq_lens = match kind {
        ActivationKind::Features => Vec::new(),
        _ => input.seq_lens().to_vec(),
    };
    let output = Activation::from_parts(kind, seq_lens, Vec::new(), rows, width, data)?;
    let mut leaves = Vec::with_capacity(n + 1);
    leaves.push(digest(input));
    for _ in 1..n {
        let mut h = [0u8; 32];
        xof.fill(&mut h);
        leaves.push(agentic_protocol::Hash(h));
    }
    leaves.push(digest(&output));
    Ok(Execution {
        result: result_of(&leaves),
        leaves,
        ops: 0,
        output,
        pushed: None,
    })
}
