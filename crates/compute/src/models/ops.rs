//! Metered kernel calls: every kernel a model runs goes through here, which charges the
//! [`OpCounter`] from the call's shape arguments (the op model of [`crate::metering`])
//! and then calls [`crate::kernels`]. `Model::meter` charges the same formulas from the
//! configuration alone; tests check that the two agree.
//!
//! Also the few model-level helpers the kernel set does not have: ReLU, and the
//! row-wise causal attention the GPT decoder shares between its full pass and its
//! KV-cached incremental step (so both produce the same bits, see `gpt.rs`).

use rayon::prelude::*;

use crate::kernels::{self, PackedWeights};
use crate::metering::{cost, OpCounter};

/// A dense layer: weights packed once at load time into the GEMM's panel layout, and an
/// optional bias. Packing only moves values, so results equal `kernels::linear` /
/// `kernels::linear_kn` on the original layout bit for bit.
#[derive(Clone, Debug)]
pub struct Linear {
    w: PackedWeights,
    b: Option<Vec<f32>>,
}

/// Weight layout of a checkpoint tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[out, in]`: PyTorch/Hugging Face `nn.Linear`.
    OutIn,
    /// `[in, out]`: GPT-2 `Conv1D`, and the MLP format.
    InOut,
}

impl Linear {
    /// Packs `w` (`[n × k]` for `OutIn`, `[k × n]` for `InOut`). The caller has checked
    /// `w.len() == k·n` and `b.len() == n` (the loader validates shapes).
    pub fn new(w: &[f32], b: Option<Vec<f32>>, k: usize, n: usize, layout: Layout) -> Self {
        let w = match layout {
            Layout::OutIn => PackedWeights::new(w, n, k),
            Layout::InOut => PackedWeights::from_kn(w, k, n),
        };
        Linear { w, b }
    }

    /// Input width.
    pub fn k(&self) -> usize {
        self.w.k()
    }

    /// Output width.
    pub fn n(&self) -> usize {
        self.w.n()
    }

    /// `out[m×n] = x[m×k] · W (+ b)`, metered.
    pub fn forward(&self, x: &[f32], out: &mut [f32], m: usize, ops: &OpCounter) {
        ops.add(cost::linear(m, self.k(), self.n(), self.b.is_some()));
        kernels::linear_packed(x, &self.w, self.b.as_deref(), out, m);
    }

    /// Allocating variant of [`Linear::forward`].
    pub fn apply(&self, x: &[f32], m: usize, ops: &OpCounter) -> Vec<f32> {
        let mut out = vec![0.0; m * self.n()];
        self.forward(x, &mut out, m, ops);
        out
    }
}

/// Layer-norm parameters.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl LayerNorm {
    /// Normalizes `rows` rows of `x` into `out`, metered.
    pub fn forward(&self, x: &[f32], out: &mut [f32], rows: usize, ops: &OpCounter) {
        let cols = self.gamma.len();
        ops.add(cost::layer_norm(rows, cols));
        // Rows are independent: split them across threads (same bits at any count).
        let block = PAR_CHUNK.div_ceil(cols.max(1)).max(1) * cols.max(1);
        x.par_chunks(block)
            .zip(out.par_chunks_mut(block))
            .for_each(|(xi, oi)| {
                let r = xi.len() / cols.max(1);
                kernels::layer_norm(xi, &self.gamma, &self.beta, oi, r, cols, self.eps);
            });
    }

    /// Allocating variant.
    pub fn apply(&self, x: &[f32], rows: usize, ops: &OpCounter) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        self.forward(x, &mut out, rows, ops);
        out
    }
}

/// Elements per parallel task for elementwise and row kernels: below it, one thread.
const PAR_CHUNK: usize = 1 << 14;

/// Applies an elementwise kernel to chunks of `x` in parallel. Each element's result
/// depends on that element alone, so the split never changes a bit.
fn par_elementwise(x: &mut [f32], f: impl Fn(&mut [f32]) + Sync) {
    if x.len() <= PAR_CHUNK {
        f(x);
    } else {
        x.par_chunks_mut(PAR_CHUNK).for_each(&f);
    }
}

/// `a += b`, metered.
pub fn add_inplace(a: &mut [f32], b: &[f32], ops: &OpCounter) {
    ops.add(cost::elementwise(a.len()));
    if a.len() <= PAR_CHUNK {
        kernels::add_inplace(a, b);
    } else {
        a.par_chunks_mut(PAR_CHUNK)
            .zip(b.par_chunks(PAR_CHUNK))
            .for_each(|(ai, bi)| kernels::add_inplace(ai, bi));
    }
}

/// GELU (erf form), in place, metered.
pub fn gelu_erf(x: &mut [f32], ops: &OpCounter) {
    ops.add(cost::gelu_erf(x.len()));
    par_elementwise(x, kernels::gelu_erf);
}

/// GELU (tanh form), in place, metered.
pub fn gelu_tanh(x: &mut [f32], ops: &OpCounter) {
    ops.add(cost::gelu_tanh(x.len()));
    par_elementwise(x, kernels::gelu_tanh);
}

/// tanh, in place, metered.
pub fn tanh(x: &mut [f32], ops: &OpCounter) {
    ops.add(cost::tanh(x.len()));
    par_elementwise(x, kernels::tanh_inplace);
}

/// ReLU, in place, metered (`x > 0 ? x : 0`; NaN maps to 0).
pub fn relu(x: &mut [f32], ops: &OpCounter) {
    ops.add(cost::relu(x.len()));
    for v in x.iter_mut() {
        *v = if *v > 0.0 { *v } else { 0.0 };
    }
}

#[allow(clippy::too_many_arguments)]
/// Bidirectional multi-head attention over one sequence of `seq` tokens
/// (`q`, `k`, `v`, `out`: `[seq, heads·head_dim]`), metered.
pub fn attention_full(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    seq: usize,
    heads: usize,
    head_dim: usize,
    ops: &OpCounter,
) {
    ops.add(cost::attention(
        cost::attention_pairs(seq, false),
        heads,
        head_dim,
    ));
    kernels::attention(q, k, v, out, seq, heads, head_dim, None, false);
}

/// Causal multi-head attention for `n_q` query rows at positions
/// `first_pos..first_pos + n_q` over keys/values `[0, first_pos + n_q)` of one sequence
/// (all `[rows, heads·head_dim]`), metered.
///
/// Each output row is computed by the same scalar sequence whatever `n_q` and
/// `first_pos` are — the full pass (`first_pos = 0`, `n_q = seq`) and one incremental
/// step (`n_q = 1`) agree bit for bit:
///
/// ```text
/// s_j = (Σ_e q_e·k_je, e ascending) · (1/√d)        j = 0..=pos
/// m = max_j s_j;  e_j = exp(s_j − m);  Σ = Σ_j e_j (j ascending)
/// out_e = Σ_j (e_j / Σ) · v_je (j ascending)
/// ```
///
/// (every accumulation one fused multiply-add).
#[allow(clippy::too_many_arguments)]
pub fn attention_causal_rows(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    first_pos: usize,
    n_q: usize,
    heads: usize,
    head_dim: usize,
    ops: &OpCounter,
) {
    let pairs = (0..n_q).map(|r| first_pos + r + 1).sum::<usize>();
    ops.add(cost::attention(pairs, heads, head_dim));
    causal_rows(q, k, v, out, first_pos, n_q, heads, head_dim);
}

kernels::fma_dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn causal_rows => causal_rows_with(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
        first_pos: usize,
        n_q: usize,
        heads: usize,
        head_dim: usize,
    )
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn causal_rows_with<F: kernels::Fma>(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    first_pos: usize,
    n_q: usize,
    heads: usize,
    head_dim: usize,
) {
    let d = heads * head_dim;
    let scale = 1.0f32 / libm::sqrtf(head_dim as f32);
    let mut scores = vec![0.0f32; first_pos + n_q];
    for r in 0..n_q {
        let pos = first_pos + r;
        let n_keys = pos + 1;
        let qrow = &q[r * d..(r + 1) * d];
        let orow = &mut out[r * d..(r + 1) * d];
        for h in 0..heads {
            let qh = &qrow[h * head_dim..(h + 1) * head_dim];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores[..n_keys].iter_mut().enumerate() {
                let kh = &k[j * d + h * head_dim..j * d + (h + 1) * head_dim];
                let mut acc = 0.0f32;
                for e in 0..head_dim {
                    acc = F::fma(qh[e], kh[e], acc);
                }
                *s = acc * scale;
                if *s > max {
                    max = *s;
                }
            }
            let mut sum = 0.0f32;
            for s in scores[..n_keys].iter_mut() {
                *s = libm::expf(*s - max);
                sum += *s;
            }
            let oh = &mut orow[h * head_dim..(h + 1) * head_dim];
            oh.iter_mut().for_each(|x| *x = 0.0);
            for (j, s) in scores[..n_keys].iter().enumerate() {
                let p = *s / sum;
                let vh = &v[j * d + h * head_dim..j * d + (h + 1) * head_dim];
                for e in 0..head_dim {
                    oh[e] = F::fma(p, vh[e], oh[e]);
                }
            }
        }
    }
}
