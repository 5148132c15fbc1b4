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
//! Kernels. Each block is `W_b = R C^T + T` where `R` (rows x m) and `C`
//! (cols x m) hold the separable terms (two columns per SIN atom, from
//! `sin(a + b) = sin a cos b + cos a sin b`, and one per residual
//! coefficient) and `T` the TANH (or relaxed) atoms, generated tile by tile.
//! First-order backward uses the same factorisation; under `create_graph`
//! the backward is written with differentiable tensor ops instead (it
//! materialises per-atom blocks, so it is meant for small layers).
use super::binary::{add, mul, mul_scalar, sub};
use super::reduce::sum;
use super::shape::{permute, reshape, select, stack, unsqueeze};
use super::unary::{cos, sin, tanh};
use crate::autograd::{attach, needs_grad, SavedTensor};
use crate::dtype::DType;
use crate::error::Result;
use crate::gemm::GemmElem;
use crate::rbe::dct::dct_cached;
use crate::rbe::layout::Layout;
use crate::tensor::{fmt_shape, Tensor};
use crate::{dtype_err, shape_err, value_err};
use rayon::prelude::*;

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
            lay.out, lay.inp, lay.br, lay.bc, fmt_shape(a.shape())
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
                return Err(crate::index_err!("rbe: residual index {bad} is out of range for a {}x{} block (0..{n})", lay.br, lay.bc));
            }
            v.shape()[1]
        }
        _ => return Err(value_err!("rbe: residual values and indices must be given together")),
    };
    Ok((j, k))
}

/// Floats the RBE kernels run on.
pub trait RbeFloat: crate::elem::Real + GemmElem {
    fn tanh_slice(x: &[Self], out: &mut [Self]);
}
impl RbeFloat for f32 {
    fn tanh_slice(x: &[f32], out: &mut [f32]) {
        crate::simd::tanh_slice_f32(x, out)
    }
}
impl RbeFloat for f64 {
    fn tanh_slice(x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.tanh();
        }
    }
}

/// The parameters, read once into f64.
struct Snap {
    lay: Layout,
    j: usize,
    k: usize,
    atoms: Vec<f64>,
    alpha: Vec<f64>,
    res_vals: Vec<f64>,
    res_idx: Vec<usize>,
}

impl Snap {
    fn new(lay: &Layout, p: &RbeParams) -> Result<Snap> {
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
    fn atom(&self, b: usize, a: usize) -> (f64, f64, f64, f64, f64) {
        let o = (b * self.j + a) * 4;
        let kk = 2.0 * self.lay.kappa;
        (self.atoms[o], self.atoms[o + 1], kk * self.atoms[o + 2], kk * self.atoms[o + 3], self.alpha[b * self.j + a])
    }
    /// Atoms of block `b` on the separable (SIN) path and on the tiled path.
    fn split(&self, b: usize) -> (Vec<usize>, Vec<usize>) {
        (0..self.j).partition(|&a| self.alpha[b * self.j + a] == 0.0)
    }
}

/// `sin` and `cos` of `t0 + i d` for `i < n`: a rotation recurrence in f64,
/// re-anchored with a direct evaluation every 16 steps (error a few ulp).
fn sincos_seq(t0: f64, d: f64, n: usize, s: &mut [f64], c: &mut [f64]) {
    let (sd, cd) = d.sin_cos();
    for i in 0..n {
        if i % 16 == 0 {
            let (a, b) = (t0 + i as f64 * d).sin_cos();
            s[i] = a;
            c[i] = b;
        } else {
            s[i] = s[i - 1] * cd + c[i - 1] * sd;
            c[i] = c[i - 1] * cd - s[i - 1] * sd;
        }
    }
}

/// Per-block factors: `R` (rows x m, row-major, scaled by the amplitudes)
/// and `C` (cols x m), `W_sep = R C^T`; with `grad`, also the unscaled bases
/// the parameter gradients need.
struct Factors<T> {
    m: usize,
    r: Vec<T>,
    c: Vec<T>,
    /// Row bases per SIN atom: sin a_i, cos a_i (f64, rows each).
    sa: Vec<f64>,
    ca: Vec<f64>,
    /// Column bases for gradients (cols x w, row-major), w = 4 per SIN atom
    /// (cos b, sin b, x cos b, x sin b) + 1 per residual coefficient (D_c row v).
    cu: Vec<T>,
    w: usize,
}

fn factors<T: RbeFloat>(s: &Snap, b: usize, sep: &[usize], rows: usize, cols: usize, grad: bool) -> Factors<T> {
    let lay = &s.lay;
    let js = sep.len();
    let m = 2 * js + s.k;
    let mut r = vec![<T as GemmElem>::ZERO; rows * m];
    let mut c = vec![<T as GemmElem>::ZERO; cols * m];
    let mut sa = vec![0.0; js * rows];
    let mut ca = vec![0.0; js * rows];
    let w = if grad { 4 * js + s.k } else { 0 };
    let mut cu = vec![<T as GemmElem>::ZERO; cols * w];
    let mut sb = vec![0.0; cols];
    let mut cb = vec![0.0; cols];
    let (dy, dx) = (2.0 / lay.br as f64, 2.0 / lay.bc as f64);
    for (t, &a) in sep.iter().enumerate() {
        let (amp, phi, kx, ky, _) = s.atom(b, a);
        let (sat, cat) = (&mut sa[t * rows..(t + 1) * rows], &mut ca[t * rows..(t + 1) * rows]);
        sincos_seq(ky * lay.y(0) + phi, ky * dy, rows, sat, cat);
        sincos_seq(kx * lay.x(0), kx * dx, cols, &mut sb, &mut cb);
        for i in 0..rows {
            r[i * m + 2 * t] = T::c(amp * sat[i]);
            r[i * m + 2 * t + 1] = T::c(amp * cat[i]);
        }
        for jj in 0..cols {
            c[jj * m + 2 * t] = T::c(cb[jj]);
            c[jj * m + 2 * t + 1] = T::c(sb[jj]);
            if grad {
                let x = lay.x(jj);
                let o = jj * w + 4 * t;
                cu[o] = T::c(cb[jj]);
                cu[o + 1] = T::c(sb[jj]);
                cu[o + 2] = T::c(x * cb[jj]);
                cu[o + 3] = T::c(x * sb[jj]);
            }
        }
    }
    if s.k > 0 {
        let (drm, dcm) = (dct_cached(lay.br), dct_cached(lay.bc));
        for q in 0..s.k {
            let idx = s.res_idx[b * s.k + q];
            let (u, v) = (idx / lay.bc, idx % lay.bc);
            let val = s.res_vals[b * s.k + q];
            for i in 0..rows {
                r[i * m + 2 * js + q] = T::c(val * drm[u * lay.br + i]);
            }
            for jj in 0..cols {
                c[jj * m + 2 * js + q] = T::c(dcm[v * lay.bc + jj]);
                if grad {
                    cu[jj * w + 4 * js + q] = T::c(dcm[v * lay.bc + jj]);
                }
            }
        }
    }
    Factors { m, r, c, sa, ca, cu, w }
}

/// The tiled atoms of block `b` added into `out` (rows x cols, row stride `ld`).
fn add_dense<T: RbeFloat>(s: &Snap, b: usize, dense: &[usize], rows: usize, cols: usize, out: &mut [T], ld: usize) {
    let lay = &s.lay;
    let mut u = vec![<T as GemmElem>::ZERO; cols];
    let mut t = vec![<T as GemmElem>::ZERO; cols];
    for &a in dense {
        let (amp, phi, kx, ky, alpha) = s.atom(b, a);
        for i in 0..rows {
            let row0 = ky * lay.y(i) + phi;
            let o = &mut out[i * ld..i * ld + cols];
            if alpha == 1.0 {
                for (jj, uj) in u.iter_mut().enumerate() {
                    *uj = T::c(kx * lay.x(jj) + row0);
                }
                T::tanh_slice(&u, &mut t);
                let at = T::c(amp);
                for (oj, &tj) in o.iter_mut().zip(&t) {
                    *oj += at * tj;
                }
            } else {
                for (jj, oj) in o.iter_mut().enumerate() {
                    let uu = kx * lay.x(jj) + row0;
                    *oj += T::c(amp * ((1.0 - alpha) * uu.sin() + alpha * uu.tanh()));
                }
            }
        }
    }
}

use crate::parallel::SendPtr;

/// The tiled atoms of block `b` alone, into `buf` (rows x cols, contiguous).
fn dense_block<T: RbeFloat>(s: &Snap, b: usize, dense: &[usize], rows: usize, cols: usize, buf: &mut Vec<T>) {
    buf.clear();
    buf.resize(rows * cols, <T as GemmElem>::ZERO);
    add_dense(s, b, dense, rows, cols, buf, cols);
}

/// `dst (m x n) (+)= a (m x k) @ b (k x n)`, all with explicit strides.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn mm<T: GemmElem>(
    m: usize, n: usize, k: usize, dst: *mut T, drs: usize, dcs: usize, acc: bool,
    a: *const T, ars: usize, acs: usize, b: *const T, brs: usize, bcs: usize,
) {
    T::gemm(m, n, k, dst, drs as isize, dcs as isize, acc, a, ars as isize, acs as isize, b, brs as isize, bcs as isize);
}

/// Run `f(i)` for `i < n`, on the pool when the work is large. Each index
/// writes its own outputs, so the result does not depend on the split.
fn for_each_index(n: usize, work: usize, f: impl Fn(usize) + Send + Sync) {
    if n > 1 && work >= 1 << 20 && crate::parallel::num_threads() > 1 {
        crate::parallel::pool().install(|| (0..n).into_par_iter().for_each(f));
    } else {
        (0..n).for_each(f);
    }
}

fn work_estimate(s: &Snap, n: usize) -> usize {
    let per_block = (2 * s.j + s.k) * (s.lay.br + s.lay.bc) + s.lay.block_len();
    n.max(1) * per_block * s.lay.n_blocks()
}

fn generate_raw<T: RbeFloat>(s: &Snap) -> Tensor {
    let lay = s.lay;
    let out = Tensor::empty(&[lay.out, lay.inp], T::DTYPE);
    let ptr = SendPtr(out.data_ptr::<T>());
    for_each_index(lay.n_blocks(), work_estimate(s, 1), |b| {
        let (r0, rows, c0, cols) = lay.block_extent(b);
        let (sep, dense) = s.split(b);
        let f = factors::<T>(s, b, &sep, rows, cols, false);
        // Safety: block b owns rows r0.., columns c0.. of the output.
        unsafe {
            let dst = ptr.get().add(r0 * lay.inp + c0);
            mm(rows, cols, f.m, dst, lay.inp, 1, false, f.r.as_ptr(), f.m, 1, f.c.as_ptr(), 1, f.m);
            if !dense.is_empty() {
                let blk = std::slice::from_raw_parts_mut(dst, (rows - 1) * lay.inp + cols);
                add_dense(s, b, &dense, rows, cols, blk, lay.inp);
            }
        }
    });
    out
}

/// Gradients of one block from `gh = G_b @ cu` (rows x w) and, when the tiled
/// path or gamma needs it, the block gradient `g` itself (rows x cols, row stride `ld`).
#[allow(clippy::too_many_arguments)]
fn block_grads<T: RbeFloat>(
    s: &Snap, b: usize, sep: &[usize], dense: &[usize], f: &Factors<T>, gh: &[T], g: Option<(&[T], usize)>,
    need_gamma: bool, rows: usize, cols: usize, datoms: &mut [f64], dalpha: &mut [f64], dres: &mut [f64],
) {
    let lay = &s.lay;
    let kk = 2.0 * lay.kappa;
    let w = f.w;
    let js = sep.len();
    for (t, &a) in sep.iter().enumerate() {
        let (amp, ..) = s.atom(b, a);
        let (sa, ca) = (&f.sa[t * rows..(t + 1) * rows], &f.ca[t * rows..(t + 1) * rows]);
        let (mut d_a, mut d_phi, mut d_kx, mut d_ky) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..rows {
            let o = i * w + 4 * t;
            let (gcb, gsb, gxcb, gxsb) = (gh[o].to_f64(), gh[o + 1].to_f64(), gh[o + 2].to_f64(), gh[o + 3].to_f64());
            d_a += sa[i] * gcb + ca[i] * gsb;
            let cphi = ca[i] * gcb - sa[i] * gsb;
            d_phi += cphi;
            d_kx += ca[i] * gxcb - sa[i] * gxsb;
            d_ky += lay.y(i) * cphi;
        }
        let o = a * 4;
        datoms[o] += d_a;
        datoms[o + 1] += amp * d_phi;
        datoms[o + 2] += kk * amp * d_kx;
        datoms[o + 3] += kk * amp * d_ky;
        if let (true, Some((gm, ld))) = (need_gamma, g) {
            // gamma = A sum G (tanh u - sin u) = A sum G tanh u - A dA
            let (_, phi, kx, ky, _) = s.atom(b, a);
            let mut u = vec![<T as GemmElem>::ZERO; cols];
            let mut th = vec![<T as GemmElem>::ZERO; cols];
            let mut acc = 0.0;
            for i in 0..rows {
                let row0 = ky * lay.y(i) + phi;
                for (jj, uj) in u.iter_mut().enumerate() {
                    *uj = T::c(kx * lay.x(jj) + row0);
                }
                T::tanh_slice(&u, &mut th);
                let gr = &gm[i * ld..i * ld + cols];
                acc += gr.iter().zip(&th).map(|(&x, &y)| (x * y).to_f64()).sum::<f64>();
            }
            dalpha[a] += amp * (acc - d_a);
        }
    }
    if s.k > 0 {
        let drm = dct_cached(lay.br);
        for q in 0..s.k {
            let u = s.res_idx[b * s.k + q] / lay.bc;
            let mut acc = 0.0;
            for i in 0..rows {
                acc += drm[u * lay.br + i] * gh[i * w + 4 * js + q].to_f64();
            }
            dres[q] += acc;
        }
    }
    if let (false, Some((gm, ld))) = (dense.is_empty(), g) {
        for &a in dense {
            let (amp, phi, kx, ky, alpha) = s.atom(b, a);
            let (mut d_a, mut d_phi, mut d_kx, mut d_ky, mut d_al) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for i in 0..rows {
                let y = lay.y(i);
                let row0 = ky * y + phi;
                let (mut ra, mut rh, mut rhx, mut rgam) = (0.0, 0.0, 0.0, 0.0);
                for jj in 0..cols {
                    let x = lay.x(jj);
                    let uu = kx * x + row0;
                    let gij = gm[i * ld + jj].to_f64();
                    let t = uu.tanh();
                    let (gv, dg, sn) = if alpha == 1.0 {
                        (t, 1.0 - t * t, None)
                    } else {
                        let (sn, cs) = uu.sin_cos();
                        ((1.0 - alpha) * sn + alpha * t, (1.0 - alpha) * cs + alpha * (1.0 - t * t), Some(sn))
                    };
                    ra += gij * gv;
                    rh += gij * dg;
                    rhx += gij * dg * x;
                    rgam += gij * (t - sn.unwrap_or_else(|| uu.sin()));
                }
                d_a += ra;
                d_phi += rh;
                d_kx += rhx;
                d_ky += rh * y;
                d_al += rgam;
            }
            let o = a * 4;
            datoms[o] += d_a;
            datoms[o + 1] += amp * d_phi;
            datoms[o + 2] += kk * amp * d_kx;
            datoms[o + 3] += kk * amp * d_ky;
            dalpha[a] += amp * d_al;
        }
    }
}

/// Parameter gradients as tensors of the parameters' dtype.
fn grads_to_tensors(s: &Snap, dt: DType, datoms: Vec<f64>, dalpha: Vec<f64>, dres: Vec<f64>) -> Result<(Tensor, Tensor, Tensor)> {
    let nb = s.lay.n_blocks();
    let cast = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> { super::as_dtype(&Tensor::from_vec(v, shape)?, dt) };
    Ok((cast(datoms, &[nb, s.j, 4])?, cast(dalpha, &[nb, s.j])?, cast(dres, &[nb, s.k])?))
}

/// First-order VJP of `generate` for a gradient `g` (out x in, contiguous).
fn generate_vjp_raw<T: RbeFloat>(s: &Snap, g: &Tensor, need_gamma: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let lay = s.lay;
    let nb = lay.n_blocks();
    let mut datoms = vec![0.0; nb * s.j * 4];
    let mut dalpha = vec![0.0; nb * s.j];
    let mut dres = vec![0.0; nb * s.k];
    let gd = g.data::<T>();
    let (pa, pl, pr) = (SendPtr(datoms.as_mut_ptr()), SendPtr(dalpha.as_mut_ptr()), SendPtr(dres.as_mut_ptr()));
    for_each_index(nb, work_estimate(s, 2), |b| {
        let (r0, rows, c0, cols) = lay.block_extent(b);
        let (sep, dense) = s.split(b);
        let f = factors::<T>(s, b, &sep, rows, cols, true);
        let mut gh = vec![<T as GemmElem>::ZERO; rows * f.w];
        let gb = &gd[r0 * lay.inp + c0..];
        unsafe { mm(rows, f.w, cols, gh.as_mut_ptr(), f.w, 1, false, gb.as_ptr(), lay.inp, 1, f.cu.as_ptr(), f.w, 1) };
        let gfull = if need_gamma || !dense.is_empty() { Some((gb, lay.inp)) } else { None };
        // Safety: block b owns its slots of the gradient buffers.
        let (da, dl, dr) = unsafe {
            (
                std::slice::from_raw_parts_mut(pa.get().add(b * s.j * 4), s.j * 4),
                std::slice::from_raw_parts_mut(pl.get().add(b * s.j), s.j),
                std::slice::from_raw_parts_mut(pr.get().add(b * s.k), s.k),
            )
        };
        block_grads(s, b, &sep, &dense, &f, &gh, gfull, need_gamma, rows, cols, da, dl, dr);
    });
    (datoms, dalpha, dres)
}

/// Materialise the `out x in` matrix of an RBE layer (differentiable).
pub fn rbe_generate(lay: &Layout, p: &RbeParams) -> Result<Tensor> {
    let s = Snap::new(lay, p)?;
    let out = crate::dispatch_float!(p.atoms.dtype(), "rbe_generate", T => generate_raw::<T>(&s));
    let inputs: Vec<&Tensor> = match p.res_vals {
        Some(v) => vec![p.atoms, p.tracks, v],
        None => vec![p.atoms, p.tracks],
    };
    if needs_grad(&inputs) {
        let saved: Vec<SavedTensor> = inputs.iter().map(|t| SavedTensor::input(t)).collect();
        let idx = p.res_idx.cloned();
        let lay = *lay;
        attach(&out, "RbeGenerateBackward0", &inputs, true, move |ctx, g| {
            let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
            let params = RbeParams { atoms: &ts[0], tracks: &ts[1], res_vals: ts.get(2), res_idx: idx.as_ref() };
            if crate::autograd::is_grad_enabled() {
                return generate_vjp_graph(&lay, &params, g);
            }
            let s = Snap::new(&lay, &params)?;
            let g = super::as_dtype(g, ts[0].dtype())?.contiguous();
            let (da, dl, dr) = crate::dispatch_float!(ts[0].dtype(), "rbe_generate backward", T => generate_vjp_raw::<T>(&s, &g, ctx.needs(1)));
            let (da, dl, dr) = grads_to_tensors(&s, ts[0].dtype(), da, dl, dr)?;
            let mut v = vec![Some(da), ctx.needs(1).then_some(dl)];
            if ts.len() == 3 {
                v.push(Some(dr));
            }
            Ok(v)
        });
    }
    Ok(out)
}

/// The VJP of `generate` written with differentiable tensor ops (used under
/// `create_graph`): per-atom blocks `(nb, J, br, bc)` are materialised.
fn generate_vjp_graph(lay: &Layout, p: &RbeParams, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let dt = p.atoms.dtype();
    let g = super::as_dtype(g, dt)?;
    let (nbr, nbc) = lay.grid();
    let (br, bc) = (lay.br, lay.bc);
    // G in blocks: (nb, 1, br, bc)
    let padded = super::nn::pad_constant(&g, &[0, (nbc * bc - lay.inp) as isize, 0, (nbr * br - lay.out) as isize], 0.0)?;
    let gb = reshape(&permute(&reshape(&padded, &[nbr, br, nbc, bc])?, &[0, 2, 1, 3])?, &[nbr * nbc, 1, br, bc])?;
    let xs = Tensor::from_vec((0..bc).map(|j| lay.x(j)).collect::<Vec<f64>>(), &[1, 1, 1, bc])?;
    let ys = Tensor::from_vec((0..br).map(|i| lay.y(i)).collect::<Vec<f64>>(), &[1, 1, br, 1])?;
    let (xs, ys) = (super::as_dtype(&xs, dt)?, super::as_dtype(&ys, dt)?);
    let field = |c: isize| -> Result<Tensor> { unsqueeze(&unsqueeze(&select(p.atoms, 2, c)?, -1)?, -1) };
    let (amp, phi) = (field(0)?, field(1)?);
    let kk = 2.0 * lay.kappa;
    let (kx, ky) = (mul_scalar(&field(2)?, kk)?, mul_scalar(&field(3)?, kk)?);
    let al = unsqueeze(&unsqueeze(p.tracks, -1)?, -1)?;
    let u = add(&add(&mul(&kx, &xs)?, &mul(&ky, &ys)?)?, &phi)?;
    let (sn, cs, th) = (sin(&u)?, cos(&u)?, tanh(&u)?);
    let gv = add(&sn, &mul(&al, &sub(&th, &sn)?)?)?;
    let one_m_t2 = sub(&Tensor::ones(&[], dt), &mul(&th, &th)?)?;
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
        let drm = super::as_dtype(&Tensor::from_vec(dct_cached(br).to_vec(), &[br, br])?, dt)?;
        let dcm = super::as_dtype(&Tensor::from_vec(dct_cached(bc).to_vec(), &[bc, bc])?, dt)?;
        // D_r G D_c^T per block, flattened, gathered at the indices
        let gb2 = reshape(&gb, &[nbr * nbc, br, bc])?;
        let coef = super::linalg::matmul(&super::linalg::matmul(&drm, &gb2)?, &super::shape::mt(&dcm)?)?;
        let flat = reshape(&coef, &[nbr * nbc, br * bc])?;
        v.push(Some(super::index::gather(&flat, 1, idx)?));
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
            fmt_shape(x.shape()), lay.inp, lay.out, lay.inp
        ));
    }
    let lead = &x.shape()[..x.ndim() - 1];
    let n: usize = lead.iter().product();
    let x2 = reshape(x, &[n, lay.inp])?;
    let s = Snap::new(lay, p)?;
    let xc = x2.detach().contiguous();
    let out = crate::dispatch_float!(dt, "rbe_linear", T => linear_fwd_raw::<T>(&s, &xc));
    let mut inputs: Vec<&Tensor> = vec![&x2, p.atoms, p.tracks];
    if let Some(v) = p.res_vals {
        inputs.push(v);
    }
    if needs_grad(&inputs) {
        let saved: Vec<SavedTensor> = inputs.iter().map(|t| SavedTensor::input(t)).collect();
        let idx = p.res_idx.cloned();
        let lay = *lay;
        attach(&out, "RbeLinearBackward0", &inputs, true, move |ctx, g| {
            let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
            let params = RbeParams { atoms: &ts[1], tracks: &ts[2], res_vals: ts.get(3), res_idx: idx.as_ref() };
            if crate::autograd::is_grad_enabled() {
                // differentiable path: W materialised, dW = g^T x
                let w = rbe_generate(&lay, &params)?;
                let gx = super::linalg::matmul(g, &w)?;
                let gw = super::linalg::matmul(&super::shape::mt(g)?, &ts[0])?;
                let mut v = vec![Some(gx)];
                v.extend(generate_vjp_graph(&lay, &params, &gw)?);
                return Ok(v);
            }
            let s = Snap::new(&lay, &params)?;
            let gc = g.contiguous();
            let xc = ts[0].detach().contiguous();
            let (nx, np, na) = (ctx.needs(0), ctx.needs(1) || ctx.needs(3), ctx.needs(2));
            let (gx, da, dl, dr) = crate::dispatch_float!(ts[1].dtype(), "rbe_linear backward", T => linear_bwd_raw::<T>(&s, &xc, &gc, nx, np || na, na));
            let (da, dl, dr) = grads_to_tensors(&s, ts[1].dtype(), da, dl, dr)?;
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
        Some(b) => {
            if b.dtype() != dt {
                return Err(dtype_err!("rbe_linear: bias dtype {} does not match the layer's dtype {}", b.dtype().name(), dt.name()));
            }
            if b.shape() != [lay.out] {
                return Err(shape_err!("rbe_linear: bias must have shape [{}], got {}", lay.out, fmt_shape(b.shape())));
            }
            add(&y, b)
        }
        None => Ok(y),
    }
}

fn linear_fwd_raw<T: RbeFloat>(s: &Snap, x: &Tensor) -> Tensor {
    let lay = s.lay;
    let n = x.shape()[0];
    let y = Tensor::zeros(&[n, lay.out], T::DTYPE);
    if n == 0 {
        return y;
    }
    let (nbr, nbc) = lay.grid();
    let xd = x.data::<T>();
    let yp = SendPtr(y.data_ptr::<T>());
    for_each_index(nbr, work_estimate(s, n), |r| {
        let mut p: Vec<T> = Vec::new();
        let mut dense_buf: Vec<T> = Vec::new();
        for c in 0..nbc {
            let b = r * nbc + c;
            let (r0, rows, c0, cols) = lay.block_extent(b);
            let (sep, dense) = s.split(b);
            let f = factors::<T>(s, b, &sep, rows, cols, false);
            // Safety: block row r owns columns r0..r0+rows of y.
            unsafe {
                let yr = yp.get().add(r0);
                let xc = xd.as_ptr().add(c0);
                if f.m > 0 {
                    p.resize(n * f.m, <T as GemmElem>::ZERO);
                    mm(n, f.m, cols, p.as_mut_ptr(), f.m, 1, false, xc, lay.inp, 1, f.c.as_ptr(), f.m, 1);
                    mm(n, rows, f.m, yr, lay.out, 1, true, p.as_ptr(), f.m, 1, f.r.as_ptr(), 1, f.m);
                }
                if !dense.is_empty() {
                    dense_block(s, b, &dense, rows, cols, &mut dense_buf);
                    mm(n, rows, cols, yr, lay.out, 1, true, xc, lay.inp, 1, dense_buf.as_ptr(), 1, cols);
                }
            }
        }
    });
    y
}

type LinearGrads = (Option<Tensor>, Vec<f64>, Vec<f64>, Vec<f64>);

fn linear_bwd_raw<T: RbeFloat>(s: &Snap, x: &Tensor, g: &Tensor, need_x: bool, need_p: bool, need_gamma: bool) -> LinearGrads {
    let lay = s.lay;
    let n = x.shape()[0];
    let nb = lay.n_blocks();
    let (nbr, nbc) = lay.grid();
    let mut datoms = vec![0.0; nb * s.j * 4];
    let mut dalpha = vec![0.0; nb * s.j];
    let mut dres = vec![0.0; nb * s.k];
    let gx = Tensor::zeros(&[n, lay.inp], T::DTYPE);
    let (xd, gd) = (x.data::<T>(), g.data::<T>());
    let gxp = SendPtr(gx.data_ptr::<T>());
    let (pa, pl, pr) = (SendPtr(datoms.as_mut_ptr()), SendPtr(dalpha.as_mut_ptr()), SendPtr(dres.as_mut_ptr()));
    for_each_index(nbc, 3 * work_estimate(s, n), |c| {
        let (mut q, mut chi, mut gh, mut dense_buf, mut gfull): (Vec<T>, Vec<T>, Vec<T>, Vec<T>, Vec<T>) = Default::default();
        for r in 0..nbr {
            let b = r * nbc + c;
            let (r0, rows, c0, cols) = lay.block_extent(b);
            let (sep, dense) = s.split(b);
            let f = factors::<T>(s, b, &sep, rows, cols, need_p);
            // Safety: block column c owns columns c0..c0+cols of gx and the
            // gradient slots of its blocks.
            unsafe {
                let gr = gd.as_ptr().add(r0);
                let xc = xd.as_ptr().add(c0);
                if need_x && n > 0 {
                    let gxc = gxp.get().add(c0);
                    if f.m > 0 {
                        q.resize(n * f.m, <T as GemmElem>::ZERO);
                        mm(n, f.m, rows, q.as_mut_ptr(), f.m, 1, false, gr, lay.out, 1, f.r.as_ptr(), f.m, 1);
                        mm(n, cols, f.m, gxc, lay.inp, 1, true, q.as_ptr(), f.m, 1, f.c.as_ptr(), 1, f.m);
                    }
                    if !dense.is_empty() {
                        dense_block(s, b, &dense, rows, cols, &mut dense_buf);
                        mm(n, cols, rows, gxc, lay.inp, 1, true, gr, lay.out, 1, dense_buf.as_ptr(), cols, 1);
                    }
                }
                if need_p {
                    // chi = X_c @ cu (n x w); gh = G_r^T @ chi (rows x w)
                    chi.resize(n * f.w, <T as GemmElem>::ZERO);
                    gh.resize(rows * f.w, <T as GemmElem>::ZERO);
                    mm(n, f.w, cols, chi.as_mut_ptr(), f.w, 1, false, xc, lay.inp, 1, f.cu.as_ptr(), f.w, 1);
                    mm(rows, f.w, n, gh.as_mut_ptr(), f.w, 1, false, gr, 1, lay.out, chi.as_ptr(), f.w, 1);
                    let full = if need_gamma || !dense.is_empty() {
                        gfull.resize(rows * cols, <T as GemmElem>::ZERO);
                        mm(rows, cols, n, gfull.as_mut_ptr(), cols, 1, false, gr, 1, lay.out, xc, lay.inp, 1);
                        Some((&gfull[..], cols))
                    } else {
                        None
                    };
                    let (da, dl, dr) = (
                        std::slice::from_raw_parts_mut(pa.get().add(b * s.j * 4), s.j * 4),
                        std::slice::from_raw_parts_mut(pl.get().add(b * s.j), s.j),
                        std::slice::from_raw_parts_mut(pr.get().add(b * s.k), s.k),
                    );
                    block_grads(s, b, &sep, &dense, &f, &gh, full, need_gamma, rows, cols, da, dl, dr);
                }
            }
        }
    });
    (need_x.then_some(gx), datoms, dalpha, dres)
}
