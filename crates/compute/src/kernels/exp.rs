//! `libm::expf` over a slice, eight lanes at a time, bit for bit.
//!
//! `libm::expf` (FreeBSD's `e_expf.c`) is a short sequence of IEEE 754 single-precision
//! operations, each rounded once: an argument reduction `x = (x − k·ln2_hi) − k·ln2_lo`,
//! a rational approximation, and a scaling by `2^k`. Every one of those operations has a
//! SIMD instruction with the same rounding (add, sub, mul, div, truncating conversion),
//! so eight lanes can run the very same sequence; the scaling by `2^k` is one multiply by
//! an exactly built power of two, as `scalbnf` does for `−126 ≤ k ≤ 127`.
//!
//! ```text
//!   |x| ≤ 2^-14                 → 1 + x                                 (blended in)
//!   2^-14 < |x| < 87.34         → the reduction and polynomial, k ∈ [−126, 126]
//!   |x| ≥ 87.34, ∞, NaN         → that lane again through libm::expf     (scalar)
//! ```
//!
//! The lanes outside the common range (overflow, underflow to subnormals or zero, NaN)
//! are recomputed by `libm::expf` itself, so no rare branch is re-implemented. The
//! tests compare against `libm::expf` on every class of input; an ignored test checks
//! all 2³² inputs.

/// `x[i] = libm::expf(x[i])` for every element (the same bits).
pub fn expf_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::use_avx2() {
            // SAFETY: `use_avx2` checked that the CPU has AVX2 and FMA.
            unsafe { x86::expf_avx2(x) };
            return;
        }
    }
    for v in x.iter_mut() {
        *v = libm::expf(*v);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    // libm's constants (e_expf.c), by their bits.
    /// 6.9314575195e-01
    const LN2_HI: f32 = f32::from_bits(0x3f31_7200);
    /// 1.4286067653e-06
    const LN2_LO: f32 = f32::from_bits(0x35bf_be8e);
    /// 1.4426950216e+00
    const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b);
    /// 1.6666625440e-1
    const P1: f32 = f32::from_bits(0x3e2a_aa8f);
    /// -2.7667332906e-3
    const P2: f32 = f32::from_bits(0xbb35_5215);

    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn expf_avx2(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: `c` holds 8 floats; the CPU has AVX2.
            unsafe {
                let v = _mm256_loadu_ps(c.as_ptr());
                let (y, special) = lanes(v);
                _mm256_storeu_ps(c.as_mut_ptr(), y);
                if special != 0 {
                    let mut xs = [0.0f32; 8];
                    _mm256_storeu_ps(xs.as_mut_ptr(), v);
                    for (l, e) in c.iter_mut().enumerate() {
                        if special & (1 << l) != 0 {
                            *e = libm::expf(xs[l]);
                        }
                    }
                }
            }
        }
        for e in chunks.into_remainder() {
            *e = libm::expf(*e);
        }
    }

    /// Eight `expf`s; lanes flagged in the returned mask (bit per lane) must be redone by
    /// `libm::expf`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lanes(x: __m256) -> (__m256, i32) {
        let bits = _mm256_castps_si256(x);
        let sign = _mm256_srli_epi32::<31>(bits);
        let hx = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fff_ffff));
        let gt = |c: i32| _mm256_cmpgt_epi32(hx, _mm256_set1_epi32(c));
        // |x| ≥ 87.33655 (0x42aeac50), ∞ or NaN: libm's special cases.
        let special = gt(0x42ae_ac4f);
        // |x| ≤ 2^-14: `1 + x`.
        let tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3900_0001), hx);
        let big = gt(0x3f85_1592);
        let mid = gt(0x3eb1_7218);
        // k: |x| > 1.5 ln2 → (INV_LN2·x + ±0.5) truncated; > 0.5 ln2 → 1 − 2·sign; else 0.
        let neg = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sign, _mm256_set1_epi32(1)));
        let half = _mm256_blendv_ps(_mm256_set1_ps(0.5), _mm256_set1_ps(-0.5), neg);
        let kbig = _mm256_cvttps_epi32(_mm256_add_ps(
            _mm256_mul_ps(_mm256_set1_ps(INV_LN2), x),
            half,
        ));
        let kmid = _mm256_sub_epi32(_mm256_set1_epi32(1), _mm256_add_epi32(sign, sign));
        let k = _mm256_blendv_epi8(_mm256_and_si256(kmid, mid), kbig, big);
        // With k = 0 these give hi = x, lo = +0, x unchanged: libm's small-|x| branch.
        let kf = _mm256_cvtepi32_ps(k);
        let hi = _mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(LN2_HI)));
        let lo = _mm256_mul_ps(kf, _mm256_set1_ps(LN2_LO));
        let r = _mm256_sub_ps(hi, lo);
        let xx = _mm256_mul_ps(r, r);
        let c = _mm256_sub_ps(
            r,
            _mm256_mul_ps(
                xx,
                _mm256_add_ps(_mm256_set1_ps(P1), _mm256_mul_ps(xx, _mm256_set1_ps(P2))),
            ),
        );
        let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(_mm256_set1_ps(2.0), c));
        let one = _mm256_set1_ps(1.0);
        let y = _mm256_add_ps(one, _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
        // scalbnf(y, k) for −126 ≤ k ≤ 127: one multiply by 2^k (k = 0: by 1, exact).
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            k,
            _mm256_set1_epi32(127),
        )));
        let y = _mm256_mul_ps(y, scale);
        let y = _mm256_blendv_ps(y, _mm256_add_ps(one, x), _mm256_castsi256_ps(tiny));
        (y, _mm256_movemask_ps(_mm256_castsi256_ps(special)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(xs: &[f32]) {
        let mut y = xs.to_vec();
        expf_inplace(&mut y);
        for (x, y) in xs.iter().zip(&y) {
            assert_eq!(
                y.to_bits(),
                libm::expf(*x).to_bits(),
                "expf({x:e}) [{:#010x}]",
                x.to_bits()
            );
        }
    }

    #[test]
    fn equals_libm_on_every_class_of_input() {
        let mut xs: Vec<f32> = Vec::new();
        // Every range boundary of e_expf.c, and its neighbours.
        for b in [
            0u32,
            0x3900_0000,
            0x3eb1_7218,
            0x3f85_1592,
            0x42ae_ac50,
            0x42b1_7218,
            0x42cf_f1b5,
            0x7f80_0000,
            0x7fc0_0000,
        ] {
            for d in 0..64u32 {
                for s in [0, 0x8000_0000] {
                    xs.push(f32::from_bits(b.wrapping_add(d) | s));
                    xs.push(f32::from_bits(b.wrapping_sub(d) & 0x7fff_ffff | s));
                }
            }
        }
        // A stride through every bit pattern.
        xs.extend(
            (0..1u64 << 32)
                .step_by(997)
                .map(|b| f32::from_bits(b as u32)),
        );
        // Dense where softmax and SiLU live.
        xs.extend((0..400_000).map(|i| -100.0 + i as f32 * 0.000_3));
        // Odd lengths: the scalar tail.
        check(&xs);
        check(&xs[..xs.len() - 3]);
        check(&xs[1..6]);
    }

    #[test]
    #[ignore = "all 2^32 inputs: a minute in release"]
    fn equals_libm_everywhere() {
        let mut buf = vec![0.0f32; 1 << 20];
        for hi in 0..1u64 << 12 {
            for (i, v) in buf.iter_mut().enumerate() {
                *v = f32::from_bits(((hi << 20) | i as u64) as u32);
            }
            let mut y = buf.clone();
            expf_inplace(&mut y);
            for (x, y) in buf.iter().zip(&y) {
                assert_eq!(
                    y.to_bits(),
                    libm::expf(*x).to_bits(),
                    "{:#010x}",
                    x.to_bits()
                );
            }
        }
    }
}
