//! The fused-op harness (`rbe_core::testing::check_fused_op`) over the HMM
//! ops: fused equals the composite recursion written with plain
//! differentiable ops (values and gradients), derivatives to second order
//! against finite differences (the second order goes through the
//! `create_graph` backward), identical bits with 1 and 2 threads on batches
//! large enough to be split. Every kind of transition input, initial
//! distributions shared or per sequence, ragged lengths with 0 and 1,
//! structural zeros; float64 and float32.
//!
//! As in `rust/structured/tests/harness.rs`, one check is added: the
//! first-order gradients of the `create_graph` backward equal those of the
//! fused backward (the harness compares each order with finite differences of
//! the previous order as computed by the same path).
mod common;
use common::*;
use rbe_core::ext::{ops, run_backward, DType, Result, Tensor};
use rbe_core::testing::{check_fused_op, check_thread_bits, CheckOptions};
use rbe_hmm::composite::{forward_backward, path_log_prob};
use rbe_hmm::{hmm_log_likelihood, hmm_posteriors, hmm_viterbi, TransKind};

type Fns = (Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>, Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>);

fn loglik_fns(c: &Case) -> Fns {
    let (lens, kind) = (c.lengths(), c.kind);
    let lv = c.lens.clone();
    (
        Box::new(move |x: &[Tensor]| Ok(vec![hmm_log_likelihood(&x[0], &x[1], &x[2], Some(&lens))?])),
        Box::new(move |x: &[Tensor]| Ok(vec![forward_backward(&x[0], &x[1], &x[2], &lv, kind, false, false)?.ll])),
    )
}

fn posterior_fns(c: &Case) -> Fns {
    let (lens, kind) = (c.lengths(), c.kind);
    let lv = c.lens.clone();
    (
        Box::new(move |x: &[Tensor]| {
            let p = hmm_posteriors(&x[0], &x[1], &x[2], Some(&lens), true)?;
            Ok(vec![p.log_likelihood, p.log_alpha, p.log_beta, p.gamma, p.xi.unwrap()])
        }),
        Box::new(move |x: &[Tensor]| {
            let c = forward_backward(&x[0], &x[1], &x[2], &lv, kind, true, true)?;
            Ok(vec![c.ll, c.log_alpha, c.log_beta.unwrap(), c.gamma.unwrap(), c.xi.unwrap()])
        }),
    )
}

/// Only the posteriors (gamma) and the counts: the adjoint without the ll shortcut.
fn gamma_fns(c: &Case) -> Fns {
    let (lens, kind) = (c.lengths(), c.kind);
    let lv = c.lens.clone();
    (
        Box::new(move |x: &[Tensor]| {
            let p = hmm_posteriors(&x[0], &x[1], &x[2], Some(&lens), true)?;
            Ok(vec![p.gamma, p.xi.unwrap()])
        }),
        Box::new(move |x: &[Tensor]| {
            let c = forward_backward(&x[0], &x[1], &x[2], &lv, kind, true, true)?;
            Ok(vec![c.gamma.unwrap(), c.xi.unwrap()])
        }),
    )
}

fn viterbi_fns(c: &Case) -> Fns {
    let (lens, kind) = (c.lengths(), c.kind);
    let lens2 = lens.clone();
    (
        Box::new(move |x: &[Tensor]| Ok(vec![hmm_viterbi(&x[0], &x[1], &x[2], Some(&lens))?.log_prob])),
        Box::new(move |x: &[Tensor]| {
            // the path is chosen by the fused op (it is piecewise constant); its score is recomputed by plain ops
            let v = hmm_viterbi(&x[0].detach(), &x[1].detach(), &x[2].detach(), Some(&lens2))?;
            Ok(vec![path_log_prob(&x[0], &x[1], &x[2], &v.path.to_vec::<i64>(), kind)?])
        }),
    )
}

fn cases() -> Vec<(String, Case)> {
    let mut v = Vec::new();
    for (kind, kn) in [(TransKind::Shared, "shared"), (TransKind::PerSeq, "per-seq"), (TransKind::PerStep, "per-step")] {
        for pi_per_seq in [false, true] {
            v.push((format!("{kn} pi-per-seq={pi_per_seq}"), Case::random(3, 4, 3, kind, pi_per_seq, vec![4, 1, 3], 17, 3.0)));
        }
        let mut lr = Case::random(2, 4, 3, kind, false, vec![4, 2], 23, 3.0);
        lr.structural_zeros(|i, j| !(j == i || j == i + 1));
        lr.pi = vec![0.0, f64::NEG_INFINITY, f64::NEG_INFINITY];
        v.push((format!("{kn} left-to-right"), lr));
    }
    // an empty sequence and a single state
    v.push(("empty and single-state".into(), Case::random(2, 3, 1, TransKind::Shared, false, vec![0, 3], 29, 2.0)));
    v
}

fn opts() -> CheckOptions {
    CheckOptions { order: 2, fused_rtol: 1e-10, fused_atol: 1e-11, ..CheckOptions::default() }
}

fn run(label: &str, c: &Case, fns: Fns, dt: DType, order: usize) {
    let x = c.tensors(dt);
    let mut o = opts();
    o.order = order;
    if dt == DType::F32 {
        o.fused_rtol = 2e-5;
        o.fused_atol = 2e-5;
    }
    check_fused_op(&*fns.0, &*fns.1, &x, &[true, true, true], &o).unwrap_or_else(|e| panic!("{label}: {e}"));
}

#[test]
fn log_likelihood_through_the_harness() {
    for (label, c) in cases() {
        run(&format!("loglik {label}"), &c, loglik_fns(&c), DType::F64, 2);
        run(&format!("loglik f32 {label}"), &c, loglik_fns(&c), DType::F32, 1);
    }
}

#[test]
fn posteriors_through_the_harness() {
    for (label, c) in cases() {
        // log_alpha and log_beta hold -inf where a state is unreachable: a finite
        // difference of the projection is then NaN, so those cases check the
        // finite outputs (the log-likelihood, gamma, xi) only
        let has_zeros = c.a.iter().chain(&c.pi).any(|v| v.is_infinite());
        if !has_zeros {
            run(&format!("posteriors {label}"), &c, posterior_fns(&c), DType::F64, 2);
            run(&format!("posteriors f32 {label}"), &c, posterior_fns(&c), DType::F32, 1);
        }
        run(&format!("gamma+xi {label}"), &c, gamma_fns(&c), DType::F64, 2);
        run(&format!("gamma+xi f32 {label}"), &c, gamma_fns(&c), DType::F32, 1);
    }
}

#[test]
fn viterbi_log_prob_through_the_harness() {
    for (label, c) in cases() {
        run(&format!("viterbi {label}"), &c, viterbi_fns(&c), DType::F64, 2);
    }
}

/// First-order gradients of the create_graph path equal those of the fused backward.
#[test]
fn create_graph_backward_matches_the_fused_one() {
    for (label, c) in cases() {
        for (name, fns) in [("loglik", loglik_fns(&c)), ("posteriors", posterior_fns(&c))] {
            let x = c.tensors(DType::F64);
            let leaves: Vec<Tensor> = x
                .iter()
                .map(|t| {
                    let l = t.detach().contiguous();
                    let l = ops::unary::clone(&l).unwrap();
                    l.set_requires_grad(true).unwrap();
                    l
                })
                .collect();
            let outs = (fns.0)(&leaves).unwrap();
            let seeds: Vec<Tensor> = outs
                .iter()
                .enumerate()
                .map(|(n, o)| Tensor::from_vec(uniform(o.numel(), 40 + n as u64, -1.0, 1.0), o.shape()).unwrap())
                .collect();
            let fused = run_backward(&outs, &seeds, true, false, Some(&leaves), true).unwrap();
            let graph = run_backward(&outs, &seeds, false, true, Some(&leaves), true).unwrap();
            for (i, (f, g)) in fused.iter().zip(&graph).enumerate() {
                let (f, g) = (f.as_ref().unwrap().to_vec::<f64>(), g.as_ref().unwrap().to_vec::<f64>());
                for (n, (a, b)) in f.iter().zip(&g).enumerate() {
                    assert_close(&format!("{name} {label}: d/d input {i} [{n}]"), *a, *b, 1e-9, 1e-11);
                }
            }
        }
    }
}

#[test]
fn thread_count_does_not_change_bits() {
    // large enough for the batch to be split between threads
    for kind in [TransKind::Shared, TransKind::PerSeq, TransKind::PerStep] {
        let lens: Vec<usize> = (0..8).map(|i| 96 - 7 * i).collect();
        let c = Case::random(8, 96, 24, kind, true, lens, 31, 50.0);
        assert!(c.lens.iter().sum::<usize>() * 24 * 24 * 4 >= rbe_core::ext::PAR_WORK, "too small to be split");
        for dt in [DType::F64, DType::F32] {
            let x = c.tensors(dt);
            for (name, fns) in
                [("loglik", loglik_fns(&c)), ("posteriors", posterior_fns(&c)), ("gamma", gamma_fns(&c)), ("viterbi", viterbi_fns(&c))]
            {
                check_thread_bits(&*fns.0, &x, &[true, true, true], &[1, 2, 3]).unwrap_or_else(|e| panic!("{name} {kind:?} {dt:?}: {e}"));
            }
        }
    }
}
