//! rbe-core: tensors, reverse-mode autodiff and CPU kernels for rbe-autodiff.
//!
//! Pure Rust (no Python). The Python package `rbe` is a thin binding over this crate.
//! A front-end crate builds on [`ext`] and tests its ops with [`testing`].
#![warn(clippy::undocumented_unsafe_blocks)]
// Polynomial and series constants are written as their sources print them.
#![allow(clippy::excessive_precision)]
// Kernels generic over `Real` (no `AddAssign` bound) write `a = a + b`, and
// index several parallel arrays with one loop variable.
#![allow(clippy::assign_op_pattern, clippy::needless_range_loop)]
pub mod autograd;
pub mod dtype;
pub mod elem;
mod erf_coeffs;
#[cfg(test)]
mod erf_ref;
pub mod error;
pub mod ext;
pub mod gemm;
pub mod kernels;
pub mod ops;
pub mod parallel;
pub mod random;
pub mod simd;
pub mod special;
pub mod storage;
pub mod tensor;
pub mod testing;

pub use dtype::DType;
pub use error::{Error, Result};
pub use tensor::Tensor;

use std::sync::atomic::{AtomicU8, Ordering};

static DEFAULT_DTYPE: AtomicU8 = AtomicU8::new(0);

/// The dtype of new floating tensors (float32 unless changed).
pub fn default_dtype() -> DType {
    if DEFAULT_DTYPE.load(Ordering::Relaxed) == 1 {
        DType::F64
    } else {
        DType::F32
    }
}
pub fn set_default_dtype(dt: DType) -> Result<()> {
    match dt {
        DType::F32 => DEFAULT_DTYPE.store(0, Ordering::Relaxed),
        DType::F64 => DEFAULT_DTYPE.store(1, Ordering::Relaxed),
        d => return Err(dtype_err!("only floating-point types are supported as the default type, got {}", d.name())),
    }
    Ok(())
}
