//! Named parameter tensors in a fixed canonical order.
//!
//! A model's trainable state is an ordered list of named tensors. The order is
//! part of the protocol: gradients, optimizer moments and the per-step trace
//! leaves all follow it, so two parties agree on "parameter #7" without any map
//! iteration order involved.

use super::real::Real;
use super::trace::{hash_bytes, Hash};

/// One named parameter tensor (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Param<T> {
    /// Canonical name, e.g. `h.0.attn.c_attn.weight`.
    pub name: String,
    /// Shape; the last dimension is contiguous.
    pub shape: Vec<usize>,
    /// Elements, `shape.iter().product()` of them.
    pub data: Vec<T>,
}

impl<T: Real> Param<T> {
    /// A tensor filled with `value`.
    pub fn filled(name: impl Into<String>, shape: Vec<usize>, value: T) -> Self {
        let n = shape.iter().product();
        Self {
            name: name.into(),
            shape,
            data: vec![value; n],
        }
    }

    /// The canonical little-endian bytes of the elements.
    pub fn le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        T::extend_le_bytes(&self.data, &mut out);
        out
    }

    /// blake3 over [`Param::le_bytes`] — the leaf a trace commits to.
    pub fn hash(&self) -> Hash {
        hash_bytes(&self.le_bytes())
    }
}

/// An ordered set of parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSet<T> {
    /// The tensors, in canonical order.
    pub tensors: Vec<Param<T>>,
}

impl<T: Real> ParamSet<T> {
    /// Total element count.
    pub fn num_elements(&self) -> usize {
        self.tensors.iter().map(|p| p.data.len()).sum()
    }

    /// Zeroed buffers shaped like every tensor (gradients, optimizer moments).
    pub fn zeros_like(&self) -> Vec<Vec<T>> {
        self.tensors
            .iter()
            .map(|p| vec![T::ZERO; p.data.len()])
            .collect()
    }

    /// Per-tensor hashes, in canonical order.
    pub fn hashes(&self) -> Vec<Hash> {
        self.tensors.iter().map(Param::hash).collect()
    }

    /// The Merkle root over [`ParamSet::hashes`]: one hash naming the weights.
    pub fn root(&self) -> Hash {
        super::trace::merkle_root(&self.hashes())
    }

    /// The same parameters converted to another scalar type (e.g. `f32 → f64`
    /// for a gradient check).
    pub fn convert<U: Real>(&self) -> ParamSet<U> {
        ParamSet {
            tensors: self
                .tensors
                .iter()
                .map(|p| Param {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data: p.data.iter().map(|&x| U::from_f64(x.to_f64())).collect(),
                })
                .collect(),
        }
    }
}
