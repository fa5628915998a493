//! A multi-layer perceptron: dense layers with a nonlinearity between them.
//!
//! ```text
//!  x[rows, n_0] ─L0─► act(x·W₀ + b₀) ─L1─► act(·W₁ + b₁) ─ … ─L(n-1)─► ·W_(n-1) + b_(n-1)
//! ```
//!
//! The nonlinearity follows every layer but the last (whose output is logits or a
//! regression value). Weights are `[n_in × n_out]` (`y = x·W + b`, the Conv1D layout the
//! training code writes), stored as `layers.{i}.weight` / `layers.{i}.bias`, with a
//! `config.json` of `{"model_type": "mlp", "sizes": [n_0, …, n_L], "activation": "relu"}`.

use super::ops;
use crate::activation::{Activation, ActivationKind};
use crate::loader::Checkpoint;
use crate::metering::{cost, InputShape, OpCounter};
use crate::ComputeError;

/// The nonlinearity between dense layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nonlinearity {
    Relu,
    Tanh,
    GeluErf,
    GeluTanh,
    Identity,
}

impl Nonlinearity {
    /// Parses a config name (`relu`, `tanh`, `gelu`, `gelu_new`, `identity`).
    pub fn parse(s: &str) -> Result<Self, ComputeError> {
        Ok(match s {
            "relu" => Nonlinearity::Relu,
            "tanh" => Nonlinearity::Tanh,
            "gelu" => Nonlinearity::GeluErf,
            "gelu_new" | "gelu_tanh" => Nonlinearity::GeluTanh,
            "identity" | "linear" | "none" => Nonlinearity::Identity,
            other => {
                return Err(ComputeError::config(format!(
                    "unknown activation `{other}`"
                )))
            }
        })
    }

    fn apply(self, x: &mut [f32], ops: &OpCounter) {
        match self {
            Nonlinearity::Relu => ops::relu(x, ops),
            Nonlinearity::Tanh => ops::tanh(x, ops),
            Nonlinearity::GeluErf => ops::gelu_erf(x, ops),
            Nonlinearity::GeluTanh => ops::gelu_tanh(x, ops),
            Nonlinearity::Identity => {}
        }
    }

    fn cost(self, n: usize) -> u64 {
        match self {
            Nonlinearity::Relu => cost::relu(n),
            Nonlinearity::Tanh => cost::tanh(n),
            Nonlinearity::GeluErf => cost::gelu_erf(n),
            Nonlinearity::GeluTanh => cost::gelu_tanh(n),
            Nonlinearity::Identity => 0,
        }
    }
}

/// One dense layer: `y = x·w + b`, `w` is `[n_in × n_out]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub n_in: usize,
    pub n_out: usize,
}

/// A multi-layer perceptron (module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Dense>,
    pub activation: Nonlinearity,
}

impl Mlp {
    /// An MLP from its layers, checking that widths chain and buffers fit.
    pub fn new(layers: Vec<Dense>, activation: Nonlinearity) -> Result<Self, ComputeError> {
        if layers.is_empty() {
            return Err(ComputeError::config("an MLP needs at least one layer"));
        }
        for (i, l) in layers.iter().enumerate() {
            if l.n_in == 0 || l.n_out == 0 || l.w.len() != l.n_in * l.n_out || l.b.len() != l.n_out
            {
                return Err(ComputeError::TensorShape {
                    name: format!("layers.{i}"),
                    expected: vec![l.n_in, l.n_out],
                    actual: vec![l.w.len(), l.b.len()],
                });
            }
            if i > 0 && layers[i - 1].n_out != l.n_in {
                return Err(ComputeError::config(format!(
                    "layer {i} takes {} inputs but layer {} gives {}",
                    l.n_in,
                    i - 1,
                    layers[i - 1].n_out
                )));
            }
        }
        Ok(Mlp { layers, activation })
    }

    /// Loads `layers.{i}.weight/bias` for the widths in `sizes`.
    pub fn from_checkpoint(
        sizes: &[usize],
        activation: Nonlinearity,
        ck: &mut Checkpoint,
    ) -> Result<Self, ComputeError> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(ComputeError::config(format!("MLP sizes {sizes:?}")));
        }
        let mut layers = Vec::with_capacity(sizes.len() - 1);
        for (i, w) in sizes.windows(2).enumerate() {
            let (n_in, n_out) = (w[0], w[1]);
            layers.push(Dense {
                w: ck.take(&format!("layers.{i}.weight"), &[n_in, n_out])?,
                b: ck.take(&format!("layers.{i}.bias"), &[n_out])?,
                n_in,
                n_out,
            });
        }
        Mlp::new(layers, activation)
    }

    /// Parses `{"sizes": […], "activation": "relu"}` and loads the weights.
    pub fn from_config(v: &serde_json::Value, ck: &mut Checkpoint) -> Result<Self, ComputeError> {
        let sizes: Vec<usize> = v
            .get("sizes")
            .and_then(|s| s.as_array())
            .ok_or_else(|| ComputeError::config("missing `sizes`"))?
            .iter()
            .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| ComputeError::config("`sizes` must be non-negative integers"))?;
        let act = Nonlinearity::parse(
            v.get("activation")
                .and_then(|a| a.as_str())
                .unwrap_or("relu"),
        )?;
        Self::from_checkpoint(&sizes, act, ck)
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    pub fn layer_name(&self, i: usize) -> String {
        format!("dense.{i}")
    }

    pub(crate) fn run_layer(
        &self,
        i: usize,
        input: &Activation,
        ops: &OpCounter,
    ) -> Result<Activation, ComputeError> {
        let l = self.layers.get(i).ok_or(ComputeError::LayerOutOfRange {
            layer: i,
            layers: self.layers.len(),
        })?;
        if input.kind() != ActivationKind::Features || input.width() != l.n_in {
            return Err(ComputeError::BadActivation {
                layer: i,
                detail: format!(
                    "expected features of width {}, got {} of width {}",
                    l.n_in,
                    input.kind().name(),
                    input.width()
                ),
            });
        }
        let rows = input.rows();
        let lin = LinearRef { d: l };
        let mut y = lin.apply(input.tensor().data(), rows, ops);
        if i + 1 < self.layers.len() {
            self.activation.apply(&mut y, ops);
        }
        Activation::features(rows, l.n_out, y)
    }

    pub(crate) fn meter(&self, shape: &InputShape) -> Result<Vec<u64>, ComputeError> {
        let (rows, width) = match shape {
            InputShape::Rows { rows, width } => (*rows, *width),
            InputShape::Tokens { .. } => {
                return Err(ComputeError::ShapeMismatch {
                    op: "meter",
                    detail: "an MLP takes feature rows, not token sequences".into(),
                })
            }
        };
        if rows == 0 {
            return Err(ComputeError::EmptyInput("no row".into()));
        }
        if width != self.layers[0].n_in {
            return Err(ComputeError::ShapeMismatch {
                op: "meter",
                detail: format!("input width {width}, the MLP takes {}", self.layers[0].n_in),
            });
        }
        Ok(self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                cost::linear(rows, l.n_in, l.n_out, true)
                    + if i + 1 < self.layers.len() {
                        self.activation.cost(rows * l.n_out)
                    } else {
                        0
                    }
            })
            .collect())
    }
}

/// A borrowed view of a [`Dense`] as a metered linear layer.
struct LinearRef<'a> {
    d: &'a Dense,
}

impl LinearRef<'_> {
    fn apply(&self, x: &[f32], rows: usize, ops: &OpCounter) -> Vec<f32> {
        let mut out = vec![0.0f32; rows * self.d.n_out];
        ops.add(cost::linear(rows, self.d.n_in, self.d.n_out, true));
        crate::kernels::linear_kn(
            x,
            &self.d.w,
            Some(&self.d.b),
            &mut out,
            rows,
            self.d.n_in,
            self.d.n_out,
        );
        out
    }
}
