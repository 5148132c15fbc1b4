//! rbe-iclv: the fused hot-path ops of integrated choice and latent variable
//! models (`rbe.iclv`), a front-end crate built on [`rbe_core::ext`] only
//! (see `docs/iclv.md`).
//!
//! - [`kernels`]: the pure loops over slices (ordered-response
//!   log-probabilities and their first and second derivatives, MNL
//!   log-probabilities, panel sums, log-mean-exp), parallel over fixed blocks
//!   of individuals or rows, so the bits do not depend on the thread count;
//! - [`ops`]: the differentiable ops: checks first, outputs through
//!   `FreshTensor`, a fused first-order backward, and a `create_graph`
//!   backward written with other fused ops of this crate (closed forms), so
//!   the exact Hessian (reverse passes over a `create_graph` gradient) stays
//!   as fast as a gradient;
//! - [`composite`]: the same functions written with the core's plain
//!   differentiable ops (the references of the tests).
pub mod composite;
pub mod kernels;
pub mod ops;

pub use kernels::Link;
pub use ops::{expand_rows, log_mean_exp, mnl_logprob, mnl_probs, ordered_logprob, ordered_rho, panel_sum};
