//! The ChebyKAN kernels: pure loops over slices. No `Tensor`, no autograd;
//! the op wrappers in [`crate::ops`] check the inputs, allocate the outputs
//! and record the backward.
//!
//! A ChebyKAN layer maps `x` (N x I) to `y` (N x O):
//!
//! ```text
//! y[n, o] = sum_{i, k} C[i, o, k] T_k(phi_i(x[n, i]))
//! ```
//!
//! with `T_k` the Chebyshev polynomials (three-term recurrence) and `phi_i`
//! the input map: `tanh`, or the affine map `s_i x + b_i` of a box onto
//! [-1, 1]. Writing `g_k(x) = T_k(phi(x))`, every quantity below is a sum of
//! `C` against a matrix `P` whose entries are products of `g_k^{(m)}(x)`
//! with the input jets, so each output stream is one GEMM with the same
//! `(I (K+1)) x O` weight matrix `W[(i, k), o] = C[i, o, k]`.
//!
//! Taylor mode ([`taylor_forward`]) carries along `d` input directions the
//! first derivatives `x_a` (N x d x I) and either every second derivative
//! `x_aa` ([`Second::Diag`], N x d x I) or only their sum, the Laplacian
//! `X = sum_a x_aa` ([`Second::Trace`], N x I):
//!
//! ```text
//! y     = sum C g(x)
//! y_a   = sum C g'(x) x_a
//! y_aa  = sum C (g''(x) x_a^2 + g'(x) x_aa)                 (Diag)
//! Y     = sum C (g''(x) sum_a x_a^2 + g'(x) X)              (Trace)
//! ```
//!
//! The derivatives of the basis follow the recurrence of the basis itself,
//! `T_n^{(m)} = 2 z T_{n-1}^{(m)} - T_{n-2}^{(m)} + 2 m T_{n-1}^{(m-1)}`
//! ([`basis_derivs`]), and those of `g` the chain rule through the map
//! ([`g_derivs`]).
//!
//! Every output element and every gradient slot of `x` and its jets is
//! written by one task of [`for_each_index`] (a block of rows); the sums over
//! rows (the coefficient gradient) are GEMMs, whose split of the summed
//! dimension is fixed. So the bits do not depend on the thread count.
//! Per-call buffers come from the tensor pool through [`FreshTensor`]
//! (allocation failures are reported, not aborted on).
use rbe_core::ext::{for_each_index, simd, FreshTensor, GemmElem, Real, Result, SendPtr};

/// Floats the kernels run on (f32 and f64).
pub trait Float: Real + GemmElem {
    /// `out[e] = tanh(x[e])`, vectorised.
    fn tanh_slice(x: &[Self], out: &mut [Self]);
}
impl Float for f32 {
    fn tanh_slice(x: &[f32], out: &mut [f32]) {
        simd::tanh_slice_f32(x, out)
    }
}
impl Float for f64 {
    /// `sign(x) (1 - e) / (1 + e)` with `e = exp(-2 |x|)` (the core's
    /// vectorised exp): within a few ulp of 1 in absolute terms, which is
    /// what the basis needs (`z` lies in [-1, 1]).
    fn tanh_slice(x: &[f64], out: &mut [f64]) {
        const C: usize = 64;
        let mut arg = [0.0f64; C];
        for (xc, oc) in x.chunks(C).zip(out.chunks_mut(C)) {
            let a = &mut arg[..xc.len()];
            for (t, &v) in a.iter_mut().zip(xc) {
                *t = -2.0 * v.abs();
            }
            simd::exp_slice_f64(a, oc);
            for (o, &v) in oc.iter_mut().zip(xc) {
                let e = *o;
                *o = ((1.0 - e) / (1.0 + e)).copysign(v);
            }
        }
    }
}

/// Which second derivatives a Taylor pass carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Second {
    /// None: value and first derivatives only (the gradient).
    None,
    /// Their sum over the directions (the Laplacian): one stream.
    Trace,
    /// Every `d^2/dx_a^2` (the Hessian diagonal): one stream per direction.
    Diag,
}

/// The input map of a layer, per input feature.
#[derive(Clone, Copy, Debug)]
pub enum Map<'a, T> {
    /// `z = tanh(x)`.
    Tanh,
    /// `z = scale[i] x + shift[i]`.
    Affine { scale: &'a [T], shift: &'a [T] },
}

/// Where the first-order input jets come from.
#[derive(Clone, Copy, Debug)]
pub enum First<'a, T> {
    /// No directions (`d = 0`): the plain layer.
    None,
    /// `x` is the independent variable itself: `d = I` and `x_a = e_a`
    /// (no second derivatives).
    Seed,
    /// Given jets, `N x d x I`.
    Given(&'a [T]),
}

/// Sizes of a layer call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    /// rows
    pub n: usize,
    /// input features
    pub i: usize,
    /// output features
    pub o: usize,
    /// basis functions per input (degree + 1)
    pub k1: usize,
    /// directions
    pub d: usize,
    pub second: Second,
}

impl Dims {
    /// Second-order rows per point.
    pub fn m(&self) -> usize {
        match self.second {
            Second::None => 0,
            Second::Trace => 1,
            Second::Diag => self.d,
        }
    }
    /// Width of the basis matrices, `I (K + 1)`.
    pub fn ik(&self) -> usize {
        self.i * self.k1
    }
}

/// `t[m * k1 + n] = T_n^{(m)}(z)` for `m < orders`, `n < k1`.
#[inline]
pub fn basis_derivs<T: Real>(z: T, k1: usize, orders: usize, t: &mut [T]) {
    let two_z = T::c(2.0) * z;
    for m in 0..orders {
        let row = m * k1;
        t[row] = if m == 0 { <T as Real>::ONE } else { <T as Real>::ZERO };
        if k1 > 1 {
            t[row + 1] = match m {
                0 => z,
                1 => <T as Real>::ONE,
                _ => <T as Real>::ZERO,
            };
        }
        if m == 0 {
            for n in 2..k1 {
                t[row + n] = two_z * t[row + n - 1] - t[row + n - 2];
            }
        } else {
            let c = T::c(2.0 * m as f64);
            for n in 2..k1 {
                t[row + n] = two_z * t[row + n - 1] - t[row + n - 2] + c * t[row - k1 + n - 1];
            }
        }
    }
}

/// The map at `x` for feature `i`: `(z, phi', phi'', phi''')`.
#[inline]
fn map_derivs<T: Real>(map: &Map<T>, x: T, i: usize) -> (T, T, T, T) {
    match map {
        Map::Tanh => {
            let z = x.tanh();
            let p1 = <T as Real>::ONE - z * z;
            (z, p1, T::c(-2.0) * z * p1, T::c(-2.0) * p1 * (<T as Real>::ONE - T::c(3.0) * z * z))
        }
        Map::Affine { scale, shift } => (scale[i] * x + shift[i], scale[i], <T as Real>::ZERO, <T as Real>::ZERO),
    }
}

/// `g[m * k1 + k] = d^m/dx^m T_k(phi(x))` for `m < orders` (at most 4);
/// `t` is scratch of at least `orders * k1`.
#[inline]
pub fn g_derivs<T: Real>(map: &Map<T>, x: T, i: usize, k1: usize, orders: usize, t: &mut [T], g: &mut [T]) {
    let (z, p1, p2, p3) = map_derivs(map, x, i);
    basis_derivs(z, k1, orders, t);
    g[..k1].copy_from_slice(&t[..k1]);
    if orders > 1 {
        for k in 0..k1 {
            g[k1 + k] = t[k1 + k] * p1;
        }
    }
    if orders > 2 {
        let p11 = p1 * p1;
        for k in 0..k1 {
            g[2 * k1 + k] = t[2 * k1 + k] * p11 + t[k1 + k] * p2;
        }
    }
    if orders > 3 {
        let (p111, p12) = (p1 * p1 * p1, T::c(3.0) * p1 * p2);
        for k in 0..k1 {
            g[3 * k1 + k] = t[3 * k1 + k] * p111 + t[2 * k1 + k] * p12 + t[k1 + k] * p3;
        }
    }
}

/// `T_k^{(order)}(z)` for every element of `z`, into `out` (`z.len() * k1`, row-major).
pub fn cheb_basis<T: Float>(z: &[T], k1: usize, order: usize, out: &mut [T]) {
    let n = z.len();
    let orders = order + 1;
    const CHUNK: usize = 256;
    let chunks = n.div_ceil(CHUNK);
    let dst = SendPtr(out.as_mut_ptr());
    for_each_index(chunks, n.saturating_mul(k1).saturating_mul(2 * orders), move |c| {
        let mut t = vec![<T as Real>::ZERO; orders * k1];
        let e0 = c * CHUNK;
        for (e, &ze) in z.iter().enumerate().take(((c + 1) * CHUNK).min(n)).skip(e0) {
            basis_derivs(ze, k1, orders, &mut t);
            // SAFETY: `out` has `n * k1` elements (checked by the caller) and
            // element `e` is visited by this task only, so the `k1` elements
            // written here are in bounds and written by no other task.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(e * k1), k1) };
            row.copy_from_slice(&t[order * k1..orders * k1]);
        }
    });
}

/// A block's rows of `H = G W^T` for the value, first- and second-order
/// streams (`None`: the stream has no gradient, its `H` is zero).
type BlockH<'a, T> = (Option<&'a [T]>, Option<&'a [T]>, Option<&'a [T]>);

/// The optional outputs of a backward block (gradients of x, first and second jets).
type OutGrads<'a, T> = (Option<&'a mut [T]>, Option<&'a mut [T]>, Option<&'a mut [T]>);

/// Rows of points per task.
const ROWS: usize = 16;
/// Blocks per parallel task (one scratch per task); a fixed partition of
/// the rows, and each row's results do not depend on it.
const GROUP: usize = 8;
const TASK_ROWS: usize = ROWS * GROUP;

/// The inputs of a Taylor pass: `x` (N x I), the first-order jets, and the
/// second-order ones (`N x d x I` for [`Second::Diag`], `N x I` for
/// [`Second::Trace`]; `None` means zero).
#[derive(Clone, Copy)]
pub struct Jets<'a, T> {
    pub x: &'a [T],
    pub first: First<'a, T>,
    pub second: Option<&'a [T]>,
}

/// Per-task scratch: the map's derivatives and the basis (and then the
/// `g_m`, in place) of a block of rows, laid out `[m][k][r][i]`.
struct Scratch<T> {
    z: Vec<T>,
    p1: Vec<T>,
    p2: Vec<T>,
    p3: Vec<T>,
    g: Vec<T>,
    /// the first-order jets of a seeded block (unit directions)
    eye: Vec<T>,
    /// `sum_a x_a^2` (Laplacian mode)
    q: Vec<T>,
}

impl<T: Float> Scratch<T> {
    fn new(dm: &Dims, orders: usize) -> Scratch<T> {
        let e = ROWS * dm.i;
        let z = <T as Real>::ZERO;
        Scratch {
            z: vec![z; e],
            p1: vec![z; e],
            p2: vec![z; e],
            p3: vec![z; e],
            g: vec![z; orders * dm.k1 * e],
            eye: Vec::new(),
            q: vec![z; e],
        }
    }
}

/// `g[m][k][r][i] = d^m/dx^m T_k(phi(x[r0 + r, i]))` for `m < orders` (at
/// most 4), rows `r0..r0 + rows`. Loops run over the contiguous `(r, i)`
/// index so that they vectorise.
#[inline(always)]
fn basis_block<T: Float>(dm: &Dims, map: &Map<T>, x: &[T], rows: usize, orders: usize, sc: &mut Scratch<T>) {
    let (ni, k1) = (dm.i, dm.k1);
    let e = rows * ni;
    let es = ROWS * ni; // stride between (m, k) planes
    let two = T::c(2.0);
    match map {
        Map::Tanh => {
            T::tanh_slice(&x[..e], &mut sc.z[..e]);
            for q in 0..e {
                let z = sc.z[q];
                let p1 = <T as Real>::ONE - z * z;
                sc.p1[q] = p1;
                sc.p2[q] = T::c(-2.0) * z * p1;
                sc.p3[q] = T::c(-2.0) * p1 * (<T as Real>::ONE - T::c(3.0) * z * z);
            }
        }
        Map::Affine { scale, shift } => {
            for r in 0..rows {
                for i in 0..ni {
                    sc.z[r * ni + i] = scale[i] * x[r * ni + i] + shift[i];
                    sc.p1[r * ni + i] = scale[i];
                }
            }
        }
    }
    let g = &mut sc.g;
    let z = &sc.z[..e];
    // T_k^{(m)} by the recurrences, plane by plane
    for m in 0..orders {
        let base = m * k1 * es;
        for q in 0..e {
            g[base + q] = if m == 0 { <T as Real>::ONE } else { <T as Real>::ZERO };
        }
        if k1 > 1 {
            for q in 0..e {
                g[base + es + q] = match m {
                    0 => z[q],
                    1 => <T as Real>::ONE,
                    _ => <T as Real>::ZERO,
                };
            }
        }
        let cm = T::c(2.0 * m as f64);
        for k in 2..k1 {
            let (done, rest) = g.split_at_mut(base + k * es);
            let (t1, t2) = (&done[base + (k - 1) * es..base + (k - 1) * es + e], &done[base + (k - 2) * es..base + (k - 2) * es + e]);
            let out = &mut rest[..e];
            if m == 0 {
                for q in 0..e {
                    out[q] = two * z[q] * t1[q] - t2[q];
                }
            } else {
                let lower = &done[base - k1 * es + (k - 1) * es..base - k1 * es + (k - 1) * es + e];
                for q in 0..e {
                    out[q] = two * z[q] * t1[q] - t2[q] + cm * lower[q];
                }
            }
        }
    }
    // g_m in place, highest order first (each uses only lower planes of T)
    let affine = matches!(map, Map::Affine { .. });
    for m in (1..orders).rev() {
        for k in 0..k1 {
            let plane = |mm: usize| (mm * k1 + k) * es;
            let (lo, hi) = g.split_at_mut(plane(m));
            let out = &mut hi[..e];
            let t1 = if m >= 2 { &lo[plane(1)..plane(1) + e] } else { &lo[..0] };
            let (p1, p2, p3) = (&sc.p1[..e], &sc.p2[..e], &sc.p3[..e]);
            match m {
                1 => {
                    for q in 0..e {
                        out[q] *= p1[q];
                    }
                }
                2 => {
                    if affine {
                        for q in 0..e {
                            out[q] *= p1[q] * p1[q];
                        }
                    } else {
                        for q in 0..e {
                            out[q] = out[q] * (p1[q] * p1[q]) + t1[q] * p2[q];
                        }
                    }
                }
                _ => {
                    let t2 = &lo[plane(2)..plane(2) + e];
                    if affine {
                        for q in 0..e {
                            out[q] *= p1[q] * p1[q] * p1[q];
                        }
                    } else {
                        for q in 0..e {
                            out[q] = out[q] * (p1[q] * p1[q] * p1[q]) + t2[q] * (T::c(3.0) * p1[q] * p2[q]) + t1[q] * p3[q];
                        }
                    }
                }
            }
        }
    }
}

/// The first-order jets of rows `r0..r0 + rows` (`rows x d x I`): the given
/// ones, or unit directions for a seed.
#[inline(always)]
fn jets_block<'s, T: Float>(dm: &Dims, jets: &Jets<'s, T>, r0: usize, rows: usize, eye: &'s mut Vec<T>) -> &'s [T] {
    let (d, ni) = (dm.d, dm.i);
    match jets.first {
        First::Given(j) => &j[r0 * d * ni..(r0 + rows) * d * ni],
        First::None => &[],
        First::Seed => {
            if eye.len() != rows * d * ni {
                eye.clear();
                eye.resize(rows * d * ni, <T as Real>::ZERO);
                for r in 0..rows {
                    for a in 0..d {
                        eye[(r * d + a) * ni + a] = <T as Real>::ONE;
                    }
                }
            }
            &eye[..]
        }
    }
}

/// Writes the basis-matrix rows of a block (columns `k I + i`): `pv` (rows x
/// ik), `pj` (rows d x ik), `ps` (rows m x ik), from the `g` planes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_p<T: Float>(dm: &Dims, g: &[T], xj: &[T], xs: Option<&[T]>, q: &mut [T], rows: usize, pv: &mut [T], pj: &mut [T], ps: &mut [T]) {
    let (ni, k1, ik, d, m) = (dm.i, dm.k1, dm.ik(), dm.d, dm.m());
    let es = ROWS * ni;
    let plane = |mm: usize, k: usize, r: usize| (mm * k1 + k) * es + r * ni;
    if dm.second == Second::Trace {
        for r in 0..rows {
            let qr = &mut q[r * ni..(r + 1) * ni];
            qr.fill(<T as Real>::ZERO);
            for a in 0..d {
                let xa = &xj[(r * d + a) * ni..(r * d + a + 1) * ni];
                for i in 0..ni {
                    qr[i] += xa[i] * xa[i];
                }
            }
        }
    }
    for r in 0..rows {
        for k in 0..k1 {
            let col = k * ni;
            let g0 = &g[plane(0, k, r)..plane(0, k, r) + ni];
            pv[r * ik + col..r * ik + col + ni].copy_from_slice(g0);
            if d == 0 {
                continue;
            }
            let g1 = &g[plane(1, k, r)..plane(1, k, r) + ni];
            for a in 0..d {
                let xa = &xj[(r * d + a) * ni..(r * d + a + 1) * ni];
                let out = &mut pj[(r * d + a) * ik + col..(r * d + a) * ik + col + ni];
                for i in 0..ni {
                    out[i] = g1[i] * xa[i];
                }
            }
            if m == 0 {
                continue;
            }
            let g2 = &g[plane(2, k, r)..plane(2, k, r) + ni];
            match dm.second {
                Second::Diag => {
                    for a in 0..d {
                        let xa = &xj[(r * d + a) * ni..(r * d + a + 1) * ni];
                        let out = &mut ps[(r * m + a) * ik + col..(r * m + a) * ik + col + ni];
                        match xs {
                            Some(s) => {
                                let sa = &s[(r * d + a) * ni..(r * d + a + 1) * ni];
                                for i in 0..ni {
                                    out[i] = g2[i] * (xa[i] * xa[i]) + g1[i] * sa[i];
                                }
                            }
                            None => {
                                for i in 0..ni {
                                    out[i] = g2[i] * (xa[i] * xa[i]);
                                }
                            }
                        }
                    }
                }
                Second::Trace => {
                    let qr = &q[r * ni..(r + 1) * ni];
                    let out = &mut ps[r * ik + col..r * ik + col + ni];
                    match xs {
                        Some(s) => {
                            let lap = &s[r * ni..(r + 1) * ni];
                            for i in 0..ni {
                                out[i] = g2[i] * qr[i] + g1[i] * lap[i];
                            }
                        }
                        None => {
                            for i in 0..ni {
                                out[i] = g2[i] * qr[i];
                            }
                        }
                    }
                }
                Second::None => {}
            }
        }
    }
}

/// Orders of `g` a forward pass needs.
fn fwd_orders(dm: &Dims) -> usize {
    if dm.m() > 0 {
        3
    } else if dm.d > 0 {
        2
    } else {
        1
    }
}

/// One block of rows of the forward fill (all ISA variants share this body).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fill_block<T: Float>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    r0: usize,
    rows: usize,
    sc: &mut Scratch<T>,
    pv: &mut [T],
    pj: &mut [T],
    ps: &mut [T],
) {
    let ni = dm.i;
    let orders = fwd_orders(dm);
    basis_block(dm, map, &jets.x[r0 * ni..(r0 + rows) * ni], rows, orders, sc);
    let mut eye = std::mem::take(&mut sc.eye);
    let xj = jets_block(dm, jets, r0, rows, &mut eye);
    let xs = jets.second.map(|s| &s[r0 * dm.m() * ni..(r0 + rows) * dm.m() * ni]);
    write_p(dm, &sc.g, xj, xs, &mut sc.q, rows, pv, pj, ps);
    sc.eye = eye;
}

/// `acc[i] = sum_k hrow[k I + i] g_mm[k][r][i]` (`g` as [`Scratch::g`]: order
/// `mm`, degree `k`, then `es` elements per degree of `ROWS` rows of `ni`);
/// zero for a missing `hrow` (a stream without gradient).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dot_k<T: Float>(acc: &mut [T], hrow: Option<&[T]>, g: &[T], mm: usize, r: usize, k1: usize, es: usize, ni: usize) {
    let acc = &mut acc[..ni];
    acc.fill(<T as Real>::ZERO);
    let Some(hrow) = hrow else { return };
    for k in 0..k1 {
        let off = (mm * k1 + k) * es + r * ni;
        let gk = &g[off..off + ni];
        let hk = &hrow[k * ni..(k + 1) * ni];
        for ((a, &h), &gv) in acc.iter_mut().zip(hk).zip(gk) {
            *a += h * gv;
        }
    }
}

/// `x` with the unit directions of a block of rows, and the gradient pieces
/// of the backward, for one block.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_block<T: Float>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    r0: usize,
    rows: usize,
    sc: &mut Scratch<T>,
    h: BlockH<'_, T>,
    p: Option<(&mut [T], &mut [T], &mut [T])>,
    out: OutGrads<'_, T>,
) {
    let (ni, k1, ik, d, m) = (dm.i, dm.k1, dm.ik(), dm.d, dm.m());
    let es = ROWS * ni;
    let orders = fwd_orders(dm) + 1;
    basis_block(dm, map, &jets.x[r0 * ni..(r0 + rows) * ni], rows, orders, sc);
    let mut eye = std::mem::take(&mut sc.eye);
    let xj = jets_block(dm, jets, r0, rows, &mut eye);
    let xs = jets.second.map(|s| &s[r0 * m * ni..(r0 + rows) * m * ni]);
    if let Some((pv, pj, ps)) = p {
        write_p(dm, &sc.g, xj, xs, &mut sc.q, rows, pv, pj, ps);
    } else if dm.second == Second::Trace {
        // q is needed below
        for r in 0..rows {
            let qr = &mut sc.q[r * ni..(r + 1) * ni];
            qr.fill(<T as Real>::ZERO);
            for a in 0..d {
                let xa = &xj[(r * d + a) * ni..(r * d + a + 1) * ni];
                for i in 0..ni {
                    qr[i] += xa[i] * xa[i];
                }
            }
        }
    }
    let (hv, hj, hs) = h;
    let (mut dx, mut dxj, mut dxs) = out;
    if dx.is_none() && dxj.is_none() && dxs.is_none() {
        // only the coefficient gradient's basis rows were wanted
        sc.eye = eye;
        return;
    }
    let g = &sc.g;
    // dot_k is a plain `inline(always)` function, not a closure: a closure
    // does not inherit the ISA variant's target features (it was compiled
    // for the baseline and called out of line)
    let z = <T as Real>::ZERO;
    let (mut gx, mut a1, mut a2, mut a3, mut gxa) = (vec![z; ni], vec![z; ni], vec![z; ni], vec![z; ni], vec![z; ni]);
    let (mut t1, mut t2, mut t3) = (vec![z; ni], vec![z; ni], vec![z; ni]);
    let two = T::c(2.0);
    for r in 0..rows {
        dot_k(&mut gx, hv.map(|h| &h[r * ik..(r + 1) * ik]), g, 1, r, k1, es, ni);
        if dm.second == Second::Trace {
            let hrow = hs.map(|h| &h[r * ik..(r + 1) * ik]);
            dot_k(&mut t1, hrow, g, 1, r, k1, es, ni);
            dot_k(&mut t2, hrow, g, 2, r, k1, es, ni);
            dot_k(&mut t3, hrow, g, 3, r, k1, es, ni);
            let qr = &sc.q[r * ni..(r + 1) * ni];
            match xs {
                Some(s) => {
                    let lap = &s[r * ni..(r + 1) * ni];
                    for i in 0..ni {
                        gx[i] += t3[i] * qr[i] + t2[i] * lap[i];
                    }
                }
                None => {
                    for i in 0..ni {
                        gx[i] += t3[i] * qr[i];
                    }
                }
            }
            if let Some(o) = dxs.as_deref_mut() {
                o[r * ni..(r + 1) * ni].copy_from_slice(&t1);
            }
        }
        for a in 0..d {
            let xa = &xj[(r * d + a) * ni..(r * d + a + 1) * ni];
            let hrow = hj.map(|h| &h[(r * d + a) * ik..(r * d + a + 1) * ik]);
            dot_k(&mut a1, hrow, g, 1, r, k1, es, ni);
            dot_k(&mut a2, hrow, g, 2, r, k1, es, ni);
            for i in 0..ni {
                gx[i] += a2[i] * xa[i];
            }
            gxa[..ni].copy_from_slice(&a1[..ni]);
            match dm.second {
                Second::Diag => {
                    let hrow = hs.map(|h| &h[(r * m + a) * ik..(r * m + a + 1) * ik]);
                    dot_k(&mut a1, hrow, g, 1, r, k1, es, ni);
                    dot_k(&mut a2, hrow, g, 2, r, k1, es, ni);
                    dot_k(&mut a3, hrow, g, 3, r, k1, es, ni);
                    match xs {
                        Some(s) => {
                            let sa = &s[(r * d + a) * ni..(r * d + a + 1) * ni];
                            for i in 0..ni {
                                gx[i] += a3[i] * (xa[i] * xa[i]) + a2[i] * sa[i];
                            }
                        }
                        None => {
                            for i in 0..ni {
                                gx[i] += a3[i] * (xa[i] * xa[i]);
                            }
                        }
                    }
                    for i in 0..ni {
                        gxa[i] += two * xa[i] * a2[i];
                    }
                    if let Some(o) = dxs.as_deref_mut() {
                        o[(r * d + a) * ni..(r * d + a + 1) * ni].copy_from_slice(&a1);
                    }
                }
                Second::Trace => {
                    for i in 0..ni {
                        gxa[i] += two * xa[i] * t2[i];
                    }
                }
                Second::None => {}
            }
            if let Some(o) = dxj.as_deref_mut() {
                o[(r * d + a) * ni..(r * d + a + 1) * ni].copy_from_slice(&gxa);
            }
        }
        if let Some(o) = dx.as_deref_mut() {
            o[r * ni..(r + 1) * ni].copy_from_slice(&gx);
        }
    }
    sc.eye = eye;
}

/// Runs `$body` compiled for AVX-512, for AVX2 + FMA, or for the baseline,
/// whichever the CPU has (the body's loops are written to vectorise; no
/// floating-point contraction is allowed, so every variant gives the same bits).
macro_rules! dispatch_isa {
    ($name:ident <$T:ident> ($($arg:ident: $ty:ty),*) $body:block) => {
        #[allow(clippy::too_many_arguments)]
        fn $name<$T: Float>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v512<$T: Float>($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v256<$T: Float>($($arg: $ty),*) $body
                if simd::has_avx512() {
                    // SAFETY: the CPU supports AVX-512F/DQ (detected at run time).
                    return unsafe { v512::<$T>($($arg),*) };
                }
                if simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2 and FMA (detected at run time).
                    return unsafe { v256::<$T>($($arg),*) };
                }
            }
            $body
        }
    };
}

dispatch_isa!(fill_block_isa<T>(dm: &Dims, map: &Map<T>, jets: &Jets<T>, r0: usize, rows: usize, sc: &mut Scratch<T>, pv: &mut [T], pj: &mut [T], ps: &mut [T]) {
    fill_block(dm, map, jets, r0, rows, sc, pv, pj, ps)
});

dispatch_isa!(backward_block_isa<T>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    r0: usize,
    rows: usize,
    sc: &mut Scratch<T>,
    h: BlockH<'_, T>,
    p: Option<(&mut [T], &mut [T], &mut [T])>,
    out: OutGrads<'_, T>
) {
    backward_block(dm, map, jets, r0, rows, sc, h, p, out)
});

/// Scratch for the basis matrices of all rows.
struct PMats<T: Float> {
    pv: FreshTensor<T>,
    pj: FreshTensor<T>,
    ps: FreshTensor<T>,
}

impl<T: Float> PMats<T> {
    fn new(dm: &Dims) -> Result<PMats<T>> {
        let (n, ik, d, m) = (dm.n, dm.ik(), dm.d, dm.m());
        Ok(PMats {
            pv: FreshTensor::<T>::uninit(&[n, ik])?,
            pj: FreshTensor::<T>::uninit(&[n, d, ik])?,
            ps: FreshTensor::<T>::uninit(&[n, m, ik])?,
        })
    }
}

/// Rows `r0..r0 + rows` of a row-major buffer of `per_row` elements per row.
///
/// # Safety
/// `p` points to a buffer of at least `(r0 + rows) * per_row` elements, and
/// no other task accesses these rows during the borrow.
unsafe fn rows_mut<'a, T: Copy>(p: SendPtr<T>, r0: usize, rows: usize, per_row: usize) -> &'a mut [T] {
    if per_row == 0 || p.get().is_null() {
        return &mut [];
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { std::slice::from_raw_parts_mut(p.get().add(r0 * per_row), rows * per_row) }
}

fn work_of(dm: &Dims) -> usize {
    dm.n.saturating_mul(dm.ik()).saturating_mul(6 + 4 * (dm.d + dm.m()))
}

/// Runs `f` on the calling thread's GEMM packing buffer sized for `(n, k)`
/// products; a failed reservation is kept in `err` (the first one) and `f`
/// is skipped.
fn with_scratch<T: Float>(n: usize, k: usize, err: &std::sync::Mutex<Option<rbe_core::Error>>, f: impl FnOnce()) {
    match T::reserve_scratch(n, k) {
        Ok(()) => f(),
        Err(e) => keep_err(err, e),
    }
}

/// Records the first error of the tasks of a parallel loop.
fn keep_err(err: &std::sync::Mutex<Option<rbe_core::Error>>, e: rbe_core::Error) {
    if let Ok(mut g) = err.lock() {
        g.get_or_insert(e);
    }
}

/// A task's basis matrices: rows `t0..t0 + rows` of the full ones (`keep`)
/// or the task's own buffers; `[pv, pj, ps]` base pointers of its row `t0`.
struct TaskP<T: Float> {
    own: Option<PMats<T>>,
    base: [SendPtr<T>; 3],
}

impl<T: Float> TaskP<T> {
    /// `full`: the full matrices' base pointers, or `None` for own buffers.
    fn new(dm: &Dims, full: Option<[SendPtr<T>; 3]>, t0: usize, rows: usize) -> Result<TaskP<T>> {
        let (ik, d, m) = (dm.ik(), dm.d, dm.m());
        match full {
            Some([v, j, s]) => {
                // SAFETY: the full matrices hold n, n d and n m rows of ik
                // elements and t0 + rows <= n, so the offsets stay inside them.
                let base = unsafe { [SendPtr(v.get().add(t0 * ik)), SendPtr(j.get().add(t0 * d * ik)), SendPtr(s.get().add(t0 * m * ik))] };
                Ok(TaskP { own: None, base })
            }
            None => {
                let mut own = PMats::new(&Dims { n: rows, ..*dm })?;
                let base = [SendPtr(own.pv.as_mut_ptr()), SendPtr(own.pj.as_mut_ptr()), SendPtr(own.ps.as_mut_ptr())];
                Ok(TaskP { own: Some(own), base })
            }
        }
    }
}

/// The basis matrices of every row (returned with `keep`, else written
/// task by task into the task's own buffers) and, task by task while the
/// task's rows are in cache, the outputs `y = Pv W`, `yj = Pj W`,
/// `ys = Ps W` (`w`: the packed weights, `ik x o`; `out`: `y`, `yj`, `ys`).
fn build_p<T: Float>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    w: &[T],
    out: (&mut [T], &mut [T], &mut [T]),
    keep: bool,
) -> Result<Option<PMats<T>>> {
    let (n, ik, o, d, m) = (dm.n, dm.ik(), dm.o, dm.d, dm.m());
    if out.0.len() != n * o || out.1.len() != n * d * o || out.2.len() != n * m * o || w.len() != ik * o {
        return Err(rbe_core::ext::shape_err!("chebykan: the output buffers do not match the layer call"));
    }
    let mut full = if keep { Some(PMats::new(dm)?) } else { None };
    let full_ptrs = full.as_mut().map(|p| [SendPtr(p.pv.as_mut_ptr()), SendPtr(p.pj.as_mut_ptr()), SendPtr(p.ps.as_mut_ptr())]);
    let (y, yj, ys) = (SendPtr(out.0.as_mut_ptr()), SendPtr(out.1.as_mut_ptr()), SendPtr(out.2.as_mut_ptr()));
    let orders = fwd_orders(dm);
    let err = std::sync::Mutex::new(None);
    let err_ref = &err;
    for_each_index(n.div_ceil(TASK_ROWS), work_of(dm), move |t| {
        let mut sc = Scratch::new(dm, orders);
        let (t0, t1) = (t * TASK_ROWS, ((t + 1) * TASK_ROWS).min(n));
        let tp = match TaskP::new(dm, full_ptrs, t0, t1 - t0) {
            Ok(tp) => tp,
            Err(e) => return keep_err(err_ref, e),
        };
        let [pv, pj, ps] = tp.base;
        for c in t * GROUP..((t + 1) * GROUP).min(n.div_ceil(ROWS)) {
            let (r0, r1) = (c * ROWS, ((c + 1) * ROWS).min(n));
            let rows = r1 - r0;
            // SAFETY: the task's basis rows (of the full matrices, or its own
            // buffers of t1 - t0 rows) hold rows r0 - t0 .. r1 - t0 of ik, d ik
            // and m ik elements, which belong to this task only.
            let (v, j, s) =
                unsafe { (rows_mut(pv, r0 - t0, rows, ik), rows_mut(pj, r0 - t0, rows, d * ik), rows_mut(ps, r0 - t0, rows, m * ik)) };
            fill_block_isa(dm, map, jets, r0, rows, &mut sc, v, j, s);
        }
        let rows = t1 - t0;
        with_scratch::<T>(o, ik, err_ref, || {
            // SAFETY: each product reads the task's basis rows (rows x ik,
            // row-major, written above) and the packed weights (ik x o, checked
            // above), and writes the same rows t0..t1 of its output (rows x o,
            // lengths checked above), which no other task touches.
            unsafe {
                mm(rows, o, ik, y.get().add(t0 * o), o, 1, false, pv.get(), ik, 1, w.as_ptr(), o, 1);
                mm(rows * d, o, ik, yj.get().add(t0 * d * o), o, 1, false, pj.get(), ik, 1, w.as_ptr(), o, 1);
                mm(rows * m, o, ik, ys.get().add(t0 * m * o), o, 1, false, ps.get(), ik, 1, w.as_ptr(), o, 1);
            }
        });
        drop(tp.own);
    });
    if let Some(e) = err.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(full)
}

/// `W[(k I + i) o_n + o] = C[(i o_n + o) k1 + k]`: the coefficients as the
/// `(I (K+1)) x O` matrix the basis rows (columns `k I + i`) multiply.
pub fn pack_weights<T: Copy>(c: &[T], i_n: usize, o_n: usize, k1: usize, w: &mut [T]) {
    for i in 0..i_n {
        for o in 0..o_n {
            for k in 0..k1 {
                w[(k * i_n + i) * o_n + o] = c[(i * o_n + o) * k1 + k];
            }
        }
    }
}

/// The inverse of [`pack_weights`].
pub fn unpack_weights<T: Copy>(w: &[T], i_n: usize, o_n: usize, k1: usize, c: &mut [T]) {
    for i in 0..i_n {
        for o in 0..o_n {
            for k in 0..k1 {
                c[(i * o_n + o) * k1 + k] = w[(k * i_n + i) * o_n + o];
            }
        }
    }
}

/// `dst (m x n) (+)= a (m x k) @ b (k x n)` with explicit strides; nothing
/// when a size is zero (`dst` is then zeroed unless accumulating).
///
/// # Safety
/// The contract of [`GemmElem::gemm`]: the pointers and strides describe
/// valid matrices of the given sizes, `dst` overlaps neither `a` nor `b`, and
/// no other thread touches the elements of `dst` during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn mm<T: Float>(
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
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            for r in 0..m {
                for c in 0..n {
                    // SAFETY: (r, c) is inside the m x n destination (the caller's contract).
                    unsafe { *dst.add(r * drs + c * dcs) = <T as Real>::ZERO };
                }
            }
        }
        return;
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { T::gemm(m, n, k, dst, drs as isize, dcs as isize, acc, a, ars as isize, acs as isize, b, brs as isize, bcs as isize) };
}

/// The basis matrices of a forward pass: `pv` (N x ik), `pj` (N x d x ik)
/// and `ps` (N x m x ik), columns `k I + i`. They depend on the inputs and
/// jets only (not on the coefficients), so the backward can reuse them for
/// the coefficient gradient instead of writing them again.
pub struct Basis<T: Float> {
    pub pv: FreshTensor<T>,
    pub pj: FreshTensor<T>,
    pub ps: FreshTensor<T>,
}

/// Borrowed basis matrices (see [`Basis`]).
pub type BasisRef<'a, T> = (&'a [T], &'a [T], &'a [T]);

/// The forward pass: `y` (N x O), `yj` (N x d x O) and `ys` (N x m x O).
/// `c` is the coefficient tensor (I x O x k1). With `keep` it returns the
/// basis matrices (for [`taylor_backward`]), else `None`.
#[allow(clippy::too_many_arguments)]
pub fn taylor_forward<T: Float>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    c: &[T],
    y: &mut [T],
    yj: &mut [T],
    ys: &mut [T],
    keep: bool,
) -> Result<Option<Basis<T>>> {
    let (ik, o) = (dm.ik(), dm.o);
    let mut w = FreshTensor::<T>::uninit(&[ik, o])?;
    pack_weights(c, dm.i, o, dm.k1, &mut w);
    let p = build_p(dm, map, jets, &w, (y, yj, ys), keep)?;
    Ok(p.map(|p| Basis { pv: p.pv, pj: p.pj, ps: p.ps }))
}

/// Gradients of a Taylor pass (each `None` when not wanted).
pub struct Grads<T: Float> {
    pub x: Option<FreshTensor<T>>,
    pub first: Option<FreshTensor<T>>,
    pub second: Option<FreshTensor<T>>,
    pub coeffs: Option<FreshTensor<T>>,
}

/// Which gradients to compute.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    pub x: bool,
    pub first: bool,
    pub second: bool,
    pub coeffs: bool,
}

/// The first-order backward: given the gradients of `y` (N x O), `yj`
/// (N x d x O) and `ys` (N x m x O) (`None`: zero; the products and dot
/// products of that stream are skipped, as for the value and first-order
/// streams of a network's last layer under a Laplacian loss), the
/// gradients of `x`, of the given jets and of the coefficients. Task by task
/// (fixed partitions of `TASK_ROWS` = 128 rows): the task's rows of
/// `H = G W^T` into a buffer of the task, one pass over its blocks that
/// computes the basis one order up for the input gradients (and writes the
/// task's basis matrices when `basis` is `None`), and the task's partial
/// coefficient gradient `P_t^T G_t`; the partials are summed in task order,
/// so the bits do not depend on the thread count. With `basis` (the
/// forward's matrices, [`taylor_forward`] with `keep`) and no input gradient
/// wanted, there is no pass over the rows.
#[allow(clippy::too_many_arguments)]
pub fn taylor_backward<T: Float>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    c: &[T],
    gy: Option<&[T]>,
    gj: Option<&[T]>,
    gs: Option<&[T]>,
    needs: Needs,
    basis: Option<BasisRef<'_, T>>,
) -> Result<Grads<T>> {
    let (n, i_n, ik, o, k1, d, m) = (dm.n, dm.i, dm.ik(), dm.o, dm.k1, dm.d, dm.m());
    if gy.is_some_and(|g| g.len() != n * o) || gj.is_some_and(|g| g.len() != n * d * o) || gs.is_some_and(|g| g.len() != n * m * o) {
        return Err(rbe_core::ext::shape_err!("chebykan backward: the output gradients do not match the layer call"));
    }
    // a stream without gradient (or without rows) is skipped
    let gj = gj.filter(|_| d > 0);
    let gs = gs.filter(|_| m > 0);
    let wants_first = needs.first && matches!(jets.first, First::Given(_));
    let wants_second = needs.second && jets.second.is_some();
    let wants_inputs = needs.x || wants_first || wants_second;
    // H = G W^T for each stream: rows x ik
    let mut w = FreshTensor::<T>::uninit(&[ik, o])?;
    pack_weights(c, i_n, o, k1, &mut w);
    // H = G W^T for the streams with a gradient, when input gradients are
    // wanted: computed task by task into the task's own buffers (in cache
    // for its row pass), never for all rows at once
    let h_streams = [(gy.filter(|_| wants_inputs), 1), (gj.filter(|_| wants_inputs), d), (gs.filter(|_| wants_inputs), m)];
    let w = &w[..];
    let err = std::sync::Mutex::new(None);
    let err_ref = &err;
    if let Some((bv, bj, bs)) = basis {
        if bv.len() != n * ik || bj.len() != n * d * ik || bs.len() != n * m * ik {
            return Err(rbe_core::ext::shape_err!("chebykan backward: the saved basis matrices do not match the layer call"));
        }
    }
    let build = needs.coeffs && basis.is_none();
    let mut dx = if needs.x { Some(FreshTensor::<T>::uninit(&[n, i_n])?) } else { None };
    let mut dxj = if wants_first { Some(FreshTensor::<T>::uninit(&[n, d, i_n])?) } else { None };
    let mut dxs = if wants_second { Some(FreshTensor::<T>::uninit(&[n, m, i_n])?) } else { None };
    // the coefficient gradient: one partial dW (ik x o) per task, summed in task order
    let tasks = n.div_ceil(TASK_ROWS);
    let mut partial = FreshTensor::<T>::uninit(&[if needs.coeffs { tasks } else { 0 }, ik, o])?;
    if wants_inputs || needs.coeffs {
        let ptr = |t: Option<&mut FreshTensor<T>>| SendPtr(t.map_or(std::ptr::null_mut(), |v| v.as_mut_ptr()));
        let (px, pxj, pxs) = (ptr(dx.as_mut()), ptr(dxj.as_mut()), ptr(dxs.as_mut()));
        let pdw = SendPtr(partial.as_mut_ptr());
        // the kept basis matrices (read only; the pointers are for TaskP)
        let kept = basis.map(|(v, j, s)| [SendPtr(v.as_ptr() as *mut T), SendPtr(j.as_ptr() as *mut T), SendPtr(s.as_ptr() as *mut T)]);
        let orders = fwd_orders(dm) + 1;
        let needs_c = needs.coeffs;
        for_each_index(tasks, work_of(dm).saturating_mul(2), move |t| {
            let mut sc = Scratch::new(dm, orders);
            let (t0, t1) = (t * TASK_ROWS, ((t + 1) * TASK_ROWS).min(n));
            // this task's rows of H, per stream (None: no gradient)
            let mut hb: [Option<FreshTensor<T>>; 3] = [None, None, None];
            for (slot, &(g, per)) in hb.iter_mut().zip(&h_streams) {
                let Some(g) = g else { continue };
                let rows = (t1 - t0) * per;
                let mut h = match FreshTensor::<T>::uninit(&[rows, ik]) {
                    Ok(h) => h,
                    Err(e) => return keep_err(err_ref, e),
                };
                with_scratch::<T>(ik, o, err_ref, || {
                    // SAFETY: the product reads this task's rows of a gradient
                    // (rows x o, contiguous; its length was checked above) and
                    // W^T (W, ik x o, read with swapped strides), and writes the
                    // task's own fresh buffer of rows x ik.
                    unsafe { mm(rows, ik, o, h.as_mut_ptr(), ik, 1, false, g.as_ptr().add(t0 * per * o), o, 1, w.as_ptr(), 1, o) };
                });
                *slot = Some(h);
            }
            let [hv, hj, hs] = &hb;
            // the task's basis rows: the kept ones, or written by the row pass
            let tp = if needs_c {
                match TaskP::new(dm, kept, t0, t1 - t0) {
                    Ok(tp) => Some(tp),
                    Err(e) => return keep_err(err_ref, e),
                }
            } else {
                None
            };
            if wants_inputs || build {
                for cb in t * GROUP..((t + 1) * GROUP).min(n.div_ceil(ROWS)) {
                    let (r0, r1) = (cb * ROWS, ((cb + 1) * ROWS).min(n));
                    let rows = r1 - r0;
                    let (a0, a1) = (r0 - t0, r1 - t0);
                    // SAFETY: every output buffer (when present) holds n rows of
                    // the given width, and the task's own basis buffers hold its
                    // t1 - t0 rows; rows r0..r1 are in bounds and written by this
                    // task only.
                    let (pblk, out) = unsafe {
                        let pblk = match (&tp, build) {
                            (Some(TaskP { base: [pv, pj, ps], .. }), true) => {
                                Some((rows_mut(*pv, a0, rows, ik), rows_mut(*pj, a0, rows, d * ik), rows_mut(*ps, a0, rows, m * ik)))
                            }
                            _ => None,
                        };
                        let out = (
                            (!px.get().is_null()).then(|| rows_mut(px, r0, rows, i_n)),
                            (!pxj.get().is_null()).then(|| rows_mut(pxj, r0, rows, d * i_n)),
                            (!pxs.get().is_null()).then(|| rows_mut(pxs, r0, rows, m * i_n)),
                        );
                        (pblk, out)
                    };
                    let h = (
                        hv.as_ref().map(|h| &h[a0 * ik..a1 * ik]),
                        hj.as_ref().map(|h| &h[a0 * d * ik..a1 * d * ik]),
                        hs.as_ref().map(|h| &h[a0 * m * ik..a1 * m * ik]),
                    );
                    backward_block_isa(dm, map, jets, r0, rows, &mut sc, h, pblk, out);
                }
            }
            let Some(tp) = tp else { return };
            // dW_t = Pv_t^T gy_t + Pj_t^T gj_t + Ps_t^T gs_t over the streams with a gradient
            let rows = t1 - t0;
            let [pv, pj, ps] = tp.base;
            let mut acc = false;
            for (pm, g, per) in [(pv, gy, 1), (pj, gj, d), (ps, gs, m)] {
                let Some(g) = g else { continue };
                let r = rows * per;
                with_scratch::<T>(o, r.max(1), err_ref, || {
                    // SAFETY: P_t^T is the task's basis rows (r x ik, row-major)
                    // read with swapped strides, the gradient's rows t0..t1 are
                    // contiguous r x o (length checked above), and the task's
                    // slot t of the partials (ik x o) is written by this task only.
                    unsafe { mm(ik, o, r, pdw.get().add(t * ik * o), o, 1, acc, pm.get(), 1, ik, g.as_ptr().add(t0 * per * o), o, 1) };
                });
                acc = true;
            }
            if !acc {
                // SAFETY: as above, the task's own slot of ik x o elements.
                unsafe { rows_mut(pdw, t, 1, ik * o) }.fill(<T as Real>::ZERO);
            }
            drop(tp.own);
        });
    }
    if let Some(e) = err.into_inner().ok().flatten() {
        return Err(e);
    }
    let mut out = Grads { x: dx, first: dxj, second: dxs, coeffs: None };
    if needs.coeffs {
        // the partials summed in task order: the same bits for any thread count
        let mut dw = FreshTensor::<T>::zeros(&[ik, o])?;
        for pt in partial.chunks_exact(ik * o) {
            for (a, &b) in dw.iter_mut().zip(pt) {
                *a += b;
            }
        }
        let mut dc = FreshTensor::<T>::uninit(&[i_n, o, k1])?;
        unpack_weights(&dw, i_n, o, k1, &mut dc);
        out.coeffs = Some(dc);
    }
    Ok(out)
}
