//! A trusted dealer for the validators' threshold key, and hex forms of its output.
//!
//! [`deal`] runs commonware's Feldman dealer with threshold = quorum (2f+1 of n) from a
//! deterministic seed: right for a devnet and for tests, where one process knows every share.
//! A production network replaces it with commonware's DKG; the rest of the node only sees the
//! public polynomial and one share.
//!
//! Share `i` belongs to the participant at position `i` of the participants sorted by public
//! key (the order simplex uses); [`participant_index`] finds it.

use std::num::NonZeroU32;

use commonware_codec::{Copying, Decode, Encode};
use commonware_cryptography::bls12381::{
    dkg::feldman_desmedt,
    primitives::sharing::{Mode, ModeVersion},
};
use commonware_utils::{ordered::Set, N3f1, TryCollect};

use super::{PublicKey, Share, Sharing, Variant};

/// Why keys could not be decoded or dealt.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not hex.
    #[error("not a hex string")]
    Hex,
    /// The bytes do not decode.
    #[error("invalid encoding: {0}")]
    Codec(#[from] commonware_codec::Error),
    /// At least one validator is needed.
    #[error("no validators")]
    NoValidators,
    /// The same public key twice.
    #[error("duplicate participant")]
    DuplicateParticipant,
}

/// Deals a threshold key for `n` validators from `seed`: the public polynomial and the
/// shares, share `i` for the `i`-th participant in sorted order. Deterministic: the same
/// `(n, seed)` always gives the same keys (devnets and tests only).
pub fn deal(n: u32, seed: u64) -> Result<(Sharing, Vec<Share>), KeyError> {
    let n = NonZeroU32::new(n).ok_or(KeyError::NoValidators)?;
    let rng = SeedRng::new(seed);
    Ok(feldman_desmedt::deal_anonymous::<Variant, N3f1>(
        rng,
        Mode::NonZeroCounter,
        n,
    ))
}

/// The position of `key` among `participants` sorted by public key, which is the index of
/// its share; `None` if it is not a participant.
pub fn participant_index(participants: &[PublicKey], key: &PublicKey) -> Option<usize> {
    let set: Set<PublicKey> = participants.iter().cloned().try_collect().ok()?;
    set.position(key)
}

/// The public polynomial as hex.
pub fn polynomial_to_hex(polynomial: &Sharing) -> String {
    agentic_protocol::hex::encode(&polynomial.encode())
}

/// Decodes a public polynomial for at most `max_participants` validators.
pub fn polynomial_from_hex(s: &str, max_participants: u32) -> Result<Sharing, KeyError> {
    let bytes = from_hex(s)?;
    let max = NonZeroU32::new(max_participants).ok_or(KeyError::NoValidators)?;
    Ok(Sharing::decode_cfg(
        Copying(bytes.as_slice()),
        &(max, ModeVersion::v0()),
    )?)
}

/// A secret share as hex (keep it secret: it is a signing key).
pub fn share_to_hex(share: &Share) -> String {
    agentic_protocol::hex::encode(&share.encode())
}

/// Decodes a secret share.
pub fn share_from_hex(s: &str) -> Result<Share, KeyError> {
    use commonware_codec::DecodeExt;
    Ok(Share::decode(Copying(from_hex(s)?.as_slice()))?)
}

/// Hex of a dealt value, read leniently (surrounding space, an optional `0x`).
fn from_hex(s: &str) -> Result<Vec<u8>, KeyError> {
    let s = s.trim();
    agentic_protocol::hex::decode(s.strip_prefix("0x").unwrap_or(s)).map_err(|_| KeyError::Hex)
}

/// A deterministic CSPRNG for the dealer: blake3 in XOF mode keyed by the seed.
struct SeedRng(blake3::OutputReader);

impl SeedRng {
    fn new(seed: u64) -> SeedRng {
        let mut h = blake3::Hasher::new_derive_key("agentic dealer v1");
        h.update(&seed.to_le_bytes());
        SeedRng(h.finalize_xof())
    }
}

impl rand_core::TryRng for SeedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for SeedRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deal_is_deterministic_and_round_trips_through_hex() {
        let (p1, s1) = deal(4, 7).unwrap();
        let (p2, s2) = deal(4, 7).unwrap();
        assert_eq!(polynomial_to_hex(&p1), polynomial_to_hex(&p2));
        assert_eq!(s1.len(), 4);
        assert_eq!(share_to_hex(&s1[2]), share_to_hex(&s2[2]));
        assert_eq!(p1.required(), 3);
        let back = polynomial_from_hex(&polynomial_to_hex(&p1), 4).unwrap();
        assert_eq!(polynomial_to_hex(&back), polynomial_to_hex(&p1));
        let share = share_from_hex(&share_to_hex(&s1[1])).unwrap();
        assert_eq!(share_to_hex(&share), share_to_hex(&s1[1]));
        assert!(matches!(share_from_hex("zz"), Err(KeyError::Hex)));
        assert!(polynomial_from_hex("00", 4).is_err());
    }
}
