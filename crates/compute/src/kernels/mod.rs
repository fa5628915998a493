//! Deterministic kernels.
//!
//! REFERENCE IMPLEMENTATIONS: these naive versions define the exact arithmetic
//! (operation order, no FMA) that the optimized kernels must reproduce bit for bit.
//! The kernels work replaces the bodies with blocked/SIMD/rayon versions that keep
//! these signatures and these results.
//!
//! Rules every kernel follows:
//! - each output element is reduced in one fixed order: `acc = 0.0; for p in 0..k { acc = acc + a*b }`
//!   (separate multiply then add, never fused);
//! - vectorization and threads split independent outputs only;
//! - transcendentals come from `libm`.

/// `c[m×n] = a[m×k] · b[k×n]` (all row-major). Each `c[i][j]` is
/// `((0 + a[i,0]*b[0,j]) + a[i,1]*b[1,j]) + …` in increasing `p`, multiply then add.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k);
    assert_eq!(b.len(), k * n);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = acc;
        }
    }
}

/// `c[m×n] = a[m×k] · w[n×k]ᵀ` — the layout of Hugging Face `Linear` weights (`[out, in]`).
/// Same per-output order as [`matmul`]: `p` increasing from 0, multiply then add.
pub fn matmul_bt(a: &[f32], w: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k);
    assert_eq!(w.len(), n * k);
    assert_eq!(c.len(), m * n);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a[i * k + p] * w[j * k + p];
            }
            c[i * n + j] = acc;
        }
    }
}
