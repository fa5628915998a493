//! The content-addressed blob store: models, inputs, outputs and activations,
//! named by the blake3 hash of their bytes.
//!
//! A blob is written only if its bytes hash to the name it is stored under and it
//! is no larger than the store's limit; it is written to a temporary file, synced,
//! and renamed into place, so a crash leaves either the whole blob or nothing. A
//! read re-hashes nothing (the name was checked on write and files are never
//! modified), but [`BlobStore::verify`] re-checks one on demand.
//!
//! Layout: `<dir>/<first two hex digits>/<64 hex digits>`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use agentic_protocol::Hash;

/// Default largest blob: 512 MiB (a large model checkpoint).
pub const DEFAULT_MAX_BLOB: u64 = 512 << 20;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes do not hash to the name.
    #[error("hash mismatch: the name says {expected}, the bytes hash to {actual}")]
    HashMismatch {
        /// The name.
        expected: String,
        /// blake3 of the bytes.
        actual: String,
    },
    /// The blob is larger than the store accepts.
    #[error("blob is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not a 64-digit hex blake3 hash.
    #[error("not a blob hash (64 hex digits): {0:?}")]
    BadName(String),
    /// The filesystem failed.
    #[error("blob store i/o: {0}")]
    Io(#[from] io::Error),
}

/// A directory of blobs.
pub struct BlobStore {
    dir: PathBuf,
    max: u64,
    tmp_seq: AtomicU64,
}

impl BlobStore {
    /// Opens (creating if needed) the store in `dir`, accepting blobs up to `max` bytes.
    /// Leftover temporary files from a crash are removed.
    pub fn open(dir: impl Into<PathBuf>, max: u64) -> Result<BlobStore, BlobError> {
        let dir = dir.into();
        fs::create_dir_all(dir.join("tmp"))?;
        for e in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        Ok(BlobStore {
            dir,
            max,
            tmp_seq: AtomicU64::new(0),
        })
    }

    /// The largest blob accepted.
    pub fn max_size(&self) -> u64 {
        self.max
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Stores `bytes` under `expected`, which must be their blake3 hash. Storing a blob
    /// that is already present is a no-op. Returns whether it was new.
    pub fn put(&self, expected: &Hash, bytes: &[u8]) -> Result<bool, BlobError> {
        if bytes.len() as u64 > self.max {
            return Err(BlobError::TooLarge {
                size: bytes.len() as u64,
                max: self.max,
            });
        }
        let actual = Hash(*blake3::hash(bytes).as_bytes());
        if actual != *expected {
            return Err(BlobError::HashMismatch {
                expected: expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        let path = self.path(expected);
        if path.exists() {
            return Ok(false);
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}-{}",
            expected.to_hex(),
            std::process::id(),
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        Ok(true)
    }

    /// The blob's bytes, if present.
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, BlobError> {
        match fs::read(self.path(hash)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `len` bytes of the blob from `offset` (fewer at its end), if present.
    pub fn read_range(
        &self,
        hash: &Hash,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match fs::File::open(self.path(hash)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = f.metadata()?.len();
        let n = len.min(size.saturating_sub(offset));
        let mut out = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(&mut out)?;
        Ok(Some(out))
    }

    /// The blob's size, if present.
    pub fn size(&self, hash: &Hash) -> Result<Option<u64>, BlobError> {
        match fs::metadata(self.path(hash)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a stored blob still hashes to its name (`None` if absent).
    pub fn verify(&self, hash: &Hash) -> Result<Option<bool>, BlobError> {
        Ok(self
            .get(hash)?
            .map(|b| blake3::hash(&b).as_bytes() == &hash.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("agentic-blobs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn put_get_and_refusals() {
        let store = BlobStore::open(tmpdir("basic"), 1024).unwrap();
        let data = b"model weights".to_vec();
        let h = Hash(*blake3::hash(&data).as_bytes());
        assert!(store.put(&h, &data).unwrap());
        assert!(!store.put(&h, &data).unwrap(), "second put is a no-op");
        assert_eq!(store.get(&h).unwrap().unwrap(), data);
        assert_eq!(store.size(&h).unwrap(), Some(data.len() as u64));
        assert_eq!(store.verify(&h).unwrap(), Some(true));
        // Wrong hash: refused, nothing written.
        let other = Hash([7; 32]);
        assert!(matches!(
            store.put(&other, &data),
            Err(BlobError::HashMismatch { .. })
        ));
        assert_eq!(store.get(&other).unwrap(), None);
        // Too large.
        let big = vec![0u8; 2048];
        let hb = Hash(*blake3::hash(&big).as_bytes());
        assert!(matches!(
            store.put(&hb, &big),
            Err(BlobError::TooLarge { .. })
        ));
        assert_eq!(store.get(&hb).unwrap(), None);
    }
}
