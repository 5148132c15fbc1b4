//! The extension contract: everything a front-end crate (`rbe-structured`,
//! `rbe-hmm`, `rbe-pinn`, `rbe-iclv`) needs to add fused differentiable ops
//! to the engine, in one place. A front-end depends on `rbe-core` and imports
//! `rbe_core::ext::*`; it does not reach into the core's other modules
//! except through the composite ops re-exported here as [`ops`].
//!
//! # Layout of a front-end
//! - `kernels`: pure loops over slices (`&[T]` in, `&mut [T]` out). No
//!   [`Tensor`], no autograd, no allocation they cannot report.
//! - `ops`: the op wrappers. They check shapes, dtypes and values (returning
//!   [`Error`], never panicking), allocate outputs with [`FreshTensor`], call
//!   the kernels, and record the backward with [`attach`] / [`attach_multi`].
//! - tests: through [`crate::testing`] (fused equals composite, gradcheck and
//!   gradgradcheck, identical bits with 1 and 2 threads).
//!
//! # Rules
//! 1. **Results do not depend on the thread count.** Split work by a fixed
//!    partition (one index per sequence, per block, per row tile) with
//!    [`for_each_index`]; never split a reduction by "number of threads".
//!    Sum in a fixed order.
//! 2. **Every fused op has a composite path.** The first-order backward may be
//!    a fused kernel, but when `create_graph` is on (detected with
//!    [`is_grad_enabled`] inside the backward, or [`needs_grad`] on the
//!    backward's inputs) the backward must be written with differentiable
//!    [`ops`] (or with other fused ops that are themselves closed under
//!    differentiation), so derivatives of any order work.
//! 3. **Bad input is an error, never a panic**, and a failed op changes
//!    nothing: validate everything before the first write. Size arithmetic is
//!    checked ([`checked_numel`]); allocations go through [`FreshTensor`],
//!    which reports out-of-memory as [`Error::Memory`].
//! 4. **Saved tensors are version-checked**: save inputs with
//!    [`SavedTensor::input`] and outputs with [`SavedTensor::output`] /
//!    [`SavedTensor::output_nr`], and read them back with `get(ctx)` inside
//!    the backward, so an in-place change between forward and backward is
//!    reported instead of silently giving a wrong gradient.
//! 5. **Stable log-space arithmetic**: write `(x - max) - log(sum)`, never
//!    `x - (max + log(sum))`, which loses precision at large offsets in float32.
//!
//! A worked example is the RBE front-end (`rust/structured`).

pub use crate::autograd::{
    attach, attach_multi, is_grad_enabled, needs_grad, no_grad, run_backward, set_grad_enabled, BwCtx, GradModeGuard, SavedTensor,
};
pub use crate::dtype::DType;
pub use crate::elem::{Elem, Real};
pub use crate::error::{Error, Result};
pub use crate::gemm::GemmElem;
pub use crate::kernels::{map1, map2, map3};
pub use crate::parallel::{for_each_index, num_threads, par_try, pool, try_vec, with_num_threads, SendPtr, PAR_WORK};
/// The seeded random generator the creation ops ([`ops::creation::rand`], ...) draw from.
pub use crate::random::Generator;
pub use crate::tensor::{fmt_shape, numel_of, FreshTensor, Shape, Tensor};
pub use crate::{
    autograd_err, dispatch_all, dispatch_float, dispatch_num, dtype_err, index_err, memory_err, shape_err, unsupported_err, value_err,
};

/// Differentiable composite ops (the fallback and `create_graph` paths).
pub use crate::ops;
/// Vectorised elementwise kernels with run-time ISA dispatch (`exp`, `tanh`, `sincos_lanes`, ...).
pub use crate::simd;

/// The number of elements of `shape`, or a shape error naming `what` when
/// the product does not fit in `usize`.
pub fn checked_numel(shape: &[usize], what: &str) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| crate::shape_err!("{what}: the shape {shape:?} has more elements than fit in memory"))
}

/// `t` as a contiguous tensor of dtype `dt` (no copy when it already is):
/// what a kernel wants to read its inputs from.
pub fn contiguous_as(t: &Tensor, dt: DType) -> Result<Tensor> {
    Ok(crate::ops::as_dtype(t, dt)?.contiguous())
}
