//! RBE ops: `rbe_generate` (materialise the matrix W of an RBE layer) and
//! `rbe_linear` (`x W^T` without ever materialising W), forward and backward
//! side by side.
//!
//! Parameters, for a layout with `nb` blocks, `J` atoms and `K` residual
//! coefficients per block:
//! - `atoms`  float `(nb, J, 4)`: `(A, phi, px, py)`, wave vector `k = 2 kappa p`;
//! - `tracks` float `(nb, J)`: `alpha`, 0 = SIN, 1 = TANH (values in between
//!   are the relaxation `(1 - alpha) sin + alpha tanh`); its gradient is the
//!   bit-gradient gamma of spec section 5;
//! - `res_vals` float `(nb, K)` and `res_idx` int64 `(nb, K)`: residual DCT
//!   coefficients, index `u * bc + v`.
//!
//! Kernels ([`crate::kernels`]). Each block is `W_b = R C^T + T` where `R`
//! (rows x m) and `C` (cols x m) hold the separable terms (two columns per
//! SIN atom, from `sin(a + b) = sin a cos b + cos a sin b`, and one per
//! residual coefficient) and `T` the TANH (or relaxed) atoms, generated tile
//! by tile.
//! First-order backward uses the same factorisation; under `create_graph`
//! the backward is written with differentiable tensor ops instead (it
//! materialises per-atom blocks, so it is meant for small layers).
//!
//! This module is the op layer of the front-end: it checks shapes, dtypes and
//! values (returning errors before anything is computed), reads the
//! parameters into a [`Snap`], allocates the outputs with [`FreshTensor`],
//! runs the loops of [`crate::kernels`] and records the backward with
//! [`attach`] (saved tensors version-checked).
use crate::dct::dct_cached;
use crate::kernels::{self, LinCache, ParamGrads, Snap, SMALL_BATCH};
use crate::layout::Layout;
use rbe_core::ext::ops as core_ops;
use rbe_core::ext::ops::binary::{add, mul, mul_scalar, sub};
use rbe_core::ext::ops::reduce::sum;
use rbe_core::ext::ops::shape::{permute, reshape, select, stack, unsqueeze};
use rbe_core::ext::ops::unary::{cos, sin, tanh};
use rbe_core::ext::{
    attach, dispatch_float, dtype_err, fmt_shape, index_err, is_grad_enabled, needs_grad, shape_err, value_err, DType, FreshTensor, Result,
    SavedTensor, Tensor,
};
use std::any::Any;
use std::sync::Arc;

/// The parameter tensors of an RBE matrix.
#[derive(Clone, Copy)]
pub struct RbeParams<'a> {
    pub atoms: &'a Tensor,
    pub tracks: &'a Tensor,
    pub res_vals: Option<&'a Tensor>,
    pub res_idx: Option<&'a Tensor>,
}

/// Checks shapes and dtypes; returns `(J, K)`.
pub fn check_params(lay: &Layout, p: &RbeParams) -> Result<(usize, usize)> {
    let nb = lay.n_blocks();
    let a = p.atoms;
    if !a.dtype().is_float() {
        return Err(dtype_err!("rbe: atoms must be float32 or float64, got {}", a.dtype().name()));
    }
    if a.ndim() != 3 || a.shape()[0] != nb || a.shape()[2] != 4 {
        return Err(shape_err!(
            "rbe: atoms must have shape (n_blocks, J, 4) = ({nb}, J, 4) for a {}x{} matrix in {}x{} blocks, got {}",
            lay.out,
            lay.inp,
            lay.br,
            lay.bc,
            fmt_shape(a.shape())
        ));
    }
    let j = a.shape()[1];
    if p.tracks.dtype() != a.dtype() {
        return Err(dtype_err!("rbe: tracks dtype {} does not match atoms dtype {}", p.tracks.dtype().name(), a.dtype().name()));
    }
    if p.tracks.shape() != [nb, j] {
        return Err(shape_err!("rbe: tracks must have shape (n_blocks, J) = ({nb}, {j}), got {}", fmt_shape(p.tracks.shape())));
    }
    let k = match (p.res_vals, p.res_idx) {
        (None, None) => 0,
        (Some(v), Some(ix)) => {
            if v.dtype() != a.dtype() {
                return Err(dtype_err!("rbe: residual values dtype {} does not match atoms dtype {}", v.dtype().name(), a.dtype().name()));
            }
            if ix.dtype() != DType::I64 {
                return Err(dtype_err!("rbe: residual indices must be int64, got {}", ix.dtype().name()));
            }
            if v.ndim() != 2 || v.shape()[0] != nb || ix.shape() != v.shape() {
                return Err(shape_err!(
                    "rbe: residual values and indices must both have shape (n_blocks, K) with n_blocks = {nb}, got {} and {}",
                    fmt_shape(v.shape()),
                    fmt_shape(ix.shape())
                ));
            }
            let n = lay.block_len() as i64;
            if let Some(bad) = ix.to_vec::<i64>().into_iter().find(|&i| i < 0 || i >= n) {
                return Err(index_err!("rbe: residual index {bad} is out of range for a {}x{} block (0..{n})", lay.br, lay.bc));
            }
            v.shape()[1]
        }
        _ => return Err(value_err!("rbe: residual values and indices must be given together")),
    };
    Ok((j, k))
}

/// Checks the parameters and reads them into f64, as the kernels take them.
fn snap(lay: &Layout, p: &RbeParams) -> Result<Snap> {
    let (j, k) = check_params(lay, p)?;
    Ok(Snap {
        lay: *lay,
        j,
        k,
        atoms: p.atoms.to_vec_f64(),
        alpha: p.tracks.to_vec_f64(),
        res_vals: p.res_vals.map(|v| v.to_vec_f64()).unwrap_or_default(),
        res_idx: p.res_idx.map(|v| v.to_vec::<i64>().into_iter().map(|i| i as usize).collect()).unwrap_or_default(),
    })
}

/// Parameter gradients as tensors of the parameters' dtype.
fn grads_to_tensors(s: &Snap, dt: DType, g: ParamGrads) -> Result<(Tensor, Tensor, Tensor)> {
    let nb = s.lay.n_blocks();
    let cast = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> { core_ops::as_dtype(&Tensor::from_vec(v, shape)?, dt) };
    Ok((cast(g.atoms, &[nb, s.j, 4])?, cast(g.alpha, &[nb, s.j])?, cast(g.res, &[nb, s.k])?))
}

/// Materialise the `out x in` matrix of an RBE layer (differentiable).
pub fn rbe_generate(lay: &Layout, p: &RbeParams) -> Result<Tensor> {
    let s = snap(lay, p)?;
    let out = dispatch_float!(p.atoms.dtype(), "rbe_generate", T => {
        FreshTensor::<T>::build(&[lay.out, lay.inp], |o| kernels::generate::<T>(&s, o))?
    });
    let inputs: Vec<&Tensor> = match p.res_vals {
        Some(v) => vec![p.atoms, p.tracks, v],
        None => vec![p.atoms, p.tracks],
    };
    if needs_grad(&inputs) {
        let saved: Vec<SavedTensor> = inputs.iter().map(|t| SavedTensor::input(t)).collect();
        // the indices are saved with a version check like the inputs
        let idx = p.res_idx.map(SavedTensor::input);
        let lay = *lay;
        attach(&out, "RbeGenerateBackward0", &inputs, true, move |ctx, g| {
            let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
            let idx = idx.as_ref().map(|t| t.get(ctx)).transpose()?;
            let params = RbeParams { atoms: &ts[0], tracks: &ts[1], res_vals: ts.get(2), res_idx: idx.as_ref() };
            if is_grad_enabled() {
                return generate_vjp_graph(&lay, &params, g);
            }
            let s = snap(&lay, &params)?;
            let g = core_ops::as_dtype(g, ts[0].dtype())?.contiguous();
            let pg =
                dispatch_float!(ts[0].dtype(), "rbe_generate backward", T => kernels::generate_vjp::<T>(&s, g.data::<T>(), ctx.needs(1)));
            let (da, dl, dr) = grads_to_tensors(&s, ts[0].dtype(), pg)?;
            let mut v = vec![Some(da), ctx.needs(1).then_some(dl)];
            if ts.len() == 3 {
                v.push(Some(dr));
            }
            Ok(v)
        });
    }
    Ok(out)
}

/// The VJP of `generate` written with differentiable tensor ops (the
/// composite path, used under `create_graph`): per-atom blocks
/// `(nb, J, br, bc)` are materialised.
fn generate_vjp_graph(lay: &Layout, p: &RbeParams, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let dt = p.atoms.dtype();
    let g = core_ops::as_dtype(g, dt)?;
    let (nbr, nbc) = lay.grid();
    let (br, bc) = (lay.br, lay.bc);
    // G in blocks: (nb, 1, br, bc)
    let padded = core_ops::nn::pad_constant(&g, &[0, (nbc * bc - lay.inp) as isize, 0, (nbr * br - lay.out) as isize], 0.0)?;
    let gb = reshape(&permute(&reshape(&padded, &[nbr, br, nbc, bc])?, &[0, 2, 1, 3])?, &[nbr * nbc, 1, br, bc])?;
    let xs = Tensor::from_vec((0..bc).map(|j| lay.x(j)).collect::<Vec<f64>>(), &[1, 1, 1, bc])?;
    let ys = Tensor::from_vec((0..br).map(|i| lay.y(i)).collect::<Vec<f64>>(), &[1, 1, br, 1])?;
    let (xs, ys) = (core_ops::as_dtype(&xs, dt)?, core_ops::as_dtype(&ys, dt)?);
    let field = |c: isize| -> Result<Tensor> { unsqueeze(&unsqueeze(&select(p.atoms, 2, c)?, -1)?, -1) };
    let (amp, phi) = (field(0)?, field(1)?);
    let kk = 2.0 * lay.kappa;
    let (kx, ky) = (mul_scalar(&field(2)?, kk)?, mul_scalar(&field(3)?, kk)?);
    let al = unsqueeze(&unsqueeze(p.tracks, -1)?, -1)?;
    let u = add(&add(&mul(&kx, &xs)?, &mul(&ky, &ys)?)?, &phi)?;
    let (sn, cs, th) = (sin(&u)?, cos(&u)?, tanh(&u)?);
    let gv = add(&sn, &mul(&al, &sub(&th, &sn)?)?)?;
    let one_m_t2 = sub(&Tensor::ones(&[], dt)?, &mul(&th, &th)?)?;
    let dg = add(&cs, &mul(&al, &sub(&one_m_t2, &cs)?)?)?;
    let red = |t: &Tensor| sum(t, Some(&[2, 3]), false);
    let d_a = red(&mul(&gb, &gv)?)?;
    let h = mul(&mul(&gb, &amp)?, &dg)?;
    let d_phi = red(&h)?;
    let d_px = mul_scalar(&red(&mul(&h, &xs)?)?, kk)?;
    let d_py = mul_scalar(&red(&mul(&h, &ys)?)?, kk)?;
    let datoms = stack(&[d_a, d_phi, d_px, d_py], -1)?;
    let dal = red(&mul(&mul(&gb, &amp)?, &sub(&th, &sn)?)?)?;
    let mut v = vec![Some(datoms), Some(dal)];
    if let (Some(_), Some(idx)) = (p.res_vals, p.res_idx) {
        let drm = core_ops::as_dtype(&Tensor::from_vec(dct_cached(br).to_vec(), &[br, br])?, dt)?;
        let dcm = core_ops::as_dtype(&Tensor::from_vec(dct_cached(bc).to_vec(), &[bc, bc])?, dt)?;
        // D_r G D_c^T per block, flattened, gathered at the indices
        let gb2 = reshape(&gb, &[nbr * nbc, br, bc])?;
        let coef = core_ops::linalg::matmul(&core_ops::linalg::matmul(&drm, &gb2)?, &core_ops::shape::mt(&dcm)?)?;
        let flat = reshape(&coef, &[nbr * nbc, br * bc])?;
        v.push(Some(core_ops::index::gather(&flat, 1, idx)?));
    }
    Ok(v)
}

/// `y = x W^T (+ bias)` for the RBE matrix W of `p`, without materialising W.
/// `x` has shape `(..., in)`.
pub fn rbe_linear(x: &Tensor, lay: &Layout, p: &RbeParams, bias: Option<&Tensor>) -> Result<Tensor> {
    let dt = p.atoms.dtype();
    if x.dtype() != dt {
        return Err(dtype_err!("rbe_linear: input dtype {} does not match the layer's dtype {}", x.dtype().name(), dt.name()));
    }
    if x.ndim() == 0 || x.shape()[x.ndim() - 1] != lay.inp {
        return Err(shape_err!(
            "rbe_linear: input of shape {} does not end in in_features = {} (layer {}x{})",
            fmt_shape(x.shape()),
            lay.inp,
            lay.out,
            lay.inp
        ));
    }
    let lead = &x.shape()[..x.ndim() - 1];
    let n: usize = lead.iter().product();
    let x2 = reshape(x, &[n, lay.inp])?;
    let s = snap(lay, p)?;
    if let Some(b) = bias {
        if b.dtype() != dt {
            return Err(dtype_err!("rbe_linear: bias dtype {} does not match the layer's dtype {}", b.dtype().name(), dt.name()));
        }
        if b.shape() != [lay.out] {
            return Err(shape_err!("rbe_linear: bias must have shape [{}], got {}", lay.out, fmt_shape(b.shape())));
        }
    }
    let xc = x2.detach().contiguous();
    // the factors built by the forward are kept for the backward (the saved
    // inputs' version check guarantees the parameters did not change)
    let (out, cache) = dispatch_float!(dt, "rbe_linear", T => {
        let mut y = FreshTensor::<T>::zeros(&[n, lay.out])?;
        if n <= SMALL_BATCH {
            kernels::linear_fwd_small::<T>(&s, xc.data::<T>(), n, &mut y);
            (y.into_tensor(), None)
        } else {
            let keep_p = needs_grad(&[p.atoms, p.tracks]) || p.res_vals.is_some_and(|v| v.requires_grad());
            let f = kernels::linear_fwd_gemm::<T>(&s, xc.data::<T>(), n, keep_p, &mut y)?;
            (y.into_tensor(), Some(Arc::new(f) as Arc<dyn Any + Send + Sync>))
        }
    });
    let mut inputs: Vec<&Tensor> = vec![&x2, p.atoms, p.tracks];
    if let Some(v) = p.res_vals {
        inputs.push(v);
    }
    if needs_grad(&inputs) {
        let saved: Vec<SavedTensor> = inputs.iter().map(|t| SavedTensor::input(t)).collect();
        // the indices are saved with a version check like the inputs
        let idx = p.res_idx.map(SavedTensor::input);
        let lay = *lay;
        attach(&out, "RbeLinearBackward0", &inputs, true, move |ctx, g| {
            let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
            let idx = idx.as_ref().map(|t| t.get(ctx)).transpose()?;
            let params = RbeParams { atoms: &ts[1], tracks: &ts[2], res_vals: ts.get(3), res_idx: idx.as_ref() };
            // an upstream gradient of another float dtype is taken in the layer's dtype
            let g = &core_ops::as_dtype(g, ts[1].dtype())?;
            if is_grad_enabled() {
                // differentiable path: W materialised, dW = g^T x
                let w = rbe_generate(&lay, &params)?;
                let gx = core_ops::linalg::matmul(g, &w)?;
                let gw = core_ops::linalg::matmul(&core_ops::shape::mt(g)?, &ts[0])?;
                let mut v = vec![Some(gx)];
                v.extend(generate_vjp_graph(&lay, &params, &gw)?);
                return Ok(v);
            }
            let s = snap(&lay, &params)?;
            let gc = g.contiguous();
            let xc = ts[0].detach().contiguous();
            let n = xc.shape()[0];
            let (nx, np, na) = (ctx.needs(0), ctx.needs(1) || ctx.needs(3), ctx.needs(2));
            let (gx, pg) = dispatch_float!(ts[1].dtype(), "rbe_linear backward", T => {
                let mut gx = if nx { Some(FreshTensor::<T>::zeros(&[n, lay.inp])?) } else { None };
                let (xs, gs) = (xc.data::<T>(), gc.data::<T>());
                let pg = if n <= SMALL_BATCH {
                    kernels::linear_bwd_small::<T>(&s, xs, gs, n, gx.as_deref_mut(), np || na, na)
                } else {
                    let cached = cache.as_ref().and_then(|c| c.downcast_ref::<LinCache<T>>());
                    kernels::linear_bwd_gemm::<T>(&s, cached, xs, gs, n, gx.as_deref_mut(), np || na, na)?
                };
                (gx.map(FreshTensor::into_tensor), pg)
            });
            let (da, dl, dr) = grads_to_tensors(&s, ts[1].dtype(), pg)?;
            let mut v = vec![gx, Some(da), na.then_some(dl)];
            if ts.len() == 4 {
                v.push(Some(dr));
            }
            Ok(v)
        });
    }
    let mut oshape = lead.to_vec();
    oshape.push(lay.out);
    let y = reshape(&out, &oshape)?;
    match bias {
        Some(b) => add(&y, b),
        None => Ok(y),
    }
}
