//! The differentiable HMM ops: checks, outputs, and the recorded backward.
//!
//! Inputs (one float dtype, f32 or f64, for all three):
//! - `log_pi`: initial log-probabilities, `(K,)` or one row per sequence `(B, K)`;
//! - `log_a`: transition log-probabilities `log P(z_{t+1} = j | z_t = i)` at
//!   `[i, j]`: one matrix `(K, K)`, one per sequence `(B, K, K)`, or one per
//!   sequence and step `(B, T-1, K, K)` (context-dependent transitions);
//! - `log_e`: emission log-probabilities `(B, T, K)`;
//! - `lengths`: int64 `(B,)`, each in `0..=T` (default: all `T`). Rows past a
//!   sequence's length are not read.
//!
//! `-inf` entries are structural zeros and stay exact; NaN and `+inf` are
//! refused (an error naming the argument and the index). Nothing is computed
//! before every check passed.
//!
//! Ops:
//! - [`hmm_log_likelihood`]: `(B,)`, the forward algorithm. Backward: the
//!   exact analytic gradient (`d/d log_e = gamma`, `d/d log_a` = expected
//!   transition counts, `d/d log_pi = gamma_0`) from one fused backward pass.
//! - [`hmm_posteriors`]: log-likelihood, `log_alpha`, `log_beta`, `gamma` and
//!   optionally `xi`, from one multi-output node. Backward: the fused pass
//!   above when only the log-likelihood carries a gradient, else the fused
//!   adjoint of the whole forward-backward computation.
//! - [`hmm_viterbi`]: the best path (int64, -1 past each length; ties go to
//!   the lowest state index) and its log-probability (differentiable: its
//!   gradient is the path's one-hot counts).
//!
//! Under `create_graph` the backward recomputes the outputs with the
//! differentiable composite of [`crate::composite`] and differentiates it, so
//! derivatives of any order work.
use crate::composite;
use crate::kernels::{self, BatchBwd, Chunks, Problem, TransKind, Upstream};
use crate::math::HmmReal;
use rbe_core::ext::ops::binary::mul;
use rbe_core::ext::ops::reduce::sum;
use rbe_core::ext::ops::shape::reshape;
use rbe_core::ext::{
    attach, attach_multi, contiguous_as, dispatch_float, dtype_err, fmt_shape, is_grad_enabled, needs_grad, run_backward, shape_err,
    value_err, DType, Elem, FreshTensor, Real, Result, SavedTensor, Tensor,
};
use std::sync::Arc;

/// Shape facts of a checked call.
#[derive(Clone, Debug)]
pub struct Meta {
    pub dt: DType,
    pub b: usize,
    pub t: usize,
    pub k: usize,
    pub kind: TransKind,
    pub pi_per_seq: bool,
    pub lens: Vec<usize>,
}

impl Meta {
    /// Elements of the transition gradient of one sequence.
    fn a_grad_len(&self) -> usize {
        match self.kind {
            TransKind::Shared | TransKind::PerSeq => self.k * self.k,
            TransKind::PerStep => self.t.saturating_sub(1) * self.k * self.k,
        }
    }
    fn problem<'a, T: HmmReal>(&'a self, pi: &'a Tensor, a: &'a Tensor, e: &'a Tensor) -> Problem<'a, T> {
        Problem {
            b: self.b,
            t: self.t,
            k: self.k,
            lens: &self.lens,
            pi: pi.data::<T>(),
            pi_per_seq: self.pi_per_seq,
            a: a.data::<T>(),
            kind: self.kind,
            e: e.data::<T>(),
        }
    }
}

/// The index (row-major, as `[i, j, ...]`) of flat position `p` in `shape`.
fn index_of(mut p: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = p % shape[d].max(1);
        p /= shape[d].max(1);
    }
    format!("{idx:?}")
}

/// The first NaN or `+inf` among `x[range]`.
fn first_bad<T: HmmReal>(x: &[T]) -> Option<usize> {
    x.iter().position(|&v| v.is_nan() || v == T::INF)
}

fn bad_value(op: &str, what: &str, t: &Tensor, pos: usize, v: f64) -> rbe_core::ext::Error {
    value_err!(
        "{op}: {what}{} is {v}; log-probabilities must be finite or -inf (structural zeros), never NaN or +inf",
        index_of(pos, t.shape())
    )
}

/// Checks the inputs of every op; returns the facts and contiguous copies (no
/// copy when already contiguous).
pub fn check(
    op: &str,
    log_pi: &Tensor,
    log_a: &Tensor,
    log_e: &Tensor,
    lengths: Option<&Tensor>,
) -> Result<(Meta, Tensor, Tensor, Tensor)> {
    let dt = log_e.dtype();
    if !dt.is_float() {
        return Err(dtype_err!("{op}: log_emissions must be float32 or float64, got {}", dt.name()));
    }
    for (name, x) in [("log_pi", log_pi), ("log_A", log_a)] {
        if x.dtype() != dt {
            return Err(dtype_err!(
                "{op}: {name} has dtype {} but log_emissions has dtype {}; use one float dtype for all three",
                x.dtype().name(),
                dt.name()
            ));
        }
    }
    if log_e.ndim() != 3 {
        return Err(shape_err!("{op}: log_emissions must have shape (batch, time, states), got {}", fmt_shape(log_e.shape())));
    }
    let (b, t, k) = (log_e.shape()[0], log_e.shape()[1], log_e.shape()[2]);
    if k == 0 {
        return Err(shape_err!("{op}: log_emissions {} has 0 states; an HMM needs at least one", fmt_shape(log_e.shape())));
    }
    let pi_per_seq = match log_pi.shape() {
        [kk] if *kk == k => false,
        [bb, kk] if *bb == b && *kk == k => true,
        s => {
            return Err(shape_err!(
                "{op}: log_pi must have shape (K,) = ({k},) or (B, K) = ({b}, {k}) to match log_emissions {}, got {}",
                fmt_shape(log_e.shape()),
                fmt_shape(s)
            ))
        }
    };
    let kind = match log_a.shape() {
        [i, j] if *i == k && *j == k => TransKind::Shared,
        [bb, i, j] if *bb == b && *i == k && *j == k => TransKind::PerSeq,
        [bb, s, i, j] if *bb == b && t >= 1 && *s == t - 1 && *i == k && *j == k => TransKind::PerStep,
        s => {
            return Err(shape_err!(
                "{op}: log_A must have shape (K, K) = ({k}, {k}), (B, K, K) = ({b}, {k}, {k}) or (B, T-1, K, K) = ({b}, {}, {k}, {k}) to match log_emissions {}, got {}",
                t.saturating_sub(1),
                fmt_shape(log_e.shape()),
                fmt_shape(s)
            ))
        }
    };
    let lens: Vec<usize> = match lengths {
        None => vec![t; b],
        Some(l) => {
            if l.dtype() != DType::I64 {
                return Err(dtype_err!("{op}: lengths must be an int64 tensor, got {}", l.dtype().name()));
            }
            if l.shape() != [b] {
                return Err(shape_err!(
                    "{op}: lengths must have shape (B,) = ({b},) to match log_emissions {}, got {}",
                    fmt_shape(log_e.shape()),
                    fmt_shape(l.shape())
                ));
            }
            let v = l.contiguous().to_vec::<i64>();
            if let Some((i, &x)) = v.iter().enumerate().find(|(_, &x)| x < 0 || x as u64 > t as u64) {
                return Err(value_err!(
                    "{op}: lengths[{i}] = {x} is out of range: log_emissions {} has {t} time steps (lengths must be in 0..={t})",
                    fmt_shape(log_e.shape())
                ));
            }
            v.into_iter().map(|x| x as usize).collect()
        }
    };
    let (pi, a, e) = (contiguous_as(log_pi, dt)?, contiguous_as(log_a, dt)?, contiguous_as(log_e, dt)?);
    dispatch_float!(dt, op, T => {
        if let Some(p) = first_bad(pi.data::<T>()) {
            return Err(bad_value(op, "log_pi", &pi, p, pi.data::<T>()[p].to_f64()));
        }
        let ad = a.data::<T>();
        match kind {
            TransKind::PerStep => {
                let per = t.saturating_sub(1) * k * k;
                for (bi, &l) in lens.iter().enumerate() {
                    let used = &ad[bi * per..bi * per + l.saturating_sub(1) * k * k];
                    if let Some(p) = first_bad(used) {
                        return Err(bad_value(op, "log_A", &a, bi * per + p, used[p].to_f64()));
                    }
                }
            }
            _ => {
                if let Some(p) = first_bad(ad) {
                    return Err(bad_value(op, "log_A", &a, p, ad[p].to_f64()));
                }
            }
        }
        let ed = e.data::<T>();
        for (bi, &l) in lens.iter().enumerate() {
            let used = &ed[bi * t * k..(bi * t + l) * k];
            if let Some(p) = first_bad(used) {
                return Err(bad_value(op, "log_emissions", &e, bi * t * k + p, used[p].to_f64()));
            }
        }
    });
    Ok((Meta { dt, b, t, k, kind, pi_per_seq, lens }, pi, a, e))
}

/// The forward pass: `(lf, cf)`.
fn run_forward<T: HmmReal>(m: &Meta, p: &Problem<T>) -> Result<(Vec<T>, Vec<f64>)> {
    let mut lf = kernels::try_vec(m.b * m.t * m.k, T::ZERO)?;
    let mut cf = kernels::try_vec(m.b * m.t, 0.0f64)?;
    kernels::forward(p, &mut lf, &mut cf)?;
    Ok((lf, cf))
}

fn from_f64s<T: HmmReal>(v: &[f64], shape: &[usize]) -> Result<Tensor> {
    FreshTensor::<T>::build(shape, |o| {
        for (o, &x) in o.iter_mut().zip(v) {
            *o = T::from_f64(x);
        }
    })
}

/// Gradients of the inputs from per-sequence buffers: `gpi_rows` are the
/// `t = 0` rows of `ge` (the gradient of `log_pi` equals that of the first
/// emission), `ga_seq` one transition gradient per sequence; shared inputs
/// are summed over the batch in sequence order.
fn input_grads<T: HmmReal>(
    m: &Meta,
    ge: Tensor,
    ga_seq: Option<Vec<T>>,
    gpi_seq: Option<Vec<T>>,
    needs: [bool; 3],
) -> Result<Vec<Option<Tensor>>> {
    let (b, t, k) = (m.b, m.t, m.k);
    let gpi = if needs[0] {
        let rows: Vec<T> = match gpi_seq {
            Some(v) => v,
            None => {
                let g = ge.data::<T>();
                (0..b).flat_map(|bi| g[bi * t * k..bi * t * k + if t > 0 { k } else { 0 }].to_vec()).collect()
            }
        };
        let rows = if rows.len() == b * k { rows } else { vec![T::ZERO; b * k] };
        Some(if m.pi_per_seq {
            FreshTensor::<T>::build(&[b, k], |o| o.copy_from_slice(&rows))?
        } else {
            FreshTensor::<T>::build_zeroed(&[k], |o| {
                for bi in 0..b {
                    for (x, &y) in o.iter_mut().zip(&rows[bi * k..(bi + 1) * k]) {
                        *x += y;
                    }
                }
            })?
        })
    } else {
        None
    };
    let ga = match (needs[1], ga_seq) {
        (true, Some(v)) => Some(match m.kind {
            TransKind::Shared => FreshTensor::<T>::build_zeroed(&[k, k], |o| {
                for bi in 0..b {
                    for (x, &y) in o.iter_mut().zip(&v[bi * k * k..(bi + 1) * k * k]) {
                        *x += y;
                    }
                }
            })?,
            TransKind::PerSeq => FreshTensor::<T>::build(&[b, k, k], |o| o.copy_from_slice(&v))?,
            TransKind::PerStep => FreshTensor::<T>::build(&[b, t.saturating_sub(1), k, k], |o| o.copy_from_slice(&v))?,
        }),
        _ => None,
    };
    Ok(vec![gpi, ga, needs[2].then_some(ge)])
}

/// The fused gradient of `sum_b g[b] * loglik[b]`: one backward pass per sequence.
fn loglik_backward<T: HmmReal>(m: &Meta, p: &Problem<T>, lf: &[T], g: &Tensor, needs: [bool; 3]) -> Result<Vec<Option<Tensor>>> {
    let g = contiguous_as(g, m.dt)?;
    let mut ge = FreshTensor::<T>::zeros(&[m.b, m.t, m.k])?;
    let mut ga = if needs[1] { Some(kernels::try_vec(m.b * m.a_grad_len(), T::ZERO)?) } else { None };
    kernels::backward(p, lf, BatchBwd { lb: None, dn: None, gamma: Some(&mut ge), xi: ga.as_deref_mut(), scale: Some(g.data::<T>()) })?;
    input_grads::<T>(m, ge.into_tensor(), ga, None, needs)
}

/// The `create_graph` backward: the composite outputs differentiated with a graph.
fn composite_backward(m: &Meta, ins: &[Tensor], grads: &[Option<Tensor>], needs: [bool; 3]) -> Result<Vec<Option<Tensor>>> {
    let want_post = grads.iter().skip(1).any(|g| g.is_some());
    let want_xi = grads.get(4).is_some_and(|g| g.is_some());
    let c = composite::forward_backward(&ins[0], &ins[1], &ins[2], &m.lens, m.kind, want_post, want_xi)?;
    let outs = [Some(c.ll), Some(c.log_alpha), c.log_beta, c.gamma, c.xi];
    let (mut roots, mut seeds) = (Vec::new(), Vec::new());
    for (o, g) in outs.into_iter().zip(grads) {
        if let (Some(o), Some(g)) = (o, g) {
            if o.requires_grad() {
                roots.push(o);
                seeds.push(rbe_core::ext::ops::as_dtype(g, m.dt)?);
            }
        }
    }
    let wrt: Vec<usize> = (0..3).filter(|&i| needs[i] && ins[i].requires_grad()).collect();
    let mut out = vec![None, None, None];
    if roots.is_empty() || wrt.is_empty() {
        return Ok(out);
    }
    let inputs: Vec<Tensor> = wrt.iter().map(|&i| ins[i].clone()).collect();
    // retained: the gradients' own graph runs through the composite graph's saved values
    let gs = run_backward(&roots, &seeds, true, true, Some(&inputs), true)?;
    for (&i, g) in wrt.iter().zip(gs) {
        out[i] = g;
    }
    Ok(out)
}

/// Saved inputs of a node (version-checked).
struct Saved([SavedTensor; 3]);

impl Saved {
    fn new(pi: &Tensor, a: &Tensor, e: &Tensor) -> Saved {
        Saved([SavedTensor::input(pi), SavedTensor::input(a), SavedTensor::input(e)])
    }
    fn get(&self, ctx: &rbe_core::ext::BwCtx) -> Result<Vec<Tensor>> {
        self.0.iter().map(|s| s.get(ctx)).collect()
    }
}

/// Log-likelihood of each sequence, `(B,)`: the forward algorithm in log space.
pub fn hmm_log_likelihood(log_pi: &Tensor, log_a: &Tensor, log_e: &Tensor, lengths: Option<&Tensor>) -> Result<Tensor> {
    let op = "hmm_log_likelihood";
    let (m, pi, a, e) = check(op, log_pi, log_a, log_e, lengths)?;
    dispatch_float!(m.dt, op, T => {
        let p = m.problem::<T>(&pi, &a, &e);
        let (lf, cf) = run_forward(&m, &p)?;
        let out = from_f64s::<T>(&kernels::log_likelihoods(&cf, m.t, &m.lens), &[m.b])?;
        if needs_grad(&[log_pi, log_a, log_e]) {
            let saved = Saved::new(log_pi, log_a, log_e);
            let lf = Arc::new(lf);
            attach(&out, "HmmLogLikelihoodBackward0", &[log_pi, log_a, log_e], true, move |ctx, g| {
                let ins = saved.get(ctx)?;
                let needs = [ctx.needs(0), ctx.needs(1), ctx.needs(2)];
                if is_grad_enabled() {
                    return composite_backward(&m, &ins, &[Some(g.clone())], needs);
                }
                let (pi, a, e) = (contiguous_as(&ins[0], m.dt)?, contiguous_as(&ins[1], m.dt)?, contiguous_as(&ins[2], m.dt)?);
                loglik_backward::<T>(&m, &m.problem::<T>(&pi, &a, &e), &lf, g, needs)
            });
        }
        Ok(out)
    })
}

/// Outputs of [`hmm_posteriors`].
pub struct Posteriors {
    /// `(B,)`
    pub log_likelihood: Tensor,
    /// `log P(x_0..x_t, z_t = i)`, `(B, T, K)` (0 past each length)
    pub log_alpha: Tensor,
    /// `log P(x_{t+1}.. | z_t = i)`, `(B, T, K)` (0 past each length)
    pub log_beta: Tensor,
    /// `P(z_t = i | x)`, `(B, T, K)` (0 past each length)
    pub gamma: Tensor,
    /// Expected transition counts `sum_t P(z_t = i, z_{t+1} = j | x)`, `(B, K, K)`,
    /// or per step `(B, T-1, K, K)` for per-step transitions (when asked).
    pub xi: Option<Tensor>,
}

/// Forward-backward: the log-likelihood, both message lattices, the
/// posteriors and (with `with_xi`) the expected transition counts, from one node.
pub fn hmm_posteriors(log_pi: &Tensor, log_a: &Tensor, log_e: &Tensor, lengths: Option<&Tensor>, with_xi: bool) -> Result<Posteriors> {
    let op = "hmm_posteriors";
    let (m, pi, a, e) = check(op, log_pi, log_a, log_e, lengths)?;
    let (b, t, k) = (m.b, m.t, m.k);
    dispatch_float!(m.dt, op, T => {
        let p = m.problem::<T>(&pi, &a, &e);
        let (lf, cf) = run_forward(&m, &p)?;
        let mut lb = kernels::try_vec(b * t * k, T::ZERO)?;
        let mut dn = kernels::try_vec(b * t, 0.0f64)?;
        let mut gamma = FreshTensor::<T>::zeros(&[b, t, k])?;
        let mut xi_buf = if with_xi { Some(kernels::try_vec(b * m.a_grad_len(), T::ZERO)?) } else { None };
        kernels::backward(&p, &lf, BatchBwd { lb: Some(&mut lb), dn: Some(&mut dn), gamma: Some(&mut gamma), xi: xi_buf.as_deref_mut(), scale: None })?;
        let ll = kernels::log_likelihoods(&cf, t, &m.lens);
        // un-normalised messages: log alpha_t = lf_t + C_t, log beta_t = lb_t + D_t (in f64)
        let mut la_out = FreshTensor::<T>::zeros(&[b, t, k])?;
        let mut lb_out = FreshTensor::<T>::zeros(&[b, t, k])?;
        for (bi, &l) in m.lens.iter().enumerate() {
            let mut c = 0.0f64;
            for tt in 0..l {
                c += cf[bi * t + tt];
                let r = (bi * t + tt) * k..(bi * t + tt + 1) * k;
                for (o, &x) in la_out[r.clone()].iter_mut().zip(&lf[r]) {
                    *o = T::from_f64(x.wide() + c);
                }
            }
            let mut d = 0.0f64;
            for tt in (0..l).rev() {
                d += dn[bi * t + tt];
                let r = (bi * t + tt) * k..(bi * t + tt + 1) * k;
                for (o, &x) in lb_out[r.clone()].iter_mut().zip(&lb[r]) {
                    *o = T::from_f64(x.wide() + d);
                }
            }
        }
        let llt = from_f64s::<T>(&ll, &[b])?;
        let (la_t, lb_t, gm_t) = (la_out.into_tensor(), lb_out.into_tensor(), gamma.into_tensor());
        let xi_t = match xi_buf {
            Some(v) => {
                let shape: Vec<usize> = if m.kind == TransKind::PerStep { vec![b, t.saturating_sub(1), k, k] } else { vec![b, k, k] };
                Some(FreshTensor::<T>::build(&shape, |o| o.copy_from_slice(&v))?)
            }
            None => None,
        };
        if needs_grad(&[log_pi, log_a, log_e]) {
            let saved = Saved::new(log_pi, log_a, log_e);
            let state = Arc::new((lf, lb));
            let mut outs: Vec<&Tensor> = vec![&llt, &la_t, &lb_t, &gm_t];
            if let Some(x) = &xi_t {
                outs.push(x);
            }
            let m2 = m.clone();
            attach_multi(&outs, "HmmPosteriorsBackward0", &[log_pi, log_a, log_e], true, false, move |ctx, grads| {
                let m = &m2;
                let ins = saved.get(ctx)?;
                let needs = [ctx.needs(0), ctx.needs(1), ctx.needs(2)];
                if is_grad_enabled() {
                    return composite_backward(m, &ins, grads, needs);
                }
                let (pi, a, e) = (contiguous_as(&ins[0], m.dt)?, contiguous_as(&ins[1], m.dt)?, contiguous_as(&ins[2], m.dt)?);
                let p = m.problem::<T>(&pi, &a, &e);
                let (lf, lb) = (&state.0, &state.1);
                let only_ll = grads.iter().skip(1).all(|g| g.is_none());
                match (&grads[0], only_ll) {
                    (None, true) => Ok(vec![None, None, None]),
                    (Some(g), true) => loglik_backward::<T>(m, &p, lf, g, needs),
                    _ => adjoint_backward::<T>(m, &p, lf, lb, grads, needs),
                }
            })?;
        }
        Ok(Posteriors { log_likelihood: llt, log_alpha: la_t, log_beta: lb_t, gamma: gm_t, xi: xi_t })
    })
}

/// The fused adjoint of the forward-backward computation, for upstream
/// gradients on any of the posteriors op's outputs.
fn adjoint_backward<T: HmmReal>(
    m: &Meta,
    p: &Problem<T>,
    lf: &[T],
    lb: &[T],
    grads: &[Option<Tensor>],
    needs: [bool; 3],
) -> Result<Vec<Option<Tensor>>> {
    let (b, t, k) = (m.b, m.t, m.k);
    let ag = m.a_grad_len();
    let c = |g: &Option<Tensor>| -> Result<Option<Tensor>> { g.as_ref().map(|g| contiguous_as(g, m.dt)).transpose() };
    let (gll, gla, glb, ggm, gxi) = (c(&grads[0])?, c(&grads[1])?, c(&grads[2])?, c(&grads[3])?, c(grads.get(4).unwrap_or(&None))?);
    let mut gpi = kernels::try_vec(b * k, T::ZERO)?;
    let mut ga = kernels::try_vec(b * ag, T::ZERO)?;
    let mut ge = FreshTensor::<T>::zeros(&[b, t, k])?;
    {
        let (pc, ac, ec) = (Chunks::new(&mut gpi, k), Chunks::new(&mut ga, ag), Chunks::new(&mut ge, t * k));
        kernels::par_try(b, p.work() * 4, |bi| {
            let l = p.lens[bi];
            let mut scratch = kernels::try_vec(kernels::adj_scratch_len(l, k), T::ZERO)?;
            let up = Upstream {
                ll: gll.as_ref().map_or(T::ZERO, |g| g.data::<T>()[bi]),
                log_alpha: rows::<T>(&gla, bi, t * k),
                log_beta: rows::<T>(&glb, bi, t * k),
                gamma: rows::<T>(&ggm, bi, t * k),
                xi: rows::<T>(&gxi, bi, ag),
            };
            // SAFETY: task bi is the only one taking chunk bi of each buffer.
            let mut out = unsafe { kernels::Adjoint { pi: pc.get(bi), a: ac.get(bi), e: ec.get(bi) } };
            if l == 0 {
                out.pi.fill(T::ZERO);
                out.a.fill(T::ZERO);
                out.e.fill(T::ZERO);
                return Ok(());
            }
            kernels::adjoint_seq(
                p.a_of(bi),
                p.kind == TransKind::PerStep,
                p.e_of(bi),
                k,
                &lf[bi * t * k..(bi * t + l) * k],
                &lb[bi * t * k..(bi * t + l) * k],
                &up,
                &mut out,
                &mut scratch,
            );
            Ok(())
        })?;
    }
    input_grads::<T>(m, ge.into_tensor(), Some(ga), Some(gpi), needs)
}

/// Rows `bi * n .. (bi + 1) * n` of an optional tensor's data.
fn rows<T: HmmReal>(x: &Option<Tensor>, bi: usize, n: usize) -> Option<&[T]> {
    x.as_ref().map(|x| &x.data::<T>()[bi * n..(bi + 1) * n])
}

/// Outputs of [`hmm_viterbi`].
pub struct ViterbiPath {
    /// int64 `(B, T)`: the best state sequence, -1 past each length.
    pub path: Tensor,
    /// `(B,)`: its log-probability (`log P(x, z*)`), differentiable.
    pub log_prob: Tensor,
}

/// The most likely state sequence of each sequence (ties to the lowest state index).
pub fn hmm_viterbi(log_pi: &Tensor, log_a: &Tensor, log_e: &Tensor, lengths: Option<&Tensor>) -> Result<ViterbiPath> {
    let op = "hmm_viterbi";
    let (m, pi, a, e) = check(op, log_pi, log_a, log_e, lengths)?;
    let (b, t, k) = (m.b, m.t, m.k);
    let mut path = FreshTensor::<i64>::zeros(&[b, t])?;
    let mut lp = kernels::try_vec(b, 0.0f64)?;
    dispatch_float!(m.dt, op, T => {
        let p = m.problem::<T>(&pi, &a, &e);
        kernels::viterbi(&p, &mut path, &mut lp)?;
        let log_prob = from_f64s::<T>(&lp, &[b])?;
        let path = path.into_tensor();
        if needs_grad(&[log_pi, log_a, log_e]) {
            let pv = Arc::new(path.to_vec::<i64>());
            let (kind, pi_per_seq, dt) = (m.kind, m.pi_per_seq, m.dt);
            attach(&log_prob, "HmmViterbiBackward0", &[log_pi, log_a, log_e], false, move |ctx, g| {
                // d log P(x, z*) = the one-hot counts of z*, scaled by g (differentiable in g)
                let (oh_pi, oh_a, oh_e) = composite::one_hot_path(b, t, k, &pv, kind)?;
                let g = rbe_core::ext::ops::as_dtype(g, dt)?;
                let cast = |x: Tensor| rbe_core::ext::ops::as_dtype(&x, dt);
                let gpi = if ctx.needs(0) {
                    let v = mul(&cast(oh_pi)?, &reshape(&g, &[b, 1])?)?;
                    Some(if pi_per_seq { v } else { sum(&v, Some(&[0]), false)? })
                } else {
                    None
                };
                let ga = if ctx.needs(1) {
                    let gshape: Vec<usize> = if kind == TransKind::PerStep { vec![b, 1, 1, 1] } else { vec![b, 1, 1] };
                    let v = mul(&cast(oh_a)?, &reshape(&g, &gshape)?)?;
                    Some(if kind == TransKind::Shared { sum(&v, Some(&[0]), false)? } else { v })
                } else {
                    None
                };
                let ge = if ctx.needs(2) { Some(mul(&cast(oh_e)?, &reshape(&g, &[b, 1, 1])?)?) } else { None };
                Ok(vec![gpi, ga, ge])
            });
        }
        Ok(ViterbiPath { path, log_prob })
    })
}
