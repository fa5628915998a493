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
    /// `c[m×n] = a[m×k]·b[k×n]` in the order of [`super::ops::matmul_generic`]:
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
        super::ops::matmul_generic(a, b, c, m, k, n)
    }
    fn extend_le_bytes(xs: &[Self], out: &mut Vec<u8>) {
        out.reserve(xs.len() * 8);
        for x in xs {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}
