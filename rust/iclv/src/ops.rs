//! The differentiable ICLV ops: checks first (float64 values, int64 codes
//! and offsets, shapes; an error names the argument and nothing is
//! computed), outputs through `FreshTensor`, and the recorded backward.
//!
//! Each op has a fused first-order backward. Under `create_graph` the
//! backward is written with other fused ops of this crate, each closed under
//! differentiation, so every order works and a Hessian pass costs about one
//! gradient:
//! - [`ordered_logprob`] backs off to [`ordered_rho`] (`rho_a = f(a)/P`,
//!   `rho_b = f(b)/P`, a two-output node built from the values the forward
//!   already computed); the backward of `ordered_rho` is the closed-form
//!   second derivative, and its own `create_graph` backward is written with
//!   plain ops on its outputs;
//! - [`mnl_logprob`] backs off to [`mnl_probs`] (the choice probabilities,
//!   a `J`-output node), whose backward is `P_k (g_k - sum_j g_j P_j)`;
//! - [`panel_sum`] and [`expand_rows`] are each other's adjoint;
//! - [`log_mean_exp`]'s `create_graph` backward is `g exp(x + c - out)` with
//!   plain ops (its output carries the history).
use crate::kernels::{self, Link, Mnl, Ordered};
use rbe_core::ext::ops::binary::{add, add_scalar, mul, mul_scalar, sub, where_};
use rbe_core::ext::ops::index::{index_add, index_select};
use rbe_core::ext::ops::reduce::sum;
use rbe_core::ext::ops::shape::{cat, reshape, slice, unsqueeze};
use rbe_core::ext::ops::unary::{exp, isfinite, neg, tanh};
use rbe_core::ext::{
    attach, attach_multi, contiguous_as, dtype_err, fmt_shape, index_err, is_grad_enabled, needs_grad, run_backward, shape_err, value_err,
    BwCtx, DType, FreshTensor, Result, SavedTensor, Tensor,
};
use std::sync::Arc;

fn f64_arg(op: &str, what: &str, t: &Tensor) -> Result<Tensor> {
    if t.dtype() != DType::F64 {
        return Err(dtype_err!("{op}: {what} must be a float64 tensor, got {}", t.dtype().name()));
    }
    contiguous_as(t, DType::F64)
}

fn i64_vec(op: &str, what: &str, t: &Tensor, n: usize) -> Result<Vec<i64>> {
    if t.dtype() != DType::I64 {
        return Err(dtype_err!("{op}: {what} must be an int64 tensor, got {}", t.dtype().name()));
    }
    if t.shape() != [n] {
        return Err(shape_err!("{op}: {what} must have shape ({n},), got {}", fmt_shape(t.shape())));
    }
    Ok(t.contiguous().to_vec::<i64>())
}

/// The rows and the row width of `x` (`(n, ...)`).
fn rows_of(op: &str, what: &str, x: &Tensor) -> Result<(usize, usize)> {
    if x.ndim() == 0 {
        return Err(shape_err!("{op}: {what} must have at least one dimension (rows first), got a scalar"));
    }
    let n = x.shape()[0];
    let r = x.shape()[1..].iter().product::<usize>();
    Ok((n, r))
}

/// A float64 tensor from a vector.
fn tensor_of(v: &[f64], shape: &[usize]) -> Result<Tensor> {
    FreshTensor::<f64>::build(shape, |o| o.copy_from_slice(v))
}

fn scalar0() -> Result<Tensor> {
    Tensor::zeros(&[1], DType::F64)
}

// ====================================================================== ordered response

/// Facts of a checked ordered call.
#[derive(Clone)]
struct OrdMeta {
    link: Link,
    n: usize,
    r: usize,
    c1: usize,
    shape: Vec<usize>,
    y: Arc<Vec<usize>>,
    /// the codes as int64 tensors: the lower (`y`) and upper (`y + 1`)
    /// positions in `[stand-in, tau..., stand-in]`
    lo_idx: Tensor,
    hi_idx: Tensor,
}

impl OrdMeta {
    fn problem<'a>(&'a self, v: &'a [f64], tau: &'a [f64]) -> Ordered<'a> {
        Ordered { link: self.link, v, n: self.n, r: self.r, tau, y: &self.y }
    }
}

fn ord_check(op: &str, v: &Tensor, tau: &Tensor, y: &Tensor, link: Link) -> Result<(OrdMeta, Tensor, Tensor)> {
    let vc = f64_arg(op, "the index v", v)?;
    let tc = f64_arg(op, "the thresholds tau", tau)?;
    if tau.ndim() != 1 || tau.shape()[0] == 0 {
        return Err(shape_err!("{op}: the thresholds tau must be a 1-d tensor of C - 1 >= 1 values, got shape {}", fmt_shape(tau.shape())));
    }
    let c1 = tau.shape()[0];
    let (n, r) = rows_of(op, "the index v", v)?;
    let yv = i64_vec(op, "the categories y", y, n)?;
    if let Some((i, &k)) = yv.iter().enumerate().find(|(_, &k)| k < 0 || k as u64 > c1 as u64) {
        return Err(index_err!("{op}: the category y[{i}] = {k} is outside 0..={c1} ({} categories for {c1} thresholds)", c1 + 1));
    }
    let yu: Vec<usize> = yv.iter().map(|&k| k as usize).collect();
    let lo_idx = Tensor::from_vec(yv.clone(), &[n])?;
    let hi_idx = Tensor::from_vec(yv.iter().map(|&k| k + 1).collect::<Vec<i64>>(), &[n])?;
    Ok((OrdMeta { link, n, r, c1, shape: v.shape().to_vec(), y: Arc::new(yu), lo_idx, hi_idx }, vc, tc))
}

/// The threshold gradient from per-row sums (differentiable):
/// `[0, tau..., 0]`-positions `y` take `lo`, `y + 1` take `hi`; the stand-ins are dropped.
fn tau_grad_composite(m: &OrdMeta, lo_rows: &Tensor, hi_rows: &Tensor) -> Result<Tensor> {
    let z = Tensor::zeros(&[m.c1 + 2], DType::F64)?;
    let g = index_add(&z, 0, &m.lo_idx, lo_rows)?;
    let g = index_add(&g, 0, &m.hi_idx, hi_rows)?;
    slice(&g, 0, 1, m.c1, 1)
}

/// The thresholds around each row as `(n, 1)` tensors (stand-in 0 for the infinite ones).
fn bounds_composite(m: &OrdMeta, tau: &Tensor) -> Result<(Tensor, Tensor)> {
    let ext = cat(&[scalar0()?, tau.clone(), scalar0()?], 0)?;
    let lo = reshape(&index_select(&ext, 0, &m.lo_idx)?, &[m.n, 1])?;
    let hi = reshape(&index_select(&ext, 0, &m.hi_idx)?, &[m.n, 1])?;
    Ok((lo, hi))
}

fn kappa_composite(link: Link, x: &Tensor) -> Result<Tensor> {
    match link {
        Link::Probit => neg(x),
        Link::Logit => neg(&tanh(&mul_scalar(x, 0.5)?)?),
    }
}

fn row_sums(x: &Tensor) -> Result<Tensor> {
    sum(x, Some(&[1]), false)
}

/// `log P(y | v)` of an ordered probit or logit: `v` the latent index
/// `(n, ...)`, `tau` the `C - 1` thresholds (1-d, float64), `y` the int64
/// categories `(n,)` in `0..C`. Returns the shape of `v`.
pub fn ordered_logprob(v: &Tensor, tau: &Tensor, y: &Tensor, link: Link) -> Result<Tensor> {
    let op = "ordered_logprob";
    let (m, vc, tc) = ord_check(op, v, tau, y, link)?;
    let want = needs_grad(&[v, tau]);
    let mut out = FreshTensor::<f64>::uninit(&m.shape)?;
    let pb = m.problem(vc.data::<f64>(), tc.data::<f64>());
    if !want {
        kernels::ordered_forward(&pb, &mut out, None)?;
        return Ok(out.into_tensor());
    }
    let mut ra = FreshTensor::<f64>::uninit(&[m.n, m.r])?;
    let mut rb = FreshTensor::<f64>::uninit(&[m.n, m.r])?;
    kernels::ordered_forward(&pb, &mut out, Some((&mut ra, &mut rb)))?;
    let out = out.into_tensor();
    {
        let rho = Arc::new((ra.into_tensor(), rb.into_tensor()));
        let (sv, st) = (SavedTensor::input(v), SavedTensor::input(tau));
        attach(&out, "IclvOrderedLogprobBackward0", &[v, tau], true, move |ctx, g| {
            let g = contiguous_as(g, DType::F64)?;
            if is_grad_enabled() {
                let (v, tau) = (sv.get(ctx)?, st.get(ctx)?);
                let (gv, gt) = ordered_grad_node(&m, &g, &v, &tau, &rho)?;
                return Ok(vec![ctx.needs(0).then_some(gv), ctx.needs(1).then_some(gt)]);
            }
            let (gv, gt) = ordered_first_grads(&m, g.data::<f64>(), &rho)?;
            Ok(vec![ctx.needs(0).then_some(gv), ctx.needs(1).then_some(gt)])
        });
    }
    Ok(out)
}

/// The first-order gradient `(gv, gtau)` of [`ordered_logprob`] from the
/// kept `rho` (fused).
fn ordered_first_grads(m: &OrdMeta, g: &[f64], rho: &(Tensor, Tensor)) -> Result<(Tensor, Tensor)> {
    let mut gv = FreshTensor::<f64>::uninit(&m.shape)?;
    let (mut lo, mut hi) = (kernels::try_vec(m.n, 0.0)?, kernels::try_vec(m.n, 0.0)?);
    kernels::ordered_backward(m.n, m.r, rho.0.data::<f64>(), rho.1.data::<f64>(), g, &mut gv, &mut lo, &mut hi)?;
    Ok((gv.into_tensor(), tensor_of(&kernels::scatter_tau(&m.y, m.c1, &lo, &hi)?, &[m.c1])?))
}

/// The gradient of [`ordered_logprob`] as a node of its own (inputs `g`,
/// `v`, `tau`; outputs `gv`, `gtau`), built under `create_graph`: the exact
/// Hessian's passes run through its fused backward (the upstream
/// [`kernels::ordered_grad_upstream`] then the closed-form second
/// derivatives [`kernels::ordered_rho_backward`]), one pass over the
/// elements instead of a dozen plain ops. Under `create_graph` again its
/// backward goes through the `rho` node and plain ops.
fn ordered_grad_node(m: &OrdMeta, g: &Tensor, v: &Tensor, tau: &Tensor, rho: &Arc<(Tensor, Tensor)>) -> Result<(Tensor, Tensor)> {
    let gc = contiguous_as(g, DType::F64)?;
    let (gv, gt) = ordered_first_grads(m, gc.data::<f64>(), rho)?;
    if needs_grad(&[g, v, tau]) {
        let (sg, sv, st) = (SavedTensor::input(g), SavedTensor::input(v), SavedTensor::input(tau));
        let (m, rho) = (m.clone(), rho.clone());
        attach_multi(&[&gv, &gt], "IclvOrderedGradBackward0", &[g, v, tau], true, false, move |ctx, hs| {
            let (g, v, tau) = (sg.get(ctx)?, sv.get(ctx)?, st.get(ctx)?);
            let hv = hs.first().cloned().flatten().map(|h| contiguous_as(&h, DType::F64)).transpose()?;
            let ht = hs.get(1).cloned().flatten().map(|h| contiguous_as(&h, DType::F64)).transpose()?;
            if hv.is_none() && ht.is_none() {
                return Ok(vec![None, None, None]);
            }
            if is_grad_enabled() {
                let (ra, rb) = rho_node(&m, &v, &tau, &rho.0, &rho.1)?;
                let zero = Tensor::zeros(&[m.n, m.r], DType::F64)?;
                let hv2 = match &hv {
                    Some(h) => reshape(h, &[m.n, m.r])?,
                    None => zero.clone(),
                };
                let (htl, hth) = match &ht {
                    Some(h) => bounds_composite(&m, h)?,
                    None => (Tensor::zeros(&[m.n, 1], DType::F64)?, Tensor::zeros(&[m.n, 1], DType::F64)?),
                };
                // the stand-ins of bounds_composite are 0: an infinite threshold takes nothing
                let (a, b) = (sub(&hv2, &htl)?, sub(&hth, &hv2)?);
                let g2 = reshape(&g, &[m.n, m.r])?;
                let dg = reshape(&add(&mul(&ra, &a)?, &mul(&rb, &b)?)?, g.shape())?;
                let (ga, gb) = (mul(&g2, &a)?, mul(&g2, &b)?);
                let wrt: Vec<usize> = [1usize, 2].into_iter().filter(|&i| ctx.needs(i)).collect();
                let mut res = vec![ctx.needs(0).then_some(dg), None, None];
                if !wrt.is_empty() {
                    let inputs: Vec<Tensor> = wrt.iter().map(|&i| if i == 1 { v.clone() } else { tau.clone() }).collect();
                    let gs = run_backward(&[ra, rb], &[ga, gb], true, true, Some(&inputs), true)?;
                    for (&i, x) in wrt.iter().zip(gs) {
                        res[i] = x;
                    }
                }
                return Ok(res);
            }
            let (vc, tc) = (contiguous_as(&v, DType::F64)?, contiguous_as(&tau, DType::F64)?);
            let gc = contiguous_as(&g, DType::F64)?;
            let pb = m.problem(vc.data::<f64>(), tc.data::<f64>());
            let (ra, rb) = (rho.0.data::<f64>(), rho.1.data::<f64>());
            let len = m.n * m.r;
            let mut dg = FreshTensor::<f64>::uninit(g.shape())?;
            let mut ga = FreshTensor::<f64>::uninit(&[len])?;
            let mut gb = FreshTensor::<f64>::uninit(&[len])?;
            let hvd = hv.as_ref().map(|h| h.data::<f64>());
            let htd = ht.as_ref().map(|h| h.data::<f64>());
            kernels::ordered_grad_upstream(&pb, ra, rb, gc.data::<f64>(), hvd, htd, &mut dg, &mut ga, &mut gb)?;
            let mut res = vec![ctx.needs(0).then(|| dg.into_tensor()), None, None];
            if ctx.needs(1) || ctx.needs(2) {
                let mut dv = FreshTensor::<f64>::uninit(&m.shape)?;
                let (mut lo, mut hi) = (kernels::try_vec(m.n, 0.0)?, kernels::try_vec(m.n, 0.0)?);
                kernels::ordered_rho_backward(&pb, ra, rb, Some(&ga), Some(&gb), &mut dv, &mut lo, &mut hi)?;
                res[1] = ctx.needs(1).then(|| dv.into_tensor());
                if ctx.needs(2) {
                    res[2] = Some(tensor_of(&kernels::scatter_tau(&m.y, m.c1, &lo, &hi)?, &[m.c1])?);
                }
            }
            Ok(res)
        })?;
    }
    Ok((gv, gt))
}

/// `(rho_a, rho_b) = (f(a) / P, f(b) / P)`, each `(n, r)`: the derivatives of
/// [`ordered_logprob`] with respect to the lower and upper thresholds are
/// `-rho_a` and `rho_b`, with respect to `v` `rho_a - rho_b` (0 at an
/// infinite threshold and on empty intervals).
pub fn ordered_rho(v: &Tensor, tau: &Tensor, y: &Tensor, link: Link) -> Result<(Tensor, Tensor)> {
    let op = "ordered_rho";
    let (m, vc, tc) = ord_check(op, v, tau, y, link)?;
    let mut out = FreshTensor::<f64>::uninit(&[m.n, m.r])?;
    let mut ra = FreshTensor::<f64>::uninit(&[m.n, m.r])?;
    let mut rb = FreshTensor::<f64>::uninit(&[m.n, m.r])?;
    kernels::ordered_forward(&m.problem(vc.data::<f64>(), tc.data::<f64>()), &mut out, Some((&mut ra, &mut rb)))?;
    let (ra, rb) = rho_node(&m, v, tau, &ra.into_tensor(), &rb.into_tensor())?;
    Ok((reshape(&ra, &m.shape)?, reshape(&rb, &m.shape)?))
}

/// The two-output `rho` node (`(n, r)` each) from values already computed
/// (new handles on their storage, never written again), attached to `v` and `tau`.
fn rho_node(m: &OrdMeta, v: &Tensor, tau: &Tensor, ra: &Tensor, rb: &Tensor) -> Result<(Tensor, Tensor)> {
    let (ta, tb) = (ra.detach(), rb.detach());
    if needs_grad(&[v, tau]) {
        let (sv, st) = (SavedTensor::input(v), SavedTensor::input(tau));
        let (sa, sb) = (SavedTensor::output_nr(&ta, 0), SavedTensor::output_nr(&tb, 1));
        let m = m.clone();
        attach_multi(&[&ta, &tb], "IclvOrderedRhoBackward0", &[v, tau], true, false, move |ctx, grads| {
            let (v, tau) = (sv.get(ctx)?, st.get(ctx)?);
            let (ra, rb) = (sa.get(ctx)?, sb.get(ctx)?);
            rho_backward(&m, ctx, &v, &tau, &ra, &rb, grads)
        })?;
    }
    Ok((ta, tb))
}

fn rho_backward(
    m: &OrdMeta,
    ctx: &BwCtx,
    v: &Tensor,
    tau: &Tensor,
    ra: &Tensor,
    rb: &Tensor,
    grads: &[Option<Tensor>],
) -> Result<Vec<Option<Tensor>>> {
    let ga = grads.first().cloned().flatten().map(|g| contiguous_as(&g, DType::F64)).transpose()?;
    let gb = grads.get(1).cloned().flatten().map(|g| contiguous_as(&g, DType::F64)).transpose()?;
    if ga.is_none() && gb.is_none() {
        return Ok(vec![None, None]);
    }
    if is_grad_enabled() {
        // the closed form with plain ops on the outputs (which carry the history)
        let v2 = reshape(v, &[m.n, m.r])?;
        let (lo, hi) = bounds_composite(m, tau)?;
        let (a, b) = (sub(&lo, &v2)?, sub(&hi, &v2)?);
        let ab = mul(ra, rb)?;
        let mut da: Option<Tensor> = None;
        let mut db: Option<Tensor> = None;
        let acc = |x: Option<Tensor>, y: Tensor| -> Result<Option<Tensor>> {
            Ok(Some(match x {
                Some(x) => add(&x, &y)?,
                None => y,
            }))
        };
        if let Some(ga) = &ga {
            let ka = add(&mul(ra, &kappa_composite(m.link, &a)?)?, &mul(ra, ra)?)?;
            da = acc(da, mul(ga, &ka)?)?;
            db = acc(db, neg(&mul(ga, &ab)?)?)?;
        }
        if let Some(gb) = &gb {
            let kb = sub(&mul(rb, &kappa_composite(m.link, &b)?)?, &mul(rb, rb)?)?;
            db = acc(db, mul(gb, &kb)?)?;
            da = acc(da, mul(gb, &ab)?)?;
        }
        let (da, db) = (da.unwrap_or(Tensor::zeros(&[m.n, m.r], DType::F64)?), db.unwrap_or(Tensor::zeros(&[m.n, m.r], DType::F64)?));
        let gv = if ctx.needs(0) { Some(reshape(&neg(&add(&da, &db)?)?, &m.shape)?) } else { None };
        let gt = if ctx.needs(1) { Some(tau_grad_composite(m, &row_sums(&da)?, &row_sums(&db)?)?) } else { None };
        return Ok(vec![gv, gt]);
    }
    let (vc, tc) = (contiguous_as(v, DType::F64)?, contiguous_as(tau, DType::F64)?);
    let (rac, rbc) = (ra.contiguous(), rb.contiguous());
    let pb = m.problem(vc.data::<f64>(), tc.data::<f64>());
    let mut gv = FreshTensor::<f64>::uninit(&m.shape)?;
    let (mut lo, mut hi) = (kernels::try_vec(m.n, 0.0)?, kernels::try_vec(m.n, 0.0)?);
    kernels::ordered_rho_backward(
        &pb,
        rac.data::<f64>(),
        rbc.data::<f64>(),
        ga.as_ref().map(|g| g.data::<f64>()),
        gb.as_ref().map(|g| g.data::<f64>()),
        &mut gv,
        &mut lo,
        &mut hi,
    )?;
    let gt = if ctx.needs(1) { Some(tensor_of(&kernels::scatter_tau(&m.y, m.c1, &lo, &hi)?, &[m.c1])?) } else { None };
    Ok(vec![ctx.needs(0).then(|| gv.into_tensor()), gt])
}

// ====================================================================== MNL

#[derive(Clone)]
struct MnlMeta {
    m: usize,
    r: usize,
    wide: Vec<bool>,
    choice: Arc<Vec<usize>>,
    avail: Option<Arc<Vec<bool>>>,
}

fn mnl_check(op: &str, us: &[Tensor], choice: &Tensor, avail: Option<&Tensor>) -> Result<(MnlMeta, Vec<Tensor>)> {
    let nj = us.len();
    if nj < 2 {
        return Err(value_err!("{op}: at least two alternatives are needed, got {nj}"));
    }
    let mut cs = Vec::with_capacity(nj);
    for (j, u) in us.iter().enumerate() {
        cs.push(f64_arg(op, &format!("the utility of alternative {j}"), u)?);
    }
    let m = us[0].shape().first().copied().unwrap_or(0);
    let r = us.iter().map(|u| if u.ndim() == 2 { u.shape()[1] } else { 1 }).max().unwrap_or(1);
    let mut wide = Vec::with_capacity(nj);
    for (j, u) in us.iter().enumerate() {
        match u.shape() {
            [mm, rr] if *mm == m && (*rr == r || *rr == 1) => wide.push(*rr == r && r != 1),
            s => {
                return Err(shape_err!(
                    "{op}: the utility of alternative {j} must have shape ({m}, {r}) or ({m}, 1) like the others, got {}",
                    fmt_shape(s)
                ))
            }
        }
    }
    let cv = i64_vec(op, "the choices", choice, m)?;
    if let Some((i, &k)) = cv.iter().enumerate().find(|(_, &k)| k < 0 || k as u64 >= nj as u64) {
        return Err(index_err!("{op}: the choice of row {i} is {k}, outside 0..{nj} ({nj} alternatives)"));
    }
    let ch: Vec<usize> = cv.iter().map(|&k| k as usize).collect();
    let av = match avail {
        None => None,
        Some(a) => {
            if a.dtype() != DType::Bool {
                return Err(dtype_err!("{op}: the availabilities must be a bool tensor, got {}", a.dtype().name()));
            }
            if a.shape() != [m, nj] {
                return Err(shape_err!("{op}: the availabilities must have shape ({m}, {nj}), got {}", fmt_shape(a.shape())));
            }
            let v = a.contiguous().to_vec::<bool>();
            if let Some(i) = (0..m).find(|&i| !v[i * nj + ch[i]]) {
                return Err(value_err!("{op}: the chosen alternative {} of row {i} is unavailable", ch[i]));
            }
            Some(Arc::new(v))
        }
    };
    Ok((MnlMeta { m, r, wide, choice: Arc::new(ch), avail: av }, cs))
}

impl MnlMeta {
    fn problem<'a>(&'a self, cs: &'a [Tensor]) -> Mnl<'a> {
        Mnl {
            u: cs.iter().map(|c| c.data::<f64>()).collect(),
            wide: self.wide.clone(),
            m: self.m,
            r: self.r,
            avail: self.avail.as_ref().map(|a| a.as_slice()),
            choice: &self.choice,
        }
    }
    /// `1[choice == j]` as an `(m, 1)` tensor.
    fn onehot(&self, j: usize) -> Result<Tensor> {
        FreshTensor::<f64>::build(&[self.m, 1], |o| {
            for (x, &c) in o.iter_mut().zip(self.choice.iter()) {
                *x = if c == j { 1.0 } else { 0.0 };
            }
        })
    }
    /// A gradient `(m, r)` reduced to alternative `j`'s shape.
    fn reduce(&self, j: usize, g: Tensor) -> Result<Tensor> {
        if self.wide[j] || self.r == 1 {
            Ok(g)
        } else {
            sum(&g, Some(&[1]), true)
        }
    }
}

/// Log-probability of the chosen alternative of a multinomial logit, `(m, r)`:
/// `us` the `J` utilities, each `(m, r)` or `(m, 1)`; `choice` int64 `(m,)`;
/// `avail` bool `(m, J)` or None (the chosen alternative must be available).
pub fn mnl_logprob(us: &[Tensor], choice: &Tensor, avail: Option<&Tensor>) -> Result<Tensor> {
    let op = "mnl_logprob";
    let (mm, cs) = mnl_check(op, us, choice, avail)?;
    let nj = us.len();
    let refs: Vec<&Tensor> = us.iter().collect();
    let want = needs_grad(&refs);
    let mut probs: Vec<FreshTensor<f64>> =
        if want { (0..nj).map(|_| FreshTensor::<f64>::uninit(&[mm.m, mm.r])).collect::<Result<_>>()? } else { Vec::new() };
    let mut out = FreshTensor::<f64>::uninit(&[mm.m, mm.r])?;
    kernels::mnl_forward(&mm.problem(&cs), &mut out, if want { Some(probs.iter_mut().map(|p| p.as_mut_slice()).collect()) } else { None })?;
    let out = out.into_tensor();
    if want {
        let probs: Arc<Vec<Tensor>> = Arc::new(probs.into_iter().map(|p| p.into_tensor()).collect());
        let saved: Vec<SavedTensor> = us.iter().map(SavedTensor::input).collect();
        attach(&out, "IclvMnlLogprobBackward0", &refs, true, move |ctx, g| {
            let g = contiguous_as(g, DType::F64)?;
            if is_grad_enabled() {
                let ins: Vec<Tensor> = saved.iter().map(|s| s.get(ctx)).collect::<Result<_>>()?;
                let gs = mnl_grad_node(&mm, &g, &ins, &probs)?;
                return Ok(gs.into_iter().enumerate().map(|(j, x)| if ctx.needs(j) { Some(x) } else { None }).collect());
            }
            mnl_first_grads(&mm, g.data::<f64>(), &probs, |j| ctx.needs(j))
        });
    }
    Ok(out)
}

/// `gu_j = g (1[c = j] - P_j)`, reduced to each utility's shape (None where not wanted).
fn mnl_first_grads(mm: &MnlMeta, gd: &[f64], probs: &[Tensor], want: impl Fn(usize) -> bool) -> Result<Vec<Option<Tensor>>> {
    (0..probs.len())
        .map(|j| {
            if !want(j) {
                return Ok(None);
            }
            let p = probs[j].data::<f64>();
            let gj = FreshTensor::<f64>::build(&[mm.m, mm.r], |o| {
                for i in 0..mm.m {
                    let hit = if mm.choice[i] == j { 1.0 } else { 0.0 };
                    for k in 0..mm.r {
                        let e = i * mm.r + k;
                        o[e] = gd[e] * (hit - p[e]);
                    }
                }
            })?;
            Ok(Some(mm.reduce(j, gj)?))
        })
        .collect()
}

/// The MNL gradient as a node of its own (inputs `g` and the utilities,
/// outputs `gu_j`), built under `create_graph`: the exact Hessian's passes
/// run through its fused closed-form backward ([`kernels::mnl_grad_backward`])
/// instead of a dozen plain ops on `(m, r)` tensors per alternative; under
/// `create_graph` again (third order) its backward is written with
/// [`mnl_probs`]' node and plain ops.
fn mnl_grad_node(mm: &MnlMeta, g: &Tensor, us: &[Tensor], probs: &Arc<Vec<Tensor>>) -> Result<Vec<Tensor>> {
    let nj = us.len();
    let gc = contiguous_as(g, DType::F64)?;
    let outs: Vec<Tensor> = mnl_first_grads(mm, gc.data::<f64>(), probs, |_| true)?.into_iter().flatten().collect();
    let mut ins: Vec<&Tensor> = vec![g];
    ins.extend(us.iter());
    if needs_grad(&ins) {
        let sg = SavedTensor::input(g);
        let su: Vec<SavedTensor> = us.iter().map(SavedTensor::input).collect();
        let (mm, probs) = (mm.clone(), probs.clone());
        let orefs: Vec<&Tensor> = outs.iter().collect();
        attach_multi(&orefs, "IclvMnlGradBackward0", &ins, true, false, move |ctx, hs| {
            let g = sg.get(ctx)?;
            let us: Vec<Tensor> = su.iter().map(|s| s.get(ctx)).collect::<Result<_>>()?;
            let hs: Vec<Option<Tensor>> =
                hs.iter().map(|h| h.as_ref().map(|h| contiguous_as(h, DType::F64)).transpose()).collect::<Result<_>>()?;
            if hs.iter().all(|h| h.is_none()) {
                return Ok(vec![None; nj + 1]);
            }
            if is_grad_enabled() {
                let ps = probs_node(&mm, &us, &probs)?;
                let (mut s, mut hc): (Option<Tensor>, Option<Tensor>) = (None, None);
                let acc = |x: Option<Tensor>, y: Tensor| -> Result<Option<Tensor>> {
                    Ok(Some(match x {
                        Some(x) => add(&x, &y)?,
                        None => y,
                    }))
                };
                for (j, h) in hs.iter().enumerate() {
                    if let Some(h) = h {
                        s = acc(s, mul(h, &ps[j])?)?;
                        hc = acc(hc, mul(h, &mm.onehot(j)?)?)?;
                    }
                }
                let zero = Tensor::zeros(&[mm.m, mm.r], DType::F64)?;
                let (s, hc) = (s.unwrap_or(zero.clone()), hc.unwrap_or(zero));
                let mut res = vec![if ctx.needs(0) { Some(sub(&hc, &s)?) } else { None }];
                for j in 0..nj {
                    res.push(if ctx.needs(1 + j) {
                        let hj = match &hs[j] {
                            Some(h) => sub(h, &s)?,
                            None => neg(&s)?,
                        };
                        Some(mm.reduce(j, neg(&mul(&mul(&g, &ps[j])?, &hj)?)?)?)
                    } else {
                        None
                    });
                }
                return Ok(res);
            }
            let gc = contiguous_as(&g, DType::F64)?;
            let pd: Vec<&[f64]> = probs.iter().map(|p| p.data::<f64>()).collect();
            let hd: Vec<Option<&[f64]>> = hs.iter().map(|h| h.as_ref().map(|h| h.data::<f64>())).collect();
            let hw: Vec<bool> = hs.iter().map(|h| h.as_ref().is_some_and(|h| h.numel() == mm.m * mm.r)).collect();
            let mut dg = FreshTensor::<f64>::uninit(&[mm.m, mm.r])?;
            let mut du: Vec<FreshTensor<f64>> = (0..nj).map(|_| FreshTensor::<f64>::uninit(&[mm.m, mm.r])).collect::<Result<_>>()?;
            kernels::mnl_grad_backward(
                mm.m,
                mm.r,
                &pd,
                gc.data::<f64>(),
                &hd,
                &hw,
                &mm.choice,
                &mut dg,
                du.iter_mut().map(|d| d.as_mut_slice()).collect(),
            )?;
            let mut res = vec![ctx.needs(0).then(|| dg.into_tensor())];
            for (j, d) in du.into_iter().enumerate() {
                res.push(if ctx.needs(1 + j) { Some(mm.reduce(j, d.into_tensor())?) } else { None });
            }
            Ok(res)
        })?;
    }
    Ok(outs)
}

/// The choice probabilities of a multinomial logit, `J` tensors `(m, r)` (0 where unavailable).
pub fn mnl_probs(us: &[Tensor], choice: &Tensor, avail: Option<&Tensor>) -> Result<Vec<Tensor>> {
    let op = "mnl_probs";
    let (mm, cs) = mnl_check(op, us, choice, avail)?;
    let mut probs: Vec<FreshTensor<f64>> = (0..us.len()).map(|_| FreshTensor::<f64>::uninit(&[mm.m, mm.r])).collect::<Result<_>>()?;
    let mut out = FreshTensor::<f64>::uninit(&[mm.m, mm.r])?;
    kernels::mnl_forward(&mm.problem(&cs), &mut out, Some(probs.iter_mut().map(|p| p.as_mut_slice()).collect()))?;
    let probs: Vec<Tensor> = probs.into_iter().map(|p| p.into_tensor()).collect();
    probs_node(&mm, us, &probs)
}

fn probs_node(mm: &MnlMeta, us: &[Tensor], probs: &[Tensor]) -> Result<Vec<Tensor>> {
    let nj = us.len();
    let ps: Vec<Tensor> = probs.iter().map(|p| p.detach()).collect();
    let refs: Vec<&Tensor> = us.iter().collect();
    if needs_grad(&refs) {
        let saved: Vec<SavedTensor> = ps.iter().enumerate().map(|(j, p)| SavedTensor::output_nr(p, j as u32)).collect();
        let prefs: Vec<&Tensor> = ps.iter().collect();
        let mm = mm.clone();
        attach_multi(&prefs, "IclvMnlProbsBackward0", &refs, true, false, move |ctx, grads| {
            let ps: Vec<Tensor> = saved.iter().map(|s| s.get(ctx)).collect::<Result<_>>()?;
            let gs: Vec<Option<Tensor>> =
                grads.iter().map(|g| g.as_ref().map(|g| contiguous_as(g, DType::F64)).transpose()).collect::<Result<_>>()?;
            if gs.iter().all(|g| g.is_none()) {
                return Ok(vec![None; nj]);
            }
            if is_grad_enabled() {
                let mut dot: Option<Tensor> = None;
                for (g, p) in gs.iter().zip(&ps) {
                    if let Some(g) = g {
                        let t = mul(g, p)?;
                        dot = Some(match dot {
                            Some(d) => add(&d, &t)?,
                            None => t,
                        });
                    }
                }
                let dot = dot.unwrap_or(Tensor::zeros(&[mm.m, mm.r], DType::F64)?);
                return (0..nj)
                    .map(|k| {
                        if !ctx.needs(k) {
                            return Ok(None);
                        }
                        let inner = match &gs[k] {
                            Some(g) => sub(g, &dot)?,
                            None => neg(&dot)?,
                        };
                        Ok(Some(mm.reduce(k, mul(&ps[k], &inner)?)?))
                    })
                    .collect();
            }
            let pc: Vec<Tensor> = ps.iter().map(|p| p.contiguous()).collect();
            let pd: Vec<&[f64]> = pc.iter().map(|p| p.data::<f64>()).collect();
            let gd: Vec<Option<&[f64]>> = gs.iter().map(|g| g.as_ref().map(|g| g.data::<f64>())).collect();
            let mut out: Vec<FreshTensor<f64>> = (0..nj).map(|_| FreshTensor::<f64>::uninit(&[mm.m, mm.r])).collect::<Result<_>>()?;
            kernels::mnl_probs_backward(mm.m, mm.r, &pd, &gd, out.iter_mut().map(|o| o.as_mut_slice()).collect())?;
            out.into_iter()
                .enumerate()
                .map(|(k, o)| if ctx.needs(k) { Ok(Some(mm.reduce(k, o.into_tensor())?)) } else { Ok(None) })
                .collect()
        })?;
    }
    Ok(ps)
}

// ====================================================================== panel sums

fn offsets_check(op: &str, offsets: &Tensor, m: usize) -> Result<Arc<Vec<usize>>> {
    if offsets.dtype() != DType::I64 {
        return Err(dtype_err!("{op}: offsets must be an int64 tensor, got {}", offsets.dtype().name()));
    }
    if offsets.ndim() != 1 || offsets.shape()[0] == 0 {
        return Err(shape_err!("{op}: offsets must be a 1-d tensor of N + 1 >= 1 values, got shape {}", fmt_shape(offsets.shape())));
    }
    let o = offsets.contiguous().to_vec::<i64>();
    if o[0] != 0 {
        return Err(value_err!("{op}: offsets[0] must be 0, got {}", o[0]));
    }
    if let Some(i) = (1..o.len()).find(|&i| o[i] < o[i - 1]) {
        return Err(value_err!(
            "{op}: offsets must be non-decreasing (rows sorted by individual); offsets[{i}] = {} < offsets[{}] = {}",
            o[i],
            i - 1,
            o[i - 1]
        ));
    }
    let last = *o.last().unwrap_or(&0);
    if last as u64 != m as u64 {
        return Err(value_err!("{op}: the last offset must be the number of rows {m}, got {last}"));
    }
    Ok(Arc::new(o.into_iter().map(|x| x as usize).collect()))
}

/// Sum of the rows of each individual: `out[n] = sum_{i in off[n]..off[n+1]} x[i]`;
/// `x` is `(m, ...)`, `offsets` int64 `(N + 1,)` from 0 to `m`
/// (non-decreasing). Returns `(N, ...)`.
pub fn panel_sum(x: &Tensor, offsets: &Tensor) -> Result<Tensor> {
    let op = "panel_sum";
    let xc = f64_arg(op, "x", x)?;
    let (m, _) = rows_of(op, "x", x)?;
    let off = offsets_check(op, offsets, m)?;
    panel_sum_raw(x, &xc, off)
}

fn panel_sum_raw(x: &Tensor, xc: &Tensor, off: Arc<Vec<usize>>) -> Result<Tensor> {
    let r = x.shape()[1..].iter().product::<usize>();
    let mut shape = x.shape().to_vec();
    shape[0] = off.len() - 1;
    let mut out = FreshTensor::<f64>::uninit(&shape)?;
    kernels::panel_sum(xc.data::<f64>(), r, &off, &mut out)?;
    let out = out.into_tensor();
    if needs_grad(&[x]) {
        let m = x.shape()[0];
        attach(&out, "IclvPanelSumBackward0", &[x], false, move |_ctx, g| {
            let gc = contiguous_as(g, DType::F64)?;
            Ok(vec![Some(expand_rows_raw(g, &gc, off.clone(), m)?)])
        });
    }
    Ok(out)
}

/// Each individual's row repeated over its rows: `out[i] = x[n]` for the
/// rows `i` of individual `n` (the adjoint of [`panel_sum`]); `x` is
/// `(N, ...)`, returns `(offsets[N], ...)`.
pub fn expand_rows(x: &Tensor, offsets: &Tensor) -> Result<Tensor> {
    let op = "expand_rows";
    let xc = f64_arg(op, "x", x)?;
    let (n, _) = rows_of(op, "x", x)?;
    if offsets.dtype() == DType::I64 && offsets.ndim() == 1 && offsets.shape()[0] != n + 1 {
        return Err(shape_err!("{op}: x has {n} individuals but offsets has {} values (N + 1 expected)", offsets.shape()[0]));
    }
    let m = if offsets.dtype() == DType::I64 && offsets.ndim() == 1 {
        offsets.contiguous().to_vec::<i64>().last().copied().unwrap_or(0).max(0) as usize
    } else {
        0
    };
    let off = offsets_check(op, offsets, m)?;
    expand_rows_raw(x, &xc, off, m)
}

fn expand_rows_raw(x: &Tensor, xc: &Tensor, off: Arc<Vec<usize>>, m: usize) -> Result<Tensor> {
    let r = x.shape()[1..].iter().product::<usize>();
    let mut shape = x.shape().to_vec();
    shape[0] = m;
    let mut out = FreshTensor::<f64>::uninit(&shape)?;
    kernels::expand_rows(xc.data::<f64>(), r, &off, &mut out)?;
    let out = out.into_tensor();
    if needs_grad(&[x]) {
        attach(&out, "IclvExpandRowsBackward0", &[x], false, move |_ctx, g| {
            let gc = contiguous_as(g, DType::F64)?;
            Ok(vec![Some(panel_sum_raw(g, &gc, off.clone())?)])
        });
    }
    Ok(out)
}

// ====================================================================== log-mean-exp

/// `out[n] = log sum_k w_k exp(x[n, k])` over the last dimension of `x`
/// `(N, R)`, with `w_k = 1 / R` (`log_weights` None) or `exp(log_weights[k])`
/// (`(R,)`). The gradient is the importance weight `w_k exp(x[n, k] - out[n])`.
pub fn log_mean_exp(x: &Tensor, log_weights: Option<&Tensor>) -> Result<Tensor> {
    let op = "log_mean_exp";
    let xc = f64_arg(op, "x", x)?;
    if x.ndim() != 2 || x.shape()[1] == 0 {
        return Err(shape_err!("{op}: x must have shape (N, R) with R >= 1 draws, got {}", fmt_shape(x.shape())));
    }
    let (n, r) = (x.shape()[0], x.shape()[1]);
    let lw = match log_weights {
        None => None,
        Some(w) => {
            let wc = f64_arg(op, "log_weights", w)?;
            if w.shape() != [r] {
                return Err(shape_err!(
                    "{op}: log_weights must have shape ({r},) to match x {}, got {}",
                    fmt_shape(x.shape()),
                    fmt_shape(w.shape())
                ));
            }
            Some(wc)
        }
    };
    let mut out = FreshTensor::<f64>::uninit(&[n])?;
    let (mut ms, mut lss) = (kernels::try_vec(n, 0.0)?, kernels::try_vec(n, 0.0)?);
    kernels::log_mean_exp(xc.data::<f64>(), n, r, lw.as_ref().map(|w| w.data::<f64>()), &mut out, &mut ms, &mut lss)?;
    let out = out.into_tensor();
    let shift = Arc::new((ms, lss));
    let ins: Vec<&Tensor> = match log_weights {
        Some(w) => vec![x, w],
        None => vec![x],
    };
    if needs_grad(&ins) {
        let sx = SavedTensor::input(x);
        let sw = log_weights.map(SavedTensor::input);
        let so = SavedTensor::output(&out);
        attach(&out, "IclvLogMeanExpBackward0", &ins, true, move |ctx, g| {
            let (x, o) = (sx.get(ctx)?, so.get(ctx)?);
            let w = sw.as_ref().map(|s| s.get(ctx)).transpose()?;
            let g = contiguous_as(g, DType::F64)?;
            let gx = if is_grad_enabled() {
                let fin = isfinite(&o)?;
                let os = where_(&fin, &o, &Tensor::zeros(&[], DType::F64)?)?;
                let xs = match &w {
                    Some(w) => add(&x, w)?,
                    None => add_scalar(&x, -(r as f64).ln())?,
                };
                mul(&unsqueeze(&g, 1)?, &exp(&sub(&xs, &unsqueeze(&os, 1)?)?)?)?
            } else {
                let xc = contiguous_as(&x, DType::F64)?;
                let wc = w.as_ref().map(|w| contiguous_as(w, DType::F64)).transpose()?;
                let mut gx = FreshTensor::<f64>::uninit(&[n, r])?;
                let wd = wc.as_ref().map(|w| w.data::<f64>());
                kernels::log_mean_exp_backward(xc.data::<f64>(), n, r, wd, &shift.0, &shift.1, g.data::<f64>(), &mut gx)?;
                gx.into_tensor()
            };
            let gw = if ctx.needs(1) { Some(sum(&gx, Some(&[0]), false)?) } else { None };
            let mut res = vec![ctx.needs(0).then_some(gx)];
            if w.is_some() {
                res.push(gw);
            }
            Ok(res)
        });
    }
    Ok(out)
}
