//! Activations: what flows between layers, and its canonical bytes.
//!
//! A model is a sequence of layers; each layer is a pure function from one
//! [`Activation`] to the next. An activation carries *everything* the next layer reads,
//! so that a layer can be re-executed alone from its committed input (the referee's
//! operation) and its hash commits to all of it:
//!
//! ```text
//!  Activation
//!  ├─ kind      Tokens | Hidden | Pooled | Logits | Features
//!  ├─ seq_lens  lengths of the sequences in the batch (the attention mask, ragged form)
//!  ├─ ids       token ids of all sequences, concatenated (Tokens only; empty otherwise)
//!  └─ tensor    [rows, width] f32, row-major; rows = Σ seq_lens for token-level kinds,
//!               = batch for Pooled, = batch for Features (seq_lens empty)
//! ```
//!
//! **Batches are ragged, not padded.** A padded batch `[batch, max_len, dim]` plus a 0/1
//! attention mask carries the same information as the valid rows of each sequence
//! concatenated plus the sequence lengths — minus padding values that would have to be
//! defined (and hashed) although no output depends on them. Sequence `b` occupies rows
//! `Σ_{c<b} seq_lens[c] .. + seq_lens[b]`, and attention never crosses sequences.
//!
//! # Canonical bytes (version 1)
//!
//! All integers little-endian:
//!
//! ```text
//!  "AGACT1"                    6-byte tag (format + version)
//!  u8   kind                   0 Tokens, 1 Hidden, 2 Pooled, 3 Logits, 4 Features
//!  u64  n_seqs,  n_seqs × u64  sequence lengths
//!  u64  n_ids,   n_ids  × u32  token ids
//!  u64  rows, u64 width
//!  rows·width × f32            the tensor, row-major, IEEE-754 bits as stored
//! ```
//!
//! The activation hash is `blake3(canonical bytes)`. Floats are hashed by their bits, so
//! `-0.0 ≠ 0.0` and every NaN payload is distinct: bitwise determinism is what the
//! runtime guarantees, and the hash checks exactly that.

use crate::metering::InputShape;
use crate::{ComputeError, Tensor};
use agentic_primitives::Hash;

const TAG: &[u8; 6] = b"AGACT1";

/// What an activation holds (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationKind {
    /// Token ids, the input of a language model (`tensor` is `[rows, 0]`).
    Tokens,
    /// Per-token hidden states `[Σ seq_lens, hidden]`.
    Hidden,
    /// One vector per sequence `[batch, dim]` (e.g. normalized sentence embeddings).
    Pooled,
    /// Per-token next-token logits `[Σ seq_lens, vocab]`.
    Logits,
    /// Plain rows of features `[rows, width]` (MLP input and hidden layers).
    Features,
}

impl ActivationKind {
    fn code(self) -> u8 {
        match self {
            ActivationKind::Tokens => 0,
            ActivationKind::Hidden => 1,
            ActivationKind::Pooled => 2,
            ActivationKind::Logits => 3,
            ActivationKind::Features => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => ActivationKind::Tokens,
            1 => ActivationKind::Hidden,
            2 => ActivationKind::Pooled,
            3 => ActivationKind::Logits,
            4 => ActivationKind::Features,
            _ => return None,
        })
    }

    /// Lower-case name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ActivationKind::Tokens => "tokens",
            ActivationKind::Hidden => "hidden",
            ActivationKind::Pooled => "pooled",
            ActivationKind::Logits => "logits",
            ActivationKind::Features => "features",
        }
    }
}

/// The value between two layers (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    kind: ActivationKind,
    seq_lens: Vec<usize>,
    ids: Vec<u32>,
    tensor: Tensor,
}

/// Limits for decoding untrusted activation bytes.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Maximum number of sequences.
    pub max_seqs: usize,
    /// Maximum number of token ids.
    pub max_ids: usize,
    /// Maximum number of f32 elements.
    pub max_elems: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_seqs: 1 << 16,
            max_ids: 1 << 22,
            max_elems: 1 << 28,
        }
    }
}

impl Activation {
    /// A batch of token sequences (the input of BERT/GPT). Errors on an empty batch or
    /// an empty sequence.
    pub fn tokens(seqs: &[Vec<u32>]) -> Result<Self, ComputeError> {
        if seqs.is_empty() {
            return Err(ComputeError::EmptyInput("no sequence in the batch".into()));
        }
        if seqs.iter().any(Vec::is_empty) {
            return Err(ComputeError::EmptyInput("a sequence has no token".into()));
        }
        let seq_lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let ids: Vec<u32> = seqs.concat();
        let rows = ids.len();
        Ok(Activation {
            kind: ActivationKind::Tokens,
            seq_lens,
            ids,
            tensor: Tensor::zeros(vec![rows, 0]),
        })
    }

    /// Rows of features `[rows, width]` (the input of an MLP).
    pub fn features(rows: usize, width: usize, data: Vec<f32>) -> Result<Self, ComputeError> {
        if rows == 0 || width == 0 {
            return Err(ComputeError::EmptyInput(
                "features need at least one row and column".into(),
            ));
        }
        Ok(Activation {
            kind: ActivationKind::Features,
            seq_lens: Vec::new(),
            ids: Vec::new(),
            tensor: Tensor::new(vec![rows, width], data)?,
        })
    }

    /// An activation from its parts, checking that they agree.
    pub fn from_parts(
        kind: ActivationKind,
        seq_lens: Vec<usize>,
        ids: Vec<u32>,
        rows: usize,
        width: usize,
        data: Vec<f32>,
    ) -> Result<Self, ComputeError> {
        let bad = |d: String| Err(ComputeError::MalformedActivation(d));
        let total: usize = seq_lens.iter().sum();
        match kind {
            ActivationKind::Tokens => {
                if width != 0 || ids.len() != rows || total != rows {
                    return bad(format!(
                        "tokens: {} ids, {rows} rows, width {width}, Σ seq_lens {total}",
                        ids.len()
                    ));
                }
            }
            ActivationKind::Hidden | ActivationKind::Logits => {
                if total != rows || !ids.is_empty() {
                    return bad(format!(
                        "{}: {rows} rows but Σ seq_lens {total}",
                        kind.name()
                    ));
                }
            }
            ActivationKind::Pooled => {
                if seq_lens.len() != rows || !ids.is_empty() {
                    return bad(format!(
                        "pooled: {rows} rows for {} sequences",
                        seq_lens.len()
                    ));
                }
            }
            ActivationKind::Features => {
                if !seq_lens.is_empty() || !ids.is_empty() {
                    return bad("features carry no sequences or ids".into());
                }
            }
        }
        if seq_lens.contains(&0) {
            return bad("empty sequence".into());
        }
        let tensor = Tensor::new(vec![rows, width], data)
            .map_err(|e| ComputeError::MalformedActivation(e.to_string()))?;
        Ok(Activation {
            kind,
            seq_lens,
            ids,
            tensor,
        })
    }

    /// Internal constructor for layer outputs whose consistency the layer guarantees.
    pub(crate) fn derived(
        kind: ActivationKind,
        seq_lens: Vec<usize>,
        rows: usize,
        width: usize,
        data: Vec<f32>,
    ) -> Result<Self, ComputeError> {
        Self::from_parts(kind, seq_lens, Vec::new(), rows, width, data)
    }

    pub fn kind(&self) -> ActivationKind {
        self.kind
    }

    /// Lengths of the sequences in the batch (empty for features).
    pub fn seq_lens(&self) -> &[usize] {
        &self.seq_lens
    }

    /// Token ids of all sequences, concatenated (Tokens only).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    pub fn into_tensor(self) -> Tensor {
        self.tensor
    }

    /// Number of rows of the tensor.
    pub fn rows(&self) -> usize {
        self.tensor.shape().first().copied().unwrap_or(0)
    }

    /// Width of each row.
    pub fn width(&self) -> usize {
        self.tensor.shape().get(1).copied().unwrap_or(0)
    }

    /// The shape metering prices.
    pub fn input_shape(&self) -> InputShape {
        match self.kind {
            ActivationKind::Features => InputShape::Rows {
                rows: self.rows(),
                width: self.width(),
            },
            _ => InputShape::Tokens {
                seq_lens: self.seq_lens.clone(),
            },
        }
    }

    /// Canonical bytes (module docs, "Canonical bytes").
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let data = self.tensor.data();
        let mut out = Vec::with_capacity(
            6 + 1 + 8 * (4 + self.seq_lens.len()) + 4 * (self.ids.len() + data.len()),
        );
        self.write_header(&mut out);
        for x in data {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    fn write_header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(TAG);
        out.push(self.kind.code());
        out.extend_from_slice(&(self.seq_lens.len() as u64).to_le_bytes());
        for &l in &self.seq_lens {
            out.extend_from_slice(&(l as u64).to_le_bytes());
        }
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        for id in &self.ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.extend_from_slice(&(self.rows() as u64).to_le_bytes());
        out.extend_from_slice(&(self.width() as u64).to_le_bytes());
    }

    /// `blake3(canonical bytes)`, streamed without materializing the bytes.
    pub fn hash(&self) -> Hash {
        let mut header = Vec::with_capacity(64);
        self.write_header(&mut header);
        let mut h = blake3::Hasher::new();
        h.update(&header);
        let mut buf = [0u8; 4096];
        for chunk in self.tensor.data().chunks(1024) {
            for (i, x) in chunk.iter().enumerate() {
                buf[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
            }
            h.update(&buf[..4 * chunk.len()]);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// Decodes canonical bytes, bounded by `limits`; never panics on malformed input.
    pub fn from_canonical_bytes(bytes: &[u8], limits: DecodeLimits) -> Result<Self, ComputeError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(6)? != TAG {
            return Err(ComputeError::MalformedActivation("bad tag".into()));
        }
        let kind = ActivationKind::from_code(r.take(1)?[0])
            .ok_or_else(|| ComputeError::MalformedActivation("unknown kind".into()))?;
        let n_seqs = r.len(limits.max_seqs, "sequences")?;
        let mut seq_lens = Vec::with_capacity(n_seqs);
        for _ in 0..n_seqs {
            seq_lens.push(r.len(limits.max_ids.max(limits.max_elems), "sequence length")?);
        }
        let n_ids = r.len(limits.max_ids, "ids")?;
        let mut ids = Vec::with_capacity(n_ids);
        for _ in 0..n_ids {
            let b = r.take(4)?;
            ids.push(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        let rows = r.len(limits.max_elems, "rows")?;
        let width = r.len(limits.max_elems, "width")?;
        let n = rows
            .checked_mul(width)
            .filter(|&n| n <= limits.max_elems)
            .ok_or_else(|| ComputeError::MalformedActivation("tensor too large".into()))?;
        let body = r.take(
            n.checked_mul(4)
                .ok_or_else(|| ComputeError::MalformedActivation("tensor too large".into()))?,
        )?;
        if r.pos != bytes.len() {
            return Err(ComputeError::MalformedActivation("trailing bytes".into()));
        }
        let data = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Self::from_parts(kind, seq_lens, ids, rows, width, data)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ComputeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| ComputeError::MalformedActivation("truncated".into()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn len(&mut self, max: usize, what: &str) -> Result<usize, ComputeError> {
        let b = self.take(8)?;
        let v = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| {
                ComputeError::MalformedActivation(format!("{what}: {v} over limit {max}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_round_trip_and_hash_streaming_matches() {
        let a = Activation::from_parts(
            ActivationKind::Hidden,
            vec![2, 1],
            vec![],
            3,
            2,
            vec![1.0, -0.0, 2.5, f32::MIN_POSITIVE, 7.0, -3.0],
        )
        .unwrap();
        let bytes = a.canonical_bytes();
        let b = Activation::from_canonical_bytes(&bytes, DecodeLimits::default()).unwrap();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().0, *blake3::hash(&bytes).as_bytes());
        // The mask (sequence lengths) is committed: same values, other split, other hash.
        let c = Activation::from_parts(
            ActivationKind::Hidden,
            vec![1, 2],
            vec![],
            3,
            2,
            a.tensor().data().to_vec(),
        )
        .unwrap();
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn malformed_bytes_are_errors() {
        let a = Activation::tokens(&[vec![1, 2, 3]]).unwrap();
        let bytes = a.canonical_bytes();
        for cut in 0..bytes.len() {
            assert!(
                Activation::from_canonical_bytes(&bytes[..cut], DecodeLimits::default()).is_err()
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Activation::from_canonical_bytes(&long, DecodeLimits::default()).is_err());
        let tight = DecodeLimits {
            max_seqs: 1,
            max_ids: 2,
            max_elems: 10,
        };
        assert!(Activation::from_canonical_bytes(&bytes, tight).is_err());
    }
}
