//! Training a GPT-2-architecture decoder.
//!
//! ```text
//! tokens ─► wte[tok] + wpe[pos] = x
//!   for each block:  x = x + c_proj(attn(c_attn(ln_1(x))))       causal, n_head heads
//!                    x = x + mlp.c_proj(gelu_tanh(c_fc(ln_2(x))))
//! ln_f(x) · wteᵀ = logits ─► cross-entropy(next token)           (LM head tied to wte)
//! ```
//!
//! Linear layers use GPT-2's Conv1D layout (`y = x·W + b`, `W [in × out]`), and
//! the tensors carry Hugging Face GPT-2 names, so a checkpoint written by
//! [`GptParams::to_safetensors`] loads in any GPT-2 loader.
//!
//! The backward pass runs the forward's caches in reverse. Two places sum
//! gradients from more than one use, each in a fixed order: the residual stream
//! (`dx ← dx + LN-backward(...)`, the skip path first), and `wte`, which gets
//! the LM head's `dlogitsᵀ·ln_f(x)` first and then each row's embedding
//! gradient in row order (`b·seq + t` increasing).

use std::collections::HashMap;

use super::ops::{self, AttnShape, LayerNormCache};
use super::params::{Param, ParamSet};
use super::real::Real;
use super::rng::SplitMix64;
use super::{TrainError, Trainable};

pub use crate::models::GptConfig;

/// The model's shape rules ([`GptConfig::validate`]) as a training error.
fn validate(config: &GptConfig) -> Result<(), TrainError> {
    config.validate().map_err(|e| match e {
        crate::ComputeError::InvalidConfig(detail) => TrainError::BadConfig(detail),
        other => TrainError::BadConfig(other.to_string()),
    })
}

/// Training-side views of the shape.
impl GptConfig {
    /// The canonical tensor names and shapes, in trace order.
    pub fn tensor_layout(&self) -> Vec<(String, Vec<usize>)> {
        let (d, v, p) = (self.n_embd, self.vocab_size, self.n_positions);
        let mut out = vec![
            ("wte.weight".to_string(), vec![v, d]),
            ("wpe.weight".to_string(), vec![p, d]),
        ];
        for i in 0..self.n_layer {
            let h = |s: &str| format!("h.{i}.{s}");
            out.push((h("ln_1.weight"), vec![d]));
            out.push((h("ln_1.bias"), vec![d]));
            out.push((h("attn.c_attn.weight"), vec![d, 3 * d]));
            out.push((h("attn.c_attn.bias"), vec![3 * d]));
            out.push((h("attn.c_proj.weight"), vec![d, d]));
            out.push((h("attn.c_proj.bias"), vec![d]));
            out.push((h("ln_2.weight"), vec![d]));
            out.push((h("ln_2.bias"), vec![d]));
            out.push((h("mlp.c_fc.weight"), vec![d, 4 * d]));
            out.push((h("mlp.c_fc.bias"), vec![4 * d]));
            out.push((h("mlp.c_proj.weight"), vec![4 * d, d]));
            out.push((h("mlp.c_proj.bias"), vec![d]));
        }
        out.push(("ln_f.weight".to_string(), vec![d]));
        out.push(("ln_f.bias".to_string(), vec![d]));
        out
    }
}

/// Index of the tensors of block `i` (add one of the `B_*` offsets).
fn block(i: usize) -> usize {
    2 + PER_BLOCK * i
}
const PER_BLOCK: usize = 12;
const WTE: usize = 0;
const WPE: usize = 1;
const B_LN1_W: usize = 0;
const B_LN1_B: usize = 1;
const B_ATTN_W: usize = 2;
const B_ATTN_B: usize = 3;
const B_APROJ_W: usize = 4;
const B_APROJ_B: usize = 5;
const B_LN2_W: usize = 6;
const B_LN2_B: usize = 7;
const B_FC_W: usize = 8;
const B_FC_B: usize = 9;
const B_MPROJ_W: usize = 10;
const B_MPROJ_B: usize = 11;

/// Sequences for next-token training: `batch` rows of `seq + 1` token ids;
/// row `b` predicts `tokens[b][t+1]` from `tokens[b][..=t]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBatch {
    /// Sequences.
    pub batch: usize,
    /// Predicted positions per sequence.
    pub seq: usize,
    /// `batch × (seq + 1)` ids, row-major.
    pub tokens: Vec<u32>,
}

impl TokenBatch {
    pub(crate) fn input(&self, b: usize, t: usize) -> u32 {
        self.tokens[b * (self.seq + 1) + t]
    }
    fn target(&self, b: usize, t: usize) -> u32 {
        self.tokens[b * (self.seq + 1) + t + 1]
    }
}

/// GPT parameters and shape.
#[derive(Clone, Debug, PartialEq)]
pub struct GptParams<T> {
    /// Shape.
    pub config: GptConfig,
    /// Tensors in [`GptConfig::tensor_layout`] order.
    pub params: ParamSet<T>,
}

/// What block `l`'s backward needs from its forward: the saved activations of one
/// transformer block (a step's carry holds these between the forward and backward
/// units, [`super::units`]). Sizes with `n = batch·seq` rows, width `d`:
/// `ln1, ln2` (`xhat [n×d]`, `rstd [n]`), `ln1_out, att, ln2_out [n×d]`,
/// `qkv [n×3d]`, `probs [batch×heads×seq×seq]`, `fc_pre, fc_act [n×4d]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LayerCache<T> {
    pub(crate) ln1: LayerNormCache<T>,
    pub(crate) ln1_out: Vec<T>,
    pub(crate) qkv: Vec<T>,
    pub(crate) probs: Vec<T>,
    pub(crate) att: Vec<T>,
    pub(crate) ln2: LayerNormCache<T>,
    pub(crate) ln2_out: Vec<T>,
    pub(crate) fc_pre: Vec<T>,
    pub(crate) fc_act: Vec<T>,
}

/// The head's forward: `ln_f` (its cache and output) and the logits.
pub(crate) struct HeadForward<T> {
    pub(crate) lnf: LayerNormCache<T>,
    pub(crate) lnf_out: Vec<T>,
    pub(crate) logits: Vec<T>,
}

/// Two distinct mutable gradient buffers (`i < j`).
fn pair<T>(g: &mut [Vec<T>], i: usize, j: usize) -> (&mut Vec<T>, &mut Vec<T>) {
    let (a, b) = g.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

impl<T: Real> GptParams<T> {
    /// GPT-2 initialization from `seed`: weights `N(0, 0.02)`, `wpe N(0, 0.01)`,
    /// residual projections scaled by `1/√(2·n_layer)`, biases 0, LN γ=1 β=0.
    /// Normals are drawn in canonical tensor order from one SplitMix64 stream.
    pub fn init(config: GptConfig, seed: u64) -> Result<Self, TrainError> {
        validate(&config)?;
        let mut rng = SplitMix64::new(seed);
        let resid = 0.02 / libm::sqrt(2.0 * config.n_layer as f64);
        let tensors = config
            .tensor_layout()
            .into_iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let std = if name == "wpe.weight" {
                    0.01
                } else if name.ends_with("c_proj.weight") {
                    resid
                } else if name == "wte.weight" || (name.ends_with(".weight") && shape.len() == 2) {
                    0.02
                } else {
                    0.0
                };
                let data = if std > 0.0 {
                    (0..n).map(|_| T::from_f64(rng.normal() * std)).collect()
                } else if name.contains("ln_") && name.ends_with(".weight") {
                    vec![T::ONE; n]
                } else {
                    vec![T::ZERO; n]
                };
                Param { name, shape, data }
            })
            .collect();
        Ok(Self {
            config,
            params: ParamSet { tensors },
        })
    }

    fn t(&self, i: usize) -> &[T] {
        &self.params.tensors[i].data
    }

    pub(crate) fn check(&self, b: &TokenBatch) -> Result<(), TrainError> {
        if b.batch == 0 || b.seq == 0 || b.tokens.len() != b.batch * (b.seq + 1) {
            return Err(TrainError::BadBatch(format!(
                "batch={} seq={} tokens={} (need batch·(seq+1))",
                b.batch,
                b.seq,
                b.tokens.len()
            )));
        }
        if b.seq > self.config.n_positions {
            return Err(TrainError::SequenceTooLong {
                seq: b.seq,
                max: self.config.n_positions,
            });
        }
        check_ids(&b.tokens, self.config.vocab_size)
    }

    pub(crate) fn attn_shape(&self, batch: usize, seq: usize) -> AttnShape {
        let c = &self.config;
        AttnShape {
            batch,
            seq,
            heads: c.n_head,
            head_dim: c.n_embd / c.n_head,
        }
    }

    /// The embedding unit: `x = wte[input(b, t)] + wpe[t]`, rows `b·seq + t`.
    pub(crate) fn embed_forward(
        &self,
        batch: usize,
        seq: usize,
        input: impl Fn(usize, usize) -> u32,
    ) -> Vec<T> {
        let d = self.config.n_embd;
        let (wte, wpe) = (self.t(WTE), self.t(WPE));
        let mut x = vec![T::ZERO; batch * seq * d];
        for b in 0..batch {
            for t in 0..seq {
                let tok = input(b, t) as usize;
                let row = &mut x[(b * seq + t) * d..(b * seq + t + 1) * d];
                for j in 0..d {
                    row[j] = wte[tok * d + j] + wpe[t * d + j];
                }
            }
        }
        x
    }

    /// Block `l`'s forward on the residual stream `x` (updated in place); returns
    /// what its backward needs.
    pub(crate) fn block_forward(&self, l: usize, x: &mut [T], shape: AttnShape) -> LayerCache<T> {
        let c = self.config;
        let (d, n) = (c.n_embd, shape.batch * shape.seq);
        let eps = T::from_f64(f64::from(c.layer_norm_epsilon));
        let o = block(l);
        let (ln1_out, ln1) =
            ops::layer_norm_forward(x, self.t(o + B_LN1_W), self.t(o + B_LN1_B), n, d, eps);
        let qkv = ops::linear_forward(
            &ln1_out,
            self.t(o + B_ATTN_W),
            self.t(o + B_ATTN_B),
            n,
            d,
            3 * d,
        );
        let (att, probs) = ops::attention_forward(&qkv, shape);
        let proj = ops::linear_forward(&att, self.t(o + B_APROJ_W), self.t(o + B_APROJ_B), n, d, d);
        for (a, &p) in x.iter_mut().zip(&proj) {
            *a += p;
        }
        let (ln2_out, ln2) =
            ops::layer_norm_forward(x, self.t(o + B_LN2_W), self.t(o + B_LN2_B), n, d, eps);
        let fc_pre = ops::linear_forward(
            &ln2_out,
            self.t(o + B_FC_W),
            self.t(o + B_FC_B),
            n,
            d,
            4 * d,
        );
        let fc_act = ops::gelu_tanh_forward(&fc_pre);
        let mlp = ops::linear_forward(
            &fc_act,
            self.t(o + B_MPROJ_W),
            self.t(o + B_MPROJ_B),
            n,
            4 * d,
            d,
        );
        for (a, &p) in x.iter_mut().zip(&mlp) {
            *a += p;
        }
        LayerCache {
            ln1,
            ln1_out,
            qkv,
            probs,
            att,
            ln2,
            ln2_out,
            fc_pre,
            fc_act,
        }
    }

    /// The head's forward on the final residual stream `x` (`n` rows):
    /// `ln_f(x) · wteᵀ`.
    pub(crate) fn head_forward(&self, x: &[T], n: usize) -> HeadForward<T> {
        let c = self.config;
        let (d, v) = (c.n_embd, c.vocab_size);
        let eps = T::from_f64(f64::from(c.layer_norm_epsilon));
        let lf = block(c.n_layer);
        let (lnf_out, lnf) = ops::layer_norm_forward(x, self.t(lf), self.t(lf + 1), n, d, eps);
        let wte_t = ops::transpose(self.t(WTE), v, d);
        let mut logits = vec![T::ZERO; n * v];
        ops::matmul(&lnf_out, &wte_t, &mut logits, n, d, v);
        HeadForward {
            lnf,
            lnf_out,
            logits,
        }
    }

    /// Forward over `batch` sequences of `seq` inputs given by `input(b, t)`.
    fn forward(
        &self,
        batch: usize,
        seq: usize,
        input: impl Fn(usize, usize) -> u32,
    ) -> (Vec<LayerCache<T>>, HeadForward<T>) {
        let mut x = self.embed_forward(batch, seq, input);
        let shape = self.attn_shape(batch, seq);
        let layers = (0..self.config.n_layer)
            .map(|l| self.block_forward(l, &mut x, shape))
            .collect();
        (layers, self.head_forward(&x, batch * seq))
    }

    /// The head's backward (tied LM head, then `ln_f`): writes `g[wte]` (the head's
    /// part, `dlogitsᵀ·ln_f(x)`) and `g[ln_f.*]`; returns the residual gradient.
    pub(crate) fn head_backward(
        &self,
        dlogits: &[T],
        lnf_out: &[T],
        lnf: &LayerNormCache<T>,
        n: usize,
        g: &mut [Vec<T>],
    ) -> Vec<T> {
        let c = self.config;
        let (d, v) = (c.n_embd, c.vocab_size);
        // Tied head: logits = lnf_out · wteᵀ.
        let mut dh = vec![T::ZERO; n * d];
        ops::matmul(dlogits, self.t(WTE), &mut dh, n, v, d);
        let dlogits_t = ops::transpose(dlogits, n, v);
        ops::matmul(&dlogits_t, lnf_out, &mut g[WTE], v, n, d);
        let lf = block(c.n_layer);
        let mut dx = vec![T::ZERO; n * d];
        let (gw, gb) = pair(g, lf, lf + 1);
        ops::layer_norm_backward(&dh, lnf, self.t(lf), gw, gb, &mut dx, n, d);
        dx
    }

    /// Block `l`'s backward from its saved forward `lc`: writes the block's twelve
    /// gradients and updates the residual gradient `dx` in place.
    pub(crate) fn block_backward(
        &self,
        l: usize,
        lc: &LayerCache<T>,
        dx: &mut [T],
        g: &mut [Vec<T>],
        shape: AttnShape,
    ) {
        let (d, n) = (self.config.n_embd, shape.batch * shape.seq);
        let o = block(l);
        // MLP branch.
        let d_act = {
            let (gw, gb) = pair(g, o + B_MPROJ_W, o + B_MPROJ_B);
            ops::linear_backward(
                &lc.fc_act,
                self.t(o + B_MPROJ_W),
                dx,
                gw,
                gb,
                n,
                4 * d,
                d,
                true,
            )
        };
        let d_pre = ops::gelu_tanh_backward(&lc.fc_pre, &d_act.unwrap_or_default());
        let d_ln2 = {
            let (gw, gb) = pair(g, o + B_FC_W, o + B_FC_B);
            ops::linear_backward(
                &lc.ln2_out,
                self.t(o + B_FC_W),
                &d_pre,
                gw,
                gb,
                n,
                d,
                4 * d,
                true,
            )
        };
        {
            let (gw, gb) = pair(g, o + B_LN2_W, o + B_LN2_B);
            let d_ln2 = d_ln2.unwrap_or_default();
            ops::layer_norm_backward(&d_ln2, &lc.ln2, self.t(o + B_LN2_W), gw, gb, dx, n, d);
        }
        // Attention branch.
        let d_att = {
            let (gw, gb) = pair(g, o + B_APROJ_W, o + B_APROJ_B);
            ops::linear_backward(&lc.att, self.t(o + B_APROJ_W), dx, gw, gb, n, d, d, true)
        };
        let d_qkv = ops::attention_backward(&lc.qkv, &lc.probs, &d_att.unwrap_or_default(), shape);
        let d_ln1 = {
            let (gw, gb) = pair(g, o + B_ATTN_W, o + B_ATTN_B);
            ops::linear_backward(
                &lc.ln1_out,
                self.t(o + B_ATTN_W),
                &d_qkv,
                gw,
                gb,
                n,
                d,
                3 * d,
                true,
            )
        };
        let (gw, gb) = pair(g, o + B_LN1_W, o + B_LN1_B);
        let d_ln1 = d_ln1.unwrap_or_default();
        ops::layer_norm_backward(&d_ln1, &lc.ln1, self.t(o + B_LN1_W), gw, gb, dx, n, d);
    }

    /// The embeddings' backward: adds each row's residual gradient into `g[wte]`
    /// (after the head's part) and `g[wpe]`, rows in order (`b·seq + t` increasing).
    pub(crate) fn embed_backward(&self, b: &TokenBatch, dx: &[T], g: &mut [Vec<T>]) {
        let d = self.config.n_embd;
        let (gte, gpe) = pair(g, WTE, WPE);
        for bb in 0..b.batch {
            for t in 0..b.seq {
                let r = bb * b.seq + t;
                let tok = b.input(bb, t) as usize;
                let src = &dx[r * d..(r + 1) * d];
                for (a, &s) in gte[tok * d..(tok + 1) * d].iter_mut().zip(src) {
                    *a += s;
                }
                for (a, &s) in gpe[t * d..(t + 1) * d].iter_mut().zip(src) {
                    *a += s;
                }
            }
        }
    }

    /// Next-token logits `[tokens.len() × vocab]` for one sequence.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<T>, TrainError> {
        if tokens.is_empty() {
            return Err(TrainError::BadBatch("empty sequence".into()));
        }
        if tokens.len() > self.config.n_positions {
            return Err(TrainError::SequenceTooLong {
                seq: tokens.len(),
                max: self.config.n_positions,
            });
        }
        check_ids(tokens, self.config.vocab_size)?;
        Ok(self.forward(1, tokens.len(), |_, t| tokens[t]).1.logits)
    }
}

fn check_ids(ids: &[u32], limit: usize) -> Result<(), TrainError> {
    match ids.iter().find(|&&id| id as usize >= limit) {
        Some(&id) => Err(TrainError::IdOutOfRange { id, limit }),
        None => Ok(()),
    }
}

impl<T: Real> Trainable<T> for GptParams<T> {
    type Batch = TokenBatch;

    fn params(&self) -> &ParamSet<T> {
        &self.params
    }

    fn params_mut(&mut self) -> &mut ParamSet<T> {
        &mut self.params
    }

    fn loss(&self, b: &TokenBatch) -> Result<T, TrainError> {
        self.check(b)?;
        let (_, head) = self.forward(b.batch, b.seq, |bb, t| b.input(bb, t));
        let targets = targets(b);
        Ok(ops::cross_entropy(
            &head.logits,
            &targets,
            b.batch * b.seq,
            self.config.vocab_size,
        )
        .0)
    }

    /// The units of [`super::units`] in order, in one call: the same functions, so
    /// a step cut into units gives these bits by construction.
    fn loss_and_grads(&self, b: &TokenBatch) -> Result<(T, Vec<Vec<T>>), TrainError> {
        self.check(b)?;
        let n = b.batch * b.seq;
        let (layers, head) = self.forward(b.batch, b.seq, |bb, t| b.input(bb, t));
        let (loss, dlogits) =
            ops::cross_entropy(&head.logits, &targets(b), n, self.config.vocab_size);
        let mut g = self.params.zeros_like();
        let mut dx = self.head_backward(&dlogits, &head.lnf_out, &head.lnf, n, &mut g);
        let shape = self.attn_shape(b.batch, b.seq);
        for (l, lc) in layers.iter().enumerate().rev() {
            self.block_backward(l, lc, &mut dx, &mut g, shape);
        }
        self.embed_backward(b, &dx, &mut g);
        Ok((loss, g))
    }

    fn batch_bytes(b: &TokenBatch) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * b.tokens.len());
        out.extend_from_slice(&(b.batch as u64).to_le_bytes());
        out.extend_from_slice(&(b.seq as u64).to_le_bytes());
        for t in &b.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }
}

pub(crate) fn targets(b: &TokenBatch) -> Vec<u32> {
    let mut out = Vec::with_capacity(b.batch * b.seq);
    for bb in 0..b.batch {
        for t in 0..b.seq {
            out.push(b.target(bb, t));
        }
    }
    out
}

impl GptParams<f32> {
    /// The parameters as a Hugging Face GPT-2 `model.safetensors` (F32,
    /// little-endian; the `safetensors` crate orders the header canonically, so
    /// equal parameters give equal bytes).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, TrainError> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .params
            .tensors
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone(), p.le_bytes()))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (name, shape, data) in &bytes {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
            views.push((name.clone(), view));
        }
        safetensors::serialize(views, None).map_err(|e| TrainError::Checkpoint(e.to_string()))
    }

    /// Loads parameters written by [`GptParams::to_safetensors`] (or any GPT-2
    /// checkpoint of this shape with F32 tensors). Every tensor is checked
    /// against the config's layout; extra tensors are ignored.
    pub fn from_safetensors(config: GptConfig, bytes: &[u8]) -> Result<Self, TrainError> {
        validate(&config)?;
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let mut by_name: HashMap<String, safetensors::tensor::TensorView<'_>> =
            st.tensors().into_iter().collect();
        let mut tensors = Vec::new();
        for (name, shape) in config.tensor_layout() {
            let view = by_name
                .remove(&name)
                .ok_or_else(|| TrainError::Checkpoint(format!("missing tensor {name}")))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape() != shape.as_slice() {
                return Err(TrainError::Checkpoint(format!(
                    "{name}: {:?} {:?}, expected F32 {shape:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push(Param { name, shape, data });
        }
        Ok(Self {
            config,
            params: ParamSet { tensors },
        })
    }
}
