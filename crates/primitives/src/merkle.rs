//! Binary Merkle tree over 32-byte leaves: the trace commitment.
//!
//! Every execution produces a trace: leaf 0 is the hash of the job input, leaf
//! `i` (for `i >= 1`) the hash of layer `i - 1`'s output. A provider commits to
//! its trace with [`root`]; in a dispute it reveals single leaves with a
//! [`proof`], and the ledger checks them against the committed root with
//! [`verify`]. The compute runtime and the ledger must agree on this function
//! bit for bit, so it is specified here exactly.
//!
//! # Construction
//!
//! ```text
//!                      root = H(0x02 || n as u64 LE || top)
//!                                   |
//!                                  top
//!                        /                    \
//!              H(0x01 || a || b)              e'            <- odd node promoted
//!              /             \                 |
//!   H(0x01||l0||l1)   H(0x01||l2||l3)          e' = l4      <- odd node promoted
//!     /      \          /       \              |
//!    l0      l1        l2       l3             l4
//!    |       |         |        |              |
//!  H(0x00||leaf_i)  (one leaf hash per leaf, n = 5 here)
//! ```
//!
//! - `H` is blake3. Leaves are hashed with the prefix `0x00`, inner nodes with
//!   `0x01`, so a leaf can never be mistaken for an inner node (second-preimage
//!   attacks that present an inner node as a leaf are impossible).
//! - Levels are built left to right, pairing neighbours. When a level has an
//!   odd number of nodes, the last one is **promoted** unchanged to the next
//!   level. It is *not* duplicated: duplicating (Bitcoin's rule) makes the
//!   leaf lists `[a, b, c]` and `[a, b, c, c]` share a root (CVE-2012-2459).
//! - The final root binds the leaf count: `H(0x02 || n || top)`. A proof is
//!   only meaningful together with `n` (the shape of the path depends on it);
//!   committing `n` means a root for `n` leaves cannot be opened as a root for
//!   any other count, so a trace root also commits to the number of layers.
//! - The empty tree (`n = 0`) has the fixed root [`empty_root`] =
//!   `H(0x02 || 0u64 LE)`.
//!
//! # Proofs
//!
//! A proof for leaf `index` lists the sibling of the running node at every
//! level, from the leaves up, skipping levels where the running node is the
//! promoted odd one out (it has no sibling there). Its length is at most
//! `ceil(log2 n)`, so at most [`MAX_PROOF_LEN`] for any `n` that fits a `u64`.
//! [`verify`] recomputes the path from `(index, n)` alone and requires the
//! proof to be consumed exactly: a proof with extra or missing siblings fails.

/// Domain prefix of a leaf hash.
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain prefix of an inner-node hash.
pub const NODE_PREFIX: u8 = 0x01;
/// Domain prefix of the final root (which binds the leaf count).
pub const ROOT_PREFIX: u8 = 0x02;
/// Longest possible proof: one sibling per level of a tree with up to 2^64 leaves.
pub const MAX_PROOF_LEN: usize = 64;

/// Hash of one leaf: `H(0x00 || leaf)`.
pub fn hash_leaf(leaf: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_PREFIX]);
    h.update(leaf);
    *h.finalize().as_bytes()
}

/// Hash of an inner node: `H(0x01 || left || right)`.
pub fn hash_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[NODE_PREFIX]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// The final root: `H(0x02 || leaf_count as u64 LE || top)` (`top` absent when empty).
fn finalize(leaf_count: u64, top: Option<&[u8; 32]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[ROOT_PREFIX]);
    h.update(&leaf_count.to_le_bytes());
    if let Some(top) = top {
        h.update(top);
    }
    *h.finalize().as_bytes()
}

/// Root of the empty tree (a fixed constant).
pub fn empty_root() -> [u8; 32] {
    finalize(0, None)
}

/// Reduces one level in place: pairs neighbours, promotes an odd last node.
/// Returns the width of the next level.
fn reduce_level(level: &mut [[u8; 32]], width: usize) -> usize {
    let mut next = 0;
    let mut i = 0;
    while i < width {
        let node = match (level.get(i), level.get(i + 1)) {
            (Some(l), Some(r)) if i + 1 < width => hash_node(l, r),
            (Some(l), _) => *l,
            _ => break,
        };
        if let Some(slot) = level.get_mut(next) {
            *slot = node;
        }
        next += 1;
        i += 2;
    }
    next
}

/// Merkle root of `leaves` (see the module docs for the exact construction).
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return empty_root();
    }
    let mut level: Vec<[u8; 32]> = leaves.iter().map(hash_leaf).collect();
    let mut width = level.len();
    while width > 1 {
        width = reduce_level(&mut level, width);
    }
    finalize(leaves.len() as u64, level.first())
}

/// Proof that `leaves[index]` is in the tree: siblings from the leaves up.
///
/// Returns `None` when `index` is out of range.
pub fn proof(leaves: &[[u8; 32]], index: usize) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let mut level: Vec<[u8; 32]> = leaves.iter().map(hash_leaf).collect();
    let mut width = level.len();
    let mut idx = index;
    let mut siblings = Vec::new();
    while width > 1 {
        let sibling = idx ^ 1;
        if sibling < width {
            siblings.push(*level.get(sibling)?);
        }
        width = reduce_level(&mut level, width);
        idx /= 2;
    }
    Some(siblings)
}

/// Checks that `leaf` is leaf number `index` of a tree of `leaf_count` leaves
/// whose root is `root`, using the siblings in `proof`.
///
/// Never panics; any malformed input (index out of range, wrong proof length,
/// zero leaves) returns `false`.
pub fn verify(
    root: &[u8; 32],
    index: u64,
    leaf_count: u64,
    leaf: &[u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    if index >= leaf_count || proof.len() > MAX_PROOF_LEN {
        return false;
    }
    let mut node = hash_leaf(leaf);
    let mut idx = index;
    let mut width = leaf_count;
    let mut siblings = proof.iter();
    while width > 1 {
        let is_right = idx & 1 == 1;
        let has_sibling = is_right || idx + 1 < width;
        if has_sibling {
            let Some(sibling) = siblings.next() else {
                return false;
            };
            node = if is_right {
                hash_node(sibling, &node)
            } else {
                hash_node(&node, sibling)
            };
        }
        idx /= 2;
        width = width.div_ceil(2);
    }
    if siblings.next().is_some() {
        return false;
    }
    finalize(leaf_count, Some(&node)) == *root
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| *blake3::hash(&(i as u64).to_le_bytes()).as_bytes())
            .collect()
    }

    /// Reference implementation: build each level as a fresh Vec.
    fn naive_top(mut level: Vec<[u8; 32]>) -> [u8; 32] {
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|c| {
                    if c.len() == 2 {
                        hash_node(&c[0], &c[1])
                    } else {
                        c[0]
                    }
                })
                .collect();
        }
        level[0]
    }

    #[test]
    fn matches_naive_construction() {
        for n in 1..=40 {
            let l = leaves(n);
            let top = naive_top(l.iter().map(hash_leaf).collect());
            assert_eq!(root(&l), finalize(n as u64, Some(&top)), "n = {n}");
        }
    }

    #[test]
    fn known_shapes() {
        let l = leaves(3);
        let (a, b, c) = (hash_leaf(&l[0]), hash_leaf(&l[1]), hash_leaf(&l[2]));
        let top = hash_node(&hash_node(&a, &b), &c);
        assert_eq!(root(&l), finalize(3, Some(&top)));
        assert_eq!(root(&l[..1]), finalize(1, Some(&a)));
    }

    #[test]
    fn empty_root_is_fixed_and_distinct() {
        assert_eq!(root(&[]), empty_root());
        assert_ne!(root(&[]), root(&[[0u8; 32]]));
        assert!(proof(&[], 0).is_none());
        assert!(!verify(&empty_root(), 0, 0, &[0u8; 32], &[]));
    }

    #[test]
    fn every_proof_verifies_for_n_up_to_70() {
        for n in 1..=70usize {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = proof(&l, i).unwrap();
                assert!(p.len() <= 7, "n = {n}, i = {i}, len = {}", p.len());
                assert!(
                    verify(&r, i as u64, n as u64, &l[i], &p),
                    "n = {n}, i = {i}"
                );
            }
            assert!(proof(&l, n).is_none());
        }
    }

    #[test]
    fn tampering_fails() {
        for n in 1..=33usize {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = proof(&l, i).unwrap();
                let mut bad_leaf = l[i];
                bad_leaf[0] ^= 1;
                assert!(!verify(&r, i as u64, n as u64, &bad_leaf, &p));
                // Another leaf at this index, or this leaf at another index.
                for j in 0..n {
                    if j != i {
                        assert!(
                            !verify(&r, j as u64, n as u64, &l[i], &p),
                            "n={n} i={i} j={j}"
                        );
                        assert!(!verify(&r, i as u64, n as u64, &l[j], &p));
                    }
                }
                // Wrong leaf count.
                for m in 1..=n + 2 {
                    if m != n {
                        assert!(!verify(&r, i as u64, m as u64, &l[i], &p));
                    }
                }
                // Each sibling flipped, one missing, one extra.
                for k in 0..p.len() {
                    let mut q = p.clone();
                    q[k][31] ^= 0x80;
                    assert!(!verify(&r, i as u64, n as u64, &l[i], &q));
                }
                if !p.is_empty() {
                    assert!(!verify(&r, i as u64, n as u64, &l[i], &p[..p.len() - 1]));
                }
                let mut longer = p.clone();
                longer.push([7u8; 32]);
                assert!(!verify(&r, i as u64, n as u64, &l[i], &longer));
                // Wrong root.
                let mut bad_root = r;
                bad_root[5] ^= 2;
                assert!(!verify(&bad_root, i as u64, n as u64, &l[i], &p));
            }
        }
    }

    #[test]
    fn no_duplication_ambiguity() {
        // Bitcoin's duplicate-last rule makes [a,b,c] and [a,b,c,c] collide.
        let l = leaves(3);
        let mut dup = l.clone();
        dup.push(l[2]);
        assert_ne!(root(&l), root(&dup));
        // A 3-leaf root cannot be opened as a 2-leaf tree even though the
        // path shape "N(N(a,b), c)" would match.
        let p = vec![hash_node(&hash_leaf(&l[0]), &hash_leaf(&l[1]))];
        assert!(!verify(&root(&l), 1, 2, &l[2], &p));
    }

    #[test]
    fn huge_counts_do_not_panic() {
        let leaf = [1u8; 32];
        assert!(!verify(
            &[0u8; 32],
            u64::MAX - 1,
            u64::MAX,
            &leaf,
            &[[0u8; 32]; 64]
        ));
        assert!(!verify(&[0u8; 32], 0, u64::MAX, &leaf, &[]));
        assert!(!verify(&[0u8; 32], u64::MAX, u64::MAX, &leaf, &[]));
        assert!(!verify(&[0u8; 32], 0, 2, &leaf, &[[0u8; 32]; 65]));
    }

    proptest! {
        #[test]
        fn prop_proofs_verify_and_tampered_fail(
            raw in proptest::collection::vec(any::<[u8; 32]>(), 1..200),
            pick in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let n = raw.len();
            let i = pick.index(n);
            let r = root(&raw);
            let p = proof(&raw, i).unwrap();
            prop_assert!(verify(&r, i as u64, n as u64, &raw[i], &p));
            let mut bad = raw[i];
            let bit = flip.index(256);
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!verify(&r, i as u64, n as u64, &bad, &p));
            // Changing any leaf changes the root.
            let mut other = raw.clone();
            other[i] = bad;
            prop_assert_ne!(root(&other), r);
        }
    }
}
