//! The HMM recursions written with the core's differentiable ops, step by
//! step: the reference the fused ops are tested against, and their
//! `create_graph` path (any derivative order goes through these ops).
//!
//! Conventions are those of the fused ops ([`crate::ops`]): rows past a
//! sequence's length hold 0 in `log_alpha`, `log_beta`, `gamma` and `xi`; an
//! empty sequence has log-likelihood 0; a sequence of probability zero has
//! log-likelihood `-inf` and zero posteriors. `-inf` structural zeros give
//! `-inf` values and zero gradients, never NaN: every log-sum-exp over a slice
//! that is all `-inf` goes through [`safe_logsumexp`], and every
//! exponential of a quantity that may be `-inf - (-inf)` is masked on both
//! sides of the `where`.
use crate::kernels::TransKind;
use rbe_core::ext::ops::as_dtype;
use rbe_core::ext::ops::binary::{add, eq, mul, ne, sub, where_};
use rbe_core::ext::ops::reduce::{amax, logsumexp, sum, Extreme};
use rbe_core::ext::ops::shape::{select, stack, unsqueeze};
use rbe_core::ext::ops::unary::exp;
use rbe_core::ext::{DType, Result, Tensor};

/// `logsumexp` over `dim`, with value `-inf` and gradient 0 on slices that
/// are entirely `-inf` (the core's `logsumexp` gives NaN gradients there).
pub fn safe_logsumexp(x: &Tensor, dim: isize) -> Result<Tensor> {
    let dt = x.dtype();
    let (zero, ninf) = (Tensor::zeros(&[], dt)?, Tensor::full(&[], f64::NEG_INFINITY, dt)?);
    let m = amax(&x.detach(), Some(&[dim]), false, Extreme::Max)?;
    let dead = eq(&m, &ninf)?;
    let x2 = where_(&unsqueeze(&dead, dim)?, &zero, x)?;
    let l = logsumexp(&x2, Some(&[dim]), false)?;
    where_(&dead, &ninf, &l)
}

/// `exp(x)` where `cond`, 0 elsewhere, with no NaN in value or gradient
/// whatever `x` holds where `cond` is false.
fn masked_exp(cond: &Tensor, x: &Tensor) -> Result<Tensor> {
    let zero = Tensor::zeros(&[], x.dtype())?;
    where_(cond, &exp(&where_(cond, x, &zero)?)?, &zero)
}

fn bool_tensor(v: Vec<bool>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(v, shape)
}

/// Transition matrix of step `t -> t+1`, broadcastable against `(B, K, K)`.
fn trans_at(log_a: &Tensor, kind: TransKind, t: usize) -> Result<Tensor> {
    match kind {
        TransKind::Shared | TransKind::PerSeq => Ok(log_a.clone()),
        TransKind::PerStep => select(log_a, 1, t as isize),
    }
}

/// Outputs of [`forward_backward`].
pub struct Composite {
    /// `(B,)`
    pub ll: Tensor,
    /// `(B, T, K)`
    pub log_alpha: Tensor,
    /// `(B, T, K)` (when asked)
    pub log_beta: Option<Tensor>,
    /// `(B, T, K)` (when asked)
    pub gamma: Option<Tensor>,
    /// `(B, K, K)` summed over steps, or `(B, T-1, K, K)` for per-step transitions (when asked)
    pub xi: Option<Tensor>,
}

/// The forward algorithm, and (with `beta`) the backward algorithm and the
/// posteriors (with `xi`, the expected transition counts too), for inputs
/// checked as the fused ops check them.
pub fn forward_backward(
    log_pi: &Tensor,
    log_a: &Tensor,
    log_e: &Tensor,
    lens: &[usize],
    kind: TransKind,
    beta: bool,
    with_xi: bool,
) -> Result<Composite> {
    let (b, t, k) = (log_e.shape()[0], log_e.shape()[1], log_e.shape()[2]);
    let dt = log_e.dtype();
    let zero = Tensor::zeros(&[], dt)?;
    // valid[b, t]: t < L_b
    let valid_bt = |tt: usize| bool_tensor(lens.iter().map(|&l| tt < l).collect(), &[b, 1]);
    let mut alphas = Vec::with_capacity(t);
    let mut al = add(log_pi, &select(log_e, 1, 0)?)?;
    if t > 0 {
        al = where_(&valid_bt(0)?, &al, &zero)?;
        alphas.push(al.clone());
    }
    for tt in 1..t {
        let m = add(&unsqueeze(&al, 2)?, &trans_at(log_a, kind, tt - 1)?)?; // (B, K, K): alpha[i] + A[i][j]
        let new = add(&safe_logsumexp(&m, 1)?, &select(log_e, 1, tt as isize)?)?;
        al = where_(&valid_bt(tt)?, &new, &al)?;
        alphas.push(al.clone());
    }
    let ll = if t > 0 { safe_logsumexp(&al, 1)? } else { Tensor::zeros(&[b], dt)? };
    let nonempty = bool_tensor(lens.iter().map(|&l| l > 0).collect(), &[b])?;
    let ll = where_(&nonempty, &ll, &zero)?;
    let valid = bool_tensor((0..b).flat_map(|i| (0..t).map(move |tt| tt < lens[i])).collect(), &[b, t, 1])?;
    let log_alpha = if t > 0 { where_(&valid, &stack(&alphas, 1)?, &zero)? } else { Tensor::zeros(&[b, 0, k], dt)? };
    if !beta {
        return Ok(Composite { ll, log_alpha, log_beta: None, gamma: None, xi: None });
    }
    let mut betas = vec![Tensor::zeros(&[b, k], dt)?; t];
    for tt in (0..t.saturating_sub(1)).rev() {
        let w = add(&select(log_e, 1, tt as isize + 1)?, &betas[tt + 1])?;
        let m = add(&trans_at(log_a, kind, tt)?, &unsqueeze(&w, 1)?)?; // A[i][j] + w[j]
        let inner = bool_tensor(lens.iter().map(|&l| tt + 1 < l).collect(), &[b, 1])?;
        betas[tt] = where_(&inner, &safe_logsumexp(&m, 2)?, &zero)?;
    }
    let log_beta = if t > 0 { stack(&betas, 1)? } else { Tensor::zeros(&[b, 0, k], dt)? };
    let llv = ll.detach().to_vec_f64();
    let fin: Vec<bool> = llv.iter().map(|v| v.is_finite()).collect();
    let fin = &fin;
    let ll3 = unsqueeze(&unsqueeze(&ll, 1)?, 2)?;
    let live = bool_tensor((0..b).flat_map(|i| (0..t).map(move |tt| tt < lens[i] && fin[i])).collect(), &[b, t, 1])?;
    let gamma = if t > 0 { masked_exp(&live, &sub(&add(&log_alpha, &log_beta)?, &ll3)?)? } else { Tensor::zeros(&[b, 0, k], dt)? };
    let xi = if with_xi {
        let mut xs = Vec::with_capacity(t.saturating_sub(1));
        for tt in 0..t.saturating_sub(1) {
            let w = add(&select(log_e, 1, tt as isize + 1)?, &betas[tt + 1])?;
            let x = add(&add(&unsqueeze(&alphas[tt], 2)?, &trans_at(log_a, kind, tt)?)?, &unsqueeze(&w, 1)?)?;
            let x = sub(&x, &ll3)?;
            let cond = bool_tensor((0..b).map(|i| tt + 1 < lens[i] && fin[i]).collect(), &[b, 1, 1])?;
            xs.push(masked_exp(&cond, &x)?);
        }
        Some(match kind {
            TransKind::PerStep => {
                if xs.is_empty() {
                    Tensor::zeros(&[b, 0, k, k], dt)?
                } else {
                    stack(&xs, 1)?
                }
            }
            _ => {
                if xs.is_empty() {
                    Tensor::zeros(&[b, k, k], dt)?
                } else {
                    sum(&stack(&xs, 1)?, Some(&[1]), false)?
                }
            }
        })
    } else {
        None
    };
    Ok(Composite { ll, log_alpha, log_beta: Some(log_beta), gamma: Some(gamma), xi })
}

/// The Viterbi path's log-probability as a differentiable function of the
/// inputs, for a given path (`(B, T)`, -1 past each length): the sum of the
/// selected entries, built from one-hot weights.
pub fn path_log_prob(log_pi: &Tensor, log_a: &Tensor, log_e: &Tensor, path: &[i64], kind: TransKind) -> Result<Tensor> {
    let (b, t, k) = (log_e.shape()[0], log_e.shape()[1], log_e.shape()[2]);
    let dt = log_e.dtype();
    let (oh_pi, oh_a, oh_e) = one_hot_path(b, t, k, path, kind)?;
    // sum of the selected entries, masked first so that no -inf meets a zero weight
    let pick = |x: &Tensor, oh: Tensor, dims: &[isize]| -> Result<Tensor> {
        let mask = ne(&oh, &Tensor::zeros(&[], DType::F64)?)?;
        let sel = where_(&mask, x, &Tensor::zeros(&[], dt)?)?;
        sum(&mul(&sel, &as_dtype(&oh, dt)?)?, Some(dims), false)
    };
    let e_part = pick(log_e, oh_e, &[1, 2])?;
    let pi_part = pick(log_pi, oh_pi, &[1])?;
    let a_dims: &[isize] = if kind == TransKind::PerStep { &[1, 2, 3] } else { &[1, 2] };
    let a_part = pick(log_a, oh_a, a_dims)?;
    add(&add(&pi_part, &a_part)?, &e_part)
}

/// One-hot weights (float64) of a batch of paths: `(B, K)` for the initial
/// state, transition counts `(B, K, K)` (or `(B, T-1, K, K)` per step), and
/// `(B, T, K)` for the emissions.
pub fn one_hot_path(b: usize, t: usize, k: usize, path: &[i64], kind: TransKind) -> Result<(Tensor, Tensor, Tensor)> {
    let mut pi = vec![0.0; b * k];
    let steps = t.saturating_sub(1);
    let na = if kind == TransKind::PerStep { b * steps * k * k } else { b * k * k };
    let mut a = vec![0.0; na];
    let mut e = vec![0.0; b * t * k];
    for bi in 0..b {
        let p = &path[bi * t..(bi + 1) * t];
        let l = p.iter().take_while(|&&s| s >= 0).count();
        if l == 0 {
            continue;
        }
        pi[bi * k + p[0] as usize] = 1.0;
        for tt in 0..l {
            e[(bi * t + tt) * k + p[tt] as usize] = 1.0;
        }
        for tt in 0..l - 1 {
            let (i, j) = (p[tt] as usize, p[tt + 1] as usize);
            let off = if kind == TransKind::PerStep { (bi * steps + tt) * k * k } else { bi * k * k };
            a[off + i * k + j] += 1.0;
        }
    }
    let a_shape: Vec<usize> = if kind == TransKind::PerStep { vec![b, steps, k, k] } else { vec![b, k, k] };
    Ok((Tensor::from_vec(pi, &[b, k])?, Tensor::from_vec(a, &a_shape)?, Tensor::from_vec(e, &[b, t, k])?))
}
