//! rbe-pinn: physics-informed networks for rbe-autodiff (see `docs/pinn.md`),
//! a front-end crate built on [`rbe_core::ext`] only.
//!
//! - [`kernels`]: the pure loops (the Chebyshev basis and its derivatives by
//!   their recurrences, the layer's basis matrices and contractions in
//!   Taylor mode, the fused backward);
//! - [`ops`]: the differentiable ops [`cheb_basis`], [`chebykan`] (a
//!   Chebyshev Kolmogorov-Arnold layer, basis and contraction in one kernel)
//!   and [`chebykan_taylor`] (the layer carrying first derivatives and the
//!   Laplacian or the Hessian diagonal in one forward sweep), each closed
//!   under differentiation.
pub mod kernels;
pub mod ops;

pub use kernels::Second;
pub use ops::{cheb_basis, chebykan, chebykan_taylor, g_tensors, InputMap, TaylorOut};
