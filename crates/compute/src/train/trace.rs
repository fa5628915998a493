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
//! The tree is the protocol's ([`agentic_primitives::merkle`]): leaves hashed
//! `blake3(0x00 ‖ leaf)`, inner nodes `blake3(0x01 ‖ left ‖ right)`, odd nodes
//! promoted, and the root binding the leaf count — the same function the
//! ledger checks inference traces with.

use agentic_primitives::merkle;

/// A 32-byte blake3 digest ([`agentic_primitives::Hash`]).
pub use agentic_primitives::Hash;

/// blake3 of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> Hash {
    crate::trace::Hash(*blake3::hash(bytes).as_bytes())
}

fn raw(leaves: &[Hash]) -> Vec<[u8; 32]> {
    leaves.iter().map(|h| h.0).collect()
}

/// Merkle root of `leaves` ([`agentic_primitives::merkle::root`]).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    crate::trace::Hash(merkle::root(&raw(leaves)))
}

/// The sibling hashes from leaf `index` up to the root, or `None` if `index`
/// is out of range ([`agentic_primitives::merkle::proof`]).
pub fn merkle_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    merkle::proof(&raw(leaves), index).map(|p| p.into_iter().map(crate::trace::Hash).collect())
}

/// Checks that `leaf` sits at `index` of a `len`-leaf tree with root `root`
/// ([`agentic_primitives::merkle::verify`]).
pub fn merkle_verify(root: &Hash, leaf: &Hash, index: usize, len: usize, proof: &[Hash]) -> bool {
    merkle::verify(&root.0, index as u64, len as u64, &leaf.0, &raw(proof))
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
            .map(|i| hash_bytes(&(i as u64).to_le_bytes()))
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
                let wrong = hash_bytes(b"forged");
                assert!(!merkle_verify(&root, &wrong, i, n, &proof));
            }
            assert!(merkle_proof(&ls, n).is_none());
        }
    }

    #[test]
    fn run_root_binds_every_step() {
        let mut a = RunTrace::default();
        for i in 0..3u8 {
            a.push(StepTrace::new(
                u64::from(i) + 1,
                1.0,
                hash_bytes(&[i]),
                hash_bytes(&[]),
                vec![],
                vec![],
            ));
        }
        let mut b = a.clone();
        b.steps[1] = StepTrace::new(
            2,
            1.0,
            hash_bytes(b"other batch"),
            hash_bytes(&[]),
            vec![],
            vec![],
        );
        assert_ne!(a.root(), b.root());
        assert_eq!(a.first_divergence(&b), Some(1));
        assert_eq!(a.first_divergence(&a.clone()), None);
    }
}
