//! Key files: one ed25519 identity (accounts, providers, validators' p2p identity)
//! and, for a validator, its secret share of the network's BLS12-381 threshold key.
//!
//! ```json
//! { "version": 1, "name": "alice", "ed25519_secret": "…64 hex…",
//!   "public_key": "…64 hex…", "bls_share": "…hex…" }
//! ```
//!
//! The file holds a secret: it is created with mode 0600 on Unix, and reading one
//! checks that the stored public key matches the secret (a corrupted or hand-edited
//! file is refused rather than signing as somebody else).

use std::path::Path;

use agentic_protocol::Address;
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey};
use commonware_cryptography::Signer;
use serde::{Deserialize, Serialize};

use agentic_protocol::hex;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing file.
    #[error("key file {0} already exists (refusing to overwrite a secret)")]
    Exists(String),
    /// Not a key file.
    #[error("key file is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// The secret is malformed or does not match the public key.
    #[error("key file is corrupt: {0}")]
    Corrupt(&'static str),
    /// Unknown format version.
    #[error("key file version {0} is not supported (expected 1)")]
    Version(u32),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    version: u32,
    #[serde(default)]
    name: String,
    ed25519_secret: String,
    public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bls_share: Option<String>,
}

/// A loaded key file.
#[derive(Clone)]
pub struct KeyFile {
    /// A label for humans.
    pub name: String,
    /// The ed25519 signing key.
    pub key: PrivateKey,
    /// A validator's encoded BLS share (hex), if any.
    pub bls_share: Option<String>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("name", &self.name)
            .field("public_key", &hex::encode(self.key.public_key().as_ref()))
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// A fresh key from the operating system's randomness.
    pub fn generate(name: impl Into<String>) -> KeyFile {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let key = PrivateKey::decode(seed.to_vec()).expect("any 32 bytes are an ed25519 secret");
        KeyFile {
            name: name.into(),
            key,
            bls_share: None,
        }
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The ledger address (the public key's bytes).
    pub fn address(&self) -> Address {
        Address::from(&self.key.public_key())
    }

    /// Serializes to the JSON format above.
    pub fn to_json(&self) -> String {
        let j = KeyFileJson {
            version: 1,
            name: self.name.clone(),
            ed25519_secret: hex::encode(&self.key.encode()),
            public_key: hex::encode(self.key.public_key().as_ref()),
            bls_share: self.bls_share.clone(),
        };
        serde_json::to_string_pretty(&j).expect("plain struct serializes") + "\n"
    }

    /// Parses the JSON format, checking the public key against the secret.
    pub fn from_json(text: &str) -> Result<KeyFile, KeyError> {
        let j: KeyFileJson = serde_json::from_str(text)?;
        if j.version != 1 {
            return Err(KeyError::Version(j.version));
        }
        let secret = hex::decode(&j.ed25519_secret)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or(KeyError::Corrupt("ed25519_secret is not 64 hex digits"))?;
        let key = PrivateKey::decode(secret)
            .map_err(|_| KeyError::Corrupt("ed25519_secret does not decode"))?;
        if hex::encode(key.public_key().as_ref()) != j.public_key.to_ascii_lowercase() {
            return Err(KeyError::Corrupt(
                "public_key does not match ed25519_secret",
            ));
        }
        if let Some(s) = &j.bls_share {
            if hex::decode(s).ok().is_none() {
                return Err(KeyError::Corrupt("bls_share is not hex"));
            }
        }
        Ok(KeyFile {
            name: j.name,
            key,
            bls_share: j.bls_share,
        })
    }

    /// Reads a key file.
    pub fn read(path: &Path) -> Result<KeyFile, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        KeyFile::from_json(&text)
    }

    /// Writes a new key file (mode 0600 on Unix); refuses to overwrite one.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.display().to_string())
            } else {
                io(e)
            }
        })?;
        f.write_all(self.to_json().as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let k = KeyFile::generate("alice");
        let back = KeyFile::from_json(&k.to_json()).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert_eq!(back.name, "alice");
        // A different public key is refused.
        let other = KeyFile::generate("bob");
        let tampered = k.to_json().replace(
            &hex::encode(k.public_key().as_ref()),
            &hex::encode(other.public_key().as_ref()),
        );
        assert!(matches!(
            KeyFile::from_json(&tampered),
            Err(KeyError::Corrupt(_))
        ));
        assert!(KeyFile::from_json("{}").is_err());
        assert!(KeyFile::from_json("not json").is_err());
        // Two generated keys differ.
        assert_ne!(k.public_key(), other.public_key());
    }

    #[test]
    fn never_overwrites() {
        let dir = std::env::temp_dir().join(format!("agentic-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.json");
        let k = KeyFile::generate("a");
        k.write_new(&p).unwrap();
        assert!(matches!(
            KeyFile::generate("b").write_new(&p),
            Err(KeyError::Exists(_))
        ));
        assert_eq!(KeyFile::read(&p).unwrap().public_key(), k.public_key());
    }
}
