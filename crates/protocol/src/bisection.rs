//! The bisection dispute game: narrow two conflicting traces down to one layer.
//!
//! A trace of a computation with `n - 1` layers has `n` leaves:
//!
//! ```text
//!   leaf:    0          1          2                n-1
//!            input ─L0─▶ out(L0) ─L1─▶ out(L1) ··· ─▶ out(L[n-2])
//! ```
//!
//! Leaf 0 is the hash of the input, leaf `i` the hash of layer `i - 1`'s
//! output. Both parties committed a Merkle root over their trace (see
//! [`crate::merkle`]). They **agree** on leaf 0 (the job input, which the
//! caller checks against the job) and **disagree** on the last leaf (that is
//! why there is a dispute). The game keeps an interval `[lo, hi]` with the
//! invariant
//!
//! ```text
//!   agree(lo)  and  disagree(hi)
//! ```
//!
//! and halves it each round:
//!
//! 1. `mid = lo + (hi - lo) / 2` ([`Bisection::midpoint`]);
//! 2. both parties reveal their leaf `mid` with a Merkle proof (the caller
//!    verifies the proofs against each party's root and compares the leaves);
//! 3. equal leaves → `lo = mid`, different → `hi = mid` ([`Bisection::record`]).
//!
//! When `hi == lo + 1` the parties agree on the input of layer `lo` and
//! disagree on its output: [`Bisection::disputed_layer`] returns `lo`
//! (= `hi - 1`), and the referee re-executes that single layer from the
//! agreed leaf `lo`. Whoever's leaf `hi` differs from the re-execution loses.
//!
//! **Bound.** The interval length `hi - lo` starts at `n - 1` and becomes at
//! most `ceil(len / 2)` each round, so the game ends after exactly
//! `ceil(log2(n - 1))` rounds at most ([`max_rounds`]; tested exhaustively
//! for every `n` in `2..=1000` and every disagreement position, and the bound
//! is attained). A party that misses its move loses by timeout (the caller's
//! rule), so a dispute always terminates.
//!
//! # Two-level game (training jobs)
//!
//! A training job of `S` steps has an outer trace of `S + 1` leaves (leaf 0
//! = the initial state, leaf `s` = the state after step `s`), and each step
//! has its own inner trace over its layers (forward, backward, update) of
//! `m` leaves. [`TwoLevel`] plays the outer game first; when it ends at step
//! `t` (parties agree on the state before step `t` and disagree after it),
//! each party names its inner trace root for step `t`, and the caller must
//! check, with Merkle proofs against that inner root, that
//!
//! - the party's inner leaf 0 equals the agreed outer leaf `t` (the state
//!   both agree on), and
//! - the party's inner last leaf equals *its own* outer leaf `t + 1`.
//!
//! A party that cannot show this loses at once. Then both inner traces start
//! from the same leaf and end at different leaves, which is exactly the
//! precondition of the single-level game, and the inner game finds the layer.
//! Rounds: `max_rounds(S + 1) + max_rounds(m)`.
//!
//! The ledger plays exactly this sequence for a training stage
//! (`StageSpec::step_units > 0`), as two [`Bisection`]s: the step-level one
//! over the stage's state hashes, then — after the `StepRoots` phase, where
//! each party's `StepRoot` transaction carries the two proofs above — the
//! unit-level one over the isolated step's `step_units + 1` carries. The
//! referee then re-executes unit `lo` of that step (see
//! `state::disputes` and `Dispute::referee_layer`). [`TwoLevel`] is the pure
//! model of the same game, tested exhaustively on its own.
//!
//! # Descent (generation stages)
//!
//! A generation stage's trace is step-major: `n` steps of `w = layers + 1` leaves each
//! (leaf `t·w` is the stage's input at step `t`, leaf `t·w + j` the output of its `j`-th
//! layer at that step), committed by one Merkle root over all `N = n·w` leaves. The
//! referee of layer `j` at step `t` needs that layer's input rows for **every** position
//! up to the step (its K/V for the prefix), so the game must end at the *first* leaf
//! where the traces differ, with everything before it agreed — which a plain bisection
//! (agree at `lo`, disagree at `lo + 1`) does not give. The descent walks the committed
//! tree itself:
//!
//! ```text
//!   span [lo, hi) the parties' subtree hashes differ on; everything before lo agrees
//!   split s = lo + (largest power of two < hi − lo)        (the tree's own split)
//!   both post (left, right) = their child hashes of the span, checked against
//!   their node (the root at the top: H(0x02 ‖ N ‖ H(0x01 ‖ left ‖ right)))
//!     lefts equal → [s, hi)  (the left half agrees)      different → [lo, s)
//!   until hi = lo + 1: leaf lo is the first difference
//! ```
//!
//! Because the leaves are step-major, the upper levels of the descent narrow the step
//! and the lower ones the layer within it: it bisects over steps, then over layers,
//! against the trace root both parties committed before the dispute, in at most
//! `⌈log2 N⌉` rounds. The span is kept in the same [`Bisection`] value
//! (`leaves = N + 1`, `lo`, `hi`; [`Bisection::descent`]), so the ledger's dispute
//! record does not change shape; [`descent_children`] is what an honest party posts.

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// Number of rounds that always suffices for a trace of `leaves` leaves:
/// `ceil(log2(leaves - 1))`, and 0 when there are fewer than 3 leaves.
pub const fn max_rounds(leaves: u32) -> u32 {
    let len = leaves.saturating_sub(1);
    if len <= 1 {
        0
    } else {
        u32::BITS - (len - 1).leading_zeros()
    }
}

/// Why a bisection move or setup is refused.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum BisectionError {
    /// A trace needs at least two leaves (an input and one output).
    #[error("a trace needs at least 2 leaves, got {0}")]
    TooFewLeaves(u32),
    /// The game has already narrowed to one layer.
    #[error("the game is already finished")]
    Finished,
    /// The move names a leaf other than the current midpoint.
    #[error("expected a move at leaf {expected}, got {got}")]
    WrongLeaf {
        /// The current midpoint.
        expected: u32,
        /// The leaf the move named.
        got: u32,
    },
    /// The move is for the other level of a two-level game.
    #[error("the move is for the {got:?} level, the game is at the {expected:?} level")]
    WrongLevel {
        /// The level being played.
        expected: Level,
        /// The level the move named.
        got: Level,
    },
}

/// State of one bisection game (see the module docs).
///
/// Read from JSON with the same consistency checks as the binary decoding
/// (`2 ≤ leaves`, `lo < hi < leaves`, `round ≤ max_rounds(leaves)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "BisectionFields")]
pub struct Bisection {
    leaves: u32,
    lo: u32,
    hi: u32,
    round: u32,
}

/// The fields of a [`Bisection`] as they appear in JSON, before checking.
#[derive(serde::Deserialize)]
struct BisectionFields {
    leaves: u32,
    lo: u32,
    hi: u32,
    round: u32,
}

impl TryFrom<BisectionFields> for Bisection {
    type Error = String;
    fn try_from(f: BisectionFields) -> Result<Self, String> {
        Bisection::from_parts(f.leaves, f.lo, f.hi, f.round)
            .ok_or_else(|| {
                format!(
                    "inconsistent bisection: leaves {}, lo {}, hi {}, round {} (need 2 ≤ leaves, lo < hi < leaves, round ≤ {})",
                    f.leaves,
                    f.lo,
                    f.hi,
                    f.round,
                    max_rounds(f.leaves)
                )
            })
    }
}

impl Bisection {
    /// Starts a game over traces of `leaves` leaves: agree at 0, disagree at `leaves - 1`.
    pub fn new(leaves: u32) -> Result<Self, BisectionError> {
        if leaves < 2 {
            return Err(BisectionError::TooFewLeaves(leaves));
        }
        Ok(Self {
            leaves,
            lo: 0,
            hi: leaves - 1,
            round: 0,
        })
    }

    /// Number of leaves of each trace.
    pub fn leaves(&self) -> u32 {
        self.leaves
    }

    /// Highest leaf both parties agree on.
    pub fn lo(&self) -> u32 {
        self.lo
    }

    /// Lowest leaf known to differ.
    pub fn hi(&self) -> u32 {
        self.hi
    }

    /// Rounds played so far.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Whether the interval is down to one layer.
    pub fn is_finished(&self) -> bool {
        self.hi <= self.lo.saturating_add(1)
    }

    /// The leaf both parties must reveal next, or `None` when finished.
    pub fn midpoint(&self) -> Option<u32> {
        if self.is_finished() {
            None
        } else {
            Some(self.lo + (self.hi - self.lo) / 2)
        }
    }

    /// Records the outcome of the round at leaf `mid`: `agree` is whether both
    /// parties revealed the same leaf there.
    pub fn record(&mut self, mid: u32, agree: bool) -> Result<(), BisectionError> {
        let expected = self.midpoint().ok_or(BisectionError::Finished)?;
        if mid != expected {
            return Err(BisectionError::WrongLeaf { expected, got: mid });
        }
        if agree {
            self.lo = mid;
        } else {
            self.hi = mid;
        }
        self.round = self.round.saturating_add(1);
        Ok(())
    }

    /// The layer to re-execute once finished (`hi - 1 = lo`), from leaf `lo`.
    pub fn disputed_layer(&self) -> Option<u32> {
        if self.is_finished() {
            Some(self.lo)
        } else {
            None
        }
    }

    /// Rounds still needed at most.
    pub fn rounds_left(&self) -> u32 {
        max_rounds(self.hi - self.lo + 1)
    }
}

impl Write for Bisection {
    fn write(&self, buf: &mut impl BufMut) {
        self.leaves.write(buf);
        self.lo.write(buf);
        self.hi.write(buf);
        self.round.write(buf);
    }
}

impl Bisection {
    /// A game from its parts, if they are consistent (what decoding accepts).
    fn from_parts(leaves: u32, lo: u32, hi: u32, round: u32) -> Option<Self> {
        if leaves < 2 || lo >= hi || hi >= leaves || round > max_rounds(leaves) {
            return None;
        }
        Some(Self {
            leaves,
            lo,
            hi,
            round,
        })
    }
}

impl Read for Bisection {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let leaves = u32::read(buf)?;
        let lo = u32::read(buf)?;
        let hi = u32::read(buf)?;
        let round = u32::read(buf)?;
        Bisection::from_parts(leaves, lo, hi, round)
            .ok_or(CodecError::Invalid("Bisection", "inconsistent interval"))
    }
}

impl FixedSize for Bisection {
    const SIZE: usize = 4 * u32::SIZE;
}

/// The largest power of two strictly below `len` (`len ≥ 2`): where a Merkle subtree
/// over `len` leaves splits (see [`crate::merkle`]: neighbours paired level by level, an
/// odd node promoted, so every node's left child is a full power-of-two subtree).
pub const fn split_of(len: u32) -> u32 {
    if len < 2 {
        return 0;
    }
    1 << (u32::BITS - 1 - (len - 1).leading_zeros())
}

impl Bisection {
    /// Starts a descent over a trace of `leaves ≥ 2` leaves (module docs, "Descent"): the
    /// parties disagree somewhere in `[0, leaves)`.
    pub fn descent(leaves: u32) -> Result<Self, BisectionError> {
        if leaves < 2 {
            return Err(BisectionError::TooFewLeaves(leaves));
        }
        let total = leaves
            .checked_add(1)
            .ok_or(BisectionError::TooFewLeaves(leaves))?;
        Ok(Self {
            leaves: total,
            lo: 0,
            hi: leaves,
            round: 0,
        })
    }

    /// A descent's trace length `N` (the game stores `N + 1`).
    pub fn descent_leaves(&self) -> u32 {
        self.leaves.saturating_sub(1)
    }

    /// Where the current span splits, or `None` once it is one leaf.
    pub fn descent_split(&self) -> Option<u32> {
        if self.is_finished() {
            None
        } else {
            Some(self.lo + split_of(self.hi - self.lo))
        }
    }

    /// Records a descent round: `left_agrees` is whether both parties posted the same
    /// left child.
    pub fn record_descent(&mut self, left_agrees: bool) -> Result<(), BisectionError> {
        let split = self.descent_split().ok_or(BisectionError::Finished)?;
        if left_agrees {
            self.lo = split;
        } else {
            self.hi = split;
        }
        self.round = self.round.saturating_add(1);
        Ok(())
    }

    /// The first differing leaf, once the descent is down to one.
    pub fn descent_leaf(&self) -> Option<u32> {
        self.is_finished().then_some(self.lo)
    }
}

/// The Merkle node over `leaves` (a whole aligned subtree of the trace, as
/// [`crate::merkle::root`] builds it): `H(0x00 ‖ leaf)` for one leaf, else
/// `H(0x01 ‖ node(left) ‖ node(right))` split at [`split_of`]. `None` when empty.
pub fn subtree_node(leaves: &[crate::types::Hash]) -> Option<[u8; 32]> {
    match leaves.len() {
        0 => None,
        1 => Some(crate::merkle::hash_leaf(&leaves[0].0)),
        n => {
            let s = split_of(u32::try_from(n).ok()?) as usize;
            let l = subtree_node(&leaves[..s])?;
            let r = subtree_node(&leaves[s..])?;
            Some(crate::merkle::hash_node(&l, &r))
        }
    }
}

/// The root committing `top`, the Merkle node over all `count` leaves:
/// `H(0x02 ‖ count u64 LE ‖ top)` (as [`crate::merkle::root`] finalizes it).
pub fn root_of_top(count: u64, top: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[crate::merkle::ROOT_PREFIX]);
    h.update(&count.to_le_bytes());
    h.update(top);
    *h.finalize().as_bytes()
}

/// An honest party's descent move over its trace `leaves`: the left and right child
/// nodes of the game's current span. `None` when the game is finished or the trace is
/// not the one the game is over (another length).
pub fn descent_children(
    leaves: &[crate::types::Hash],
    game: &Bisection,
) -> Option<(crate::types::Hash, crate::types::Hash)> {
    use crate::types::Hash;
    let split = game.descent_split()? as usize;
    if leaves.len() != game.descent_leaves() as usize {
        return None;
    }
    let (lo, hi) = (game.lo() as usize, game.hi() as usize);
    let left = subtree_node(leaves.get(lo..split)?)?;
    let right = subtree_node(leaves.get(split..hi)?)?;
    Some((Hash(left), Hash(right)))
}

/// Which game of a [`TwoLevel`] dispute a move belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Level {
    /// Over training steps (outer trace).
    Step,
    /// Over the layers of the disputed step (inner trace).
    Layer,
}

/// A leaf both parties must reveal next in a [`TwoLevel`] game.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    /// Which trace.
    pub level: Level,
    /// Leaf index in that trace.
    pub leaf: u32,
}

/// Where a finished [`TwoLevel`] game points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct DisputedStep {
    /// The training step (0-based) whose execution differs.
    pub step: u32,
    /// The layer within that step to re-execute.
    pub layer: u32,
}

/// The two-level dispute game for training jobs (see the module docs).
///
/// Read from JSON only when consistent: the inner game exists exactly when
/// the outer one is finished, and has `inner_leaves` leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "TwoLevelFields")]
pub struct TwoLevel {
    outer: Bisection,
    inner_leaves: u32,
    inner: Option<Bisection>,
}

/// The fields of a [`TwoLevel`] as they appear in JSON, before checking.
#[derive(serde::Deserialize)]
struct TwoLevelFields {
    outer: Bisection,
    inner_leaves: u32,
    inner: Option<Bisection>,
}

impl TryFrom<TwoLevelFields> for TwoLevel {
    type Error = String;
    fn try_from(f: TwoLevelFields) -> Result<Self, String> {
        if f.inner_leaves < 2 {
            return Err(format!(
                "inconsistent two-level game: inner_leaves {} < 2",
                f.inner_leaves
            ));
        }
        match f.inner {
            None if f.outer.is_finished() => Err(
                "inconsistent two-level game: the outer game is finished but no inner game started"
                    .into(),
            ),
            Some(_) if !f.outer.is_finished() => Err(
                "inconsistent two-level game: an inner game while the outer one is unfinished"
                    .into(),
            ),
            Some(i) if i.leaves() != f.inner_leaves => Err(format!(
                "inconsistent two-level game: the inner game has {} leaves, inner_leaves is {}",
                i.leaves(),
                f.inner_leaves
            )),
            _ => Ok(TwoLevel {
                outer: f.outer,
                inner_leaves: f.inner_leaves,
                inner: f.inner,
            }),
        }
    }
}

impl TwoLevel {
    /// Starts a game over `step_leaves` outer leaves (steps + 1) and
    /// `layer_leaves` inner leaves per step.
    pub fn new(step_leaves: u32, layer_leaves: u32) -> Result<Self, BisectionError> {
        let outer = Bisection::new(step_leaves)?;
        Bisection::new(layer_leaves)?;
        let mut game = Self {
            outer,
            inner_leaves: layer_leaves,
            inner: None,
        };
        game.enter_inner();
        Ok(game)
    }

    /// Starts the inner game once the outer one has finished.
    fn enter_inner(&mut self) {
        if self.inner.is_none() && self.outer.is_finished() {
            self.inner = Bisection::new(self.inner_leaves).ok();
        }
    }

    /// The level being played (the inner level once the outer game finished).
    pub fn level(&self) -> Level {
        if self.inner.is_some() {
            Level::Layer
        } else {
            Level::Step
        }
    }

    /// The outer game.
    pub fn outer(&self) -> &Bisection {
        &self.outer
    }

    /// The inner game, once started.
    pub fn inner(&self) -> Option<&Bisection> {
        self.inner.as_ref()
    }

    /// The leaf both parties must reveal next, or `None` when finished.
    pub fn midpoint(&self) -> Option<Probe> {
        match &self.inner {
            Some(inner) => inner.midpoint().map(|leaf| Probe {
                level: Level::Layer,
                leaf,
            }),
            None => self.outer.midpoint().map(|leaf| Probe {
                level: Level::Step,
                leaf,
            }),
        }
    }

    /// Records the outcome of the round at `probe`.
    pub fn record(&mut self, probe: Probe, agree: bool) -> Result<(), BisectionError> {
        let expected = self.level();
        if probe.level != expected {
            return Err(BisectionError::WrongLevel {
                expected,
                got: probe.level,
            });
        }
        match &mut self.inner {
            Some(inner) => inner.record(probe.leaf, agree),
            None => {
                self.outer.record(probe.leaf, agree)?;
                self.enter_inner();
                Ok(())
            }
        }
    }

    /// Whether both games are finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_some_and(|inner| inner.is_finished())
    }

    /// The disputed step and layer, once finished.
    pub fn disputed(&self) -> Option<DisputedStep> {
        let step = self.outer.disputed_layer()?;
        let layer = self.inner.as_ref()?.disputed_layer()?;
        Some(DisputedStep { step, layer })
    }

    /// Rounds a two-level game over these sizes needs at most.
    pub const fn max_rounds(step_leaves: u32, layer_leaves: u32) -> u32 {
        max_rounds(step_leaves).saturating_add(max_rounds(layer_leaves))
    }
}

impl Write for TwoLevel {
    fn write(&self, buf: &mut impl BufMut) {
        self.outer.write(buf);
        self.inner_leaves.write(buf);
        self.inner.write(buf);
    }
}

impl commonware_codec::EncodeSize for TwoLevel {
    fn encode_size(&self) -> usize {
        Bisection::SIZE + u32::SIZE + self.inner.encode_size()
    }
}

impl Read for TwoLevel {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let outer = Bisection::read(buf)?;
        let inner_leaves = u32::read(buf)?;
        let inner = Option::<Bisection>::read(buf)?;
        if inner_leaves < 2 {
            return Err(CodecError::Invalid("TwoLevel", "too few inner leaves"));
        }
        let consistent = match &inner {
            Some(inner) => outer.is_finished() && inner.leaves() == inner_leaves,
            None => !outer.is_finished(),
        };
        if !consistent {
            return Err(CodecError::Invalid("TwoLevel", "inconsistent levels"));
        }
        Ok(Self {
            outer,
            inner_leaves,
            inner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};
    use proptest::prelude::*;

    /// Plays a game where the traces agree exactly on leaves `< first_diff`.
    fn play(leaves: u32, first_diff: u32) -> Bisection {
        let mut g = Bisection::new(leaves).unwrap();
        while let Some(mid) = g.midpoint() {
            g.record(mid, mid < first_diff).unwrap();
            assert!(g.lo() < g.hi());
        }
        g
    }

    #[test]
    fn max_rounds_values() {
        assert_eq!(max_rounds(0), 0);
        assert_eq!(max_rounds(1), 0);
        assert_eq!(max_rounds(2), 0);
        assert_eq!(max_rounds(3), 1);
        assert_eq!(max_rounds(4), 2);
        assert_eq!(max_rounds(5), 2);
        assert_eq!(max_rounds(6), 3);
        assert_eq!(max_rounds(9), 3);
        assert_eq!(max_rounds(10), 4);
        assert_eq!(max_rounds(1025), 10);
        assert_eq!(max_rounds(1026), 11);
        assert_eq!(max_rounds(u32::MAX), 32);
    }

    /// For every trace size 2..=1000 and every first-disagreement position,
    /// the game ends within `max_rounds` and finds exactly that layer; the
    /// bound is attained for some position (so it is exact).
    #[test]
    fn exhaustive_bound_and_correctness() {
        for n in 2..=1000u32 {
            let bound = max_rounds(n);
            let mut worst = 0;
            for d in 1..n {
                let g = play(n, d);
                assert!(g.round() <= bound, "n={n} d={d}");
                assert_eq!(g.disputed_layer(), Some(d - 1), "n={n} d={d}");
                assert_eq!((g.lo(), g.hi()), (d - 1, d));
                worst = worst.max(g.round());
            }
            assert_eq!(worst, bound, "bound not tight for n={n}");
        }
    }

    #[test]
    fn rejects_bad_moves() {
        assert_eq!(Bisection::new(1), Err(BisectionError::TooFewLeaves(1)));
        let mut g = Bisection::new(9).unwrap();
        assert_eq!(g.midpoint(), Some(4));
        assert_eq!(
            g.record(3, true),
            Err(BisectionError::WrongLeaf {
                expected: 4,
                got: 3
            })
        );
        assert_eq!(g.round(), 0);
        g.record(4, false).unwrap();
        assert_eq!((g.lo(), g.hi()), (0, 4));
        let mut two = Bisection::new(2).unwrap();
        assert!(two.is_finished());
        assert_eq!(two.disputed_layer(), Some(0));
        assert_eq!(two.record(0, true), Err(BisectionError::Finished));
    }

    #[test]
    fn codec_roundtrip_and_validation() {
        let mut g = Bisection::new(100).unwrap();
        g.record(g.midpoint().unwrap(), true).unwrap();
        assert_eq!(g.encode().len(), Bisection::SIZE);
        assert_eq!(Bisection::decode(g.encode()).unwrap(), g);
        // lo >= hi is rejected.
        let mut bad = Vec::new();
        for v in [10u32, 5, 5, 0] {
            v.write(&mut bad);
        }
        assert!(Bisection::decode(bad).is_err());
        // hi beyond the trace is rejected.
        let mut bad = Vec::new();
        for v in [10u32, 0, 10, 0] {
            v.write(&mut bad);
        }
        assert!(Bisection::decode(bad).is_err());
    }

    #[test]
    fn two_level_finds_step_and_layer() {
        let (steps, layers) = (17u32, 9u32);
        for bad_step in 1..steps {
            for bad_layer in 1..layers {
                let mut g = TwoLevel::new(steps, layers).unwrap();
                let mut rounds = 0;
                while let Some(p) = g.midpoint() {
                    let agree = match p.level {
                        Level::Step => p.leaf < bad_step,
                        Level::Layer => p.leaf < bad_layer,
                    };
                    g.record(p, agree).unwrap();
                    rounds += 1;
                    assert_eq!(TwoLevel::decode(g.encode()).unwrap(), g);
                }
                assert!(g.is_finished());
                assert!(rounds <= TwoLevel::max_rounds(steps, layers));
                assert_eq!(
                    g.disputed(),
                    Some(DisputedStep {
                        step: bad_step - 1,
                        layer: bad_layer - 1
                    })
                );
            }
        }
    }

    #[test]
    fn two_level_rejects_wrong_level() {
        let mut g = TwoLevel::new(5, 5).unwrap();
        assert_eq!(g.level(), Level::Step);
        let err = g.record(
            Probe {
                level: Level::Layer,
                leaf: 2,
            },
            true,
        );
        assert_eq!(
            err,
            Err(BisectionError::WrongLevel {
                expected: Level::Step,
                got: Level::Layer
            })
        );
        // A single step goes straight to the layer game.
        let g = TwoLevel::new(2, 5).unwrap();
        assert_eq!(g.level(), Level::Layer);
        assert_eq!(g.outer().disputed_layer(), Some(0));
        assert!(TwoLevel::new(5, 1).is_err());
    }

    /// The descent's nodes are the trace tree's: at every span the posted children hash
    /// to the parent, the top to the root; and for every first difference in traces of
    /// every length it ends there, within ⌈log2 N⌉ rounds.
    #[test]
    fn descent_walks_the_committed_tree_to_the_first_difference() {
        use crate::types::Hash;
        for n in 2..=70u32 {
            let a: Vec<Hash> = (0..n).map(|i| Hash([i as u8; 32])).collect();
            let root = crate::merkle::root(&a.iter().map(|h| h.0).collect::<Vec<_>>());
            let top = subtree_node(&a).unwrap();
            assert_eq!(root_of_top(u64::from(n), &top), root, "n={n}");
            for first in 0..n {
                // b differs from a at `first` and (sometimes) later leaves too.
                let b: Vec<Hash> = a
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let i = i as u32;
                        if i == first || (i > first && i.is_multiple_of(3)) {
                            Hash([200 ^ i as u8; 32])
                        } else {
                            *h
                        }
                    })
                    .collect();
                let mut g = Bisection::descent(n).unwrap();
                let (mut na, mut nb) = (top, subtree_node(&b).unwrap());
                while !g.is_finished() {
                    let (la, ra) = descent_children(&a, &g).unwrap();
                    let (lb, rb) = descent_children(&b, &g).unwrap();
                    assert_eq!(crate::merkle::hash_node(&la.0, &ra.0), na);
                    assert_eq!(crate::merkle::hash_node(&lb.0, &rb.0), nb);
                    let agree = la == lb;
                    (na, nb) = if agree { (ra.0, rb.0) } else { (la.0, lb.0) };
                    g.record_descent(agree).unwrap();
                    assert_eq!(Bisection::decode(g.encode()).unwrap(), g);
                }
                assert_eq!(g.descent_leaf(), Some(first), "n={n} first={first}");
                assert!(g.round() <= max_rounds(n + 1), "n={n}");
                assert_eq!(na, crate::merkle::hash_leaf(&a[first as usize].0));
                assert_eq!(nb, crate::merkle::hash_leaf(&b[first as usize].0));
                assert_eq!(g.record_descent(true), Err(BisectionError::Finished));
            }
        }
        assert_eq!(Bisection::descent(1), Err(BisectionError::TooFewLeaves(1)));
        assert!(Bisection::descent(u32::MAX).is_err());
        assert_eq!(
            (split_of(2), split_of(3), split_of(4), split_of(5)),
            (1, 2, 2, 4)
        );
    }

    proptest! {
        /// With an arbitrary agreement pattern (agree at 0, disagree at the
        /// end, anything between), the game still ends within the bound at a
        /// real agree→disagree transition.
        #[test]
        fn arbitrary_patterns_end_at_a_transition(
            pattern in proptest::collection::vec(any::<bool>(), 0..300)
        ) {
            let mut agree = vec![true];
            agree.extend(pattern);
            agree.push(false);
            let n = agree.len() as u32;
            let mut g = Bisection::new(n).unwrap();
            while let Some(mid) = g.midpoint() {
                g.record(mid, agree[mid as usize]).unwrap();
            }
            prop_assert!(g.round() <= max_rounds(n));
            let layer = g.disputed_layer().unwrap() as usize;
            prop_assert!(agree[layer]);
            prop_assert!(!agree[layer + 1]);
        }

        /// Decoding arbitrary bytes never panics, and whatever decodes re-encodes identically.
        #[test]
        fn decode_arbitrary(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(g) = TwoLevel::decode(bytes.clone()) {
                prop_assert_eq!(&g.encode()[..], &bytes[..]);
            }
            if let Ok(g) = Bisection::decode(bytes.clone()) {
                prop_assert_eq!(&g.encode()[..], &bytes[..]);
            }
        }
    }
}
