//! A dense, row-major f32 tensor.

use crate::ComputeError;

/// A dense row-major f32 tensor. The last dimension is contiguous.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data; errors when the element count differs.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, ComputeError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ComputeError::ShapeMismatch {
                op: "Tensor::new",
                detail: format!(
                    "shape {shape:?} holds {n} elements, data has {}",
                    data.len()
                ),
            });
        }
        Ok(Self { shape, data })
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            data: vec![0.0; n],
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The tensor's canonical bytes: every element as little-endian f32, in row-major order.
    /// Traces hash exactly these bytes.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() * 4);
        for x in &self.data {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }
}
