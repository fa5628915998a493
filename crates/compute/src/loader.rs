//! Loading checkpoints: `safetensors` bytes → named f32 tensors with validated shapes.
//!
//! A checkpoint is untrusted input (a provider fetches it from the blob store), so the
//! loader checks everything before a model touches the numbers:
//!
//! ```text
//!  bytes ──safetensors header/offset validation──► views ──dtype → f32──► Checkpoint
//!                                                                        │
//!  architecture config ──expected shape per name──► Checkpoint::take ────┘──► weights
//! ```
//!
//! * F32 tensors load as-is (little-endian); F16 and BF16 widen exactly to f32 (every
//!   half value is representable), so a half-precision checkpoint runs the same f32
//!   arithmetic everywhere. Other dtypes (e.g. BERT's `I64` `position_ids` buffer) are
//!   recorded by name and only rejected if a model asks for them.
//! * Names are looked up exactly; [`Checkpoint::take_prefixed`] also tries the common
//!   Hugging Face prefixes (`bert.`, `transformer.`, …) so a bare backbone and a
//!   task-model checkpoint load alike.
//! * Every tensor a model takes is checked against the shape its configuration implies;
//!   a mismatch is [`ComputeError::TensorShape`], a missing one
//!   [`ComputeError::MissingTensor`], a malformed file [`ComputeError::CorruptCheckpoint`].

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::ComputeError;

/// A tensor read from a checkpoint: shape and f32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// All floating-point tensors of one `safetensors` file, by name.
#[derive(Debug, Default)]
pub struct Checkpoint {
    tensors: BTreeMap<String, RawTensor>,
    /// Names of tensors with a dtype the runtime does not load, with that dtype.
    skipped: BTreeMap<String, String>,
}

/// Reads a whole file, mapping the failure to [`ComputeError::Io`].
pub fn read_file(path: &Path) -> Result<Vec<u8>, ComputeError> {
    std::fs::read(path).map_err(|source| ComputeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Exact f16 → f32 (every half is an f32); shared by safetensors and GGUF loading.
#[inline]
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal half: m·2⁻²⁴. Shift the leading one up to the implicit bit.
            let mut shifts = 0u32;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                shifts += 1;
            }
            sign | ((127 - 14 - shifts) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

impl Checkpoint {
    /// Parses and validates `safetensors` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ComputeError> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| ComputeError::CorruptCheckpoint(e.to_string()))?;
        let mut out = Checkpoint::default();
        for (name, view) in st.iter() {
            let raw = view.data();
            let shape = view.shape().to_vec();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
                other => {
                    out.skipped.insert(name.to_string(), format!("{other:?}"));
                    continue;
                }
            };
            let n: usize = shape.iter().product();
            if n != data.len() {
                return Err(ComputeError::CorruptCheckpoint(format!(
                    "tensor `{name}`: shape {shape:?} but {} values",
                    data.len()
                )));
            }
            out.tensors
                .insert(name.to_string(), RawTensor { shape, data });
        }
        Ok(out)
    }

    /// Reads and parses a `.safetensors` file.
    pub fn from_file(path: &Path) -> Result<Self, ComputeError> {
        Self::from_bytes(&read_file(path)?)
    }

    /// Builds a checkpoint from tensors already in memory (tests, trained models).
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, RawTensor)>) -> Self {
        Checkpoint {
            tensors: tensors.into_iter().collect(),
            skipped: BTreeMap::new(),
        }
    }

    /// Whether a floating-point tensor of that name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names of all floating-point tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Removes and returns the tensor `name`, checking its shape.
    pub fn take(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>, ComputeError> {
        if let Some(dtype) = self.skipped.get(name) {
            return Err(ComputeError::UnsupportedDtype {
                name: name.into(),
                dtype: dtype.clone(),
            });
        }
        let t = self
            .tensors
            .remove(name)
            .ok_or_else(|| ComputeError::MissingTensor { name: name.into() })?;
        if t.shape != expected {
            return Err(ComputeError::TensorShape {
                name: name.into(),
                expected: expected.to_vec(),
                actual: t.shape,
            });
        }
        Ok(t.data)
    }

    /// Like [`Checkpoint::take`], trying `prefix + name` for each prefix in order
    /// (include `""` for the bare name). A missing tensor is reported under its bare name.
    pub fn take_prefixed(
        &mut self,
        prefixes: &[&str],
        name: &str,
        expected: &[usize],
    ) -> Result<Vec<f32>, ComputeError> {
        for p in prefixes {
            let full = format!("{p}{name}");
            if self.tensors.contains_key(&full) || self.skipped.contains_key(&full) {
                return self.take(&full, expected);
            }
        }
        Err(ComputeError::MissingTensor { name: name.into() })
    }

    /// The first prefix under which `name` exists, if any.
    pub fn find_prefix<'p>(&self, prefixes: &[&'p str], name: &str) -> Option<&'p str> {
        prefixes
            .iter()
            .copied()
            .find(|p| self.tensors.contains_key(&format!("{p}{name}")))
    }
}

/// Serializes f32 tensors to `safetensors` bytes (names sorted, as the format requires).
pub fn to_safetensors<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a RawTensor)>,
) -> Result<Vec<u8>, ComputeError> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let n: usize = t.shape.iter().product();
        if n != t.data.len() {
            return Err(ComputeError::ShapeMismatch {
                op: "to_safetensors",
                detail: format!("`{name}`: shape {:?} but {} values", t.shape, t.data.len()),
            });
        }
        let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        owned.push((name.to_string(), t.shape.clone(), bytes));
    }
    let views = owned
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ComputeError::CorruptCheckpoint(e.to_string()))?;
    safetensors::serialize(views, None).map_err(|e| ComputeError::CorruptCheckpoint(e.to_string()))
}

/// Reads `config.json`-style JSON: a field as usize, with a typed error when absent/invalid.
pub(crate) fn cfg_usize(v: &serde_json::Value, keys: &[&str]) -> Result<usize, ComputeError> {
    for k in keys {
        if let Some(x) = v.get(*k) {
            return x
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| {
                    ComputeError::config(format!("`{k}` is not a non-negative integer"))
                });
        }
    }
    Err(ComputeError::config(format!(
        "missing `{}`",
        keys.join("` / `")
    )))
}

/// Reads an optional float field (e.g. an epsilon), with a default.
pub(crate) fn cfg_f32_or(
    v: &serde_json::Value,
    keys: &[&str],
    default: f32,
) -> Result<f32, ComputeError> {
    for k in keys {
        if let Some(x) = v.get(*k) {
            return x
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| ComputeError::config(format!("`{k}` is not a number")));
        }
    }
    Ok(default)
}

/// Parses `config.json` bytes.
pub(crate) fn parse_config(bytes: &[u8]) -> Result<serde_json::Value, ComputeError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ComputeError::config(format!("config.json is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ComputeError::config("config.json is not a JSON object"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_widening_is_exact() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert!(matches!(
            Checkpoint::from_bytes(b"not a checkpoint"),
            Err(ComputeError::CorruptCheckpoint(_))
        ));
        assert!(matches!(
            Checkpoint::from_bytes(&[]),
            Err(ComputeError::CorruptCheckpoint(_))
        ));
    }
}
