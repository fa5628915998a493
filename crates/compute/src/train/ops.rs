//! Deterministic forward and backward kernels for training.
//!
//! The rules are those of the inference kernels (`crate::kernels`):
//!
//! - every output element is a reduction in **one fixed order** (index
//!   increasing, starting from `0.0`, every `c + a·b` one fused multiply-add,
//!   [`Real::fma`]);
//! - threads (rayon) split **independent outputs only** — rows of a product,
//!   `(batch, head)` pairs of attention — never a reduction, so the bits do not
//!   depend on the thread count;
//! - reductions across the batch (weight gradients, bias gradients, the loss)
//!   run in row order: a weight gradient `dW = Xᵀ·dY` *is* a matmul whose
//!   reduction index is the row, so it is computed as `matmul(transpose(X), dY)`
//!   and inherits the matmul's order;
//! - transcendentals come from `libm` through [`Real`].
//!
//! ```text
//!  linear      y = x·W + b         dx = dy·Wᵀ   dW = xᵀ·dy   db = Σ_rows dy
//!  layer norm  y = x̂·γ + β         dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
//!  gelu_tanh   y = ½x(1+tanh u)    dy/dx = ½(1+t) + ½x(1−t²)·c(1+3a·x²)
//!  attention   P = softmax(QKᵀ/√d) dS = P⊙(dP − Σ_j P·dP)
//!  loss        CE = mean(lse − x_t) dlogits = (softmax − onehot)/N
//! ```

// Index loops spell out the reduction order on purpose.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::real::Real;

/// `c[m×n] = a[m×k] · b[k×n]`, row-major, through [`Real::matmul`]: the inference
/// kernel for `f32`, [`matmul_generic`] for `f64` — the same order either way.
pub fn matmul<T: Real>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize) {
    T::matmul(a, b, c, m, k, n)
}

/// `out[cols×rows] = a[rows×cols]ᵀ`.
pub fn transpose<T: Real>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    assert_eq!(a.len(), rows * cols, "transpose: a is not rows×cols");
    let mut out = vec![T::ZERO; rows * cols];
    if rows == 0 {
        return out;
    }
    out.par_chunks_mut(rows).enumerate().for_each(|(j, orow)| {
        for (i, o) in orow.iter_mut().enumerate() {
            *o = a[i * cols + j];
        }
    });
    out
}

/// `y[m×n] = x[m×k]·w[k×n] + bias` (Conv1D layout, as GPT-2 stores it).
pub fn linear_forward<T: Real>(
    x: &[T],
    w: &[T],
    bias: &[T],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    assert_eq!(bias.len(), n, "linear_forward: bias is not n");
    let mut y = vec![T::ZERO; m * n];
    matmul(x, w, &mut y, m, k, n);
    if n > 0 {
        y.par_chunks_mut(n).for_each(|row| {
            for (v, &b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        });
    }
    y
}

/// Backward of [`linear_forward`]: writes `dw = xᵀ·dy` (reduction over rows in
/// order), `db = Σ_rows dy` (rows in order), and returns `dx = dy·wᵀ` when asked.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Real>(
    x: &[T],
    w: &[T],
    dy: &[T],
    dw: &mut [T],
    db: &mut [T],
    m: usize,
    k: usize,
    n: usize,
    want_dx: bool,
) -> Option<Vec<T>> {
    let xt = transpose(x, m, k);
    matmul(&xt, dy, dw, k, m, n);
    col_sum(dy, m, n, db);
    if want_dx {
        let wt = transpose(w, k, n);
        let mut dx = vec![T::ZERO; m * k];
        matmul(dy, &wt, &mut dx, m, n, k);
        Some(dx)
    } else {
        None
    }
}

/// `out[j] = Σ_i a[i][j]`, rows `i` in increasing order from `0.0`.
pub fn col_sum<T: Real>(a: &[T], rows: usize, cols: usize, out: &mut [T]) {
    assert_eq!(a.len(), rows * cols, "col_sum: a is not rows×cols");
    assert_eq!(out.len(), cols, "col_sum: out is not cols");
    out.fill(T::ZERO);
    for i in 0..rows {
        for (o, &v) in out.iter_mut().zip(&a[i * cols..(i + 1) * cols]) {
            *o += v;
        }
    }
}

/// What layer norm's backward needs from its forward.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormCache<T> {
    /// Normalized input `(x − mean)·rstd`, `[rows×cols]`.
    pub xhat: Vec<T>,
    /// `1/√(var + eps)` per row.
    pub rstd: Vec<T>,
}

/// Layer norm over the last dimension: `mean = Σx/d`, `var = Σ(x−mean)²/d`
/// (both summed in column order, the squares fused), `y = fma((x−mean)·rstd, γ, β)`.
pub fn layer_norm_forward<T: Real>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    rows: usize,
    cols: usize,
    eps: T,
) -> (Vec<T>, LayerNormCache<T>) {
    assert_eq!(x.len(), rows * cols, "layer_norm: x is not rows×cols");
    assert_eq!(gamma.len(), cols, "layer_norm: gamma is not cols");
    assert_eq!(beta.len(), cols, "layer_norm: beta is not cols");
    let mut y = vec![T::ZERO; rows * cols];
    let mut xhat = vec![T::ZERO; rows * cols];
    let mut rstd = vec![T::ZERO; rows];
    if cols == 0 {
        return (y, LayerNormCache { xhat, rstd });
    }
    let d = T::from_f64(cols as f64);
    y.par_chunks_mut(cols)
        .zip(xhat.par_chunks_mut(cols))
        .zip(rstd.par_iter_mut())
        .enumerate()
        .for_each(|(i, ((yrow, hrow), r))| {
            let xrow = &x[i * cols..(i + 1) * cols];
            let mut sum = T::ZERO;
            for &v in xrow {
                sum += v;
            }
            let mean = sum / d;
            let mut var = T::ZERO;
            for &v in xrow {
                let c = v - mean;
                var = c.fma(c, var);
            }
            let rs = T::ONE / (var / d + eps).sqrt();
            *r = rs;
            for j in 0..cols {
                let h = (xrow[j] - mean) * rs;
                hrow[j] = h;
                yrow[j] = h.fma(gamma[j], beta[j]);
            }
        });
    (y, LayerNormCache { xhat, rstd })
}

/// Backward of [`layer_norm_forward`]: `dgamma = Σ_rows dy·x̂`,
/// `dbeta = Σ_rows dy` (rows in order), and **adds** the input gradient into
/// `dx` (which holds the residual branch's gradient already).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward<T: Real>(
    dy: &[T],
    cache: &LayerNormCache<T>,
    gamma: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    dx: &mut [T],
    rows: usize,
    cols: usize,
) {
    assert_eq!(dy.len(), rows * cols, "layer_norm_backward: dy");
    assert_eq!(dx.len(), rows * cols, "layer_norm_backward: dx");
    dgamma.fill(T::ZERO);
    dbeta.fill(T::ZERO);
    for i in 0..rows {
        let dyr = &dy[i * cols..(i + 1) * cols];
        let hr = &cache.xhat[i * cols..(i + 1) * cols];
        for j in 0..cols {
            dgamma[j] = dyr[j].fma(hr[j], dgamma[j]);
            dbeta[j] += dyr[j];
        }
    }
    if cols == 0 {
        return;
    }
    let d = T::from_f64(cols as f64);
    dx.par_chunks_mut(cols).enumerate().for_each(|(i, dxr)| {
        let dyr = &dy[i * cols..(i + 1) * cols];
        let hr = &cache.xhat[i * cols..(i + 1) * cols];
        let mut s1 = T::ZERO;
        let mut s2 = T::ZERO;
        for j in 0..cols {
            let g = dyr[j] * gamma[j];
            s1 += g;
            s2 = g.fma(hr[j], s2);
        }
        let m1 = s1 / d;
        let m2 = s2 / d;
        let rs = cache.rstd[i];
        for j in 0..cols {
            let g = dyr[j] * gamma[j];
            dxr[j] = rs.fma((-hr[j]).fma(m2, g - m1), dxr[j]);
        }
    });
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_A: f64 = 0.044_715;

/// `gelu_tanh(x) = ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, elementwise.
pub fn gelu_tanh_forward<T: Real>(x: &[T]) -> Vec<T> {
    let c = T::from_f64(GELU_C);
    let a = T::from_f64(GELU_A);
    let half = T::from_f64(0.5);
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(4096)
        .zip(x.par_chunks(4096))
        .for_each(|(yc, xc)| {
            for (o, &v) in yc.iter_mut().zip(xc) {
                let t = (c * (a * v * v).fma(v, v)).tanh();
                *o = half * v * (T::ONE + t);
            }
        });
    y
}

/// `dx = dy · gelu_tanh'(x)`, recomputing `tanh` from the cached input.
pub fn gelu_tanh_backward<T: Real>(x: &[T], dy: &[T]) -> Vec<T> {
    assert_eq!(x.len(), dy.len(), "gelu_tanh_backward: lengths");
    let c = T::from_f64(GELU_C);
    let a = T::from_f64(GELU_A);
    let a3 = T::from_f64(3.0 * GELU_A);
    let half = T::from_f64(0.5);
    let mut dx = vec![T::ZERO; x.len()];
    dx.par_chunks_mut(4096)
        .zip(x.par_chunks(4096).zip(dy.par_chunks(4096)))
        .for_each(|(dc, (xc, gc))| {
            for ((o, &v), &g) in dc.iter_mut().zip(xc).zip(gc) {
                let t = (c * (a * v * v).fma(v, v)).tanh();
                let dudx = c * (a3 * v).fma(v, T::ONE);
                let d = (half * v * (-t).fma(t, T::ONE)).fma(dudx, half * (T::ONE + t));
                *o = g * d;
            }
        });
    dx
}

/// Mean softmax cross-entropy of `logits[rows×vocab]` against `targets`, and
/// `dlogits = (softmax − onehot)/rows`. Per row: `lse = max + ln Σ exp(x − max)`
/// (columns in order); the mean sums row losses in row order, then divides.
/// Targets must already be checked `< vocab`.
pub fn cross_entropy<T: Real>(
    logits: &[T],
    targets: &[u32],
    rows: usize,
    vocab: usize,
) -> (T, Vec<T>) {
    assert_eq!(logits.len(), rows * vocab, "cross_entropy: logits");
    assert_eq!(targets.len(), rows, "cross_entropy: targets");
    let n = T::from_f64(rows as f64);
    let mut dlogits = vec![T::ZERO; rows * vocab];
    let mut row_loss = vec![T::ZERO; rows];
    if vocab > 0 {
        dlogits
            .par_chunks_mut(vocab)
            .zip(row_loss.par_iter_mut())
            .enumerate()
            .for_each(|(i, (drow, l))| {
                let xr = &logits[i * vocab..(i + 1) * vocab];
                let mut mx = xr[0];
                for &v in xr {
                    if v > mx {
                        mx = v;
                    }
                }
                let mut s = T::ZERO;
                for (dj, &v) in drow.iter_mut().zip(xr) {
                    let e = (v - mx).exp();
                    *dj = e;
                    s += e;
                }
                let t = targets[i] as usize;
                *l = mx + s.ln() - xr[t];
                for (j, dj) in drow.iter_mut().enumerate() {
                    let p = *dj / s;
                    let y = if j == t { T::ONE } else { T::ZERO };
                    *dj = (p - y) / n;
                }
            });
    }
    let mut total = T::ZERO;
    for &l in &row_loss {
        total += l;
    }
    (total / n, dlogits)
}

/// Shape of a multi-head attention call over a batch of sequences.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Sequences in the batch.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head; `heads · head_dim` is the model width.
    pub head_dim: usize,
}

impl AttnShape {
    fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// Causal multi-head self-attention forward. `qkv` is `[batch·seq × 3·width]`
/// (q | k | v, head `h` at columns `h·head_dim..`), as GPT-2's `c_attn` emits.
/// Returns the merged head outputs `[batch·seq × width]` and the attention
/// probabilities `[batch × heads × seq × seq]` (zero above the diagonal).
/// Scores are `(Σ_c q·k)·(1/√head_dim)`; softmax over `j ≤ i` in order.
pub fn attention_forward<T: Real>(qkv: &[T], s: AttnShape) -> (Vec<T>, Vec<T>) {
    let (t, hd, w) = (s.seq, s.head_dim, s.width());
    assert_eq!(qkv.len(), s.batch * t * 3 * w, "attention_forward: qkv");
    let scale = T::ONE / T::from_f64(hd as f64).sqrt();
    let mut probs = vec![T::ZERO; s.batch * s.heads * t * t];
    let outs: Vec<Vec<T>> = if t == 0 {
        Vec::new()
    } else {
        probs
            .par_chunks_mut(t * t)
            .enumerate()
            .map(|(bh, p)| {
                let (b, h) = (bh / s.heads, bh % s.heads);
                let row = |i: usize, part: usize| {
                    let base = (b * t + i) * 3 * w + part * w + h * hd;
                    &qkv[base..base + hd]
                };
                let mut out = vec![T::ZERO; t * hd];
                for i in 0..t {
                    let q = row(i, 0);
                    let prow = &mut p[i * t..(i + 1) * t];
                    let mut mx = T::ZERO;
                    for j in 0..=i {
                        let k = row(j, 1);
                        let mut dot = T::ZERO;
                        for c in 0..hd {
                            dot = q[c].fma(k[c], dot);
                        }
                        let sc = dot * scale;
                        prow[j] = sc;
                        if j == 0 || sc > mx {
                            mx = sc;
                        }
                    }
                    let mut sum = T::ZERO;
                    for pj in prow[..=i].iter_mut() {
                        let e = (*pj - mx).exp();
                        *pj = e;
                        sum += e;
                    }
                    for pj in prow[..=i].iter_mut() {
                        *pj = *pj / sum;
                    }
                    let orow = &mut out[i * hd..(i + 1) * hd];
                    for (j, &pj) in prow[..=i].iter().enumerate() {
                        let v = row(j, 2);
                        for c in 0..hd {
                            orow[c] = pj.fma(v[c], orow[c]);
                        }
                    }
                }
                out
            })
            .collect()
    };
    let mut merged = vec![T::ZERO; s.batch * t * w];
    for (bh, out) in outs.iter().enumerate() {
        let (b, h) = (bh / s.heads, bh % s.heads);
        for i in 0..t {
            let dst = (b * t + i) * w + h * hd;
            merged[dst..dst + hd].copy_from_slice(&out[i * hd..(i + 1) * hd]);
        }
    }
    (merged, probs)
}

/// Backward of [`attention_forward`]: from `d_out [batch·seq × width]` to
/// `d_qkv [batch·seq × 3·width]`. Per `(batch, head)`, independent of others:
///
/// ```text
/// dV[j] = Σ_{i≥j} P[i,j]·dO[i]          dP[i,j] = dO[i]·V[j]
/// dS[i,j] = P[i,j]·(dP[i,j] − Σ_j' P[i,j']·dP[i,j'])·scale
/// dQ[i] = Σ_{j≤i} dS[i,j]·K[j]          dK[j] = Σ_{i≥j} dS[i,j]·Q[i]
/// ```
pub fn attention_backward<T: Real>(qkv: &[T], probs: &[T], d_out: &[T], s: AttnShape) -> Vec<T> {
    let (t, hd, w) = (s.seq, s.head_dim, s.width());
    assert_eq!(qkv.len(), s.batch * t * 3 * w, "attention_backward: qkv");
    assert_eq!(
        probs.len(),
        s.batch * s.heads * t * t,
        "attention_backward: probs"
    );
    assert_eq!(d_out.len(), s.batch * t * w, "attention_backward: d_out");
    let scale = T::ONE / T::from_f64(hd as f64).sqrt();
    let pairs = s.batch * s.heads;
    let grads: Vec<Vec<T>> = (0..pairs)
        .into_par_iter()
        .map(|bh| {
            let (b, h) = (bh / s.heads, bh % s.heads);
            let row = |i: usize, part: usize| {
                let base = (b * t + i) * 3 * w + part * w + h * hd;
                &qkv[base..base + hd]
            };
            let drow = |i: usize| {
                let base = (b * t + i) * w + h * hd;
                &d_out[base..base + hd]
            };
            let p = &probs[bh * t * t..(bh + 1) * t * t];
            // g = [dq | dk | dv], each t×hd.
            let mut g = vec![T::ZERO; 3 * t * hd];
            let (dq, rest) = g.split_at_mut(t * hd);
            let (dk, dv) = rest.split_at_mut(t * hd);
            let mut ds = vec![T::ZERO; t];
            for i in 0..t {
                let dor = drow(i);
                let prow = &p[i * t..(i + 1) * t];
                let mut dsum = T::ZERO;
                for j in 0..=i {
                    let v = row(j, 2);
                    let mut dp = T::ZERO;
                    for c in 0..hd {
                        dp = dor[c].fma(v[c], dp);
                    }
                    ds[j] = dp;
                    dsum = prow[j].fma(dp, dsum);
                }
                for j in 0..=i {
                    ds[j] = prow[j] * (ds[j] - dsum) * scale;
                }
                // i increases in the outer loop, so dk[j] and dv[j] see i in order.
                let q = row(i, 0);
                let dqr = &mut dq[i * hd..(i + 1) * hd];
                for j in 0..=i {
                    let k = row(j, 1);
                    let dsj = ds[j];
                    let pj = prow[j];
                    for c in 0..hd {
                        dqr[c] = dsj.fma(k[c], dqr[c]);
                    }
                    let dkr = &mut dk[j * hd..(j + 1) * hd];
                    for c in 0..hd {
                        dkr[c] = dsj.fma(q[c], dkr[c]);
                    }
                    let dvr = &mut dv[j * hd..(j + 1) * hd];
                    for c in 0..hd {
                        dvr[c] = pj.fma(dor[c], dvr[c]);
                    }
                }
            }
            g
        })
        .collect();
    let mut d_qkv = vec![T::ZERO; s.batch * t * 3 * w];
    for (bh, g) in grads.iter().enumerate() {
        let (b, h) = (bh / s.heads, bh % s.heads);
        for part in 0..3 {
            for i in 0..t {
                let dst = (b * t + i) * 3 * w + part * w + h * hd;
                let src = (part * t + i) * hd;
                d_qkv[dst..dst + hd].copy_from_slice(&g[src..src + hd]);
            }
        }
    }
    d_qkv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::real::matmul_generic;

    #[test]
    fn matmul_matches_reference_kernel_bits() {
        let (m, k, n) = (13, 7, 11);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 53 % 19) as f32 - 9.0) * 0.311)
            .collect();
        let mut c1 = vec![0.0f32; m * n];
        let mut c2 = vec![0.0f32; m * n];
        matmul_generic(&a, &b, &mut c1, m, k, n);
        crate::kernels::matmul(&a, &b, &mut c2, m, k, n);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&c1), bits(&c2));
    }

    #[test]
    fn transpose_round_trips() {
        let a: Vec<f64> = (0..12).map(f64::from).collect();
        let t = transpose(&a, 3, 4);
        assert_eq!(t[1], 4.0);
        assert_eq!(transpose(&t, 4, 3), a);
    }

    #[test]
    fn attention_rows_are_distributions() {
        let s = AttnShape {
            batch: 2,
            seq: 5,
            heads: 2,
            head_dim: 3,
        };
        let qkv: Vec<f64> = (0..2 * 5 * 18)
            .map(|i| ((i * 7 % 13) as f64 - 6.0) * 0.1)
            .collect();
        let (_, p) = attention_forward(&qkv, s);
        for r in 0..(2 * 2 * 5) {
            let i = r % 5;
            let row = &p[r * 5..(r + 1) * 5];
            let sum: f64 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12);
            assert!(row[i + 1..].iter().all(|&x| x == 0.0), "causal mask leaked");
        }
    }
}
