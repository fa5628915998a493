//! The Llama family (Llama, Mistral, Qwen2, SmolLM): one decoder, configured from the file.
//!
//! ```text
//!  layer 0        embedding: token id → row of token_embd (dequantized)
//!  layer 1..=L    block: x += Wo·attn(rope(Wq·n), rope(Wk·n), Wv·n)   n = rmsnorm(x)·γ₁
//!                        x += Wd·(silu(Wg·n) ⊙ Wu·n)                   n = rmsnorm(x)·γ₂
//!  layer L+1      head: logits = W_out · rmsnorm(x)·γ  (W_out = token_embd when tied)
//! ```
//!
//! Grouped-query attention (`n_kv_head` divides `n_head`), optional q/k/v bias (Qwen2),
//! rotary embeddings with `rope_theta` and optional linear scaling, causal attention over
//! a per-sequence KV cache. The rotary layout follows the file: GGUF `llama` tensors are
//! permuted by llama.cpp's converter for rotation of adjacent pairs (`x[2i], x[2i+1]`);
//! Hugging Face checkpoints and GGUF `qwen2` rotate halves (`x[i], x[i + d/2]`).
//!
//! # Determinism and batch invariance
//!
//! Every row (one position of one sequence) is computed by the same sequence of
//! operations whatever else is in the batch: products by [`quant::matmul`] (per-output
//! fixed order), norms and activations row by row, attention per (row, head) over the
//! keys `0..=pos` in order. So a position's activations are bit-identical whether it
//! is decoded alone with a KV cache, prefilled with its whole sequence, or batched
//! next to other sequences of other lengths — which is what lets an auditor re-check a
//! whole generation with one prefill.
//!
//! Scalar arithmetic, per row of width `d`:
//! * RMSNorm: `ss = fma(x_i, x_i, ss)` in order from +0; `inv = 1 / sqrtf(ss / d + eps)`;
//!   `y_i = (x_i · inv) · γ_i`.
//! * RoPE at position `p`, pair `i` of `h/2`: `θ_i = p · base^(−2i/h) / scale` in f64 with
//!   `libm::pow`, `c = cos θ_i`, `s = sin θ_i` (libm, f64, rounded to f32 once);
//!   `(a, b) → (fma(a, c, −(b·s)), fma(a, s, b·c))`.
//! * Scores: `q·k` as one fma chain over the head dim, then `· 1/sqrtf(h)`; softmax with
//!   the running max, `expf(z − max)` (libm), the sum in key order, one division each;
//!   output `o = fma(p_s, v_s, o)` over keys in order.
//! * SiLU: `g / (1 + expf(−g))`, then `· u`. Residual adds and biases: one f32 add, after
//!   the full reduction.

#![allow(clippy::too_many_arguments, clippy::needless_range_loop)]

use std::io::{Read, Seek};
use std::ops::Range;

use rayon::prelude::*;

use crate::kernels::{self, fma_dispatch, Fma};
use crate::llm::gguf::{Gguf, TensorInfo};
use crate::llm::quant::{self, bf16_to_f32, f16_to_f32, LaneWork, Lanes, QMatrix, WeightType};
use crate::metering::TRANSCENDENTAL;
use crate::trace::Hash;
use crate::ComputeError;

/// How rotary embeddings pair the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// `(x[2i], x[2i+1])`: GGUF `llama` (weights permuted by llama.cpp's converter).
    Interleaved,
    /// `(x[i], x[i + h/2])`: Hugging Face checkpoints, GGUF `qwen2`.
    Halves,
}

/// A Llama-family configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `llama`, `mistral`, `qwen2` …
    pub architecture: String,
    pub n_layer: usize,
    /// Residual width.
    pub dim: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
    /// Maximum positions (prompt + generated).
    pub context: usize,
    pub rope_theta: f32,
    /// Linear RoPE scaling factor (1 = none): positions are divided by it.
    pub rope_scale: f32,
    pub rope_layout: RopeLayout,
    pub rms_eps: f32,
    /// The LM head is the embedding matrix.
    pub tied_embeddings: bool,
    /// q/k/v projections have biases (Qwen2).
    pub qkv_bias: bool,
}

impl LlamaConfig {
    /// Query width `n_head · head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Key/value width `n_kv_head · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// Layers of the trace: embedding, `n_layer` blocks, head.
    pub fn layers(&self) -> usize {
        self.n_layer + 2
    }

    /// Checks internal consistency (typed errors, never a panic later).
    pub fn validate(&self) -> Result<(), ComputeError> {
        let bad = |m: String| Err(ComputeError::config(m));
        if self.n_layer == 0 || self.dim == 0 || self.n_head == 0 || self.ffn_dim == 0 {
            return bad(format!("empty dimension in {self:?}"));
        }
        if self.n_kv_head == 0 || !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!(
                "{} attention heads cannot share {} key/value heads",
                self.n_head, self.n_kv_head
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head dimension {} must be even", self.head_dim));
        }
        if self.vocab == 0 || self.vocab > u32::MAX as usize || self.context == 0 {
            return bad(format!(
                "vocabulary {} / context {}",
                self.vocab, self.context
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope_theta {} must be > 1", self.rope_theta));
        }
        if !(self.rope_scale.is_finite() && self.rope_scale >= 1.0) {
            return bad(format!("rope scaling factor {}", self.rope_scale));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(format!("rms_norm_eps {}", self.rms_eps));
        }
        for (what, v) in [
            ("dim", self.dim),
            ("q_dim", self.q_dim()),
            ("kv_dim", self.kv_dim()),
            ("ffn_dim", self.ffn_dim),
        ] {
            if v % quant::BLOCK != 0 {
                return bad(format!("{what} {v} is not a multiple of {}", quant::BLOCK));
            }
        }
        Ok(())
    }

    /// From GGUF metadata (`{arch}.*` keys) and the embedding's shape.
    pub fn from_gguf(g: &Gguf) -> Result<Self, ComputeError> {
        let arch = g.str("general.architecture")?.to_string();
        let layout = match arch.as_str() {
            "llama" | "mistral" => RopeLayout::Interleaved,
            "qwen2" => RopeLayout::Halves,
            other => return Err(ComputeError::UnknownArchitecture(other.into())),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let u = |k: &str| -> Result<usize, ComputeError> {
            let v = g.u64(&key(k))?;
            usize::try_from(v)
                .ok()
                .filter(|&v| v <= 1 << 24)
                .ok_or_else(|| ComputeError::config(format!("GGUF `{}` = {v}", key(k))))
        };
        let f = |k: &str, default: f32| -> Result<f32, ComputeError> {
            match g.get(&key(k)) {
                None => Ok(default),
                Some(v) => v.as_f32().ok_or_else(|| {
                    ComputeError::config(format!("GGUF `{}` is not a float", key(k)))
                }),
            }
        };
        let n_head = u("attention.head_count")?;
        let dim = u("embedding_length")?;
        let n_kv_head = match g.get(&key("attention.head_count_kv")) {
            Some(_) => u("attention.head_count_kv")?,
            None => n_head,
        };
        let head_dim = match g.get(&key("attention.key_length")) {
            Some(_) => u("attention.key_length")?,
            None => dim.checked_div(n_head).unwrap_or(0),
        };
        if let Some(rot) = g.get(&key("rope.dimension_count")) {
            if rot.as_u64() != Some(head_dim as u64) {
                return Err(ComputeError::config(format!(
                    "partial rotary embeddings ({rot:?} of {head_dim} dimensions) are not supported"
                )));
            }
        }
        let rope_scale = match g.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => f("rope.scaling.factor", 1.0)?,
            Some(other) => {
                return Err(ComputeError::config(format!(
                    "RoPE scaling `{other}` is not supported (none, linear)"
                )))
            }
        };
        let embd = g
            .tensor("token_embd.weight")
            .ok_or_else(|| ComputeError::MissingTensor {
                name: "token_embd.weight".into(),
            })?;
        let vocab = embd.dims.get(1).copied().unwrap_or(0) as usize;
        let cfg = LlamaConfig {
            architecture: arch.clone(),
            n_layer: u("block_count")?,
            dim,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: u("feed_forward_length")?,
            vocab,
            context: u("context_length")?,
            rope_theta: f("rope.freq_base", 10_000.0)?,
            rope_scale,
            rope_layout: layout,
            rms_eps: f("attention.layer_norm_rms_epsilon", 1e-5)?,
            tied_embeddings: g.tensor("output.weight").is_none(),
            qkv_bias: g.tensor("blk.0.attn_q.bias").is_some(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// From a Hugging Face `config.json` (`model_type` llama, mistral or qwen2).
    pub fn from_hf(v: &serde_json::Value) -> Result<Self, ComputeError> {
        let arch = v
            .get("model_type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| ComputeError::config("config.json has no `model_type`"))?
            .to_string();
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(ComputeError::UnknownArchitecture(arch));
        }
        let u = |k: &str| -> Result<usize, ComputeError> {
            v.get(k)
                .and_then(|x| x.as_u64())
                .and_then(|x| usize::try_from(x).ok())
                .filter(|&x| x <= 1 << 24)
                .ok_or_else(|| {
                    ComputeError::config(format!("config.json: `{k}` missing or invalid"))
                })
        };
        let f = |k: &str, default: f32| -> Result<f32, ComputeError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(x) => x.as_f64().map(|x| x as f32).ok_or_else(|| {
                    ComputeError::config(format!("config.json: `{k}` is not a number"))
                }),
            }
        };
        let n_head = u("num_attention_heads")?;
        let dim = u("hidden_size")?;
        let n_kv_head = if v.get("num_key_value_heads").is_some_and(|x| !x.is_null()) {
            u("num_key_value_heads")?
        } else {
            n_head
        };
        let head_dim = if v.get("head_dim").is_some_and(|x| !x.is_null()) {
            u("head_dim")?
        } else {
            dim.checked_div(n_head).unwrap_or(0)
        };
        let rope_scale = match v.get("rope_scaling") {
            None | Some(serde_json::Value::Null) => 1.0,
            Some(s) => {
                let ty = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                if ty != "linear" {
                    return Err(ComputeError::config(format!(
                        "RoPE scaling `{ty}` is not supported (none, linear)"
                    )));
                }
                s.get("factor")
                    .and_then(|x| x.as_f64())
                    .map(|x| x as f32)
                    .ok_or_else(|| ComputeError::config("rope_scaling has no `factor`"))?
            }
        };
        let mut context = u("max_position_embeddings")?;
        // Mistral's sliding window: exact attention only within it.
        if let Some(w) = v.get("sliding_window").and_then(|x| x.as_u64()) {
            context = context.min(w as usize);
        }
        let cfg = LlamaConfig {
            architecture: arch.clone(),
            n_layer: u("num_hidden_layers")?,
            dim,
            n_head,
            n_kv_head,
            head_dim,
            ffn_dim: u("intermediate_size")?,
            vocab: u("vocab_size")?,
            context,
            rope_theta: f("rope_theta", 10_000.0)?,
            rope_scale,
            rope_layout: RopeLayout::Halves,
            rms_eps: f("rms_norm_eps", 1e-6)?,
            tied_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
            qkv_bias: arch == "qwen2",
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// One decoder block's weights.
#[derive(Debug)]
struct Block {
    attn_norm: Vec<f32>,
    /// q, k, v stacked (`q_dim + 2·kv_dim` rows) when they share a format, else apart.
    qkv: Stack,
    qkv_bias: Option<Vec<f32>>,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    /// gate and up stacked (`2·ffn_dim` rows).
    gate_up: Stack,
    down: QMatrix,
}

/// The buffers of a block's intermediate rows, kept by whoever runs blocks one after
/// another so that each block reuses them instead of allocating and zeroing its own
/// (every value is written before it is read; at a prefill's size the zeroing was a
/// measurable, single-threaded part of each block).
#[derive(Default)]
pub(crate) struct BlockScratch {
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gu: Vec<f32>,
    a: Vec<f32>,
}

/// The first `n` values of `buf`, grown (never shrunk) to hold them.
fn grow(buf: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if buf.len() < n {
        buf.resize(n, 0.0);
    }
    &mut buf[..n]
}

/// Matrices applied to the same input whose outputs are concatenated: one product when
/// they share a format (same bits as separate products — outputs are independent).
#[derive(Debug)]
struct Stack(Vec<QMatrix>);

impl Stack {
    fn n(&self) -> usize {
        self.0.iter().map(QMatrix::n).sum()
    }

    /// `out[m × n] = x · Wᵀ` over the stacked outputs (every value of `out` written).
    fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let n = self.n();
        if let [w] = self.0.as_slice() {
            quant::matmul(x, w, out, m);
            return;
        }
        let mut col = 0;
        for w in &self.0 {
            let mut part = vec![0.0; m * w.n()];
            quant::matmul(x, w, &mut part, m);
            for i in 0..m {
                out[i * n + col..][..w.n()].copy_from_slice(&part[i * w.n()..][..w.n()]);
            }
            col += w.n();
        }
    }

    fn bytes(&self) -> usize {
        self.0.iter().map(QMatrix::bytes).sum()
    }
}

/// A loaded Llama-family model.
#[derive(Debug)]
pub struct Llama {
    cfg: LlamaConfig,
    embed: QMatrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// `None` when tied to `embed`.
    head: Option<QMatrix>,
}

/// Keys per block of the transposed key cache.
const KEY_BLOCK: usize = 8;

/// Per-sequence key/value cache. Values are `positions × kv_dim` per layer; keys are
/// kept per (layer, KV head) transposed in blocks of 8 positions (`[block][dim][8]`), so
/// the scores of 8 keys are 8 independent chains over one contiguous load per dimension.
///
/// A cache holds the blocks `first..first + k.len()` (0-based block indices): all of them
/// for a whole-model forward, a pipeline stage's own for [`crate::llm::stage`].
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    /// `k[layer - first][kv_head]`: blocks of `KEY_BLOCK × head_dim`.
    k: Vec<Vec<Vec<f32>>>,
    v: Vec<Vec<f32>>,
    /// Positions held per layer.
    pos: Vec<usize>,
    /// The first block held.
    first: usize,
    kv_dim: usize,
    head_dim: usize,
}

impl KvCache {
    pub fn new(cfg: &LlamaConfig) -> Self {
        Self::with_capacity(cfg, 0)
    }

    /// An empty cache with room for `positions` positions in every block (no
    /// reallocation while it fills).
    pub fn with_capacity(cfg: &LlamaConfig, positions: usize) -> Self {
        Self::for_blocks(cfg, 0..cfg.n_layer, positions)
    }

    /// An empty cache for the blocks `blocks` only (0-based block indices, clipped to the
    /// model's), with room for `positions` positions in each: a pipeline stage's cache.
    pub fn for_blocks(cfg: &LlamaConfig, blocks: Range<usize>, positions: usize) -> Self {
        let positions = positions.min(cfg.context);
        let first = blocks.start.min(cfg.n_layer);
        let n = blocks.end.min(cfg.n_layer).saturating_sub(first);
        let kblocks = positions.div_ceil(KEY_BLOCK) * KEY_BLOCK * cfg.head_dim;
        KvCache {
            k: (0..n)
                .map(|_| {
                    (0..cfg.n_kv_head)
                        .map(|_| Vec::with_capacity(kblocks))
                        .collect()
                })
                .collect(),
            v: (0..n)
                .map(|_| Vec::with_capacity(positions * cfg.kv_dim()))
                .collect(),
            pos: vec![0; n],
            first,
            kv_dim: cfg.kv_dim(),
            head_dim: cfg.head_dim,
        }
    }

    /// The blocks held (0-based block indices).
    pub fn blocks(&self) -> Range<usize> {
        self.first..self.first + self.pos.len()
    }

    /// Positions cached in block `layer` (0-based block index; 0 for a block not held).
    pub fn len(&self, layer: usize) -> usize {
        layer
            .checked_sub(self.first)
            .and_then(|i| self.pos.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Positions cached (in the first block held).
    pub fn positions(&self) -> usize {
        self.pos.first().copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.positions() == 0
    }

    /// Appends one position's key and value rows (`kv_dim` each) to block `layer`.
    fn push(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        let layer = layer - self.first;
        let (pos, hd) = (self.pos[layer], self.head_dim);
        let (blk, slot) = (pos / KEY_BLOCK, pos % KEY_BLOCK);
        for (h, kh) in self.k[layer].iter_mut().enumerate() {
            if slot == 0 {
                kh.resize((blk + 1) * KEY_BLOCK * hd, 0.0);
            }
            let base = blk * KEY_BLOCK * hd;
            for p in 0..hd {
                kh[base + p * KEY_BLOCK + slot] = k[h * hd + p];
            }
        }
        self.v[layer].extend_from_slice(v);
        self.pos[layer] += 1;
    }

    /// Drops every position from `pos` on (a rollback to an agreed step).
    pub fn truncate(&mut self, pos: usize) {
        let hd = self.head_dim;
        for l in 0..self.pos.len() {
            if pos >= self.pos[l] {
                continue;
            }
            for kh in &mut self.k[l] {
                kh.truncate(pos.div_ceil(KEY_BLOCK) * KEY_BLOCK * hd);
                // Clear the dropped slots of the last block.
                if !pos.is_multiple_of(KEY_BLOCK) {
                    let base = (pos / KEY_BLOCK) * KEY_BLOCK * hd;
                    for p in 0..hd {
                        for slot in pos % KEY_BLOCK..KEY_BLOCK {
                            kh[base + p * KEY_BLOCK + slot] = 0.0;
                        }
                    }
                }
            }
            self.v[l].truncate(pos * self.kv_dim);
            self.pos[l] = pos;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.k
            .iter()
            .flatten()
            .chain(&self.v)
            .map(|x| x.len() * 4)
            .sum()
    }
}

/// One sequence's part of a forward pass: new tokens appended after its cache, cut into
/// steps (`steps` = end offsets within `tokens`, increasing, the last = `tokens.len()`).
/// The head runs on the last row of each step.
pub struct SeqInput<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub steps: &'a [usize],
}

/// What a forward pass returns for one sequence.
#[derive(Clone, Debug, Default)]
pub struct SeqOutput {
    /// `leaves[s][l]`: hash of layer `l`'s output rows for step `s`.
    pub leaves: Vec<Vec<Hash>>,
    /// Logits of each step's last row.
    pub logits: Vec<Vec<f32>>,
    /// `ops[s][l]`: metered operations of layer `l` for step `s`.
    pub ops: Vec<Vec<u64>>,
}

/// Domain tag of a row-block leaf hash.
const LEAF_TAG: &[u8; 8] = b"AGLLMRW1";

/// Leaf hash of layer `layer`'s output rows (`rows × width` f32, row-major).
pub fn rows_hash(layer: usize, rows: &[f32], width: usize) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(LEAF_TAG);
    h.update(&(layer as u32).to_le_bytes());
    h.update(&((rows.len() / width.max(1)) as u32).to_le_bytes());
    h.update(&(width as u32).to_le_bytes());
    // The values' little-endian bytes in order, in one `update` (the same stream as one
    // `update` per value, at blake3's SIMD speed).
    #[cfg(target_endian = "little")]
    {
        // SAFETY: f32 has no padding and every byte pattern is a valid u8; the slice covers
        // exactly the `rows.len()` floats, which are little-endian in memory.
        let bytes =
            unsafe { std::slice::from_raw_parts(rows.as_ptr().cast::<u8>(), 4 * rows.len()) };
        h.update(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    for v in rows {
        h.update(&v.to_le_bytes());
    }
    Hash(*h.finalize().as_bytes())
}

impl Llama {
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        self.embed.bytes()
            + self.head.as_ref().map_or(0, QMatrix::bytes)
            + self.norm.len() * 4
            + self
                .blocks
                .iter()
                .map(|b| {
                    b.qkv.bytes()
                        + b.wo.bytes()
                        + b.gate_up.bytes()
                        + b.down.bytes()
                        + (b.attn_norm.len() + b.ffn_norm.len()) * 4
                })
                .sum::<usize>()
    }

    /// Name of trace layer `i`.
    pub fn layer_name(&self, i: usize) -> String {
        match i {
            0 => "embed".into(),
            i if i <= self.cfg.n_layer => format!("block.{}", i - 1),
            _ => "head".into(),
        }
    }

    /// Loads from a GGUF file (one tensor in memory at a time besides the model).
    pub fn from_gguf<R: Read + Seek>(g: &Gguf, r: &mut R) -> Result<Self, ComputeError> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let (d, qd, kvd, f) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        let mut mat = |name: &str, n: usize, k: usize| gguf_matrix(g, r, name, n, k);
        let embed = mat("token_embd.weight", cfg.vocab, d)?;
        let head = if cfg.tied_embeddings {
            None
        } else {
            Some(mat("output.weight", cfg.vocab, d)?)
        };
        let norm = gguf_vector(g, r, "output_norm.weight", d)?;
        // Grown as tensors are found: a hostile `block_count` cannot size an allocation.
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("blk.{l}.{s}");

            let attn_norm = gguf_vector(g, r, &p("attn_norm.weight"), d)?;
            let ffn_norm = gguf_vector(g, r, &p("ffn_norm.weight"), d)?;
            let qkv_bias = if cfg.qkv_bias {
                let mut b = gguf_vector(g, r, &p("attn_q.bias"), qd)?;
                b.extend(gguf_vector(g, r, &p("attn_k.bias"), kvd)?);
                b.extend(gguf_vector(g, r, &p("attn_v.bias"), kvd)?);
                Some(b)
            } else {
                None
            };
            let wq = gguf_matrix(g, r, &p("attn_q.weight"), qd, d)?;
            let wk = gguf_matrix(g, r, &p("attn_k.weight"), kvd, d)?;
            let wv = gguf_matrix(g, r, &p("attn_v.weight"), kvd, d)?;
            let wo = gguf_matrix(g, r, &p("attn_output.weight"), d, qd)?;
            let wg = gguf_matrix(g, r, &p("ffn_gate.weight"), f, d)?;
            let wu = gguf_matrix(g, r, &p("ffn_up.weight"), f, d)?;
            let down = gguf_matrix(g, r, &p("ffn_down.weight"), d, f)?;
            blocks.push(Block {
                attn_norm,
                qkv: stack(vec![wq, wk, wv]),
                qkv_bias,
                wo,
                ffn_norm,
                gate_up: stack(vec![wg, wu]),
                down,
            });
        }
        Ok(Llama {
            cfg,
            embed,
            blocks,
            norm,
            head,
        })
    }

    /// Loads from a Hugging Face `config.json` and `model.safetensors` (f32, f16, bf16).
    pub fn from_safetensors(
        config: &serde_json::Value,
        bytes: &[u8],
    ) -> Result<Self, ComputeError> {
        let cfg = LlamaConfig::from_hf(config)?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| ComputeError::CorruptCheckpoint(e.to_string()))?;
        let (d, qd, kvd, f) = (cfg.dim, cfg.q_dim(), cfg.kv_dim(), cfg.ffn_dim);
        let raw = |name: &str, shape: &[usize]| -> Result<(WeightType, Vec<u8>), ComputeError> {
            let v = st
                .tensor(name)
                .map_err(|_| ComputeError::MissingTensor { name: name.into() })?;
            if v.shape() != shape {
                return Err(ComputeError::TensorShape {
                    name: name.into(),
                    expected: shape.to_vec(),
                    actual: v.shape().to_vec(),
                });
            }
            let ty = match v.dtype() {
                safetensors::Dtype::F32 => WeightType::F32,
                safetensors::Dtype::F16 => WeightType::F16,
                safetensors::Dtype::BF16 => WeightType::BF16,
                other => {
                    return Err(ComputeError::UnsupportedDtype {
                        name: name.into(),
                        dtype: format!("{other:?}"),
                    })
                }
            };
            Ok((ty, v.data().to_vec()))
        };
        let mat = |name: &str, n: usize, k: usize| -> Result<QMatrix, ComputeError> {
            let (ty, b) = raw(name, &[n, k])?;
            QMatrix::from_file_bytes(name, ty, n, k, &b)
        };
        let vecf = |name: &str, len: usize| -> Result<Vec<f32>, ComputeError> {
            let (ty, b) = raw(name, &[len])?;
            floats(name, Some(ty), &b)
        };
        let embed = mat("model.embed_tokens.weight", cfg.vocab, d)?;
        let head = if cfg.tied_embeddings {
            None
        } else {
            Some(mat("lm_head.weight", cfg.vocab, d)?)
        };
        let norm = vecf("model.norm.weight", d)?;
        // Grown as tensors are found: a hostile `block_count` cannot size an allocation.
        let mut blocks = Vec::new();
        for l in 0..cfg.n_layer {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let qkv_bias = if cfg.qkv_bias {
                let mut b = vecf(&p("self_attn.q_proj.bias"), qd)?;
                b.extend(vecf(&p("self_attn.k_proj.bias"), kvd)?);
                b.extend(vecf(&p("self_attn.v_proj.bias"), kvd)?);
                Some(b)
            } else {
                None
            };
            blocks.push(Block {
                attn_norm: vecf(&p("input_layernorm.weight"), d)?,
                qkv: stack(vec![
                    mat(&p("self_attn.q_proj.weight"), qd, d)?,
                    mat(&p("self_attn.k_proj.weight"), kvd, d)?,
                    mat(&p("self_attn.v_proj.weight"), kvd, d)?,
                ]),
                qkv_bias,
                wo: mat(&p("self_attn.o_proj.weight"), d, qd)?,
                ffn_norm: vecf(&p("post_attention_layernorm.weight"), d)?,
                gate_up: stack(vec![
                    mat(&p("mlp.gate_proj.weight"), f, d)?,
                    mat(&p("mlp.up_proj.weight"), f, d)?,
                ]),
                down: mat(&p("mlp.down_proj.weight"), d, f)?,
            });
        }
        Ok(Llama {
            cfg,
            embed,
            blocks,
            norm,
            head,
        })
    }

    /// Operations of trace layer `layer` for `rows` new rows at positions
    /// `start..start+rows`, with the head applied to `head_rows` rows (op model v1).
    pub fn layer_ops(&self, layer: usize, start: usize, rows: usize, head_rows: usize) -> u64 {
        let c = &self.cfg;
        let u = |x: usize| x as u64;
        if layer == 0 {
            return 0;
        }
        if layer > c.n_layer {
            return u(head_rows) * self.head_row_ops();
        }
        // Keys attended: position p sees p + 1 keys (the KV cache reads).
        let keys: u64 = (start..start + rows).map(|p| u(p) + 1).sum();
        u(rows) * self.block_row_ops() + keys * self.block_key_ops()
    }

    /// Operations of one block per row, attention over the keys excepted (op model v1).
    pub fn block_row_ops(&self) -> u64 {
        let c = &self.cfg;
        let u = |x: usize| x as u64;
        let (d, qd, kvd, f, hd) = (
            u(c.dim),
            u(c.q_dim()),
            u(c.kv_dim()),
            u(c.ffn_dim),
            u(c.head_dim),
        );
        let rms = 4 * d + 4;
        let n_qkv = qd + 2 * kvd;
        rms + 2 * d * n_qkv
            + if c.qkv_bias { n_qkv } else { 0 }
            + u(c.n_head + c.n_kv_head) * (hd / 2) * 6
            + 2 * qd * d
            + d
            + rms
            + 2 * d * 2 * f
            + f * (TRANSCENDENTAL + 3)
            + 2 * f * d
            + d
    }

    /// Operations of one block per attended key of one row (op model v1).
    pub fn block_key_ops(&self) -> u64 {
        let c = &self.cfg;
        c.n_head as u64 * (4 * c.head_dim as u64 + 5 + TRANSCENDENTAL)
    }

    /// Operations of the head per sampled row (op model v1).
    pub fn head_row_ops(&self) -> u64 {
        let c = &self.cfg;
        let d = c.dim as u64;
        4 * d + 4 + 2 * d * c.vocab as u64
    }

    /// One forward pass over a batch of sequences (module docs). Appends to each cache.
    pub fn forward(&self, seqs: &mut [SeqInput<'_>]) -> Result<Vec<SeqOutput>, ComputeError> {
        let c = &self.cfg;
        // Validate everything before touching a cache.
        for s in seqs.iter() {
            if s.tokens.is_empty() {
                return Err(ComputeError::EmptyInput("no tokens".into()));
            }
            let start = s.cache.positions();
            if start + s.tokens.len() > c.context {
                return Err(ComputeError::InputTooLong {
                    len: start + s.tokens.len(),
                    max: c.context,
                });
            }
            if let Some(&id) = s.tokens.iter().find(|&&t| t as usize >= c.vocab) {
                return Err(ComputeError::TokenOutOfRange { id, vocab: c.vocab });
            }
            if s.steps.last() != Some(&s.tokens.len())
                || s.steps.windows(2).any(|w| w[0] >= w[1])
                || s.steps[0] == 0
                || s.cache.first != 0
                || s.cache.pos.len() != c.n_layer
                || (0..c.n_layer).any(|l| s.cache.len(l) != start)
            {
                return Err(ComputeError::BadActivation {
                    layer: 0,
                    detail: "steps must cut the tokens into non-empty parts and the cache must match the model".into(),
                });
            }
        }
        let d = c.dim;
        let spans: Vec<(usize, usize, usize)> = {
            let mut row = 0;
            seqs.iter()
                .map(|s| {
                    let span = (row, s.tokens.len(), s.cache.positions());
                    row += s.tokens.len();
                    span
                })
                .collect()
        };
        let total: usize = spans.iter().map(|s| s.1).sum();
        let positions: Vec<usize> = spans
            .iter()
            .flat_map(|&(_, n, start)| start..start + n)
            .collect();
        let mut out: Vec<SeqOutput> = seqs
            .iter()
            .map(|s| SeqOutput {
                leaves: vec![Vec::with_capacity(c.layers()); s.steps.len()],
                logits: Vec::with_capacity(s.steps.len()),
                ops: vec![Vec::with_capacity(c.layers()); s.steps.len()],
            })
            .collect();
        let steps: Vec<Vec<usize>> = seqs.iter().map(|s| s.steps.to_vec()).collect();
        let record = |out: &mut Vec<SeqOutput>, layer: usize, x: &[f32]| {
            for (si, st) in steps.iter().enumerate() {
                let (row0, _, start) = spans[si];
                let mut from = 0;
                for (k, &to) in st.iter().enumerate() {
                    let rows = &x[(row0 + from) * d..(row0 + to) * d];
                    out[si].leaves[k].push(rows_hash(layer, rows, d));
                    out[si].ops[k].push(self.layer_ops(layer, start + from, to - from, 1));
                    from = to;
                }
            }
        };
        // Layer 0: embedding.
        let mut x = vec![0.0f32; total * d];
        {
            let mut row = 0;
            for s in seqs.iter() {
                for &t in s.tokens {
                    self.embed.row(t as usize, &mut x[row * d..(row + 1) * d]);
                    row += 1;
                }
            }
        }
        record(&mut out, 0, &x);
        let rope = RopeTable::new(c, &positions);
        let mut caches: Vec<&mut KvCache> = seqs.iter_mut().map(|s| &mut *s.cache).collect();
        let mut scratch = BlockScratch::default();
        for l in 0..c.n_layer {
            self.block(
                l,
                &mut x,
                &positions,
                &rope,
                &mut caches,
                &spans,
                &mut scratch,
            );
            record(&mut out, l + 1, &x);
        }
        // Head on the last row of every step.
        let mut last_rows = Vec::new();
        for (si, st) in steps.iter().enumerate() {
            for &to in st {
                let r = spans[si].0 + to - 1;
                last_rows.extend_from_slice(&x[r * d..(r + 1) * d]);
            }
        }
        let logits = self.head_rows(&last_rows);
        let v = c.vocab;
        let mut k = 0;
        for o in out.iter_mut() {
            for step in 0..o.leaves.len() {
                let row = &logits[k * v..(k + 1) * v];
                o.leaves[step].push(rows_hash(c.n_layer + 1, row, v));
                o.ops[step].push(self.layer_ops(c.n_layer + 1, 0, 0, 1));
                o.logits.push(row.to_vec());
                k += 1;
            }
        }
        Ok(out)
    }

    /// Final norm and LM head on `rows` (each `dim` wide).
    pub(crate) fn head_rows(&self, rows: &[f32]) -> Vec<f32> {
        let c = &self.cfg;
        let m = rows.len() / c.dim;
        let mut h = vec![0.0; rows.len()];
        rms_norm(rows, &self.norm, c.rms_eps, &mut h);
        let w = self.head.as_ref().unwrap_or(&self.embed);
        let mut logits = vec![0.0; m * c.vocab];
        quant::matmul(&h, w, &mut logits, m);
        logits
    }

    /// Writes the embedding rows of `tokens` (each `< vocab`) into `x` (`tokens × dim`).
    pub(crate) fn embed_rows(&self, tokens: &[u32], x: &mut [f32]) {
        let d = self.cfg.dim;
        for (r, &t) in tokens.iter().enumerate() {
            self.embed.row(t as usize, &mut x[r * d..(r + 1) * d]);
        }
    }

    /// Decoder block `l` on the stacked rows `x` (in place), appending to the caches
    /// (`caches[i]` holds block `l` and belongs to the rows of `spans[i]`).
    pub(crate) fn block(
        &self,
        l: usize,
        x: &mut [f32],
        positions: &[usize],
        rope: &RopeTable,
        caches: &mut [&mut KvCache],
        spans: &[(usize, usize, usize)],
        scratch: &mut BlockScratch,
    ) {
        let c = &self.cfg;
        let b = &self.blocks[l];
        let (d, qd, kvd, hd) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim);
        let m = positions.len();
        let n_qkv = qd + 2 * kvd;
        let f = c.ffn_dim;
        let BlockScratch {
            h,
            qkv,
            att,
            o,
            gu,
            a,
        } = scratch;
        let (h, qkv, att) = (grow(h, m * d), grow(qkv, m * n_qkv), grow(att, m * qd));
        let (o, gu, a) = (grow(o, m * d), grow(gu, m * 2 * f), grow(a, m * f));
        rms_norm(x, &b.attn_norm, c.rms_eps, h);
        b.qkv.matmul(h, m, qkv);
        if let Some(bias) = &b.qkv_bias {
            for row in qkv.chunks_exact_mut(n_qkv) {
                for (o, &bv) in row.iter_mut().zip(bias) {
                    *o += bv;
                }
            }
        }
        for (r, row) in qkv.chunks_exact_mut(n_qkv).enumerate() {
            let (cos, sin) = rope.at(r);
            for head in row[..qd + kvd].chunks_exact_mut(hd) {
                apply_rope(head, cos, sin, c.rope_layout);
            }
        }
        // Append keys and values, then attend per (row, head).
        for (si, cache) in caches.iter_mut().enumerate() {
            let (row0, n, _) = spans[si];
            for r in row0..row0 + n {
                let row = &qkv[r * n_qkv..(r + 1) * n_qkv];
                cache.push(l, &row[qd..qd + kvd], &row[qd + kvd..]);
            }
        }
        let scale = 1.0 / libm::sqrtf(hd as f32);
        let group = c.n_head / c.n_kv_head;
        // Which sequence each row belongs to.
        let owner: Vec<usize> = spans
            .iter()
            .enumerate()
            .flat_map(|(si, &(_, n, _))| std::iter::repeat_n(si, n))
            .collect();
        let caches: Vec<(&[Vec<f32>], &[f32])> = caches
            .iter()
            .map(|kv| {
                let i = l - kv.first;
                (kv.k[i].as_slice(), kv.v[i].as_slice())
            })
            .collect();
        let work: usize = positions.iter().map(|p| p + 1).sum::<usize>() * qd;
        // One task per (row, KV head): the `group` query heads that share its keys and
        // values (adjacent in `q` and in `att`).
        let one_group = |(i, o): (usize, &mut [f32])| {
            let (r, kvh) = (i / c.n_kv_head, i % c.n_kv_head);
            let (kc, vc) = caches[owner[r]];
            let keys = positions[r] + 1;
            let q = &qkv[r * n_qkv + kvh * group * hd..][..group * hd];
            attend(q, &kc[kvh], vc, keys, kvd, kvh * hd, hd, scale, o);
        };
        if work >= 1 << 16 {
            att.par_chunks_mut(group * hd)
                .enumerate()
                .for_each(one_group);
        } else {
            att.chunks_mut(group * hd).enumerate().for_each(one_group);
        }
        quant::matmul(att, &b.wo, o, m);
        for (xv, ov) in x.iter_mut().zip(&*o) {
            *xv += *ov;
        }
        rms_norm(x, &b.ffn_norm, c.rms_eps, h);
        b.gate_up.matmul(h, m, gu);
        let silu = |(arow, gurow): (&mut [f32], &[f32])| {
            let (g, u) = gurow.split_at(f);
            for (e, &g) in arow.iter_mut().zip(g) {
                *e = -g;
            }
            kernels::expf_inplace(arow);
            for ((e, &g), &u) in arow.iter_mut().zip(g).zip(u) {
                *e = g / (1.0 + *e) * u;
            }
        };
        if m * f >= 1 << 14 {
            a.par_chunks_exact_mut(f)
                .zip(gu.par_chunks_exact(2 * f))
                .for_each(silu);
        } else {
            a.chunks_exact_mut(f)
                .zip(gu.chunks_exact(2 * f))
                .for_each(silu);
        }
        quant::matmul(a, &b.down, o, m);
        for (xv, ov) in x.iter_mut().zip(&*o) {
            *xv += *ov;
        }
    }

    /// The output rows of trace layer `layer` (0 = embedding … `n_layer`) for one
    /// sequence `tokens` from position 0: the inputs a referee needs to re-execute layer
    /// `layer + 1`.
    pub fn hidden_after(&self, tokens: &[u32], layer: usize) -> Result<Vec<f32>, ComputeError> {
        let c = &self.cfg;
        if layer > c.n_layer {
            return Err(ComputeError::LayerOutOfRange {
                layer,
                layers: c.layers(),
            });
        }
        if tokens.is_empty() {
            return Err(ComputeError::EmptyInput("no tokens".into()));
        }
        if tokens.len() > c.context {
            return Err(ComputeError::InputTooLong {
                len: tokens.len(),
                max: c.context,
            });
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(ComputeError::TokenOutOfRange { id, vocab: c.vocab });
        }
        let d = c.dim;
        let n = tokens.len();
        let mut x = vec![0.0f32; n * d];
        self.embed_rows(tokens, &mut x);
        let positions: Vec<usize> = (0..n).collect();
        let rope = RopeTable::new(c, &positions);
        let mut cache = KvCache::new(c);
        let mut scratch = BlockScratch::default();
        for l in 0..layer {
            self.block(
                l,
                &mut x,
                &positions,
                &rope,
                &mut [&mut cache],
                &[(0, n, 0)],
                &mut scratch,
            );
        }
        Ok(x)
    }

    /// Re-executes trace layer `layer` (1..=n_layer, a block) for the rows `rows` of a
    /// prefix, from that layer's input rows for the whole prefix (`inputs`, positions
    /// `0..prefix`): returns the output rows `rows`. This is what a referee runs for one
    /// disputed (step, layer): with batch invariance they equal the provider's bits.
    pub fn reexecute_block(
        &self,
        layer: usize,
        inputs: &[f32],
        rows: Range<usize>,
    ) -> Result<Vec<f32>, ComputeError> {
        let c = &self.cfg;
        let d = c.dim;
        if layer == 0 || layer > c.n_layer {
            return Err(ComputeError::LayerOutOfRange {
                layer,
                layers: c.layers(),
            });
        }
        let prefix = inputs.len() / d;
        if !inputs.len().is_multiple_of(d)
            || prefix == 0
            || rows.end > prefix
            || rows.start >= rows.end
        {
            return Err(ComputeError::BadActivation {
                layer,
                detail: format!(
                    "{} input values for rows {rows:?} of width {d}",
                    inputs.len()
                ),
            });
        }
        if prefix > c.context {
            return Err(ComputeError::InputTooLong {
                len: prefix,
                max: c.context,
            });
        }
        let positions: Vec<usize> = (0..prefix).collect();
        let rope = RopeTable::new(c, &positions);
        let mut cache = KvCache::for_blocks(c, layer - 1..layer, prefix);
        let mut x = inputs.to_vec();
        self.block(
            layer - 1,
            &mut x,
            &positions,
            &rope,
            &mut [&mut cache],
            &[(0, prefix, 0)],
            &mut BlockScratch::default(),
        );
        Ok(x[rows.start * d..rows.end * d].to_vec())
    }
}

/// One product for matrices of one format whose row counts fill whole panels (the
/// same bits as separate products: outputs are independent), else separate products.
fn stack(ms: Vec<QMatrix>) -> Stack {
    let ty = ms[0].weight_type();
    let k = ms[0].k();
    if ms
        .iter()
        .all(|m| m.weight_type() == ty && m.k() == k && m.n() % quant::PANEL == 0)
    {
        Stack(vec![QMatrix::stack_rows(ms)])
    } else {
        Stack(ms)
    }
}

fn gguf_matrix<R: Read + Seek>(
    g: &Gguf,
    r: &mut R,
    name: &str,
    n: usize,
    k: usize,
) -> Result<QMatrix, ComputeError> {
    let (t, bytes) = g.read_tensor(r, name)?;
    check_shape(&t, &[n, k])?;
    let ty = WeightType::from_ggml(t.ty).ok_or_else(|| ComputeError::UnsupportedDtype {
        name: name.into(),
        dtype: t.ty.name(),
    })?;
    QMatrix::from_file_bytes(name, ty, n, k, &bytes)
}

fn gguf_vector<R: Read + Seek>(
    g: &Gguf,
    r: &mut R,
    name: &str,
    len: usize,
) -> Result<Vec<f32>, ComputeError> {
    let (t, bytes) = g.read_tensor(r, name)?;
    check_shape(&t, &[len])?;
    floats(name, WeightType::from_ggml(t.ty), &bytes)
}

fn check_shape(t: &TensorInfo, expected: &[usize]) -> Result<(), ComputeError> {
    if t.shape() != expected {
        return Err(ComputeError::TensorShape {
            name: t.name.clone(),
            expected: expected.to_vec(),
            actual: t.shape(),
        });
    }
    Ok(())
}

/// A float vector (norm weights, biases) from F32/F16/BF16 bytes.
fn floats(name: &str, ty: Option<WeightType>, b: &[u8]) -> Result<Vec<f32>, ComputeError> {
    let pairs = || b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    Ok(match ty {
        Some(WeightType::F32) => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Some(WeightType::F16) => pairs().map(f16_to_f32).collect(),
        Some(WeightType::BF16) => pairs().map(bf16_to_f32).collect(),
        other => {
            return Err(ComputeError::UnsupportedDtype {
                name: name.into(),
                dtype: format!(
                    "{} for a vector (F32, F16, BF16)",
                    other.map_or("?", |t| t.name())
                ),
            })
        }
    })
}

/// cos/sin of every (row, pair).
pub(crate) struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub(crate) fn new(c: &LlamaConfig, positions: &[usize]) -> Self {
        let half = c.head_dim / 2;
        let inv: Vec<f64> = (0..half)
            .map(|i| {
                libm::pow(c.rope_theta as f64, -((2 * i) as f64) / c.head_dim as f64)
                    / c.rope_scale as f64
            })
            .collect();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in &inv {
                let a = p as f64 * f;
                cos.push(libm::cos(a) as f32);
                sin.push(libm::sin(a) as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    fn at(&self, row: usize) -> (&[f32], &[f32]) {
        let h = self.half;
        (
            &self.cos[row * h..(row + 1) * h],
            &self.sin[row * h..(row + 1) * h],
        )
    }
}

fn apply_rope(x: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout) {
    rope_dispatch(x, cos, sin, layout)
}

fma_dispatch!(fn rope_dispatch => rope_with(x: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout));

#[inline(always)]
fn rope_with<F: Fma>(x: &mut [f32], cos: &[f32], sin: &[f32], layout: RopeLayout) {
    let half = cos.len();
    for i in 0..half {
        let (ia, ib) = match layout {
            RopeLayout::Interleaved => (2 * i, 2 * i + 1),
            RopeLayout::Halves => (i, i + half),
        };
        let (a, b) = (x[ia], x[ib]);
        let (c, s) = (cos[i], sin[i]);
        x[ia] = F::fma(a, c, -(b * s));
        x[ib] = F::fma(a, s, b * c);
    }
}

/// `out = rmsnorm(x) · γ`, row by row.
fn rms_norm(x: &[f32], g: &[f32], eps: f32, out: &mut [f32]) {
    rms_dispatch(x, g, eps, out)
}

fma_dispatch!(fn rms_dispatch => rms_with(x: &[f32], g: &[f32], eps: f32, out: &mut [f32]));

#[inline(always)]
fn rms_with<F: Fma>(x: &[f32], g: &[f32], eps: f32, out: &mut [f32]) {
    let d = g.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ss = xr.iter().fold(0.0f32, |s, &v| F::fma(v, v, s));
        let inv = 1.0 / libm::sqrtf(ss / d as f32 + eps);
        for i in 0..d {
            or[i] = (xr[i] * inv) * g[i];
        }
    }
}

/// The query heads of one row that share one KV head (`q` and `out`: `heads × head_dim`,
/// head after head): for each, softmax(q·Kᵀ·scale)·V over `keys` cached positions; `kt`
/// is the KV head's transposed key blocks, `vc` all values (`stride` per position, the
/// head at `off`), `hd` the head dim.
///
/// Each head's arithmetic is the module docs' (and does not depend on the other heads):
/// the score of key `s` is one fma chain over the head dim from +0, times `scale`; the
/// softmax takes the max in key order, `expf(z − max)` (libm's bits), the sum in key
/// order, one division each; `o = fma(p_s, v_s, o)` over the keys in order. Heads are
/// only interleaved so that one load of a key or value serves several chains.
fn attend(
    q: &[f32],
    kt: &[f32],
    vc: &[f32],
    keys: usize,
    stride: usize,
    off: usize,
    hd: usize,
    scale: f32,
    out: &mut [f32],
) {
    let heads = q.len() / hd;
    let padded = keys.div_ceil(KEY_BLOCK) * KEY_BLOCK;
    let mut scores = vec![0.0f32; heads * padded];
    scores_dispatch(q, kt, hd, keys, scale, &mut scores);
    for sc in scores.chunks_exact_mut(padded) {
        let sc = &mut sc[..keys];
        let max = sc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in sc.iter_mut() {
            *v -= max;
        }
        kernels::expf_inplace(sc);
        let sum = sc.iter().fold(0.0f32, |s, &v| s + v);
        for v in sc.iter_mut() {
            *v /= sum;
        }
    }
    values_dispatch(&scores, padded, vc, keys, stride, off, hd, out);
}

/// Heads per pass of the score and value loops (their chains interleaved).
const HEADS_PER_PASS: usize = 4;

/// `scores[h·padded + s] = (Σ_p q_h[p]·k_s[p]) · scale` for every head `h` and key `s`
/// (whole blocks of 8 keys; those past `keys` are never read).
fn scores_dispatch(q: &[f32], kt: &[f32], hd: usize, keys: usize, scale: f32, scores: &mut [f32]) {
    quant::with_lanes(Scores {
        q,
        kt,
        hd,
        keys,
        scale,
        scores,
    })
}

struct Scores<'a> {
    q: &'a [f32],
    kt: &'a [f32],
    hd: usize,
    keys: usize,
    scale: f32,
    scores: &'a mut [f32],
}

impl LaneWork for Scores<'_> {
    #[inline(always)]
    fn run<L: Lanes>(self) {
        let hd = self.hd;
        let heads = self.q.len() / hd;
        let padded = self.scores.len() / heads.max(1);
        let mut h0 = 0;
        while h0 < heads {
            let g = (heads - h0).min(HEADS_PER_PASS);
            let q = &self.q[h0 * hd..];
            let sc = &mut self.scores[h0 * padded..];
            let (kt, keys, scale) = (self.kt, self.keys, self.scale);
            match g {
                4 => score_heads::<L, 4>(q, kt, hd, keys, scale, padded, sc),
                3 => score_heads::<L, 3>(q, kt, hd, keys, scale, padded, sc),
                2 => score_heads::<L, 2>(q, kt, hd, keys, scale, padded, sc),
                _ => score_heads::<L, 1>(q, kt, hd, keys, scale, padded, sc),
            }
            h0 += g;
        }
    }
}

/// The scores of `G` heads, two key blocks at a time: `2·G` chains of 8 lanes (one lane =
/// one key), each over the head dim in order from +0.
#[inline(always)]
fn score_heads<L: Lanes, const G: usize>(
    q: &[f32],
    kt: &[f32],
    hd: usize,
    keys: usize,
    scale: f32,
    padded: usize,
    scores: &mut [f32],
) {
    const KB: usize = KEY_BLOCK;
    let blocks = keys.div_ceil(KB);
    let scale = L::splat(scale);
    let mut b = 0;
    while b < blocks {
        let two = b + 1 < blocks;
        let k0 = &kt[b * KB * hd..][..KB * hd];
        let k1 = if two {
            &kt[(b + 1) * KB * hd..][..KB * hd]
        } else {
            k0
        };
        let mut acc = [[L::zero(); 2]; G];
        for p in 0..hd {
            let x0 = L::load(&k0[p * KB..]);
            let x1 = L::load(&k1[p * KB..]);
            for j in 0..G {
                let qv = L::splat(q[j * hd + p]);
                acc[j][0] = L::fma(qv, x0, acc[j][0]);
                acc[j][1] = L::fma(qv, x1, acc[j][1]);
            }
        }
        for j in 0..G {
            let sc = &mut scores[j * padded + b * KB..];
            L::mul(acc[j][0], scale).store(sc);
            if two {
                L::mul(acc[j][1], scale).store(&mut sc[KB..]);
            }
        }
        b += if two { 2 } else { 1 };
    }
}

/// `out_h = Σ_s p_h[s]·v_s` over the keys in order, one fma per step, for every head.
fn values_dispatch(
    probs: &[f32],
    padded: usize,
    vc: &[f32],
    keys: usize,
    stride: usize,
    off: usize,
    hd: usize,
    out: &mut [f32],
) {
    quant::with_lanes(Values {
        probs,
        padded,
        vc,
        keys,
        stride,
        off,
        hd,
        out,
    })
}

struct Values<'a> {
    probs: &'a [f32],
    padded: usize,
    vc: &'a [f32],
    keys: usize,
    stride: usize,
    off: usize,
    hd: usize,
    out: &'a mut [f32],
}

impl LaneWork for Values<'_> {
    #[inline(always)]
    fn run<L: Lanes>(self) {
        let hd = self.hd;
        let heads = self.out.len() / hd;
        let mut h0 = 0;
        while h0 < heads {
            let g = (heads - h0).min(HEADS_PER_PASS);
            let v = Values {
                probs: &self.probs[h0 * self.padded..],
                out: &mut self.out[h0 * hd..],
                ..self
            };
            match g {
                4 => value_heads::<L, 4>(v),
                3 => value_heads::<L, 3>(v),
                2 => value_heads::<L, 2>(v),
                _ => value_heads::<L, 1>(v),
            }
            h0 += g;
        }
    }
}

/// [`Values`] for its first `G` heads, 16 dimensions at a time (`2·G` chains of 8 lanes,
/// one lane = one output dimension); a last part narrower than 16 in scalar fmas.
#[inline(always)]
fn value_heads<L: Lanes, const G: usize>(v: Values<'_>) {
    const W: usize = 16;
    let Values {
        probs,
        padded,
        vc,
        keys,
        stride,
        off,
        hd,
        out,
    } = v;
    let mut c0 = 0;
    while c0 + W <= hd {
        let mut acc = [[L::zero(); 2]; G];
        for s in 0..keys {
            let row = &vc[s * stride + off + c0..][..W];
            let (v0, v1) = (L::load(row), L::load(&row[8..]));
            for j in 0..G {
                let p = L::splat(probs[j * padded + s]);
                acc[j][0] = L::fma(p, v0, acc[j][0]);
                acc[j][1] = L::fma(p, v1, acc[j][1]);
            }
        }
        for j in 0..G {
            acc[j][0].store(&mut out[j * hd + c0..]);
            acc[j][1].store(&mut out[j * hd + c0 + 8..]);
        }
        c0 += W;
    }
    if c0 < hd {
        for j in 0..G {
            out[j * hd + c0..(j + 1) * hd].fill(0.0);
        }
        for s in 0..keys {
            let row = &vc[s * stride + off + c0..s * stride + off + hd];
            for j in 0..G {
                let p = probs[j * padded + s];
                for (o, &x) in out[j * hd + c0..(j + 1) * hd].iter_mut().zip(row) {
                    *o = kernels::fmadd(p, x, *o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-(row, head) attention as first written, one head at a time in plain scalar
    /// code: the specification [`attend`] must equal bit for bit.
    fn attend_reference(
        q: &[f32],
        kt: &[f32],
        vc: &[f32],
        keys: usize,
        stride: usize,
        off: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        let hd = q.len();
        let mut scores = vec![0.0f32; keys.div_ceil(KEY_BLOCK) * KEY_BLOCK];
        for (b, sc) in scores.chunks_exact_mut(KEY_BLOCK).enumerate() {
            let kb = &kt[b * KEY_BLOCK * hd..][..KEY_BLOCK * hd];
            let mut acc = [0.0f32; KEY_BLOCK];
            for p in 0..hd {
                for j in 0..KEY_BLOCK {
                    acc[j] = kernels::fmadd(q[p], kb[p * KEY_BLOCK + j], acc[j]);
                }
            }
            for j in 0..KEY_BLOCK {
                sc[j] = acc[j] * scale;
            }
        }
        let max = scores[..keys]
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0.0f32;
        for v in scores[..keys].iter_mut() {
            *v = libm::expf(*v - max);
            sum += *v;
        }
        for v in scores[..keys].iter_mut() {
            *v /= sum;
        }
        out.fill(0.0);
        for (s, &p) in scores[..keys].iter().enumerate() {
            let v = &vc[s * stride + off..][..hd];
            for i in 0..hd {
                out[i] = kernels::fmadd(p, v[i], out[i]);
            }
        }
    }

    #[test]
    fn grouped_attention_equals_one_head_at_a_time() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
        };
        // Head dims with and without a part narrower than 16; 1 to 9 heads per KV head
        // (passes of 4 and a remainder); key counts around the blocks of 8 and 16.
        for (hd, kv_heads) in [(64, 3), (16, 2), (24, 1), (40, 2), (2, 1)] {
            for group in [1, 2, 3, 4, 5, 9] {
                for keys in [1usize, 2, 7, 8, 9, 15, 16, 17, 33, 100] {
                    let kvd = kv_heads * hd;
                    let padded = keys.div_ceil(KEY_BLOCK) * KEY_BLOCK;
                    let kt: Vec<f32> = (0..padded * hd).map(|_| next()).collect();
                    let vc: Vec<f32> = (0..keys * kvd).map(|_| next()).collect();
                    let q: Vec<f32> = (0..group * hd).map(|_| next()).collect();
                    let scale = 1.0 / libm::sqrtf(hd as f32);
                    let off = (kv_heads - 1) * hd;
                    for scalar in [false, true] {
                        kernels::set_force_scalar(scalar);
                        let mut got = vec![0.0f32; group * hd];
                        attend(&q, &kt, &vc, keys, kvd, off, hd, scale, &mut got);
                        kernels::set_force_scalar(false);
                        for h in 0..group {
                            let mut want = vec![0.0f32; hd];
                            let qh = &q[h * hd..(h + 1) * hd];
                            attend_reference(qh, &kt, &vc, keys, kvd, off, scale, &mut want);
                            let bits =
                                |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                            assert_eq!(
                                bits(&got[h * hd..(h + 1) * hd]),
                                bits(&want),
                                "hd {hd}, group {group}, keys {keys}, head {h}, scalar {scalar}"
                            );
                        }
                    }
                }
            }
        }
    }
}
