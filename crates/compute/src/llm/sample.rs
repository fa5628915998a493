//! Sampling: the next token as a pure function of (logits, seed, step).
//!
//! ```text
//! greedy:   the first index of the largest logit (NaN never wins)
//! sampled:  z_i = logit_i / T                         (f32 division)
//!           candidates sorted by (z desc, id asc); keep the first top_k (0 = all)
//!           w_i = ⌊expf(z_i − z_max) · 2²⁴⌋           (libm expf; integers from here on)
//!           top_p: keep the shortest prefix whose Σw ≥ ⌈top_p · Σw⌉  (f64 product, exact ceil)
//!           r = splitmix64(seed + (step + 1)·φ)        (φ = 0x9e3779b97f4a7c15, wrapping)
//!           target = ⌊r · Σw_kept / 2⁶⁴⌋; the token whose running Σw first exceeds target
//! ```
//!
//! Every step after the float division and `expf` is integer arithmetic, and `expf` is
//! `libm`'s software implementation, so the chosen token is the same on every CPU. The
//! random source is counter-based — the draw for step `t` is a function of `(seed, t)`
//! alone — so a verifier can re-derive any one token from that step's logits without
//! replaying the others.

use crate::ComputeError;

/// How to choose each token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// The most likely token.
    Greedy,
    /// Seeded sampling (module docs).
    Sample {
        seed: u64,
        temperature: f32,
        /// 0 = no limit.
        top_k: usize,
        /// 1.0 = no limit.
        top_p: f32,
    },
}

const PHI: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function at counter `x` (Steele, Lea & Flood 2014).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random draw of step `step` under `seed`.
pub fn draw(seed: u64, step: u64) -> u64 {
    splitmix64(seed.wrapping_add(step.wrapping_add(1).wrapping_mul(PHI)))
}

impl Sampler {
    /// The sampling temperature when none is given (the CLI, the MCP tool).
    pub const DEFAULT_TEMPERATURE: f32 = 0.8;
    /// The top-k when none is given.
    pub const DEFAULT_TOP_K: usize = 40;
    /// The top-p when none is given.
    pub const DEFAULT_TOP_P: f32 = 0.95;

    /// The sampler the user's flags name: the most likely token (`greedy`), or seeded
    /// sampling with these parameters, checked ([`Sampler::validate`]).
    pub fn from_flags(
        greedy: bool,
        seed: u64,
        temperature: f32,
        top_k: usize,
        top_p: f32,
    ) -> Result<Sampler, ComputeError> {
        let s = if greedy {
            Sampler::Greedy
        } else {
            Sampler::Sample {
                seed,
                temperature,
                top_k,
                top_p,
            }
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the parameters (a typed error for a nonsensical temperature or top-p).
    pub fn validate(&self) -> Result<(), ComputeError> {
        if let Sampler::Sample {
            temperature, top_p, ..
        } = *self
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(ComputeError::config(format!(
                    "temperature must be a positive number, got {temperature}"
                )));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(ComputeError::config(format!(
                    "top_p must be in (0, 1], got {top_p}"
                )));
            }
        }
        Ok(())
    }

    /// The token for generation step `step` (0 = the first new token).
    pub fn pick(&self, logits: &[f32], step: u64) -> u32 {
        match *self {
            Sampler::Greedy => argmax(logits),
            Sampler::Sample {
                seed,
                temperature,
                top_k,
                top_p,
            } => {
                let z: Vec<f32> = logits.iter().map(|&l| l / temperature).collect();
                let mut cand: Vec<u32> = (0..z.len() as u32)
                    .filter(|&i| !z[i as usize].is_nan())
                    .collect();
                if cand.is_empty() {
                    return 0;
                }
                cand.sort_unstable_by(|&a, &b| {
                    z[b as usize].total_cmp(&z[a as usize]).then(a.cmp(&b))
                });
                if top_k > 0 && top_k < cand.len() {
                    cand.truncate(top_k);
                }
                let max = z[cand[0] as usize];
                let w: Vec<u64> = cand
                    .iter()
                    .map(|&i| {
                        // `as` saturates (NaN → 0); e ≤ 1 keeps w ≤ 2²⁴.
                        (libm::expf(z[i as usize] - max) * 16_777_216.0) as u64
                    })
                    .collect();
                let total: u64 = w.iter().sum();
                if total == 0 {
                    return cand[0];
                }
                let mut keep = w.len();
                if top_p < 1.0 {
                    let need = (top_p as f64 * total as f64).ceil() as u64;
                    let mut run = 0u64;
                    for (n, &wi) in w.iter().enumerate() {
                        run += wi;
                        if run >= need {
                            keep = n + 1;
                            break;
                        }
                    }
                }
                let kept: u64 = w[..keep].iter().sum();
                let target = ((draw(seed, step) as u128 * kept as u128) >> 64) as u64;
                let mut run = 0u64;
                for (n, &wi) in w[..keep].iter().enumerate() {
                    run += wi;
                    if run > target {
                        return cand[n];
                    }
                }
                cand[keep - 1]
            }
        }
    }
}

/// First index of the maximum (NaN never wins; all-NaN gives 0).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seed: u64, k: usize, p: f32) -> Sampler {
        Sampler::Sample {
            seed,
            temperature: 1.0,
            top_k: k,
            top_p: p,
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(Sampler::Greedy.pick(&[0.0, 2.0, 2.0, f32::NAN], 0), 1);
    }

    #[test]
    fn top_k_1_and_tiny_top_p_are_greedy() {
        let logits = [0.1, 3.0, 2.9, -1.0];
        for step in 0..50 {
            assert_eq!(sample(7, 1, 1.0).pick(&logits, step), 1);
            assert_eq!(sample(7, 0, 0.01).pick(&logits, step), 1);
        }
    }

    #[test]
    fn draws_follow_the_distribution_and_depend_only_on_seed_and_step() {
        let logits = [0.0f32, 2f32.ln(), f32::NEG_INFINITY];
        let s = sample(42, 0, 1.0);
        let mut counts = [0u32; 3];
        for step in 0..3000 {
            counts[s.pick(&logits, step) as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        // p = 1/3, 2/3.
        assert!((900..1100).contains(&counts[0]), "{counts:?}");
        assert_eq!(s.pick(&logits, 17), s.pick(&logits, 17));
        let other = sample(43, 0, 1.0);
        assert!((0..64).any(|t| s.pick(&logits, t) != other.pick(&logits, t)));
    }

    #[test]
    fn bad_parameters_are_typed_errors() {
        let bad = Sampler::Sample {
            seed: 0,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        };
        assert!(bad.validate().is_err());
        assert!(sample(0, 0, 1.5).validate().is_err());
        assert!(sample(0, 0, 0.9).validate().is_ok());
    }
}
