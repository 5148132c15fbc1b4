//! The fused ops against a brute-force enumeration of every state path
//! (T <= 6), in float64: log-likelihoods, forward and backward messages,
//! posteriors, expected transition counts, Viterbi paths; every kind of
//! transition input, ragged lengths (0 and 1 included), structural zeros and
//! impossible sequences.
mod common;
use common::*;
use rbe_core::ext::{DType, Tensor};
use rbe_hmm::{hmm_log_likelihood, hmm_posteriors, hmm_viterbi, TransKind};

fn check_case(c: &Case, label: &str) {
    let [pi, a, e] = c.tensors(DType::F64);
    let lens = c.lengths();
    let ll = hmm_log_likelihood(&pi, &a, &e, Some(&lens)).unwrap().to_vec::<f64>();
    let post = hmm_posteriors(&pi, &a, &e, Some(&lens), true).unwrap();
    let vit = hmm_viterbi(&pi, &a, &e, Some(&lens)).unwrap();
    let (pl, la, lb, gm) =
        (post.log_likelihood.to_vec::<f64>(), post.log_alpha.to_vec::<f64>(), post.log_beta.to_vec::<f64>(), post.gamma.to_vec::<f64>());
    let xi = post.xi.unwrap().to_vec::<f64>();
    let (path, vlp) = (vit.path.to_vec::<i64>(), vit.log_prob.to_vec::<f64>());
    let (t, k) = (c.t, c.k);
    for b in 0..c.b {
        let o = brute(c, b);
        let l = c.lens[b];
        let w = |s: &str| format!("{label}: seq {b} (L={l}): {s}");
        assert_close(&w("loglik"), ll[b], o.ll, 1e-12, 1e-12);
        assert_close(&w("posteriors loglik"), pl[b], o.ll, 1e-12, 1e-12);
        for tt in 0..t {
            for j in 0..k {
                let g = gm[(b * t + tt) * k + j];
                if tt < l {
                    assert_close(&w(&format!("gamma[{tt}][{j}]")), g, o.gamma[tt * k + j], 1e-11, 1e-13);
                    assert_close(&w(&format!("log_alpha[{tt}][{j}]")), la[(b * t + tt) * k + j], o.log_alpha[tt * k + j], 1e-11, 1e-11);
                    assert_close(&w(&format!("log_beta[{tt}][{j}]")), lb[(b * t + tt) * k + j], o.log_beta[tt * k + j], 1e-11, 1e-11);
                } else {
                    assert_eq!((g, la[(b * t + tt) * k + j], lb[(b * t + tt) * k + j]), (0.0, 0.0, 0.0), "{}", w("padding"));
                }
                assert!(!g.is_nan());
            }
        }
        // expected transition counts
        for i in 0..k {
            for j in 0..k {
                match c.kind {
                    TransKind::PerStep => {
                        for tt in 0..t - 1 {
                            let got = xi[((b * (t - 1) + tt) * k + i) * k + j];
                            let want = if tt + 1 < l { o.xi[(tt * k + i) * k + j] } else { 0.0 };
                            assert_close(&w(&format!("xi[{tt}][{i}][{j}]")), got, want, 1e-11, 1e-13);
                        }
                    }
                    _ => {
                        let got = xi[(b * k + i) * k + j];
                        let want: f64 = (0..l.saturating_sub(1)).map(|tt| o.xi[(tt * k + i) * k + j]).sum();
                        assert_close(&w(&format!("xi sum[{i}][{j}]")), got, want, 1e-11, 1e-13);
                    }
                }
            }
        }
        // Viterbi: the path's log-probability is the best one; the path is the brute force's (no ties here)
        assert_close(&w("viterbi log-prob"), vlp[b], o.best_lp, 1e-12, 1e-12);
        if o.best_lp.is_finite() {
            let got: Vec<usize> = path[b * t..b * t + l].iter().map(|&s| s as usize).collect();
            assert_eq!(got, o.best, "{}", w("viterbi path"));
        }
        assert!(path[b * t + l..(b + 1) * t].iter().all(|&s| s == -1), "{}", w("path padding"));
    }
}

#[test]
fn every_kind_against_enumeration() {
    for (kind, kname) in [(TransKind::Shared, "shared"), (TransKind::PerSeq, "per-sequence"), (TransKind::PerStep, "per-step")] {
        for pi_per_seq in [false, true] {
            for (k, t) in [(1, 4), (2, 6), (3, 5), (4, 4)] {
                let lens = vec![t, 1, 0, t - 1, 2];
                let c = Case::random(5, t, k, kind, pi_per_seq, lens, (k * 31 + t) as u64, 4.0);
                check_case(&c, &format!("{kname}, pi per seq {pi_per_seq}, K={k}, T={t}"));
            }
        }
    }
}

#[test]
fn large_emission_scale_against_enumeration() {
    // emissions spread over 800 nats: the 80-dimensional Gaussian regime, where
    // probabilities underflow in any linear-domain recursion
    for kind in [TransKind::Shared, TransKind::PerStep] {
        let c = Case::random(3, 6, 3, kind, false, vec![6, 5, 1], 7, 800.0);
        check_case(&c, &format!("{kind:?} emissions over 800 nats"));
    }
}

#[test]
fn left_to_right_keeps_its_zeros() {
    // a left-to-right model: i -> i or i + 1 only, starting in state 0
    for kind in [TransKind::Shared, TransKind::PerSeq, TransKind::PerStep] {
        let mut c = Case::random(3, 6, 4, kind, false, vec![6, 3, 1], 11, 3.0);
        c.structural_zeros(|i, j| !(j == i || j == i + 1));
        c.pi = vec![0.0, f64::NEG_INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        check_case(&c, &format!("left-to-right {kind:?}"));
        let [pi, a, e] = c.tensors(DType::F64);
        let post = hmm_posteriors(&pi, &a, &e, Some(&c.lengths()), true).unwrap();
        let la = post.log_alpha.to_vec::<f64>();
        // at step t, states above t are unreachable: exactly -inf, and zero posterior
        for b in 0..3 {
            for tt in 0..c.lens[b] {
                for j in tt + 1..4 {
                    assert_eq!(la[(b * 6 + tt) * 4 + j], f64::NEG_INFINITY, "seq {b} t {tt} state {j}");
                    assert_eq!(post.gamma.to_vec::<f64>()[(b * 6 + tt) * 4 + j], 0.0);
                }
            }
        }
        // forbidden transitions have exactly zero expected counts
        let xi = post.xi.unwrap().to_vec::<f64>();
        let a_v = c.a.clone();
        if kind != TransKind::PerStep {
            for b in 0..3 {
                for n in 0..16 {
                    let src = if kind == TransKind::Shared { n } else { b * 16 + n };
                    if a_v[src] == f64::NEG_INFINITY {
                        assert_eq!(xi[b * 16 + n], 0.0);
                    }
                }
            }
        }
    }
}

#[test]
fn impossible_sequences_have_minus_infinity_and_no_nan() {
    let mut c = Case::random(2, 4, 3, TransKind::Shared, false, vec![4, 4], 5, 2.0);
    // sequence 1 emits at step 2 something no state can emit
    for j in 0..3 {
        c.e[(4 + 2) * 3 + j] = f64::NEG_INFINITY;
    }
    check_case(&c, "impossible");
    let [pi, a, e] = c.tensors(DType::F64);
    let ll = hmm_log_likelihood(&pi, &a, &e, None).unwrap().to_vec::<f64>();
    assert!(ll[0].is_finite() && ll[1] == f64::NEG_INFINITY);
    let post = hmm_posteriors(&pi, &a, &e, None, true).unwrap();
    assert!(post.gamma.to_vec::<f64>().iter().all(|v| v.is_finite()));
    assert!(post.xi.unwrap().to_vec::<f64>().iter().all(|v| v.is_finite()));
}

#[test]
fn viterbi_ties_go_to_the_lowest_state() {
    // everything uniform: every path ties; the lowest index wins at every step
    let k = 3;
    let pi = Tensor::from_vec(vec![(1.0f64 / 3.0).ln(); k], &[k]).unwrap();
    let a = Tensor::from_vec(vec![(1.0f64 / 3.0).ln(); k * k], &[k, k]).unwrap();
    let e = Tensor::from_vec(vec![0.0f64; 5 * k], &[1, 5, k]).unwrap();
    let v = hmm_viterbi(&pi, &a, &e, None).unwrap();
    assert_eq!(v.path.to_vec::<i64>(), vec![0; 5]);
    // a tie between states 1 and 2 at the end, state 0 impossible
    let e = Tensor::from_vec(vec![f64::NEG_INFINITY, 0.0, 0.0], &[1, 1, k]).unwrap();
    assert_eq!(hmm_viterbi(&pi, &a, &e, None).unwrap().path.to_vec::<i64>(), vec![1]);
}

#[test]
fn float32_is_within_a_relative_tolerance_of_float64() {
    // long sequences, wide emissions: the f32 log-likelihood stays within a
    // few ulps of its magnitude (normalised messages, f64 accumulation)
    let c = Case::random(4, 400, 10, TransKind::Shared, false, vec![400, 399, 1, 200], 3, 300.0);
    let [pi, a, e] = c.tensors(DType::F64);
    let [pi32, a32, e32] = c.tensors(DType::F32);
    let l64 = hmm_log_likelihood(&pi, &a, &e, Some(&c.lengths())).unwrap().to_vec::<f64>();
    // the f32 inputs are rounded: compare with f64 run on the rounded inputs
    let r = |x: &Tensor| rbe_core::ext::ops::as_dtype(x, DType::F64).unwrap();
    let l64r = hmm_log_likelihood(&r(&pi32), &r(&a32), &r(&e32), Some(&c.lengths())).unwrap().to_vec::<f64>();
    let l32 = hmm_log_likelihood(&pi32, &a32, &e32, Some(&c.lengths())).unwrap().to_vec::<f32>();
    for b in 0..4 {
        assert_close(&format!("seq {b}"), l32[b] as f64, l64r[b], 2e-6, 1e-4);
        assert!((l64[b] - l64r[b]).abs() < 1e-3 * l64[b].abs());
    }
    let g32 = hmm_posteriors(&pi32, &a32, &e32, Some(&c.lengths()), false).unwrap().gamma.to_vec::<f32>();
    let g64 = hmm_posteriors(&r(&pi32), &r(&a32), &r(&e32), Some(&c.lengths()), false).unwrap().gamma.to_vec::<f64>();
    for (x, y) in g32.iter().zip(&g64) {
        assert!((*x as f64 - y).abs() < 1e-4, "{x} vs {y}");
    }
}
