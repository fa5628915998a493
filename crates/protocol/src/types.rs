//! Domain types of the ledger: amounts, heights, identifiers, hashes and
//! the small enums that jobs, providers and mandates are made of.
//!
//! Every type here has a canonical binary encoding (commonware-codec): fixed
//! width big-endian integers, a one-byte tag for enums, and a bounded length
//! prefix for every list (the bound is a constant in [`limits`]), so decoding
//! untrusted bytes can neither panic nor allocate without bound.
//!
//! No floating point: prices are base units per mega-op and fractions are
//! parts per million ([`PPM`]).
//!
//! ## JSON
//!
//! Every type here is also `serde` `Serialize` + `Deserialize`, for the node
//! API and its clients, and `from_value(to_value(x)) == x`:
//!
//! | type | JSON |
//! | --- | --- |
//! | [`Amount`] | a decimal string of base units (`"1000000"`); a JSON integer is accepted too |
//! | [`Height`], ids, [`Region`], [`Capabilities`] | a JSON integer |
//! | [`Hash`](struct@Hash), [`Address`] | 64 hex digits (written lowercase, read in either case) |
//! | [`Endpoint`] | a string, `host:port` |
//!
//! Decoding JSON never panics; a malformed value is an error that says what
//! was expected.

use bytes::{Buf as _, BufMut};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write};
use core::fmt;

/// One whole, in parts per million.
pub const PPM: u32 = 1_000_000;

/// Decoding bounds for every variable-length field.
pub mod limits {
    /// Matching work per block: offers examined plus stake draws. Jobs the
    /// budget does not reach stay queued for the next block.
    pub const MATCH_WORK_PER_BLOCK: u64 = 200_000;
    /// Most deadline timers fired per block; later ones fire in the next
    /// blocks, in order. A job sets about six over its life, so this keeps
    /// up with a sustained 2,000 jobs per block while bounding a spike.
    pub const MAX_TIMERS_PER_BLOCK: usize = 16_384;
    /// Most pipeline stages in one job.
    pub const MAX_STAGES: usize = 64;
    /// Most replicas per stage.
    pub const MAX_REPLICAS: usize = 8;
    /// Most regions a job may accept.
    pub const MAX_REGIONS: usize = 32;
    /// Most layers in one stage (the bisection game is over `layers + 1` leaves).
    pub const MAX_LAYERS: u32 = 1 << 20;
    /// Most units in one training step ([`crate::tx::StageSpec::step_units`]).
    pub const MAX_STEP_UNITS: u32 = 1 << 12;
    /// Longest Merkle proof (siblings) accepted in a `Bisect` step.
    pub const MAX_PROOF: usize = 32;
    /// Most transactions in one block.
    pub const MAX_BLOCK_TXS: usize = 1 << 20;
    /// Most providers excluded from one job (those that missed deadlines or lost disputes).
    pub const MAX_EXCLUDED: usize = 1024;
    /// Most providers one job may exclude before `ReplaceStage` is refused: bounds how
    /// often a generation session can be restarted on reports nobody can verify.
    pub const MAX_SESSION_REPLACEMENTS: usize = 16;
    /// Longest provider endpoint (`host:port`), in bytes.
    pub const MAX_ENDPOINT: usize = 128;
    /// Most tokens in one generation job: prompt plus generated
    /// ([`crate::tx::GenerationSpec`]).
    pub const MAX_GENERATION_TOKENS: u32 = 1 << 20;
}

/// How an integer newtype appears in JSON: `u128` amounts as decimal strings (JSON
/// numbers lose precision beyond 2^53 in most clients), smaller integers as numbers.
trait JsonInt: Sized {
    fn serialize_json<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn deserialize_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Reads a `u128` from a decimal string of ASCII digits (no sign, no
/// spaces), or from a JSON integer.
struct DecimalU128;

impl serde::de::Visitor<'_> for DecimalU128 {
    type Value = u128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount: a string of decimal digits (base units), e.g. \"1000\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u128, E> {
        parse_decimal_u128(v).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u128, E> {
        Ok(u128::from(v))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<u128, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u128, E> {
        u128::try_from(v).map_err(|_| E::custom(format_args!("amount must not be negative: {v}")))
    }
}

/// Serde for a plain `u128` field as a decimal string, like [`Amount`] (reads a string
/// or a JSON integer): `#[serde(with = "crate::types::decimal_u128")]`. JSON numbers
/// lose precision above 2^53 in most clients, and serde's buffered forms (`flatten`,
/// untagged enums) cannot hold a `u128` number at all.
pub mod decimal_u128 {
    /// Writes the decimal string.
    pub fn serialize<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads a decimal string or a non-negative integer.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        d.deserialize_any(super::DecimalU128)
    }
}

/// Parses a non-empty string of ASCII decimal digits that fits in a `u128`.
fn parse_decimal_u128(v: &str) -> Result<u128, String> {
    if v.is_empty() {
        return Err("empty amount: expected decimal digits".into());
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii_digit()) {
        return Err(format!(
            "amount {v:?} is not a decimal number (unexpected {c:?}); expected digits only"
        ));
    }
    v.parse::<u128>()
        .map_err(|_| format!("amount {v:?} does not fit in 128 bits"))
}

impl JsonInt for u128 {
    fn serialize_json<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
    fn deserialize_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DecimalU128)
    }
}

macro_rules! json_number {
    ($($t:ty),*) => {$(
        impl JsonInt for $t {
            fn serialize_json<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(self, s)
            }
            fn deserialize_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$t as serde::Deserialize>::deserialize(d)
            }
        }
    )*};
}
json_number!(u64, u32, u16);

/// Implements the codec and serde for a newtype over one fixed-width integer.
macro_rules! int_newtype {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_json(s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$inner as JsonInt>::deserialize_json(d).map(Self)
            }
        }

        impl Write for $name {
            #[inline]
            fn write(&self, buf: &mut impl BufMut) {
                self.0.write(buf);
            }
        }
        impl FixedSize for $name {
            const SIZE: usize = <$inner as FixedSize>::SIZE;
        }
        impl Read for $name {
            type Cfg = ();
            #[inline]
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                Ok(Self(<$inner>::read(buf)?))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

int_newtype!(
    /// A token amount in base units.
    Amount(u128)
);
int_newtype!(
    /// A block height.
    Height(u64)
);
int_newtype!(
    /// The chain a transaction is meant for (replay protection across chains).
    ChainId(u64)
);
int_newtype!(
    /// A job, numbered in submission order.
    JobId(u64)
);
int_newtype!(
    /// A mandate, numbered in grant order.
    MandateId(u64)
);
int_newtype!(
    /// A governance proposal, numbered in submission order.
    ProposalId(u64)
);
int_newtype!(
    /// A dispute, numbered in opening order.
    DisputeId(u64)
);
int_newtype!(
    /// A network region code (e.g. an ISO 3166 numeric country code).
    Region(u16)
);
int_newtype!(
    /// Hardware capabilities as a bit set (see the associated constants).
    Capabilities(u64)
);

impl Amount {
    /// Zero tokens.
    pub const ZERO: Amount = Amount(0);

    /// Parses a decimal number of base units (digits only: no sign, no separators).
    pub fn from_decimal(s: &str) -> Option<Amount> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u128>().ok().map(Amount)
    }

    /// Checked addition.
    #[inline]
    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }
    /// Checked subtraction.
    #[inline]
    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }
    /// Saturating addition.
    #[inline]
    pub fn saturating_add(self, o: Amount) -> Amount {
        Amount(self.0.saturating_add(o.0))
    }
    /// Saturating subtraction.
    #[inline]
    pub fn saturating_sub(self, o: Amount) -> Amount {
        Amount(self.0.saturating_sub(o.0))
    }
    /// `self × ppm / 1_000_000`, rounded down (never overflows for ppm ≤ 10^6).
    #[inline]
    pub fn mul_ppm(self, ppm: u32) -> Amount {
        let ppm = ppm.min(PPM) as u128;
        // Split to avoid overflow: (q·10^6 + r)·ppm / 10^6 = q·ppm + r·ppm/10^6.
        let q = self.0 / PPM as u128;
        let r = self.0 % PPM as u128;
        Amount(q * ppm + r * ppm / PPM as u128)
    }
    /// The exact bill for `ops` operations at `price` base units per mega-op:
    /// `ops × price / 10^6`, rounded down. `None` on overflow.
    #[inline]
    pub fn cost(ops: u64, price: Amount) -> Option<Amount> {
        (ops as u128)
            .checked_mul(price.0)
            .map(|v| Amount(v / 1_000_000))
    }
}

impl Height {
    /// `self + d`, saturating.
    #[inline]
    pub fn plus(self, d: u64) -> Height {
        Height(self.0.saturating_add(d))
    }
}

impl Capabilities {
    /// Can run CPU workloads.
    pub const CPU: Capabilities = Capabilities(1);
    /// Has a GPU.
    pub const GPU: Capabilities = Capabilities(1 << 1);
    /// Supports training steps (not only inference).
    pub const TRAINING: Capabilities = Capabilities(1 << 2);
    /// Holds large memory (≥ 64 GiB).
    pub const LARGE_MEMORY: Capabilities = Capabilities(1 << 3);

    /// Whether every bit of `required` is set in `self`.
    #[inline]
    pub fn contains(self, required: Capabilities) -> bool {
        self.0 & required.0 == required.0
    }
}

impl core::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, o: Capabilities) -> Capabilities {
        Capabilities(self.0 | o.0)
    }
}

/// A provider's data-plane address, `host:port`: where other providers and
/// requesters fetch its blobs and push activations. Empty means none.
///
/// At most [`limits::MAX_ENDPOINT`] bytes of printable ASCII without spaces
/// (`'!'..='~'`); the ledger does not resolve or dial it. Encoded as a `u32`
/// length and the bytes; decoding refuses anything longer or outside that
/// alphabet. In JSON, a plain string.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint(pub String);

/// Why an [`Endpoint`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EndpointError {
    /// Longer than [`limits::MAX_ENDPOINT`] bytes.
    #[error("endpoint is {0} bytes, more than the {max} allowed", max = limits::MAX_ENDPOINT)]
    TooLong(usize),
    /// A byte that is not printable ASCII, or a space.
    #[error("endpoint byte {byte:#04x} at offset {offset} is not printable ASCII (spaces and control characters are not allowed)")]
    BadByte {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
}

impl Endpoint {
    /// No endpoint.
    pub const NONE: Endpoint = Endpoint(String::new());

    /// An endpoint from a string, if it passes [`Endpoint::validate`].
    pub fn new(s: impl Into<String>) -> Result<Endpoint, EndpointError> {
        let s = s.into();
        Endpoint::validate(s.as_bytes())?;
        Ok(Endpoint(s))
    }

    /// Checks the rules every endpoint on the ledger follows: at most
    /// [`limits::MAX_ENDPOINT`] bytes, each printable ASCII other than space.
    pub fn validate(bytes: &[u8]) -> Result<(), EndpointError> {
        if bytes.len() > limits::MAX_ENDPOINT {
            return Err(EndpointError::TooLong(bytes.len()));
        }
        match bytes.iter().position(|b| !b.is_ascii_graphic()) {
            Some(offset) => Err(EndpointError::BadByte {
                offset,
                byte: bytes[offset],
            }),
            None => Ok(()),
        }
    }

    /// Whether this endpoint follows the rules (see [`Endpoint::validate`]);
    /// a value built directly through the public field may not.
    pub fn check(&self) -> Result<(), EndpointError> {
        Endpoint::validate(self.0.as_bytes())
    }

    /// Whether no endpoint is set.
    pub fn is_none(&self) -> bool {
        self.0.is_empty()
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::str::FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, EndpointError> {
        Endpoint::new(s)
    }
}

impl Write for Endpoint {
    fn write(&self, buf: &mut impl BufMut) {
        (self.0.len() as u32).write(buf);
        buf.put_slice(self.0.as_bytes());
    }
}
impl EncodeSize for Endpoint {
    fn encode_size(&self) -> usize {
        4 + self.0.len()
    }
}
impl Read for Endpoint {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let len = u32::read(buf)? as usize;
        if len > limits::MAX_ENDPOINT {
            return Err(CodecError::InvalidLength(len));
        }
        if buf.remaining() < len {
            return Err(CodecError::EndOfBuffer);
        }
        let mut bytes = vec![0u8; len];
        buf.copy_to_slice(&mut bytes);
        Endpoint::validate(&bytes)
            .map_err(|_| CodecError::Invalid("Endpoint", "not printable ASCII without spaces"))?;
        String::from_utf8(bytes)
            .map(Endpoint)
            .map_err(|_| CodecError::Invalid("Endpoint", "not UTF-8"))
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Endpoint::new(s).map_err(serde::de::Error::custom)
    }
}

pub use agentic_primitives::{Address, Hash};

/// How a job's results are checked before payout.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum VerificationLevel {
    /// Only the challenge window protects the requester (anyone may challenge).
    #[default]
    Optimistic,
    /// The block beacon samples stages for audit with the governed probability.
    Sampled,
    /// Every stage is audited by an independent provider.
    Audited,
}

impl VerificationLevel {
    fn tag(self) -> u8 {
        match self {
            VerificationLevel::Optimistic => 0,
            VerificationLevel::Sampled => 1,
            VerificationLevel::Audited => 2,
        }
    }
}

impl Write for VerificationLevel {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.tag());
    }
}
impl FixedSize for VerificationLevel {
    const SIZE: usize = 1;
}
impl Read for VerificationLevel {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        match u8::read(buf)? {
            0 => Ok(VerificationLevel::Optimistic),
            1 => Ok(VerificationLevel::Sampled),
            2 => Ok(VerificationLevel::Audited),
            t => Err(CodecError::InvalidEnum(t)),
        }
    }
}

pub(crate) use agentic_primitives::codec::{list_size, read_list, write_list};
pub(crate) use agentic_primitives::codec_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mul_ppm_rounds_down_and_never_overflows() {
        assert_eq!(Amount(1_000).mul_ppm(500_000), Amount(500));
        assert_eq!(Amount(3).mul_ppm(333_333), Amount(0));
        assert_eq!(Amount(u128::MAX).mul_ppm(PPM), Amount(u128::MAX));
        assert_eq!(Amount(u128::MAX).mul_ppm(0), Amount(0));
    }

    #[test]
    fn cost_is_ops_times_price_per_megaop() {
        assert_eq!(Amount::cost(2_000_000, Amount(7)), Some(Amount(14)));
        assert_eq!(Amount::cost(1_500_000, Amount(3)), Some(Amount(4)));
        assert_eq!(Amount::cost(u64::MAX, Amount(u128::MAX)), None);
    }
}
