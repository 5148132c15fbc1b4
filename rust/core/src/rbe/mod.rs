//! RBE structured weights (see `docs/rbe.md` and the specification): a
//! matrix generated block by block from a few atoms per block, each atom a
//! wave `A g(kx x + ky y + phi)` with `g` = sin or tanh, plus an optional
//! sparse DCT residual per block.
pub mod dct;
pub mod layout;
pub mod nn;
pub mod packed;

pub use layout::Layout;
pub use packed::Packed128;
