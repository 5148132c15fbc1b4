//! rbe-structured: RBE structured weights (see `docs/rbe.md` and the
//! specification), a front-end crate of rbe-autodiff built on
//! [`rbe_core::ext`] only.
//!
//! A matrix is generated block by block from a few atoms per block, each atom
//! a wave `A g(kx x + ky y + phi)` with `g` = sin or tanh, plus an optional
//! sparse DCT residual per block.
//!
//! - [`layout`], [`packed`], [`dct`]: block geometry and the reference
//!   generator (f64), the 128-bit record codec, the orthonormal DCT-II;
//! - [`kernels`]: the pure loops (slices in, slices out; no tensors, no autograd);
//! - [`ops`]: the differentiable ops [`rbe_generate`] and [`rbe_linear`]
//!   (checks, output allocation, backward recording, the composite
//!   `create_graph` path);
//! - [`nn`]: a small pure-Rust model API (`RbeLinear`, `Dense`, `Sequential`,
//!   `Adam`, ...).
pub mod dct;
pub mod kernels;
pub mod layout;
pub mod nn;
pub mod ops;
pub mod packed;

pub use layout::Layout;
pub use ops::{check_params, rbe_generate, rbe_linear, RbeParams};
pub use packed::Packed128;
