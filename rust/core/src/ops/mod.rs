//! Differentiable operations, one file per family. Each op keeps its forward
//! kernel, its shape/dtype rule and its backward formula side by side.
pub mod binary;
pub mod creation;
pub mod index;
pub mod linalg;
pub mod loss;
pub mod nn;
pub mod optim;
pub mod reduce;
pub mod shape;
pub mod unary;

use crate::dtype::{result_type, DType};
use crate::tensor::Tensor;

/// torch.result_type of the operands.
pub fn promote(ts: &[&Tensor]) -> DType {
    let ops: smallvec::SmallVec<[_; 4]> = ts.iter().map(|t| (t.dtype(), t.priority())).collect();
    result_type(&ops, crate::default_dtype())
}

/// `t` converted to `dt` (no copy when it already is).
pub fn as_dtype(t: &Tensor, dt: DType) -> crate::Result<Tensor> {
    if t.dtype() == dt {
        Ok(t.clone())
    } else {
        unary::to_dtype(t, dt)
    }
}
