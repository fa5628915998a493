//! Quantized products: every format, every row count, threads and the forced scalar
//! path against the reference loop over the file's bytes (bit equality).

mod common;

use agentic_compute::kernels::set_force_scalar;
use agentic_compute::llm::quant::{matmul, matmul_reference, QMatrix, WeightType};
use agentic_compute::models::gpt::SplitMix64;
use common::{values, with_threads};

/// File bytes of `n` rows × `k` inputs of `ty` with random quants and scales.
fn file_bytes(rng: &mut SplitMix64, ty: WeightType, n: usize, k: usize) -> Vec<u8> {
    let blocks = n * k / 32;
    let f16 = |v: f32| -> [u8; 2] {
        // Round-trippable small f16 values: sign, exponent 10..=14, random mantissa.
        let bits = v.to_bits();
        let sign = ((bits >> 31) as u16) << 15;
        let exp = 10 + (bits >> 7) as u16 % 5;
        (sign | exp << 10 | (bits as u16 & 0x3ff)).to_le_bytes()
    };
    let mut out = Vec::new();
    for _ in 0..blocks {
        let r = values(rng, 34, 1.0);
        let bytes: Vec<u8> = (0..32).map(|_| (rng.next_u64() >> 56) as u8).collect();
        match ty {
            WeightType::Q4_0 => {
                out.extend(f16(r[0]));
                out.extend(&bytes[..16]);
            }
            WeightType::Q4_1 => {
                out.extend(f16(r[0]));
                out.extend(f16(r[1]));
                out.extend(&bytes[..16]);
            }
            WeightType::Q8_0 => {
                out.extend(f16(r[0]));
                out.extend(&bytes);
            }
            WeightType::F16 => (0..32).for_each(|i| out.extend(f16(r[i]))),
            WeightType::BF16 => (0..32).for_each(|i| out.extend(&r[i].to_le_bytes()[2..])),
            WeightType::F32 => (0..32).for_each(|i| out.extend(r[i].to_le_bytes())),
        }
    }
    out
}

#[test]
fn every_format_and_row_count_equals_the_reference() {
    let mut rng = SplitMix64::new(5);
    for ty in [
        WeightType::Q4_0,
        WeightType::Q4_1,
        WeightType::Q8_0,
        WeightType::F16,
        WeightType::BF16,
        WeightType::F32,
    ] {
        // n not a multiple of the 32-row panel; k of several blocks.
        // (300, 1024) is large enough for the parallel split.
        for (n, k) in [(70, 96), (32, 32), (5, 64), (300, 1024)] {
            let file = file_bytes(&mut rng, ty, n, k);
            let w = QMatrix::from_file_bytes("w", ty, n, k, &file).unwrap();
            for m in [1, 2, 3, 4, 9] {
                let x = values(&mut rng, m * k, 2.0);
                let want = matmul_reference(&x, ty, &file, n, k, m);
                for threads in [1, 2, 3] {
                    for scalar in [false, true] {
                        set_force_scalar(scalar);
                        let mut got = vec![0.0; m * n];
                        with_threads(threads, || matmul(&x, &w, &mut got, m));
                        set_force_scalar(false);
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{ty:?} n={n} k={k} m={m} threads={threads} scalar={scalar}"
                        );
                    }
                }
                // Row i of a batch equals row i alone (batch invariance of the product).
                let mut alone = vec![0.0; n];
                matmul(&x[(m - 1) * k..], &w, &mut alone, 1);
                assert_eq!(
                    alone.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want[(m - 1) * n..]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}

#[test]
fn wrong_sizes_are_typed_errors() {
    assert!(QMatrix::from_file_bytes("w", WeightType::Q4_1, 4, 32, &[0; 79]).is_err());
    assert!(QMatrix::from_file_bytes("w", WeightType::Q4_1, 4, 30, &[0; 80]).is_err());
    assert!(QMatrix::from_file_bytes("w", WeightType::F32, 0, 32, &[]).is_err());
}
