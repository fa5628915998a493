//! The naive reference kernels: the *specification* of every kernel's arithmetic.
//!
//! Each function here is written as the plainest loop that states the exact order of
//! every floating-point operation. The optimized kernels in the parent module must
//! produce the same bits for every input (tests check this exhaustively); when the
//! two ever disagree, this file is right.
//!
//! Conventions shared by every function:
//! - sums start from `+0.0` and add terms in increasing index order; a product that is
//!   accumulated is one fused multiply-add ([`fmadd`], rounded once), never a rounded
//!   product followed by a rounded add;
//! - transcendentals (`expf`, `logf`, `erff`, `tanhf`, `sqrtf`) come from `libm`;
//! - all tensors are row-major slices with explicit dimensions. Lengths are the
//!   caller's responsibility (the model loader validates checkpoint shapes); they are
//!   checked with `debug_assert!` here.
#![allow(clippy::too_many_arguments, clippy::needless_range_loop)]

use super::fmadd;
use crate::ComputeError;

/// `c[m×n] = a[m×k] · b[k×n]`: `acc = +0.0`, then `acc = fma(a[i,p], b[p,j], acc)` for
/// `p = 0, 1, …`; `c[i][j] = acc`.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc = fmadd(a[i * k + p], b[p * n + j], acc);
            }
            c[i * n + j] = acc;
        }
    }
}

/// `c[m×n] = a[m×k] · w[n×k]ᵀ`, same per-output order as [`matmul`].
pub fn matmul_bt(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k);
    assert_eq!(w.len(), n * k);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc = fmadd(a[i * k + p], w[j * k + p], acc);
            }
            c[i * n + j] = acc;
        }
    }
}

/// `out = x·wᵀ (+ bias)`, `w` is `[n×k]`. The bias is added once, after the full reduction.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    matmul_bt(x, w, out, m, k, n);
    if let Some(b) = bias {
        add_bias_rows(out, b, m, n);
    }
}

/// `out = x·w (+ bias)`, `w` is `[k×n]`. The bias is added once, after the full reduction.
pub fn linear_kn(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    matmul(x, w, out, m, k, n);
    if let Some(b) = bias {
        add_bias_rows(out, b, m, n);
    }
}

fn add_bias_rows(out: &mut [f32], b: &[f32], m: usize, n: usize) {
    debug_assert_eq!(b.len(), n);
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] += b[j];
        }
    }
}

/// `out[i] = a[i] + b[i]`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    debug_assert!(a.len() == b.len() && a.len() == out.len());
    for i in 0..out.len() {
        out[i] = a[i] + b[i];
    }
}

/// `acc[i] = acc[i] + b[i]`.
pub fn add_inplace(acc: &mut [f32], b: &[f32]) {
    debug_assert_eq!(acc.len(), b.len());
    for i in 0..acc.len() {
        acc[i] += b[i];
    }
}

/// `out[i] = a[i] · b[i]`.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    debug_assert!(a.len() == b.len() && a.len() == out.len());
    for i in 0..out.len() {
        out[i] = a[i] * b[i];
    }
}

/// `x[i] = x[i] · s`.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    for v in x.iter_mut() {
        *v *= s;
    }
}

/// Row-wise layer normalization. Per row:
/// `mean = (Σ x)/cols`, `var = (Σ (x−mean)²)/cols` (sums in column order from `+0.0`),
/// `var` accumulating `fma(d, d, var)`, `inv = 1 / sqrtf(var + eps)`,
/// `y = fma((x − mean)·inv, gamma, beta)`.
pub fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    eps: f32,
) {
    debug_assert!(x.len() == rows * cols && out.len() == rows * cols);
    debug_assert!(gamma.len() == cols && beta.len() == cols);
    for r in 0..rows {
        let xr = &x[r * cols..(r + 1) * cols];
        let mut s = 0.0f32;
        for v in xr {
            s += *v;
        }
        let mean = s / cols as f32;
        let mut var = 0.0f32;
        for v in xr {
            let d = *v - mean;
            var = fmadd(d, d, var);
        }
        var /= cols as f32;
        let inv = 1.0 / libm::sqrtf(var + eps);
        for c in 0..cols {
            out[r * cols + c] = fmadd((xr[c] - mean) * inv, gamma[c], beta[c]);
        }
    }
}

/// Row-wise softmax in place: `m = max(row)`, `e = expf(x − m)`, `s = Σ e` (in order),
/// `x = e / s`. The max is taken with `>` from `−∞`, so NaNs never become the max.
pub fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    debug_assert_eq!(x.len(), rows * cols);
    for r in 0..rows {
        let row = &mut x[r * cols..(r + 1) * cols];
        let mut max = f32::NEG_INFINITY;
        for v in row.iter() {
            if *v > max {
                max = *v;
            }
        }
        let mut sum = 0.0f32;
        for v in row.iter_mut() {
            *v = libm::expf(*v - max);
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

/// Row-wise log-softmax in place: `m = max(row)`, `s = Σ expf(x − m)` (in order),
/// `l = logf(s)`, `x = (x − m) − l`.
pub fn log_softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    debug_assert_eq!(x.len(), rows * cols);
    for r in 0..rows {
        let row = &mut x[r * cols..(r + 1) * cols];
        let mut max = f32::NEG_INFINITY;
        for v in row.iter() {
            if *v > max {
                max = *v;
            }
        }
        let mut sum = 0.0f32;
        for v in row.iter() {
            sum += libm::expf(*v - max);
        }
        let l = libm::logf(sum);
        for v in row.iter_mut() {
            *v = (*v - max) - l;
        }
    }
}

/// Exact GELU (BERT): `x = (0.5·x)·(1 + erff(x / √2))`.
pub fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + libm::erff(u / core::f32::consts::SQRT_2));
    }
}

/// The constant `√(2/π)` of GPT-2's `gelu_new`, rounded to f32.
pub const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GPT-2's `gelu_new`: `t = tanhf(√(2/π)·fma((0.044715·u)·u, u, u))`, `x = (0.5·u)·(1 + t)`.
pub fn gelu_tanh(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu_tanh_one(*v);
    }
}

/// [`gelu_tanh`] of one value.
#[inline]
pub fn gelu_tanh_one(u: f32) -> f32 {
    let t = libm::tanhf(SQRT_2_OVER_PI * fmadd(0.044715 * u * u, u, u));
    0.5 * u * (1.0 + t)
}

/// `x = tanhf(x)`.
pub fn tanh_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = libm::tanhf(*v);
    }
}

/// Copies row `ids[i]` of `table[vocab×dim]` into row `i` of `out`.
/// An id `≥ vocab` is [`ComputeError::TokenOutOfRange`]; wrong lengths are
/// [`ComputeError::ShapeMismatch`]. `out` is untouched on error.
pub fn embedding(
    table: &[f32],
    vocab: usize,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), ComputeError> {
    super::check_embedding(table, vocab, dim, ids, out)?;
    for (i, &id) in ids.iter().enumerate() {
        let id = id as usize;
        out[i * dim..(i + 1) * dim].copy_from_slice(&table[id * dim..(id + 1) * dim]);
    }
    Ok(())
}

/// Multi-head scaled dot-product attention over one sequence.
///
/// `q`, `k`, `v`, `out` are `[seq × heads·head_dim]`, head `h` in columns
/// `h·head_dim..(h+1)·head_dim`. For query `i` and head `h`, key `j` is *allowed* when
/// `key_mask[j]` is true (or there is no mask) and, if `causal`, `j ≤ i`. Then:
/// - `s_j = (Σ_e q[i,h,e]·k[j,h,e]) · scale` (fused steps) for allowed `j`, the sum in `e` order from
///   `+0.0`, `scale = 1 / sqrtf(head_dim)`;
/// - `mx = max s_j` (with `>` from `−∞`), `x_j = expf(s_j − mx)`, `sum = Σ x_j` in `j` order;
/// - `p_j = x_j / sum`;
/// - `out[i,h,e] = Σ_j p_j·v[j,h,e]` over allowed `j` in increasing order, from `+0.0`
///   (fused steps).
///
/// Disallowed keys take no part at all (their values cannot leak into the output). A
/// query with no allowed key outputs zeros.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    seq: usize,
    heads: usize,
    head_dim: usize,
    key_mask: Option<&[bool]>,
    causal: bool,
) {
    let d = heads * head_dim;
    debug_assert!(q.len() == seq * d && k.len() == seq * d && v.len() == seq * d);
    debug_assert!(out.len() == seq * d);
    debug_assert!(key_mask.is_none_or(|m| m.len() == seq));
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    let allowed = |i: usize, j: usize| key_mask.is_none_or(|m| m[j]) && (!causal || j <= i);
    let mut s = vec![0.0f32; seq];
    for i in 0..seq {
        for h in 0..heads {
            let o = h * head_dim;
            let mut mx = f32::NEG_INFINITY;
            let mut any = false;
            for j in 0..seq {
                if !allowed(i, j) {
                    continue;
                }
                any = true;
                let mut acc = 0.0f32;
                for e in 0..head_dim {
                    acc = fmadd(q[i * d + o + e], k[j * d + o + e], acc);
                }
                s[j] = acc * scale;
                if s[j] > mx {
                    mx = s[j];
                }
            }
            if !any {
                out[i * d + o..i * d + o + head_dim].fill(0.0);
                continue;
            }
            let mut sum = 0.0f32;
            for j in 0..seq {
                if allowed(i, j) {
                    s[j] = libm::expf(s[j] - mx);
                    sum += s[j];
                }
            }
            for j in 0..seq {
                if allowed(i, j) {
                    s[j] /= sum;
                }
            }
            for e in 0..head_dim {
                let mut acc = 0.0f32;
                for j in 0..seq {
                    if allowed(i, j) {
                        acc = fmadd(s[j], v[j * d + o + e], acc);
                    }
                }
                out[i * d + o + e] = acc;
            }
        }
    }
}

/// Masked mean over rows: `out = (Σ_{r: mask[r]} x[r]) / count` with the rows added in
/// increasing order from `+0.0` and the divisor `count as f32`; no unmasked row → zeros.
pub fn mean_pool(x: &[f32], mask: &[bool], seq: usize, dim: usize, out: &mut [f32]) {
    debug_assert!(x.len() == seq * dim && mask.len() == seq && out.len() == dim);
    out.fill(0.0);
    let mut count = 0usize;
    for r in 0..seq {
        if mask[r] {
            count += 1;
            for e in 0..dim {
                out[e] += x[r * dim + e];
            }
        }
    }
    if count > 0 {
        let c = count as f32;
        for o in out.iter_mut() {
            *o /= c;
        }
    }
}

/// `x = x / max(sqrtf(Σ x²), 1e-12)`, the sum of squares in order from `+0.0`.
pub fn l2_normalize(x: &mut [f32]) {
    let mut s = 0.0f32;
    for v in x.iter() {
        s = fmadd(*v, *v, s);
    }
    let n = libm::sqrtf(s).max(1e-12);
    for v in x.iter_mut() {
        *v /= n;
    }
}

/// Index of the largest element; the first one wins ties; `0` for an empty slice.
/// Compared with `>`, so NaNs are never chosen (unless at index 0).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0usize;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    best
}
