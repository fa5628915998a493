//! A GPT-2-style decoder with deterministic text generation.
//!
//! ```text
//!  ids ─L0─► x = wte[id] + wpe[p]                                   embeddings
//!      ─L1..=Ln─► x = x + c_proj(causal_attn(c_attn(ln_1(x))))      pre-LN decoder block
//!                 x = x + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x))))
//!      ─L(n+1)─► logits = ln_f(x) · wteᵀ                             LM head tied to wte
//! ```
//!
//! Loads GPT-2-format `safetensors` (Hugging Face names `wte.weight`, `wpe.weight`,
//! `h.{i}.ln_1.*`, `h.{i}.attn.c_attn.*` (Conv1D `[in, 3·out]`), `h.{i}.attn.c_proj.*`,
//! `h.{i}.ln_2.*`, `h.{i}.mlp.c_fc.*`, `h.{i}.mlp.c_proj.*`, `ln_f.*`, optionally under
//! `transformer.`), with `config.json` fields `n_layer, n_head, n_embd, vocab_size,
//! n_positions (or n_ctx), layer_norm_epsilon`.
//!
//! # Generation and its trace
//!
//! [`Gpt::generate`] decodes with a KV cache: a prefill over the prompt, then one row per
//! new token. Every kernel computes each output row by the same scalar sequence however
//! many rows a call has, and causal attention is the row-wise
//! [`ops::attention_causal_rows`] in both paths, so the cached decode produces exactly
//! the bits a full forward pass over the transcript would. The committed computation
//! (trace and bill) is therefore that full pass — layers `0..n+2` over
//! `prompt ++ generated[..len-1]` — whose logit rows from `prompt.len()-1` on determine
//! every generated token: a verifier re-runs it (or one of its layers) and re-derives
//! the tokens with [`tokens_from_logits`].
//!
//! # Sampling
//!
//! * Greedy: the first index of the maximum logit.
//! * Seeded: a [`SplitMix64`] stream from the user's `u64` seed, one draw per token.
//!   Candidates are the `top_k` largest scaled logits `z = logit / temperature` (ties to
//!   the lower id), all tokens when `top_k` is `None`. Each candidate gets the integer
//!   weight `w = ⌊exp(z − max z) · 2²⁴⌋` (`exp` from `libm`; the best token has weight
//!   2²⁴, so the total is positive); a draw `r` maps to `⌊r · Σw / 2⁶⁴⌋` and picks the
//!   first candidate, in ascending id order, whose running weight sum exceeds it. Only
//!   integer arithmetic follows the weights, so the choice is identical everywhere.

use rayon::prelude::*;

use super::ops::{self, LayerNorm, Layout, Linear};
use super::{check_hidden, check_tokens, token_lens, RunOutput};
use crate::activation::{Activation, ActivationKind};
use crate::loader::{cfg_f32_or, cfg_usize, Checkpoint};
use crate::metering::{cost, InputShape, OpCounter};
use crate::ComputeError;

/// The decoder's shape (fields of a GPT-2 `config.json`). Shared by inference
/// and by training (`crate::train::gpt`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GptConfig {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub vocab_size: usize,
    pub n_positions: usize,
    pub layer_norm_epsilon: f32,
}

impl GptConfig {
    /// Parses and validates a `config.json` value.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ComputeError> {
        if let Some(act) = v.get("activation_function").and_then(|a| a.as_str()) {
            if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
                return Err(ComputeError::config(format!(
                    "unsupported activation_function `{act}` (GPT-2 uses gelu_new)"
                )));
            }
        }
        let c = GptConfig {
            n_layer: cfg_usize(v, &["n_layer", "num_hidden_layers"])?,
            n_head: cfg_usize(v, &["n_head", "num_attention_heads"])?,
            n_embd: cfg_usize(v, &["n_embd", "hidden_size"])?,
            vocab_size: cfg_usize(v, &["vocab_size"])?,
            n_positions: cfg_usize(v, &["n_positions", "n_ctx", "max_position_embeddings"])?,
            layer_norm_epsilon: cfg_f32_or(v, &["layer_norm_epsilon"], 1e-5)?,
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the shape is usable.
    pub fn validate(&self) -> Result<(), ComputeError> {
        let c = self;
        if [c.n_layer, c.n_head, c.n_embd, c.vocab_size, c.n_positions].contains(&0) {
            return Err(ComputeError::config(format!("zero dimension in {c:?}")));
        }
        if !c.n_embd.is_multiple_of(c.n_head) {
            return Err(ComputeError::config("n_embd not divisible by n_head"));
        }
        if c.layer_norm_epsilon.is_nan() || c.layer_norm_epsilon <= 0.0 {
            return Err(ComputeError::config("layer_norm_epsilon must be > 0"));
        }
        Ok(())
    }

    fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

#[derive(Debug)]
struct DecoderBlock {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// A loaded GPT-2-style decoder.
#[derive(Debug)]
pub struct Gpt {
    config: GptConfig,
    wte: Vec<f32>,
    /// The LM head: `wte` packed as a bias-free `[vocab, d]` linear layer.
    lm_head: Linear,
    wpe: Vec<f32>,
    blocks: Vec<DecoderBlock>,
    ln_f: LayerNorm,
}

const PREFIXES: &[&str] = &["", "transformer."];

/// How to pick each next token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (first index on ties).
    Greedy,
    /// Seeded sampling (module docs, "Sampling").
    Seeded {
        seed: u64,
        temperature: f32,
        top_k: Option<usize>,
    },
}

/// Generation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Maximum number of new tokens.
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Stop after generating this token (e.g. `<|endoftext|>`).
    pub stop_token: Option<u32>,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    StopToken,
    /// The sequence reached `n_positions`.
    ContextFull,
}

/// The result of [`Gpt::generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt: Vec<u32>,
    /// The new tokens.
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    /// The committed computation: the full pass over `prompt ++ tokens[..len-1]`.
    pub run: RunOutput,
}

/// SplitMix64 (Steele, Lea & Flood 2014): the sampling PRNG.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Per-block key/value cache of one sequence.
struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Gpt {
    /// Builds the decoder from a checkpoint, validating every tensor's shape.
    pub fn from_checkpoint(config: GptConfig, ck: &mut Checkpoint) -> Result<Self, ComputeError> {
        config.validate()?;
        let c = &config;
        let d = c.n_embd;
        let mut take = |name: &str, shape: &[usize]| ck.take_prefixed(PREFIXES, name, shape);
        let wte = take("wte.weight", &[c.vocab_size, d])?;
        let wpe = take("wpe.weight", &[c.n_positions, d])?;
        let eps = c.layer_norm_epsilon;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let p = format!("h.{i}.");
            let mut lin = |name: &str, k: usize, n: usize| -> Result<Linear, ComputeError> {
                let w = take(&format!("{p}{name}.weight"), &[k, n])?;
                let b = take(&format!("{p}{name}.bias"), &[n])?;
                Ok(Linear::new(&w, Some(b), k, n, Layout::InOut))
            };
            let c_attn = lin("attn.c_attn", d, 3 * d)?;
            let c_proj = lin("attn.c_proj", d, d)?;
            let c_fc = lin("mlp.c_fc", d, 4 * d)?;
            let mlp_proj = lin("mlp.c_proj", 4 * d, d)?;
            let mut ln = |name: &str| -> Result<LayerNorm, ComputeError> {
                Ok(LayerNorm {
                    gamma: take(&format!("{p}{name}.weight"), &[d])?,
                    beta: take(&format!("{p}{name}.bias"), &[d])?,
                    eps,
                })
            };
            let ln_1 = ln("ln_1")?;
            let ln_2 = ln("ln_2")?;
            blocks.push(DecoderBlock {
                ln_1,
                c_attn,
                c_proj,
                ln_2,
                c_fc,
                mlp_proj,
            });
        }
        let ln_f = LayerNorm {
            gamma: take("ln_f.weight", &[d])?,
            beta: take("ln_f.bias", &[d])?,
            eps,
        };
        let lm_head = Linear::new(&wte, None, d, c.vocab_size, Layout::OutIn);
        Ok(Gpt {
            config,
            wte,
            lm_head,
            wpe,
            blocks,
            ln_f,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// `1 + n_layer + 1`.
    pub fn layers(&self) -> usize {
        self.blocks.len() + 2
    }

    pub fn layer_name(&self, i: usize) -> String {
        match i {
            0 => "embeddings".into(),
            i if i <= self.blocks.len() => format!("block.{}", i - 1),
            i if i == self.blocks.len() + 1 => "ln_f+lm_head".into(),
            i => format!("out-of-range.{i}"),
        }
    }

    pub(crate) fn run_layer(
        &self,
        i: usize,
        input: &Activation,
        ops: &OpCounter,
    ) -> Result<Activation, ComputeError> {
        let c = &self.config;
        if i == 0 {
            check_tokens(input, i, c.vocab_size, c.n_positions)?;
            let d = c.n_embd;
            let mut x = vec![0.0f32; input.rows() * d];
            let mut row = 0;
            for &len in input.seq_lens() {
                for p in 0..len {
                    self.embed_row(input.ids()[row], p, &mut x[row * d..(row + 1) * d]);
                    row += 1;
                }
            }
            ops.add(cost::elementwise(input.rows() * d));
            return Activation::derived(
                ActivationKind::Hidden,
                input.seq_lens().to_vec(),
                input.rows(),
                d,
                x,
            );
        }
        check_hidden(input, i, c.n_embd, c.n_positions)?;
        let rows = input.rows();
        let mut x = input.tensor().data().to_vec();
        if let Some(b) = self.blocks.get(i - 1) {
            let qkv = self.block_pre(b, &x, rows, ops);
            let ctx = self.attend_full(&qkv, input.seq_lens(), ops);
            self.block_post(b, &mut x, &ctx, rows, ops);
            return Activation::derived(
                ActivationKind::Hidden,
                input.seq_lens().to_vec(),
                rows,
                c.n_embd,
                x,
            );
        }
        let logits = self.head(&x, rows, ops);
        Activation::derived(
            ActivationKind::Logits,
            input.seq_lens().to_vec(),
            rows,
            c.vocab_size,
            logits,
        )
    }

    fn embed_row(&self, id: u32, pos: usize, out: &mut [f32]) {
        let d = self.config.n_embd;
        let id = id as usize;
        let w = &self.wte[id * d..(id + 1) * d];
        let p = &self.wpe[pos * d..(pos + 1) * d];
        for e in 0..d {
            out[e] = w[e] + p[e];
        }
    }

    /// `c_attn(ln_1(x))`: `[rows, 3d]` (q | k | v per row).
    fn block_pre(&self, b: &DecoderBlock, x: &[f32], rows: usize, ops: &OpCounter) -> Vec<f32> {
        let a = b.ln_1.apply(x, rows, ops);
        b.c_attn.apply(&a, rows, ops)
    }

    /// `x += c_proj(ctx); x += mlp(ln_2(x))`.
    fn block_post(
        &self,
        b: &DecoderBlock,
        x: &mut [f32],
        ctx: &[f32],
        rows: usize,
        ops: &OpCounter,
    ) {
        let a = b.c_proj.apply(ctx, rows, ops);
        ops::add_inplace(x, &a, ops);
        let m = b.ln_2.apply(x, rows, ops);
        let mut h = b.c_fc.apply(&m, rows, ops);
        ops::gelu_tanh(&mut h, ops);
        let y = b.mlp_proj.apply(&h, rows, ops);
        ops::add_inplace(x, &y, ops);
    }

    /// Splits `[rows, 3d]` into separate q, k, v `[rows, d]`.
    fn split_qkv(&self, qkv: &[f32], rows: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = self.config.n_embd;
        let mut q = Vec::with_capacity(rows * d);
        let mut k = Vec::with_capacity(rows * d);
        let mut v = Vec::with_capacity(rows * d);
        for r in qkv.chunks_exact(3 * d) {
            q.extend_from_slice(&r[..d]);
            k.extend_from_slice(&r[d..2 * d]);
            v.extend_from_slice(&r[2 * d..]);
        }
        (q, k, v)
    }

    /// Causal attention of every sequence of the batch (parallel across sequences).
    fn attend_full(&self, qkv: &[f32], seq_lens: &[usize], ops: &OpCounter) -> Vec<f32> {
        let c = &self.config;
        let d = c.n_embd;
        let rows: usize = seq_lens.iter().sum();
        let (q, k, v) = self.split_qkv(qkv, rows);
        let mut ctx = vec![0.0f32; rows * d];
        let mut chunks = Vec::with_capacity(seq_lens.len());
        let mut rest = ctx.as_mut_slice();
        let mut start = 0;
        for &len in seq_lens {
            let (head, tail) = rest.split_at_mut(len * d);
            chunks.push((start, len, head));
            rest = tail;
            start += len;
        }
        chunks.into_par_iter().for_each(|(start, len, out)| {
            let r = start * d..(start + len) * d;
            ops::attention_causal_rows(
                &q[r.clone()],
                &k[r.clone()],
                &v[r],
                out,
                0,
                len,
                c.n_head,
                c.head_dim(),
                ops,
            );
        });
        ctx
    }

    /// `ln_f(x) · wteᵀ` for `rows` rows.
    fn head(&self, x: &[f32], rows: usize, ops: &OpCounter) -> Vec<f32> {
        let h = self.ln_f.apply(x, rows, ops);
        self.lm_head.apply(&h, rows, ops)
    }

    /// Operations per layer for a batch of sequences of these lengths.
    pub(crate) fn meter(&self, shape: &InputShape) -> Result<Vec<u64>, ComputeError> {
        let c = &self.config;
        let lens = token_lens(shape, c.n_positions)?;
        let d = c.n_embd;
        let t: usize = lens.iter().sum();
        let mut per_layer = Vec::with_capacity(self.layers());
        per_layer.push(cost::elementwise(t * d));
        let attn: u64 = lens
            .iter()
            .map(|&l| cost::attention(cost::attention_pairs(l, true), c.n_head, c.head_dim()))
            .sum();
        let block = cost::layer_norm(t, d)
            + cost::linear(t, d, 3 * d, true)
            + attn
            + cost::linear(t, d, d, true)
            + cost::elementwise(t * d)
            + cost::layer_norm(t, d)
            + cost::linear(t, d, 4 * d, true)
            + cost::gelu_tanh(t * 4 * d)
            + cost::linear(t, 4 * d, d, true)
            + cost::elementwise(t * d);
        per_layer.extend(std::iter::repeat_n(block, c.n_layer));
        per_layer.push(cost::layer_norm(t, d) + cost::linear(t, d, c.vocab_size, false));
        Ok(per_layer)
    }

    /// Runs `rows` new tokens at positions `first_pos..` through every block, appending
    /// their keys/values to `cache`; returns the final hidden states `[rows, d]`.
    fn forward_cached(
        &self,
        ids: &[u32],
        first_pos: usize,
        cache: &mut KvCache,
        ops: &OpCounter,
    ) -> Vec<f32> {
        let c = &self.config;
        let d = c.n_embd;
        let rows = ids.len();
        let mut x = vec![0.0f32; rows * d];
        for (r, &id) in ids.iter().enumerate() {
            self.embed_row(id, first_pos + r, &mut x[r * d..(r + 1) * d]);
        }
        ops.add(cost::elementwise(rows * d));
        for (l, b) in self.blocks.iter().enumerate() {
            let qkv = self.block_pre(b, &x, rows, ops);
            let (q, k, v) = self.split_qkv(&qkv, rows);
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            let mut ctx = vec![0.0f32; rows * d];
            ops::attention_causal_rows(
                &q,
                &cache.k[l],
                &cache.v[l],
                &mut ctx,
                first_pos,
                rows,
                c.n_head,
                c.head_dim(),
                ops,
            );
            self.block_post(b, &mut x, &ctx, rows, ops);
        }
        x
    }

    /// Generates up to `cfg.max_tokens` tokens after `prompt` (module docs).
    pub fn generate(
        &self,
        prompt: &[u32],
        cfg: &GenerateConfig,
    ) -> Result<Generation, ComputeError> {
        let c = &self.config;
        let input = Activation::tokens(&[prompt.to_vec()])?;
        check_tokens(&input, 0, c.vocab_size, c.n_positions)?;
        if let Sampling::Seeded {
            temperature, top_k, ..
        } = cfg.sampling
        {
            if temperature.is_nan() || temperature <= 0.0 || !temperature.is_finite() {
                return Err(ComputeError::config(
                    "temperature must be a positive finite number",
                ));
            }
            if top_k == Some(0) {
                return Err(ComputeError::config("top_k must be at least 1"));
            }
        }
        let ops = OpCounter::new();
        let mut cache = KvCache {
            k: vec![Vec::with_capacity(c.n_positions * c.n_embd); c.n_layer],
            v: vec![Vec::with_capacity(c.n_positions * c.n_embd); c.n_layer],
        };
        let mut sampler = Sampler::new(cfg.sampling);
        let mut tokens = Vec::new();
        let mut stop = StopReason::MaxTokens;
        if cfg.max_tokens > 0 {
            let h = self.forward_cached(prompt, 0, &mut cache, &ops);
            let d = c.n_embd;
            let mut last = h[(prompt.len() - 1) * d..].to_vec();
            loop {
                let logits = self.head(&last, 1, &ops);
                let tok = sampler.pick(&logits);
                tokens.push(tok);
                if Some(tok) == cfg.stop_token {
                    stop = StopReason::StopToken;
                    break;
                }
                if tokens.len() >= cfg.max_tokens {
                    break;
                }
                let pos = prompt.len() + tokens.len() - 1;
                if pos + 1 > c.n_positions {
                    stop = StopReason::ContextFull;
                    break;
                }
                last = self.forward_cached(&[tok], pos, &mut cache, &ops);
            }
        }
        let mut transcript = prompt.to_vec();
        transcript.extend_from_slice(&tokens[..tokens.len().saturating_sub(1)]);
        let run = super::run_with(
            0..self.layers(),
            Activation::tokens(&[transcript])?,
            |i, a, o| self.run_layer(i, a, o),
        )?;
        Ok(Generation {
            prompt: prompt.to_vec(),
            tokens,
            stop,
            run,
        })
    }
}

/// The token chooser of [`Sampling`].
struct Sampler {
    sampling: Sampling,
    rng: SplitMix64,
}

impl Sampler {
    fn new(sampling: Sampling) -> Self {
        let seed = match sampling {
            Sampling::Seeded { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Sampler {
            sampling,
            rng: SplitMix64::new(seed),
        }
    }

    fn pick(&mut self, logits: &[f32]) -> u32 {
        match self.sampling {
            Sampling::Greedy => argmax_first(logits),
            Sampling::Seeded {
                temperature, top_k, ..
            } => {
                let z: Vec<f32> = logits.iter().map(|&l| l / temperature).collect();
                let mut cand: Vec<u32> = (0..z.len() as u32).collect();
                if let Some(k) = top_k {
                    if k < cand.len() {
                        cand.sort_by(|&a, &b| {
                            z[b as usize].total_cmp(&z[a as usize]).then(a.cmp(&b))
                        });
                        cand.truncate(k);
                        cand.sort_unstable();
                    }
                }
                let max = cand
                    .iter()
                    .map(|&i| z[i as usize])
                    .fold(f32::NEG_INFINITY, f32::max);
                let weights: Vec<u64> = cand
                    .iter()
                    .map(|&i| {
                        let e = libm::expf(z[i as usize] - max);
                        // `as` saturates: NaN → 0, and e ≤ 1 keeps the product ≤ 2²⁴.
                        (e * 16_777_216.0) as u64
                    })
                    .collect();
                let total: u64 = weights.iter().sum();
                let r = self.rng.next_u64();
                if total == 0 {
                    return argmax_first(logits);
                }
                let target = ((r as u128 * total as u128) >> 64) as u64;
                let mut acc = 0u64;
                for (&i, &w) in cand.iter().zip(&weights) {
                    acc += w;
                    if acc > target {
                        return i;
                    }
                }
                cand.last().copied().unwrap_or(0)
            }
        }
    }
}

/// First index of the maximum (NaN never wins).
fn argmax_first(x: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// Re-derives generated tokens from the logits of the committed full pass (a
/// verifier's check of a [`Generation`]): the logit rows from `prompt_len - 1` on,
/// fed to the same sampler.
pub fn tokens_from_logits(
    logits: &Activation,
    prompt_len: usize,
    sampling: Sampling,
) -> Result<Vec<u32>, ComputeError> {
    if logits.kind() != ActivationKind::Logits || prompt_len == 0 || prompt_len > logits.rows() {
        return Err(ComputeError::BadActivation {
            layer: 0,
            detail: "expected the logits of a pass over at least the prompt".into(),
        });
    }
    let v = logits.width();
    let mut sampler = Sampler::new(sampling);
    Ok((prompt_len - 1..logits.rows())
        .map(|r| sampler.pick(&logits.tensor().data()[r * v..(r + 1) * v]))
        .collect())
}
