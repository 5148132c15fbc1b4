//! The fused-op test harness, usable from the tests of any crate that adds
//! ops (the core's own and every front-end's).
//!
//! Every fused op goes through [`check_fused_op`]:
//! 1. **fused equals composite**: values and first-order gradients of the
//!    fused op agree with a reference written with plain differentiable ops;
//! 2. **derivatives to any order** ([`check_derivatives`]): the gradient of
//!    `S_1 = sum_j <u_j, f_j(x)>` against central finite differences, then of
//!    `S_2 = sum_i <v_i, dS_1/dx_i>` (computed with `create_graph`), and so on
//!    up to the order asked (2 is gradgradcheck; PINNs ask 3);
//! 3. **identical bits with 1 and 2 threads**: outputs and gradients.
//!
//! The random weights come from a fixed seed, so a failure reproduces.
use crate::autograd::{run_backward, GradModeGuard};
use crate::dtype::DType;
use crate::error::Result;
use crate::ops::{binary, reduce};
use crate::tensor::Tensor;

/// A function of several tensors with several outputs.
pub type MultiFn<'a> = dyn Fn(&[Tensor]) -> Result<Vec<Tensor>> + 'a;

/// Tolerances and settings of the harness (torch's gradcheck defaults).
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Highest derivative order checked against finite differences.
    pub order: usize,
    /// Seed of the random projection weights.
    pub seed: u64,
    /// Tolerances of fused against composite.
    pub fused_rtol: f64,
    pub fused_atol: f64,
    /// Thread counts whose results must have identical bits.
    pub threads: Vec<usize>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            order: 2,
            seed: 0x5eed,
            fused_rtol: 1e-10,
            fused_atol: 1e-12,
            threads: vec![1, 2],
        }
    }
}

/// Deterministic weights in [-1.5, -0.5] U [0.5, 1.5] (never near zero, so
/// no output or gradient entry escapes the check).
fn weights(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            if u < 0.5 {
                -1.5 + 2.0 * u
            } else {
                0.5 + 2.0 * (u - 0.5)
            }
        })
        .collect()
}

fn weighted_sum(ts: &[Option<Tensor>], seed: u64) -> Result<Option<Tensor>> {
    let mut acc: Option<Tensor> = None;
    for (k, t) in ts.iter().enumerate() {
        let Some(t) = t else { continue };
        if !t.dtype().is_float() {
            continue;
        }
        let w = Tensor::from_vec(weights(t.numel(), seed.wrapping_add(k as u64 * 7919)), t.shape())?;
        let w = crate::ops::as_dtype(&w, t.dtype())?;
        let s = reduce::sum(&binary::mul(t, &w)?, None, false)?;
        let s = crate::ops::as_dtype(&s, DType::F64)?;
        acc = Some(match acc {
            None => s,
            Some(a) => binary::add(&a, &s)?,
        });
    }
    Ok(acc)
}

/// Leaves for `values`, requiring grad where `diff[i]`.
fn leaves(values: &[Tensor], diff: &[bool]) -> Result<Vec<Tensor>> {
    values
        .iter()
        .zip(diff)
        .map(|(v, &d)| {
            let t = v.detach().contiguous();
            let t = if t.same(v) { crate::kernels::copy_contiguous(v) } else { t };
            if d {
                t.set_requires_grad(true)?;
            }
            Ok(t)
        })
        .collect()
}

/// `S_order(x)` (see the module docs), with its graph when `graph`.
fn projected(f: &MultiFn, x: &[Tensor], diff: &[bool], order: usize, seed: u64) -> Result<Tensor> {
    let outs: Vec<Option<Tensor>> = f(x)?.into_iter().map(Some).collect();
    let mut s = weighted_sum(&outs, seed)?.ok_or_else(|| crate::value_err!("check: the function has no floating point output"))?;
    for level in 2..=order {
        let wrt: Vec<Tensor> = x.iter().zip(diff).filter(|(_, &d)| d).map(|(t, _)| t.clone()).collect();
        if !s.requires_grad() {
            return binary::mul_scalar(&s, 0.0);
        }
        let one = Tensor::ones(&[], s.dtype())?;
        let g = run_backward(&[s.clone()], &[one], true, true, Some(&wrt), true)?;
        s = match weighted_sum(&g, seed.wrapping_add(level as u64 * 104_729))? {
            Some(v) => v,
            None => Tensor::zeros(&[], DType::F64)?,
        };
    }
    Ok(s)
}

fn close(a: f64, b: f64, atol: f64, rtol: f64) -> bool {
    (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan())
}

/// Checks the derivatives of `f` at `inputs` (float64, the ones with
/// `diff[i]` differentiated) against central finite differences, for every
/// order from 1 to `opts.order`. Returns a description of the first mismatch.
pub fn check_derivatives(f: &MultiFn, inputs: &[Tensor], diff: &[bool], opts: &CheckOptions) -> std::result::Result<(), String> {
    let run = || -> Result<std::result::Result<(), String>> {
        for order in 1..=opts.order {
            let x = leaves(inputs, diff)?;
            let s = projected(f, &x, diff, order, opts.seed)?;
            let wrt: Vec<Tensor> = x.iter().zip(diff).filter(|(_, &d)| d).map(|(t, _)| t.clone()).collect();
            let analytic = if s.requires_grad() {
                let one = Tensor::ones(&[], s.dtype())?;
                run_backward(&[s], &[one], false, false, Some(&wrt), true)?
            } else {
                vec![None; wrt.len()]
            };
            let mut k = 0;
            for (i, inp) in inputs.iter().enumerate() {
                if !diff[i] {
                    continue;
                }
                let a = match &analytic[k] {
                    Some(g) => g.to_vec::<f64>(),
                    None => vec![0.0; inp.numel()],
                };
                k += 1;
                let base = inp.to_vec::<f64>();
                for e in 0..base.len() {
                    let eval = |delta: f64| -> Result<f64> {
                        let mut v = base.clone();
                        v[e] += delta;
                        let mut xs: Vec<Tensor> = inputs.to_vec();
                        xs[i] = crate::ops::as_dtype(&Tensor::from_vec(v, inp.shape())?, inp.dtype())?;
                        let xs = leaves(&xs, diff)?;
                        let _g = GradModeGuard::new(true);
                        projected(f, &xs, diff, order, opts.seed)?.item_f64()
                    };
                    let num = (eval(opts.eps)? - eval(-opts.eps)?) / (2.0 * opts.eps);
                    if !close(a[e], num, opts.atol, opts.rtol) {
                        return Ok(Err(format!(
                            "order {order}: d/d input {i} [element {e}]: analytic {} vs finite difference {num} (atol {}, rtol {})",
                            a[e], opts.atol, opts.rtol
                        )));
                    }
                }
            }
        }
        Ok(Ok(()))
    };
    run().unwrap_or_else(|e| Err(format!("error while checking derivatives: {e}")))
}

/// Values, and gradients of a random projection, of `f` at `inputs`.
fn values_and_grads(f: &MultiFn, inputs: &[Tensor], diff: &[bool], seed: u64) -> Result<(Vec<Tensor>, Vec<Option<Tensor>>)> {
    let x = leaves(inputs, diff)?;
    let outs = f(&x)?;
    let wrt: Vec<Tensor> = x.iter().zip(diff).filter(|(_, &d)| d).map(|(t, _)| t.clone()).collect();
    let s = weighted_sum(&outs.iter().cloned().map(Some).collect::<Vec<_>>(), seed)?;
    let grads = match s {
        Some(s) if s.requires_grad() && !wrt.is_empty() => {
            let one = Tensor::ones(&[], s.dtype())?;
            run_backward(&[s], &[one], false, false, Some(&wrt), true)?
        }
        _ => vec![None; wrt.len()],
    };
    Ok((outs.into_iter().map(|o| o.detach()).collect(), grads))
}

fn compare(what: &str, a: &Tensor, b: &Tensor, atol: f64, rtol: f64) -> std::result::Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("{what}: shapes differ, {:?} vs {:?}", a.shape(), b.shape()));
    }
    let (va, vb) = (a.to_vec::<f64>(), b.to_vec::<f64>());
    for (e, (x, y)) in va.iter().zip(&vb).enumerate() {
        if !(close(*x, *y, atol, rtol) || x == y) {
            return Err(format!("{what} [element {e}]: {x} vs {y} (atol {atol}, rtol {rtol})"));
        }
    }
    Ok(())
}

/// The fused op and its composite reference agree on values and on the
/// gradient of a random projection of the outputs.
pub fn check_matches_composite(
    fused: &MultiFn,
    composite: &MultiFn,
    inputs: &[Tensor],
    diff: &[bool],
    atol: f64,
    rtol: f64,
) -> std::result::Result<(), String> {
    let run = || -> Result<std::result::Result<(), String>> {
        let (fo, fg) = values_and_grads(fused, inputs, diff, 17)?;
        let (co, cg) = values_and_grads(composite, inputs, diff, 17)?;
        if fo.len() != co.len() {
            return Ok(Err(format!("fused has {} outputs, composite {}", fo.len(), co.len())));
        }
        for (k, (a, b)) in fo.iter().zip(&co).enumerate() {
            if let Err(e) = compare(&format!("output {k}"), a, b, atol, rtol) {
                return Ok(Err(e));
            }
        }
        for (k, (a, b)) in fg.iter().zip(&cg).enumerate() {
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a.clone(), b.clone()),
                (None, None) => continue,
                (Some(a), None) => (a.clone(), Tensor::zeros(a.shape(), a.dtype())?),
                (None, Some(b)) => (Tensor::zeros(b.shape(), b.dtype())?, b.clone()),
            };
            if let Err(e) = compare(&format!("gradient of differentiated input {k}"), &a, &b, atol, rtol) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    };
    run().unwrap_or_else(|e| Err(format!("error while comparing fused and composite: {e}")))
}

fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype() {
        DType::F32 => t.to_vec::<f32>().iter().map(|v| v.to_bits() as u64).collect(),
        DType::F64 => t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect(),
        DType::I64 => t.to_vec::<i64>().iter().map(|&v| v as u64).collect(),
        DType::Bool => t.to_vec::<bool>().iter().map(|&v| v as u64).collect(),
    }
}

/// Outputs and gradients of `f` have the same bits for every thread count in `threads`.
pub fn check_thread_bits(f: &MultiFn, inputs: &[Tensor], diff: &[bool], threads: &[usize]) -> std::result::Result<(), String> {
    let mut reference: Option<(usize, Vec<Vec<u64>>)> = None;
    for &n in threads {
        let r = crate::parallel::with_num_threads(n, || -> Result<Vec<Vec<u64>>> {
            let (outs, grads) = values_and_grads(f, inputs, diff, 23)?;
            let mut v: Vec<Vec<u64>> = outs.iter().map(bits).collect();
            v.extend(grads.iter().map(|g| g.as_ref().map(bits).unwrap_or_default()));
            Ok(v)
        });
        let got = match r {
            Ok(Ok(v)) => v,
            Ok(Err(e)) | Err(e) => return Err(format!("error with {n} threads: {e}")),
        };
        match &reference {
            None => reference = Some((n, got)),
            Some((m, want)) => {
                if let Some(k) = (0..want.len()).find(|&k| want[k] != got[k]) {
                    return Err(format!("result {k} (outputs first, then gradients) differs between {m} and {n} threads"));
                }
            }
        }
    }
    Ok(())
}

/// Everything a fused op must pass: [`check_matches_composite`] at the
/// inputs' dtype, [`check_derivatives`] in float64 up to `opts.order`, and
/// [`check_thread_bits`]. `inputs` may be float32 or float64; the derivative
/// check runs on float64 copies.
pub fn check_fused_op(
    fused: &MultiFn,
    composite: &MultiFn,
    inputs: &[Tensor],
    diff: &[bool],
    opts: &CheckOptions,
) -> std::result::Result<(), String> {
    if inputs.len() != diff.len() {
        return Err(format!("check_fused_op: {} inputs but {} diff flags", inputs.len(), diff.len()));
    }
    check_matches_composite(fused, composite, inputs, diff, opts.fused_atol, opts.fused_rtol)
        .map_err(|e| format!("fused vs composite: {e}"))?;
    let as64: Vec<Tensor> =
        inputs.iter().map(|t| if t.dtype() == DType::F32 { crate::kernels::cast(t, DType::F64) } else { t.clone() }).collect();
    check_derivatives(fused, &as64, diff, opts).map_err(|e| format!("derivatives of the fused op: {e}"))?;
    check_thread_bits(fused, inputs, diff, &opts.threads).map_err(|e| format!("thread counts: {e}"))?;
    Ok(())
}

/// Central finite-difference gradient of a scalar function of one tensor
/// (float64), as a plain vector.
pub fn finite_difference(f: &dyn Fn(&Tensor) -> Result<Tensor>, x: &Tensor, eps: f64) -> Result<Vec<f64>> {
    let _ng = GradModeGuard::new(false);
    let base = x.to_vec::<f64>();
    (0..base.len())
        .map(|i| {
            let mut p = base.clone();
            p[i] += eps;
            let mut m = base.clone();
            m[i] -= eps;
            let fp = f(&Tensor::from_vec(p, x.shape())?)?.item_f64()?;
            let fm = f(&Tensor::from_vec(m, x.shape())?)?.item_f64()?;
            Ok((fp - fm) / (2.0 * eps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::unary;

    fn t(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape).unwrap()
    }

    #[test]
    fn harness_accepts_a_correct_op_to_third_order() {
        let f = |x: &[Tensor]| -> Result<Vec<Tensor>> { Ok(vec![unary::tanh(&binary::mul(&x[0], &x[1])?)?]) };
        let g = |x: &[Tensor]| -> Result<Vec<Tensor>> {
            let z = binary::mul(&x[0], &x[1])?;
            let e = unary::exp(&binary::mul_scalar(&z, 2.0)?)?;
            Ok(vec![binary::div(&binary::sub(&e, &Tensor::ones(&[], DType::F64)?)?, &binary::add(&e, &Tensor::ones(&[], DType::F64)?)?)?])
        };
        let x = [t(&[0.3, -0.7, 1.1], &[3]), t(&[0.5, 0.2, -0.4], &[3])];
        let opts = CheckOptions { order: 3, fused_rtol: 1e-12, fused_atol: 1e-14, ..CheckOptions::default() };
        check_fused_op(&f, &g, &x, &[true, true], &opts).unwrap();
    }

    #[test]
    fn harness_rejects_a_wrong_gradient() {
        // y = x^2 with a backward that forgets the factor 2
        let f = |x: &[Tensor]| -> Result<Vec<Tensor>> {
            let y = crate::kernels::map1::<f64, f64>(&x[0], |v| v * v);
            if crate::autograd::needs_grad(&[&x[0]]) {
                let xs = x[0].clone();
                crate::autograd::attach(&y, "Bad", &[&x[0]], false, move |_, g| Ok(vec![Some(binary::mul(g, &xs)?)]));
            }
            Ok(vec![y])
        };
        let x = [t(&[0.3, -0.7], &[2])];
        let e = check_derivatives(&f, &x, &[true], &CheckOptions { order: 1, ..CheckOptions::default() }).unwrap_err();
        assert!(e.contains("order 1"), "{e}");
    }

    #[test]
    fn harness_rejects_a_wrong_second_derivative() {
        // first derivative right (cos), but its backward claims d(cos)/dx = +sin
        let f = |x: &[Tensor]| -> Result<Vec<Tensor>> {
            let y = unary::sin(&x[0].detach())?;
            if crate::autograd::needs_grad(&[&x[0]]) {
                let xs = x[0].clone();
                crate::autograd::attach(&y, "BadSin", &[&x[0]], false, move |_, g| {
                    let c = crate::kernels::map1::<f64, f64>(&xs.detach(), |v| v.cos());
                    if crate::autograd::is_grad_enabled() {
                        let xs2 = xs.clone();
                        crate::autograd::attach(&c, "BadCos", &[&xs], false, move |_, g2| {
                            Ok(vec![Some(binary::mul(g2, &unary::sin(&xs2.detach())?)?)])
                        });
                    }
                    Ok(vec![Some(binary::mul(g, &c)?)])
                });
            }
            Ok(vec![y])
        };
        let x = [t(&[0.3, -0.7], &[2])];
        check_derivatives(&f, &x, &[true], &CheckOptions { order: 1, ..CheckOptions::default() }).unwrap();
        let e = check_derivatives(&f, &x, &[true], &CheckOptions { order: 2, ..CheckOptions::default() }).unwrap_err();
        assert!(e.contains("order 2"), "{e}");
    }

    #[test]
    fn harness_rejects_fused_composite_mismatch() {
        let f = |x: &[Tensor]| -> Result<Vec<Tensor>> { Ok(vec![unary::exp(&x[0])?]) };
        let g = |x: &[Tensor]| -> Result<Vec<Tensor>> { Ok(vec![binary::mul_scalar(&unary::exp(&x[0])?, 1.0 + 1e-6)?]) };
        let x = [t(&[0.3, -0.7], &[2])];
        assert!(check_matches_composite(&f, &g, &x, &[true], 1e-12, 1e-10).unwrap_err().contains("output 0"));
    }

    #[test]
    fn harness_rejects_thread_dependent_results() {
        // a "kernel" whose result depends on the pool size
        let f = |x: &[Tensor]| -> Result<Vec<Tensor>> {
            let n = crate::parallel::num_threads() as f64;
            Ok(vec![binary::mul_scalar(&x[0], 1.0 + n * 1e-16)?])
        };
        let x = [t(&[0.3, 0.7], &[2])];
        assert!(check_thread_bits(&f, &x, &[true], &[1, 2]).is_err());
    }

    #[test]
    fn finite_difference_of_a_square() {
        let g = finite_difference(&|x| reduce::sum(&binary::mul(x, x)?, None, false), &t(&[1.0, -2.0], &[2]), 1e-6).unwrap();
        assert!((g[0] - 2.0).abs() < 1e-6 && (g[1] + 4.0).abs() < 1e-6);
    }
}
