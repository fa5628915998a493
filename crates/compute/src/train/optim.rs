//! Deterministic optimizers: SGD (with optional momentum) and Adam(W).
//!
//! Updates are elementwise, so threads split elements and the bits do not
//! depend on the thread count. Adam's bias corrections use running products
//! `β₁ᵗ`, `β₂ᵗ` kept in the state (one multiply per step — no `powf`), and its
//! square root is IEEE `sqrt`, exact everywhere:
//!
//! ```text
//! t += 1;  β₁ᵗ ← β₁ᵗ⁻¹·β₁;  β₂ᵗ ← β₂ᵗ⁻¹·β₂
//! p ← p − lr·wd·p                                  (decoupled decay, if wd ≠ 0)
//! m ← β₁·m + (1−β₁)·g;   v ← β₂·v + (1−β₂)·(g·g)
//! p ← p − lr·((m/(1−β₁ᵗ)) / (sqrt(v/(1−β₂ᵗ)) + ε))
//! ```
//!
//! SGD: `p ← p − lr·g`, or with momentum `μ`: `b ← μ·b + g; p ← p − lr·b`.
//! The state (step, hyper-parameters, moments) is hashed into every step trace.

use rayon::prelude::*;

use super::params::ParamSet;
use super::real::Real;
use super::trace::{hash_bytes, Hash};

/// Adam hyper-parameters (the committed values are these `f32`s).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Which optimizer, with its hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerConfig {
    /// Stochastic gradient descent; `momentum = 0` is plain SGD.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Heavy-ball momentum.
        momentum: f32,
    },
    /// Adam / AdamW.
    Adam(AdamConfig),
}

impl OptimizerConfig {
    /// The learning rate.
    pub fn lr(&self) -> f32 {
        match self {
            Self::Sgd { lr, .. } => *lr,
            Self::Adam(c) => c.lr,
        }
    }

    /// Replaces the learning rate (for schedules driven by the caller).
    pub fn set_lr(&mut self, new: f32) {
        match self {
            Self::Sgd { lr, .. } => *lr = new,
            Self::Adam(c) => c.lr = new,
        }
    }
}

/// Optimizer state: hyper-parameters, step count and per-tensor moments.
#[derive(Clone, Debug, PartialEq)]
pub struct OptState<T> {
    /// Hyper-parameters used by the next step.
    pub config: OptimizerConfig,
    /// Steps taken so far.
    pub step: u64,
    /// First moment (Adam) or momentum buffer (SGD), per tensor.
    pub m: Vec<Vec<T>>,
    /// Second moment (Adam only; empty buffers for SGD), per tensor.
    pub v: Vec<Vec<T>>,
    /// `β₁ᵗ` after `step` steps.
    pub beta1_pow: T,
    /// `β₂ᵗ` after `step` steps.
    pub beta2_pow: T,
}

const CHUNK: usize = 4096;

impl<T: Real> OptState<T> {
    /// Fresh state for parameters of the given element counts.
    pub fn new(config: OptimizerConfig, sizes: &[usize]) -> Self {
        let uses_m = match config {
            OptimizerConfig::Sgd { momentum, .. } => momentum != 0.0,
            OptimizerConfig::Adam(_) => true,
        };
        let uses_v = matches!(config, OptimizerConfig::Adam(_));
        let buf = |on: bool| {
            sizes
                .iter()
                .map(|&n| vec![T::ZERO; if on { n } else { 0 }])
                .collect()
        };
        Self {
            config,
            step: 0,
            m: buf(uses_m),
            v: buf(uses_v),
            beta1_pow: T::ONE,
            beta2_pow: T::ONE,
        }
    }

    /// Applies one update to `params` from `grads` (one buffer per tensor, same order).
    pub fn apply(&mut self, params: &mut ParamSet<T>, grads: &[Vec<T>]) {
        assert_eq!(
            params.tensors.len(),
            grads.len(),
            "optimizer: params/grads count"
        );
        assert_eq!(
            params.tensors.len(),
            self.m.len(),
            "optimizer: state/params count"
        );
        self.step += 1;
        let f = |x: f32| T::from_f64(f64::from(x));
        match self.config {
            OptimizerConfig::Sgd { lr, momentum } => {
                let (lr, mu) = (f(lr), f(momentum));
                for ((p, g), m) in params
                    .tensors
                    .iter_mut()
                    .map(|t| &mut t.data)
                    .zip(grads)
                    .zip(self.m.iter_mut())
                {
                    if m.is_empty() {
                        p.par_chunks_mut(CHUNK)
                            .zip(g.par_chunks(CHUNK))
                            .for_each(|(pc, gc)| {
                                for (x, &d) in pc.iter_mut().zip(gc) {
                                    *x = (-lr).fma(d, *x);
                                }
                            });
                    } else {
                        p.par_chunks_mut(CHUNK)
                            .zip(g.par_chunks(CHUNK).zip(m.par_chunks_mut(CHUNK)))
                            .for_each(|(pc, (gc, mc))| {
                                for ((x, &d), b) in pc.iter_mut().zip(gc).zip(mc.iter_mut()) {
                                    *b = mu.fma(*b, d);
                                    *x = (-lr).fma(*b, *x);
                                }
                            });
                    }
                }
            }
            OptimizerConfig::Adam(c) => {
                let (lr, b1, b2, eps, wd) =
                    (f(c.lr), f(c.beta1), f(c.beta2), f(c.eps), f(c.weight_decay));
                self.beta1_pow *= b1;
                self.beta2_pow *= b2;
                let c1 = T::ONE - self.beta1_pow;
                let c2 = T::ONE - self.beta2_pow;
                let (ob1, ob2) = (T::ONE - b1, T::ONE - b2);
                let lr_wd = lr * wd;
                let decay = c.weight_decay != 0.0;
                for (((p, g), m), v) in params
                    .tensors
                    .iter_mut()
                    .map(|t| &mut t.data)
                    .zip(grads)
                    .zip(self.m.iter_mut())
                    .zip(self.v.iter_mut())
                {
                    p.par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                        .for_each(|((pc, gc), (mc, vc))| {
                            for (((x, &d), mm), vv) in
                                pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut())
                            {
                                if decay {
                                    *x = (-lr_wd).fma(*x, *x);
                                }
                                *mm = b1.fma(*mm, ob1 * d);
                                *vv = b2.fma(*vv, ob2 * (d * d));
                                let mhat = *mm / c1;
                                let vhat = *vv / c2;
                                *x = (-lr).fma(mhat / (vhat.sqrt() + eps), *x);
                            }
                        });
                }
            }
        }
    }

    /// Trace leaves for the state: one header leaf (kind, hyper-parameters,
    /// step, bias-correction products), then one leaf per tensor over
    /// `m ‖ v` bytes.
    pub fn leaf_hashes(&self) -> Vec<Hash> {
        let mut header = Vec::new();
        let hp: [f32; 5] = match self.config {
            OptimizerConfig::Sgd { lr, momentum } => {
                header.push(0u8);
                [lr, momentum, 0.0, 0.0, 0.0]
            }
            OptimizerConfig::Adam(c) => {
                header.push(1u8);
                [c.lr, c.beta1, c.beta2, c.eps, c.weight_decay]
            }
        };
        for x in hp {
            header.extend_from_slice(&x.to_le_bytes());
        }
        header.extend_from_slice(&self.step.to_le_bytes());
        T::extend_le_bytes(&[self.beta1_pow, self.beta2_pow], &mut header);
        let mut leaves = vec![hash_bytes(&header)];
        for (m, v) in self.m.iter().zip(&self.v) {
            let mut bytes = Vec::with_capacity((m.len() + v.len()) * T::BYTES);
            T::extend_le_bytes(m, &mut bytes);
            T::extend_le_bytes(v, &mut bytes);
            leaves.push(hash_bytes(&bytes));
        }
        leaves
    }
}
