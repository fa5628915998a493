//! The kernels' determinism contract, checked: every fast kernel equals the naive
//! reference bit for bit — on odd shapes, on the SIMD and the forced-scalar path, at 1,
//! 2 and 3 rayon threads — and two golden hashes that any machine must reproduce.

use agentic_compute::kernels::{self, reference, PackedWeights};
use proptest::prelude::*;

/// A tiny deterministic generator (no OS randomness): 64-bit LCG, top bits → [-1, 1).
struct Lcg(u64);

impl Lcg {
    fn next_f32(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn assert_same_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i} differs: {} vs reference {}",
            got[i], want[i]
        );
    }
}

fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

/// Every matmul entry point against the reference for one shape.
fn check_matmul_shape(m: usize, k: usize, n: usize, seed: u64) {
    let mut g = Lcg(seed);
    let a = g.vec(m * k);
    let b = g.vec(k * n);
    let w = g.vec(n * k);
    let bias = g.vec(n);
    let what = format!("{m}×{k}×{n}");

    let mut want = vec![0.0; m * n];
    reference::matmul(&a, &b, &mut want, m, k, n);
    let mut got = vec![f32::NAN; m * n];
    kernels::matmul(&a, &b, &mut got, m, k, n);
    assert_same_bits(&got, &want, &format!("matmul {what}"));
    let mut got = vec![f32::NAN; m * n];
    kernels::matmul_packed(&a, &PackedWeights::from_kn(&b, k, n), &mut got, m);
    assert_same_bits(&got, &want, &format!("matmul_packed(from_kn) {what}"));

    let mut want = vec![0.0; m * n];
    reference::matmul_bt(&a, &w, &mut want, m, k, n);
    let mut got = vec![f32::NAN; m * n];
    kernels::matmul_bt(&a, &w, &mut got, m, k, n);
    assert_same_bits(&got, &want, &format!("matmul_bt {what}"));
    let mut got = vec![f32::NAN; m * n];
    kernels::matmul_packed(&a, &PackedWeights::new(&w, n, k), &mut got, m);
    assert_same_bits(&got, &want, &format!("matmul_packed(new) {what}"));

    let mut want = vec![0.0; m * n];
    reference::linear(&a, &w, Some(&bias), &mut want, m, k, n);
    let mut got = vec![0.0; m * n];
    kernels::linear(&a, &w, Some(&bias), &mut got, m, k, n);
    assert_same_bits(&got, &want, &format!("linear {what}"));
    let mut got = vec![0.0; m * n];
    kernels::linear_packed(&a, &PackedWeights::new(&w, n, k), Some(&bias), &mut got, m);
    assert_same_bits(&got, &want, &format!("linear_packed {what}"));

    let mut want = vec![0.0; m * n];
    reference::linear_kn(&a, &b, Some(&bias), &mut want, m, k, n);
    let mut got = vec![0.0; m * n];
    kernels::linear_kn(&a, &b, Some(&bias), &mut got, m, k, n);
    assert_same_bits(&got, &want, &format!("linear_kn {what}"));
}

const ODD: [usize; 9] = [1, 2, 3, 13, 17, 32, 63, 65, 129];

#[test]
fn matmul_equals_reference_on_odd_shapes() {
    let mut seed = 1;
    for &m in &ODD {
        for &k in &[1usize, 3, 17, 64, 65] {
            for &n in &ODD {
                check_matmul_shape(m, k, n, seed);
                seed += 1;
            }
        }
    }
}

#[test]
fn matmul_equals_reference_across_k_blocks_and_threads() {
    // k > one k-block (partial sums re-loaded from c), n over several panels, m over
    // several row blocks, n over more than one 2048-column block.
    for &(m, k, n) in &[
        (200, 300, 161),
        (97, 513, 70),
        (257, 129, 300),
        (1, 700, 33),
        (3, 40, 2100),
        (300, 400, 290), // ≥ 2^25 multiply-adds: the parallel path
    ] {
        for threads in [1, 2, 3] {
            in_pool(threads, || check_matmul_shape(m, k, n, (m * k * n) as u64));
        }
    }
}

#[test]
fn matmul_of_empty_shapes() {
    let mut c = vec![7.0f32; 6];
    kernels::matmul(&[], &[], &mut c, 2, 0, 3);
    assert_eq!(c, vec![0.0; 6], "k = 0 gives zeros, like the reference");
    let mut c: Vec<f32> = vec![];
    kernels::matmul(&[1.0, 2.0], &[], &mut c, 1, 2, 0);
    kernels::matmul(&[], &[1.0, 2.0], &mut c, 0, 1, 2);
}

#[test]
fn matmul_keeps_signed_zeros_and_non_finite_values_like_the_reference() {
    // -0.0 products added to the +0.0 start give +0.0; inf·0 gives NaN; all must match.
    let (m, k, n) = (5, 7, 37);
    let mut g = Lcg(99);
    let mut a = g.vec(m * k);
    let mut b = g.vec(k * n);
    a[0] = -0.0;
    a[3] = f32::INFINITY;
    b[5] = -0.0;
    b[n + 1] = 0.0;
    b[2 * n + 4] = f32::NAN;
    b[40] = f32::NEG_INFINITY;
    let mut want = vec![0.0; m * n];
    reference::matmul(&a, &b, &mut want, m, k, n);
    let mut got = vec![0.0; m * n];
    kernels::matmul(&a, &b, &mut got, m, k, n);
    assert_eq!(bits(&got), bits(&want));
}

#[test]
fn simd_path_equals_forced_scalar_path() {
    // The only test that flips the global switch; results must not depend on it.
    let shapes = [(33, 65, 47), (128, 256, 96), (7, 300, 129)];
    let mut results = Vec::new();
    for force in [false, true] {
        kernels::set_force_scalar(force);
        assert_eq!(kernels::force_scalar(), force);
        let mut per_shape = Vec::new();
        for &(m, k, n) in &shapes {
            let mut g = Lcg((m + k + n) as u64);
            let a = g.vec(m * k);
            let b = g.vec(k * n);
            let mut c = vec![0.0; m * n];
            kernels::matmul(&a, &b, &mut c, m, k, n);
            let mut c2 = vec![0.0; m * n];
            kernels::matmul_bt(&a, &b, &mut c2, m, k, n);
            let (q, kk, v) = (g.vec(m * 64), g.vec(m * 64), g.vec(m * 64));
            let mask: Vec<bool> = (0..m).map(|i| i % 3 != 1).collect();
            let mut att = vec![0.0; m * 64];
            kernels::attention(&q, &kk, &v, &mut att, m, 4, 16, Some(&mask), true);
            per_shape.push((bits(&c), bits(&c2), bits(&att)));
        }
        results.push(per_shape);
    }
    kernels::set_force_scalar(false);
    assert!(results[0] == results[1], "SIMD and scalar paths disagree");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matmul_equals_reference_on_random_shapes(m in 1usize..80, k in 1usize..300, n in 1usize..100, seed in any::<u64>()) {
        check_matmul_shape(m, k, n, seed);
    }

    #[test]
    fn attention_equals_reference(seq in 1usize..40, heads in 1usize..4, head_dim in 1usize..40,
                                  causal in any::<bool>(), masked in proptest::collection::vec(any::<bool>(), 40),
                                  use_mask in any::<bool>(), seed in any::<u64>()) {
        let d = heads * head_dim;
        let mut g = Lcg(seed);
        let (q, k, v) = (g.vec(seq * d), g.vec(seq * d), g.vec(seq * d));
        let mask = &masked[..seq];
        let key_mask = use_mask.then_some(mask);
        let mut want = vec![0.0; seq * d];
        reference::attention(&q, &k, &v, &mut want, seq, heads, head_dim, key_mask, causal);
        let mut got = vec![f32::NAN; seq * d];
        kernels::attention(&q, &k, &v, &mut got, seq, heads, head_dim, key_mask, causal);
        prop_assert_eq!(bits(&got), bits(&want));
    }

    #[test]
    fn row_kernels_equal_reference(rows in 1usize..6, cols in 1usize..200, seed in any::<u64>()) {
        let mut g = Lcg(seed);
        let x: Vec<f32> = g.vec(rows * cols).iter().map(|v| v * 8.0).collect();
        let (gamma, beta) = (g.vec(cols), g.vec(cols));

        let mut want = vec![0.0; rows * cols];
        reference::layer_norm(&x, &gamma, &beta, &mut want, rows, cols, 1e-12);
        let mut got = vec![0.0; rows * cols];
        kernels::layer_norm(&x, &gamma, &beta, &mut got, rows, cols, 1e-12);
        prop_assert_eq!(bits(&got), bits(&want));

        let (mut want, mut got) = (x.clone(), x.clone());
        reference::softmax_rows(&mut want, rows, cols);
        kernels::softmax_rows(&mut got, rows, cols);
        prop_assert_eq!(bits(&got), bits(&want));

        let (mut want, mut got) = (x.clone(), x.clone());
        reference::log_softmax_rows(&mut want, rows, cols);
        kernels::log_softmax_rows(&mut got, rows, cols);
        prop_assert_eq!(bits(&got), bits(&want));

        for (name, r, f) in [
            ("gelu_erf", reference::gelu_erf as fn(&mut [f32]), kernels::gelu_erf as fn(&mut [f32])),
            ("gelu_tanh", reference::gelu_tanh, kernels::gelu_tanh),
            ("tanh", reference::tanh_inplace, kernels::tanh_inplace),
            ("l2_normalize", reference::l2_normalize, kernels::l2_normalize),
        ] {
            let (mut want, mut got) = (x.clone(), x.clone());
            r(&mut want);
            f(&mut got);
            prop_assert_eq!(bits(&got), bits(&want), "{}", name);
        }

        let y = g.vec(rows * cols);
        let (mut want, mut got) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        reference::add(&x, &y, &mut want);
        kernels::add(&x, &y, &mut got);
        prop_assert_eq!(bits(&got), bits(&want));
        reference::mul(&x, &y, &mut want);
        kernels::mul(&x, &y, &mut got);
        prop_assert_eq!(bits(&got), bits(&want));
        let (mut want, mut got) = (x.clone(), x.clone());
        reference::add_inplace(&mut want, &y);
        kernels::add_inplace(&mut got, &y);
        prop_assert_eq!(bits(&got), bits(&want));
        reference::scale_inplace(&mut want, 0.37);
        kernels::scale_inplace(&mut got, 0.37);
        prop_assert_eq!(bits(&got), bits(&want));

        let mask: Vec<bool> = (0..rows).map(|r| (seed >> r) & 1 == 1).collect();
        let (mut want, mut got) = (vec![0.0; cols], vec![0.0; cols]);
        reference::mean_pool(&x, &mask, rows, cols, &mut want);
        kernels::mean_pool(&x, &mask, rows, cols, &mut got);
        prop_assert_eq!(bits(&got), bits(&want));
        prop_assert_eq!(kernels::argmax(&x), reference::argmax(&x));
    }
}

/// Attention against a second, independently written formulation (per query: gather
/// the allowed keys, softmax over them, weighted sum) — checks the *semantics* of the
/// masks, not just agreement between the two kernel versions.
#[test]
fn attention_masks_mean_what_they_say() {
    let (seq, heads, hd) = (6, 2, 4);
    let d = heads * hd;
    let mut g = Lcg(7);
    let (q, k, v) = (g.vec(seq * d), g.vec(seq * d), g.vec(seq * d));
    let mask = [true, true, false, true, false, true];
    for causal in [false, true] {
        let mut out = vec![0.0; seq * d];
        kernels::attention(&q, &k, &v, &mut out, seq, heads, hd, Some(&mask), causal);
        for i in 0..seq {
            for h in 0..heads {
                let keys: Vec<usize> = (0..seq)
                    .filter(|&j| mask[j] && (!causal || j <= i))
                    .collect();
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        (0..hd)
                            .map(|e| (q[i * d + h * hd + e] * k[j * d + h * hd + e]) as f64)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = ex.iter().sum();
                for e in 0..hd {
                    let want: f64 = keys
                        .iter()
                        .zip(&ex)
                        .map(|(&j, p)| p / z * v[j * d + h * hd + e] as f64)
                        .sum();
                    let got = out[i * d + h * hd + e] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "causal={causal} i={i} h={h} e={e}: {got} vs {want}"
                    );
                }
            }
        }
    }
    // Values of masked keys cannot leak: poisoning them changes nothing.
    let mut v2 = v.clone();
    let mut k2 = k.clone();
    for j in [2usize, 4] {
        for x in &mut v2[j * d..(j + 1) * d] {
            *x = f32::NAN;
        }
        for x in &mut k2[j * d..(j + 1) * d] {
            *x = 1e30;
        }
    }
    let (mut a, mut b) = (vec![0.0; seq * d], vec![0.0; seq * d]);
    kernels::attention(&q, &k, &v, &mut a, seq, heads, hd, Some(&mask), false);
    kernels::attention(&q, &k2, &v2, &mut b, seq, heads, hd, Some(&mask), false);
    assert_eq!(bits(&a), bits(&b));
    // A query with every key masked outputs zeros.
    let none = [false; 6];
    kernels::attention(&q, &k, &v, &mut a, seq, heads, hd, Some(&none), false);
    assert!(a.iter().all(|x| x.to_bits() == 0));
}

#[test]
fn embedding_rejects_bad_ids_and_shapes() {
    let table: Vec<f32> = (0..12).map(|x| x as f32).collect(); // vocab 4 × dim 3
    let mut out = vec![0.0; 6];
    kernels::embedding(&table, 4, 3, &[3, 1], &mut out).expect("valid ids");
    assert_eq!(out, vec![9.0, 10.0, 11.0, 3.0, 4.0, 5.0]);
    let err = kernels::embedding(&table, 4, 3, &[1, 4], &mut out).expect_err("id 4 ≥ vocab 4");
    assert!(matches!(
        err,
        agentic_compute::ComputeError::TokenOutOfRange { id: 4, vocab: 4 }
    ));
    assert!(
        kernels::embedding(&table, 5, 3, &[1], &mut out[..3]).is_err(),
        "table/vocab mismatch"
    );
    assert!(
        kernels::embedding(&table, 4, 3, &[1], &mut out).is_err(),
        "out/ids mismatch"
    );
}

#[test]
fn argmax_takes_the_first_maximum() {
    assert_eq!(kernels::argmax(&[1.0, 3.0, 2.0, 3.0]), 1);
    assert_eq!(kernels::argmax(&[]), 0);
    assert_eq!(kernels::argmax(&[-1.0]), 0);
}

fn hash_f32(x: &[f32]) -> String {
    let mut h = blake3::Hasher::new();
    for v in x {
        h.update(&v.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Any machine, any thread count, any SIMD path must produce these exact bytes.
#[test]
fn golden_hashes() {
    let mut g = Lcg(2024);
    let (m, k, n) = (64, 64, 64);
    let a = g.vec(m * k);
    let b = g.vec(k * n);
    let mut c = vec![0.0; m * n];
    kernels::matmul(&a, &b, &mut c, m, k, n);
    let matmul_hash = hash_f32(&c);
    let mut c_ref = vec![0.0; m * n];
    reference::matmul(&a, &b, &mut c_ref, m, k, n);
    assert_eq!(hash_f32(&c_ref), matmul_hash);

    let (seq, heads, hd) = (16, 4, 16);
    let d = heads * hd;
    let (q, kk, v) = (g.vec(seq * d), g.vec(seq * d), g.vec(seq * d));
    let mask: Vec<bool> = (0..seq).map(|j| j < 13).collect();
    let mut att = vec![0.0; seq * d];
    kernels::attention(&q, &kk, &v, &mut att, seq, heads, hd, Some(&mask), true);
    let attention_hash = hash_f32(&att);
    let mut att_ref = vec![0.0; seq * d];
    reference::attention(&q, &kk, &v, &mut att_ref, seq, heads, hd, Some(&mask), true);
    assert_eq!(hash_f32(&att_ref), attention_hash);

    assert_eq!(attention_hash, GOLDEN_ATTENTION, "attention golden");
    assert_eq!(matmul_hash, GOLDEN_MATMUL, "64×64 matmul golden");
}

const GOLDEN_MATMUL: &str = "761c9285295d0b8bcc0b2a7a93182d4be1221415ab3607ad5650e42edd500d32";
const GOLDEN_ATTENTION: &str = "8fed82c8bcbbea19ec00276e8991a1a01dfc523b6b8f1d9e043227ac1d1a4603";

#[test]
fn attention_and_activations_equal_reference_at_any_thread_count() {
    let (seq, heads, hd) = (77, 6, 24);
    let d = heads * hd;
    let mut g = Lcg(31);
    let (q, k, v) = (g.vec(seq * d), g.vec(seq * d), g.vec(seq * d));
    let mask: Vec<bool> = (0..seq).map(|j| j % 5 != 3 && j < 70).collect();
    let x: Vec<f32> = g.vec(70_001).iter().map(|v| v * 6.0).collect();
    for (key_mask, causal) in [
        (None, false),
        (Some(&mask[..]), false),
        (None, true),
        (Some(&mask[..]), true),
    ] {
        let mut want = vec![0.0; seq * d];
        reference::attention(&q, &k, &v, &mut want, seq, heads, hd, key_mask, causal);
        for threads in [1, 2, 3] {
            let got = in_pool(threads, || {
                let mut got = vec![f32::NAN; seq * d];
                kernels::attention(&q, &k, &v, &mut got, seq, heads, hd, key_mask, causal);
                got
            });
            assert_same_bits(
                &got,
                &want,
                &format!(
                    "attention mask={} causal={causal} threads={threads}",
                    key_mask.is_some()
                ),
            );
        }
    }
    for (name, r, f) in [
        (
            "gelu_erf",
            reference::gelu_erf as fn(&mut [f32]),
            kernels::gelu_erf as fn(&mut [f32]),
        ),
        ("gelu_tanh", reference::gelu_tanh, kernels::gelu_tanh),
        ("tanh", reference::tanh_inplace, kernels::tanh_inplace),
    ] {
        let mut want = x.clone();
        r(&mut want);
        for threads in [1, 3] {
            let got = in_pool(threads, || {
                let mut got = x.clone();
                f(&mut got);
                got
            });
            assert_same_bits(&got, &want, name);
        }
    }
}

/// The scalar fused multiply-add (`kernels::fmadd`), software `libm::fmaf` and the
/// CPU's instruction (`f32::mul_add`) agree bit for bit — including the cases where a
/// rounded product followed by a rounded add would differ, and on specials.
#[test]
fn fused_multiply_add_is_the_same_in_software_and_hardware() {
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        f32::MIN_POSITIVE,
        1e-45,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0 + f32::EPSILON,
        1.0 - f32::EPSILON / 2.0,
    ];
    let same = |a: f32, b: f32, c: f32| {
        let (soft, hard, ours) = (
            libm::fmaf(a, b, c),
            a.mul_add(b, c),
            kernels::fmadd(a, b, c),
        );
        if soft.is_nan() {
            assert!(hard.is_nan() && ours.is_nan(), "fma({a}, {b}, {c})");
        } else {
            assert_eq!(soft.to_bits(), hard.to_bits(), "fma({a:e}, {b:e}, {c:e})");
            assert_eq!(soft.to_bits(), ours.to_bits(), "fma({a:e}, {b:e}, {c:e})");
        }
    };
    for &a in &specials {
        for &b in &specials {
            for &c in &specials {
                same(a, b, c);
            }
        }
    }
    let mut g = Lcg(77);
    let mut fused_differs = 0;
    for i in 0..200_000 {
        let scale = [1.0f32, 1e-20, 1e20, 3.0][i % 4];
        let (a, b) = (g.next_f32(), g.next_f32() * scale);
        // c ≈ −a·b makes the low bits of the product matter (catastrophic cancellation).
        let c = if i % 2 == 0 { -(a * b) } else { g.next_f32() };
        same(a, b, c);
        if libm::fmaf(a, b, c).to_bits() != (a * b + c).to_bits() {
            fused_differs += 1;
        }
    }
    // The test would be vacuous if fused and unfused never differed on these inputs.
    assert!(fused_differs > 10_000, "only {fused_differs} differences");
}
