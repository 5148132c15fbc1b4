//! A small Rust-native model API for RBE layers, mirroring the Python
//! `rbe.nn` one, so an RBE model can be built and trained without Python.
//!
//! - [`Module`]: `forward` + `parameters`;
//! - layers: [`RbeLinear`] (weights generated from RBE atoms, see the spec),
//!   [`Dense`] (a plain `Linear`, for comparison), [`Activation`], and
//!   [`Sequential`] to chain them;
//! - [`mse_loss`], [`backward`] (a thin wrapper over the autograd engine) and
//!   the [`Adam`] optimiser (the fused `ops::optim::adam_step` kernel).
//!
//! ```no_run
//! use rbe_core::rbe::nn::{backward, mse_loss, Activation, Adam, Module, RbeConfig, RbeLinear, Sequential};
//! # fn main() -> rbe_core::Result<()> {
//! let cfg = RbeConfig { block: (16, 16), atoms: 4, ..RbeConfig::default() };
//! let model = Sequential::new()
//!     .push(RbeLinear::new(16, 64, cfg.clone())?)
//!     .push(Activation::Tanh)
//!     .push(RbeLinear::new(64, 1, RbeConfig { seed: 1, ..cfg })?);
//! let mut opt = Adam::new(model.parameters(), 1e-2)?;
//! # let (x, y) = (rbe_core::Tensor::zeros(&[8, 16], rbe_core::DType::F32), rbe_core::Tensor::zeros(&[8, 1], rbe_core::DType::F32));
//! for _ in 0..100 {
//!     opt.zero_grad()?;
//!     let loss = mse_loss(&model.forward(&x)?, &y)?;
//!     backward(&loss)?;
//!     opt.step()?;
//! }
//! # Ok(())
//! # }
//! ```
use crate::autograd::{no_grad, run_backward};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::binary::{add_scalar, mul, mul_scalar, sub};
use crate::ops::creation::{rand, randn};
use crate::ops::optim::{adam_step, AdamConfig};
use crate::ops::rbe::{rbe_generate, rbe_linear, RbeParams};
use crate::ops::reduce::mean;
use crate::ops::shape::stack;
use crate::ops::unary::{cos, relu, sin, sqrt, tanh};
use crate::random::Generator;
use crate::rbe::layout::Layout;
use crate::tensor::{fmt_shape, Tensor};
use crate::{autograd_err, dtype_err, shape_err, value_err};
use parking_lot::Mutex;
use std::f64::consts::PI;

/// A differentiable computation with trainable parameters.
pub trait Module {
    /// Apply the module to a batch `x`.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// The trainable tensors (leaves that require grad), shared with the
    /// module: an optimiser updating them in place updates the module.
    fn parameters(&self) -> Vec<Tensor>;
    /// Total number of scalars in [`Module::parameters`].
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Tensor::numel).sum()
    }
}

/// Run `f` with a locked copy of `g`, then store the advanced state back, so
/// the creation ops (which take a `parking_lot::Mutex<Generator>`) can draw
/// from a caller's plain `&mut Generator`.
fn with_gen<R>(g: &mut Generator, f: impl FnOnce(&Mutex<Generator>) -> Result<R>) -> Result<R> {
    let m = Mutex::new(g.clone());
    let r = f(&m);
    *g = m.into_inner();
    r
}

fn check_float(dtype: DType, what: &str) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(dtype_err!("{what}: dtype must be float32 or float64, got {}", dtype.name()))
    }
}

/// A fresh leaf that requires grad, holding the values of `t`.
fn leaf_param(t: Tensor) -> Result<Tensor> {
    let p = t.detach().contiguous();
    p.set_requires_grad(true)?;
    Ok(p)
}

// ------------------------------------------------------------------ RbeLinear

/// Which track (generator function) the atoms of a new [`RbeLinear`] start on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TrackInit {
    /// Every atom `A sin(k . (x, y) + phi)` (the separable, fast path).
    #[default]
    Sin,
    /// Every atom `A tanh(k . (x, y) + phi)`.
    Tanh,
    /// Even atoms SIN, odd atoms TANH.
    Mixed,
}

/// Configuration of a new [`RbeLinear`].
#[derive(Clone, Debug, PartialEq)]
pub struct RbeConfig {
    /// Block shape `(Br, Bc)`; default `(64, 64)`.
    pub block: (usize, usize),
    /// Atoms per block `J`; default 4.
    pub atoms: usize,
    /// DCT residual coefficients per block `K`; default 0.
    pub residual: usize,
    /// Initial tracks; default [`TrackInit::Sin`].
    pub track: TrackInit,
    /// Learn an additive bias; default true.
    pub bias: bool,
    /// Parameter dtype (float32 or float64); default float32.
    pub dtype: DType,
    /// Seed of the initialisation generator; default 0. Layers built with
    /// [`RbeLinear::new`] and the same seed get the same draws: give each
    /// layer of a model its own seed, or use [`RbeLinear::with_generator`].
    pub seed: u64,
    /// Frequency scale (`k = 2 kappa p`); `None` takes [`Layout::default_kappa`].
    pub kappa: Option<f64>,
}

impl Default for RbeConfig {
    fn default() -> Self {
        RbeConfig { block: (64, 64), atoms: 4, residual: 0, track: TrackInit::Sin, bias: true, dtype: DType::F32, seed: 0, kappa: None }
    }
}

/// `y = x W^T + b` with the `out x in` matrix `W` generated block by block
/// from RBE atoms (spec sections 1, 2 and 6), never materialised in the
/// forward or backward pass (`ops::rbe::rbe_linear`).
///
/// Tensors, for `nb = layout.n_blocks()` blocks, `J` atoms and `K` residual
/// coefficients per block:
/// - `atoms` `(nb, J, 4)` = `(A, phi, px, py)`, wave vector `k = 2 kappa p`
///   (parameter);
/// - `tracks` `(nb, J)`, 0 = SIN, 1 = TANH. Not a parameter and not
///   requiring grad unless [`RbeLinear::enable_track_grad`] is called; its
///   gradient is then the bit-gradient gamma ([`RbeLinear::track_grad`]);
/// - `res_vals` `(nb, K)` (parameter) and `res_idx` `(nb, K)` int64
///   (`u * Bc + v` of the orthonormal 2-D DCT-II), both `None` when `K = 0`;
/// - `bias` `(out,)` (parameter), if any.
#[derive(Clone)]
pub struct RbeLinear {
    pub layout: Layout,
    pub atoms: Tensor,
    pub tracks: Tensor,
    pub res_vals: Option<Tensor>,
    pub res_idx: Option<Tensor>,
    pub bias: Option<Tensor>,
}

/// The `k` DCT coefficients of lowest frequency of a `br x bc` block (order
/// of `u + v`, then `u`), returned as flat indices `u * bc + v` in
/// increasing order (the layout of the Python `low_frequency_indices`).
pub fn low_frequency_indices(br: usize, bc: usize, k: usize) -> Vec<usize> {
    let mut pairs: Vec<(usize, usize, usize)> = (0..br).flat_map(|u| (0..bc).map(move |v| (u + v, u, v))).collect();
    pairs.sort_unstable();
    let mut idx: Vec<usize> = pairs.into_iter().take(k).map(|(_, u, v)| u * bc + v).collect();
    idx.sort_unstable();
    idx
}

impl RbeLinear {
    /// A new layer for `in_features -> out_features`, initialised from a
    /// generator seeded with `cfg.seed`.
    ///
    /// Initialisation (the scale of torch's `nn.Linear`, `Var(W_ij) ~ 1/(3 in)`):
    /// - amplitudes `A ~ N(0, sigma)` with `sigma = sqrt(2 / (3 in J))`, since
    ///   `E[sin^2] = 1/2` under a uniform phase and a block entry sums `J` atoms;
    /// - phases uniform in `[-pi, pi)`;
    /// - wave vectors uniform in the disk of radius `k_max` = half the grid's
    ///   Nyquist frequency, `k_max = (pi max(Br, Bc) / 2) / 2`, stored in the
    ///   tangent chart as `p = k / (2 kappa)`;
    /// - residual indices: the `K` lowest-frequency DCT coefficients of the
    ///   block ([`low_frequency_indices`], shared by all blocks), values zero;
    /// - bias uniform in `[-1/sqrt(in), 1/sqrt(in))`.
    ///
    /// Draw order (amplitudes, phases, radii, angles, bias) and arithmetic
    /// follow the Python `RBELinear.reset_parameters`.
    pub fn new(in_features: usize, out_features: usize, cfg: RbeConfig) -> Result<RbeLinear> {
        let mut g = Generator::new(cfg.seed);
        Self::with_generator(in_features, out_features, cfg, &mut g)
    }

    /// Like [`RbeLinear::new`], drawing from `g` (advanced past the draws)
    /// instead of a fresh generator; `cfg.seed` is ignored.
    pub fn with_generator(in_features: usize, out_features: usize, cfg: RbeConfig, g: &mut Generator) -> Result<RbeLinear> {
        check_float(cfg.dtype, "RbeLinear")?;
        let (br, bc) = cfg.block;
        let layout = Layout::new(out_features, in_features, br, bc, cfg.kappa)?;
        if cfg.residual > br * bc {
            return Err(value_err!("RbeLinear: residual = {} exceeds the {} DCT coefficients of a {br}x{bc} block", cfg.residual, br * bc));
        }
        let (nb, j, k, dt) = (layout.n_blocks(), cfg.atoms, cfg.residual, cfg.dtype);
        let _ng = no_grad();
        let (atoms, bias) = with_gen(g, |m| {
            let gm = Some(m);
            let sigma = (2.0 / (3.0 * in_features as f64 * j.max(1) as f64)).sqrt();
            let amp = mul_scalar(&randn(&[nb, j], 0.0, 1.0, dt, gm)?, sigma)?;
            let phase = mul_scalar(&add_scalar(&mul_scalar(&rand(&[nb, j], 0.0, 1.0, dt, gm)?, 2.0)?, -1.0)?, PI)?;
            let k_max = 0.5 * PI * br.max(bc) as f64 / 2.0;
            let rad = mul_scalar(&sqrt(&rand(&[nb, j], 0.0, 1.0, dt, gm)?)?, k_max / (2.0 * layout.kappa))?;
            let ang = mul_scalar(&rand(&[nb, j], 0.0, 1.0, dt, gm)?, 2.0 * PI)?;
            let atoms = stack(&[amp, phase, mul(&rad, &cos(&ang)?)?, mul(&rad, &sin(&ang)?)?], -1)?;
            let bias = if cfg.bias {
                let b = 1.0 / (in_features as f64).sqrt();
                Some(mul_scalar(&add_scalar(&mul_scalar(&rand(&[out_features], 0.0, 1.0, dt, gm)?, 2.0)?, -1.0)?, b)?)
            } else {
                None
            };
            Ok((atoms, bias))
        })?;
        let alpha: Vec<f64> = (0..nb * j)
            .map(|i| match cfg.track {
                TrackInit::Sin => 0.0,
                TrackInit::Tanh => 1.0,
                TrackInit::Mixed => (i % j.max(1) % 2) as f64,
            })
            .collect();
        let tracks = crate::ops::as_dtype(&Tensor::from_vec(alpha, &[nb, j])?, dt)?.contiguous();
        let (res_vals, res_idx) = if k > 0 {
            let one = low_frequency_indices(br, bc, k);
            let idx: Vec<i64> = (0..nb).flat_map(|_| one.iter().map(|&i| i as i64)).collect();
            (Some(leaf_param(Tensor::zeros(&[nb, k], dt))?), Some(Tensor::from_vec(idx, &[nb, k])?))
        } else {
            (None, None)
        };
        Ok(RbeLinear { layout, atoms: leaf_param(atoms)?, tracks, res_vals, res_idx, bias: bias.map(leaf_param).transpose()? })
    }

    /// The parameter tensors as the RBE ops take them.
    pub fn params(&self) -> RbeParams<'_> {
        RbeParams { atoms: &self.atoms, tracks: &self.tracks, res_vals: self.res_vals.as_ref(), res_idx: self.res_idx.as_ref() }
    }

    /// Atoms per block `J`.
    pub fn atoms_per_block(&self) -> usize {
        self.atoms.shape().get(1).copied().unwrap_or(0)
    }

    /// Residual coefficients per block `K`.
    pub fn residual_per_block(&self) -> usize {
        self.res_vals.as_ref().map_or(0, |v| v.shape()[1])
    }

    /// Stored size of the generated matrix (spec section 6):
    /// `n_blocks (128 J + 32 K)` bits, without the file header and the bias.
    pub fn bits(&self) -> usize {
        self.layout.n_blocks() * (128 * self.atoms_per_block() + 32 * self.residual_per_block())
    }

    /// The generated `out x in` matrix as a plain tensor (no graph).
    pub fn to_dense(&self) -> Result<Tensor> {
        let _ng = no_grad();
        Ok(rbe_generate(&self.layout, &self.params())?.detach())
    }

    /// The generated matrix, differentiable with respect to the parameters.
    pub fn weight_matrix(&self) -> Result<Tensor> {
        rbe_generate(&self.layout, &self.params())
    }

    /// Make the backward pass compute the bit-gradient gamma (spec section 5)
    /// into `tracks.grad()`, or stop it (and drop the stored gamma).
    pub fn enable_track_grad(&self, on: bool) -> Result<()> {
        self.tracks.set_requires_grad(on)?;
        if !on {
            self.tracks.set_grad(None)?;
        }
        Ok(())
    }

    /// Whether the backward pass computes gamma.
    pub fn track_grad_enabled(&self) -> bool {
        self.tracks.requires_grad()
    }

    /// gamma `= dL/d(track)` per atom, `(n_blocks, J)`, accumulated by the
    /// backward passes since the last reset (None unless enabled).
    pub fn track_grad(&self) -> Option<Tensor> {
        self.tracks.grad()
    }
}

impl Module for RbeLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        rbe_linear(x, &self.layout, &self.params(), self.bias.as_ref())
    }
    /// `atoms`, then the residual values and the bias when present (the
    /// tracks are not parameters).
    fn parameters(&self) -> Vec<Tensor> {
        std::iter::once(self.atoms.clone()).chain(self.res_vals.clone()).chain(self.bias.clone()).collect()
    }
}

// ---------------------------------------------------------------------- Dense

/// A plain linear layer `y = x W^T + b`, `W` of shape `(out, in)`, with
/// torch's default initialisation: `W` and `b` uniform in
/// `[-1/sqrt(in), 1/sqrt(in))` (kaiming-uniform with `a = sqrt(5)`), so
/// `Var(W_ij) = 1/(3 in)` like a fresh [`RbeLinear`].
#[derive(Clone)]
pub struct Dense {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Dense {
    /// A new layer initialised from a generator seeded with `seed`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, dtype: DType, seed: u64) -> Result<Dense> {
        Self::with_generator(in_features, out_features, bias, dtype, &mut Generator::new(seed))
    }

    /// Like [`Dense::new`], drawing from `g` (weight first, then bias).
    pub fn with_generator(in_features: usize, out_features: usize, bias: bool, dtype: DType, g: &mut Generator) -> Result<Dense> {
        check_float(dtype, "Dense")?;
        if in_features == 0 || out_features == 0 {
            return Err(value_err!("Dense: feature counts must be positive, got in={in_features}, out={out_features}"));
        }
        let bound = 1.0 / (in_features as f64).sqrt();
        let (w, b) = with_gen(g, |m| {
            let w = rand(&[out_features, in_features], -bound, bound, dtype, Some(m))?;
            let b = if bias { Some(rand(&[out_features], -bound, bound, dtype, Some(m))?) } else { None };
            Ok((w, b))
        })?;
        Ok(Dense { weight: leaf_param(w)?, bias: b.map(leaf_param).transpose()? })
    }

    /// Stored size of the weight matrix as float32: `32 out in` bits (no bias).
    pub fn bits(&self) -> usize {
        32 * self.weight.numel()
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::linalg::linear(x, &self.weight, self.bias.as_ref())
    }
    fn parameters(&self) -> Vec<Tensor> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}

// ----------------------------------------------------------- Activation, Sequential

/// An elementwise activation (no parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Identity,
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => relu(x),
            Activation::Tanh => tanh(x),
            Activation::Identity => Ok(x.clone()),
        }
    }
    fn parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }
}

/// Modules applied one after the other.
#[derive(Default)]
pub struct Sequential(pub Vec<Box<dyn Module + Send + Sync>>);

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Sequential {
        Sequential(Vec::new())
    }
    /// Append a module (builder style).
    pub fn push<M: Module + Send + Sync + 'static>(mut self, m: M) -> Sequential {
        self.0.push(Box::new(m));
        self
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.iter().try_fold(x.clone(), |h, m| m.forward(&h))
    }
    fn parameters(&self) -> Vec<Tensor> {
        self.0.iter().flat_map(|m| m.parameters()).collect()
    }
}

// ---------------------------------------------------------- loss and backward

/// Mean squared error `mean((pred - target)^2)`; the shapes must be equal
/// (no silent broadcasting) and the dtypes too.
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.shape() != target.shape() {
        return Err(shape_err!(
            "mse_loss: prediction shape {} and target shape {} differ",
            fmt_shape(pred.shape()),
            fmt_shape(target.shape())
        ));
    }
    if pred.dtype() != target.dtype() {
        return Err(dtype_err!("mse_loss: prediction dtype {} and target dtype {} differ", pred.dtype().name(), target.dtype().name()));
    }
    check_float(pred.dtype(), "mse_loss")?;
    let d = sub(pred, target)?;
    mean(&mul(&d, &d)?, None, false)
}

/// Backpropagate from a scalar `loss`: accumulate `d loss / d leaf` into the
/// `.grad()` of every leaf requiring grad that it depends on, then free the graph.
pub fn backward(loss: &Tensor) -> Result<()> {
    if loss.numel() != 1 {
        return Err(autograd_err!(
            "backward: grad can be implicitly created only for scalar outputs, got shape {}",
            fmt_shape(loss.shape())
        ));
    }
    let seed = Tensor::ones(loss.shape(), loss.dtype());
    run_backward(std::slice::from_ref(loss), &[seed], false, false, None, false)?;
    Ok(())
}

// ----------------------------------------------------------------------- Adam

/// Per-parameter Adam state.
#[derive(Clone)]
pub struct AdamState {
    /// First moment `m`.
    pub exp_avg: Tensor,
    /// Second moment `v`.
    pub exp_avg_sq: Tensor,
    /// Updates applied so far.
    pub step: u64,
}

/// Adam (Kingma & Ba), with torch's update rule (L2 `weight_decay` added to
/// the gradient):
/// `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
/// `p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
/// Parameters without a gradient are skipped (their step count does not advance).
pub struct Adam {
    pub params: Vec<Tensor>,
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// One entry per parameter, created at its first update.
    pub state: Vec<Option<AdamState>>,
}

impl Adam {
    /// Adam over `params` with learning rate `lr`, betas `(0.9, 0.999)`,
    /// `eps = 1e-8`, no weight decay (change the public fields to tune).
    /// The parameters must be distinct floating-point leaves.
    pub fn new(params: Vec<Tensor>, lr: f64) -> Result<Adam> {
        for (i, p) in params.iter().enumerate() {
            check_float(p.dtype(), "Adam")?;
            if !p.is_leaf() {
                return Err(value_err!("Adam: can't optimize a non-leaf Tensor (parameter {i})"));
            }
            if params[..i].iter().any(|q| q.id() == p.id()) {
                return Err(value_err!("Adam: parameter {i} appears more than once"));
            }
        }
        let n = params.len();
        let opt = Adam { params, lr, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, state: vec![None; n] };
        opt.check_hyper()?;
        Ok(opt)
    }

    fn check_hyper(&self) -> Result<()> {
        let (b1, b2) = self.betas;
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return Err(value_err!("Adam: invalid learning rate: {}", self.lr));
        }
        if !(self.eps >= 0.0) {
            return Err(value_err!("Adam: invalid epsilon value: {}", self.eps));
        }
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return Err(value_err!("Adam: invalid betas: ({b1}, {b2}), each must be in [0, 1)"));
        }
        if !(self.weight_decay >= 0.0) {
            return Err(value_err!("Adam: invalid weight_decay value: {}", self.weight_decay));
        }
        Ok(())
    }

    /// One update of every parameter that has a gradient (fused kernel).
    pub fn step(&mut self) -> Result<()> {
        self.check_hyper()?;
        let (mut ps, mut gs, mut ms, mut vs, mut steps, mut which) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, (p, st)) in self.params.iter().zip(self.state.iter_mut()).enumerate() {
            let Some(g) = p.grad() else { continue };
            which.push(i);
            let s = st.get_or_insert_with(|| AdamState {
                exp_avg: Tensor::zeros(p.shape(), p.dtype()),
                exp_avg_sq: Tensor::zeros(p.shape(), p.dtype()),
                step: 0,
            });
            ps.push(p.clone());
            gs.push(g.contiguous());
            ms.push(s.exp_avg.clone());
            vs.push(s.exp_avg_sq.clone());
            steps.push(s.step + 1);
        }
        if ps.is_empty() {
            return Ok(());
        }
        let cfg = AdamConfig {
            lr: self.lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            amsgrad: false,
            maximize: false,
            decoupled: false,
        };
        let vmax = vec![None; ps.len()];
        adam_step(&ps, &gs, &ms, &vs, &vmax, &steps, cfg)?;
        for i in which {
            if let Some(s) = self.state[i].as_mut() {
                s.step += 1;
            }
        }
        Ok(())
    }

    /// Drop every parameter's gradient (sets `.grad()` to None).
    pub fn zero_grad(&self) -> Result<()> {
        self.params.iter().try_for_each(|p| p.set_grad(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::linalg::linear;

    fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |a, &b| a.max(b.abs()))
    }

    #[test]
    fn forward_equals_dense_linear_with_edge_blocks() {
        let cfg = RbeConfig { block: (8, 8), atoms: 3, residual: 2, track: TrackInit::Mixed, seed: 11, ..RbeConfig::default() };
        let layer = RbeLinear::new(37, 29, cfg).unwrap();
        // nonzero residual values so the DCT path is exercised
        {
            let rv = layer.res_vals.as_ref().unwrap();
            let nb = layer.layout.n_blocks();
            let vals: Vec<f32> = (0..nb * 2).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01).collect();
            crate::kernels::copy_into(rv, &Tensor::from_vec(vals, rv.shape()).unwrap()).unwrap();
        }
        assert_eq!(layer.layout.grid(), (4, 5));
        assert_eq!(layer.tracks.to_vec_f64()[..3], [0.0, 1.0, 0.0]);
        let x = rand(&[6, 37], -1.0, 1.0, DType::F32, Some(&Mutex::new(Generator::new(5)))).unwrap();
        let y = layer.forward(&x).unwrap();
        let w = layer.to_dense().unwrap();
        assert_eq!(w.shape(), [29, 37]);
        assert!(!w.requires_grad());
        let want = linear(&x, &w, layer.bias.as_ref()).unwrap();
        let (a, b) = (y.to_vec_f64(), want.to_vec_f64());
        let diff: Vec<f64> = a.iter().zip(&b).map(|(p, q)| p - q).collect();
        let scale = max_abs(&b);
        assert!(scale > 0.1, "degenerate output scale {scale}");
        assert!(max_abs(&diff) <= 1e-5 * scale, "max diff {} vs scale {scale}", max_abs(&diff));
        // and W itself against the f64 reference generator of the spec, block (0, 4) (an edge block)
        let wv = w.to_vec_f64();
        let (r0, rows, c0, cols) = layer.layout.block_extent(4);
        assert_eq!((rows, cols), (8, 5));
        let at = layer.atoms.to_vec_f64();
        let waves: Vec<crate::rbe::layout::Wave> = (0..3)
            .map(|a| {
                let o = (4 * 3 + a) * 4;
                crate::rbe::layout::Wave { amp: at[o], phase: at[o + 1], px: at[o + 2], py: at[o + 3], alpha: (a % 2) as f64 }
            })
            .collect();
        let rvals = layer.res_vals.as_ref().unwrap().to_vec_f64();
        let ridx = layer.res_idx.as_ref().unwrap().to_vec::<i64>();
        let res: Vec<(usize, f64)> = (0..2).map(|q| (ridx[4 * 2 + q] as usize, rvals[4 * 2 + q])).collect();
        let blk = crate::rbe::layout::block_reference(&layer.layout, &waves, &res);
        for i in 0..rows {
            for j in 0..cols {
                let (got, exp) = (wv[(r0 + i) * 37 + c0 + j], blk[i * 8 + j]);
                assert!((got - exp).abs() <= 1e-5 * (1.0 + exp.abs()), "W[{i},{j}] {got} vs {exp}");
            }
        }
    }

    #[test]
    fn init_statistics_and_flags() {
        let cfg = RbeConfig { block: (16, 16), atoms: 4, residual: 3, seed: 3, dtype: DType::F64, ..RbeConfig::default() };
        let (inp, out) = (256, 256);
        let layer = RbeLinear::new(inp, out, cfg).unwrap();
        // parameters require grad, the tracks do not
        assert!(
            layer.atoms.requires_grad() && layer.res_vals.as_ref().unwrap().requires_grad() && layer.bias.as_ref().unwrap().requires_grad()
        );
        assert!(!layer.tracks.requires_grad());
        assert_eq!(layer.parameters().len(), 3);
        // Var(W) ~ 1/(3 in): 65536 entries, allow 10%
        let w = layer.to_dense().unwrap().to_vec_f64();
        let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
        let want = 1.0 / (3.0 * inp as f64);
        assert!((var / want - 1.0).abs() < 0.1, "Var(W) = {var}, want {want}");
        // wave vectors inside the disk of half the Nyquist frequency, phases in [-pi, pi)
        let at = layer.atoms.to_vec_f64();
        let k_max = PI * 16.0 / 4.0;
        for a in at.chunks(4) {
            let k = 2.0 * layer.layout.kappa * a[2].hypot(a[3]);
            assert!(k <= k_max * (1.0 + 1e-12), "|k| = {k} > {k_max}");
            assert!((-PI..PI).contains(&a[1]));
        }
        // residual: the 3 lowest frequencies (0,0), (0,1), (1,0) -> flat 0, 1, 16; zero values
        assert_eq!(layer.res_idx.as_ref().unwrap().to_vec::<i64>()[..3], [0, 1, 16]);
        assert!(layer.res_vals.as_ref().unwrap().to_vec_f64().iter().all(|&v| v == 0.0));
        let b = 1.0 / (inp as f64).sqrt();
        assert!(layer.bias.as_ref().unwrap().to_vec_f64().iter().all(|&v| (-b..b).contains(&v)));
        assert_eq!(layer.bits(), 256 * (128 * 4 + 32 * 3));
        assert_eq!(low_frequency_indices(3, 4, 6), vec![0, 1, 2, 4, 5, 8]);
    }

    #[test]
    fn track_grad_is_opt_in() {
        let cfg = RbeConfig { block: (4, 4), atoms: 2, track: TrackInit::Mixed, seed: 1, ..RbeConfig::default() };
        let layer = RbeLinear::new(8, 6, cfg).unwrap();
        let x = rand(&[5, 8], -1.0, 1.0, DType::F32, Some(&Mutex::new(Generator::new(2)))).unwrap();
        let y = Tensor::zeros(&[5, 6], DType::F32);
        backward(&mse_loss(&layer.forward(&x).unwrap(), &y).unwrap()).unwrap();
        assert!(layer.track_grad().is_none());
        assert_eq!(layer.atoms.grad().unwrap().shape(), [4, 2, 4]);
        layer.enable_track_grad(true).unwrap();
        assert!(layer.track_grad_enabled());
        backward(&mse_loss(&layer.forward(&x).unwrap(), &y).unwrap()).unwrap();
        let gamma = layer.track_grad().unwrap();
        assert_eq!(gamma.shape(), [4, 2]);
        assert!(gamma.to_vec_f64().iter().any(|&v| v != 0.0));
        layer.enable_track_grad(false).unwrap();
        assert!(layer.track_grad().is_none() && !layer.tracks.requires_grad());
    }

    fn make_data(n: usize, seed: u64) -> (Tensor, Tensor) {
        let x = rand(&[n, 8], -1.0, 1.0, DType::F32, Some(&Mutex::new(Generator::new(seed)))).unwrap();
        let xv = x.to_vec::<f32>();
        let y: Vec<f32> = (0..n).map(|i| (3.0 * xv[i * 8]).sin() + xv[i * 8 + 1] * xv[i * 8 + 1]).collect();
        (x, Tensor::from_vec(y, &[n, 1]).unwrap())
    }

    /// Trains the test-2 model; returns the losses of every step (before the update).
    fn train(steps: usize, seed: u64) -> Vec<f32> {
        let l1 = RbeConfig { block: (8, 8), atoms: 2, seed, ..RbeConfig::default() };
        let l2 = RbeConfig { block: (1, 8), atoms: 2, seed: seed + 1, ..RbeConfig::default() };
        let model =
            Sequential::new().push(RbeLinear::new(8, 32, l1).unwrap()).push(Activation::Tanh).push(RbeLinear::new(32, 1, l2).unwrap());
        let (x, y) = make_data(256, 1234);
        let mut opt = Adam::new(model.parameters(), 0.01).unwrap();
        let mut losses = Vec::with_capacity(steps);
        for _ in 0..steps {
            opt.zero_grad().unwrap();
            let loss = mse_loss(&model.forward(&x).unwrap(), &y).unwrap();
            losses.push(loss.item_f64().unwrap() as f32);
            backward(&loss).unwrap();
            opt.step().unwrap();
        }
        let _ng = no_grad();
        losses.push(mse_loss(&model.forward(&x).unwrap(), &y).unwrap().item_f64().unwrap() as f32);
        losses
    }

    #[test]
    fn sequential_rbe_mlp_fits_regression() {
        // 1000 Adam steps at lr 0.01: the ratio was 0.11-0.16 over five other seeds
        let losses = train(1000, 7);
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last.is_finite() && last < 0.25 * first, "initial MSE {first}, final MSE {last}");
    }

    #[test]
    fn training_is_deterministic() {
        let a = train(40, 9);
        let b = train(40, 9);
        assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        let c = train(40, 10);
        assert_ne!(a, c, "a different seed should give a different run");
    }

    #[test]
    fn adam_matches_closed_form() {
        let p0 = [0.5, -1.25, 2.0, 0.0];
        let grads = [[0.3, -0.7, 1e-3, 4.0], [-0.2, 0.1, 0.0, 2.5]];
        let p = leaf_param(Tensor::from_vec(p0.to_vec(), &[4]).unwrap()).unwrap();
        let other = leaf_param(Tensor::from_vec(vec![1.0f64, 2.0], &[2]).unwrap()).unwrap();
        let mut opt = Adam::new(vec![p.clone(), other.clone()], 0.1).unwrap();
        opt.betas = (0.8, 0.95);
        opt.eps = 1e-3;
        opt.weight_decay = 0.05;
        // hand-computed reference, f64
        let (lr, b1, b2, eps, wd) = (0.1f64, 0.8f64, 0.95f64, 1e-3f64, 0.05f64);
        let mut want = p0;
        let (mut m, mut v) = ([0.0f64; 4], [0.0f64; 4]);
        for (t, g) in grads.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..4 {
                let gi = g[i] + wd * want[i];
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let mhat = m[i] / (1.0 - b1.powi(t));
                let vhat = v[i] / (1.0 - b2.powi(t));
                want[i] -= lr * mhat / (vhat.sqrt() + eps);
            }
            opt.zero_grad().unwrap();
            p.set_grad(Some(Tensor::from_vec(g.to_vec(), &[4]).unwrap())).unwrap();
            opt.step().unwrap();
            let got = p.to_vec::<f64>();
            for i in 0..4 {
                assert!((got[i] - want[i]).abs() <= 1e-14 * (1.0 + want[i].abs()), "step {t}, [{i}]: {} vs {}", got[i], want[i]);
            }
        }
        // the parameter without a gradient was skipped
        assert_eq!(other.to_vec::<f64>(), vec![1.0, 2.0]);
        assert!(opt.state[1].is_none());
        assert_eq!(opt.state[0].as_ref().unwrap().step, 2);
        // zero_grad clears
        assert!(p.grad().is_some());
        opt.zero_grad().unwrap();
        assert!(p.grad().is_none());
    }

    #[test]
    fn errors_not_panics() {
        assert!(RbeLinear::new(0, 4, RbeConfig::default()).is_err());
        assert!(RbeLinear::new(4, 4, RbeConfig { block: (2, 2), residual: 5, ..RbeConfig::default() }).is_err());
        assert!(RbeLinear::new(4, 4, RbeConfig { dtype: DType::I64, ..RbeConfig::default() }).is_err());
        assert!(RbeLinear::new(4, 4, RbeConfig { kappa: Some(-1.0), ..RbeConfig::default() }).is_err());
        let layer = RbeLinear::new(4, 3, RbeConfig { block: (2, 2), ..RbeConfig::default() }).unwrap();
        assert!(layer.forward(&Tensor::zeros(&[2, 5], DType::F32)).is_err());
        assert!(layer.forward(&Tensor::zeros(&[2, 4], DType::F64)).is_err());
        assert!(mse_loss(&Tensor::zeros(&[3, 1], DType::F32), &Tensor::zeros(&[3], DType::F32)).is_err());
        assert!(backward(&Tensor::zeros(&[2], DType::F32)).is_err());
        assert!(backward(&Tensor::zeros(&[], DType::F32)).is_err()); // no graph
        assert!(Adam::new(vec![Tensor::zeros(&[2], DType::I64)], 0.1).is_err());
        assert!(Adam::new(layer.parameters(), -1.0).is_err());
        let t = leaf_param(Tensor::zeros(&[2], DType::F32)).unwrap();
        assert!(Adam::new(vec![t.clone(), t], 0.1).is_err());
        assert!(Dense::new(0, 2, true, DType::F32, 0).is_err());
    }

    #[test]
    fn dense_init_and_forward() {
        let d = Dense::new(10, 3, true, DType::F64, 4).unwrap();
        let b = 1.0 / 10f64.sqrt();
        assert!(d.weight.to_vec_f64().iter().chain(d.bias.as_ref().unwrap().to_vec_f64().iter()).all(|&v| (-b..b).contains(&v)));
        assert_eq!(d.num_parameters(), 33);
        let x = Tensor::ones(&[1, 10], DType::F64);
        let y = d.forward(&x).unwrap().to_vec_f64();
        let (w, bb) = (d.weight.to_vec_f64(), d.bias.as_ref().unwrap().to_vec_f64());
        for o in 0..3 {
            let want: f64 = w[o * 10..(o + 1) * 10].iter().sum::<f64>() + bb[o];
            assert!((y[o] - want).abs() < 1e-12);
        }
    }
}
