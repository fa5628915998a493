//! Criterion benches of the deterministic matmul (square sizes, `matmul` and
//! `matmul_packed`) beside `matrixmultiply::sgemm` on the same inputs. The CLI's
//! `agentic bench matmul` is the user-facing comparison; this is for kernel work.

use agentic_compute::kernels::{self, PackedWeights};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn bench_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10);
    for n in [128usize, 256, 512] {
        let a = data(n * n, 1);
        let b = data(n * n, 2);
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        group.bench_with_input(BenchmarkId::new("ours", n), &n, |bench, &n| {
            bench.iter(|| kernels::matmul(&a, &b, &mut out, n, n, n))
        });
        let packed = PackedWeights::from_kn(&b, n, n);
        group.bench_with_input(BenchmarkId::new("ours_packed", n), &n, |bench, &n| {
            bench.iter(|| kernels::matmul_packed(&a, &packed, &mut out, n))
        });
        group.bench_with_input(BenchmarkId::new("matrixmultiply", n), &n, |bench, &n| {
            bench.iter(|| {
                let ld = n as isize;
                // SAFETY: a, b, out each hold n×n floats, row-major.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        a.as_ptr(),
                        ld,
                        1,
                        b.as_ptr(),
                        ld,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        ld,
                        1,
                    )
                }
            })
        });
    }
    group.finish();
}

fn bench_attention(c: &mut Criterion) {
    let (seq, heads, hd) = (128usize, 12usize, 32usize);
    let d = heads * hd;
    let (q, k, v) = (data(seq * d, 3), data(seq * d, 4), data(seq * d, 5));
    let mut out = vec![0.0f32; seq * d];
    let mask: Vec<bool> = (0..seq).map(|j| j < 100).collect();
    c.bench_function("attention 128×12×32 masked", |bench| {
        bench.iter(|| kernels::attention(&q, &k, &v, &mut out, seq, heads, hd, Some(&mask), false))
    });
}

criterion_group!(benches, bench_matmul, bench_attention);
criterion_main!(benches);
