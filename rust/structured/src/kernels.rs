//! The RBE kernels: pure loops over slices. No `Tensor`, no autograd; the
//! op wrappers in [`crate::ops`] check the inputs, read the parameters into a
//! [`Snap`], allocate the outputs and record the backward.
//!
//! Each block is `W_b = R C^T + T` where `R` (rows x m) and `C` (cols x m)
//! hold the separable terms (two columns per SIN atom, from
//! `sin(a + b) = sin a cos b + cos a sin b`, and one per residual
//! coefficient) and `T` the TANH (or relaxed) atoms, generated tile by tile.
//! [`linear_fwd_small`] / [`linear_bwd_small`] stream the bases of each block
//! (batches up to [`SMALL_BATCH`] rows); [`linear_fwd_gemm`] /
//! [`linear_bwd_gemm`] lay the factors of all blocks side by side and run a
//! handful of whole-layer GEMMs.
//!
//! Every output element and gradient slot is written by one task of
//! [`for_each_index`] (a block, a block row or a block column) and summed in a
//! fixed order, so the bits do not depend on the thread count. Large per-call
//! buffers come from the tensor pool through [`FreshTensor`] (allocation
//! failures are reported, not aborted on).
use crate::dct::dct_cached;
use crate::layout::Layout;
use rbe_core::ext::simd::{self, sincos_lanes};
use rbe_core::ext::{for_each_index, FreshTensor, GemmElem, Real, Result, SendPtr};

/// Floats the RBE kernels run on.
pub trait RbeFloat: Real + GemmElem {
    fn tanh_slice(x: &[Self], out: &mut [Self]);
}
impl RbeFloat for f32 {
    fn tanh_slice(x: &[f32], out: &mut [f32]) {
        simd::tanh_slice_f32(x, out)
    }
}
impl RbeFloat for f64 {
    fn tanh_slice(x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.tanh();
        }
    }
}

/// The parameters of an RBE matrix, read once into f64 (built by
/// [`crate::ops`] from checked tensors): atoms `(A, phi, px, py)` per atom
/// (`n_blocks * j * 4`), tracks `alpha` (`n_blocks * j`), residual values and
/// indices (`n_blocks * k`).
pub struct Snap {
    pub lay: Layout,
    pub j: usize,
    pub k: usize,
    pub atoms: Vec<f64>,
    pub alpha: Vec<f64>,
    pub res_vals: Vec<f64>,
    pub res_idx: Vec<usize>,
}

impl Snap {
    /// `(A, phi, kx, ky, alpha)` of atom `a` of block `b`.
    pub fn atom(&self, b: usize, a: usize) -> (f64, f64, f64, f64, f64) {
        let o = (b * self.j + a) * 4;
        let kk = 2.0 * self.lay.kappa;
        (self.atoms[o], self.atoms[o + 1], kk * self.atoms[o + 2], kk * self.atoms[o + 3], self.alpha[b * self.j + a])
    }
    /// Atoms of block `b` on the separable (SIN) path and on the tiled path.
    pub fn split(&self, b: usize) -> (Vec<usize>, Vec<usize>) {
        (0..self.j).partition(|&a| self.alpha[b * self.j + a] == 0.0)
    }
}

/// Sequences evaluated side by side by [`sincos_lanes`].
const LANES: usize = simd::SINCOS_LANES;

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
/// The tiled atoms of block `b` alone, into `buf` (rows x cols, contiguous).
fn dense_block<T: RbeFloat>(s: &Snap, b: usize, dense: &[usize], rows: usize, cols: usize, buf: &mut Vec<T>) {
    buf.clear();
    buf.resize(rows * cols, <T as GemmElem>::ZERO);
    add_dense(s, b, dense, rows, cols, buf, cols);
}

/// `dst (m x n) (+)= a (m x k) @ b (k x n)`, all with explicit strides.
///
/// # Safety
/// The contract of [`GemmElem::gemm`]: the pointers and strides describe
/// valid matrices of the given sizes, `dst` overlaps neither `a` nor `b`, and
/// no other thread touches the elements of `dst` during the call.
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

fn work_estimate(s: &Snap, n: usize) -> usize {
    let per_block = (2 * s.j + s.k) * (s.lay.br + s.lay.bc) + s.lay.block_len();
    n.max(1) * per_block * s.lay.n_blocks()
}

/// The `out x in` matrix of the layout into `out` (row-major; its contents
/// on entry are not read).
pub fn generate<T: RbeFloat>(s: &Snap, out: &mut [T]) {
    let lay = s.lay;
    assert_eq!(out.len(), lay.out * lay.inp, "generate: output length");
    let ptr = SendPtr(out.as_mut_ptr());
    for_each_index(lay.n_blocks(), work_estimate(s, 1), |b| {
        let (r0, rows, c0, cols) = lay.block_extent(b);
        let (sep, dense) = s.split(b);
        let f = factors::<T>(s, b, &sep, rows, cols);
        // SAFETY: block b owns rows r0..r0+rows, columns c0..c0+cols of the
        // output (row stride lay.inp), which lie inside it; the factors are
        // private to this task.
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
                // SAFETY: row i of block b (cols elements, inside the output) belongs to this task only.
                let row = unsafe { std::slice::from_raw_parts_mut(ptr.get().add((r0 + i) * lay.inp + c0), cols) };
                for (o, &v) in row.iter_mut().zip(&buf[i * cols..(i + 1) * cols]) {
                    *o += v;
                }
            }
        }
    });
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

/// Parameter gradients in f64, one slot group per block: `atoms`
/// (`n_blocks * j * 4`), `alpha` (the bit-gradient gamma, `n_blocks * j`)
/// and `res` (`n_blocks * k`).
pub struct ParamGrads {
    pub atoms: Vec<f64>,
    pub alpha: Vec<f64>,
    pub res: Vec<f64>,
}

impl ParamGrads {
    fn zeros(s: &Snap) -> ParamGrads {
        let nb = s.lay.n_blocks();
        ParamGrads { atoms: vec![0.0; nb * s.j * 4], alpha: vec![0.0; nb * s.j], res: vec![0.0; nb * s.k] }
    }
}

/// First-order VJP of [`generate`] for a gradient `gd` (out x in, row-major);
/// gamma (`alpha`) of the SIN atoms only when `need_gamma`.
pub fn generate_vjp<T: RbeFloat>(s: &Snap, gd: &[T], need_gamma: bool) -> ParamGrads {
    let lay = s.lay;
    let nb = lay.n_blocks();
    assert_eq!(gd.len(), lay.out * lay.inp, "generate_vjp: gradient length");
    let ParamGrads { atoms: mut datoms, alpha: mut dalpha, res: mut dres } = ParamGrads::zeros(s);
    let (pa, pl, pr) = (SendPtr(datoms.as_mut_ptr()), SendPtr(dalpha.as_mut_ptr()), SendPtr(dres.as_mut_ptr()));
    for_each_index(nb, work_estimate(s, 2), |b| {
        let (r0, rows, c0, cols) = lay.block_extent(b);
        let (sep, dense) = s.split(b);
        let f = factors::<T>(s, b, &sep, rows, cols);
        let gb = &gd[r0 * lay.inp + c0..];
        // SAFETY: block b owns its slots of the gradient buffers (in bounds: b < nb).
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
            // SAFETY: gb holds block b's rows x cols entries with row stride lay.inp;
            // dr, dc and the factors are private buffers of the stated sizes.
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
    ParamGrads { atoms: datoms, alpha: dalpha, res: dres }
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
struct SepAll<T: RbeFloat> {
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
    fn new(s: &Snap, with_base: bool) -> Result<SepAll<T>> {
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
        let mut rcat = scratch::<T>(nbr * lay.br * wr)?;
        let mut ccat = scratch::<T>(nbc * lay.bc * wc)?;
        let mut rbase = scratch::<T>(if with_base { rcat.len() } else { 0 })?;
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
                    // SAFETY: block row r owns its slab of rcat and rbase (rows r*br.., wr each, in bounds).
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
                    // SAFETY: block column c owns its slab of ccat (rows c*bc.., wc each, in bounds).
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
        Ok(SepAll { js, m, slot, rcat, ccat, rbase })
    }

    /// `R_r` of block row `r`: pointer to its `br x nbc m` slab.
    fn r_slab(&self, lay: &Layout, r: usize) -> *const T {
        let (_, nbc) = lay.grid();
        self.rcat[r * lay.br * nbc * self.m..].as_ptr()
    }
    /// `C_c` of block column `c`: pointer to its `bc x nbr m` slab.
    fn c_slab(&self, lay: &Layout, c: usize) -> *const T {
        let (nbr, _) = lay.grid();
        self.ccat[c * lay.bc * nbr * self.m..].as_ptr()
    }
}

/// `x @ [C_0c | C_1c | ...]` for every block column: `(n, nbc, nbr, m)`.
fn stage_cols<T: RbeFloat>(s: &Snap, f: &SepAll<T>, x: &[T], n: usize, ld: usize) -> Result<Scratch<T>> {
    let lay = &s.lay;
    let (nbr, nbc) = lay.grid();
    let wc = nbr * f.m;
    let w = nbc * wc;
    let mut p = scratch::<T>(n * w)?;
    let pp = SendPtr(p.as_mut_ptr());
    for_each_index(nbc, n * lay.inp * wc, |c| {
        let (_, _, c0, cols) = lay.block_extent(c);
        // SAFETY: block column c owns columns c*wc..(c+1)*wc of p (row stride w); x holds n rows of ld
        // elements; the slab of C is read only.
        unsafe { mm(n, wc, cols, pp.get().add(c * wc), w, 1, false, x.as_ptr().add(c0), ld, 1, f.c_slab(lay, c), wc, 1) };
    });
    Ok(p)
}

/// `g @ [R_r0 | R_r1 | ...]` for every block row: `(n, nbr, nbc, m)`.
fn stage_rows<T: RbeFloat>(s: &Snap, f: &SepAll<T>, g: &[T], n: usize, ld: usize) -> Result<Scratch<T>> {
    let lay = &s.lay;
    let (nbr, nbc) = lay.grid();
    let wr = nbc * f.m;
    let w = nbr * wr;
    let mut q = scratch::<T>(n * w)?;
    let qp = SendPtr(q.as_mut_ptr());
    for_each_index(nbr, n * lay.out * wr, |r| {
        let rows = lay.br.min(lay.out - r * lay.br);
        // SAFETY: block row r owns columns r*wr..(r+1)*wr of q (row stride w); g holds n rows of ld
        // elements; the slab of R is read only.
        unsafe { mm(n, wr, rows, qp.get().add(r * wr), w, 1, false, g.as_ptr().add(r * lay.br), ld, 1, f.r_slab(lay, r), wr, 1) };
    });
    Ok(q)
}

/// `(n, a, b, m)` -> `(n, b, a, m)`.
fn swap_blocks<T: RbeFloat>(v: &[T], n: usize, a: usize, b: usize, m: usize) -> Result<Scratch<T>> {
    let mut out = scratch::<T>(v.len())?;
    let w = a * b * m;
    for (row, orow) in v.chunks_exact(w.max(1)).zip(out.chunks_exact_mut(w.max(1))).take(n) {
        for j in 0..b {
            for i in 0..a {
                let o = (j * a + i) * m;
                orow[o..o + m].copy_from_slice(&row[(i * b + j) * m..(i * b + j + 1) * m]);
            }
        }
    }
    Ok(out)
}

/// A buffer from the tensor pool: the per-call buffers of the layer ops are
/// large enough that the system allocator would map and unmap them (and the
/// kernel zero their pages) on every call.
type Scratch<T> = FreshTensor<T>;

/// A pooled buffer of `len` elements whose contents are unspecified: for
/// buffers whose every element that is later read is written first (edge
/// blocks leave rows that nothing reads).
fn scratch<T: RbeFloat>(len: usize) -> Result<Scratch<T>> {
    FreshTensor::uninit(&[len])
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
    for (q, dq) in dres.iter_mut().enumerate().take(s.k) {
        let mut acc = 0.0;
        for i in 0..rows {
            acc += rb(i, 2 * js + q) * dr(i, 2 * js + q);
        }
        *dq += acc;
    }
}

/// The forward's factors, and (when the parameters need gradients) `X C`
/// with its block axes swapped, kept for the backward pass (opaque: what
/// [`linear_fwd_gemm`] returns and [`linear_bwd_gemm`] reads).
pub struct LinCache<T: RbeFloat> {
    f: SepAll<T>,
    p2: Option<Scratch<T>>,
}

/// `y += x W^T` for `n` rows of `x` (`n x in`, row-major) into `y` (`n x out`,
/// zeroed by the caller), by whole-layer GEMMs. `keep_p`: also keep `X C` for
/// the parameter gradients of the backward pass.
pub fn linear_fwd_gemm<T: RbeFloat>(s: &Snap, xd: &[T], n: usize, keep_p: bool, y: &mut [T]) -> Result<LinCache<T>> {
    let lay = s.lay;
    assert!(xd.len() == n * lay.inp && y.len() == n * lay.out, "linear_fwd_gemm: buffer lengths");
    let f = SepAll::<T>::new(s, keep_p)?;
    if n == 0 {
        return Ok(LinCache { f, p2: None });
    }
    let (nbr, nbc) = lay.grid();
    let yp = SendPtr(y.as_mut_ptr());
    let wr = nbc * f.m;
    let p = if f.m > 0 { swap_blocks(&stage_cols(s, &f, xd, n, lay.inp)?, n, nbc, nbr, f.m)? } else { scratch(0)? };
    for_each_index(nbr, work_estimate(s, n), |r| {
        let mut dense_buf: Vec<T> = Vec::new();
        let rows = lay.br.min(lay.out - r * lay.br);
        // SAFETY: block row r owns columns r*br..r*br+rows of y (row stride lay.out); p, the slabs of R,
        // x and the private dense buffer are only read.
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
    Ok(LinCache { f, p2 })
}

#[allow(clippy::too_many_arguments)]
/// Backward of [`linear_fwd_gemm`] for the upstream gradient `gd` (`n x out`):
/// `dx` into `gx` (`n x in`, zeroed by the caller) when given, and the
/// parameter gradients when `need_p` (gamma of the SIN atoms only with
/// `need_gamma`). `cached`: the forward's [`LinCache`], if any.
pub fn linear_bwd_gemm<T: RbeFloat>(
    s: &Snap,
    cached: Option<&LinCache<T>>,
    xd: &[T],
    gd: &[T],
    n: usize,
    gx: Option<&mut [T]>,
    need_p: bool,
    need_gamma: bool,
) -> Result<ParamGrads> {
    let lay = s.lay;
    assert!(xd.len() == n * lay.inp && gd.len() == n * lay.out, "linear_bwd_gemm: buffer lengths");
    let (nb, (nbr, nbc)) = (lay.n_blocks(), lay.grid());
    let ParamGrads { atoms: mut datoms, alpha: mut dalpha, res: mut dres } = ParamGrads::zeros(s);
    if n == 0 {
        return Ok(ParamGrads { atoms: datoms, alpha: dalpha, res: dres });
    }
    let built;
    let f = match cached {
        Some(c) if !need_p || c.f.m == 0 || !c.f.rbase.is_empty() => &c.f,
        _ => {
            built = SepAll::<T>::new(s, need_p)?;
            &built
        }
    };
    let m = f.m;
    let (wr, wc) = (nbc * m, nbr * m);
    // q = G @ R-slabs, (n, nbr, nbc, m); q2 the same with the block axes swapped
    let q2 = if m > 0 { swap_blocks(&stage_rows(s, f, gd, n, lay.out)?, n, nbr, nbc, m)? } else { scratch(0)? };
    if let Some(gx) = gx {
        assert_eq!(gx.len(), n * lay.inp, "linear_bwd_gemm: dx length");
        let gxp = SendPtr(gx.as_mut_ptr());
        for_each_index(nbc, work_estimate(s, n), |c| {
            let mut dense_buf: Vec<T> = Vec::new();
            let (_, _, c0, cols) = lay.block_extent(c);
            // SAFETY: block column c owns columns c0..c0+cols of gx (row stride lay.inp); q2, the slabs
            // of C, the upstream gradient and the private dense buffer are only read.
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
        return Ok(ParamGrads { atoms: datoms, alpha: dalpha, res: dres });
    }
    let (pa, pl, pr) = (SendPtr(datoms.as_mut_ptr()), SendPtr(dalpha.as_mut_ptr()), SendPtr(dres.as_mut_ptr()));
    if m > 0 {
        // dR_r = G_r^T @ (X C)_r  (br x nbc m per block row); dC_c = X_c^T @ (G R)_c  (bc x nbr m per block column)
        let computed;
        let p2 = match cached.and_then(|c| c.p2.as_ref()) {
            Some(p2) => p2,
            None => {
                computed = swap_blocks(&stage_cols(s, f, xd, n, lay.inp)?, n, nbc, nbr, m)?;
                &computed
            }
        };
        let mut dr = scratch::<T>(nbr * lay.br * wr)?;
        let mut dc = scratch::<T>(nbc * lay.bc * wc)?;
        let (drp, dcp) = (SendPtr(dr.as_mut_ptr()), SendPtr(dc.as_mut_ptr()));
        for_each_index(nbr, n * lay.out * wr, |r| {
            let rows = lay.br.min(lay.out - r * lay.br);
            // SAFETY: block row r owns its dr slab (rows x wr at r*br*wr); gd and p2 are only read.
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
            // SAFETY: block column c owns its dc slab (cols x wc at c*bc*wc); xd and q2 are only read.
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
                    // SAFETY: block row r owns these slots (fields A, phi, py) of its blocks; o < nb*j*4.
                    unsafe {
                        *pa.get().add(o) += sa_[c * js + t];
                        *pa.get().add(o + 1) += amp * sh[c * js + t];
                        *pa.get().add(o + 3) += kk * amp * shy[c * js + t];
                    }
                }
                for q in 0..s.k {
                    // SAFETY: block row r owns the residual slots of its blocks; b*k+q < nb*k.
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
                        // SAFETY: block column c owns the px slots of its blocks (this loop runs after the
                        // block-row loop above has finished).
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
                if dense.is_empty() && (!need_gamma || sep.is_empty()) {
                    continue;
                }
                let (r0, rows, c0, cols) = lay.block_extent(b);
                gfull.clear();
                gfull.resize(rows * cols, <T as GemmElem>::ZERO);
                // SAFETY: block column c owns the gradient slots of its blocks (the loops above have
                // finished); gfull is private; gd and xd are only read.
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
    Ok(ParamGrads { atoms: datoms, alpha: dalpha, res: dres })
}

/// Batches up to this size take the streaming path: bases are generated per
/// block and used at once, so no factor matrix is ever written to memory
/// (at such sizes the layer is memory-bound, and the factors would be the
/// largest thing it touches).
pub const SMALL_BATCH: usize = 8;

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

/// `y = x W^T` for `n` rows of `x` (`n x in`, row-major) into `y` (`n x out`,
/// zeroed by the caller), streaming the bases of each block (small batches).
pub fn linear_fwd_small<T: RbeFloat>(s: &Snap, xd: &[T], n: usize, y: &mut [T]) {
    let lay = s.lay;
    assert!(xd.len() == n * lay.inp && y.len() == n * lay.out, "linear_fwd_small: buffer lengths");
    if n == 0 {
        return;
    }
    let (nbr, nbc) = lay.grid();
    let yp = SendPtr(y.as_mut_ptr());
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
            for (i, &a) in acc[nn * lay.br..nn * lay.br + rows].iter().enumerate() {
                // SAFETY: block row r owns columns r0..r0+rows of y; nn < n, so the element is inside y.
                unsafe { *yp.get().add(nn * lay.out + r0 + i) = T::c(a) };
            }
        }
    });
}

/// Backward of [`linear_fwd_small`] for the upstream gradient `gd` (`n x out`):
/// `dx` into `gx` (`n x in`, zeroed by the caller) when given, and the
/// parameter gradients when `need_p` (gamma of the SIN atoms only with `need_gamma`).
pub fn linear_bwd_small<T: RbeFloat>(
    s: &Snap,
    xd: &[T],
    gd: &[T],
    n: usize,
    gx: Option<&mut [T]>,
    need_p: bool,
    need_gamma: bool,
) -> ParamGrads {
    let lay = s.lay;
    assert!(xd.len() == n * lay.inp && gd.len() == n * lay.out, "linear_bwd_small: buffer lengths");
    assert!(gx.as_ref().is_none_or(|g| g.len() == n * lay.inp), "linear_bwd_small: dx length");
    let (nbr, nbc) = lay.grid();
    let ParamGrads { atoms: mut datoms, alpha: mut dalpha, res: mut dres } = ParamGrads::zeros(s);
    if n == 0 {
        return ParamGrads { atoms: datoms, alpha: dalpha, res: dres };
    }
    let need_x = gx.is_some();
    // dereferenced only when need_x
    let gxp = SendPtr(gx.map_or(std::ptr::null_mut(), |g| g.as_mut_ptr()));
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
            // SAFETY: block column c owns the gradient slots of its blocks (b < nb, so in bounds).
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
                for (q, dq) in dq.iter_mut().enumerate() {
                    let idx = s.res_idx[b * s.k + q];
                    let (u, v) = (idx / lay.bc, idx % lay.bc);
                    let gq: f64 = (0..rows).map(|i| gv[i] * drm[u * lay.br + i]).sum();
                    if need_p {
                        *dq += gq * (0..cols).map(|j| xv[j] * dcm[v * lay.bc + j]).sum::<f64>();
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
                // SAFETY: gfull is private (rows x cols); gd (n x out) and xd (n x in) are only read.
                unsafe {
                    mm(rows, cols, n, gfull.as_mut_ptr(), cols, 1, false, gd.as_ptr().add(r0), 1, lay.out, xd.as_ptr().add(c0), lay.inp, 1)
                };
                dense_grads(s, b, sin_for_gamma, &bufs.dense, &gfull, cols, rows, cols, da, dl);
            }
        }
        if need_x {
            for nn in 0..n {
                for j in 0..cols {
                    // SAFETY: need_x, so gxp points at gx (n x in); block column c owns columns c0..c0+cols.
                    unsafe { *gxp.get().add(nn * lay.inp + c0 + j) = T::c(gxacc[nn * lay.bc + j]) };
                }
            }
        }
    });
    ParamGrads { atoms: datoms, alpha: dalpha, res: dres }
}
