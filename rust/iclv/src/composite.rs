//! The ICLV functions written with the core's plain differentiable ops: the
//! references the fused ops are checked against (`tests/harness.rs`). They
//! use the direct formulas (`log(F(b) - F(a))`, a stacked log-sum-exp,
//! `index_add`), accurate for the moderate arguments of the tests; the
//! fused kernels are the ones that stay accurate in the tails.
use crate::kernels::Link;
use rbe_core::ext::ops::binary::{add, add_scalar, div, mul, mul_scalar, sub, where_};
use rbe_core::ext::ops::index::{index_add, index_select};
use rbe_core::ext::ops::reduce::logsumexp;
use rbe_core::ext::ops::shape::{reshape, stack};
use rbe_core::ext::ops::unary::{exp, log, sigmoid, unary, Fun};
use rbe_core::ext::{DType, Result, Tensor};

fn cdf(link: Link, x: &Tensor) -> Result<Tensor> {
    match link {
        Link::Probit => unary(Fun::Ndtr, x),
        Link::Logit => sigmoid(x),
    }
}

fn pdf(link: Link, x: &Tensor) -> Result<Tensor> {
    match link {
        Link::Probit => mul_scalar(&exp(&mul_scalar(&mul(x, x)?, -0.5)?)?, 1.0 / (2.0 * std::f64::consts::PI).sqrt()),
        Link::Logit => {
            let s = sigmoid(x)?;
            mul(&s, &add_scalar(&mul_scalar(&s, -1.0)?, 1.0)?)
        }
    }
}

/// `(a, b, lo_inf, hi_inf)`: `a = tau_{y-1} - v`, `b = tau_y - v` as `(n, r)`
/// (0 stand-ins at the infinite ends) and the bool masks `(n, 1)` of the
/// infinite ends.
fn bounds(v: &Tensor, tau: &Tensor, y: &[i64]) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let n = v.shape()[0];
    let r = v.shape()[1..].iter().product::<usize>();
    let c1 = tau.shape()[0] as i64;
    let z = Tensor::zeros(&[1], DType::F64)?;
    let ext = rbe_core::ext::ops::shape::cat(&[z.clone(), tau.clone(), z], 0)?;
    let lo_i = Tensor::from_vec(y.to_vec(), &[n])?;
    let hi_i = Tensor::from_vec(y.iter().map(|k| k + 1).collect::<Vec<i64>>(), &[n])?;
    let v2 = reshape(v, &[n, r])?;
    let a = sub(&reshape(&index_select(&ext, 0, &lo_i)?, &[n, 1])?, &v2)?;
    let b = sub(&reshape(&index_select(&ext, 0, &hi_i)?, &[n, 1])?, &v2)?;
    let lo_inf = Tensor::from_vec(y.iter().map(|&k| k == 0).collect::<Vec<bool>>(), &[n, 1])?;
    let hi_inf = Tensor::from_vec(y.iter().map(|&k| k == c1).collect::<Vec<bool>>(), &[n, 1])?;
    Ok((a, b, lo_inf, hi_inf))
}

/// `log(F(b) - F(a))` with `F(a) = 0` and `F(b) = 1` at the infinite ends.
pub fn ordered_logprob(v: &Tensor, tau: &Tensor, y: &[i64], link: Link) -> Result<Tensor> {
    let (a, b, lo_inf, hi_inf) = bounds(v, tau, y)?;
    let zero = Tensor::zeros(&[], DType::F64)?;
    let one = Tensor::full(&[], 1.0, DType::F64)?;
    let fb = where_(&hi_inf, &one, &cdf(link, &b)?)?;
    let fa = where_(&lo_inf, &zero, &cdf(link, &a)?)?;
    reshape(&log(&sub(&fb, &fa)?)?, v.shape())
}

/// `(f(a) / P, f(b) / P)` (0 at the infinite ends).
pub fn ordered_rho(v: &Tensor, tau: &Tensor, y: &[i64], link: Link) -> Result<(Tensor, Tensor)> {
    let (a, b, lo_inf, hi_inf) = bounds(v, tau, y)?;
    let zero = Tensor::zeros(&[], DType::F64)?;
    let one = Tensor::full(&[], 1.0, DType::F64)?;
    let p = sub(&where_(&hi_inf, &one, &cdf(link, &b)?)?, &where_(&lo_inf, &zero, &cdf(link, &a)?)?)?;
    let ra = where_(&lo_inf, &zero, &div(&pdf(link, &a)?, &p)?)?;
    let rb = where_(&hi_inf, &zero, &div(&pdf(link, &b)?, &p)?)?;
    Ok((reshape(&ra, v.shape())?, reshape(&rb, v.shape())?))
}

/// `u_c - log sum_{j avail} exp(u_j)` with a stacked log-sum-exp.
pub fn mnl_logprob(us: &[Tensor], choice: &[i64], avail: Option<&[bool]>) -> Result<Tensor> {
    let m = choice.len();
    let nj = us.len();
    let r = us.iter().map(|u| u.shape()[1]).max().unwrap_or(1);
    let ninf = Tensor::full(&[], f64::NEG_INFINITY, DType::F64)?;
    let mut masked = Vec::new();
    let mut chosen: Option<Tensor> = None;
    for (j, u) in us.iter().enumerate() {
        let ue = rbe_core::ext::ops::shape::expand(u, &[m, r])?;
        let hit = Tensor::from_vec(choice.iter().map(|&c| if c as usize == j { 1.0 } else { 0.0 }).collect::<Vec<f64>>(), &[m, 1])?;
        let t = mul(&ue, &hit)?;
        chosen = Some(match chosen {
            Some(c) => add(&c, &t)?,
            None => t,
        });
        masked.push(match avail {
            Some(a) => {
                let ok = Tensor::from_vec((0..m).map(|i| a[i * nj + j]).collect::<Vec<bool>>(), &[m, 1])?;
                where_(&ok, &ue, &ninf)?
            }
            None => ue,
        });
    }
    let lse = logsumexp(&stack(&masked, 2)?, Some(&[2]), false)?;
    match chosen {
        Some(c) => sub(&c, &lse),
        None => Ok(lse),
    }
}

/// `index_add` of the rows into their individuals.
pub fn panel_sum(x: &Tensor, offsets: &[i64]) -> Result<Tensor> {
    let n = offsets.len() - 1;
    let ind: Vec<i64> = (0..n).flat_map(|i| std::iter::repeat_n(i as i64, (offsets[i + 1] - offsets[i]) as usize)).collect();
    let mut shape = x.shape().to_vec();
    shape[0] = n;
    let m = ind.len();
    index_add(&Tensor::zeros(&shape, DType::F64)?, 0, &Tensor::from_vec(ind, &[m])?, x)
}

/// `index_select` of each row's individual.
pub fn expand_rows(x: &Tensor, offsets: &[i64]) -> Result<Tensor> {
    let n = offsets.len() - 1;
    let ind: Vec<i64> = (0..n).flat_map(|i| std::iter::repeat_n(i as i64, (offsets[i + 1] - offsets[i]) as usize)).collect();
    let m = ind.len();
    index_select(x, 0, &Tensor::from_vec(ind, &[m])?)
}

/// `logsumexp(x + c)` over the last dimension.
pub fn log_mean_exp(x: &Tensor, log_weights: Option<&Tensor>) -> Result<Tensor> {
    let r = x.shape()[1];
    let xs = match log_weights {
        Some(w) => add(x, w)?,
        None => add_scalar(x, -(r as f64).ln())?,
    };
    logsumexp(&xs, Some(&[1]), false)
}
