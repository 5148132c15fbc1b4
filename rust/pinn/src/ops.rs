//! The differentiable ChebyKAN ops, forward and backward side by side:
//!
//! - [`cheb_basis`]: `T_k^{(m)}(z)` for `k = 0..=degree` (the `m`-th
//!   derivative of the Chebyshev basis), closed under differentiation (its
//!   backward is `sum_k G T_k^{(m+1)}(z)`, the same op one order up);
//! - [`chebykan`]: the layer `y = sum_{i,k} C[i, o, k] T_k(phi(x_i))`, basis
//!   and contraction in one kernel;
//! - [`chebykan_taylor`]: the layer in Taylor mode, carrying first
//!   derivatives along `d` directions and either the second derivatives
//!   along each ([`Second::Diag`]) or their sum ([`Second::Trace`], the
//!   Laplacian), in one forward sweep.
//!
//! The first-order backward of the layer ops is a fused kernel
//! ([`crate::kernels::taylor_backward`]). Under `create_graph` it is written
//! with differentiable ops instead ([`vjp_graph`]: the core's ops and
//! [`cheb_basis`]), so derivatives of any order work: the Laplacian of a
//! network and then its gradient with respect to the coefficients is a
//! third derivative of the layer.
//!
//! Checks come before any work and name the argument and its shape; a
//! failed call changes nothing.
use crate::kernels::{self, Dims, First, Float, Jets, Map, Needs, Second};
use rbe_core::ext::ops::binary::{add, add_scalar, mul, mul_scalar};
use rbe_core::ext::ops::linalg::matmul;
use rbe_core::ext::ops::reduce::sum;
use rbe_core::ext::ops::shape::{expand, mt, permute, reshape, unsqueeze};
use rbe_core::ext::ops::unary::tanh;
use rbe_core::ext::{
    attach, attach_multi, dispatch_float, dtype_err, fmt_shape, is_grad_enabled, needs_grad, shape_err, value_err, DType, FreshTensor,
    Real, Result, SavedTensor, Tensor,
};

/// The input map of a layer.
#[derive(Clone, Debug, PartialEq)]
pub enum InputMap {
    /// `z = tanh(x)` (the published cPIKAN layer applies it at every layer).
    Tanh,
    /// `z = scale[i] x_i + shift[i]`, per input feature (one value is used
    /// for every feature); [`InputMap::from_box`] maps a box onto [-1, 1].
    Affine { scale: Vec<f64>, shift: Vec<f64> },
}

impl InputMap {
    /// The affine map of the box `[lo_i, hi_i]` onto `[-1, 1]`:
    /// `z = 2 (x - lo) / (hi - lo) - 1`.
    pub fn from_box(lo: &[f64], hi: &[f64]) -> Result<InputMap> {
        if lo.len() != hi.len() || lo.is_empty() {
            return Err(value_err!("chebykan: box bounds lo and hi must have the same nonzero length, got {} and {}", lo.len(), hi.len()));
        }
        let mut scale = Vec::with_capacity(lo.len());
        let mut shift = Vec::with_capacity(lo.len());
        for (k, (&a, &b)) in lo.iter().zip(hi).enumerate() {
            if !(a.is_finite() && b.is_finite() && b > a) {
                return Err(value_err!("chebykan: box axis {k} must have finite bounds lo < hi, got [{a}, {b}]"));
            }
            let s = 2.0 / (b - a);
            scale.push(s);
            shift.push(-1.0 - s * a);
        }
        Ok(InputMap::Affine { scale, shift })
    }

    /// Checks the map against `i` input features; returns the per-feature
    /// `(scale, shift)` of an affine map.
    fn check(&self, i: usize) -> Result<Option<(Vec<f64>, Vec<f64>)>> {
        match self {
            InputMap::Tanh => Ok(None),
            InputMap::Affine { scale, shift } => {
                let widen = |v: &[f64], what: &str| -> Result<Vec<f64>> {
                    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
                        return Err(value_err!("chebykan: the affine map's {what} must be finite, got {bad}"));
                    }
                    match v.len() {
                        1 => Ok(vec![v[0]; i]),
                        n if n == i => Ok(v.to_vec()),
                        n => Err(shape_err!("chebykan: the affine map's {what} has {n} values for {i} input features (give 1 or {i})")),
                    }
                };
                Ok(Some((widen(scale, "scale")?, widen(shift, "shift")?)))
            }
        }
    }
}

/// Per-feature map parameters in the kernels' float type.
struct MapBuf<T> {
    affine: Option<(Vec<T>, Vec<T>)>,
}

impl<T: Float> MapBuf<T> {
    fn new(a: &Option<(Vec<f64>, Vec<f64>)>) -> MapBuf<T> {
        MapBuf { affine: a.as_ref().map(|(s, b)| (s.iter().map(|&v| T::c(v)).collect(), b.iter().map(|&v| T::c(v)).collect())) }
    }
    fn map(&self) -> Map<'_, T> {
        match &self.affine {
            None => Map::Tanh,
            Some((s, b)) => Map::Affine { scale: s, shift: b },
        }
    }
}

fn check_coeffs(coeffs: &Tensor, what: &str) -> Result<(usize, usize, usize)> {
    if !coeffs.dtype().is_float() {
        return Err(dtype_err!("{what}: coeffs must be float32 or float64, got {}", coeffs.dtype().name()));
    }
    if coeffs.ndim() != 3 || coeffs.shape()[2] == 0 {
        return Err(shape_err!(
            "{what}: coeffs must have shape (in_features, out_features, degree + 1) with degree >= 0, got {}",
            fmt_shape(coeffs.shape())
        ));
    }
    let s = coeffs.shape();
    Ok((s[0], s[1], s[2]))
}

fn same_dtype(t: &Tensor, dt: DType, what: &str, arg: &str) -> Result<()> {
    if t.dtype() != dt {
        return Err(dtype_err!("{what}: {arg} has dtype {} but coeffs have {}; convert one of them", t.dtype().name(), dt.name()));
    }
    Ok(())
}

// ---------------------------------------------------------------- the basis

/// `T_k^{(order)}(z)` for `k = 0..=degree`: shape `z.shape() + [degree + 1]`.
/// Differentiable with respect to `z` to any order.
pub fn cheb_basis(z: &Tensor, degree: usize, order: usize) -> Result<Tensor> {
    if !z.dtype().is_float() {
        return Err(dtype_err!("cheb_basis: z must be float32 or float64, got {}", z.dtype().name()));
    }
    let k1 = degree.checked_add(1).ok_or_else(|| value_err!("cheb_basis: degree {degree} is too large"))?;
    let mut shape = z.shape().to_vec();
    shape.push(k1);
    rbe_core::ext::checked_numel(&shape, "cheb_basis")?;
    let zc = z.detach().contiguous();
    let out = dispatch_float!(z.dtype(), "cheb_basis", T => {
        FreshTensor::<T>::build(&shape, |o| kernels::cheb_basis::<T>(zc.data::<T>(), k1, order, o))?
    });
    if needs_grad(&[z]) {
        let sz = SavedTensor::input(z);
        attach(&out, "ChebBasisBackward0", &[z], true, move |ctx, g| {
            let z = sz.get(ctx)?;
            let g = rbe_core::ext::ops::as_dtype(g, z.dtype())?;
            // d/dz T^{(m)} = T^{(m+1)}: the same op one order up, differentiable in turn
            Ok(vec![Some(sum(&mul(&g, &cheb_basis(&z, degree, order + 1)?)?, Some(&[-1]), false)?)])
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------- the layer

/// The ChebyKAN layer: `x` of shape `(..., in_features)`, `coeffs` of shape
/// `(in_features, out_features, degree + 1)`; returns `(..., out_features)`.
pub fn chebykan(x: &Tensor, coeffs: &Tensor, map: &InputMap) -> Result<Tensor> {
    const WHAT: &str = "chebykan";
    let (i, o, _) = check_coeffs(coeffs, WHAT)?;
    same_dtype(x, coeffs.dtype(), WHAT, "input")?;
    if x.ndim() == 0 || x.shape()[x.ndim() - 1] != i {
        return Err(shape_err!(
            "{WHAT}: input of shape {} does not end in in_features = {i} (coeffs {})",
            fmt_shape(x.shape()),
            fmt_shape(coeffs.shape())
        ));
    }
    map.check(i)?;
    let lead = x.shape()[..x.ndim() - 1].to_vec();
    let n = rbe_core::ext::checked_numel(&lead, WHAT)?;
    let x2 = reshape(x, &[n, i])?;
    let out = taylor(&x2, None, None, coeffs, map, Second::None, false)?;
    let mut shape = lead;
    shape.push(o);
    reshape(&out.value, &shape)
}

/// The outputs of [`chebykan_taylor`].
#[derive(Clone, Debug)]
pub struct TaylorOut {
    /// `y`, `(N, O)`.
    pub value: Tensor,
    /// `dy/dx_a`, `(N, d, O)`.
    pub first: Tensor,
    /// `(N, d, O)` for [`Second::Diag`], `(N, O)` for [`Second::Trace`], `None` for [`Second::None`].
    pub second: Option<Tensor>,
}

/// The layer in Taylor mode.
///
/// - `x` `(N, I)`: the layer's input;
/// - `first` `(N, d, I)`: its derivatives along `d` directions, or `None`
///   when `x` is the independent variable itself (then `d = I`, the unit
///   directions, and the second derivatives are zero);
/// - `second`: `(N, d, I)` (each `d^2 x / dt_a^2`, [`Second::Diag`]) or
///   `(N, I)` (their sum, [`Second::Trace`]); `None` means zero.
///
/// Returns the value, the first derivatives and the second-order stream of
/// the output, differentiable with respect to every input (to any order).
pub fn chebykan_taylor(
    x: &Tensor,
    first: Option<&Tensor>,
    second: Option<&Tensor>,
    coeffs: &Tensor,
    map: &InputMap,
    mode: Second,
) -> Result<TaylorOut> {
    taylor(x, first, second, coeffs, map, mode, true)
}

/// Checks and dims of a Taylor call.
fn check_taylor(x: &Tensor, first: Option<&Tensor>, second: Option<&Tensor>, coeffs: &Tensor, mode: Second, seeded: bool) -> Result<Dims> {
    const WHAT: &str = "chebykan_taylor";
    let (i, o, k1) = check_coeffs(coeffs, WHAT)?;
    let dt = coeffs.dtype();
    same_dtype(x, dt, WHAT, "x")?;
    if x.ndim() != 2 || x.shape()[1] != i {
        return Err(shape_err!("{WHAT}: x must have shape (N, in_features) = (N, {i}), got {}", fmt_shape(x.shape())));
    }
    let n = x.shape()[0];
    let d = match first {
        None if seeded => i,
        None => 0,
        Some(j) => {
            same_dtype(j, dt, WHAT, "first")?;
            if j.ndim() != 3 || j.shape()[0] != n || j.shape()[2] != i {
                return Err(shape_err!(
                    "{WHAT}: first must have shape (N, d, in_features) = ({n}, d, {i}) for x of shape {}, got {}",
                    fmt_shape(x.shape()),
                    fmt_shape(j.shape())
                ));
            }
            j.shape()[1]
        }
    };
    if let Some(s) = second {
        same_dtype(s, dt, WHAT, "second")?;
        if first.is_none() {
            return Err(value_err!("{WHAT}: second-order input given without first-order input (a seeded x has zero second derivatives)"));
        }
        let want: Vec<usize> = match mode {
            Second::None => return Err(value_err!("{WHAT}: second-order input given but the mode carries no second derivatives")),
            Second::Trace => vec![n, i],
            Second::Diag => vec![n, d, i],
        };
        if s.shape() != want.as_slice() {
            return Err(shape_err!(
                "{WHAT}: second must have shape {} for mode {:?}, x {} and first of {d} directions, got {}",
                fmt_shape(&want),
                mode,
                fmt_shape(x.shape()),
                fmt_shape(s.shape())
            ));
        }
    }
    let dm = Dims { n, i, o, k1, d, second: mode };
    // every buffer of the kernels must have a representable size
    let ik = i.checked_mul(k1).ok_or_else(|| shape_err!("{WHAT}: in_features x (degree + 1) overflows"))?;
    let rows = n.checked_mul(1 + d + dm.m()).ok_or_else(|| shape_err!("{WHAT}: N x (1 + 2 d) overflows"))?;
    rbe_core::ext::checked_numel(&[rows, ik.max(o)], WHAT)?;
    Ok(dm)
}

/// Shared implementation: `seeded` says whether a missing `first` means the
/// unit directions (Taylor calls) or no directions (the plain layer).
fn taylor(
    x: &Tensor,
    first: Option<&Tensor>,
    second: Option<&Tensor>,
    coeffs: &Tensor,
    map: &InputMap,
    mode: Second,
    seeded: bool,
) -> Result<TaylorOut> {
    let dm = check_taylor(x, first, second, coeffs, mode, seeded)?;
    let affine = map.check(dm.i)?;
    let dt = coeffs.dtype();
    let (n, o, d, m) = (dm.n, dm.o, dm.d, dm.m());
    let xc = x.detach().contiguous();
    let jc = first.map(|j| j.detach().contiguous());
    let sc = second.map(|s| s.detach().contiguous());
    let cc = coeffs.detach().contiguous();
    let mut inputs: Vec<&Tensor> = vec![x];
    inputs.extend(first);
    inputs.extend(second);
    inputs.push(coeffs);
    let grad = needs_grad(&inputs);
    // keep the basis matrices for the backward when the backward has no pass
    // over the rows of its own (no input needs a gradient: a network's first
    // layer) and they are not too large; otherwise that pass writes them
    // again, task by task, where they stay in cache
    let inputs_need_grad = x.requires_grad() || first.is_some_and(|t| t.requires_grad()) || second.is_some_and(|t| t.requires_grad());
    let keep = grad && coeffs.requires_grad() && !inputs_need_grad && basis_elems(&dm).is_some_and(|e| e <= KEEP_BASIS_ELEMS);
    let (y, yj, ys, basis) = dispatch_float!(dt, "chebykan", T => {
        let mb = MapBuf::<T>::new(&affine);
        let jets = Jets {
            x: xc.data::<T>(),
            first: match &jc { Some(j) => First::Given(j.data::<T>()), None if seeded => First::Seed, None => First::None },
            second: sc.as_ref().map(|s| s.data::<T>()),
        };
        let mut y = FreshTensor::<T>::uninit(&[n, o])?;
        let mut yj = FreshTensor::<T>::uninit(&[n, d, o])?;
        let mut ys = FreshTensor::<T>::uninit(&[n, m, o])?;
        let b = kernels::taylor_forward::<T>(&dm, &mb.map(), &jets, cc.data::<T>(), &mut y, &mut yj, &mut ys, keep)?;
        let b = b.map(|b| [b.pv.into_tensor(), b.pj.into_tensor(), b.ps.into_tensor()]);
        (y.into_tensor(), yj.into_tensor(), ys.into_tensor(), b)
    });
    let ys = match mode {
        Second::None => None,
        Second::Trace => Some(reshape(&ys, &[n, o])?),
        Second::Diag => Some(ys),
    };
    if grad {
        let saved: Vec<SavedTensor> = inputs.iter().map(|t| SavedTensor::input(t)).collect();
        let (has_first, has_second) = (first.is_some(), second.is_some());
        let map = map.clone();
        let bw = Backward { dm, map, affine, has_first, has_second, seeded, basis };
        if !seeded && d == 0 {
            // the plain layer: one output
            attach(&y, "ChebyKanBackward0", &inputs, true, move |ctx, g| {
                let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
                bw.run(ctx, &ts, &[Some(g.clone())])
            });
        } else {
            let mut outs: Vec<&Tensor> = vec![&y, &yj];
            outs.extend(ys.as_ref());
            attach_multi(&outs, "ChebyKanTaylorBackward0", &inputs, true, true, move |ctx, g| {
                let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
                bw.run(ctx, &ts, g)
            })?;
        }
    }
    Ok(TaylorOut { value: y, first: yj, second: ys })
}

/// What the backward of a layer call needs besides the saved tensors.
struct Backward {
    dm: Dims,
    map: InputMap,
    affine: Option<(Vec<f64>, Vec<f64>)>,
    has_first: bool,
    has_second: bool,
    seeded: bool,
    /// the forward's basis matrices `[pv, pj, ps]` (they depend on the
    /// saved inputs only, whose versions the saved tensors check)
    basis: Option<[Tensor; 3]>,
}

/// The basis matrices are kept for the backward up to this many elements
/// (64 MiB in float64); larger calls write them again in the backward.
const KEEP_BASIS_ELEMS: usize = 1 << 23;

/// `N (1 + d + m) I (K + 1)`, the elements of a call's basis matrices.
fn basis_elems(dm: &Dims) -> Option<usize> {
    dm.n.checked_mul(1 + dm.d + dm.m())?.checked_mul(dm.ik())
}

impl Backward {
    /// `ts`: the saved inputs `[x, (first), (second), coeffs]`; `g`: the
    /// gradients of the outputs `[y, (yj), (ys)]`.
    fn run(&self, ctx: &rbe_core::ext::BwCtx, ts: &[Tensor], g: &[Option<Tensor>]) -> Result<Vec<Option<Tensor>>> {
        let dm = self.dm;
        let dt = ts[0].dtype();
        let (n, o, d, m) = (dm.n, dm.o, dm.d, dm.m());
        let x = &ts[0];
        let first = self.has_first.then(|| &ts[1]);
        let second = self.has_second.then(|| &ts[1 + self.has_first as usize]);
        let coeffs = &ts[ts.len() - 1];
        // the gradients, in the layer's dtype and shapes (zeros for unused outputs)
        let grad = |k: usize, shape: &[usize]| -> Result<Tensor> {
            match g.get(k).and_then(|t| t.as_ref()) {
                Some(t) => reshape(&rbe_core::ext::ops::as_dtype(t, dt)?, shape),
                None => Tensor::zeros(shape, dt),
            }
        };
        let k_first = 1;
        let k_second = 1 + self.has_first as usize;
        let k_coeffs = ts.len() - 1;
        if is_grad_enabled() {
            let gy = grad(0, &[n, o])?;
            let gj = grad(1, &[n, d, o])?;
            let gs = grad(2, &[n, m, o])?;
            let v = vjp_graph(&dm, &self.map, x, first, second, coeffs, &gy, &gj, &gs)?;
            let mut out = vec![Some(v.x)];
            if self.has_first {
                out.push(v.first);
            }
            if self.has_second {
                out.push(v.second);
            }
            out.push(Some(v.coeffs));
            return Ok(out);
        }
        let needs = Needs {
            x: ctx.needs(0),
            first: self.has_first && ctx.needs(k_first),
            second: self.has_second && ctx.needs(k_second),
            coeffs: ctx.needs(k_coeffs),
        };
        let xc = x.detach().contiguous();
        let jc = first.map(|j| j.detach().contiguous());
        let sc = second.map(|s| s.detach().contiguous());
        let cc = coeffs.detach().contiguous();
        // the kernel skips the streams whose output gradient is missing (zero)
        let given = |k: usize, shape: &[usize]| -> Result<Option<Tensor>> {
            match g.get(k).and_then(|t| t.as_ref()) {
                Some(t) => Ok(Some(reshape(&rbe_core::ext::ops::as_dtype(t, dt)?, shape)?.contiguous())),
                None => Ok(None),
            }
        };
        let (gy, gj, gs) = (given(0, &[n, o])?, given(1, &[n, d, o])?, given(2, &[n, m, o])?);
        let seeded = self.seeded;
        let grads = dispatch_float!(dt, "chebykan backward", T => {
            let mb = MapBuf::<T>::new(&self.affine);
            let jets = Jets {
                x: xc.data::<T>(),
                first: match &jc { Some(j) => First::Given(j.data::<T>()), None if seeded => First::Seed, None => First::None },
                second: sc.as_ref().map(|s| s.data::<T>()),
            };
            let basis = self.basis.as_ref().map(|[v, j, s]| (v.data::<T>(), j.data::<T>(), s.data::<T>()));
            let gr = kernels::taylor_backward::<T>(&dm, &mb.map(), &jets, cc.data::<T>(), gy.as_ref().map(|t| t.data::<T>()), gj.as_ref().map(|t| t.data::<T>()), gs.as_ref().map(|t| t.data::<T>()), needs, basis)?;
            let second = match (gr.second, dm.second) {
                (Some(t), Second::Trace) => Some(reshape(&t.into_tensor(), &[n, dm.i])?),
                (t, _) => t.map(FreshTensor::into_tensor),
            };
            (gr.x.map(FreshTensor::into_tensor), gr.first.map(FreshTensor::into_tensor), second, gr.coeffs.map(FreshTensor::into_tensor))
        });
        let mut out = vec![grads.0];
        if self.has_first {
            out.push(grads.1);
        }
        if self.has_second {
            out.push(grads.2);
        }
        out.push(grads.3);
        Ok(out)
    }
}

/// `d^m/dx^m T_k(phi(x))` for `m = 0..=upto` (at most 3), each `(N, I, K+1)`,
/// written with differentiable ops (the map with the core's ops, the basis
/// with [`cheb_basis`]).
pub fn g_tensors(x: &Tensor, map: &InputMap, degree: usize, upto: usize) -> Result<Vec<Tensor>> {
    let i = x.shape()[x.ndim() - 1];
    let dt = x.dtype();
    let (z, p1, p2, p3) = match map.check(i)? {
        None => {
            let z = tanh(x)?;
            let z2 = mul(&z, &z)?;
            let p1 = add_scalar(&mul_scalar(&z2, -1.0)?, 1.0)?;
            let p2 = mul_scalar(&mul(&z, &p1)?, -2.0)?;
            let p3 = mul_scalar(&mul(&p1, &add_scalar(&mul_scalar(&z2, -3.0)?, 1.0)?)?, -2.0)?;
            (z, p1, Some(p2), Some(p3))
        }
        Some((s, b)) => {
            let s = rbe_core::ext::ops::as_dtype(&Tensor::from_vec(s, &[i])?, dt)?;
            let b = rbe_core::ext::ops::as_dtype(&Tensor::from_vec(b, &[i])?, dt)?;
            (add(&mul(x, &s)?, &b)?, s, None, None)
        }
    };
    let u = |t: &Tensor| unsqueeze(t, -1);
    let b: Vec<Tensor> = (0..=upto).map(|m| cheb_basis(&z, degree, m)).collect::<Result<_>>()?;
    let p1u = u(&p1)?;
    let mut g = vec![b[0].clone()];
    if upto >= 1 {
        g.push(mul(&b[1], &p1u)?);
    }
    if upto >= 2 {
        let mut g2 = mul(&b[2], &mul(&p1u, &p1u)?)?;
        if let Some(p2) = &p2 {
            g2 = add(&g2, &mul(&b[1], &u(p2)?)?)?;
        }
        g.push(g2);
    }
    if upto >= 3 {
        let mut g3 = mul(&b[3], &mul(&mul(&p1u, &p1u)?, &p1u)?)?;
        if let (Some(p2), Some(p3)) = (&p2, &p3) {
            g3 = add(&g3, &mul(&b[2], &mul_scalar(&mul(&p1u, &u(p2)?)?, 3.0)?)?)?;
            g3 = add(&g3, &mul(&b[1], &u(p3)?)?)?;
        }
        g.push(g3);
    }
    Ok(g)
}

/// The packed weights `W[(i, k), o] = C[i, o, k]` as a differentiable view, `(I (K+1), O)`.
fn weights_matrix(coeffs: &Tensor) -> Result<Tensor> {
    let s = coeffs.shape();
    reshape(&permute(coeffs, &[0, 2, 1])?, &[s[0] * s[2], s[1]])
}

/// The identity directions of a seeded input, `(N, I, I)`.
fn seed_jets(n: usize, i: usize, dt: DType) -> Result<Tensor> {
    let eye = dispatch_float!(dt, "chebykan", T => {
        FreshTensor::<T>::build(&[i, i], |e| {
            for (k, v) in e.iter_mut().enumerate() {
                *v = if k / i == k % i { <T as Real>::ONE } else { <T as Real>::ZERO };
            }
        })?
    });
    expand(&unsqueeze(&eye, 0)?, &[n, i, i])
}

/// The gradients computed by [`vjp_graph`].
pub struct VjpGraph {
    pub x: Tensor,
    pub first: Option<Tensor>,
    pub second: Option<Tensor>,
    pub coeffs: Tensor,
}

/// The vector-Jacobian product of a layer call written with differentiable
/// ops (the `create_graph` path): `gy` `(N, O)`, `gj` `(N, d, O)`, `gs`
/// `(N, m, O)` are the gradients of the outputs.
#[allow(clippy::too_many_arguments)]
pub fn vjp_graph(
    dm: &Dims,
    map: &InputMap,
    x: &Tensor,
    first: Option<&Tensor>,
    second: Option<&Tensor>,
    coeffs: &Tensor,
    gy: &Tensor,
    gj: &Tensor,
    gs: &Tensor,
) -> Result<VjpGraph> {
    let (n, i, o, k1, d, m) = (dm.n, dm.i, dm.o, dm.k1, dm.d, dm.m());
    let ik = i * k1;
    let dt = x.dtype();
    let upto = if m > 0 {
        3
    } else if d > 0 {
        2
    } else {
        1
    };
    let g = g_tensors(x, map, k1 - 1, upto)?;
    let w = weights_matrix(coeffs)?;
    let wt = mt(&w)?;
    let u = |t: &Tensor, dim: isize| unsqueeze(t, dim);
    let sum_k = |t: &Tensor| sum(t, Some(&[-1]), false);
    // the value stream
    let pv = reshape(&g[0], &[n, ik])?;
    let mut dw = matmul(&mt(&pv)?, gy)?;
    let hv = reshape(&matmul(gy, &wt)?, &[n, i, k1])?;
    let mut dx = sum_k(&mul(&hv, &g[1])?)?;
    let (mut dfirst, mut dsecond) = (None, None);
    if d > 0 {
        let j = match first {
            Some(j) => j.clone(),
            None => seed_jets(n, i, dt)?,
        };
        let ju = u(&j, -1)?; // (N, d, I, 1)
        let (g1u, g2u) = (u(&g[1], 1)?, u(&g[2], 1)?); // (N, 1, I, K1)
        let pj = mul(&g1u, &ju)?;
        dw = add(&dw, &matmul(&mt(&reshape(&pj, &[n * d, ik])?)?, &reshape(gj, &[n * d, o])?)?)?;
        let hj = reshape(&matmul(gj, &wt)?, &[n, d, i, k1])?;
        dx = add(&dx, &sum(&mul(&mul(&hj, &g2u)?, &ju)?, Some(&[1, 3]), false)?)?;
        let mut dj = sum_k(&mul(&hj, &g1u)?)?; // (N, d, I)
        let j2 = mul(&j, &j)?;
        match dm.second {
            Second::None => {}
            Second::Diag => {
                let g3u = u(&g[3], 1)?;
                let su = match second {
                    Some(s) => Some(u(s, -1)?),
                    None => None,
                };
                let mut ps = mul(&g2u, &u(&j2, -1)?)?;
                if let Some(su) = &su {
                    ps = add(&ps, &mul(&g1u, su)?)?;
                }
                dw = add(&dw, &matmul(&mt(&reshape(&ps, &[n * m, ik])?)?, &reshape(gs, &[n * m, o])?)?)?;
                let hs = reshape(&matmul(gs, &wt)?, &[n, m, i, k1])?;
                let mut t3 = mul(&g3u, &u(&j2, -1)?)?;
                if let Some(su) = &su {
                    t3 = add(&t3, &mul(&g2u, su)?)?;
                }
                dx = add(&dx, &sum(&mul(&hs, &t3)?, Some(&[1, 3]), false)?)?;
                dj = add(&dj, &mul_scalar(&mul(&j, &sum_k(&mul(&hs, &g2u)?)?)?, 2.0)?)?;
                dsecond = Some(sum_k(&mul(&hs, &g1u)?)?);
            }
            Second::Trace => {
                let q = u(&sum(&j2, Some(&[1]), false)?, -1)?; // (N, I, 1)
                let su = match second {
                    Some(s) => Some(u(s, -1)?),
                    None => None,
                };
                let mut ps = mul(&g[2], &q)?;
                if let Some(su) = &su {
                    ps = add(&ps, &mul(&g[1], su)?)?;
                }
                dw = add(&dw, &matmul(&mt(&reshape(&ps, &[n, ik])?)?, &reshape(gs, &[n, o])?)?)?;
                let hs = reshape(&matmul(&reshape(gs, &[n, o])?, &wt)?, &[n, i, k1])?;
                let mut t3 = mul(&g[3], &q)?;
                if let Some(su) = &su {
                    t3 = add(&t3, &mul(&g[2], su)?)?;
                }
                dx = add(&dx, &sum_k(&mul(&hs, &t3)?)?)?;
                dj = add(&dj, &mul_scalar(&mul(&j, &u(&sum_k(&mul(&hs, &g[2])?)?, 1)?)?, 2.0)?)?;
                dsecond = Some(sum_k(&mul(&hs, &g[1])?)?);
            }
        }
        if first.is_some() {
            dfirst = Some(dj);
        }
    }
    if second.is_none() {
        dsecond = None;
    }
    let dc = permute(&reshape(&dw, &[i, k1, o])?, &[0, 2, 1])?;
    Ok(VjpGraph { x: dx, first: dfirst, second: dsecond, coeffs: dc })
}
