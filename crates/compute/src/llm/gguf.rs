//! GGUF (version 2 and 3): the container llama.cpp and most quantized open models ship in.
//!
//! ```text
//!  "GGUF" u32 version  u64 tensor_count  u64 kv_count
//!  kv_count × (string key, u32 value type, value)          metadata
//!  tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml type, u64 offset)
//!  padding to `general.alignment` (default 32)
//!  tensor data, each tensor at data_start + offset
//! ```
//!
//! Strings are `u64 length` + UTF-8 bytes; arrays are `u32 element type`, `u64 count`,
//! elements. Everything is little endian. `ne[0]` is the innermost (contiguous)
//! dimension, so a `[out, in]` PyTorch weight appears as `ne = [in, out]`.
//!
//! The parser reads from any `Read + Seek` and never trusts a length: every count and
//! size is checked against the bytes left in the file before anything is allocated, so a
//! truncated or hostile file gives [`ComputeError::Gguf`] with the byte offset where it
//! went wrong, never a panic or a huge allocation. Tensor data is read one tensor at a
//! time ([`Gguf::read_tensor`]) so a loader can convert and drop it before reading the
//! next: a model never needs the whole file in memory.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use crate::ComputeError;

/// File magic, `GGUF` as bytes.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float (`f32`, or `f64` rounded), if it is one.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The tensor element types of ggml, by their on-disk id. The runtime loads
/// [`GgmlType::is_supported`] ones; the others are named in the typed error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const BF16: GgmlType = GgmlType(30);

    /// ggml's name for the type (`Q4_K`, …), or `type <id>` for ids ggml does not define.
    pub fn name(self) -> String {
        const NAMES: [&str; 40] = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "Q4_2",
            "Q4_3",
            "Q5_0",
            "Q5_1",
            "Q8_0",
            "Q8_1",
            "Q2_K",
            "Q3_K",
            "Q4_K",
            "Q5_K",
            "Q6_K",
            "Q8_K",
            "IQ2_XXS",
            "IQ2_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ2_S",
            "IQ4_XS",
            "I8",
            "I16",
            "I32",
            "I64",
            "F64",
            "IQ1_M",
            "BF16",
            "Q4_0_4_4",
            "Q4_0_4_8",
            "Q4_0_8_8",
            "TQ1_0",
            "TQ2_0",
            "IQ4_NL_4_4",
            "IQ4_NL_4_8",
            "IQ4_NL_8_8",
            "MXFP4",
        ];
        NAMES
            .get(self.0 as usize)
            .map_or_else(|| format!("type {}", self.0), |s| (*s).to_string())
    }

    /// Elements per block and bytes per block, for the types the runtime loads.
    pub fn block(self) -> Option<(usize, usize)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Q8_0 => Some((32, 34)),
            _ => None,
        }
    }

    pub fn is_supported(self) -> bool {
        self.block().is_some()
    }
}

/// One tensor's directory entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous dimension.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (checked: dims are bounded when parsed).
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Shape in PyTorch order (outermost first), e.g. `[out, in]`.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Bytes of data, for supported types; `None` for unsupported types or a row
    /// length that is not a whole number of blocks.
    pub fn byte_len(&self) -> Option<u64> {
        let (block, bytes) = self.ty.block()?;
        let row = *self.dims.first()?;
        if row % block as u64 != 0 {
            return None;
        }
        (self.elements() / block as u64).checked_mul(bytes as u64)
    }
}

/// A parsed GGUF header: metadata and the tensor directory. Tensor bytes are read on
/// demand with [`Gguf::read_tensor`].
#[derive(Clone, Debug)]
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section.
    pub data_start: u64,
    /// Total file length.
    pub file_len: u64,
}

/// Upper bound on dimensions per tensor (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Upper bound on array nesting (ggml writes none deeper than 1).
const MAX_DEPTH: usize = 4;

/// A reader that knows its position and how many bytes remain, so every length can be
/// checked before it is used.
struct Cursor<'r, R> {
    r: &'r mut R,
    pos: u64,
    len: u64,
}

impl<R: Read> Cursor<'_, R> {
    fn err(&self, detail: impl Into<String>) -> ComputeError {
        ComputeError::Gguf {
            offset: self.pos,
            detail: detail.into(),
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ComputeError> {
        if self.remaining() < N as u64 {
            return Err(self.err(format!("file ends inside {what}")));
        }
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| self.err(format!("reading {what}: {e}")))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, ComputeError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ComputeError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, ComputeError> {
        let n = self.u64(what)?;
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what}: string of {n} bytes but only {} left",
                self.remaining()
            )));
        }
        let mut b = vec![0u8; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|e| self.err(format!("reading {what}: {e}")))?;
        let at = self.pos;
        self.pos += n;
        String::from_utf8(b).map_err(|_| ComputeError::Gguf {
            offset: at,
            detail: format!("{what} is not UTF-8"),
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value, ComputeError> {
        Ok(match ty {
            0 => Value::U8(self.bytes::<1>(key)?[0]),
            1 => Value::I8(self.bytes::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.bytes(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.bytes(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes(key)?)),
            7 => match self.bytes::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.err(format!("`{key}`: bool byte {b}"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(format!("`{key}`: arrays nested too deep")));
                }
                let ety = self.u32(key)?;
                let n = self.u64(key)?;
                // Every element takes at least one byte: bound the count by what is left.
                if n > self.remaining() {
                    return Err(self.err(format!(
                        "`{key}`: array of {n} elements but only {} bytes left",
                        self.remaining()
                    )));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, key, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.bytes(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes(key)?)),
            t => return Err(self.err(format!("`{key}`: unknown value type {t}"))),
        })
    }
}

impl Gguf {
    /// Parses the header and tensor directory. `file_len` is the size of the whole file
    /// (every offset is checked against it).
    pub fn parse<R: Read + Seek>(r: &mut R) -> Result<Gguf, ComputeError> {
        let file_len = r.seek(SeekFrom::End(0)).map_err(|e| ComputeError::Gguf {
            offset: 0,
            detail: format!("cannot seek: {e}"),
        })?;
        r.seek(SeekFrom::Start(0)).map_err(|e| ComputeError::Gguf {
            offset: 0,
            detail: format!("cannot seek: {e}"),
        })?;
        let mut c = Cursor {
            r,
            pos: 0,
            len: file_len,
        };
        let magic = c.bytes::<4>("the magic")?;
        if magic != MAGIC {
            return Err(ComputeError::Gguf {
                offset: 0,
                detail: format!("not a GGUF file (magic {magic:02x?})"),
            });
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(format!("GGUF version {version} (supported: 2, 3)")));
        }
        let n_tensors = c.u64("the tensor count")?;
        let n_kv = c.u64("the metadata count")?;
        // A metadata entry or tensor entry takes well over 8 bytes.
        if n_kv > c.remaining() / 8 || n_tensors > c.remaining() / 8 {
            return Err(c.err(format!(
                "{n_tensors} tensors and {n_kv} metadata entries cannot fit in {} bytes",
                c.remaining()
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("a metadata key")?;
            let ty = c.u32(&key)?;
            let v = c.value(ty, &key, 0)?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(c.err(format!("metadata key `{key}` appears twice")));
            }
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..n_tensors {
            let name = c.string("a tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.err(format!("tensor `{name}` has {n_dims} dimensions")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            let mut elements: u64 = 1;
            for _ in 0..n_dims {
                let d = c.u64(&name)?;
                elements = elements
                    .checked_mul(d)
                    .filter(|&e| d > 0 && e <= file_len.saturating_mul(2))
                    .ok_or_else(|| c.err(format!("tensor `{name}` has impossible shape")))?;
                dims.push(d);
            }
            let ty = GgmlType(c.u32(&name)?);
            let offset = c.u64(&name)?;
            if !names.insert(name.clone()) {
                return Err(c.err(format!("tensor `{name}` appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => return Err(c.err(format!("general.alignment {v:?} is not a power of two"))),
            },
        };
        let data_start = c.pos.div_ceil(alignment) * alignment;
        let g = Gguf {
            version,
            metadata,
            tensors,
            data_start,
            file_len,
        };
        for t in &g.tensors {
            if t.offset % alignment != 0 {
                return Err(ComputeError::Gguf {
                    offset: data_start,
                    detail: format!("tensor `{}` at unaligned offset {}", t.name, t.offset),
                });
            }
            // Unsupported types are only an error if a model asks for the tensor; their
            // size is unknown here, so only their start is checked.
            let end = t
                .byte_len()
                .unwrap_or(0)
                .checked_add(t.offset)
                .and_then(|e| e.checked_add(data_start));
            if end.is_none_or(|e| e > file_len) {
                return Err(ComputeError::Gguf {
                    offset: data_start.saturating_add(t.offset),
                    detail: format!(
                        "tensor `{}` ({} {:?}) runs past the end of the file ({file_len} bytes)",
                        t.name,
                        t.ty.name(),
                        t.shape()
                    ),
                });
            }
        }
        Ok(g)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads one tensor's bytes. Errors name the tensor for a missing entry or a type the
    /// runtime does not load.
    pub fn read_tensor<R: Read + Seek>(
        &self,
        r: &mut R,
        name: &str,
    ) -> Result<(TensorInfo, Vec<u8>), ComputeError> {
        let t = self
            .tensor(name)
            .ok_or_else(|| ComputeError::MissingTensor { name: name.into() })?;
        if !t.ty.is_supported() {
            return Err(ComputeError::UnsupportedDtype {
                name: name.into(),
                dtype: format!(
                    "GGUF {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)",
                    t.ty.name()
                ),
            });
        }
        let len = t.byte_len().ok_or_else(|| ComputeError::TensorShape {
            name: name.into(),
            expected: vec![32],
            actual: t.shape(),
        })?;
        let at = self.data_start + t.offset;
        r.seek(SeekFrom::Start(at))
            .map_err(|e| ComputeError::Gguf {
                offset: at,
                detail: format!("seeking to tensor `{name}`: {e}"),
            })?;
        let mut buf = vec![0u8; len as usize];
        r.read_exact(&mut buf).map_err(|e| ComputeError::Gguf {
            offset: at,
            detail: format!("reading tensor `{name}`: {e}"),
        })?;
        Ok((t.clone(), buf))
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned metadata value.
    pub fn u64(&self, key: &str) -> Result<u64, ComputeError> {
        self.get(key)
            .ok_or_else(|| ComputeError::config(format!("GGUF metadata has no `{key}`")))?
            .as_u64()
            .ok_or_else(|| ComputeError::config(format!("GGUF `{key}` is not an integer")))
    }

    /// A required string metadata value.
    pub fn str(&self, key: &str) -> Result<&str, ComputeError> {
        self.get(key)
            .ok_or_else(|| ComputeError::config(format!("GGUF metadata has no `{key}`")))?
            .as_str()
            .ok_or_else(|| ComputeError::config(format!("GGUF `{key}` is not a string")))
    }

    /// A string array (`tokenizer.ggml.tokens`, `…merges`).
    pub fn strings(&self, key: &str) -> Result<Vec<&str>, ComputeError> {
        let a = self
            .get(key)
            .ok_or_else(|| ComputeError::config(format!("GGUF metadata has no `{key}`")))?
            .as_array()
            .ok_or_else(|| ComputeError::config(format!("GGUF `{key}` is not an array")))?;
        a.iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ComputeError::config(format!("GGUF `{key}` holds a non-string")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn tiny() -> Vec<u8> {
        tiny_with_type(0)
    }

    fn tiny_with_type(ty: u32) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend(MAGIC);
        f.extend(3u32.to_le_bytes());
        f.extend(1u64.to_le_bytes()); // tensors
        f.extend(2u64.to_le_bytes()); // kv
        write_string(&mut f, "general.architecture");
        f.extend(8u32.to_le_bytes());
        write_string(&mut f, "llama");
        write_string(&mut f, "x.list");
        f.extend(9u32.to_le_bytes());
        f.extend(4u32.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        f.extend(7u32.to_le_bytes());
        f.extend(9u32.to_le_bytes());
        write_string(&mut f, "w");
        f.extend(2u32.to_le_bytes());
        f.extend(2u64.to_le_bytes());
        f.extend(3u64.to_le_bytes());
        f.extend(ty.to_le_bytes());
        f.extend(0u64.to_le_bytes());
        while f.len() % 32 != 0 {
            f.push(0);
        }
        for i in 0..6 {
            f.extend((i as f32).to_le_bytes());
        }
        f
    }

    #[test]
    fn parses_a_small_file_and_reads_a_tensor() {
        let bytes = tiny();
        let mut r = std::io::Cursor::new(bytes);
        let g = Gguf::parse(&mut r).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.str("general.architecture").unwrap(), "llama");
        assert_eq!(
            g.get("x.list"),
            Some(&Value::Array(vec![Value::U32(7), Value::U32(9)]))
        );
        let (t, data) = g.read_tensor(&mut r, "w").unwrap();
        assert_eq!(t.shape(), vec![3, 2]);
        assert_eq!(data.len(), 24);
        assert_eq!(f32::from_le_bytes(data[20..24].try_into().unwrap()), 5.0);
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = tiny();
        for cut in 0..bytes.len() {
            let mut r = std::io::Cursor::new(bytes[..cut].to_vec());
            match Gguf::parse(&mut r) {
                // Where reading failed, or (data cut off) where the tensor that no longer
                // fits starts — never beyond the whole file.
                Err(ComputeError::Gguf { offset, detail }) => assert!(
                    offset <= cut as u64 || detail.contains("past the end"),
                    "cut {cut}: offset {offset}: {detail}"
                ),
                Err(e) => panic!("cut {cut}: unexpected error {e}"),
                Ok(_) => panic!("cut {cut}: a truncated file parsed"),
            }
        }
    }

    #[test]
    fn unsupported_types_are_named() {
        assert_eq!(GgmlType(12).name(), "Q4_K");
        assert_eq!(GgmlType(999).name(), "type 999");
        let bytes = tiny_with_type(12);
        let mut r = std::io::Cursor::new(bytes);
        let g = Gguf::parse(&mut r).unwrap();
        let e = g.read_tensor(&mut r, "w").unwrap_err();
        assert!(e.to_string().contains("Q4_K"), "{e}");
    }
}
