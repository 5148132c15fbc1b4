//! Long sequences: T = 10,000 steps, K = 100 states, emissions spread over 100
//! nats per step (log-likelihoods near -5e4): finite log-likelihoods,
//! posteriors summing to 1 at every step, expected counts summing to T - 1,
//! float32 within a relative tolerance of float64, and a left-to-right model
//! that keeps its zeros. (About a second in release mode.)
mod common;
use common::*;
use rbe_core::ext::{ops, DType, Tensor};
use rbe_hmm::{hmm_log_likelihood, hmm_posteriors, hmm_viterbi, TransKind};
use std::time::Instant;

#[test]
fn ten_thousand_steps_hundred_states() {
    let (t, k) = (10_000, 100);
    let c = Case::random(1, t, k, TransKind::Shared, false, vec![t], 99, 100.0);
    let [pi, a, e] = c.tensors(DType::F64);
    let t0 = Instant::now();
    let p = hmm_posteriors(&pi, &a, &e, None, true).unwrap();
    let ll = p.log_likelihood.to_vec::<f64>()[0];
    assert!(ll.is_finite() && ll < -1e4, "{ll}");
    let g = p.gamma.to_vec::<f64>();
    for tt in 0..t {
        let s: f64 = g[tt * k..(tt + 1) * k].iter().sum();
        assert!((s - 1.0).abs() < 1e-12, "step {tt}: posteriors sum to {s}");
    }
    let xs: f64 = p.xi.unwrap().to_vec::<f64>().iter().sum();
    assert!((xs - (t - 1) as f64).abs() < 1e-8 * t as f64, "{xs}");
    // log_alpha at the end and log_beta at the start both give the log-likelihood
    let la = p.log_alpha.to_vec::<f64>();
    let lb = p.log_beta.to_vec::<f64>();
    let lse = |v: &[f64]| {
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    assert_close("alpha end", lse(&la[(t - 1) * k..]), ll, 1e-12, 0.0);
    let first: Vec<f64> = (0..k).map(|j| la[j] + lb[j]).collect();
    assert_close("alpha*beta start", lse(&first), ll, 1e-12, 0.0);
    let v = hmm_viterbi(&pi, &a, &e, None).unwrap().log_prob.to_vec::<f64>()[0];
    assert!(v <= ll && v.is_finite());
    eprintln!("T={t} K={k}: posteriors and Viterbi in {:.2} s, ll = {ll}", t0.elapsed().as_secs_f64());
    // float32: relative to the magnitude of the log-likelihood
    let r = |x: &Tensor| ops::as_dtype(x, DType::F32).unwrap();
    let (pi32, a32, e32) = (r(&pi), r(&a), r(&e));
    let w = |x: &Tensor| ops::as_dtype(x, DType::F64).unwrap();
    let ll64 = hmm_log_likelihood(&w(&pi32), &w(&a32), &w(&e32), None).unwrap().to_vec::<f64>()[0];
    let ll32 = hmm_log_likelihood(&pi32, &a32, &e32, None).unwrap().to_vec::<f32>()[0] as f64;
    assert!(((ll32 - ll64) / ll64).abs() < 1e-6, "f32 {ll32} vs f64 {ll64}");
}

#[test]
fn long_left_to_right() {
    let (t, k) = (10_000, 100);
    let mut c = Case::random(1, t, k, TransKind::Shared, false, vec![t], 5, 100.0);
    c.structural_zeros(|i, j| !(j == i || j == i + 1));
    c.pi = (0..k).map(|i| if i == 0 { 0.0 } else { f64::NEG_INFINITY }).collect();
    let [pi, a, e] = c.tensors(DType::F64);
    let p = hmm_posteriors(&pi, &a, &e, None, true).unwrap();
    assert!(p.log_likelihood.to_vec::<f64>()[0].is_finite());
    let la = p.log_alpha.to_vec::<f64>();
    for tt in [0, 1, 10, 50, 98] {
        for j in tt + 1..k {
            assert_eq!(la[tt * k + j], f64::NEG_INFINITY);
        }
    }
    let xi = p.xi.unwrap().to_vec::<f64>();
    for i in 0..k {
        for j in 0..k {
            if !(j == i || j == i + 1) {
                assert_eq!(xi[i * k + j], 0.0, "xi[{i}][{j}]");
            }
        }
    }
    assert!(p.gamma.to_vec::<f64>().iter().all(|v| v.is_finite() && *v >= 0.0));
}
