//! The state commitment: an incremental, order-independent hash of the ledger state.
//!
//! The ledger state is a map from keys to encoded values (accounts, providers,
//! jobs, ...). Every block header carries a commitment to the whole map so
//! that nodes can check they executed the block identically. Recomputing a
//! hash over the entire state each block would cost O(state); instead the
//! commitment is a *lattice hash* ([`LtHash`], from commonware-cryptography):
//!
//! ```text
//!   element(k, v) = "agentic/state/v1" || len(k) as u64 LE || k || v
//!   acc           = Σ  expand(element(k, v))   over every (k, v) in the state
//!                     (1024 lanes of u16, added lane-wise mod 2^16)
//!   root          = blake3("agentic/state-root/v1" || blake3(acc as u16 LE))
//! ```
//!
//! `expand` is blake3 in XOF mode (2048 bytes). Because the accumulator is a
//! sum, the order in which entries were inserted never matters, and a block
//! that changes `m` entries costs `O(m)` hash expansions: for each changed
//! key, subtract the old element and add the new one ([`StateCommitment::update`]).
//! Nothing is rehashed; the 2 KiB accumulator is the only thing kept.
//!
//! The key is length-prefixed so that `(k, v)` pairs cannot collide across
//! the key/value boundary (`("ab", "c")` and `("a", "bc")` are different
//! elements). Each key appears at most once in a map, so LtHash's known
//! weakness — the same element added 2^16 times wraps to zero — cannot be
//! reached by a well-formed state.
//!
//! # What it does not give
//!
//! An LtHash commits to the *set* of entries but gives no membership or
//! non-membership proofs: a light client cannot check one account against the
//! root without the whole state. If the network needs state proofs for light
//! clients, a Merkle-Patricia trie (or commonware's authenticated storage)
//! can replace this module behind the same `insert` / `remove` / `root` API;
//! the ledger only needs equality of roots across nodes today.
//!
//! Security: LtHash with 1024 × 16-bit lanes gives about 200 bits of
//! collision resistance (Lewi et al., "Securing Update Propagation with
//! Homomorphic Hashing", 2019), the parameters Facebook and Solana deploy.

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, ReadExt, Write};
use commonware_cryptography::lthash::LtHash;

const ELEMENT_DOMAIN: &[u8] = b"agentic/state/v1";
const ROOT_DOMAIN: &[u8] = b"agentic/state-root/v1";

/// Bytes of LtHash state (1024 lanes of u16), as in commonware's `LtHash`.
const STATE_BYTES: usize = 2048;
const LANES: usize = STATE_BYTES / 2;

/// An incremental, order-independent commitment to a set of `(key, value)`
/// entries. See the module docs.
///
/// The arithmetic is exactly commonware's [`LtHash`] (blake3-XOF expansion to
/// 1024 little-endian `u16` lanes, lane-wise wrapping addition), re-implemented
/// here so that an update streams the element into the hasher without
/// allocating and folds `new − old` into the state in one vectorizable pass —
/// the state-root update is the ledger's hottest loop. A test checks that the
/// two implementations agree bit for bit.
#[derive(Clone)]
pub struct StateCommitment {
    acc: [u16; LANES],
}

impl Default for StateCommitment {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for StateCommitment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "StateCommitment({:02x?})", &self.root()[..8])
    }
}

/// Expands one element into its 2048 pseudo-random bytes.
fn expand(key: &[u8], value: &[u8], out: &mut [u8; STATE_BYTES]) {
    let mut h = blake3::Hasher::new();
    h.update(ELEMENT_DOMAIN);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(value);
    h.finalize_xof().fill(out);
}

#[inline]
fn lane(bytes: &[u8]) -> u16 {
    u16::from_le_bytes([bytes[0], bytes[1]])
}

impl StateCommitment {
    /// The commitment to the empty set.
    pub const fn new() -> Self {
        Self { acc: [0; LANES] }
    }

    /// Adds the entry `(key, value)`.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let mut e = [0u8; STATE_BYTES];
        expand(key, value, &mut e);
        for (s, c) in self.acc.iter_mut().zip(e.chunks_exact(2)) {
            *s = s.wrapping_add(lane(c));
        }
    }

    /// Removes the entry `(key, value)` (which must have been inserted).
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        let mut e = [0u8; STATE_BYTES];
        expand(key, value, &mut e);
        for (s, c) in self.acc.iter_mut().zip(e.chunks_exact(2)) {
            *s = s.wrapping_sub(lane(c));
        }
    }

    /// Replaces the entry under `key`: `old` out (if any), `new` in (if any).
    pub fn update(&mut self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        match (old, new) {
            (Some(old), Some(new)) if old != new => {
                let mut o = [0u8; STATE_BYTES];
                let mut n = [0u8; STATE_BYTES];
                expand(key, old, &mut o);
                expand(key, new, &mut n);
                for ((s, a), b) in self
                    .acc
                    .iter_mut()
                    .zip(n.chunks_exact(2))
                    .zip(o.chunks_exact(2))
                {
                    *s = s.wrapping_add(lane(a)).wrapping_sub(lane(b));
                }
            }
            (Some(_), Some(_)) | (None, None) => {}
            (Some(old), None) => self.remove(key, old),
            (None, Some(new)) => self.insert(key, new),
        }
    }

    /// Adds another commitment's entries (used to merge deltas computed in
    /// parallel).
    pub fn absorb(&mut self, delta: &StateCommitment) {
        for (s, d) in self.acc.iter_mut().zip(delta.acc.iter()) {
            *s = s.wrapping_add(*d);
        }
    }

    /// Whether this is the commitment to the empty set.
    pub fn is_empty(&self) -> bool {
        self.acc.iter().all(|&v| v == 0)
    }

    /// The canonical encoding: every lane as a big-endian `u16` (the same
    /// bytes as commonware's `LtHash` codec).
    fn to_bytes(&self) -> [u8; STATE_BYTES] {
        let mut out = [0u8; STATE_BYTES];
        for (c, v) in out.chunks_exact_mut(2).zip(self.acc.iter()) {
            c.copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// The 32-byte state root: blake3 over a domain tag and the LtHash
    /// checksum of the state.
    pub fn root(&self) -> [u8; 32] {
        let bytes = self.to_bytes();
        // The checksum is commonware's `LtHash::checksum` of the same lanes.
        let lt = <LtHash as commonware_codec::DecodeExt<()>>::decode(
            bytes::Bytes::copy_from_slice(&bytes),
        )
        .unwrap_or_default();
        let checksum = lt.checksum();
        let mut h = blake3::Hasher::new();
        h.update(ROOT_DOMAIN);
        h.update(&checksum.0);
        *h.finalize().as_bytes()
    }
}

impl PartialEq for StateCommitment {
    fn eq(&self, other: &Self) -> bool {
        self.acc == other.acc
    }
}
impl Eq for StateCommitment {}

impl Write for StateCommitment {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.to_bytes());
    }
}

impl Read for StateCommitment {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        if buf.remaining() < STATE_BYTES {
            return Err(CodecError::EndOfBuffer);
        }
        let mut acc = [0u16; LANES];
        for v in acc.iter_mut() {
            *v = u16::read(buf)?;
        }
        Ok(Self { acc })
    }
}

impl FixedSize for StateCommitment {
    const SIZE: usize = STATE_BYTES;
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// The re-implementation equals commonware's `LtHash` lane for lane.
    #[test]
    fn matches_commonware_lthash() {
        let mut ours = StateCommitment::new();
        let mut theirs = LtHash::new();
        for i in 0u32..50 {
            let key = i.to_le_bytes();
            let value = vec![i as u8; (i as usize) % 7];
            ours.insert(&key, &value);
            theirs.add(&element(&key, &value));
            if i % 3 == 0 {
                let newer = vec![i as u8 ^ 0xff; 5];
                ours.update(&key, Some(&value), Some(&newer));
                theirs.subtract(&element(&key, &value));
                theirs.add(&element(&key, &newer));
            }
        }
        assert_eq!(ours.encode().as_ref(), theirs.encode().as_ref());
        let checksum = theirs.checksum();
        let mut h = blake3::Hasher::new();
        h.update(ROOT_DOMAIN);
        h.update(&checksum.0);
        assert_eq!(ours.root(), *h.finalize().as_bytes());
    }

    fn element(key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(ELEMENT_DOMAIN);
        e.extend_from_slice(&(key.len() as u64).to_le_bytes());
        e.extend_from_slice(key);
        e.extend_from_slice(value);
        e
    }

    fn from_map(map: &BTreeMap<Vec<u8>, Vec<u8>>) -> StateCommitment {
        let mut c = StateCommitment::new();
        for (k, v) in map {
            c.insert(k, v);
        }
        c
    }

    #[test]
    fn order_independent() {
        let mut a = StateCommitment::new();
        a.insert(b"alice", b"10");
        a.insert(b"bob", b"20");
        a.insert(b"carol", b"30");
        let mut b = StateCommitment::new();
        b.insert(b"carol", b"30");
        b.insert(b"alice", b"10");
        b.insert(b"bob", b"20");
        assert_eq!(a.root(), b.root());
    }

    #[test]
    fn insert_then_remove_is_empty() {
        let empty = StateCommitment::new().root();
        let mut c = StateCommitment::new();
        c.insert(b"k", b"v");
        assert_ne!(c.root(), empty);
        assert!(!c.is_empty());
        c.remove(b"k", b"v");
        assert_eq!(c.root(), empty);
        assert!(c.is_empty());
    }

    #[test]
    fn key_value_boundary_is_unambiguous() {
        let mut a = StateCommitment::new();
        a.insert(b"ab", b"c");
        let mut b = StateCommitment::new();
        b.insert(b"a", b"bc");
        assert_ne!(a.root(), b.root());
    }

    #[test]
    fn update_equals_remove_then_insert() {
        let mut a = StateCommitment::new();
        a.insert(b"x", b"1");
        a.update(b"x", Some(b"1"), Some(b"2"));
        a.update(b"y", None, Some(b"3"));
        a.update(b"y", Some(b"3"), Some(b"3"));
        let mut b = StateCommitment::new();
        b.insert(b"x", b"2");
        b.insert(b"y", b"3");
        assert_eq!(a, b);
        a.update(b"y", Some(b"3"), None);
        b.remove(b"y", b"3");
        assert_eq!(a, b);
    }

    #[test]
    fn deltas_absorb_in_any_order() {
        let mut base = StateCommitment::new();
        base.insert(b"a", b"1");
        base.insert(b"b", b"2");
        let mut d1 = StateCommitment::new();
        d1.update(b"a", Some(b"1"), Some(b"9"));
        let mut d2 = StateCommitment::new();
        d2.update(b"b", Some(b"2"), None);
        d2.insert(b"c", b"3");
        let mut x = base.clone();
        x.absorb(&d1);
        x.absorb(&d2);
        let mut y = base;
        y.absorb(&d2);
        y.absorb(&d1);
        let mut expect = StateCommitment::new();
        expect.insert(b"a", b"9");
        expect.insert(b"c", b"3");
        assert_eq!(x.root(), expect.root());
        assert_eq!(y.root(), expect.root());
    }

    #[test]
    fn codec_roundtrip_preserves_root() {
        let mut c = StateCommitment::new();
        c.insert(b"k1", b"v1");
        c.insert(b"k2", b"v2");
        let bytes = c.encode();
        assert_eq!(bytes.len(), StateCommitment::SIZE);
        let d = StateCommitment::decode(bytes).unwrap();
        assert_eq!(c.root(), d.root());
        assert!(StateCommitment::decode(vec![0u8; 10]).is_err());
    }

    #[test]
    fn root_is_domain_separated_from_raw_checksum() {
        let c = StateCommitment::new();
        assert_ne!(c.root(), LtHash::new().checksum().0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Applying random updates incrementally equals hashing the final map from scratch.
        #[test]
        fn incremental_equals_recompute(
            ops in proptest::collection::vec(
                (proptest::collection::vec(0u8..6, 0..3), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4))),
                0..40,
            )
        ) {
            let mut map: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut c = StateCommitment::new();
            for (k, v) in ops {
                let old = map.get(&k).cloned();
                c.update(&k, old.as_deref(), v.as_deref());
                match v {
                    Some(v) => { map.insert(k, v); }
                    None => { map.remove(&k); }
                }
            }
            prop_assert_eq!(c.root(), from_map(&map).root());
        }

        /// Different maps give different roots.
        #[test]
        fn different_maps_differ(
            a in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 0..4), proptest::collection::vec(any::<u8>(), 0..4), 0..8),
            b in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 0..4), proptest::collection::vec(any::<u8>(), 0..4), 0..8),
        ) {
            prop_assert_eq!(a == b, from_map(&a).root() == from_map(&b).root());
        }
    }
}
