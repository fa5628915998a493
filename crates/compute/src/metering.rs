//! Metering: the exact operation count of every layer, known before execution.
//!
//! The market prices compute in **operations** (`bill = ops × price per mega-op`), so the
//! count must be a pure function of the model's configuration and the input's shape —
//! never a measurement. [`crate::models::Model::meter`] computes it from shapes alone;
//! execution counts the same quantities from the arguments of each kernel call through an
//! [`OpCounter`], and tests check that the two agree for every layer.
//!
//! # Op model (version 1)
//!
//! One op is one scalar f32 arithmetic operation: add, subtract, multiply, divide,
//! compare (max), square root. A transcendental (`exp`, `erf`, `tanh`) counts as
//! [`TRANSCENDENTAL`] ops. Data movement (gathers, copies, transposes) is free.
//!
//! | kernel call | ops |
//! |---|---|
//! | matmul / linear `[m×k]·[k×n]` | `2·m·k·n` (one multiply + one add per term) |
//! | bias add `[m×n]` | `m·n` |
//! | elementwise add / multiply / scale of `n` values | `n` |
//! | embedding gather | 0 (a copy) |
//! | layer norm, `rows × cols` | `rows·(7·cols + 4)`: mean (cols adds, 1 div), variance (cols sub, mul, add; 1 div), `1/sqrt(var+eps)` (add, sqrt, div), normalize (cols sub, mul), affine (cols mul, add) |
//! | softmax over `c` scores | `c` (max) + `c` (sub) + `c·T` (exp) + `c` (sum) + `c` (div) = `c·(4+T)` |
//! | GELU (erf form) per value | `4 + T`: `x/√2`, `erf`, `1+`, `·x`, `·0.5` |
//! | GELU (tanh form) per value | `7 + T`: `x³` (2), `·0.044715`, `+x`, `·√(2/π)`, `tanh`, `1+`, `·0.5x` (2)… counted as 7 arithmetic + 1 tanh |
//! | tanh per value | `T` |
//! | ReLU per value | 1 (a compare) |
//! | attention score `q·k` over head dim `d` | `2·d` + 1 (scale) |
//! | attention weighted sum per score | `2·d` |
//! | mean pooling of `L` rows × `d` | `L·d` (sum) + `d` (divide) |
//! | L2 normalization of `d` values | `2·d` (square, sum) + 2 (sqrt, max with ε) + `d` (divide) = `3·d + 2` |
//!
//! So attention over `s` scores per head (BERT: `s = L²`; causal GPT: `s = L(L+1)/2`)
//! costs `heads · s · (4·d + 1 + 4 + T)`: scores, softmax, weighted sum.
//!
//! The constants below *are* the op model: changing one changes every bill, so they are
//! versioned with [`OP_MODEL_VERSION`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Version of the op model; bump when any constant or formula changes.
pub const OP_MODEL_VERSION: u32 = 1;
/// Ops charged for one transcendental function call (`exp`, `erf`, `tanh`).
pub const TRANSCENDENTAL: u64 = 4;

/// The input shape metering prices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputShape {
    /// A batch of token sequences with these lengths (BERT, GPT).
    Tokens { seq_lens: Vec<usize> },
    /// `rows` feature vectors of `width` values (MLP).
    Rows { rows: usize, width: usize },
}

/// Per-kernel-call cost formulas (module docs, "Op model").
pub mod cost {
    use super::TRANSCENDENTAL;

    fn u(x: usize) -> u64 {
        x as u64
    }

    /// `[m×k]·[k×n]`.
    pub fn matmul(m: usize, k: usize, n: usize) -> u64 {
        2 * u(m) * u(k) * u(n)
    }

    /// A linear layer: matmul plus, with a bias, one add per output.
    pub fn linear(m: usize, k: usize, n: usize, bias: bool) -> u64 {
        matmul(m, k, n) + if bias { u(m) * u(n) } else { 0 }
    }

    /// Elementwise add/multiply/scale of `n` values.
    pub fn elementwise(n: usize) -> u64 {
        u(n)
    }

    /// Layer norm over `rows` rows of `cols` values.
    pub fn layer_norm(rows: usize, cols: usize) -> u64 {
        u(rows) * (7 * u(cols) + 4)
    }

    /// Softmax over `rows` rows of `cols` values.
    pub fn softmax(rows: usize, cols: usize) -> u64 {
        u(rows) * u(cols) * (4 + TRANSCENDENTAL)
    }

    /// GELU, erf form.
    pub fn gelu_erf(n: usize) -> u64 {
        u(n) * (4 + TRANSCENDENTAL)
    }

    /// GELU, tanh form (GPT-2's `gelu_new`).
    pub fn gelu_tanh(n: usize) -> u64 {
        u(n) * (7 + TRANSCENDENTAL)
    }

    /// tanh.
    pub fn tanh(n: usize) -> u64 {
        u(n) * TRANSCENDENTAL
    }

    /// ReLU.
    pub fn relu(n: usize) -> u64 {
        u(n)
    }

    /// Scaled dot-product attention with `scores` query–key pairs per head.
    pub fn attention(scores: usize, heads: usize, head_dim: usize) -> u64 {
        u(heads) * u(scores) * (4 * u(head_dim) + 1 + 4 + TRANSCENDENTAL)
    }

    /// Number of query–key pairs of a sequence of `len` tokens.
    pub fn attention_pairs(len: usize, causal: bool) -> usize {
        if causal {
            len * (len + 1) / 2
        } else {
            len * len
        }
    }

    /// Mean pooling of `rows` rows of `dim`.
    pub fn mean_pool(rows: usize, dim: usize) -> u64 {
        u(rows) * u(dim) + u(dim)
    }

    /// L2 normalization of `dim` values.
    pub fn l2_normalize(dim: usize) -> u64 {
        3 * u(dim) + 2
    }
}

/// Counts operations during execution (shared across rayon tasks; integer addition is
/// order-independent, so the total does not depend on scheduling).
#[derive(Debug, Default)]
pub struct OpCounter(AtomicU64);

impl OpCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `ops`.
    pub fn add(&self, ops: u64) {
        self.0.fetch_add(ops, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Returns the count and resets it to zero.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}
