//! Deterministic kernels: the arithmetic every model runs.
//!
//! # The determinism contract
//!
//! Every kernel produces the *same bits* on every x86-64 and ARM CPU, at every thread
//! count and every SIMD width. [`reference`](mod@reference) states each kernel's arithmetic as the
//! plainest loop; the functions re-exported here are the fast versions and equal the
//! reference bit for bit (the tests compare them on many shapes, SIMD against forced
//! scalar, and 1, 2 and 3 threads).
//!
//! The rules that make this possible:
//! 1. **One order per output.** Each output element is reduced in one fixed order:
//!    `acc = +0.0; for p in 0..k { acc = fma(a, b, acc) }`.
//! 2. **Vectorize across outputs, never across a reduction.** A SIMD lane holds one
//!    output element (e.g. 16 adjacent columns `j` of `c` share one `p` loop); no
//!    horizontal sums, no split accumulators.
//! 3. **Fused multiply-add everywhere.** Every `c + a·b` (every step of a dot product,
//!    matmul, attention, norm, and every affine `x·γ + β`) is one IEEE 754
//!    fusedMultiplyAdd, rounded once, on *every* path: `_mm512_fmadd_ps`,
//!    `_mm256_fmadd_ps`, `vfmaq_f32`, and [`fmadd`] in scalar code (the CPU's FMA
//!    instruction where it has one, `libm::fmaf` in software where it does not). FMA is
//!    correctly rounded by definition, so hardware and software give the same bits; a
//!    mix of fused and unfused steps would not, which is why no kernel ever writes a
//!    bare `acc += a * b` (Rust never contracts one on its own). Fused is also the fast
//!    choice: one instruction per step instead of two.
//! 4. **Threads split independent outputs.** rayon hands out disjoint blocks of `c`;
//!    each block runs the full `k` loop itself, so thread count cannot change a result.
//! 5. **Transcendentals from `libm`**, a portable software implementation, never the
//!    platform's `expf`.
//!
//! # Layout
//!
//! ```text
//!   kernels/
//!   ├── mod.rs        this contract, dispatch switch, elementwise & row kernels
//!   ├── reference.rs  the naive specification of every kernel
//!   ├── gemm.rs       packed, cache-blocked, register-tiled matmul (+ PackedWeights)
//!   ├── exp.rs        libm::expf over a slice, eight lanes at a time (same bits)
//!   └── attention.rs  multi-head attention with padding/causal masks
//! ```
//!
//! Shapes: kernels take row-major slices with explicit dimensions and one sequence at
//! a time. Validating shapes from untrusted checkpoints is the model loader's job;
//! kernels check lengths with `debug_assert!` (the matmul entry points, which run
//! `unsafe` SIMD code, check with `assert!` so a programming error can never read out
//! of bounds).
#![allow(clippy::too_many_arguments)]

mod attention;
mod exp;
mod gemm;
pub mod reference;

pub use exp::expf_inplace;
pub use gemm::{active_simd, detected_simd, PackedWeights, SimdPath, PANEL};

use std::sync::atomic::{AtomicU8, Ordering};

use crate::ComputeError;

// ----------------------------------------------------------------------------------------
// The scalar switch
// ----------------------------------------------------------------------------------------

/// 0 = not read yet, 1 = SIMD allowed, 2 = scalar forced.
static FORCE_SCALAR: AtomicU8 = AtomicU8::new(0);

/// Forces every kernel onto its portable scalar path (`true`) or lets it use the best
/// SIMD path the CPU has (`false`). Results are identical either way; tests use this to
/// prove it. Overrides the `AGENTIC_FORCE_SCALAR` environment variable.
pub fn set_force_scalar(force: bool) {
    FORCE_SCALAR.store(if force { 2 } else { 1 }, Ordering::Relaxed);
}

/// Whether the scalar path is forced: by [`set_force_scalar`], else by the environment
/// variable `AGENTIC_FORCE_SCALAR=1` (read once).
pub fn force_scalar() -> bool {
    match FORCE_SCALAR.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let forced = std::env::var("AGENTIC_FORCE_SCALAR").is_ok_and(|v| v == "1");
            // Only the first reader initializes; a concurrent `set_force_scalar` wins.
            let _ = FORCE_SCALAR.compare_exchange(
                0,
                if forced { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            FORCE_SCALAR.load(Ordering::Relaxed) == 2
        }
    }
}

/// Whether loops written as plain Rust may run their AVX2+FMA-compiled copy (x86-64
/// with AVX2 and FMA, scalar not forced). The copies compute the same operations in the
/// same order; only the vector width LLVM picks differs.
pub(crate) fn use_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !force_scalar()
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has a hardware FMA instruction that scalar code compiled with the
/// `fma` feature may use (always on aarch64). Independent of the scalar switch: a
/// scalar FMA instruction and `libm::fmaf` give the same bits.
#[allow(dead_code)]
pub(crate) fn has_hw_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

// ----------------------------------------------------------------------------------------
// Fused multiply-add
// ----------------------------------------------------------------------------------------

/// `fma_dispatch!(pub fn name => generic(a: A, b: B))` defines `name(a, b)`, which runs
/// `generic::<HwFma>(a, b)` inside a copy compiled with the `fma` feature when the CPU has
/// FMA (always on aarch64) and `generic::<SoftFma>(a, b)` otherwise. `generic` should be
/// `#[inline(always)]` so its body is compiled inside that copy.
macro_rules! fma_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident => $generic:ident ($($arg:ident : $ty:ty),* $(,)?)) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "fma")]
                #[allow(clippy::too_many_arguments)]
                fn hw($($arg: $ty),*) {
                    $generic::<$crate::kernels::HwFma>($($arg),*)
                }
                if $crate::kernels::has_hw_fma() {
                    // SAFETY: the CPU has FMA.
                    unsafe { hw($($arg),*) };
                    return;
                }
            }
            #[cfg(target_arch = "aarch64")]
            {
                return $generic::<$crate::kernels::HwFma>($($arg),*);
            }
            #[allow(unreachable_code)]
            $generic::<$crate::kernels::SoftFma>($($arg),*)
        }
    };
}
pub(crate) use fma_dispatch;

/// `a·b + c` rounded once (IEEE 754 fusedMultiplyAdd): the one multiply-accumulate every
/// kernel uses. The hardware instruction when this build targets a CPU that has it
/// (aarch64, or x86-64 built with `+fma`), otherwise `libm::fmaf`, a correctly rounded
/// software implementation — the same bits either way.
#[inline(always)]
pub fn fmadd(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(any(target_feature = "fma", target_arch = "aarch64"))]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(any(target_feature = "fma", target_arch = "aarch64")))]
    {
        libm::fmaf(a, b, c)
    }
}

/// How a scalar loop performs its fused multiply-adds; hot loops are generic over it so
/// the same source runs with the instruction (inside a `#[target_feature(enable =
/// "fma")]` copy) or with [`fmadd`].
pub(crate) trait Fma {
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// [`fmadd`]: correct on any CPU.
pub(crate) struct SoftFma;

impl Fma for SoftFma {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        fmadd(a, b, c)
    }
}

/// `f32::mul_add`: a single instruction in code compiled with the `fma` feature (the
/// only place it is used on x86-64); still correctly rounded anywhere else.
#[allow(dead_code)]
pub(crate) struct HwFma;

impl Fma for HwFma {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// Elements per rayon task for the elementwise transcendental kernels.
const MAP_CHUNK: usize = 1 << 14;

/// Applies `f` to every element, in parallel chunks when `x` is large (each element is
/// independent, so the split cannot change a bit).
fn map_inplace(x: &mut [f32], f: fn(f32) -> f32) {
    use rayon::prelude::*;
    if x.len() >= 2 * MAP_CHUNK {
        x.par_chunks_mut(MAP_CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
    } else {
        x.iter_mut().for_each(|v| *v = f(*v));
    }
}

// ----------------------------------------------------------------------------------------
// Matmul family
// ----------------------------------------------------------------------------------------

/// `c[m×n] = a[m×k] · b[k×n]` (row-major). Each `c[i][j]` is
/// `fma(a[i,k−1], b[k−1,j], … fma(a[i,1], b[1,j], fma(a[i,0], b[0,j], +0.0)))`: `p`
/// increasing, each step one fused multiply-add.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm::matmul(a, b, c, m, k, n)
}

/// `c[m×n] = a[m×k] · w[n×k]ᵀ` — Hugging Face `Linear` weight layout (`[out, in]`).
/// Same per-output order as [`matmul`].
pub fn matmul_bt(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm::matmul_bt(a, w, c, m, k, n)
}

/// `out[m×n] = x[m×k] · w[n×k]ᵀ`, then `+ bias[j]` once after the full reduction.
pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    gemm::matmul_bt(x, w, out, m, k, n);
    if let Some(b) = bias {
        add_bias_rows(out, b, n);
    }
}

/// `out[m×n] = x[m×k] · w[k×n]` (GPT-2 `Conv1D` layout), then `+ bias[j]`.
pub fn linear_kn(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    gemm::matmul(x, w, out, m, k, n);
    if let Some(b) = bias {
        add_bias_rows(out, b, n);
    }
}

/// `c[m×n] = a[m×k] · W` for packed weights (`W` as `k×n`); bits equal [`matmul_bt`] on
/// the original `[n×k]` weights.
pub fn matmul_packed(a: &[f32], w: &PackedWeights, c: &mut [f32], m: usize) {
    gemm::matmul_packed(a, w, c, m)
}

/// [`matmul_packed`] then `+ bias[j]`; bits equal [`linear`] / [`linear_kn`].
pub fn linear_packed(
    x: &[f32],
    w: &PackedWeights,
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
) {
    gemm::matmul_packed(x, w, out, m);
    if let Some(b) = bias {
        add_bias_rows(out, b, w.n());
    }
}

/// `out[i, j] += bias[j]` for every row.
fn add_bias_rows(out: &mut [f32], bias: &[f32], n: usize) {
    debug_assert_eq!(bias.len(), n);
    if n == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        add_inplace(row, bias);
    }
}

// ----------------------------------------------------------------------------------------
// Elementwise and row kernels
// ----------------------------------------------------------------------------------------

/// `out[i] = a[i] + b[i]`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    reference::add(a, b, out)
}

/// `acc[i] = acc[i] + b[i]` (residual connections).
pub fn add_inplace(acc: &mut [f32], b: &[f32]) {
    reference::add_inplace(acc, b)
}

/// `out[i] = a[i] · b[i]`.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    reference::mul(a, b, out)
}

/// `x[i] = x[i] · s`.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    reference::scale_inplace(x, s)
}

fma_dispatch! {
    /// Row-wise layer normalization; see [`reference::layer_norm`] for the exact order:
    /// `mean = (Σ x)/cols`, `var = (Σ (x−mean)²)/cols` (fused), `inv = 1/sqrtf(var+eps)`,
    /// `y = fma((x−mean)·inv, gamma, beta)`.
    pub fn layer_norm => layer_norm_with(
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        out: &mut [f32],
        rows: usize,
        cols: usize,
        eps: f32,
    )
}

/// [`reference::layer_norm`], generic over how the FMA runs.
#[inline(always)]
fn layer_norm_with<F: Fma>(
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
    for (xr, or) in x
        .chunks_exact(cols.max(1))
        .zip(out.chunks_exact_mut(cols.max(1)))
        .take(rows)
    {
        let mut s = 0.0f32;
        for v in xr {
            s += *v;
        }
        let mean = s / cols as f32;
        let mut var = 0.0f32;
        for v in xr {
            let d = *v - mean;
            var = F::fma(d, d, var);
        }
        var /= cols as f32;
        let inv = 1.0 / libm::sqrtf(var + eps);
        for ((o, &xv), (&g, &b)) in or.iter_mut().zip(xr).zip(gamma.iter().zip(beta)) {
            *o = F::fma((xv - mean) * inv, g, b);
        }
    }
}

/// Row-wise softmax in place (max-subtracted, `libm::expf`, sum in order, divide).
pub fn softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    reference::softmax_rows(x, rows, cols)
}

/// Row-wise log-softmax in place: `(x − max) − logf(Σ expf(x − max))`.
pub fn log_softmax_rows(x: &mut [f32], rows: usize, cols: usize) {
    reference::log_softmax_rows(x, rows, cols)
}

/// Exact (erf) GELU in place: `(0.5·x)·(1 + erff(x/√2))`.
pub fn gelu_erf(x: &mut [f32]) {
    map_inplace(x, |u| {
        0.5 * u * (1.0 + libm::erff(u / core::f32::consts::SQRT_2))
    })
}

/// GPT-2 `gelu_new` in place: `(0.5·u)·(1 + tanhf(√(2/π)·fma((0.044715·u)·u, u, u)))`.
pub fn gelu_tanh(x: &mut [f32]) {
    use rayon::prelude::*;
    if x.len() >= 2 * MAP_CHUNK {
        x.par_chunks_mut(MAP_CHUNK).for_each(gelu_tanh_chunk);
    } else {
        gelu_tanh_chunk(x);
    }
}

fma_dispatch! {
    fn gelu_tanh_chunk => gelu_tanh_with(x: &mut [f32])
}

#[inline(always)]
fn gelu_tanh_with<F: Fma>(x: &mut [f32]) {
    for v in x.iter_mut() {
        let u = *v;
        let t = libm::tanhf(reference::SQRT_2_OVER_PI * F::fma(0.044715 * u * u, u, u));
        *v = 0.5 * u * (1.0 + t);
    }
}

/// `x = tanhf(x)` in place.
pub fn tanh_inplace(x: &mut [f32]) {
    map_inplace(x, libm::tanhf)
}

/// Gathers rows of `table[vocab×dim]` for `ids` into `out[ids.len()×dim]`.
/// Errors: an id `≥ vocab` → [`ComputeError::TokenOutOfRange`]; inconsistent lengths →
/// [`ComputeError::ShapeMismatch`]. Never panics.
pub fn embedding(
    table: &[f32],
    vocab: usize,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), ComputeError> {
    reference::embedding(table, vocab, dim, ids, out)
}

pub(crate) fn check_embedding(
    table: &[f32],
    vocab: usize,
    dim: usize,
    ids: &[u32],
    out: &mut [f32],
) -> Result<(), ComputeError> {
    if vocab.checked_mul(dim) != Some(table.len()) {
        return Err(ComputeError::ShapeMismatch {
            op: "embedding",
            detail: format!(
                "table has {} values, expected vocab {vocab} × dim {dim}",
                table.len()
            ),
        });
    }
    if ids.len().checked_mul(dim) != Some(out.len()) {
        return Err(ComputeError::ShapeMismatch {
            op: "embedding",
            detail: format!(
                "out has {} values, expected {} ids × dim {dim}",
                out.len(),
                ids.len()
            ),
        });
    }
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(ComputeError::TokenOutOfRange { id, vocab });
    }
    Ok(())
}

/// Multi-head attention over one sequence; `q`, `k`, `v`, `out` are
/// `[seq × heads·head_dim]`. `key_mask[j] == false` excludes key `j` (padding);
/// `causal` excludes keys after the query. A query with no allowed key outputs zeros.
/// The exact arithmetic is [`reference::attention`].
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
    attention::attention(q, k, v, out, seq, heads, head_dim, key_mask, causal)
}

/// Masked mean over `seq` rows of width `dim` (rows added in increasing order, divided
/// by their count; no unmasked row → zeros).
pub fn mean_pool(x: &[f32], mask: &[bool], seq: usize, dim: usize, out: &mut [f32]) {
    reference::mean_pool(x, mask, seq, dim, out)
}

/// `x = x / max(‖x‖₂, 1e-12)`, the sum of squares in order.
pub fn l2_normalize(x: &mut [f32]) {
    reference::l2_normalize(x)
}

/// Index of the largest element (first wins ties; `0` when empty).
pub fn argmax(x: &[f32]) -> usize {
    reference::argmax(x)
}
