//! `perturb-step`: a generation stage that lies about one layer at one step, and
//! generates on from the lie.
//!
//! In a generation session the stage runs as usual, except that at step [`STEP`] the
//! output rows of its middle block ([`fault`]: the block at position `count / 2` of its
//! range, clamped to the blocks it holds) are negated before their leaf is hashed
//! (`StageSession::set_fault`). The K/V of its later layers, every later step and — when
//! it holds the head — the sampled tokens are computed from the perturbed rows: a real
//! cheater's self-consistent trace. The chosen variant perturbs the values (not only the
//! leaf), so nothing downstream of the lie is ever honest again.
//!
//! How it is caught: the auditor re-runs the finished generation as one prefill over the
//! prompt and the transcript; its leaves equal the cheater's up to exactly (step
//! [`STEP`], that layer) and differ from there. The descent over the two trace trees
//! lands on that leaf, the cheater names the layer's input rows for the prefix (the same
//! as the auditor's: everything before the leaf is agreed), the validators re-run that
//! one block at that step and get the auditor's bits: the cheater is slashed.
//!
//! Only a stage that holds the head changes what the requester receives; on an earlier
//! stage the lie reaches the next stage as its input (its own audit then disagrees on
//! the input too). The end-to-end test puts it on the last stage.

use agentic_compute::llm::stage::StageRange;

/// The step at which the rows are perturbed (0 = the prompt's prefill).
pub const STEP: usize = 3;

/// The `(step, trace layer)` a stage over `range` of a model with `n_layer` blocks
/// perturbs: step [`STEP`], its middle block. `None` when the range holds no block.
pub fn fault(range: StageRange, n_layer: usize) -> Option<(usize, usize)> {
    let blocks = range.blocks(n_layer);
    if blocks.is_empty() {
        return None;
    }
    // Trace layer l is block l − 1.
    let mid = (range.first + range.count / 2).clamp(blocks.start + 1, blocks.end);
    Some((STEP, mid))
}

/// The fault a session of a daemon in `mode` runs its stage `range` with: [`fault`]
/// for `perturb-step`, none for every other mode (they cheat on single passes only).
pub fn session_fault(
    mode: Option<super::Misbehaviour>,
    range: StageRange,
    n_layer: usize,
) -> Option<(usize, usize)> {
    (mode == Some(super::Misbehaviour::PerturbStep))
        .then(|| fault(range, n_layer))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_is_a_block_of_the_range() {
        // SmolLM2-135M: 30 blocks, trace layers 0..32; the e2e test's last stage.
        assert_eq!(fault(StageRange::new(21, 11), 30), Some((STEP, 26)));
        assert_eq!(fault(StageRange::new(0, 11), 30), Some((STEP, 5)));
        assert_eq!(
            fault(StageRange::new(0, 1), 30),
            None,
            "the embedding alone"
        );
        assert_eq!(fault(StageRange::new(31, 1), 30), None, "the head alone");
        assert_eq!(fault(StageRange::new(30, 2), 30), Some((STEP, 30)));
    }
}
