//! The pure loops of the ICLV ops: slices in, slices out, float64, no
//! `Tensor` and no autograd. Work is split into fixed blocks of rows
//! ([`BLOCK_ROWS`] rows, or individuals for the panel ops) and every sum runs
//! in a fixed order, so the results have the same bits for any thread count.
//!
//! The ordered-response kernels follow the formulas of
//! `python/rbe/iclv/functional.py` (`composite_ordered_logprob`): with
//! `a = tau_{y-1} - v`, `b = tau_y - v` and `F` the link's CDF,
//! `P = F(b) - F(a)` is formed from the side where it is accurate:
//! `log P = log F(p) + log1mexp(log F(q) - log F(p))` with
//! `(p, q) = (b, a)` when `b <= -a`, else `(-a, -b)`; the lowest category is
//! `log F(b)`, the highest `log F(-a)`; a middle category whose interval is
//! empty (thresholds out of order or equal) is `-inf` with zero derivatives.
//! The derivatives use `rho_a = f(a) / P` and `rho_b = f(b) / P`, formed
//! from the ratios `r(x) = f(x) / F(x)` (no division by a small `P`):
//! `rho_p = r(p) / (1 - e^d)` and `rho_q = r(q) e^d / (1 - e^d)` with
//! `d = log F(q) - log F(p)`. For the probit, a row of a middle category
//! whose every lane allows it takes `P = Phi(p) - Phi(q)` directly (or
//! `log1p(-(Phi(q) + Phi(-p)))` where `P > 1/2`), at no loss of accuracy
//! (see [`probit_direct`] for the conditions and the error bound).
use rbe_core::ext::simd::{
    self, exp_f64, expm1_slice_f64, log1p_slice_f64, log_ndtr_and_ratio_f64, log_ndtr_slice_f64, log_slice_f64, ndtr_slice_f64,
};
use rbe_core::ext::{memory_err, Result, SendPtr};
use std::ops::Range;

/// `pub fn $name(args) = $imp(args)` compiled three times (AVX-512, AVX2 +
/// FMA, baseline) and chosen at run time, so that the core's inlined
/// branch-free `exp_f64` (which uses `mul_add` and `round_ties_even`) and the
/// loops around it vectorise instead of calling the software `fma`.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident = $imp:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v512($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v256($($arg: $ty),*) $(-> $ret)? {
                    $imp($($arg),*)
                }
                if simd::has_avx512() {
                    // SAFETY: the CPU has AVX-512F/DQ, AVX2 and FMA (checked at run time).
                    return unsafe { v512($($arg),*) };
                }
                if simd::has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { v256($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

/// Rows per parallel task of the row-wise kernels.
pub const BLOCK_ROWS: usize = 32;
/// Individuals per parallel task of the panel kernels.
pub const BLOCK_INDIVIDUALS: usize = 32;

/// The link of an ordered or binary model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// `F = Phi`, the standard normal CDF.
    Probit,
    /// `F = 1 / (1 + e^-x)`, the logistic CDF.
    Logit,
}

impl Link {
    /// `"probit"` or `"logit"` to a link.
    pub fn parse(s: &str) -> Option<Link> {
        match s {
            "probit" => Some(Link::Probit),
            "logit" => Some(Link::Logit),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Link::Probit => "probit",
            Link::Logit => "logit",
        }
    }
}

/// A vector of `n` copies of `v`, or an out-of-memory error naming these kernels.
pub fn try_vec<V: Clone>(n: usize, v: V) -> Result<Vec<V>> {
    rbe_core::ext::try_vec(n, v, "iclv kernels")
}

pub use rbe_core::ext::par_try;

/// A row-major `(rows, width)` buffer whose disjoint row ranges parallel
/// tasks write.
#[derive(Clone, Copy)]
pub struct RowsMut {
    ptr: SendPtr<f64>,
    rows: usize,
    width: usize,
}

impl RowsMut {
    /// `buf` must hold `rows * width` elements (checked).
    pub fn new(buf: &mut [f64], width: usize) -> RowsMut {
        let rows = buf.len().checked_div(width).unwrap_or(0);
        RowsMut { ptr: SendPtr(buf.as_mut_ptr()), rows, width }
    }
    /// Rows `r` as a mutable slice (clamped to the buffer).
    ///
    /// # Safety
    /// No two slices of overlapping row ranges may be alive at once, and the
    /// buffer given to [`RowsMut::new`] must outlive the slice.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn rows(&self, r: Range<usize>) -> &mut [f64] {
        let end = r.end.min(self.rows);
        let start = r.start.min(end);
        // SAFETY: the range lies inside the buffer (clamped above); the
        // caller guarantees exclusivity and lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.get().add(start * self.width), (end - start) * self.width) }
    }
}

/// Blocks of `block` rows covering `0..n`.
pub fn n_blocks(n: usize, block: usize) -> usize {
    n.div_ceil(block)
}

fn block_range(i: usize, block: usize, n: usize) -> Range<usize> {
    (i * block).min(n)..((i + 1) * block).min(n)
}

// ---------------------------------------------------------------------- link functions

/// `lf[i] = log F(x[i])` and `r[i] = f(x[i]) / F(x[i])` (`s` is scratch of
/// the same length); without `ratio`, `r` is not written (the probit then
/// skips the ratio's division).
#[inline(always)]
pub fn log_cdf_and_ratio(link: Link, x: &[f64], lf: &mut [f64], r: &mut [f64], s: &mut [f64], ratio: bool) {
    match link {
        Link::Probit if !ratio => log_ndtr_slice_f64(x, lf),
        Link::Probit => log_ndtr_and_ratio_f64(x, lf, r),
        Link::Logit => {
            // log sigma(x) = min(x, 0) - log1p(e^-|x|); f / F = sigma(-x)
            for (t, &v) in s.iter_mut().zip(x) {
                *t = exp_f64(-v.abs());
            }
            log1p_slice_f64(s, lf);
            for (((l, ro), &t), &v) in lf.iter_mut().zip(r.iter_mut()).zip(s.iter()).zip(x) {
                *l = v.min(0.0) - *l;
                *ro = if v >= 0.0 { t / (1.0 + t) } else { 1.0 / (1.0 + t) };
                if v.is_nan() {
                    *l = v;
                    *ro = v;
                }
            }
        }
    }
}

/// `f'(x) / f(x)`: `-x` (probit), `1 - 2 sigma(x)` (logit).
#[inline(always)]
pub fn kappa(link: Link, x: f64) -> f64 {
    match link {
        Link::Probit => -x,
        Link::Logit => {
            let t = exp_f64(-x.abs());
            let k = (1.0 - t) / (1.0 + t);
            if x > 0.0 {
                -k
            } else {
                k
            }
        }
    }
}

/// `out[i] = log(1 - e^d[i])` for `d <= 0` (accurate on both sides of
/// `-log 2`), `-inf` for `d >= 0`; `s1`, `s2` are scratch.
#[inline(always)]
pub fn log1mexp_slice(d: &[f64], out: &mut [f64], s1: &mut [f64], s2: &mut [f64]) {
    const LN2: f64 = std::f64::consts::LN_2;
    expm1_slice_f64(d, s1);
    for ((u, w), &x) in s1.iter_mut().zip(s2.iter_mut()).zip(d) {
        // near 0: log(-expm1(d)); far: log1p(-e^d)
        let e = if x == f64::NEG_INFINITY { 0.0 } else { exp_f64(x) };
        *u = if x > -LN2 { -*u } else { e };
        *w = -e;
    }
    log_slice_f64(s1, out);
    let (near, far) = (out, s1);
    log1p_slice_f64(s2, far);
    for ((o, &f), &x) in near.iter_mut().zip(far.iter()).zip(d) {
        if x >= 0.0 {
            *o = f64::NEG_INFINITY;
        } else if x <= -LN2 || x.is_nan() {
            *o = f;
        }
    }
}

// ---------------------------------------------------------------------- ordered response

/// A checked ordered-response problem: `v` is `(n, r)` row-major, `y[i]` the
/// category of row `i` (in `0..=tau.len()`), `tau` the `C - 1` thresholds.
#[derive(Clone, Copy)]
pub struct Ordered<'a> {
    pub link: Link,
    pub v: &'a [f64],
    pub n: usize,
    pub r: usize,
    pub tau: &'a [f64],
    pub y: &'a [usize],
}

impl Ordered<'_> {
    /// The thresholds around row `i`'s category (`None`: infinite).
    #[inline]
    pub fn bounds(&self, i: usize) -> (Option<f64>, Option<f64>) {
        let y = self.y[i];
        let lo = if y == 0 { None } else { Some(self.tau[y - 1]) };
        let hi = if y >= self.tau.len() { None } else { Some(self.tau[y]) };
        (lo, hi)
    }
    fn work(&self) -> usize {
        self.n.saturating_mul(self.r).saturating_mul(64)
    }
}

/// Scratch of one task.
struct Scratch {
    b: [Vec<f64>; 8],
}

impl Scratch {
    fn new(r: usize) -> Result<Scratch> {
        let v = || try_vec(r, 0.0);
        Ok(Scratch { b: [v()?, v()?, v()?, v()?, v()?, v()?, v()?, v()?] })
    }
}

multiversion! {
    /// One row: `out = log P`, and `(rho_a, rho_b)` when asked.
    fn ordered_row = ordered_row_impl(link: Link, v: &[f64], lo: Option<f64>, hi: Option<f64>, out: &mut [f64], rho: Option<(&mut [f64], &mut [f64])>, s: &mut Scratch);
}

#[inline(always)]
fn ordered_row_impl(
    link: Link,
    v: &[f64],
    lo: Option<f64>,
    hi: Option<f64>,
    out: &mut [f64],
    mut rho: Option<(&mut [f64], &mut [f64])>,
    s: &mut Scratch,
) {
    let r = v.len();
    let want = rho.is_some();
    let [p, q, rp, lq, rq, d, s1, s2] = &mut s.b;
    let (p, q, rp, lq, rq, d, s1, s2) =
        (&mut p[..r], &mut q[..r], &mut rp[..r], &mut lq[..r], &mut rq[..r], &mut d[..r], &mut s1[..r], &mut s2[..r]);
    match (lo, hi) {
        (None, None) => {
            out.fill(0.0);
            if let Some((ra, rb)) = rho {
                ra.fill(0.0);
                rb.fill(0.0);
            }
        }
        (None, Some(h)) => {
            for (x, &vi) in p.iter_mut().zip(v) {
                *x = h - vi;
            }
            log_cdf_and_ratio(link, p, out, rp, s1, want);
            if let Some((ra, rb)) = rho {
                ra.fill(0.0);
                rb.copy_from_slice(rp);
            }
        }
        (Some(l), None) => {
            for (x, &vi) in p.iter_mut().zip(v) {
                *x = vi - l;
            }
            log_cdf_and_ratio(link, p, out, rp, s1, want);
            if let Some((ra, rb)) = rho {
                ra.copy_from_slice(rp);
                rb.fill(0.0);
            }
        }
        (Some(l), Some(h)) => {
            if h <= l {
                // an empty interval: P = 0 (thresholds out of order or equal)
                out.fill(f64::NEG_INFINITY);
                if let Some((ra, rb)) = rho {
                    ra.fill(0.0);
                    rb.fill(0.0);
                }
                return;
            }
            for ((pi, qi), &vi) in p.iter_mut().zip(q.iter_mut()).zip(v) {
                let (a, b) = (l - vi, h - vi);
                let left = b <= -a;
                *pi = if left { b } else { -a };
                *qi = if left { a } else { -b };
            }
            if link == Link::Probit
                && probit_direct(v, l, h, p, q, out, rho.as_mut().map(|(a, b)| (&mut **a, &mut **b)), rp, rq, d, s1, s2, lq)
            {
                return;
            }
            // out holds log F(p) until the tail is added
            log_cdf_and_ratio(link, p, out, rp, s1, want);
            log_cdf_and_ratio(link, q, lq, rq, s1, want);
            for ((di, &a), &b) in d.iter_mut().zip(lq.iter()).zip(out.iter()) {
                *di = a - b;
            }
            // lq is free again: the tail log1mexp(d) goes there
            log1mexp_slice(d, lq, s1, s2);
            for (o, &t) in out.iter_mut().zip(lq.iter()) {
                *o += t;
            }
            if let Some((ra, rb)) = rho {
                // branch-free (both exponentials on every lane, then selects),
                // so that the loop vectorises
                let (ra, rb, out, v) = (&mut ra[..r], &mut rb[..r], &out[..r], &v[..r]);
                for i in 0..r {
                    let left = h - v[i] <= v[i] - l;
                    let t = lq[i];
                    let zero = out[i] == f64::NEG_INFINITY || out[i].is_nan();
                    let ep = exp_f64(-t);
                    let eq = exp_f64(d[i] - t);
                    let rhp = if zero { 0.0 } else { rp[i] * ep };
                    let rhq = if zero { 0.0 } else { rq[i] * eq };
                    rb[i] = if left { rhp } else { rhq };
                    ra[i] = if left { rhq } else { rhp };
                }
            }
        }
    }
}

/// `P` below which [`probit_direct`] leaves a row to the log-space formula
/// (so that `P`, `Phi(p)`, `Phi(q)` and `phi` stay normal numbers).
const DIRECT_MIN_P: f64 = 1e-280;

/// A middle probit category from `P = Phi(p) - Phi(q)` directly (`ndtr`
/// and `log` instead of two `log Phi`, a `log1mexp` and two exponentials),
/// used only when every lane of the row is in one of two cases where this
/// is as accurate as the log-space formula; returns false, writing nothing
/// but scratch, otherwise (`u = 2^-53`, `Phi` to 2 ulp):
///
/// - `Phi(q) <= P <= 1/2`: the difference carries a relative error of at
///   most `2u (Phi(p) + Phi(q)) / P + u/2 <= 2u (1 + 2 Phi(q) / P) + u/2
///   <= 6.5u`, the absolute error it puts on `log P`; with `|log P| >= ln 2`
///   that is at most `9.4u` relative (+ the log's ulp);
/// - `P > 1/2`: `log P = log1p(-s)` with `s = Phi(q) + Phi(-p)` (the two
///   tail masses, `Phi(a)` and `Phi(-b)`: a sum of positives, at most
///   `2.5u` relative); `|d log1p(-s)/ds| = 1/(1-s) < 2` and `|log1p(-s)| >= s`,
///   so `log P` is within `5u` relative (+ the log1p's ulp).
///
/// Where `Phi(q)` is large against `P <= 1/2` (narrow intervals) the
/// difference loses digits, and the row keeps the log-space formula, as it
/// does for `P < DIRECT_MIN_P`. `rho_a = phi(a) / P`, `rho_b = phi(b) / P`
/// (`P` the difference, within `6.5u` relative in both cases) with `x^2` in
/// double-double.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn probit_direct(
    v: &[f64],
    l: f64,
    h: f64,
    p: &[f64],
    q: &[f64],
    out: &mut [f64],
    rho: Option<(&mut [f64], &mut [f64])>,
    fp: &mut [f64],
    fq: &mut [f64],
    dp: &mut [f64],
    s1: &mut [f64],
    s2: &mut [f64],
    s3: &mut [f64],
) -> bool {
    let r = v.len();
    let (p, q, out, fp, fq, dp) = (&p[..r], &q[..r], &mut out[..r], &mut fp[..r], &mut fq[..r], &mut dp[..r]);
    ndtr_slice_f64(p, fp);
    ndtr_slice_f64(q, fq);
    let (mut ok, mut big) = (1u8, 0u8);
    for ((di, &a), &b) in dp.iter_mut().zip(fp.iter()).zip(fq.iter()) {
        let pr = a - b;
        *di = pr;
        ok &= u8::from(pr >= DIRECT_MIN_P && (pr > 0.5 || b <= pr));
        big |= u8::from(pr > 0.5);
    }
    if ok == 0 {
        return false;
    }
    log_slice_f64(dp, out);
    if big != 0 {
        // the lanes with P > 1/2: log1p(-(Phi(q) + Phi(-p)))
        let (np, tp, lp) = (&mut s1[..r], &mut s2[..r], &mut s3[..r]);
        for (x, &pi) in np.iter_mut().zip(p) {
            *x = -pi;
        }
        ndtr_slice_f64(np, tp);
        for (t, &b) in tp.iter_mut().zip(fq.iter()) {
            *t = -(b + *t);
        }
        log1p_slice_f64(tp, lp);
        for ((o, &pr), &t) in out.iter_mut().zip(dp.iter()).zip(lp.iter()) {
            *o = if pr > 0.5 { t } else { *o };
        }
    }
    if let Some((ra, rb)) = rho {
        const C: f64 = 0.398_942_280_401_432_7; // 1 / sqrt(2 pi)
        let pdf = |x: f64| {
            let hi = x * x;
            let lo = x.mul_add(x, -hi);
            C * exp_f64(-0.5 * hi) * (-0.5f64).mul_add(lo, 1.0)
        };
        let (ra, rb) = (&mut ra[..r], &mut rb[..r]);
        for i in 0..r {
            let inv = 1.0 / dp[i];
            ra[i] = pdf(l - v[i]) * inv;
            rb[i] = pdf(h - v[i]) * inv;
        }
    }
    true
}

/// `out = log P(y | v)` (`(n, r)`), and `rho = (rho_a, rho_b)` when asked.
pub fn ordered_forward(pb: &Ordered, out: &mut [f64], rho: Option<(&mut [f64], &mut [f64])>) -> Result<()> {
    let (n, r) = (pb.n, pb.r);
    if n == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(out, r);
    let rh = rho.map(|(a, b)| (RowsMut::new(a, r), RowsMut::new(b, r)));
    par_try(n_blocks(n, BLOCK_ROWS), pb.work(), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, n);
        let mut s = Scratch::new(r)?;
        for i in rows {
            let (lo, hi) = pb.bounds(i);
            // SAFETY: task bi is the only one writing the rows of block bi.
            let orow = unsafe { o.rows(i..i + 1) };
            // SAFETY: as above.
            let rr = rh.as_ref().map(|(a, b)| unsafe { (a.rows(i..i + 1), b.rows(i..i + 1)) });
            ordered_row(pb.link, &pb.v[i * r..(i + 1) * r], lo, hi, orow, rr, &mut s);
        }
        Ok(())
    })
}

/// Threshold gradients from per-row sums: `d tau[y-1] += lo[i]`, `d tau[y] += hi[i]`
/// (the infinite outer thresholds take nothing), summed in row order.
pub fn scatter_tau(y: &[usize], c1: usize, lo: &[f64], hi: &[f64]) -> Result<Vec<f64>> {
    let mut g = try_vec(c1, 0.0)?;
    for ((&k, &l), &h) in y.iter().zip(lo).zip(hi) {
        if k > 0 {
            g[k - 1] += l;
        }
        if k < c1 {
            g[k] += h;
        }
    }
    Ok(g)
}

/// The first-order backward of [`ordered_forward`] from saved `rho`: `gv = g (rho_a - rho_b)`,
/// per-row sums `-sum g rho_a` (lower threshold) and `sum g rho_b` (upper).
#[allow(clippy::too_many_arguments)]
pub fn ordered_backward(
    n: usize,
    r: usize,
    ra: &[f64],
    rb: &[f64],
    g: &[f64],
    gv: &mut [f64],
    row_lo: &mut [f64],
    row_hi: &mut [f64],
) -> Result<()> {
    if n == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(gv, r);
    let (lo, hi) = (RowsMut::new(row_lo, 1), RowsMut::new(row_hi, 1));
    par_try(n_blocks(n, BLOCK_ROWS), n.saturating_mul(r).saturating_mul(4), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, n);
        // SAFETY: task bi is the only one writing the rows of block bi.
        let (gvb, lob, hib) = unsafe { (o.rows(rows.clone()), lo.rows(rows.clone()), hi.rows(rows.clone())) };
        for (k, i) in rows.enumerate() {
            let (mut sl, mut sh) = (0.0, 0.0);
            for j in 0..r {
                let e = i * r + j;
                let (a, b, gg) = (ra[e], rb[e], g[e]);
                gvb[k * r + j] = gg * (a - b);
                sl -= gg * a;
                sh += gg * b;
            }
            lob[k] = sl;
            hib[k] = sh;
        }
        Ok(())
    })
}

/// `sigma(x)` and `sigma(-x)` from one exponential.
#[inline(always)]
fn sigmoid_pair(x: f64) -> (f64, f64) {
    let t = exp_f64(-x.abs());
    let (big, small) = (1.0 / (1.0 + t), t / (1.0 + t));
    if x >= 0.0 {
        (big, small)
    } else {
        (small, big)
    }
}

/// `(d rho_a / d a, d rho_b / d b)` at one element (`ra`, `rb` the rhos):
/// `rho_a (k(a) + rho_a)` and `rho_b (k(b) - rho_b)` with `k = f'/f`. For
/// the logit these differences cancel in the tails (`k(b) - rho_b` is `-sigma(b)`
/// for the lowest category, about `1e-14` when `rho_b ~ 1`), so they are
/// formed without subtraction: `k(b) - rho_b = -(sigma(b) + sigma(-b) rho_a / sigma(-a))`
/// and `k(a) + rho_a = sigma(-a) + sigma(a) rho_b / sigma(b)`. A zero rho
/// gives zero (an infinite threshold or an empty interval).
#[inline(always)]
fn drho(link: Link, a: f64, b: f64, ra: f64, rb: f64) -> (f64, f64) {
    match link {
        Link::Probit => {
            let daa = if ra != 0.0 { ra * (-a + ra) } else { 0.0 };
            let dbb = if rb != 0.0 { rb * (-b - rb) } else { 0.0 };
            (daa, dbb)
        }
        Link::Logit => {
            let (sa, sma) = sigmoid_pair(a);
            let (sb, smb) = sigmoid_pair(b);
            let daa = if ra == 0.0 {
                0.0
            } else if sb > 0.0 {
                ra * (sma + sa * rb / sb)
            } else {
                ra * (kappa(link, a) + ra)
            };
            let dbb = if rb == 0.0 {
                0.0
            } else if sma > 0.0 {
                -rb * (sb + smb * ra / sma)
            } else {
                rb * (kappa(link, b) - rb)
            };
            (daa, dbb)
        }
    }
}

/// The upstream of the gradient node of [`ordered_forward`] (outputs
/// `gv = g (rho_a - rho_b)` and the threshold sums): with upstream `hv`
/// (`(n, r)`, None: zero) and `ht` (`C - 1`), `A = hv - ht[y-1]`,
/// `B = ht[y] - hv` (0 for an infinite threshold), writes `dg = rho_a A + rho_b B`
/// and the upstream of the `rho` backward, `ga = g A`, `gb = g B`.
#[allow(clippy::too_many_arguments)]
pub fn ordered_grad_upstream(
    pb: &Ordered,
    ra: &[f64],
    rb: &[f64],
    g: &[f64],
    hv: Option<&[f64]>,
    ht: Option<&[f64]>,
    dg: &mut [f64],
    ga: &mut [f64],
    gb: &mut [f64],
) -> Result<()> {
    let (n, r) = (pb.n, pb.r);
    if n == 0 || r == 0 {
        return Ok(());
    }
    let c1 = pb.tau.len();
    let (od, oa, ob) = (RowsMut::new(dg, r), RowsMut::new(ga, r), RowsMut::new(gb, r));
    par_try(n_blocks(n, BLOCK_ROWS), n.saturating_mul(r).saturating_mul(4), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, n);
        // SAFETY: task bi is the only one writing the rows of block bi.
        let (db, ab, bb) = unsafe { (od.rows(rows.clone()), oa.rows(rows.clone()), ob.rows(rows.clone())) };
        for (k, i) in rows.enumerate() {
            let y = pb.y[i];
            let htl = match ht {
                Some(t) if y > 0 => t[y - 1],
                _ => 0.0,
            };
            let hth = match ht {
                Some(t) if y < c1 => t[y],
                _ => 0.0,
            };
            for j in 0..r {
                let e = i * r + j;
                let h = hv.map_or(0.0, |x| x[e]);
                let (a, b) = (h - htl, hth - h);
                db[k * r + j] = ra[e] * a + rb[e] * b;
                ab[k * r + j] = g[e] * a;
                bb[k * r + j] = g[e] * b;
            }
        }
        Ok(())
    })
}

multiversion! {
    /// One row of [`ordered_rho_backward`]: writes `gv`, returns the sums of `d a` and `d b`.
    fn rho_bwd_row = rho_bwd_row_impl(link: Link, l: f64, h: f64, v: &[f64], ra: &[f64], rb: &[f64], ga: Option<&[f64]>, gb: Option<&[f64]>, gv: &mut [f64]) -> (f64, f64);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn rho_bwd_row_impl(
    link: Link,
    l: f64,
    h: f64,
    v: &[f64],
    ra: &[f64],
    rb: &[f64],
    ga: Option<&[f64]>,
    gb: Option<&[f64]>,
    gv: &mut [f64],
) -> (f64, f64) {
    let (mut sl, mut sh) = (0.0, 0.0);
    for j in 0..v.len() {
        let (x, y) = (ra[j], rb[j]);
        let (gae, gbe) = (ga.map_or(0.0, |g| g[j]), gb.map_or(0.0, |g| g[j]));
        let vj = v[j];
        let (daa, dbb) = drho(link, l - vj, h - vj, x, y);
        let xy = x * y;
        let da = gae * daa + gbe * xy;
        let db = gbe * dbb - gae * xy;
        gv[j] = -(da + db);
        sl += da;
        sh += db;
    }
    (sl, sh)
}

/// The backward of `(rho_a, rho_b)` (the second derivatives of `log P`):
/// with upstream `ga`, `gb` (None: zero),
/// `d a = ga (rho_a k(a) + rho_a^2) + gb rho_a rho_b`,
/// `d b = -ga rho_a rho_b + gb (rho_b k(b) - rho_b^2)` with `k = f'/f`;
/// `gv = -(d a + d b)`, per-row sums of `d a` (lower threshold) and `d b` (upper).
/// An infinite threshold contributes nothing (its `rho` is 0).
#[allow(clippy::too_many_arguments)]
pub fn ordered_rho_backward(
    pb: &Ordered,
    ra: &[f64],
    rb: &[f64],
    ga: Option<&[f64]>,
    gb: Option<&[f64]>,
    gv: &mut [f64],
    row_lo: &mut [f64],
    row_hi: &mut [f64],
) -> Result<()> {
    let (n, r, link) = (pb.n, pb.r, pb.link);
    if n == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(gv, r);
    let (lo, hi) = (RowsMut::new(row_lo, 1), RowsMut::new(row_hi, 1));
    par_try(n_blocks(n, BLOCK_ROWS), n.saturating_mul(r).saturating_mul(16), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, n);
        // SAFETY: task bi is the only one writing the rows of block bi.
        let (gvb, lob, hib) = unsafe { (o.rows(rows.clone()), lo.rows(rows.clone()), hi.rows(rows.clone())) };
        for (k, i) in rows.enumerate() {
            let (l, h) = pb.bounds(i);
            let e = i * r..(i + 1) * r;
            let (sl, sh) = rho_bwd_row(
                link,
                l.unwrap_or(0.0),
                h.unwrap_or(0.0),
                &pb.v[e.clone()],
                &ra[e.clone()],
                &rb[e.clone()],
                ga.map(|g| &g[e.clone()]),
                gb.map(|g| &g[e.clone()]),
                &mut gvb[k * r..(k + 1) * r],
            );
            lob[k] = sl;
            hib[k] = sh;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------- MNL

/// A checked MNL problem: `J` utilities, each `(m, r)` or `(m, 1)` (`wide[j]`
/// says which), `avail` `(m, J)` or None, `choice[i]` in `0..J`.
pub struct Mnl<'a> {
    pub u: Vec<&'a [f64]>,
    pub wide: Vec<bool>,
    pub m: usize,
    pub r: usize,
    pub avail: Option<&'a [bool]>,
    pub choice: &'a [usize],
}

impl Mnl<'_> {
    #[inline]
    fn avail(&self, i: usize, j: usize) -> bool {
        self.avail.is_none_or(|a| a[i * self.u.len() + j])
    }
    fn work(&self) -> usize {
        self.m.saturating_mul(self.r).saturating_mul(self.u.len()).saturating_mul(16)
    }
}

multiversion! {
    /// One MNL row: `out = (u_c - mx) - log sum exp(u_j - mx)`, leaving the
    /// shift in `mx` and the log of the sum in `e` (each utility is `r`
    /// values or one broadcast value).
    fn mnl_row = mnl_row_impl(u: &[&[f64]], av: &[bool], c: usize, out: &mut [f64], mx: &mut [f64], s: &mut [f64], e: &mut [f64]);
}

#[inline(always)]
fn mnl_row_impl(u: &[&[f64]], av: &[bool], c: usize, out: &mut [f64], mx: &mut [f64], s: &mut [f64], e: &mut [f64]) {
    mx.fill(f64::NEG_INFINITY);
    for (uj, &a) in u.iter().zip(av) {
        if !a {
            continue;
        }
        if uj.len() == 1 {
            let x = uj[0];
            for m in mx.iter_mut() {
                *m = m.max(x);
            }
        } else {
            for (m, &x) in mx.iter_mut().zip(uj.iter()) {
                *m = m.max(x);
            }
        }
    }
    s.fill(0.0);
    for (uj, &a) in u.iter().zip(av) {
        if !a {
            continue;
        }
        if uj.len() == 1 {
            let x = uj[0];
            for (t, &m) in s.iter_mut().zip(mx.iter()) {
                *t += exp_f64(x - m);
            }
        } else {
            for ((t, &m), &x) in s.iter_mut().zip(mx.iter()).zip(uj.iter()) {
                *t += exp_f64(x - m);
            }
        }
    }
    log_slice_f64(s, e);
    let uc = u[c];
    for k in 0..out.len() {
        let x = if uc.len() == 1 { uc[0] } else { uc[k] };
        out[k] = (x - mx[k]) - e[k];
    }
}

multiversion! {
    /// One row of one alternative's probabilities `exp((u_j - mx) - e)` (0 if unavailable).
    fn mnl_prob_row = mnl_prob_row_impl(uj: &[f64], a: bool, mx: &[f64], e: &[f64], out: &mut [f64]);
}

#[inline(always)]
fn mnl_prob_row_impl(uj: &[f64], a: bool, mx: &[f64], e: &[f64], out: &mut [f64]) {
    if !a {
        out.fill(0.0);
    } else if uj.len() == 1 {
        let x = uj[0];
        for ((o, &m), &l) in out.iter_mut().zip(mx).zip(e) {
            *o = exp_f64((x - m) - l);
        }
    } else {
        for (((o, &m), &l), &x) in out.iter_mut().zip(mx).zip(e).zip(uj) {
            *o = exp_f64((x - m) - l);
        }
    }
}

/// `out[i, k] = (u_c - mx) - log sum_{j avail} exp(u_j - mx)` and, when asked,
/// the probabilities `probs[j]` (`(m, r)` each; 0 where unavailable).
pub fn mnl_forward(pb: &Mnl, out: &mut [f64], probs: Option<Vec<&mut [f64]>>) -> Result<()> {
    let (m, r, nj) = (pb.m, pb.r, pb.u.len());
    if m == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(out, r);
    let ps: Option<Vec<RowsMut>> = probs.map(|p| p.into_iter().map(|b| RowsMut::new(b, r)).collect());
    par_try(n_blocks(m, BLOCK_ROWS), pb.work(), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, m);
        let mut mx = try_vec(r, 0.0)?;
        let mut s = try_vec(r, 0.0)?;
        let mut e = try_vec(r, 0.0)?;
        let mut rows_u: Vec<&[f64]> = Vec::with_capacity(nj);
        let mut av: Vec<bool> = Vec::with_capacity(nj);
        for i in rows {
            rows_u.clear();
            av.clear();
            for j in 0..nj {
                rows_u.push(if pb.wide[j] { &pb.u[j][i * r..(i + 1) * r] } else { &pb.u[j][i..i + 1] });
                av.push(pb.avail(i, j));
            }
            // SAFETY: task bi is the only one writing the rows of block bi.
            let orow = unsafe { o.rows(i..i + 1) };
            mnl_row(&rows_u, &av, pb.choice[i], orow, &mut mx, &mut s, &mut e);
            if let Some(ps) = &ps {
                for (j, pj) in ps.iter().enumerate() {
                    // SAFETY: as above, row i of every probability buffer.
                    let prow = unsafe { pj.rows(i..i + 1) };
                    mnl_prob_row(rows_u[j], av[j], &mx, &e, prow);
                }
            }
        }
        Ok(())
    })
}

/// The backward of the probabilities `P_j = softmax_j`: with upstream `g[j]`
/// (None: zero), `d u_k = P_k (g_k - sum_j g_j P_j)`, each `(m, r)`.
pub fn mnl_probs_backward(m: usize, r: usize, p: &[&[f64]], g: &[Option<&[f64]>], out: Vec<&mut [f64]>) -> Result<()> {
    if m == 0 || r == 0 {
        return Ok(());
    }
    let outs: Vec<RowsMut> = out.into_iter().map(|b| RowsMut::new(b, r)).collect();
    let nj = p.len();
    par_try(n_blocks(m, BLOCK_ROWS), m.saturating_mul(r).saturating_mul(nj).saturating_mul(4), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, m);
        let mut dot = try_vec(r, 0.0)?;
        for i in rows {
            dot.fill(0.0);
            for j in 0..nj {
                if let Some(gj) = g[j] {
                    for k in 0..r {
                        dot[k] += gj[i * r + k] * p[j][i * r + k];
                    }
                }
            }
            for (j, oj) in outs.iter().enumerate() {
                // SAFETY: task bi is the only one writing the rows of block bi.
                let orow = unsafe { oj.rows(i..i + 1) };
                for k in 0..r {
                    let e = i * r + k;
                    orow[k] = p[j][e] * (g[j].map_or(0.0, |gj| gj[e]) - dot[k]);
                }
            }
        }
        Ok(())
    })
}

/// The backward of the MNL gradient `gu_j = g (1[c = j] - P_j)` (the node
/// the exact Hessian's passes run through): with upstream `h[j]` (`(m, r)`
/// when `h_wide[j]`, else `(m, 1)`; None: zero) and `S = sum_j h_j P_j`,
/// `dg = h_c - S` and `du_j = -g P_j (h_j - S)`, each `(m, r)`.
#[allow(clippy::too_many_arguments)]
pub fn mnl_grad_backward(
    m: usize,
    r: usize,
    p: &[&[f64]],
    g: &[f64],
    h: &[Option<&[f64]>],
    h_wide: &[bool],
    choice: &[usize],
    dg: &mut [f64],
    du: Vec<&mut [f64]>,
) -> Result<()> {
    if m == 0 || r == 0 {
        return Ok(());
    }
    let nj = p.len();
    let og = RowsMut::new(dg, r);
    let ou: Vec<RowsMut> = du.into_iter().map(|b| RowsMut::new(b, r)).collect();
    par_try(n_blocks(m, BLOCK_ROWS), m.saturating_mul(r).saturating_mul(nj).saturating_mul(6), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, m);
        let mut s = try_vec(r, 0.0)?;
        let mut hj = try_vec(r, 0.0)?;
        for i in rows {
            let e = i * r..(i + 1) * r;
            let fill = |j: usize, buf: &mut [f64]| match h[j] {
                None => buf.fill(0.0),
                Some(x) if h_wide[j] => buf.copy_from_slice(&x[e.clone()]),
                Some(x) => buf.fill(x[i]),
            };
            s.fill(0.0);
            for (j, pj) in p.iter().enumerate() {
                fill(j, &mut hj);
                for ((a, &b), &c) in s.iter_mut().zip(hj.iter()).zip(&pj[e.clone()]) {
                    *a += b * c;
                }
            }
            // SAFETY: task bi is the only one writing the rows of block bi.
            let grow = unsafe { og.rows(i..i + 1) };
            fill(choice[i], &mut hj);
            for ((o, &a), &b) in grow.iter_mut().zip(hj.iter()).zip(s.iter()) {
                *o = a - b;
            }
            for (j, oj) in ou.iter().enumerate() {
                fill(j, &mut hj);
                // SAFETY: as above, row i of every output buffer.
                let urow = unsafe { oj.rows(i..i + 1) };
                for k in 0..r {
                    urow[k] = -g[i * r + k] * p[j][i * r + k] * (hj[k] - s[k]);
                }
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------- panel sums

/// `out[n, :] = sum_{i in off[n]..off[n+1]} x[i, :]` (rows summed in order).
pub fn panel_sum(x: &[f64], r: usize, off: &[usize], out: &mut [f64]) -> Result<()> {
    let n = off.len().saturating_sub(1);
    if n == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(out, r);
    par_try(n_blocks(n, BLOCK_INDIVIDUALS), x.len().saturating_mul(2), |bi| {
        for ind in block_range(bi, BLOCK_INDIVIDUALS, n) {
            // SAFETY: task bi is the only one writing the rows of its individuals.
            let orow = unsafe { o.rows(ind..ind + 1) };
            orow.fill(0.0);
            for i in off[ind]..off[ind + 1] {
                for (a, &b) in orow.iter_mut().zip(&x[i * r..(i + 1) * r]) {
                    *a += b;
                }
            }
        }
        Ok(())
    })
}

/// `out[i, :] = g[n, :]` for each row `i` of individual `n` (the adjoint of [`panel_sum`]).
pub fn expand_rows(g: &[f64], r: usize, off: &[usize], out: &mut [f64]) -> Result<()> {
    let n = off.len().saturating_sub(1);
    if n == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(out, r);
    par_try(n_blocks(n, BLOCK_INDIVIDUALS), out_len(off, r).saturating_mul(2), |bi| {
        for ind in block_range(bi, BLOCK_INDIVIDUALS, n) {
            // SAFETY: the rows of individual `ind` belong to this task only
            // (the offsets are increasing).
            let orows = unsafe { o.rows(off[ind]..off[ind + 1]) };
            let src = &g[ind * r..(ind + 1) * r];
            for row in orows.chunks_exact_mut(r) {
                row.copy_from_slice(src);
            }
        }
        Ok(())
    })
}

fn out_len(off: &[usize], r: usize) -> usize {
    off.last().copied().unwrap_or(0).saturating_mul(r)
}

// ---------------------------------------------------------------------- log-mean-exp

/// `x + lw` of rows `rows` (or the rows themselves when `lw` is None).
fn shifted<'a>(x: &'a [f64], r: usize, rows: &Range<usize>, lw: Option<&[f64]>, buf: &'a mut Vec<f64>) -> &'a [f64] {
    let xs = &x[rows.start * r..rows.end * r];
    match lw {
        None => xs,
        Some(w) => {
            buf.clear();
            for row in xs.chunks_exact(r) {
                buf.extend(row.iter().zip(w).map(|(a, b)| a + b));
            }
            buf
        }
    }
}

/// `out[n] = log sum_k exp(x[n, k] + c_k)` with `c_k = lw[k]` or `-log r`
/// (the core's vectorised log-sum-exp of runs: the shift, the row maximum,
/// is subtracted first; lanes are summed in a fixed order). `ms` and `lss`
/// receive the shift and the log of the shifted sum, from which the
/// backward forms the weights `exp((x + lw - ms) - lss)` at full precision.
pub fn log_mean_exp(x: &[f64], n: usize, r: usize, lw: Option<&[f64]>, out: &mut [f64], ms: &mut [f64], lss: &mut [f64]) -> Result<()> {
    if n == 0 || r == 0 {
        return Ok(());
    }
    let c0 = if lw.is_some() { 0.0 } else { -(r as f64).ln() };
    let (o, m, l) = (RowsMut::new(out, 1), RowsMut::new(ms, 1), RowsMut::new(lss, 1));
    par_try(n_blocks(n, BLOCK_ROWS), n.saturating_mul(r).saturating_mul(8), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, n);
        let mut buf = Vec::new();
        if lw.is_some() {
            buf.try_reserve_exact(rows.len() * r)
                .map_err(|_| memory_err!("out of memory: log_mean_exp needs a scratch buffer of {} elements", rows.len() * r))?;
        }
        let xs = shifted(x, r, &rows, lw, &mut buf);
        // SAFETY: task bi is the only one writing the rows of block bi.
        let (ob, mb, lb) = unsafe { (o.rows(rows.clone()), m.rows(rows.clone()), l.rows(rows.clone())) };
        simd::lse_runs_f64(xs, r, ob, mb, lb);
        for v in ob.iter_mut() {
            *v += c0;
        }
        Ok(())
    })
}

/// The backward of [`log_mean_exp`]: `gx[n, k] = g[n] exp((x[n, k] + lw_k - ms[n]) - lss[n])`
/// (0 on rows whose output is not finite).
#[allow(clippy::too_many_arguments)]
pub fn log_mean_exp_backward(
    x: &[f64],
    n: usize,
    r: usize,
    lw: Option<&[f64]>,
    ms: &[f64],
    lss: &[f64],
    g: &[f64],
    gx: &mut [f64],
) -> Result<()> {
    if n == 0 || r == 0 {
        return Ok(());
    }
    let o = RowsMut::new(gx, r);
    par_try(n_blocks(n, BLOCK_ROWS), n.saturating_mul(r).saturating_mul(4), |bi| {
        let rows = block_range(bi, BLOCK_ROWS, n);
        let mut buf = Vec::new();
        if lw.is_some() {
            buf.try_reserve_exact(rows.len() * r)
                .map_err(|_| memory_err!("out of memory: log_mean_exp needs a scratch buffer of {} elements", rows.len() * r))?;
        }
        let xs = shifted(x, r, &rows, lw, &mut buf);
        // SAFETY: task bi is the only one writing the rows of block bi.
        let ob = unsafe { o.rows(rows.clone()) };
        let k = rows.len();
        simd::lse_backward_f64(xs, &ms[rows.clone()], &lss[rows.clone()], &g[rows.clone()], k, r, 1, ob);
        for (j, i) in rows.enumerate() {
            if !(ms[i] + lss[i]).is_finite() {
                ob[j * r..(j + 1) * r].fill(0.0);
            }
        }
        Ok(())
    })
}
