//! Multi-head attention that reproduces [`super::reference::attention`] bit for bit.
//!
//! Per head, the allowed keys (by the padding mask) are gathered once into a compact,
//! transposed key block `kt[e][jj]` and a compact value block `vc[jj][e]`. Then, for
//! each query row `i` (with causal masking the allowed keys are a prefix of that
//! compact list, since it is sorted):
//!
//! ```text
//!   s[jj]  = Σ_e q[i,e]·kt[e][jj]        e in order; lanes = keys jj   (vectorized)
//!   s[jj] *= scale
//!   mx = max s;  s = expf(s − mx);  sum = Σ s (jj order);  s /= sum   (scalar, libm)
//!   o[e]   = Σ_jj s[jj]·vc[jj][e]        jj in order; lanes = e        (vectorized)
//! ```
//!
//! Each output keeps the reference's order: the score of key `j` sums over `e` in
//! order, the softmax runs over allowed keys in increasing `j`, and the output sums over
//! allowed keys in increasing `j` — the compact lists only drop the keys the reference
//! skips. SIMD lanes hold different keys (scores) or different `e` (outputs), never
//! parts of one sum. Every accumulation is a fused multiply-add. The loops are plain
//! Rust, generic over how the FMA is done, compiled again with AVX2+FMA (and with FMA
//! alone) for CPUs that have them; heads run in parallel with rayon, each writing its
//! own buffer.

use rayon::prelude::*;

/// Below this many score multiply-adds the heads run on the calling thread.
const PAR_THRESHOLD: usize = 1 << 18;

#[allow(clippy::too_many_arguments)]
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
    assert!(
        q.len() == seq * d && k.len() == seq * d && v.len() == seq * d && out.len() == seq * d,
        "attention: q, k, v, out must be seq × heads·head_dim"
    );
    assert!(
        key_mask.is_none_or(|m| m.len() == seq),
        "attention: key_mask must have seq entries"
    );
    if seq == 0 || d == 0 {
        return;
    }
    // Compact list of keys the padding mask allows, increasing.
    let keys: Vec<usize> = (0..seq)
        .filter(|&j| key_mask.is_none_or(|m| m[j]))
        .collect();
    let avx2 = super::use_avx2();
    let run = |h: usize| -> Vec<f32> {
        let mut o = vec![0.0f32; seq * head_dim];
        let args = Head {
            q,
            k,
            v,
            seq,
            d,
            head_dim,
            off: h * head_dim,
            keys: &keys,
            causal,
        };
        #[cfg(target_arch = "x86_64")]
        {
            if avx2 {
                // SAFETY: `use_avx2` checked that the CPU has AVX2 and FMA.
                unsafe { head_avx2(&args, &mut o) };
                return o;
            }
            if super::has_hw_fma() {
                // SAFETY: the CPU has FMA.
                unsafe { head_fma(&args, &mut o) };
                return o;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            let _ = avx2;
            head::<super::HwFma>(&args, &mut o);
            return o;
        }
        #[allow(unreachable_code)]
        {
            let _ = avx2;
            head::<super::SoftFma>(&args, &mut o);
            o
        }
    };
    let per_head: Vec<Vec<f32>> = if seq * seq * d >= PAR_THRESHOLD && heads > 1 {
        (0..heads).into_par_iter().map(run).collect()
    } else {
        (0..heads).map(run).collect()
    };
    for (h, o) in per_head.iter().enumerate() {
        for i in 0..seq {
            out[i * d + h * head_dim..i * d + (h + 1) * head_dim]
                .copy_from_slice(&o[i * head_dim..(i + 1) * head_dim]);
        }
    }
}

struct Head<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    seq: usize,
    d: usize,
    head_dim: usize,
    off: usize,
    keys: &'a [usize],
    causal: bool,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn head_avx2(h: &Head<'_>, o: &mut [f32]) {
    head::<super::HwFma>(h, o)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn head_fma(h: &Head<'_>, o: &mut [f32]) {
    head::<super::HwFma>(h, o)
}

/// One head into `o[seq × head_dim]`.
#[inline(always)]
fn head<F: super::Fma>(h: &Head<'_>, o: &mut [f32]) {
    let (seq, d, hd, off) = (h.seq, h.d, h.head_dim, h.off);
    let nk = h.keys.len();
    let scale = 1.0 / libm::sqrtf(hd as f32);
    // kt[e][jj], vc[jj][e] over the mask-allowed keys.
    let mut kt = vec![0.0f32; hd * nk];
    let mut vc = vec![0.0f32; nk * hd];
    for (jj, &j) in h.keys.iter().enumerate() {
        let krow = &h.k[j * d + off..j * d + off + hd];
        for (e, &x) in krow.iter().enumerate() {
            kt[e * nk + jj] = x;
        }
        vc[jj * hd..(jj + 1) * hd].copy_from_slice(&h.v[j * d + off..j * d + off + hd]);
    }
    let mut s = vec![0.0f32; nk];
    let mut allowed = 0usize; // causal: keys[..allowed] are ≤ i
    for i in 0..seq {
        let orow = &mut o[i * hd..(i + 1) * hd];
        let len = if h.causal {
            while allowed < nk && h.keys[allowed] <= i {
                allowed += 1;
            }
            allowed
        } else {
            nk
        };
        if len == 0 {
            orow.fill(0.0);
            continue;
        }
        let s = &mut s[..len];
        s.fill(0.0);
        let qrow = &h.q[i * d + off..i * d + off + hd];
        for (e, &qe) in qrow.iter().enumerate() {
            let kr = &kt[e * nk..e * nk + len];
            for (sj, &kj) in s.iter_mut().zip(kr) {
                *sj = F::fma(qe, kj, *sj);
            }
        }
        let mut mx = f32::NEG_INFINITY;
        for sj in s.iter_mut() {
            *sj *= scale;
            if *sj > mx {
                mx = *sj;
            }
        }
        let mut sum = 0.0f32;
        for sj in s.iter_mut() {
            *sj = libm::expf(*sj - mx);
            sum += *sj;
        }
        for sj in s.iter_mut() {
            *sj /= sum;
        }
        orow.fill(0.0);
        for (jj, &p) in s.iter().enumerate() {
            let vr = &vc[jj * hd..(jj + 1) * hd];
            for (oe, &ve) in orow.iter_mut().zip(vr) {
                *oe = F::fma(p, ve, *oe);
            }
        }
    }
}
