//! The scalar type training is written over.
//!
//! Every training routine is generic over [`Real`] so the *same* code runs in
//! `f32` (production: bitwise deterministic, hashed into traces) and in `f64`
//! (gradient checks: finite differences need the extra precision to prove a
//! hand-written backward right to ~1e-7). Transcendentals come from `libm`
//! (portable, pure Rust, identical bits on every CPU); `sqrt` is the IEEE
//! correctly rounded square root, exact on every platform.

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use rayon::prelude::*;

/// A floating-point scalar: `f32` for real runs, `f64` for gradient checks.
pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + PartialOrd
    + Debug
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Bytes per element in the canonical little-endian encoding.
    const BYTES: usize;
    /// Rounds an `f64` constant to this type (round to nearest).
    fn from_f64(x: f64) -> Self;
    /// Widens to `f64` (exact for both implementors).
    fn to_f64(self) -> f64;
    /// `e^x` via `libm`.
    fn exp(self) -> Self;
    /// Natural logarithm via `libm`.
    fn ln(self) -> Self;
    /// Correctly rounded square root.
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent via `libm`.
    fn tanh(self) -> Self;
    /// Appends the little-endian bytes of every element of `xs` to `out`.
    fn extend_le_bytes(xs: &[Self], out: &mut Vec<u8>);
    /// `self·b + c` rounded once (IEEE fused multiply-add; exact on every CPU).
    fn fma(self, b: Self, c: Self) -> Self;
    /// `c[m×n] = a[m×k]·b[k×n]` in the order of [`matmul_generic`]:
    /// `f32` runs the inference kernel (`crate::kernels::matmul`, same bits, SIMD),
    /// `f64` the generic loop.
    fn matmul(a: &[Self], b: &[Self], c: &mut [Self], m: usize, k: usize, n: usize);
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const BYTES: usize = 4;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn exp(self) -> Self {
        libm::expf(self)
    }
    fn ln(self) -> Self {
        libm::logf(self)
    }
    fn sqrt(self) -> Self {
        libm::sqrtf(self)
    }
    fn tanh(self) -> Self {
        libm::tanhf(self)
    }
    fn fma(self, b: Self, c: Self) -> Self {
        crate::kernels::fmadd(self, b, c)
    }
    fn matmul(a: &[Self], b: &[Self], c: &mut [Self], m: usize, k: usize, n: usize) {
        crate::kernels::matmul(a, b, c, m, k, n)
    }
    fn extend_le_bytes(xs: &[Self], out: &mut Vec<u8>) {
        out.reserve(xs.len() * 4);
        for x in xs {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const BYTES: usize = 8;
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        libm::exp(self)
    }
    fn ln(self) -> Self {
        libm::log(self)
    }
    fn sqrt(self) -> Self {
        libm::sqrt(self)
    }
    fn tanh(self) -> Self {
        libm::tanh(self)
    }
    fn fma(self, b: Self, c: Self) -> Self {
        libm::fma(self, b, c)
    }
    fn matmul(a: &[Self], b: &[Self], c: &mut [Self], m: usize, k: usize, n: usize) {
        matmul_generic(a, b, c, m, k, n)
    }
    fn extend_le_bytes(xs: &[Self], out: &mut Vec<u8>) {
        out.reserve(xs.len() * 8);
        for x in xs {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Rows of output handed to one rayon task in [`matmul_generic`].
const ROWS_PER_TASK: usize = 8;

/// `c[m×n] = a[m×k] · b[k×n]`, row-major. Each `c[i][j]` is `acc = fma(a[i,p],
/// b[p,j], acc)` over `p` increasing from `acc = 0` — the order of
/// `crate::kernels::matmul`, so both give identical bits. The loop runs `i, p, j`
/// so the inner loop runs across independent outputs `j`.
// Index loops spell out the reduction order on purpose.
#[allow(clippy::needless_range_loop)]
pub fn matmul_generic<T: Real>(a: &[T], b: &[T], c: &mut [T], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k, "matmul: a is not m×k");
    assert_eq!(b.len(), k * n, "matmul: b is not k×n");
    assert_eq!(c.len(), m * n, "matmul: c is not m×n");
    if n == 0 {
        return;
    }
    c.par_chunks_mut(n * ROWS_PER_TASK)
        .enumerate()
        .for_each(|(blk, cblock)| {
            let rows = cblock.len() / n;
            cblock.fill(T::ZERO);
            let i0 = blk * ROWS_PER_TASK;
            // Four rows at a time share each loaded row of `b`; every element
            // still sees p = 0, 1, 2, … in order.
            let mut r = 0;
            while r + 4 <= rows {
                let (c0, rest) = cblock[r * n..(r + 4) * n].split_at_mut(n);
                let (c1, rest) = rest.split_at_mut(n);
                let (c2, c3) = rest.split_at_mut(n);
                let a0 = &a[(i0 + r) * k..(i0 + r + 1) * k];
                let a1 = &a[(i0 + r + 1) * k..(i0 + r + 2) * k];
                let a2 = &a[(i0 + r + 2) * k..(i0 + r + 3) * k];
                let a3 = &a[(i0 + r + 3) * k..(i0 + r + 4) * k];
                for p in 0..k {
                    let brow = &b[p * n..(p + 1) * n];
                    let (x0, x1, x2, x3) = (a0[p], a1[p], a2[p], a3[p]);
                    for j in 0..n {
                        let bj = brow[j];
                        c0[j] = x0.fma(bj, c0[j]);
                        c1[j] = x1.fma(bj, c1[j]);
                        c2[j] = x2.fma(bj, c2[j]);
                        c3[j] = x3.fma(bj, c3[j]);
                    }
                }
                r += 4;
            }
            while r < rows {
                let crow = &mut cblock[r * n..(r + 1) * n];
                let arow = &a[(i0 + r) * k..(i0 + r + 1) * k];
                for (p, &x) in arow.iter().enumerate() {
                    let brow = &b[p * n..(p + 1) * n];
                    for (cj, &bj) in crow.iter_mut().zip(brow) {
                        *cj = x.fma(bj, *cj);
                    }
                }
                r += 1;
            }
        });
}
