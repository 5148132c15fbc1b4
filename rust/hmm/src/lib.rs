//! rbe-hmm: hidden Markov models for rbe-autodiff, a front-end crate built on
//! [`rbe_core::ext`] only (see `docs/hmm.md`).
//!
//! - [`math`]: the vectorisable `exp` / `ln` the kernels inline;
//! - [`kernels`]: the pure loops (forward, backward with posteriors and
//!   expected transition counts, the general adjoint, Viterbi), one task per
//!   sequence;
//! - [`ops`]: the differentiable ops [`hmm_log_likelihood`],
//!   [`hmm_posteriors`] (a multi-output node) and [`hmm_viterbi`]: checks,
//!   outputs, backward;
//! - [`composite`]: the same recursions written with the core's
//!   differentiable ops (the reference in tests and the `create_graph` path).
pub mod composite;
pub mod kernels;
pub mod math;
pub mod ops;

pub use kernels::TransKind;
pub use ops::{check, hmm_log_likelihood, hmm_posteriors, hmm_viterbi, Posteriors, ViterbiPath};
