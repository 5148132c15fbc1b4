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

/// Sequences evaluated side by side by [`sincos_lanes`].
const LANES: usize = crate::simd::SINCOS_LANES;

use crate::simd::sincos_lanes;

/// `sin` and `cos` of `t0 + i d` for `i < n`, bit-identical to one lane of
/// [`sincos_lanes`].
fn sincos_seq(t0: f64, d: f64, n: usize, s: &mut [f64], c: &mut [f64]) {
    let (mut sl, mut cl) = (vec![0.0; n * LANES], vec![0.0; n * LANES]);
    let mut t = [0.0; LANES];
    let mut dd = [0.0; LANES];
    t[0] = t0;
    dd[0] = d;
    sincos_lanes(&t, &dd, n, &mut sl, &mut cl);
    for i in 0..n {
        s[i] = sl[i * LANES];
        c[i] = cl[i * LANES];
    }
}

/// Bases `sin`/`cos` of many sequences of length `n`: `seqs` gives `(t0, d)`
/// per sequence; the result holds sequence `k`'s value at `i` at
/// `(k / LANES) * n * LANES + i * LANES + k % LANES`.
struct Bases {
    n: usize,
    s: Vec<f64>,
    c: Vec<f64>,
}

impl Bases {
    fn new(seqs: &[(f64, f64)], n: usize) -> Bases {
        let groups = seqs.len().div_ceil(LANES);
        let (mut s, mut c) = (vec![0.0; groups * n * LANES], vec![0.0; groups * n * LANES]);
        for (g, chunk) in seqs.chunks(LANES).enumerate() {
            let (mut t0, mut d) = ([0.0; LANES], [0.0; LANES]);
            for (l, &(a, b)) in chunk.iter().enumerate() {
                t0[l] = a;
                d[l] = b;
            }
            let o = g * n * LANES;
            sincos_lanes(&t0, &d, n, &mut s[o..o + n * LANES], &mut c[o..o + n * LANES]);
        }
        Bases { n, s, c }
    }
    #[inline]
    fn at(&self, k: usize, i: usize) -> (f64, f64) {
        let o = (k / LANES) * self.n * LANES + i * LANES + k % LANES;
        (self.s[o], self.c[o])
    }
}

/// Per-block factors: `R` (rows x m, row-major, scaled by the amplitudes)
/// and `C` (cols x m), `W_sep = R C^T`; two slots per atom of `sep`, then one
/// per residual coefficient.
struct Factors<T> {
    m: usize,
    r: Vec<T>,
    c: Vec<T>,
    /// `r` without the amplitudes and residual values.
    rb: Vec<T>,
}

fn factors<T: RbeFloat>(s: &Snap, b: usize, sep: &[usize], rows: usize, cols: usize) -> Factors<T> {
    let lay = &s.lay;
    let js = sep.len();
    let m = 2 * js + s.k;
    let mut r = vec![<T as GemmElem>::ZERO; rows * m];
    let mut c = vec![<T as GemmElem>::ZERO; cols * m];
    let mut rb = vec![<T as GemmElem>::ZERO; rows * m];
    let (mut sa, mut ca) = (vec![0.0; rows], vec![0.0; rows]);
    let (mut sb, mut cb) = (vec![0.0; cols], vec![0.0; cols]);
    let (dy, dx) = (2.0 / lay.br as f64, 2.0 / lay.bc as f64);
    for (t, &a) in sep.iter().enumerate() {
        let (amp, phi, kx, ky, _) = s.atom(b, a);
        sincos_seq(ky * lay.y(0) + phi, ky * dy, rows, &mut sa, &mut ca);
        sincos_seq(kx * lay.x(0), kx * dx, cols, &mut sb, &mut cb);
        for i in 0..rows {
            r[i * m + 2 * t] = T::c(amp * sa[i]);
            r[i * m + 2 * t + 1] = T::c(amp * ca[i]);
            rb[i * m + 2 * t] = T::c(sa[i]);
            rb[i * m + 2 * t + 1] = T::c(ca[i]);
        }
        for jj in 0..cols {
            c[jj * m + 2 * t] = T::c(cb[jj]);
            c[jj * m + 2 * t + 1] = T::c(sb[jj]);
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
                rb[i * m + 2 * js + q] = T::c(drm[u * lay.br + i]);
            }
            for jj in 0..cols {
                c[jj * m + 2 * js + q] = T::c(dcm[v * lay.bc + jj]);
            }
        }
    }
    Factors { m, r, c, rb }
}

/// The tiled atoms of block `b` added into `out` (rows x cols, row stride `ld`).
fn add_dense<T: RbeFloat>(s: &Snap, b: usize, dense: &[usize], rows: usize, cols: usize, out: &mut [T], ld: usize) {
    let lay = &s.lay;
    let mut u = vec![<T as GemmElem>::ZERO; cols];
    let mut t = vec![<T as GemmElem>::ZERO; cols];
    let xs: Vec<f64> = (0..cols).map(|j| lay.x(j)).collect();
    for &a in dense {
        let (amp, phi, kx, ky, alpha) = s.atom(b, a);
        for i in 0..rows {
            let row0 = ky * lay.y(i) + phi;
            let o = &mut out[i * ld..i * ld + cols];
            if alpha == 1.0 {
                for (uj, &x) in u.iter_mut().zip(&xs) {
                    *uj = T::c(kx * x + row0);
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
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    drs: usize,
    dcs: usize,
    acc: bool,
    a: *const T,
    ars: usize,
    acs: usize,
    b: *const T,
    brs: usize,
    bcs: usize,
) {
    T::gemm(m, n, k, dst, drs as isize, dcs as isize, acc, a, ars as isize, acs as isize, b, brs as isize, bcs as isize);
}

use crate::parallel::for_each_index;

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
        let f = factors::<T>(s, b, &sep, rows, cols);
        // Safety: block b owns rows r0.., columns c0.. of the output.
        unsafe {
            let dst = ptr.get().add(r0 * lay.inp + c0);
            mm(rows, cols, f.m, dst, lay.inp, 1, false, f.r.as_ptr(), f.m, 1, f.c.as_ptr(), 1, f.m);
        }
        if !dense.is_empty() {
            // through a private buffer: a strided slice of the output would
            // overlap the blocks of other tasks
            let mut buf = Vec::new();
            dense_block(s, b, &dense, rows, cols, &mut buf);
            for i in 0..rows {
                // Safety: row i of block b (cols elements) belongs to this task only.
                let row = unsafe { std::slice::from_raw_parts_mut(ptr.get().add((r0 + i) * lay.inp + c0), cols) };
                for (o, &v) in row.iter_mut().zip(&buf[i * cols..(i + 1) * cols]) {
                    *o += v;
                }
            }
        }
    });
    out
}

/// Gradients that need block `b`'s full gradient `gm` (rows x cols, row
/// stride `ld`): gamma of the SIN atoms in `sin_atoms`, and every field of
/// the tiled atoms in `dense` (their gamma included).
#[allow(clippy::too_many_arguments)]
fn dense_grads<T: RbeFloat>(
    s: &Snap,
    b: usize,
    sin_atoms: &[usize],
    dense: &[usize],
    gm: &[T],
    ld: usize,
    rows: usize,
    cols: usize,
    datoms: &mut [f64],
    dalpha: &mut [f64],
) {
    let lay = &s.lay;
    let kk = 2.0 * lay.kappa;
    let (dy, dx) = (2.0 / lay.br as f64, 2.0 / lay.bc as f64);
    let (mut srow, mut crow) = (vec![0.0; rows], vec![0.0; rows]);
    let (mut sb, mut cb) = (vec![0.0; cols], vec![0.0; cols]);
    let (mut u, mut th) = (vec![<T as GemmElem>::ZERO; cols], vec![<T as GemmElem>::ZERO; cols]);
    let xs: Vec<f64> = (0..cols).map(|j| lay.x(j)).collect();
    for &a in sin_atoms.iter().chain(dense) {
        let (amp, phi, kx, ky, alpha) = s.atom(b, a);
        sincos_seq(ky * lay.y(0) + phi, ky * dy, rows, &mut srow, &mut crow);
        sincos_seq(kx * lay.x(0), kx * dx, cols, &mut sb, &mut cb);
        // sin u_ij = sin(row_i) cos(kx x_j) + cos(row_i) sin(kx x_j)
        let (mut d_a, mut d_phi, mut d_kx, mut d_ky, mut d_al) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..rows {
            let y = lay.y(i);
            let row0 = ky * y + phi;
            let gr = &gm[i * ld..i * ld + cols];
            if alpha == 0.0 || alpha == 1.0 {
                for (j, uj) in u.iter_mut().enumerate() {
                    *uj = T::c(kx * xs[j] + row0);
                }
                T::tanh_slice(&u, &mut th);
                // five row sums in eight interleaved partial sums each (a
                // fixed order, so the vector units can take them)
                let mut acc = [[0.0f64; 8]; 5];
                for (jc, (gc, tc)) in gr.chunks(8).zip(th.chunks(8)).enumerate() {
                    for (l, (&gv, &tv)) in gc.iter().zip(tc).enumerate() {
                        let j = jc * 8 + l;
                        let (gij, t) = (gv.to_f64(), tv.to_f64());
                        let d = gij * (1.0 - t * t);
                        acc[0][l] += gij * cb[j];
                        acc[1][l] += gij * sb[j];
                        acc[2][l] += gij * t;
                        acc[3][l] += d;
                        acc[4][l] += d * xs[j];
                    }
                }
                let [gcb, gsb, gt, gd, gdx] = acc.map(|a| a.iter().sum::<f64>());
                let gsin = srow[i] * gcb + crow[i] * gsb;
                d_al += gt - gsin;
                if alpha == 1.0 {
                    d_a += gt;
                    d_phi += gd;
                    d_kx += gdx;
                    d_ky += gd * y;
                }
            } else {
                // a relaxed track: exact per element
                for j in 0..cols {
                    let uu = kx * xs[j] + row0;
                    let gij = gr[j].to_f64();
                    let t = uu.tanh();
                    let (sn, cs) = uu.sin_cos();
                    let d = gij * ((1.0 - alpha) * cs + alpha * (1.0 - t * t));
                    d_a += gij * ((1.0 - alpha) * sn + alpha * t);
                    d_phi += d;
                    d_kx += d * xs[j];
                    d_ky += d * y;
                    d_al += gij * (t - sn);
                }
            }
        }
        dalpha[a] += amp * d_al;
        if alpha != 0.0 {
            let o = a * 4;
            datoms[o] += d_a;
            datoms[o + 1] += amp * d_phi;
            datoms[o + 2] += kk * amp * d_kx;
            datoms[o + 3] += kk * amp * d_ky;
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
        let f = factors::<T>(s, b, &sep, rows, cols);
        let gb = &gd[r0 * lay.inp + c0..];
        // Safety: block b owns its slots of the gradient buffers.
        let (da, dl, dq) = unsafe {
            (
                std::slice::from_raw_parts_mut(pa.get().add(b * s.j * 4), s.j * 4),
                std::slice::from_raw_parts_mut(pl.get().add(b * s.j), s.j),
                std::slice::from_raw_parts_mut(pr.get().add(b * s.k), s.k),
            )
        };
        if f.m > 0 {
            // dR = G_b C (rows x m), dC = G_b^T R (cols x m)
            let (mut dr, mut dc) = (vec![<T as GemmElem>::ZERO; rows * f.m], vec![<T as GemmElem>::ZERO; cols * f.m]);
            unsafe {
                mm(rows, f.m, cols, dr.as_mut_ptr(), f.m, 1, false, gb.as_ptr(), lay.inp, 1, f.c.as_ptr(), f.m, 1);
                mm(cols, f.m, rows, dc.as_mut_ptr(), f.m, 1, false, gb.as_ptr(), 1, lay.inp, f.r.as_ptr(), f.m, 1);
            }
            let m = f.m;
            let (dr_at, dc_at) = (|i: usize, q: usize| dr[i * m + q].to_f64(), |j: usize, q: usize| dc[j * m + q].to_f64());
            let (rb_at, cb_at) = (|i: usize, q: usize| f.rb[i * m + q].to_f64(), |j: usize, q: usize| f.c[j * m + q].to_f64());
            sep_grads(s, b, &sep, rows, cols, dr_at, dc_at, rb_at, cb_at, da, dq);
        }
        dense_grads(s, b, if need_gamma { &sep } else { &[] }, &dense, gb, lay.inp, rows, cols, da, dl);
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
        // the indices are saved with a version check like the inputs
        let idx = p.res_idx.map(SavedTensor::input);
        let lay = *lay;
        attach(&out, "RbeGenerateBackward0", &inputs, true, move |ctx, g| {
            let ts: Vec<Tensor> = saved.iter().map(|t| t.get(ctx)).collect::<Result<_>>()?;
            let idx = idx.as_ref().map(|t| t.get(ctx)).transpose()?;
            let params = RbeParams { atoms: &ts[0], tracks: &ts[1], res_vals: ts.get(2), res_idx: idx.as_ref() };
            if crate::autograd::is_grad_enabled() {
                return generate_vjp_graph(&lay, &params, g);
            }
            let s = Snap::new(&lay, &params)?;
            let g = super::as_dtype(g, ts[0].dtype())?.contiguous();
            let (da, dl, dr) =
                crate::dispatch_float!(ts[0].dtype(), "rbe_generate backward", T => generate_vjp_raw::<T>(&s, &g, ctx.needs(1)));
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
            fmt_shape(x.shape()),
            lay.inp,
            lay.out,
            lay.inp
        ));
    }
    let lead = &x.shape()[..x.ndim() - 1];
    let n: usize = lead.iter().product();
    let x2 = reshape(x, &[n, lay.inp])?;
    let s = Snap::new(lay, p)?;
    let xc = x2.detach().contiguous();
    // the factors built by the forward are kept for the backward (the saved
    // inputs' version check guarantees the parameters did not change)
    let (out, cache) = crate::dispatch_float!(dt, "rbe_linear", T => {
        if n <= SMALL_BATCH {
            (linear_fwd_small::<T>(&s, &xc), None)
        } else {
            let (y, f) = linear_fwd_raw::<T>(&s, &xc, needs_grad(&[p.atoms, p.tracks]) || p.res_vals.is_some_and(|v| v.requires_grad()));
            (y, Some(Arc::new(f) as Arc<dyn Any + Send + Sync>))
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
            let g = &super::as_dtype(g, ts[1].dtype())?;
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
            let (gx, da, dl, dr) = crate::dispatch_float!(ts[1].dtype(), "rbe_linear backward", T => {
                if xc.shape()[0] <= SMALL_BATCH {
                    linear_bwd_small::<T>(&s, &xc, &gc, nx, np || na, na)
                } else {
                    linear_bwd_raw::<T>(&s, cache.as_ref().and_then(|c| c.downcast_ref::<LinCache<T>>()), &xc, &gc, nx, np || na, na)
                }
            });
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

/// The separable factors of every block, laid out so that a whole layer's
/// separable part is a handful of GEMMs instead of several per block.
///
/// Each block has `m = 2 js + K` slots: two per SIN atom (`js` = the largest
/// number of SIN atoms in a block; blocks with fewer leave zero slots) and one
/// per residual coefficient. `rcat` holds, per block row `r`, the matrix
/// `[R_r0 | R_r1 | ...]` (`br x nbc m`, row-major); `ccat` holds, per block
/// column `c`, `[C_0c | C_1c | ...]` (`bc x nbr m`). Edge blocks leave their
/// cropped rows and columns zero.
struct SepAll<T> {
    js: usize,
    m: usize,
    /// Atom index of each SIN slot, `nb x js` (`usize::MAX` when empty).
    slot: Vec<usize>,
    rcat: Scratch<T>,
    ccat: Scratch<T>,
    /// `rcat` without the amplitudes and residual values (the row bases).
    rbase: Scratch<T>,
}

impl<T: RbeFloat> SepAll<T> {
    /// `with_base`: also build `rbase` (only parameter gradients read it).
    fn new(s: &Snap, with_base: bool) -> SepAll<T> {
        let lay = &s.lay;
        let nb = lay.n_blocks();
        let (nbr, nbc) = lay.grid();
        let mut slot = vec![usize::MAX; nb * s.j];
        let mut js = 0;
        for b in 0..nb {
            let mut t = 0;
            for a in 0..s.j {
                if s.alpha[b * s.j + a] == 0.0 {
                    slot[b * s.j + t] = a;
                    t += 1;
                }
            }
            js = js.max(t);
        }
        // keep only the first js slots of each block
        let slot: Vec<usize> = (0..nb).flat_map(|b| slot[b * s.j..b * s.j + js].to_vec()).collect();
        let m = 2 * js + s.k;
        let (wr, wc) = (nbc * m, nbr * m);
        let mut rcat = Scratch::<T>::uninit(nbr * lay.br * wr);
        let mut ccat = Scratch::<T>::uninit(nbc * lay.bc * wc);
        let mut rbase = Scratch::<T>::uninit(if with_base { rcat.len() } else { 0 });
        if m > 0 {
            let (rp, cp, bp) = (SendPtr(rcat.as_mut_ptr()), SendPtr(ccat.as_mut_ptr()), SendPtr(rbase.as_mut_ptr()));
            let (dy, dx) = (2.0 / lay.br as f64, 2.0 / lay.bc as f64);
            let (drm, dcm) = (dct_cached(lay.br), dct_cached(lay.bc));
            let kk = 2.0 * lay.kappa;
            let field = |b: usize, t: usize, f: usize| -> f64 {
                let a = slot[b * js + t];
                if a == usize::MAX {
                    0.0
                } else {
                    s.atoms[(b * s.j + a) * 4 + f]
                }
            };
            // Row factors, one block row at a time, written row by row.
            for_each_index(nbr, nb * m * lay.br * 8, |r| {
                let rows = lay.br.min(lay.out - r * lay.br);
                let seqs: Vec<(f64, f64)> = (0..nbc * js)
                    .map(|k| {
                        let (b, t) = (r * nbc + k / js, k % js);
                        let ky = kk * field(b, t, 3);
                        (ky * lay.y(0) + field(b, t, 1), ky * dy)
                    })
                    .collect();
                let bases = Bases::new(&seqs, rows);
                let res_u: Vec<usize> = (0..nbc * s.k).map(|cq| s.res_idx[r * nbc * s.k + cq] / lay.bc).collect();
                let mut discard = if with_base { Vec::new() } else { vec![<T as GemmElem>::ZERO; wr] };
                for i in 0..rows {
                    // Safety: block row r owns its slab of rcat and rbase.
                    let (rrow, brow) = unsafe {
                        let o = r * lay.br * wr + i * wr;
                        let brow = if with_base { std::slice::from_raw_parts_mut(bp.get().add(o), wr) } else { &mut discard[..] };
                        (std::slice::from_raw_parts_mut(rp.get().add(o), wr), brow)
                    };
                    for c in 0..nbc {
                        let b = r * nbc + c;
                        for t in 0..js {
                            let (sn, cs) = bases.at(c * js + t, i);
                            let amp = field(b, t, 0);
                            rrow[c * m + 2 * t] = T::c(amp * sn);
                            rrow[c * m + 2 * t + 1] = T::c(amp * cs);
                            brow[c * m + 2 * t] = T::c(sn);
                            brow[c * m + 2 * t + 1] = T::c(cs);
                        }
                        for q in 0..s.k {
                            let dv = drm[res_u[c * s.k + q] * lay.br + i];
                            rrow[c * m + 2 * js + q] = T::c(s.res_vals[b * s.k + q] * dv);
                            brow[c * m + 2 * js + q] = T::c(dv);
                        }
                    }
                }
            });
            // Column factors, one block column at a time.
            for_each_index(nbc, nb * m * lay.bc * 8, |c| {
                let cols = lay.bc.min(lay.inp - c * lay.bc);
                let seqs: Vec<(f64, f64)> = (0..nbr * js)
                    .map(|k| {
                        let (b, t) = ((k / js) * nbc + c, k % js);
                        let kx = kk * field(b, t, 2);
                        (kx * lay.x(0), kx * dx)
                    })
                    .collect();
                let bases = Bases::new(&seqs, cols);
                let res_v: Vec<usize> = (0..nbr * s.k).map(|rq| s.res_idx[((rq / s.k) * nbc + c) * s.k + rq % s.k] % lay.bc).collect();
                for j in 0..cols {
                    // Safety: block column c owns its slab of ccat.
                    let crow = unsafe { std::slice::from_raw_parts_mut(cp.get().add(c * lay.bc * wc + j * wc), wc) };
                    for r in 0..nbr {
                        for t in 0..js {
                            let (sn, cs) = bases.at(r * js + t, j);
                            crow[r * m + 2 * t] = T::c(cs);
                            crow[r * m + 2 * t + 1] = T::c(sn);
                        }
                        for q in 0..s.k {
                            crow[r * m + 2 * js + q] = T::c(dcm[res_v[r * s.k + q] * lay.bc + j]);
                        }
                    }
                }
            });
        }
        SepAll { js, m, slot, rcat, ccat, rbase }
    }

    /// `R_r` of block row `r`: pointer to its `br x nbc m` slab.
    fn r_slab(&self, lay: &Layout, r: usize) -> *const T {
        let (_, nbc) = lay.grid();
        unsafe { self.rcat.as_ptr().add(r * lay.br * nbc * self.m) }
    }
    fn c_slab(&self, lay: &Layout, c: usize) -> *const T {
        let (nbr, _) = lay.grid();
        unsafe { self.ccat.as_ptr().add(c * lay.bc * nbr * self.m) }
    }
}

/// `x @ [C_0c | C_1c | ...]` for every block column: `(n, nbc, nbr, m)`.
fn stage_cols<T: RbeFloat>(s: &Snap, f: &SepAll<T>, x: &[T], n: usize, ld: usize) -> Scratch<T> {
    let lay = &s.lay;
    let (nbr, nbc) = lay.grid();
    let wc = nbr * f.m;
    let w = nbc * wc;
    let mut p = Scratch::<T>::uninit(n * w);
    let pp = SendPtr(p.as_mut_ptr());
    for_each_index(nbc, n * lay.inp * wc, |c| {
        let (_, _, c0, cols) = lay.block_extent(c);
        // Safety: block column c owns columns c*wc.. of p.
        unsafe { mm(n, wc, cols, pp.get().add(c * wc), w, 1, false, x.as_ptr().add(c0), ld, 1, f.c_slab(lay, c), wc, 1) };
    });
    p
}

/// `g @ [R_r0 | R_r1 | ...]` for every block row: `(n, nbr, nbc, m)`.
fn stage_rows<T: RbeFloat>(s: &Snap, f: &SepAll<T>, g: &[T], n: usize, ld: usize) -> Scratch<T> {
    let lay = &s.lay;
    let (nbr, nbc) = lay.grid();
    let wr = nbc * f.m;
    let w = nbr * wr;
    let mut q = Scratch::<T>::uninit(n * w);
    let qp = SendPtr(q.as_mut_ptr());
    for_each_index(nbr, n * lay.out * wr, |r| {
        let rows = lay.br.min(lay.out - r * lay.br);
        // Safety: block row r owns columns r*wr.. of q.
        unsafe { mm(n, wr, rows, qp.get().add(r * wr), w, 1, false, g.as_ptr().add(r * lay.br), ld, 1, f.r_slab(lay, r), wr, 1) };
    });
    q
}

/// `(n, a, b, m)` -> `(n, b, a, m)`.
fn swap_blocks<T: RbeFloat>(v: &[T], n: usize, a: usize, b: usize, m: usize) -> Scratch<T> {
    let mut out = Scratch::<T>::uninit(v.len());
    let w = a * b * m;
    for (row, orow) in v.chunks_exact(w.max(1)).zip(out.chunks_exact_mut(w.max(1))).take(n) {
        for j in 0..b {
            for i in 0..a {
                let o = (j * a + i) * m;
                orow[o..o + m].copy_from_slice(&row[(i * b + j) * m..(i * b + j + 1) * m]);
            }
        }
    }
    out
}

/// A zeroed buffer from the tensor pool: the per-call buffers of the layer
/// ops are large enough that the system allocator would map and unmap them
/// (and the kernel zero their pages) on every call.
struct Scratch<T> {
    t: Tensor,
    len: usize,
    _elem: std::marker::PhantomData<T>,
}

impl<T: RbeFloat> Scratch<T> {
    fn zeros(len: usize) -> Scratch<T> {
        Scratch { t: Tensor::zeros(&[len], T::DTYPE), len, _elem: std::marker::PhantomData }
    }
    /// Contents unspecified: for buffers whose every element that is later
    /// read is written first (edge blocks leave rows that nothing reads).
    fn uninit(len: usize) -> Scratch<T> {
        Scratch { t: Tensor::empty(&[len], T::DTYPE), len, _elem: std::marker::PhantomData }
    }
}

impl<T: RbeFloat> std::ops::Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.t.data::<T>()
    }
}

impl<T: RbeFloat> std::ops::DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // Safety: the buffer is private to this Scratch and has len elements of T.
        unsafe { std::slice::from_raw_parts_mut(self.t.data_ptr::<T>(), self.len) }
    }
}

/// Parameter gradients of block `b`'s separable terms from
/// `dR = G_b C` (`dr(i, q)`) and `dC = G_b^T R` (`dc(j, q)`), where `G_b` is
/// the block's gradient, `rb(i, q)` the row factors without amplitudes
/// (`sin a_i`, `cos a_i`, `D_r[u, i]`) and `cb(j, q)` the column factors
/// (`cos b_j`, `sin b_j`, `D_c[v, j]`); spec section 4 split along
/// `sin(a_i + b_j) = sin a_i cos b_j + cos a_i sin b_j`.
#[allow(clippy::too_many_arguments)]
fn sep_grads(
    s: &Snap,
    b: usize,
    atoms_of_slot: &[usize],
    rows: usize,
    cols: usize,
    dr: impl Fn(usize, usize) -> f64,
    dc: impl Fn(usize, usize) -> f64,
    rb: impl Fn(usize, usize) -> f64,
    cb: impl Fn(usize, usize) -> f64,
    datoms: &mut [f64],
    dres: &mut [f64],
) {
    let lay = &s.lay;
    let kk = 2.0 * lay.kappa;
    let js = atoms_of_slot.len();
    for (t, &a) in atoms_of_slot.iter().enumerate() {
        if a == usize::MAX {
            continue;
        }
        let (q0, q1) = (2 * t, 2 * t + 1);
        let (mut d_a, mut d_phi, mut d_ky) = (0.0, 0.0, 0.0);
        for i in 0..rows {
            let (r0, r1, sa, ca) = (dr(i, q0), dr(i, q1), rb(i, q0), rb(i, q1));
            d_a += r0 * sa + r1 * ca;
            let h = r0 * ca - r1 * sa;
            d_phi += h;
            d_ky += lay.y(i) * h;
        }
        let mut d_kx = 0.0;
        for j in 0..cols {
            d_kx += lay.x(j) * (dc(j, q1) * cb(j, q0) - dc(j, q0) * cb(j, q1));
        }
        let amp = s.atoms[(b * s.j + a) * 4];
        let o = a * 4;
        datoms[o] += d_a;
        datoms[o + 1] += amp * d_phi;
        datoms[o + 2] += kk * d_kx;
        datoms[o + 3] += kk * amp * d_ky;
    }
    for q in 0..s.k {
        let mut acc = 0.0;
        for i in 0..rows {
            acc += rb(i, 2 * js + q) * dr(i, 2 * js + q);
        }
        dres[q] += acc;
    }
}

/// The forward's factors, and (when the parameters need gradients) `X C`
/// with its block axes swapped, kept for the backward pass.
struct LinCache<T> {
    f: SepAll<T>,
    p2: Option<Scratch<T>>,
}

fn linear_fwd_raw<T: RbeFloat>(s: &Snap, x: &Tensor, keep_p: bool) -> (Tensor, LinCache<T>) {
    let lay = s.lay;
    let n = x.shape()[0];
    let y = Tensor::zeros(&[n, lay.out], T::DTYPE);
    let f = SepAll::<T>::new(s, keep_p);
    if n == 0 {
        return (y, LinCache { f, p2: None });
    }
    let (nbr, nbc) = lay.grid();
    let xd = x.data::<T>();
    let yp = SendPtr(y.data_ptr::<T>());
    let wr = nbc * f.m;
    let p = if f.m > 0 { swap_blocks(&stage_cols(s, &f, xd, n, lay.inp), n, nbc, nbr, f.m) } else { Scratch::zeros(0) };
    for_each_index(nbr, work_estimate(s, n), |r| {
        let mut dense_buf: Vec<T> = Vec::new();
        let rows = lay.br.min(lay.out - r * lay.br);
        // Safety: block row r owns columns r0..r0+rows of y.
        unsafe {
            let yr = yp.get().add(r * lay.br);
            if f.m > 0 {
                mm(n, rows, wr, yr, lay.out, 1, false, p.as_ptr().add(r * wr), nbr * wr, 1, f.r_slab(&lay, r), 1, wr);
            }
            for c in 0..nbc {
                let b = r * nbc + c;
                let (_, dense) = s.split(b);
                if !dense.is_empty() {
                    let (_, rows, c0, cols) = lay.block_extent(b);
                    dense_block(s, b, &dense, rows, cols, &mut dense_buf);
                    mm(n, rows, cols, yr, lay.out, 1, true, xd.as_ptr().add(c0), lay.inp, 1, dense_buf.as_ptr(), 1, cols);
                }
            }
        }
    });
    let p2 = (keep_p && f.m > 0).then_some(p);
    (y, LinCache { f, p2 })
}

type LinearGrads = (Option<Tensor>, Vec<f64>, Vec<f64>, Vec<f64>);

/// Zeroed outputs of a backward pass: `dx` (n x in) and the atoms, tracks
/// and residual gradients (f64, one slot group per block).
fn grad_buffers<T: RbeFloat>(s: &Snap, n: usize) -> (Tensor, Vec<f64>, Vec<f64>, Vec<f64>) {
    let nb = s.lay.n_blocks();
    (Tensor::zeros(&[n, s.lay.inp], T::DTYPE), vec![0.0; nb * s.j * 4], vec![0.0; nb * s.j], vec![0.0; nb * s.k])
}

#[allow(clippy::too_many_arguments)]
fn linear_bwd_raw<T: RbeFloat>(
    s: &Snap,
    cached: Option<&LinCache<T>>,
    x: &Tensor,
    g: &Tensor,
    need_x: bool,
    need_p: bool,
    need_gamma: bool,
) -> LinearGrads {
    let lay = s.lay;
    let n = x.shape()[0];
    let (nb, (nbr, nbc)) = (lay.n_blocks(), lay.grid());
    let (gx, mut datoms, mut dalpha, mut dres) = grad_buffers::<T>(s, n);
    if n == 0 {
        return (need_x.then_some(gx), datoms, dalpha, dres);
    }
    let (xd, gd) = (x.data::<T>(), g.data::<T>());
    let built;
    let f = match cached {
        Some(c) if !need_p || c.f.m == 0 || !c.f.rbase.is_empty() => &c.f,
        _ => {
            built = SepAll::<T>::new(s, need_p);
            &built
        }
    };
    let m = f.m;
    let (wr, wc) = (nbc * m, nbr * m);
    // q = G @ R-slabs, (n, nbr, nbc, m); q2 the same with the block axes swapped
    let q2 = if m > 0 { swap_blocks(&stage_rows(s, f, gd, n, lay.out), n, nbr, nbc, m) } else { Scratch::zeros(0) };
    if need_x {
        let gxp = SendPtr(gx.data_ptr::<T>());
        for_each_index(nbc, work_estimate(s, n), |c| {
            let mut dense_buf: Vec<T> = Vec::new();
            let (_, _, c0, cols) = lay.block_extent(c);
            // Safety: block column c owns columns c0..c0+cols of gx.
            unsafe {
                let gxc = gxp.get().add(c0);
                if m > 0 {
                    mm(n, cols, wc, gxc, lay.inp, 1, false, q2.as_ptr().add(c * wc), nbc * wc, 1, f.c_slab(&lay, c), 1, wc);
                }
                for r in 0..nbr {
                    let b = r * nbc + c;
                    let (_, dense) = s.split(b);
                    if !dense.is_empty() {
                        let (r0, rows, _, _) = lay.block_extent(b);
                        dense_block(s, b, &dense, rows, cols, &mut dense_buf);
                        mm(n, cols, rows, gxc, lay.inp, 1, true, gd.as_ptr().add(r0), lay.out, 1, dense_buf.as_ptr(), cols, 1);
                    }
                }
            }
        });
    }
    if !need_p {
        return (need_x.then_some(gx), datoms, dalpha, dres);
    }
    let (pa, pl, pr) = (SendPtr(datoms.as_mut_ptr()), SendPtr(dalpha.as_mut_ptr()), SendPtr(dres.as_mut_ptr()));
    if m > 0 {
        // dR_r = G_r^T @ (X C)_r  (br x nbc m per block row); dC_c = X_c^T @ (G R)_c  (bc x nbr m per block column)
        let computed;
        let p2 = match cached.and_then(|c| c.p2.as_ref()) {
            Some(p2) => p2,
            None => {
                computed = swap_blocks(&stage_cols(s, f, xd, n, lay.inp), n, nbc, nbr, m);
                &computed
            }
        };
        let mut dr = Scratch::<T>::uninit(nbr * lay.br * wr);
        let mut dc = Scratch::<T>::uninit(nbc * lay.bc * wc);
        let (drp, dcp) = (SendPtr(dr.as_mut_ptr()), SendPtr(dc.as_mut_ptr()));
        for_each_index(nbr, n * lay.out * wr, |r| {
            let rows = lay.br.min(lay.out - r * lay.br);
            // Safety: block row r owns its dr slab.
            unsafe {
                mm(
                    rows,
                    wr,
                    n,
                    drp.get().add(r * lay.br * wr),
                    wr,
                    1,
                    false,
                    gd.as_ptr().add(r * lay.br),
                    1,
                    lay.out,
                    p2.as_ptr().add(r * wr),
                    nbr * wr,
                    1,
                )
            };
        });
        for_each_index(nbc, n * lay.inp * wc, |c| {
            let (_, _, c0, cols) = lay.block_extent(c);
            // Safety: block column c owns its dc slab.
            unsafe {
                mm(
                    cols,
                    wc,
                    n,
                    dcp.get().add(c * lay.bc * wc),
                    wc,
                    1,
                    false,
                    xd.as_ptr().add(c0),
                    1,
                    lay.inp,
                    q2.as_ptr().add(c * wc),
                    nbc * wc,
                    1,
                )
            };
        });
        let (dr, dc, js, kk) = (&dr, &dc, f.js, 2.0 * lay.kappa);
        // A block row's slab is read row by row (sequential memory), with
        // accumulators per (block, slot); sums over i run in order.
        for_each_index(nbr, nb * m * lay.br * 8, |r| {
            let rows = lay.br.min(lay.out - r * lay.br);
            let w = nbc * js;
            let (mut sa_, mut sh, mut shy, mut sq) = (vec![0.0; w], vec![0.0; w], vec![0.0; w], vec![0.0; nbc * s.k]);
            for i in 0..rows {
                let y = lay.y(i);
                let o = r * lay.br * wr + i * wr;
                let (drow, brow) = (&dr[o..o + wr], &f.rbase[o..o + wr]);
                for c in 0..nbc {
                    for t in 0..js {
                        let q = c * m + 2 * t;
                        let (r0, r1, sn, cs) = (drow[q].to_f64(), drow[q + 1].to_f64(), brow[q].to_f64(), brow[q + 1].to_f64());
                        sa_[c * js + t] += r0 * sn + r1 * cs;
                        let h = r0 * cs - r1 * sn;
                        sh[c * js + t] += h;
                        shy[c * js + t] += y * h;
                    }
                    for q in 0..s.k {
                        let o = c * m + 2 * js + q;
                        sq[c * s.k + q] += drow[o].to_f64() * brow[o].to_f64();
                    }
                }
            }
            for c in 0..nbc {
                let b = r * nbc + c;
                for t in 0..js {
                    let a = f.slot[b * js + t];
                    if a == usize::MAX {
                        continue;
                    }
                    let o = (b * s.j + a) * 4;
                    let amp = s.atoms[o];
                    // Safety: block row r owns these slots (fields A, phi, py) of its blocks.
                    unsafe {
                        *pa.get().add(o) += sa_[c * js + t];
                        *pa.get().add(o + 1) += amp * sh[c * js + t];
                        *pa.get().add(o + 3) += kk * amp * shy[c * js + t];
                    }
                }
                for q in 0..s.k {
                    unsafe { *pr.get().add(b * s.k + q) += sq[c * s.k + q] };
                }
            }
        });
        for_each_index(nbc, nb * m * lay.bc * 8, |c| {
            let cols = lay.bc.min(lay.inp - c * lay.bc);
            let mut skx = vec![0.0; nbr * js];
            for j in 0..cols {
                let x = lay.x(j);
                let o = c * lay.bc * wc + j * wc;
                let (dcrow, crow) = (&dc[o..o + wc], &f.ccat[o..o + wc]);
                for r in 0..nbr {
                    for t in 0..js {
                        let q = r * m + 2 * t;
                        skx[r * js + t] += x * (dcrow[q + 1].to_f64() * crow[q].to_f64() - dcrow[q].to_f64() * crow[q + 1].to_f64());
                    }
                }
            }
            for r in 0..nbr {
                let b = r * nbc + c;
                for t in 0..js {
                    let a = f.slot[b * js + t];
                    if a != usize::MAX {
                        // Safety: block column c owns the px slots of its blocks.
                        unsafe { *pa.get().add((b * s.j + a) * 4 + 2) += kk * skx[r * js + t] };
                    }
                }
            }
        });
    }
    // the tiled atoms and gamma need each block's full gradient G_b = G_r^T X_c
    let any_dense = (0..nb).any(|b| !s.split(b).1.is_empty());
    if need_gamma || any_dense {
        for_each_index(nbc, 3 * work_estimate(s, n), |c| {
            let mut gfull: Vec<T> = Vec::new();
            for r in 0..nbr {
                let b = r * nbc + c;
                let (sep, dense) = s.split(b);
                if dense.is_empty() && !(need_gamma && !sep.is_empty()) {
                    continue;
                }
                let (r0, rows, c0, cols) = lay.block_extent(b);
                gfull.clear();
                gfull.resize(rows * cols, <T as GemmElem>::ZERO);
                // Safety: block column c owns the gradient slots of its blocks.
                unsafe {
                    mm(rows, cols, n, gfull.as_mut_ptr(), cols, 1, false, gd.as_ptr().add(r0), 1, lay.out, xd.as_ptr().add(c0), lay.inp, 1);
                    let (da, dl) = (
                        std::slice::from_raw_parts_mut(pa.get().add(b * s.j * 4), s.j * 4),
                        std::slice::from_raw_parts_mut(pl.get().add(b * s.j), s.j),
                    );
                    dense_grads(s, b, if need_gamma { &sep } else { &[] }, &dense, &gfull, cols, rows, cols, da, dl);
                }
            }
        });
    }
    (need_x.then_some(gx), datoms, dalpha, dres)
}

/// Batches up to this size take the streaming path: bases are generated per
/// block and used at once, so no factor matrix is ever written to memory
/// (at such sizes the layer is memory-bound, and the factors would be the
/// largest thing it touches).
const SMALL_BATCH: usize = 8;

/// Reusable per-thread buffers of the streaming path.
#[derive(Default)]
struct StreamBufs {
    atoms: Vec<usize>,
    dense: Vec<usize>,
    seq: Vec<(f64, f64)>,
    bases: Option<Bases>,
}

impl StreamBufs {
    /// Bases of the SIN atoms of block `b`: sequence `k` is atom `k`'s row
    /// basis, sequence `na + k` its column basis (one lane group for J <= 4).
    fn load(&mut self, s: &Snap, b: usize, rows: usize, cols: usize) {
        let lay = &s.lay;
        let (dy, dx) = (2.0 / lay.br as f64, 2.0 / lay.bc as f64);
        self.atoms.clear();
        self.dense.clear();
        for a in 0..s.j {
            if s.alpha[b * s.j + a] == 0.0 {
                self.atoms.push(a);
            } else {
                self.dense.push(a);
            }
        }
        self.seq.clear();
        for &a in &self.atoms {
            let (_, phi, _, ky, _) = s.atom(b, a);
            self.seq.push((ky * lay.y(0) + phi, ky * dy));
        }
        for &a in &self.atoms {
            let (_, _, kx, _, _) = s.atom(b, a);
            self.seq.push((kx * lay.x(0), kx * dx));
        }
        self.bases = Some(Bases::new(&self.seq, rows.max(cols)));
    }
    fn row(&self, k: usize, i: usize) -> (f64, f64) {
        self.bases.as_ref().unwrap().at(k, i)
    }
}

/// `sum_j v[j] (cos b_j, sin b_j, x_j cos b_j, x_j sin b_j)` for each SIN
/// atom `k` of the loaded block (the `x_j`-weighted pair only with `xw`).
fn col_dots(bufs: &StreamBufs, v: &[f64], xw: Option<&[f64]>, out: &mut [[f64; 4]]) {
    let (bases, na) = (bufs.bases.as_ref().unwrap(), bufs.atoms.len());
    for (k, o) in out.iter_mut().enumerate().take(na) {
        let (mut c0, mut c1, mut c2, mut c3) = (0.0, 0.0, 0.0, 0.0);
        for (j, &vj) in v.iter().enumerate() {
            let (sn, cs) = bases.at(na + k, j);
            c0 += vj * cs;
            c1 += vj * sn;
            if let Some(xw) = xw {
                c2 += vj * xw[j] * cs;
                c3 += vj * xw[j] * sn;
            }
        }
        *o = [c0, c1, c2, c3];
    }
}

fn linear_fwd_small<T: RbeFloat>(s: &Snap, x: &Tensor) -> Tensor {
    let lay = s.lay;
    let n = x.shape()[0];
    let y = Tensor::zeros(&[n, lay.out], T::DTYPE);
    if n == 0 {
        return y;
    }
    let (nbr, nbc) = lay.grid();
    let xd = x.data::<T>();
    let yp = SendPtr(y.data_ptr::<T>());
    let (drm, dcm) = (dct_cached(lay.br), dct_cached(lay.bc));
    for_each_index(nbr, work_estimate(s, n), |r| {
        let mut bufs = StreamBufs::default();
        let mut dense_buf: Vec<T> = Vec::new();
        let (mut xv, mut acc) = (vec![0.0; lay.bc], vec![0.0; n * lay.br]);
        let mut dots = vec![[0.0; 4]; s.j];
        let r0 = r * lay.br;
        let rows = lay.br.min(lay.out - r0);
        for c in 0..nbc {
            let b = r * nbc + c;
            let (_, _, c0, cols) = lay.block_extent(b);
            bufs.load(s, b, rows, cols);
            if !bufs.dense.is_empty() {
                dense_block(s, b, &bufs.dense, rows, cols, &mut dense_buf);
            }
            for nn in 0..n {
                let acc = &mut acc[nn * lay.br..nn * lay.br + rows];
                for j in 0..cols {
                    xv[j] = xd[nn * lay.inp + c0 + j].to_f64();
                }
                col_dots(&bufs, &xv[..cols], None, &mut dots);
                for (k, &a) in bufs.atoms.iter().enumerate() {
                    let amp = s.atoms[(b * s.j + a) * 4];
                    let (p0, p1) = (amp * dots[k][0], amp * dots[k][1]);
                    for (i, v) in acc.iter_mut().enumerate() {
                        let (sn, cs) = bufs.row(k, i);
                        *v += sn * p0 + cs * p1;
                    }
                }
                for q in 0..s.k {
                    let idx = s.res_idx[b * s.k + q];
                    let (u, v) = (idx / lay.bc, idx % lay.bc);
                    let pq: f64 = (0..cols).map(|j| xv[j] * dcm[v * lay.bc + j]).sum::<f64>() * s.res_vals[b * s.k + q];
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a += pq * drm[u * lay.br + i];
                    }
                }
                if !bufs.dense.is_empty() {
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a += (0..cols).map(|j| dense_buf[i * cols + j].to_f64() * xv[j]).sum::<f64>();
                    }
                }
            }
        }
        for nn in 0..n {
            // Safety: block row r owns columns r0..r0+rows of y.
            for (i, &a) in acc[nn * lay.br..nn * lay.br + rows].iter().enumerate() {
                unsafe { *yp.get().add(nn * lay.out + r0 + i) = T::c(a) };
            }
        }
    });
    y
}

fn linear_bwd_small<T: RbeFloat>(s: &Snap, x: &Tensor, g: &Tensor, need_x: bool, need_p: bool, need_gamma: bool) -> LinearGrads {
    let lay = s.lay;
    let n = x.shape()[0];
    let (nbr, nbc) = lay.grid();
    let (gx, mut datoms, mut dalpha, mut dres) = grad_buffers::<T>(s, n);
    if n == 0 {
        return (need_x.then_some(gx), datoms, dalpha, dres);
    }
    let (xd, gd) = (x.data::<T>(), g.data::<T>());
    let gxp = SendPtr(gx.data_ptr::<T>());
    let (pa, pl, pr) = (SendPtr(datoms.as_mut_ptr()), SendPtr(dalpha.as_mut_ptr()), SendPtr(dres.as_mut_ptr()));
    let (drm, dcm) = (dct_cached(lay.br), dct_cached(lay.bc));
    let kk = 2.0 * lay.kappa;
    let xs: Vec<f64> = (0..lay.bc).map(|j| lay.x(j)).collect();
    let ys: Vec<f64> = (0..lay.br).map(|i| lay.y(i)).collect();
    for_each_index(nbc, 3 * work_estimate(s, n), |c| {
        let mut bufs = StreamBufs::default();
        let (mut dense_buf, mut gfull): (Vec<T>, Vec<T>) = Default::default();
        let (mut xv, mut gv, mut gxacc) = (vec![0.0; lay.bc], vec![0.0; lay.br], vec![0.0; n * lay.bc]);
        let (mut pd, mut qd) = (vec![[0.0; 4]; s.j], vec![[0.0; 4]; s.j]);
        let c0 = c * lay.bc;
        let cols = lay.bc.min(lay.inp - c0);
        for r in 0..nbr {
            let b = r * nbc + c;
            let (r0, rows, _, _) = lay.block_extent(b);
            bufs.load(s, b, rows, cols);
            let na = bufs.atoms.len();
            if need_x && !bufs.dense.is_empty() {
                dense_block(s, b, &bufs.dense, rows, cols, &mut dense_buf);
            }
            // Safety: block column c owns columns c0.. of gx and the gradient slots of its blocks.
            let (da, dl, dq) = unsafe {
                (
                    std::slice::from_raw_parts_mut(pa.get().add(b * s.j * 4), s.j * 4),
                    std::slice::from_raw_parts_mut(pl.get().add(b * s.j), s.j),
                    std::slice::from_raw_parts_mut(pr.get().add(b * s.k), s.k),
                )
            };
            for nn in 0..n {
                for j in 0..cols {
                    xv[j] = xd[nn * lay.inp + c0 + j].to_f64();
                }
                for i in 0..rows {
                    gv[i] = gd[nn * lay.out + r0 + i].to_f64();
                }
                // qd[k] = sum_i g_i (sin a_i, cos a_i, y_i sin a_i, y_i cos a_i)
                for (k, o) in qd.iter_mut().enumerate().take(na) {
                    let (mut q0, mut q1, mut q2, mut q3) = (0.0, 0.0, 0.0, 0.0);
                    for i in 0..rows {
                        let (sn, cs) = bufs.row(k, i);
                        q0 += gv[i] * sn;
                        q1 += gv[i] * cs;
                        q2 += gv[i] * ys[i] * sn;
                        q3 += gv[i] * ys[i] * cs;
                    }
                    *o = [q0, q1, q2, q3];
                }
                if need_x {
                    let gxr = &mut gxacc[nn * lay.bc..nn * lay.bc + cols];
                    for (k, &a) in bufs.atoms.iter().enumerate() {
                        let amp = s.atoms[(b * s.j + a) * 4];
                        let (q0, q1) = (amp * qd[k][0], amp * qd[k][1]);
                        for (j, v) in gxr.iter_mut().enumerate() {
                            let (sn, cs) = bufs.row(na + k, j);
                            *v += q0 * cs + q1 * sn;
                        }
                    }
                }
                if need_p {
                    col_dots(&bufs, &xv[..cols], Some(&xs), &mut pd);
                    for (k, &a) in bufs.atoms.iter().enumerate() {
                        let amp = s.atoms[(b * s.j + a) * 4];
                        let ([p0, p1, px0, px1], [q0, q1, qy0, qy1]) = (pd[k], qd[k]);
                        let o = a * 4;
                        da[o] += q0 * p0 + q1 * p1;
                        da[o + 1] += amp * (q1 * p0 - q0 * p1);
                        da[o + 2] += kk * amp * (q1 * px0 - q0 * px1);
                        da[o + 3] += kk * amp * (qy1 * p0 - qy0 * p1);
                    }
                }
                for q in 0..s.k {
                    let idx = s.res_idx[b * s.k + q];
                    let (u, v) = (idx / lay.bc, idx % lay.bc);
                    let gq: f64 = (0..rows).map(|i| gv[i] * drm[u * lay.br + i]).sum();
                    if need_p {
                        dq[q] += gq * (0..cols).map(|j| xv[j] * dcm[v * lay.bc + j]).sum::<f64>();
                    }
                    if need_x {
                        let w = gq * s.res_vals[b * s.k + q];
                        for (j, o) in gxacc[nn * lay.bc..nn * lay.bc + cols].iter_mut().enumerate() {
                            *o += w * dcm[v * lay.bc + j];
                        }
                    }
                }
                if need_x && !bufs.dense.is_empty() {
                    for (j, o) in gxacc[nn * lay.bc..nn * lay.bc + cols].iter_mut().enumerate() {
                        *o += (0..rows).map(|i| gv[i] * dense_buf[i * cols + j].to_f64()).sum::<f64>();
                    }
                }
            }
            let sin_for_gamma: &[usize] = if need_gamma && need_p { &bufs.atoms } else { &[] };
            if need_p && (!bufs.dense.is_empty() || !sin_for_gamma.is_empty()) {
                gfull.clear();
                gfull.resize(rows * cols, <T as GemmElem>::ZERO);
                unsafe {
                    mm(rows, cols, n, gfull.as_mut_ptr(), cols, 1, false, gd.as_ptr().add(r0), 1, lay.out, xd.as_ptr().add(c0), lay.inp, 1)
                };
                dense_grads(s, b, sin_for_gamma, &bufs.dense, &gfull, cols, rows, cols, da, dl);
            }
        }
        if need_x {
            for nn in 0..n {
                for j in 0..cols {
                    // Safety: as above.
                    unsafe { *gxp.get().add(nn * lay.inp + c0 + j) = T::c(gxacc[nn * lay.bc + j]) };
                }
            }
        }
    });
    (need_x.then_some(gx), datoms, dalpha, dres)
}
