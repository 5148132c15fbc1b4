//! The fused-op harness (`rbe_core::testing::check_fused_op`) over the ICLV
//! ops: fused equals the plain-op composite (values and gradients),
//! derivatives to third order against finite differences (the second order
//! goes through the fused `create_graph` backward, the third through the
//! backward of that backward), identical bits with 1 and 2 threads, on
//! small cases and on cases large enough to be split over threads. Also:
//! the `create_graph` first derivative equals the fused one (each path is
//! otherwise only checked against itself), tails and out-of-order thresholds
//! without NaN, and errors that name the argument.
use rbe_core::ext::{ops, run_backward, DType, Result, Tensor};
use rbe_core::testing::{check_fused_op, check_thread_bits, CheckOptions};
use rbe_iclv::{composite, expand_rows, log_mean_exp, mnl_logprob, mnl_probs, ordered_logprob, ordered_rho, panel_sum, Link};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn int(&mut self, n: usize) -> usize {
        ((self.next() * n as f64) as usize).min(n - 1)
    }
}

fn t(v: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

fn ordered_case(rng: &mut Rng, n: usize, r: usize, c: usize) -> (Tensor, Tensor, Vec<i64>) {
    let v: Vec<f64> = (0..n * r).map(|_| rng.normal()).collect();
    let mut tau: Vec<f64> = (0..c - 1).map(|_| 1.5 * rng.normal()).collect();
    tau.sort_by(|a, b| a.partial_cmp(b).unwrap());
    for k in 1..tau.len() {
        if tau[k] - tau[k - 1] < 0.3 {
            tau[k] = tau[k - 1] + 0.3;
        }
    }
    // every category appears (the edges first)
    let y: Vec<i64> = (0..n).map(|i| if i < c { i as i64 } else { rng.int(c) as i64 }).collect();
    (t(v, &[n, r]), t(tau, &[c - 1]), y)
}

fn opts(order: usize) -> CheckOptions {
    CheckOptions { order, fused_rtol: 1e-9, fused_atol: 1e-11, ..Default::default() }
}

#[test]
fn ordered_logprob_harness() {
    let mut rng = Rng(1);
    for link in [Link::Probit, Link::Logit] {
        for &(n, r, c) in &[(7usize, 3usize, 5usize), (5, 1, 2), (6, 4, 3)] {
            let (v, tau, y) = ordered_case(&mut rng, n, r, c);
            let yt = Tensor::from_vec(y.clone(), &[n]).unwrap();
            let fused = |x: &[Tensor]| Ok(vec![ordered_logprob(&x[0], &x[1], &yt, link)?]);
            let comp = |x: &[Tensor]| Ok(vec![composite::ordered_logprob(&x[0], &x[1], &y, link)?]);
            check_fused_op(&fused, &comp, &[v.clone(), tau.clone()], &[true, true], &opts(3))
                .unwrap_or_else(|e| panic!("{link:?} ({n}, {r}) C={c}: {e}"));
        }
    }
}

#[test]
fn ordered_rho_harness() {
    let mut rng = Rng(2);
    for link in [Link::Probit, Link::Logit] {
        let (v, tau, y) = ordered_case(&mut rng, 8, 3, 4);
        let yt = Tensor::from_vec(y.clone(), &[8]).unwrap();
        let fused = |x: &[Tensor]| {
            let (a, b) = ordered_rho(&x[0], &x[1], &yt, link)?;
            Ok(vec![a, b])
        };
        let comp = |x: &[Tensor]| {
            let (a, b) = composite::ordered_rho(&x[0], &x[1], &y, link)?;
            Ok(vec![a, b])
        };
        check_fused_op(&fused, &comp, &[v, tau], &[true, true], &opts(2)).unwrap_or_else(|e| panic!("{link:?}: {e}"));
    }
}

/// First derivatives of the `create_graph` path equal the fused backward's.
#[test]
fn create_graph_path_matches_fused() {
    let mut rng = Rng(3);
    for link in [Link::Probit, Link::Logit] {
        let (v, tau, y) = ordered_case(&mut rng, 9, 5, 5);
        let yt = Tensor::from_vec(y, &[9]).unwrap();
        v.set_requires_grad(true).unwrap();
        tau.set_requires_grad(true).unwrap();
        let w = t((0..45).map(|_| rng.normal()).collect(), &[9, 5]);
        let grads = |create: bool| -> Vec<Vec<f64>> {
            let out = ordered_logprob(&v, &tau, &yt, link).unwrap();
            let s = ops::reduce::sum(&ops::binary::mul(&out, &w).unwrap(), None, false).unwrap();
            let one = Tensor::full(&[], 1.0, DType::F64).unwrap();
            let g = run_backward(&[s], &[one], false, create, Some(&[v.clone(), tau.clone()]), false).unwrap();
            g.into_iter().map(|g| g.unwrap().contiguous().to_vec::<f64>()).collect()
        };
        let (a, b) = (grads(false), grads(true));
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{link:?}: fused {x} vs create_graph {y}");
        }
        // and the same for the rho node's second derivatives
        let hv = |create: bool| -> Vec<f64> {
            let (ra, rb) = ordered_rho(&v, &tau, &yt, link).unwrap();
            let s = ops::reduce::sum(
                &ops::binary::mul(&ops::binary::add(&ra, &ops::binary::mul_scalar(&rb, 0.7).unwrap()).unwrap(), &w).unwrap(),
                None,
                false,
            )
            .unwrap();
            let one = Tensor::full(&[], 1.0, DType::F64).unwrap();
            let g = run_backward(&[s], &[one], false, create, Some(&[v.clone(), tau.clone()]), false).unwrap();
            g.into_iter().flat_map(|g| g.unwrap().contiguous().to_vec::<f64>()).collect()
        };
        for (x, y) in hv(false).iter().zip(hv(true).iter()) {
            assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{link:?} rho: fused {x} vs create_graph {y}");
        }
    }
}

/// The gradient itself as the op (with the weights `w` of the outputs an
/// input): its derivatives go through the gradient nodes built under
/// `create_graph` (the exact Hessian's and the scores' path), including
/// the derivative with respect to the incoming gradient.
fn grad_of(f: &dyn Fn(&[Tensor]) -> Result<Tensor>, x: &[Tensor], n_wrt: usize) -> Result<Vec<Tensor>> {
    let out = f(x)?;
    let s = ops::reduce::sum(&ops::binary::mul(&out, &x[n_wrt])?, None, false)?;
    let one = Tensor::full(&[], 1.0, DType::F64)?;
    let g = run_backward(&[s], &[one], true, true, Some(&x[..n_wrt]), false)?;
    Ok(g.into_iter().map(|g| g.unwrap()).collect())
}

#[test]
fn gradient_nodes_harness() {
    let mut rng = Rng(8);
    for link in [Link::Probit, Link::Logit] {
        let (v, tau, y) = ordered_case(&mut rng, 7, 3, 5);
        let w = t((0..21).map(|_| rng.normal()).collect(), &[7, 3]);
        let yt = Tensor::from_vec(y.clone(), &[7]).unwrap();
        let fused = |x: &[Tensor]| grad_of(&|x: &[Tensor]| ordered_logprob(&x[0], &x[1], &yt, link), x, 2);
        let comp = |x: &[Tensor]| grad_of(&|x: &[Tensor]| composite::ordered_logprob(&x[0], &x[1], &y, link), x, 2);
        check_fused_op(&fused, &comp, &[v, tau, w], &[true; 3], &opts(2)).unwrap_or_else(|e| panic!("ordered {link:?}: {e}"));
    }
    let (us, ch, av) = mnl_case(&mut rng, 6, 3, 3, &[1]);
    let w = t((0..18).map(|_| rng.normal()).collect(), &[6, 3]);
    let cht = Tensor::from_vec(ch.clone(), &[6]).unwrap();
    let avt = Tensor::from_vec(av.clone(), &[6, 3]).unwrap();
    let mut inputs = us.clone();
    inputs.push(w);
    let fused = |x: &[Tensor]| grad_of(&|x: &[Tensor]| mnl_logprob(&x[..3], &cht, Some(&avt)), x, 3);
    let comp = |x: &[Tensor]| grad_of(&|x: &[Tensor]| composite::mnl_logprob(&x[..3], &ch, Some(&av)), x, 3);
    check_fused_op(&fused, &comp, &inputs, &[true; 4], &opts(2)).unwrap_or_else(|e| panic!("mnl: {e}"));
}

#[test]
fn ordered_tails_and_empty_intervals() {
    // deep tails: finite values and gradients, no NaN; equal or reversed thresholds: -inf with zero gradient
    let v = t(vec![-40.0, 40.0, 0.0, 1e3, -1e3, 0.5], &[3, 2]);
    let tau = t(vec![-1.0, 1.0, 1.0, 0.5], &[4]);
    let y = Tensor::from_vec(vec![1i64, 2, 3], &[3]).unwrap();
    for link in [Link::Probit, Link::Logit] {
        let vv = v.detach();
        vv.set_requires_grad(true).unwrap();
        let tt = tau.detach();
        tt.set_requires_grad(true).unwrap();
        let out = ordered_logprob(&vv, &tt, &y, link).unwrap();
        let o = out.to_vec::<f64>();
        let deep = if link == Link::Probit { -700.0 } else { -38.0 };
        assert!(o[0].is_finite() && o[1].is_finite() && o[0] < deep && o[1] < deep, "{link:?} tails {o:?}");
        assert_eq!(&o[2..6], &[f64::NEG_INFINITY; 4], "{link:?}: empty intervals give -inf");
        let s = ops::reduce::sum(
            &ops::binary::where_(&ops::unary::isfinite(&out).unwrap(), &out, &Tensor::zeros(&[], DType::F64).unwrap()).unwrap(),
            None,
            false,
        )
        .unwrap();
        let one = Tensor::full(&[], 1.0, DType::F64).unwrap();
        let g = run_backward(&[s], &[one], false, true, Some(&[vv.clone(), tt.clone()]), false).unwrap();
        let gv = g[0].as_ref().unwrap().to_vec::<f64>();
        assert!(gv.iter().all(|x| x.is_finite()), "{link:?}: {gv:?}");
        assert_eq!(&gv[2..], &[0.0; 4]);
        let g2 = run_backward(
            &[ops::reduce::sum(g[0].as_ref().unwrap(), None, false).unwrap()],
            &[Tensor::full(&[], 1.0, DType::F64).unwrap()],
            false,
            false,
            Some(std::slice::from_ref(&vv)),
            true,
        )
        .unwrap();
        let h = g2[0].as_ref().unwrap().to_vec::<f64>();
        assert!(h.iter().all(|x| x.is_finite()), "{link:?} second order: {h:?}");
        if link == Link::Probit {
            // d log Phi(v - tau) / dv ~ -(v - tau) for v - tau -> -inf, d2 -> -1
            assert!((gv[0] - 39.0).abs() < 0.1, "{gv:?}");
            assert!((h[0] + 1.0).abs() < 1e-2, "{h:?}");
        }
    }
}

fn mnl_case(rng: &mut Rng, m: usize, r: usize, nj: usize, narrow: &[usize]) -> (Vec<Tensor>, Vec<i64>, Vec<bool>) {
    let us: Vec<Tensor> = (0..nj)
        .map(|j| {
            let w = if narrow.contains(&j) { 1 } else { r };
            t((0..m * w).map(|_| rng.normal()).collect(), &[m, w])
        })
        .collect();
    let choice: Vec<i64> = (0..m).map(|_| rng.int(nj) as i64).collect();
    let avail: Vec<bool> = (0..m * nj).map(|e| choice[e / nj] as usize == e % nj || rng.next() > 0.3).collect();
    (us, choice, avail)
}

#[test]
fn mnl_harness() {
    let mut rng = Rng(4);
    for (with_av, narrow) in [(true, vec![1usize]), (false, vec![]), (true, vec![0, 2])] {
        let (us, ch, av) = mnl_case(&mut rng, 7, 3, 3, &narrow);
        let cht = Tensor::from_vec(ch.clone(), &[7]).unwrap();
        let avt = Tensor::from_vec(av.clone(), &[7, 3]).unwrap();
        let avo = if with_av { Some(&avt) } else { None };
        let avs = if with_av { Some(&av[..]) } else { None };
        let fused = |x: &[Tensor]| Ok(vec![mnl_logprob(x, &cht, avo)?]);
        let comp = |x: &[Tensor]| Ok(vec![composite::mnl_logprob(x, &ch, avs)?]);
        check_fused_op(&fused, &comp, &us, &[true; 3], &opts(3)).unwrap_or_else(|e| panic!("avail {with_av} narrow {narrow:?}: {e}"));
        let fusedp = |x: &[Tensor]| mnl_probs(x, &cht, avo);
        let compp = |x: &[Tensor]| -> Result<Vec<Tensor>> {
            // P_j = exp(log P(choice = j)) for every j
            (0..3)
                .map(|j| {
                    let cj = vec![j as i64; 7];
                    let lp = composite::mnl_logprob(x, &cj, None)?;
                    let ok: Vec<f64> = (0..7).map(|i| if avs.is_none_or(|a| a[i * 3 + j]) { 1.0 } else { 0.0 }).collect();
                    let _ = &lp;
                    let lp = match avs {
                        Some(a) => {
                            // masked log-sum-exp with the availability of every row
                            let base = composite::mnl_logprob(x, &ch, Some(a))?;
                            let uc = composite::mnl_logprob(x, &ch, None)?;
                            // log P_j = u_j - lse_avail = lp_j(all) + (lse_all - lse_avail) = lp + (base - uc)
                            ops::binary::add(&lp, &ops::binary::sub(&base, &uc)?)?
                        }
                        None => lp,
                    };
                    ops::binary::mul(&ops::unary::exp(&lp)?, &t(ok, &[7, 1]))
                })
                .collect()
        };
        check_fused_op(&fusedp, &compp, &us, &[true; 3], &opts(2)).unwrap_or_else(|e| panic!("probs avail {with_av}: {e}"));
    }
}

#[test]
fn panel_and_expand_harness() {
    let mut rng = Rng(5);
    let off = vec![0i64, 3, 3, 4, 8];
    let offt = Tensor::from_vec(off.clone(), &[5]).unwrap();
    let x = t((0..16).map(|_| rng.normal()).collect(), &[8, 2]);
    let fused = |a: &[Tensor]| Ok(vec![panel_sum(&a[0], &offt)?]);
    let comp = |a: &[Tensor]| Ok(vec![composite::panel_sum(&a[0], &off)?]);
    check_fused_op(&fused, &comp, &[x], &[true], &opts(3)).unwrap();
    let g = t((0..8).map(|_| rng.normal()).collect(), &[4, 2]);
    let fused = |a: &[Tensor]| Ok(vec![expand_rows(&a[0], &offt)?]);
    let comp = |a: &[Tensor]| Ok(vec![composite::expand_rows(&a[0], &off)?]);
    check_fused_op(&fused, &comp, &[g], &[true], &opts(3)).unwrap();
}

#[test]
fn log_mean_exp_harness() {
    let mut rng = Rng(6);
    let x = t((0..24).map(|_| 3.0 * rng.normal()).collect(), &[4, 6]);
    let w = t((0..6).map(|_| rng.normal() - 2.0).collect(), &[6]);
    let fused = |a: &[Tensor]| Ok(vec![log_mean_exp(&a[0], None)?]);
    let comp = |a: &[Tensor]| Ok(vec![composite::log_mean_exp(&a[0], None)?]);
    check_fused_op(&fused, &comp, std::slice::from_ref(&x), &[true], &opts(3)).unwrap();
    let fused = |a: &[Tensor]| Ok(vec![log_mean_exp(&a[0], Some(&a[1]))?]);
    let comp = |a: &[Tensor]| Ok(vec![composite::log_mean_exp(&a[0], Some(&a[1]))?]);
    check_fused_op(&fused, &comp, &[x, w], &[true, true], &opts(2)).unwrap();
    // large offsets: the shift is subtracted first
    let big = t(vec![1e5, 1e5 + 1.0, -1e5, -1e5 - 2.0], &[2, 2]);
    let o = log_mean_exp(&big, None).unwrap().to_vec::<f64>();
    let e = |a: f64, b: f64| a.max(b) + ((a - a.max(b)).exp() + (b - a.max(b)).exp()).ln() - 2f64.ln();
    assert!((o[0] - e(1e5, 1e5 + 1.0)).abs() < 1e-10 && (o[1] - e(-1e5, -1e5 - 2.0)).abs() < 1e-10, "{o:?}");
}

/// Inputs large enough that the kernels split over threads: identical bits.
#[test]
fn thread_bits_on_large_inputs() {
    let mut rng = Rng(7);
    for link in [Link::Probit, Link::Logit] {
        let (v, tau, y) = ordered_case(&mut rng, 700, 60, 5);
        let yt = Tensor::from_vec(y, &[700]).unwrap();
        let f = |x: &[Tensor]| Ok(vec![ordered_logprob(&x[0], &x[1], &yt, link)?]);
        check_thread_bits(&f, &[v.clone(), tau.clone()], &[true, true], &[1, 2]).unwrap();
        let f = |x: &[Tensor]| {
            let (a, b) = ordered_rho(&x[0], &x[1], &yt, link)?;
            Ok(vec![a, b])
        };
        check_thread_bits(&f, &[v, tau], &[true, true], &[1, 2]).unwrap();
    }
    let (us, ch, av) = mnl_case(&mut rng, 3000, 100, 4, &[3]);
    let cht = Tensor::from_vec(ch, &[3000]).unwrap();
    let avt = Tensor::from_vec(av, &[3000, 4]).unwrap();
    let f = |x: &[Tensor]| Ok(vec![mnl_logprob(x, &cht, Some(&avt))?]);
    check_thread_bits(&f, &us, &[true; 4], &[1, 2]).unwrap();
    let n = 2000;
    let off: Vec<i64> = (0..=n).map(|i| (i * 10) as i64).collect();
    let offt = Tensor::from_vec(off, &[n + 1]).unwrap();
    let x = t((0..n * 10 * 100).map(|_| rng.normal()).collect(), &[n * 10, 100]);
    let f = |a: &[Tensor]| Ok(vec![log_mean_exp(&panel_sum(&a[0], &offt)?, None)?]);
    check_thread_bits(&f, &[x], &[true], &[1, 2]).unwrap();
}

#[test]
fn errors_name_the_argument() {
    let v = t(vec![0.0; 6], &[3, 2]);
    let tau = t(vec![-1.0, 1.0], &[2]);
    let y = Tensor::from_vec(vec![0i64, 1, 3], &[3]).unwrap();
    let e = ordered_logprob(&v, &tau, &y, Link::Probit).unwrap_err().to_string();
    assert!(e.contains("y[2] = 3"), "{e}");
    let y2 = Tensor::from_vec(vec![0i64, 1], &[2]).unwrap();
    let e = ordered_logprob(&v, &tau, &y2, Link::Probit).unwrap_err().to_string();
    assert!(e.contains("categories y"), "{e}");
    let e = ordered_logprob(&v.to_dtype_f32(), &tau, &y, Link::Probit).unwrap_err().to_string();
    assert!(e.contains("float64"), "{e}");
    let off = Tensor::from_vec(vec![0i64, 2, 1, 3], &[4]).unwrap();
    let e = panel_sum(&v, &off).unwrap_err().to_string();
    assert!(e.contains("non-decreasing"), "{e}");
    let off = Tensor::from_vec(vec![0i64, 2], &[2]).unwrap();
    let e = panel_sum(&v, &off).unwrap_err().to_string();
    assert!(e.contains("number of rows 3"), "{e}");
    let ch = Tensor::from_vec(vec![0i64, 1, 1], &[3]).unwrap();
    let av = Tensor::from_vec(vec![true, true, true, false, true, true], &[3, 2]).unwrap();
    let e = mnl_logprob(&[v.clone(), v.clone()], &ch, Some(&av)).unwrap_err().to_string();
    assert!(e.contains("row 1 is unavailable"), "{e}");
    let e = log_mean_exp(&v, Some(&t(vec![0.0; 3], &[3]))).unwrap_err().to_string();
    assert!(e.contains("log_weights"), "{e}");
}

trait F32 {
    fn to_dtype_f32(&self) -> Tensor;
}
impl F32 for Tensor {
    fn to_dtype_f32(&self) -> Tensor {
        ops::as_dtype(self, DType::F32).unwrap()
    }
}
