//! [`Hash`] and [`Address`]: 32-byte newtypes with one encoding each way.
//!
//! | form | encoding |
//! | --- | --- |
//! | binary (commonware-codec) | the 32 bytes, fixed size |
//! | JSON (serde) | 64 lowercase hex digits; read in either case |
//! | text (`Display` / `FromStr`) | 64 lowercase hex digits; read in either case |
//! | `Debug` | the first 6 bytes in hex and `…` |

use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, Write};
use core::fmt;

/// Parses 64 hex digits into 32 bytes; `what` names the type in the error.
pub fn parse32(what: &str, s: &str) -> Result<[u8; 32], String> {
    crate::hex::decode32(s).map_err(|e| match e {
        crate::hex::HexError::Length { .. } => format!("{what} {e}"),
        _ => format!("{what}: {e}"),
    })
}

/// Reads 32 bytes from 64 hex digits (serde).
struct Hex32(&'static str);

impl serde::de::Visitor<'_> for Hex32 {
    type Value = [u8; 32];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: a string of 64 hex digits", self.0)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<[u8; 32], E> {
        parse32(self.0, v).map_err(E::custom)
    }
}

/// Implements the encodings for a newtype over `[u8; 32]`.
macro_rules! bytes32_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                crate::hex::encode(&self.0)
            }
        }

        /// Serialized as 64 lowercase hex digits.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        /// Read from 64 hex digits, either case.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(Hex32(stringify!($name))).map(Self)
            }
        }
        impl core::str::FromStr for $name {
            type Err = String;
            /// 64 hex digits, either case.
            fn from_str(s: &str) -> Result<Self, String> {
                parse32(stringify!($name), s).map(Self)
            }
        }

        impl Write for $name {
            #[inline]
            fn write(&self, buf: &mut impl BufMut) {
                buf.put_slice(&self.0);
            }
        }
        impl FixedSize for $name {
            const SIZE: usize = 32;
        }
        impl Read for $name {
            type Cfg = ();
            #[inline]
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                if buf.remaining() < 32 {
                    return Err(CodecError::EndOfBuffer);
                }
                let mut out = [0u8; 32];
                buf.copy_to_slice(&mut out);
                Ok(Self(out))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}…", crate::hex::encode(&self.0[..6]))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
    };
}

bytes32_newtype!(
    /// An account address: the bytes of its ed25519 public key.
    Address
);
bytes32_newtype!(
    /// A 32-byte blake3 digest (model, input, output, activation, trace root,
    /// commitment).
    Hash
);

#[cfg(feature = "ed25519")]
impl From<&commonware_cryptography::ed25519::PublicKey> for Address {
    fn from(pk: &commonware_cryptography::ed25519::PublicKey) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(pk.as_ref());
        Address(out)
    }
}

impl Hash {
    /// The all-zero hash (names no data).
    pub const ZERO: Hash = Hash([0; 32]);

    /// Whether this is the all-zero hash.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// blake3 of the concatenation of `parts`, under a domain tag.
    pub fn digest(domain: &str, parts: &[&[u8]]) -> Hash {
        let mut h = blake3::Hasher::new_derive_key(domain);
        for p in parts {
            h.update(p);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// blake3 of `bytes` (no domain: the name of a blob).
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_json_and_binary_forms_agree() {
        let h = Hash::digest("test", &[b"a", b"b"]);
        let s = h.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<Hash>().unwrap(), h);
        assert_eq!(s.to_uppercase().parse::<Hash>().unwrap(), h);
        let j = serde_json::to_string(&h).unwrap();
        assert_eq!(j, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Hash>(&j).unwrap(), h);
        assert_eq!(format!("{h:?}"), format!("{}…", &s[..12]));
        use commonware_codec::{DecodeExt, Encode};
        let buf = h.encode();
        assert_eq!(&buf[..], &h.0);
        assert_eq!(Hash::decode(buf.clone()).unwrap(), h);
        assert!(Hash::decode(buf.slice(..31)).is_err());
    }

    #[test]
    fn bad_text_is_a_named_error() {
        assert_eq!(
            "00".parse::<Address>().unwrap_err(),
            "Address must be 64 hex digits, got 2 characters"
        );
        let mut s = "0".repeat(64);
        s.replace_range(5..6, "g");
        assert_eq!(
            s.parse::<Hash>().unwrap_err(),
            "Hash: 'g' at position 5 is not a hex digit"
        );
        assert!(serde_json::from_str::<Hash>("12").is_err());
    }
}
