//! The quantized product at the row counts a prefill uses (many rows, in register tiles of
//! several rows, with row counts that leave every remainder) equals the reference bit for
//! bit, and each row equals itself computed alone: what lets an auditor replay a whole
//! generation as one prefill.

mod common;

use agentic_compute::kernels::set_force_scalar;
use agentic_compute::llm::quant::{matmul, matmul_reference, QMatrix, WeightType};
use agentic_compute::models::gpt::SplitMix64;
use common::values;

/// File bytes of `n` rows × `k` inputs of `ty`: random quants, scales near 1/64.
fn file_bytes(rng: &mut SplitMix64, ty: WeightType, n: usize, k: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut byte = || (rng.next_u64() >> 56) as u8;
    for _ in 0..n * k / 32 {
        match ty {
            WeightType::Q4_1 => {
                out.extend([0x00, 0x24, 0x00, 0xa4]); // d = 2^-6, m = -2^-6
                (0..16).for_each(|_| out.push(byte()));
            }
            WeightType::Q4_0 => {
                out.extend([0x00, 0x24]);
                (0..16).for_each(|_| out.push(byte()));
            }
            WeightType::Q8_0 => {
                out.extend([0x00, 0x24]);
                (0..32).for_each(|_| out.push(byte()));
            }
            WeightType::F16 => (0..32).for_each(|_| out.extend([byte(), byte() & 0x3f])),
            WeightType::BF16 => (0..32).for_each(|_| out.extend([byte(), byte() & 0x3f])),
            WeightType::F32 => {
                (0..32).for_each(|_| out.extend(((byte() as f32 - 128.0) / 256.0).to_le_bytes()))
            }
        }
    }
    out
}

#[test]
fn many_rows_equal_the_reference_and_each_row_alone() {
    let mut rng = SplitMix64::new(11);
    for ty in [
        WeightType::Q4_1,
        WeightType::Q4_0,
        WeightType::Q8_0,
        WeightType::F16,
        WeightType::BF16,
        WeightType::F32,
    ] {
        // Whole panels (written straight to the output) and a partial last panel.
        for (n, k) in [(96, 64), (70, 96)] {
            let file = file_bytes(&mut rng, ty, n, k);
            let w = QMatrix::from_file_bytes("w", ty, n, k, &file).unwrap();
            for m in [5, 6, 7, 8, 10, 11, 12, 13, 14, 19, 37] {
                let x = values(&mut rng, m * k, 2.0);
                let want = matmul_reference(&x, ty, &file, n, k, m);
                for scalar in [false, true] {
                    set_force_scalar(scalar);
                    let mut got = vec![0.0; m * n];
                    matmul(&x, &w, &mut got, m);
                    set_force_scalar(false);
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ty:?} n={n} k={k} m={m} scalar={scalar}"
                    );
                }
                for i in [0, m / 2, m - 1] {
                    let mut alone = vec![0.0; n];
                    matmul(&x[i * k..(i + 1) * k], &w, &mut alone, 1);
                    assert!(
                        alone
                            .iter()
                            .zip(&want[i * n..(i + 1) * n])
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ty:?} n={n} k={k} m={m}: row {i} alone"
                    );
                }
            }
        }
    }
}
