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
//! use rbe_structured::nn::{backward, mse_loss, Activation, Adam, Module, RbeConfig, RbeLinear, Sequential};
//! # fn main() -> rbe_core::ext::Result<()> {
//! let cfg = RbeConfig { block: (16, 16), atoms: 4, ..RbeConfig::default() };
//! let model = Sequential::new()
//!     .push(RbeLinear::new(16, 64, cfg.clone())?)
//!     .push(Activation::Tanh)
//!     .push(RbeLinear::new(64, 1, RbeConfig { seed: 1, ..cfg })?);
//! let mut opt = Adam::new(model.parameters(), 1e-2)?;
//! # use rbe_core::ext::{DType, Tensor};
//! # let (x, y) = (Tensor::zeros(&[8, 16], DType::F32)?, Tensor::zeros(&[8, 1], DType::F32)?);
//! for _ in 0..100 {
//!     opt.zero_grad()?;
//!     let loss = mse_loss(&model.forward(&x)?, &y)?;
//!     backward(&loss)?;
//!     opt.step()?;
//! }
//! # Ok(())
//! # }
//! ```
use crate::layout::Layout;
use crate::ops::{rbe_generate, rbe_linear, RbeParams};
use parking_lot::Mutex;
use rbe_core::ext::ops::binary::{add_scalar, mul, mul_scalar, sub};
use rbe_core::ext::ops::creation::{rand, randn};
use rbe_core::ext::ops::optim::{adam_step, AdamConfig};
use rbe_core::ext::ops::reduce::mean;
use rbe_core::ext::ops::shape::stack;
use rbe_core::ext::ops::unary::{cos, relu, sin, sqrt, tanh};
use rbe_core::ext::{
    autograd_err, dtype_err, fmt_shape, no_grad, ops, run_backward, shape_err, value_err, DType, Generator, Result, Tensor,
};
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
/// forward or backward pass ([`rbe_linear`]).
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
        let tracks = ops::as_dtype(&Tensor::from_vec(alpha, &[nb, j])?, dt)?.contiguous();
        let (res_vals, res_idx) = if k > 0 {
            let one = low_frequency_indices(br, bc, k);
            let idx: Vec<i64> = (0..nb).flat_map(|_| one.iter().map(|&i| i as i64)).collect();
            (Some(leaf_param(Tensor::zeros(&[nb, k], dt)?)?), Some(Tensor::from_vec(idx, &[nb, k])?))
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
        ops::linalg::linear(x, &self.weight, self.bias.as_ref())
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
    let seed = Tensor::ones(loss.shape(), loss.dtype())?;
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
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(value_err!("Adam: invalid epsilon value: {}", self.eps));
        }
        if !((0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2)) {
            return Err(value_err!("Adam: invalid betas: ({b1}, {b2}), each must be in [0, 1)"));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
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
            if st.is_none() {
                *st = Some(AdamState {
                    exp_avg: Tensor::zeros(p.shape(), p.dtype())?,
                    exp_avg_sq: Tensor::zeros(p.shape(), p.dtype())?,
                    step: 0,
                });
            }
            let Some(s) = st.as_mut() else { continue };
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
