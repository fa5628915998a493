//! The referee of a generation dispute: one layer at one step, from that layer's input
//! rows for the prefix.
//!
//! A generation dispute's descent (ledger: `state::disputes`, "Generation stages") ends
//! at the first leaf where the two traces differ, leaf `f = t·w + j` of the defendant's
//! step-major trace (`w = count + 1` leaves per step, `j ≥ 1`): trace layer
//! `L = first + j − 1` at step `t`. Everything before `f` is agreed, in particular the
//! leaves of layer `L`'s input (position `j − 1`) at steps `0..=t`. The layer at step `t`
//! attends over the K/V of every earlier position, so the referee needs those input rows
//! for the whole prefix — and rebuilds the K/V from them, which batch invariance makes
//! equal to the session's cache:
//!
//! ```text
//!  PrefixRows (the blob the defendant names; bounded decoding, typed errors):
//!    header  model, root, leaves, width, first_layer, leaf   (= the ledger's question)
//!    input   rows of layer L−1 for positions 0..P (P = prompt + t), or for L = 0 the
//!            step's tokens
//!    proofs  one Merkle proof per step s ≤ t of leaf (s, j−1) against `root`
//!  referee (reexecute):
//!    1. split the rows into steps (step 0: the first P − t rows, then one row each),
//!       hash each (`rows_hash(L−1, …)`), check its proof at leaf s·w + j − 1
//!    2. run layer L: a block over all P rows (K/V built here), keep step t's rows;
//!       the head on step t's last row; the embedding of step t's tokens
//!    3. return the output leaf (`rows_hash(L, …)`): the ledger compares
//!       H(0x00 ‖ leaf) with each party's node at f
//! ```
//!
//! Bytes (little-endian): `"AGLLMPX1" ‖ model 32 ‖ root 32 ‖ leaves u32 ‖ width u32 ‖
//! first_layer u32 ‖ leaf u32 ‖ dim u32 ‖ row count u32 ‖ rows f32… ‖ token count u32 ‖
//! tokens u32… ‖ proof count u32 ‖ (length u32 ‖ hashes 32…)…`, nothing after. Every
//! count is bounded ([`PrefixLimits`]) and checked against the bytes left before
//! anything is allocated.

use std::ops::Range;

use agentic_primitives::merkle;

use crate::llm::llama::{rows_hash, Llama};
use crate::llm::stage::tokens_leaf;
use crate::trace::Hash;
use crate::ComputeError;

/// Magic of a [`PrefixRows`] blob.
pub const PREFIX_MAGIC: &[u8; 8] = b"AGLLMPX1";

/// Bounds on a [`PrefixRows`] blob read from untrusted bytes.
#[derive(Clone, Copy, Debug)]
pub struct PrefixLimits {
    /// Most rows (positions).
    pub max_rows: usize,
    /// Most values per row.
    pub max_dim: usize,
    /// Most tokens.
    pub max_tokens: usize,
}

impl Default for PrefixLimits {
    fn default() -> Self {
        PrefixLimits {
            max_rows: 1 << 16,
            max_dim: 1 << 14,
            max_tokens: 1 << 16,
        }
    }
}

/// Why a prefix blob cannot be refereed. Every variant is the defendant's fault (it
/// named the blob): the ledger treats it as unavailable input.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// The bytes are not a prefix blob.
    #[error("malformed prefix rows: {0}")]
    Malformed(String),
    /// The header does not describe a leaf that can be re-executed.
    #[error("prefix header: {0}")]
    Header(String),
    /// A step's rows do not hash to a leaf proven against the root.
    #[error("the rows of step {step} are not the committed leaf {leaf}")]
    NotProven {
        /// The step.
        step: u32,
        /// The flat leaf index checked.
        leaf: u32,
    },
    /// The model refused the layer.
    #[error(transparent)]
    Compute(#[from] ComputeError),
}

/// The header: the ledger's question ([`agentic_protocol`'s `GenerationQuestion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixHeader {
    /// The job's model (the GGUF's hash).
    pub model: Hash,
    /// The defendant's trace root.
    pub root: Hash,
    /// Leaves of the trace (`steps × width`).
    pub leaves: u32,
    /// Leaves per step (`count + 1`).
    pub width: u32,
    /// The stage's first trace layer.
    pub first_layer: u32,
    /// The disputed leaf.
    pub leaf: u32,
}

impl PrefixHeader {
    /// The disputed step.
    pub fn step(&self) -> u32 {
        self.leaf.checked_div(self.width).unwrap_or(0)
    }

    /// The trace layer re-executed (`first + j − 1`), if the leaf is a layer's output.
    pub fn layer(&self) -> Option<u32> {
        let j = self.leaf.checked_rem(self.width)?;
        self.first_layer.checked_add(j.checked_sub(1)?)
    }

    /// Checks the shape: `width ≥ 2`, `leaves` whole steps, `leaf < leaves`, not an
    /// input leaf. Returns `(step, layer)`.
    fn check(&self) -> Result<(u32, u32), PrefixError> {
        if self.width < 2 || self.leaves == 0 || !self.leaves.is_multiple_of(self.width) {
            return Err(PrefixError::Header(format!(
                "{} leaves of width {}",
                self.leaves, self.width
            )));
        }
        if self.leaf >= self.leaves {
            return Err(PrefixError::Header(format!(
                "leaf {} of {}",
                self.leaf, self.leaves
            )));
        }
        let layer = self
            .layer()
            .ok_or_else(|| PrefixError::Header(format!("leaf {} is a step's input", self.leaf)))?;
        Ok((self.step(), layer))
    }
}

/// The rows (or tokens) a referee re-executes one layer at one step from.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixRows {
    pub header: PrefixHeader,
    /// Width of a row (the model's `dim`; 0 with tokens).
    pub dim: u32,
    /// Layer `L − 1`'s output rows for positions `0..P`, row-major (empty for `L = 0`).
    pub rows: Vec<f32>,
    /// Step `t`'s tokens (only for `L = 0`, the embedding).
    pub tokens: Vec<u32>,
    /// Per step `s ≤ t` (only `t` for the head and the embedding), the proof of leaf
    /// `s·w + j − 1` against the root.
    pub proofs: Vec<Vec<Hash>>,
}

/// The steps whose input leaves a layer's re-execution reads: every step up to `t` for
/// a block (its K/V), step `t` alone for the embedding and the head.
fn proven_steps(model: &Llama, layer: u32, step: u32) -> Range<u32> {
    let n = model.config().n_layer as u32;
    if layer == 0 || layer > n {
        step..step + 1
    } else {
        0..step + 1
    }
}

/// Row span of step `s` in a prefix whose step 0 has `p` rows.
fn span(s: usize, p: usize) -> Range<usize> {
    if s == 0 {
        0..p
    } else {
        p + s - 1..p + s
    }
}

impl PrefixRows {
    /// What an honest party publishes: the input of the disputed leaf's layer for the
    /// prefix, recomputed from the tokens (`prompt ++ transcript[..t]`, `prompt_len`
    /// of them the prompt), with proofs from its own trace `flat` (which must have root
    /// `header.root`).
    pub fn build(
        model: &Llama,
        header: PrefixHeader,
        tokens: &[u32],
        prompt_len: usize,
        flat: &[Hash],
    ) -> Result<PrefixRows, PrefixError> {
        let (t, layer) = header.check()?;
        let (t_us, w) = (t as usize, header.width as usize);
        let j = (header.leaf % header.width) as usize;
        let positions = prompt_len + t_us;
        if prompt_len == 0 || tokens.len() < positions || flat.len() != header.leaves as usize {
            return Err(PrefixError::Header(format!(
                "{} tokens, a prompt of {prompt_len}, {} leaves for step {t}",
                tokens.len(),
                flat.len()
            )));
        }
        let raw: Vec<[u8; 32]> = flat.iter().map(|h| h.0).collect();
        let proofs = proven_steps(model, layer, t)
            .map(|s| {
                let i = s as usize * w + j - 1;
                merkle::proof(&raw, i)
                    .map(|p| p.into_iter().map(Hash).collect())
                    .ok_or(PrefixError::NotProven {
                        step: s,
                        leaf: i as u32,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let c = model.config();
        if layer == 0 {
            let step = span(t_us, prompt_len);
            return Ok(PrefixRows {
                header,
                dim: 0,
                rows: Vec::new(),
                tokens: tokens[step].to_vec(),
                proofs,
            });
        }
        let mut rows = model.hidden_after(&tokens[..positions], layer as usize - 1)?;
        if layer as usize > c.n_layer {
            // The head reads step t's rows only.
            let s = span(t_us, prompt_len);
            rows = rows[s.start * c.dim..s.end * c.dim].to_vec();
        }
        Ok(PrefixRows {
            header,
            dim: c.dim as u32,
            rows,
            tokens: Vec::new(),
            proofs,
        })
    }

    /// The canonical bytes (module docs).
    pub fn encode(&self) -> Vec<u8> {
        let h = &self.header;
        let mut b = Vec::with_capacity(8 + 64 + 32 + self.rows.len() * 4 + self.tokens.len() * 4);
        b.extend_from_slice(PREFIX_MAGIC);
        b.extend_from_slice(&h.model.0);
        b.extend_from_slice(&h.root.0);
        for v in [h.leaves, h.width, h.first_layer, h.leaf, self.dim] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let rows = self.rows.len().checked_div(self.dim as usize).unwrap_or(0);
        b.extend_from_slice(&(rows as u32).to_le_bytes());
        for v in &self.rows {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&(self.tokens.len() as u32).to_le_bytes());
        for t in &self.tokens {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b.extend_from_slice(&(self.proofs.len() as u32).to_le_bytes());
        for p in &self.proofs {
            b.extend_from_slice(&(p.len() as u32).to_le_bytes());
            for x in p {
                b.extend_from_slice(&x.0);
            }
        }
        b
    }

    /// Decodes untrusted bytes within `limits`: a typed error, never a panic.
    pub fn decode(bytes: &[u8], limits: PrefixLimits) -> Result<PrefixRows, PrefixError> {
        let mut r = Cursor { bytes, at: 0 };
        if r.take(8)? != PREFIX_MAGIC {
            return Err(PrefixError::Malformed("not prefix rows (magic)".into()));
        }
        let model = r.hash()?;
        let root = r.hash()?;
        let header = PrefixHeader {
            model,
            root,
            leaves: r.u32()?,
            width: r.u32()?,
            first_layer: r.u32()?,
            leaf: r.u32()?,
        };
        let dim = r.u32()?;
        let count = r.u32()? as usize;
        if dim as usize > limits.max_dim || count > limits.max_rows {
            return Err(PrefixError::Malformed(format!(
                "{count} rows of {dim} (at most {} of {})",
                limits.max_rows, limits.max_dim
            )));
        }
        let values = count
            .checked_mul(dim as usize)
            .filter(|&v| v <= r.left() / 4)
            .ok_or_else(|| PrefixError::Malformed("more rows than bytes".into()))?;
        let rows = (0..values)
            .map(|_| r.u32().map(f32::from_bits))
            .collect::<Result<Vec<_>, _>>()?;
        let n_tokens = r.u32()? as usize;
        if n_tokens > limits.max_tokens || n_tokens > r.left() / 4 {
            return Err(PrefixError::Malformed(format!("{n_tokens} tokens")));
        }
        let tokens = (0..n_tokens)
            .map(|_| r.u32())
            .collect::<Result<Vec<_>, _>>()?;
        let n_proofs = r.u32()? as usize;
        if n_proofs > limits.max_rows.saturating_add(1) || n_proofs > r.left() / 4 {
            return Err(PrefixError::Malformed(format!("{n_proofs} proofs")));
        }
        let mut proofs = Vec::with_capacity(n_proofs);
        for _ in 0..n_proofs {
            let len = r.u32()? as usize;
            if len > merkle::MAX_PROOF_LEN || len > r.left() / 32 {
                return Err(PrefixError::Malformed(format!("a proof of {len} hashes")));
            }
            proofs.push((0..len).map(|_| r.hash()).collect::<Result<Vec<_>, _>>()?);
        }
        if r.left() != 0 {
            return Err(PrefixError::Malformed(format!(
                "{} bytes after the proofs",
                r.left()
            )));
        }
        Ok(PrefixRows {
            header,
            dim,
            rows,
            tokens,
            proofs,
        })
    }
}

/// A cursor over untrusted bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PrefixError> {
        let bytes: &'a [u8] = self.bytes;
        let out = bytes
            .get(self.at..self.at.saturating_add(n))
            .filter(|s| s.len() == n)
            .ok_or_else(|| PrefixError::Malformed(format!("truncated at byte {}", self.at)))?;
        self.at += n;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, PrefixError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn hash(&mut self) -> Result<Hash, PrefixError> {
        let mut h = [0u8; 32];
        h.copy_from_slice(self.take(32)?);
        Ok(Hash(h))
    }
}

/// The referee (module docs): checks every row block (or the tokens) against its proof,
/// re-executes trace layer `L` at step `t` and returns the output leaf. The caller
/// checks `header.model` is the model it loaded.
pub fn reexecute(model: &Llama, blob: &PrefixRows) -> Result<Hash, PrefixError> {
    let h = &blob.header;
    let (t, layer) = h.check()?;
    let c = model.config();
    let (d, n_layer, l) = (c.dim, c.n_layer, layer as usize);
    if l > n_layer + 1 {
        return Err(ComputeError::LayerOutOfRange {
            layer: l,
            layers: c.layers(),
        }
        .into());
    }
    let steps = proven_steps(model, layer, t);
    if blob.proofs.len() != steps.len() {
        return Err(PrefixError::Header(format!(
            "{} proofs for steps {steps:?}",
            blob.proofs.len()
        )));
    }
    let j = h.leaf % h.width;
    let prove = |s: u32, leaf: &Hash, proof: &[Hash]| -> Result<(), PrefixError> {
        let i = s
            .checked_mul(h.width)
            .and_then(|x| x.checked_add(j - 1))
            .ok_or(PrefixError::NotProven { step: s, leaf: 0 })?;
        let raw: Vec<[u8; 32]> = proof.iter().map(|x| x.0).collect();
        if merkle::verify(&h.root.0, u64::from(i), u64::from(h.leaves), &leaf.0, &raw) {
            Ok(())
        } else {
            Err(PrefixError::NotProven { step: s, leaf: i })
        }
    };
    if l == 0 {
        if blob.tokens.is_empty() || blob.tokens.iter().any(|&x| x as usize >= c.vocab) {
            return Err(PrefixError::Header(
                "the embedding needs the step's tokens, in the vocabulary".into(),
            ));
        }
        prove(t, &tokens_leaf(&blob.tokens), &blob.proofs[0])?;
        let mut x = vec![0.0f32; blob.tokens.len() * d];
        model.embed_rows(&blob.tokens, &mut x);
        return Ok(rows_hash(0, &x, d));
    }
    if blob.dim as usize != d || blob.rows.is_empty() || !blob.rows.len().is_multiple_of(d) {
        return Err(PrefixError::Header(format!(
            "{} values of width {} for a model of width {d}",
            blob.rows.len(),
            blob.dim
        )));
    }
    let positions = blob.rows.len() / d;
    if l > n_layer {
        // The head: step t's rows of the last block, logits of its last row.
        prove(t, &rows_hash(l - 1, &blob.rows, d), &blob.proofs[0])?;
        let logits = model.head_rows(&blob.rows[(positions - 1) * d..]);
        return Ok(rows_hash(l, &logits, c.vocab));
    }
    // A block: every step's rows proven, then the layer over the whole prefix.
    let t_us = t as usize;
    let p = positions
        .checked_sub(t_us)
        .filter(|&p| p >= 1)
        .ok_or_else(|| PrefixError::Header(format!("{positions} rows for step {t}")))?;
    for (s, proof) in steps.zip(&blob.proofs) {
        let r = span(s as usize, p);
        prove(
            s,
            &rows_hash(l - 1, &blob.rows[r.start * d..r.end * d], d),
            proof,
        )?;
    }
    let out = model.reexecute_block(l, &blob.rows, span(t_us, p))?;
    Ok(rows_hash(l, &out, d))
}

/// Why stage 0's input leaf of a step cannot be derived from a session's blobs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputLeafError {
    /// The job's input is not a generation request.
    #[error("not a generation request: {0}")]
    Request(String),
    /// The blob is not a transcript (`stage::transcript_bytes`).
    #[error("not a transcript")]
    Transcript,
    /// The session has no such step (one step per sampled token).
    #[error("step {step} is past the session's {steps} steps")]
    StepOutOfRange {
        /// The step asked.
        step: u32,
        /// The transcript's length.
        steps: usize,
    },
}

/// Stage 0's input leaf at step `t`, derived from the job's input (the
/// `GenerationRequest` bytes) and the session's transcript bytes: `tokens_leaf` of the
/// prompt for `t = 0`, of `[transcript[t − 1]]` after (`stage` docs). A session has one
/// step per sampled token, so `t` must be below the transcript's length. Nothing is
/// allocated beyond what the bytes hold; no input panics.
pub fn stage0_input_leaf(
    request: &[u8],
    transcript: &[u8],
    t: u32,
) -> Result<Hash, InputLeafError> {
    let request = crate::llm::stage::GenerationRequest::decode(request)
        .map_err(|e| InputLeafError::Request(e.to_string()))?;
    let tokens =
        crate::llm::stage::transcript_from_bytes(transcript).ok_or(InputLeafError::Transcript)?;
    let out_of_range = InputLeafError::StepOutOfRange {
        step: t,
        steps: tokens.len(),
    };
    if t as usize >= tokens.len() {
        return Err(out_of_range);
    }
    match (t as usize).checked_sub(1) {
        None => Ok(tokens_leaf(&request.prompt)),
        Some(i) => tokens
            .get(i)
            .map(|&tok| tokens_leaf(&[tok]))
            .ok_or(out_of_range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage0_input_leaves_come_from_the_request_and_the_transcript() {
        use crate::llm::sample::Sampler;
        use crate::llm::stage::{transcript_bytes, GenerationRequest};
        let request = GenerationRequest {
            prompt: vec![5, 6, 7],
            max_tokens: 4,
            sampler: Sampler::Greedy,
            stop: vec![],
        }
        .encode();
        let transcript = transcript_bytes(&[11, 12, 13]);
        let leaf = |t| stage0_input_leaf(&request, &transcript, t);
        assert_eq!(leaf(0), Ok(tokens_leaf(&[5, 6, 7])));
        assert_eq!(leaf(1), Ok(tokens_leaf(&[11])));
        assert_eq!(leaf(2), Ok(tokens_leaf(&[12])));
        assert_eq!(
            leaf(3),
            Err(InputLeafError::StepOutOfRange { step: 3, steps: 3 })
        );
        assert_eq!(
            stage0_input_leaf(&request, &transcript[..transcript.len() - 1], 0),
            Err(InputLeafError::Transcript)
        );
        assert!(matches!(
            stage0_input_leaf(&transcript, &transcript, 0),
            Err(InputLeafError::Request(_))
        ));
        // Truncated or garbled bytes are errors, never panics.
        for k in 0..request.len() {
            assert!(stage0_input_leaf(&request[..k], &transcript, 0).is_err());
        }
        for k in 0..transcript.len() {
            let _ = stage0_input_leaf(&request, &transcript[..k], 0);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_round_trips() {
        let blob = PrefixRows {
            header: PrefixHeader {
                model: Hash([1; 32]),
                root: Hash([2; 32]),
                leaves: 24,
                width: 12,
                first_layer: 11,
                leaf: 17,
            },
            dim: 2,
            rows: vec![1.0, -2.0, 0.5, 3.25],
            tokens: vec![],
            proofs: vec![vec![Hash([3; 32])], vec![Hash([4; 32]), Hash([5; 32])]],
        };
        let bytes = blob.encode();
        assert_eq!(
            PrefixRows::decode(&bytes, PrefixLimits::default()).unwrap(),
            blob
        );
        for k in 0..bytes.len() {
            assert!(PrefixRows::decode(&bytes[..k], PrefixLimits::default()).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(PrefixRows::decode(&long, PrefixLimits::default()).is_err());
        // A huge row count in few bytes is refused before allocating.
        let mut huge = bytes[..8 + 64 + 16].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            PrefixRows::decode(&huge, PrefixLimits::default()),
            Err(PrefixError::Malformed(_))
        ));
        let header = PrefixHeader {
            leaf: 12,
            ..blob_header()
        };
        assert_eq!(header.layer(), None, "a step's input leaf");
        assert!(header.check().is_err());
    }

    fn blob_header() -> PrefixHeader {
        PrefixHeader {
            model: Hash([1; 32]),
            root: Hash([2; 32]),
            leaves: 24,
            width: 12,
            first_layer: 11,
            leaf: 17,
        }
    }
}
