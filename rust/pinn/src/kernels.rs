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
use rbe_core::ext::{for_each_index, FreshTensor, GemmElem, Real, Result, SendPtr};

/// Floats the kernels run on (f32 and f64).
pub trait Float: Real + GemmElem {}
impl Float for f32 {}
impl Float for f64 {}

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
        for e in c * CHUNK..((c + 1) * CHUNK).min(n) {
            basis_derivs(z[e], k1, orders, &mut t);
            // SAFETY: `out` has `n * k1` elements (checked by the caller) and
            // element `e` is visited by this task only, so the `k1` elements
            // written here are in bounds and written by no other task.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(e * k1), k1) };
            row.copy_from_slice(&t[order * k1..orders * k1]);
        }
    });
}

/// `W[(i k1 + k) o_n + o] = C[(i o_n + o) k1 + k]`.
pub fn pack_weights<T: Copy>(c: &[T], i_n: usize, o_n: usize, k1: usize, w: &mut [T]) {
    for i in 0..i_n {
        for o in 0..o_n {
            for k in 0..k1 {
                w[(i * k1 + k) * o_n + o] = c[(i * o_n + o) * k1 + k];
            }
        }
    }
}

/// The inverse of [`pack_weights`].
pub fn unpack_weights<T: Copy>(w: &[T], i_n: usize, o_n: usize, k1: usize, c: &mut [T]) {
    for i in 0..i_n {
        for o in 0..o_n {
            for k in 0..k1 {
                c[(i * o_n + o) * k1 + k] = w[(i * k1 + k) * o_n + o];
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

/// Rows of points per task.
const ROWS: usize = 32;

/// The inputs of a Taylor pass: `x` (N x I), the first-order jets, and the
/// second-order ones (`N x d x I` for [`Second::Diag`], `N x I` for
/// [`Second::Trace`]; `None` means zero).
#[derive(Clone, Copy)]
pub struct Jets<'a, T> {
    pub x: &'a [T],
    pub first: First<'a, T>,
    pub second: Option<&'a [T]>,
}

impl<T: Real> Jets<'_, T> {
    /// `x_a[n, i]`.
    #[inline]
    fn xa(&self, dm: &Dims, n: usize, a: usize, i: usize) -> T {
        match self.first {
            First::None => <T as Real>::ZERO,
            First::Seed => {
                if a == i {
                    <T as Real>::ONE
                } else {
                    <T as Real>::ZERO
                }
            }
            First::Given(j) => j[(n * dm.d + a) * dm.i + i],
        }
    }
    /// The second-order input of row `s` (a direction for Diag, 0 for Trace) at `[n, i]`.
    #[inline]
    fn xs(&self, dm: &Dims, n: usize, s: usize, i: usize) -> T {
        match self.second {
            None => <T as Real>::ZERO,
            Some(v) => v[(n * dm.m() + s) * dm.i + i],
        }
    }
}

/// The basis matrices of rows `r0..r1`: `pv` (rows x IK), `pj` (rows d x IK),
/// `ps` (rows m x IK), each starting at the block's first row.
#[allow(clippy::too_many_arguments)]
fn fill_p<T: Float>(dm: &Dims, map: &Map<T>, jets: &Jets<T>, r0: usize, r1: usize, pv: &mut [T], pj: &mut [T], ps: &mut [T]) {
    let (k1, ik, d, m) = (dm.k1, dm.ik(), dm.d, dm.m());
    let orders = if m > 0 {
        3
    } else if d > 0 {
        2
    } else {
        1
    };
    let mut t = vec![<T as Real>::ZERO; 4 * k1];
    let mut g = vec![<T as Real>::ZERO; 4 * k1];
    for n in r0..r1 {
        let r = n - r0;
        for i in 0..dm.i {
            g_derivs(map, jets.x[n * dm.i + i], i, k1, orders, &mut t, &mut g);
            let col = i * k1;
            pv[r * ik + col..r * ik + col + k1].copy_from_slice(&g[..k1]);
            let mut q = <T as Real>::ZERO;
            for a in 0..d {
                let xa = jets.xa(dm, n, a, i);
                q += xa * xa;
                let row = &mut pj[(r * d + a) * ik + col..(r * d + a) * ik + col + k1];
                for k in 0..k1 {
                    row[k] = g[k1 + k] * xa;
                }
                if dm.second == Second::Diag {
                    let xaa = jets.xs(dm, n, a, i);
                    let row = &mut ps[(r * m + a) * ik + col..(r * m + a) * ik + col + k1];
                    for k in 0..k1 {
                        row[k] = g[2 * k1 + k] * (xa * xa) + g[k1 + k] * xaa;
                    }
                }
            }
            if dm.second == Second::Trace {
                let lap = jets.xs(dm, n, 0, i);
                let row = &mut ps[r * ik + col..r * ik + col + k1];
                for k in 0..k1 {
                    row[k] = g[2 * k1 + k] * q + g[k1 + k] * lap;
                }
            }
        }
    }
}

/// Scratch for the basis matrices of all rows.
struct PMats<T: Float> {
    pv: FreshTensor<T>,
    pj: FreshTensor<T>,
    ps: FreshTensor<T>,
}

fn build_p<T: Float>(dm: &Dims, map: &Map<T>, jets: &Jets<T>) -> Result<PMats<T>> {
    let ik = dm.ik();
    let (n, d, m) = (dm.n, dm.d, dm.m());
    let mut p = PMats {
        pv: FreshTensor::<T>::uninit(&[n, ik])?,
        pj: FreshTensor::<T>::uninit(&[n, d, ik])?,
        ps: FreshTensor::<T>::uninit(&[n, m, ik])?,
    };
    let (pv, pj, ps) = (SendPtr(p.pv.as_mut_ptr()), SendPtr(p.pj.as_mut_ptr()), SendPtr(p.ps.as_mut_ptr()));
    let work = n.saturating_mul(ik).saturating_mul(4 + 3 * (d + m));
    for_each_index(n.div_ceil(ROWS), work, move |c| {
        let (r0, r1) = (c * ROWS, ((c + 1) * ROWS).min(n));
        let rows = r1 - r0;
        // SAFETY: the three buffers hold n, n d and n m rows of ik elements;
        // this task's rows r0..r1 are in bounds and belong to this task only.
        let (v, j, s) = unsafe {
            (
                std::slice::from_raw_parts_mut(pv.get().add(r0 * ik), rows * ik),
                std::slice::from_raw_parts_mut(pj.get().add(r0 * d * ik), rows * d * ik),
                std::slice::from_raw_parts_mut(ps.get().add(r0 * m * ik), rows * m * ik),
            )
        };
        fill_p(dm, map, jets, r0, r1, v, j, s);
    });
    Ok(p)
}

/// The forward pass: `y` (N x O), `yj` (N x d x O) and `ys` (N x m x O).
/// `c` is the coefficient tensor (I x O x k1).
pub fn taylor_forward<T: Float>(dm: &Dims, map: &Map<T>, jets: &Jets<T>, c: &[T], y: &mut [T], yj: &mut [T], ys: &mut [T]) -> Result<()> {
    let (n, ik, o, d, m) = (dm.n, dm.ik(), dm.o, dm.d, dm.m());
    let mut w = FreshTensor::<T>::uninit(&[ik, o])?;
    pack_weights(c, dm.i, o, dm.k1, &mut w);
    T::reserve_scratch(o, ik)?;
    let p = build_p(dm, map, jets)?;
    // SAFETY: each product reads a full basis matrix (rows x ik, row-major)
    // and the packed weights (ik x o) and writes a distinct output of rows x o.
    unsafe {
        mm(n, o, ik, y.as_mut_ptr(), o, 1, false, p.pv.as_ptr(), ik, 1, w.as_ptr(), o, 1);
        mm(n * d, o, ik, yj.as_mut_ptr(), o, 1, false, p.pj.as_ptr(), ik, 1, w.as_ptr(), o, 1);
        mm(n * m, o, ik, ys.as_mut_ptr(), o, 1, false, p.ps.as_ptr(), ik, 1, w.as_ptr(), o, 1);
    }
    Ok(())
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
/// (N x d x O) and `ys` (N x m x O), the gradients of `x`, of the given
/// jets and of the coefficients.
#[allow(clippy::too_many_arguments)]
pub fn taylor_backward<T: Float>(
    dm: &Dims,
    map: &Map<T>,
    jets: &Jets<T>,
    c: &[T],
    gy: &[T],
    gj: &[T],
    gs: &[T],
    needs: Needs,
) -> Result<Grads<T>> {
    let (n, i_n, ik, o, k1, d, m) = (dm.n, dm.i, dm.ik(), dm.o, dm.k1, dm.d, dm.m());
    let mut out = Grads { x: None, first: None, second: None, coeffs: None };
    if needs.coeffs {
        let p = build_p(dm, map, jets)?;
        let mut dw = FreshTensor::<T>::uninit(&[ik, o])?;
        T::reserve_scratch(o, n.max(1))?;
        T::reserve_scratch(o, (n * d).max(1))?;
        T::reserve_scratch(o, (n * m).max(1))?;
        // SAFETY: dW (ik x o) = Pv^T gy + Pj^T gj + Ps^T gs; each P^T is the
        // row-major basis matrix read with swapped strides, the gradients are
        // contiguous rows x o, and dW is a fresh buffer read by none of them.
        unsafe {
            mm(ik, o, n, dw.as_mut_ptr(), o, 1, false, p.pv.as_ptr(), 1, ik, gy.as_ptr(), o, 1);
            mm(ik, o, n * d, dw.as_mut_ptr(), o, 1, true, p.pj.as_ptr(), 1, ik, gj.as_ptr(), o, 1);
            mm(ik, o, n * m, dw.as_mut_ptr(), o, 1, true, p.ps.as_ptr(), 1, ik, gs.as_ptr(), o, 1);
        }
        let mut dc = FreshTensor::<T>::uninit(&[i_n, o, k1])?;
        unpack_weights(&dw, i_n, o, k1, &mut dc);
        out.coeffs = Some(dc);
    }
    let wants_first = needs.first && matches!(jets.first, First::Given(_));
    let wants_second = needs.second && jets.second.is_some();
    if !(needs.x || wants_first || wants_second) {
        return Ok(out);
    }
    // H = G W^T for each stream: rows x ik
    let mut w = FreshTensor::<T>::uninit(&[ik, o])?;
    pack_weights(c, i_n, o, k1, &mut w);
    T::reserve_scratch(ik, o)?;
    let mut hv = FreshTensor::<T>::uninit(&[n, ik])?;
    let mut hj = FreshTensor::<T>::uninit(&[n, d, ik])?;
    let mut hs = FreshTensor::<T>::uninit(&[n, m, ik])?;
    // SAFETY: each product reads a gradient (rows x o, contiguous) and W^T
    // (W read with swapped strides) and writes a distinct fresh buffer.
    unsafe {
        mm(n, ik, o, hv.as_mut_ptr(), ik, 1, false, gy.as_ptr(), o, 1, w.as_ptr(), 1, o);
        mm(n * d, ik, o, hj.as_mut_ptr(), ik, 1, false, gj.as_ptr(), o, 1, w.as_ptr(), 1, o);
        mm(n * m, ik, o, hs.as_mut_ptr(), ik, 1, false, gs.as_ptr(), o, 1, w.as_ptr(), 1, o);
    }
    let mut dx = if needs.x { Some(FreshTensor::<T>::uninit(&[n, i_n])?) } else { None };
    let mut dxj = if wants_first { Some(FreshTensor::<T>::uninit(&[n, d, i_n])?) } else { None };
    let mut dxs = if wants_second { Some(FreshTensor::<T>::uninit(&[n, m, i_n])?) } else { None };
    let ptr = |t: &mut Option<FreshTensor<T>>| SendPtr(t.as_mut().map_or(std::ptr::null_mut(), |v| v.as_mut_ptr()));
    let (px, pj, ps) = (ptr(&mut dx), ptr(&mut dxj), ptr(&mut dxs));
    let (hv, hj, hs) = (&hv[..], &hj[..], &hs[..]);
    let orders = if m > 0 {
        4
    } else if d > 0 {
        3
    } else {
        2
    };
    let work = n.saturating_mul(ik).saturating_mul(4 + 4 * (d + m));
    for_each_index(n.div_ceil(ROWS), work, move |cb| {
        let mut t = vec![<T as Real>::ZERO; 4 * k1];
        let mut g = vec![<T as Real>::ZERO; 4 * k1];
        for nn in cb * ROWS..((cb + 1) * ROWS).min(n) {
            for i in 0..i_n {
                g_derivs(map, jets.x[nn * i_n + i], i, k1, orders, &mut t, &mut g);
                let (g1, g2, g3) = (&g[k1..2 * k1], &g[2 * k1..3 * k1], &g[3 * k1..]);
                let col = i * k1;
                let dot = |h: &[T], gg: &[T]| -> T {
                    let mut s = <T as Real>::ZERO;
                    for k in 0..k1 {
                        s += h[col + k] * gg[k];
                    }
                    s
                };
                let hv_row = &hv[nn * ik..(nn + 1) * ik];
                let mut gx = dot(hv_row, g1);
                let mut q = <T as Real>::ZERO;
                for a in 0..d {
                    let xa = jets.xa(dm, nn, a, i);
                    q += xa * xa;
                    let hj_row = &hj[(nn * d + a) * ik..(nn * d + a + 1) * ik];
                    gx += dot(hj_row, g2) * xa;
                    let mut gxa = dot(hj_row, g1);
                    if dm.second == Second::Diag {
                        let hs_row = &hs[(nn * m + a) * ik..(nn * m + a + 1) * ik];
                        let xaa = jets.xs(dm, nn, a, i);
                        let (s1, s2, s3) = (dot(hs_row, g1), dot(hs_row, g2), dot(hs_row, g3));
                        gx += s3 * (xa * xa) + s2 * xaa;
                        gxa += T::c(2.0) * xa * s2;
                        if !ps.get().is_null() {
                            // SAFETY: dxs has n d x i_n elements; [nn, a, i] is in
                            // bounds and written only by the task owning row nn.
                            unsafe { *ps.get().add((nn * d + a) * i_n + i) = s1 };
                        }
                    }
                    if dm.second == Second::Trace {
                        let hs_row = &hs[nn * ik..(nn + 1) * ik];
                        gxa += T::c(2.0) * xa * dot(hs_row, g2);
                    }
                    if !pj.get().is_null() {
                        // SAFETY: dxj has n d x i_n elements; [nn, a, i] is in
                        // bounds and written only by the task owning row nn.
                        unsafe { *pj.get().add((nn * d + a) * i_n + i) = gxa };
                    }
                }
                if dm.second == Second::Trace {
                    let hs_row = &hs[nn * ik..(nn + 1) * ik];
                    let lap = jets.xs(dm, nn, 0, i);
                    let (s1, s2, s3) = (dot(hs_row, g1), dot(hs_row, g2), dot(hs_row, g3));
                    gx += s3 * q + s2 * lap;
                    if !ps.get().is_null() {
                        // SAFETY: dxs has n x i_n elements here (m = 1); [nn, i] is
                        // in bounds and written only by the task owning row nn.
                        unsafe { *ps.get().add(nn * i_n + i) = s1 };
                    }
                }
                if !px.get().is_null() {
                    // SAFETY: dx has n x i_n elements; [nn, i] is in bounds and
                    // written only by the task owning row nn.
                    unsafe { *px.get().add(nn * i_n + i) = gx };
                }
            }
        }
    });
    out.x = dx;
    out.first = dxj;
    out.second = dxs;
    Ok(out)
}
