//! Training traces: one Merkle root per step, one root per run.
//!
//! A training run is a sequence of steps `θₜ = step(θₜ₋₁, stateₜ₋₁, batchₜ)`.
//! Each step commits to everything a referee needs to re-execute it alone:
//!
//! ```text
//!  step root ─┬─ H(batch bytes)               leaf 0
//!             ├─ H(loss, little-endian)        leaf 1
//!             ├─ H(θ₀ after) … H(θ_P−1 after)  leaves 2 .. 2+P   (canonical order)
//!             ├─ H(optimizer header)           leaf 2+P          (kind, hyper-params, t, β₁ᵗ, β₂ᵗ)
//!             └─ H(m₀‖v₀) … H(m_P−1‖v_P−1)     leaves 3+P ..
//!
//!  run root  = Merkle(step root₁, …, step root_T)
//! ```
//!
//! A dispute bisects over the run's step roots first (the first step whose
//! root differs while the previous one agrees), then over that step's leaves:
//! agreeing on step t−1's parameter and optimizer leaves fixes step t's input,
//! so a referee re-executes one step from committed tensors and compares.
//!
//! The tree: leaves are hashed as `blake3(0x00 ‖ leaf)`, inner nodes as
//! `blake3(0x01 ‖ left ‖ right)`, and a list of `n > 1` leaves splits at the
//! largest power of two below `n` (RFC 6962's shape, so proofs are
//! `⌈log₂ n⌉` long and the tree never duplicates a node). The empty list's
//! root is `blake3("")`. (A local implementation; it moves to the protocol
//! crate's shared Merkle module when that lands, keeping these rules.)

use core::fmt;

/// A 32-byte blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// blake3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn leaf_node(h: &Hash) -> Hash {
    let mut x = blake3::Hasher::new();
    x.update(&[0x00]);
    x.update(&h.0);
    Hash(*x.finalize().as_bytes())
}

fn inner_node(l: &Hash, r: &Hash) -> Hash {
    let mut x = blake3::Hasher::new();
    x.update(&[0x01]);
    x.update(&l.0);
    x.update(&r.0);
    Hash(*x.finalize().as_bytes())
}

fn split_point(n: usize) -> usize {
    // Largest power of two strictly below n (n ≥ 2).
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Merkle root of `leaves` (see the module docs for the exact shape).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::of(&[]),
        1 => leaf_node(&leaves[0]),
        n => {
            let k = split_point(n);
            inner_node(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// The sibling hashes from leaf `index` up to the root (bottom first), or
/// `None` if `index` is out of range.
pub fn merkle_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut idx) = (0usize, leaves.len(), index);
    let mut stack = Vec::new();
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if idx - lo < k {
            stack.push(merkle_root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            stack.push(merkle_root(&leaves[lo..lo + k]));
            lo += k;
        }
    }
    idx -= lo;
    debug_assert_eq!(idx, 0);
    while let Some(h) = stack.pop() {
        path.push(h);
    }
    Some(path)
}

/// Checks that `leaf` sits at `index` of a `len`-leaf tree with root `root`.
pub fn merkle_verify(root: &Hash, leaf: &Hash, index: usize, len: usize, proof: &[Hash]) -> bool {
    if index >= len {
        return false;
    }
    // Rebuild the left/right decisions top-down, then fold bottom-up.
    let mut sides = Vec::new();
    let (mut lo, mut hi) = (0usize, len);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index - lo < k {
            sides.push(false); // leaf on the left, sibling right
            hi = lo + k;
        } else {
            sides.push(true);
            lo += k;
        }
    }
    if sides.len() != proof.len() {
        return false;
    }
    let mut acc = leaf_node(leaf);
    for (sib, on_right) in proof.iter().zip(sides.iter().rev()) {
        acc = if *on_right {
            inner_node(sib, &acc)
        } else {
            inner_node(&acc, sib)
        };
    }
    acc == *root
}

/// The commitment of one training step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTrace {
    /// 1-based step number (the optimizer's step count after this step).
    pub step: u64,
    /// The mean loss on the batch, before the update, widened to `f64` for display
    /// (the committed leaf hashes the native little-endian bytes).
    pub loss: f64,
    /// Hash of the batch's canonical bytes.
    pub batch: Hash,
    /// Hash of the loss's little-endian bytes.
    pub loss_hash: Hash,
    /// Hash of every parameter tensor after the update, canonical order.
    pub params: Vec<Hash>,
    /// Optimizer leaves after the update (header, then one per tensor).
    pub optimizer: Vec<Hash>,
    /// Merkle root over [`StepTrace::leaves`].
    pub root: Hash,
}

impl StepTrace {
    /// Builds a step trace and its root.
    pub fn new(
        step: u64,
        loss: f64,
        batch: Hash,
        loss_hash: Hash,
        params: Vec<Hash>,
        optimizer: Vec<Hash>,
    ) -> Self {
        let mut t = Self {
            step,
            loss,
            batch,
            loss_hash,
            params,
            optimizer,
            root: Hash::default(),
        };
        t.root = merkle_root(&t.leaves());
        t
    }

    /// The leaves in committed order: batch, loss, parameters, optimizer.
    pub fn leaves(&self) -> Vec<Hash> {
        let mut v = Vec::with_capacity(2 + self.params.len() + self.optimizer.len());
        v.push(self.batch);
        v.push(self.loss_hash);
        v.extend_from_slice(&self.params);
        v.extend_from_slice(&self.optimizer);
        v
    }
}

/// A whole run: the step traces in order and their root.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunTrace {
    /// Step traces, step 1 first.
    pub steps: Vec<StepTrace>,
}

impl RunTrace {
    /// Appends a step.
    pub fn push(&mut self, step: StepTrace) {
        self.steps.push(step);
    }

    /// The step roots in order.
    pub fn step_roots(&self) -> Vec<Hash> {
        self.steps.iter().map(|s| s.root).collect()
    }

    /// Merkle root over the step roots.
    pub fn root(&self) -> Hash {
        merkle_root(&self.step_roots())
    }

    /// The first step (0-based index) where two runs' step roots differ, if any
    /// — what a bisection over steps converges to.
    pub fn first_divergence(&self, other: &RunTrace) -> Option<usize> {
        let n = self.steps.len().max(other.steps.len());
        (0..n).find(|&i| self.steps.get(i).map(|s| s.root) != other.steps.get(i).map(|s| s.root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| Hash::of(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn proofs_verify_for_every_leaf_and_size() {
        for n in 1..=13 {
            let ls = leaves(n);
            let root = merkle_root(&ls);
            for i in 0..n {
                let proof = merkle_proof(&ls, i).expect("in range");
                assert!(merkle_verify(&root, &ls[i], i, n, &proof), "n={n} i={i}");
                let wrong = Hash::of(b"forged");
                assert!(!merkle_verify(&root, &wrong, i, n, &proof));
            }
            assert!(merkle_proof(&ls, n).is_none());
        }
    }

    #[test]
    fn leaf_and_inner_domains_differ() {
        // A two-leaf root must not equal the one-leaf root of its concatenation's hash.
        let ls = leaves(2);
        let mut cat = ls[0].0.to_vec();
        cat.extend_from_slice(&ls[1].0);
        assert_ne!(merkle_root(&ls), merkle_root(&[Hash::of(&cat)]));
        assert_ne!(merkle_root(&ls[..1]), ls[0]);
    }
}
