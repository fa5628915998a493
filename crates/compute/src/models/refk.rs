//! Temporary reference kernels (same signatures and arithmetic as `crate::kernels`'s
//! reference versions) until the kernels work lands them.
#![allow(dead_code, clippy::too_many_arguments)]

pub fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += x[i * k + p] * w[j * k + p];
            }
            out[i * n + j] = match bias {
                Some(b) => acc + b[j],
                None => acc,
            };
        }
    }
}

pub fn linear_kn(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += x[i * k + p] * w[p * n + j];
            }
            out[i * n + j] = match bias {
                Some(b) => acc + b[j],
                None => acc,
            };
        }
    }
}

pub fn add_inplace(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

pub fn layer_norm(
    x: &[f32],
    g: &[f32],
    b: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    eps: f32,
) {
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
            var += d * d;
        }
        var /= cols as f32;
        let inv = 1.0 / libm::sqrtf(var + eps);
        for c in 0..cols {
            out[r * cols + c] = (xr[c] - mean) * inv * g[c] + b[c];
        }
    }
}

pub fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + libm::erff(*v / core::f32::consts::SQRT_2));
    }
}

pub fn gelu_tanh(x: &mut [f32]) {
    for v in x.iter_mut() {
        let u = *v;
        *v = 0.5 * u * (1.0 + libm::tanhf(0.797_884_6 * (u + 0.044715 * u * u * u)));
    }
}

pub fn tanh_inplace(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = libm::tanhf(*v);
    }
}

pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    seq: usize,
    heads: usize,
    hd: usize,
    _mask: Option<&[bool]>,
    _causal: bool,
) {
    let d = heads * hd;
    let scale = 1.0 / libm::sqrtf(hd as f32);
    let mut s = vec![0.0f32; seq];
    for i in 0..seq {
        for h in 0..heads {
            let mut max = f32::NEG_INFINITY;
            for j in 0..seq {
                let mut acc = 0.0f32;
                for e in 0..hd {
                    acc += q[i * d + h * hd + e] * k[j * d + h * hd + e];
                }
                s[j] = acc * scale;
                if s[j] > max {
                    max = s[j];
                }
            }
            let mut sum = 0.0f32;
            for j in 0..seq {
                s[j] = libm::expf(s[j] - max);
                sum += s[j];
            }
            for e in 0..hd {
                let mut acc = 0.0f32;
                for j in 0..seq {
                    acc += (s[j] / sum) * v[j * d + h * hd + e];
                }
                out[i * d + h * hd + e] = acc;
            }
        }
    }
}

pub fn mean_pool(x: &[f32], mask: &[bool], seq: usize, dim: usize, out: &mut [f32]) {
    let mut n = 0usize;
    out.iter_mut().for_each(|o| *o = 0.0);
    for r in 0..seq {
        if mask[r] {
            n += 1;
            for e in 0..dim {
                out[e] += x[r * dim + e];
            }
        }
    }
    for o in out.iter_mut() {
        *o /= n.max(1) as f32;
    }
}

pub fn l2_normalize(x: &mut [f32]) {
    let mut s = 0.0f32;
    for v in x.iter() {
        s += *v * *v;
    }
    let n = libm::sqrtf(s).max(1e-12);
    for v in x.iter_mut() {
        *v /= n;
    }
}
