//! Training a multi-layer perceptron classifier.
//!
//! ```text
//! x ─► [x·W₀ + b₀] ─► relu ─► [·W₁ + b₁] ─► relu ─► … ─► [·W_L + b_L] = logits ─► CE(labels)
//! ```
//!
//! Weights are stored `[in × out]` (`x·W`, the Conv1D layout the GPT uses too),
//! named `layers.{i}.weight` / `layers.{i}.bias`. Backward walks the layers in
//! reverse: `dW = hᵀ·dz`, `db = Σ_rows dz`, `dh = dz·Wᵀ`, `dz = dh ⊙ [z > 0]`.

use super::ops;
use super::params::{Param, ParamSet};
use super::real::Real;
use super::rng::SplitMix64;
use super::{TrainError, Trainable};

/// A batch of labelled examples.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassBatch<T> {
    /// Examples in the batch.
    pub n: usize,
    /// Inputs, `[n × in]` row-major.
    pub inputs: Vec<T>,
    /// Class per example, `< out`.
    pub labels: Vec<u32>,
}

/// MLP parameters and architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpParams<T> {
    /// Layer widths: input, hidden…, classes (at least two entries).
    pub sizes: Vec<usize>,
    /// `layers.{i}.weight [sizes[i] × sizes[i+1]]`, `layers.{i}.bias [sizes[i+1]]`.
    pub params: ParamSet<T>,
}

impl<T: Real> MlpParams<T> {
    /// He-normal weights (`σ = √(2/fan_in)`), zero biases, from `seed`.
    pub fn init(sizes: &[usize], seed: u64) -> Result<Self, TrainError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(TrainError::BadConfig(format!("mlp sizes {sizes:?}")));
        }
        let mut rng = SplitMix64::new(seed);
        let mut tensors = Vec::new();
        for (i, w) in sizes.windows(2).enumerate() {
            let std = libm::sqrt(2.0 / w[0] as f64);
            let data = (0..w[0] * w[1])
                .map(|_| T::from_f64(rng.normal() * std))
                .collect();
            tensors.push(Param {
                name: format!("layers.{i}.weight"),
                shape: vec![w[0], w[1]],
                data,
            });
            tensors.push(Param::filled(
                format!("layers.{i}.bias"),
                vec![w[1]],
                T::ZERO,
            ));
        }
        Ok(Self {
            sizes: sizes.to_vec(),
            params: ParamSet { tensors },
        })
    }

    fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    fn check(&self, b: &ClassBatch<T>) -> Result<(), TrainError> {
        let (din, dout) = (self.sizes[0], self.sizes[self.layers()]);
        if b.inputs.len() != b.n * din || b.labels.len() != b.n || b.n == 0 {
            return Err(TrainError::BadBatch(format!(
                "n={} inputs={} labels={} (input width {din})",
                b.n,
                b.inputs.len(),
                b.labels.len()
            )));
        }
        if let Some(&id) = b.labels.iter().find(|&&l| l as usize >= dout) {
            return Err(TrainError::IdOutOfRange { id, limit: dout });
        }
        Ok(())
    }

    /// Logits `[n × classes]` and, per layer, its input and pre-activation.
    fn forward(&self, b: &ClassBatch<T>) -> (Vec<Vec<T>>, Vec<Vec<T>>) {
        let mut inputs = vec![b.inputs.clone()];
        let mut pre = Vec::new();
        for l in 0..self.layers() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let w = &self.params.tensors[2 * l].data;
            let bias = &self.params.tensors[2 * l + 1].data;
            let z = ops::linear_forward(&inputs[l], w, bias, b.n, k, n);
            if l + 1 < self.layers() {
                inputs.push(
                    z.iter()
                        .map(|&v| if v > T::ZERO { v } else { T::ZERO })
                        .collect(),
                );
            }
            pre.push(z);
        }
        (inputs, pre)
    }

    /// Logits for a batch of inputs `[n × in]`.
    pub fn logits(&self, b: &ClassBatch<T>) -> Result<Vec<T>, TrainError> {
        self.check(b)?;
        let (_, mut pre) = self.forward(b);
        Ok(pre.pop().unwrap_or_default())
    }
}

impl<T: Real> Trainable<T> for MlpParams<T> {
    type Batch = ClassBatch<T>;

    fn params(&self) -> &ParamSet<T> {
        &self.params
    }

    fn params_mut(&mut self) -> &mut ParamSet<T> {
        &mut self.params
    }

    fn loss(&self, b: &ClassBatch<T>) -> Result<T, TrainError> {
        let logits = self.logits(b)?;
        Ok(ops::cross_entropy(&logits, &b.labels, b.n, self.sizes[self.layers()]).0)
    }

    fn loss_and_grads(&self, b: &ClassBatch<T>) -> Result<(T, Vec<Vec<T>>), TrainError> {
        self.check(b)?;
        let (inputs, pre) = self.forward(b);
        let classes = self.sizes[self.layers()];
        let (loss, mut dz) = ops::cross_entropy(&pre[self.layers() - 1], &b.labels, b.n, classes);
        let mut grads = self.params.zeros_like();
        for l in (0..self.layers()).rev() {
            let (k, n) = (self.sizes[l], self.sizes[l + 1]);
            let w = &self.params.tensors[2 * l].data;
            let (gw, gb) = grads.split_at_mut(2 * l + 1);
            let dh = ops::linear_backward(
                &inputs[l],
                w,
                &dz,
                &mut gw[2 * l],
                &mut gb[0],
                b.n,
                k,
                n,
                l > 0,
            );
            if let Some(mut dh) = dh {
                for (d, &z) in dh.iter_mut().zip(&pre[l - 1]) {
                    if z <= T::ZERO {
                        *d = T::ZERO;
                    }
                }
                dz = dh;
            }
        }
        Ok((loss, grads))
    }

    fn batch_bytes(b: &ClassBatch<T>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(b.n as u64).to_le_bytes());
        T::extend_le_bytes(&b.inputs, &mut out);
        for l in &b.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        out
    }
}
