//! Model bundles: one content-addressed blob per model.
//!
//! A job names its model by one hash. That hash is the blake3 of a *bundle*: the
//! model's files packed in one canonical byte string, so that the requester, every
//! provider, every auditor and every validator agree on exactly which weights,
//! architecture and tokenizer "the model" is.
//!
//! ```text
//!   bundle = "AGMODEL1" ‖ count (u32 LE)
//!          ‖ for each file, names strictly ascending:
//!              name length (u16 LE) ‖ name (UTF-8) ‖ size (u64 LE) ‖ bytes
//! ```
//!
//! The files are the ones a model directory holds ([`crate::registry::load_dir`]):
//! `config.json`, `model.safetensors`, and for language models `tokenizer.json`. Names
//! are sorted and unique, so one set of files has exactly one encoding; decoding checks
//! every length against the bytes left and against [`BundleLimits`], rejects unknown
//! file names and trailing bytes, and never panics on untrusted input.

use std::path::Path;

use crate::loader::read_file;
use crate::registry::{self, LoadedModel};
use crate::ComputeError;

/// The bundle's magic prefix (format version 1).
pub const BUNDLE_MAGIC: &[u8; 8] = b"AGMODEL1";

/// The files a bundle may hold.
pub const BUNDLE_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Bounds for decoding an untrusted bundle.
#[derive(Clone, Copy, Debug)]
pub struct BundleLimits {
    /// Largest total size, in bytes.
    pub max_bytes: u64,
}

impl Default for BundleLimits {
    fn default() -> Self {
        BundleLimits { max_bytes: 2 << 30 }
    }
}

/// A model's files, ready to encode or load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// `(name, bytes)`, names strictly ascending.
    files: Vec<(String, Vec<u8>)>,
}

fn malformed(detail: impl Into<String>) -> ComputeError {
    ComputeError::CorruptCheckpoint(format!("model bundle: {}", detail.into()))
}

impl Bundle {
    /// A bundle of the given files; errors on an unknown or repeated name or without
    /// `config.json` and `model.safetensors`.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Bundle, ComputeError> {
        let mut files: Vec<(String, Vec<u8>)> = files.into_iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (i, (name, _)) in files.iter().enumerate() {
            if !BUNDLE_FILES.contains(&name.as_str()) {
                return Err(malformed(format!("unknown file `{name}`")));
            }
            if i > 0 && files[i - 1].0 == *name {
                return Err(malformed(format!("file `{name}` appears twice")));
            }
        }
        for required in ["config.json", "model.safetensors"] {
            if !files.iter().any(|(n, _)| n == required) {
                return Err(malformed(format!("no `{required}`")));
            }
        }
        Ok(Bundle { files })
    }

    /// The bundle of a registry name (`tiny-gpt`, `minilm`) or a model directory.
    pub fn of(name_or_path: &str) -> Result<Bundle, ComputeError> {
        match name_or_path {
            "tiny-gpt" => Bundle::from_files([
                ("config.json".into(), registry::TINY_GPT_CONFIG.to_vec()),
                (
                    "model.safetensors".into(),
                    registry::TINY_GPT_WEIGHTS.to_vec(),
                ),
            ]),
            "minilm" | "all-MiniLM-L6-v2" => {
                let dir = registry::minilm_dir();
                if !dir.join("model.safetensors").is_file() {
                    // The same clear error `registry::load` gives.
                    registry::load(name_or_path)?;
                }
                Bundle::of_dir(&dir)
            }
            path => {
                let p = Path::new(path);
                if !p.is_dir() {
                    return Err(ComputeError::ModelNotFound {
                        name: path.into(),
                        detail: "not a registry name (minilm, tiny-gpt) nor a model directory"
                            .into(),
                    });
                }
                Bundle::of_dir(p)
            }
        }
    }

    /// The bundle of a model directory.
    pub fn of_dir(dir: &Path) -> Result<Bundle, ComputeError> {
        let mut files = Vec::new();
        for name in BUNDLE_FILES {
            let p = dir.join(name);
            if p.is_file() {
                files.push((name.to_string(), read_file(&p)?));
            }
        }
        Bundle::from_files(files)
    }

    /// The bytes of file `name`, if present.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// The canonical encoding (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let total: usize = self.files.iter().map(|(n, b)| 10 + n.len() + b.len()).sum();
        let mut out = Vec::with_capacity(12 + total);
        out.extend_from_slice(BUNDLE_MAGIC);
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (name, bytes) in &self.files {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// The bundle's content hash: blake3 of [`Bundle::encode`], the model hash a job names.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Decodes untrusted bytes; every error is a [`ComputeError`], never a panic.
    pub fn decode(bytes: &[u8], limits: BundleLimits) -> Result<Bundle, ComputeError> {
        if bytes.len() as u64 > limits.max_bytes {
            return Err(malformed(format!(
                "{} bytes, more than the limit of {}",
                bytes.len(),
                limits.max_bytes
            )));
        }
        let mut rest = bytes;
        let mut take = |n: usize, what: &str| -> Result<&[u8], ComputeError> {
            if rest.len() < n {
                return Err(malformed(format!("truncated {what}")));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(8, "magic")? != BUNDLE_MAGIC {
            return Err(malformed("not a model bundle (bad magic)"));
        }
        let count = u32::from_le_bytes(take(4, "file count")?.try_into().expect("4 bytes"));
        if count as usize > BUNDLE_FILES.len() {
            return Err(malformed(format!("{count} files")));
        }
        let mut files = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let n = u16::from_le_bytes(take(2, "name length")?.try_into().expect("2 bytes"));
            let name = std::str::from_utf8(take(n as usize, "name")?)
                .map_err(|_| malformed("file name is not UTF-8"))?
                .to_string();
            let size = u64::from_le_bytes(take(8, "file size")?.try_into().expect("8 bytes"));
            let size = usize::try_from(size).map_err(|_| malformed("file size overflows"))?;
            let data = take(size, "file")?.to_vec();
            if let Some((prev, _)) = files.last() {
                if *prev >= name {
                    return Err(malformed("file names not strictly ascending"));
                }
            }
            files.push((name, data));
        }
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        Bundle::from_files(files)
    }

    /// Loads the model the bundle describes.
    pub fn load(&self) -> Result<LoadedModel, ComputeError> {
        let config = self
            .file("config.json")
            .ok_or_else(|| malformed("no config"))?;
        let weights = self
            .file("model.safetensors")
            .ok_or_else(|| malformed("no weights"))?;
        registry::load_bytes(config, weights, self.file("tokenizer.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Bundle {
        Bundle::of("tiny-gpt").unwrap()
    }

    #[test]
    fn encoding_round_trips_and_loads() {
        let b = tiny();
        let bytes = b.encode();
        let back = Bundle::decode(&bytes, BundleLimits::default()).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.hash(), *blake3::hash(&bytes).as_bytes());
        let m = back.load().unwrap();
        assert_eq!(m.model.layers(), 4);
    }

    #[test]
    fn file_order_does_not_change_the_encoding() {
        let a = Bundle::from_files([
            ("model.safetensors".into(), vec![1, 2]),
            ("config.json".into(), vec![3]),
        ])
        .unwrap();
        let b = Bundle::from_files([
            ("config.json".into(), vec![3]),
            ("model.safetensors".into(), vec![1, 2]),
        ])
        .unwrap();
        assert_eq!(a.encode(), b.encode());
    }

    #[test]
    fn bad_bundles_are_refused() {
        assert!(Bundle::from_files([("config.json".into(), vec![])]).is_err());
        assert!(Bundle::from_files([
            ("config.json".into(), vec![]),
            ("model.safetensors".into(), vec![]),
            ("evil.sh".into(), vec![]),
        ])
        .is_err());
        let small = Bundle::from_files([
            ("config.json".into(), b"{}".to_vec()),
            ("model.safetensors".into(), vec![7; 5]),
        ])
        .unwrap()
        .encode();
        // Every truncation and every single-byte corruption is an error or a
        // different valid bundle, never a panic.
        for n in 0..small.len() {
            assert!(Bundle::decode(&small[..n], BundleLimits::default()).is_err());
        }
        for i in 0..small.len() {
            let mut c = small.clone();
            c[i] ^= 0xff;
            let _ = Bundle::decode(&c, BundleLimits::default());
        }
        let mut trailing = small.clone();
        trailing.push(0);
        assert!(Bundle::decode(&trailing, BundleLimits::default()).is_err());
        assert!(Bundle::decode(&small, BundleLimits { max_bytes: 10 }).is_err());
    }
}
