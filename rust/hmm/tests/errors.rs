//! Bad input is an error naming the argument and the shape or index, never a
//! panic; the ops never write their inputs.
mod common;
use common::*;
use rbe_core::ext::{DType, Error, Tensor};
use rbe_hmm::{hmm_log_likelihood, hmm_posteriors, hmm_viterbi, TransKind};

fn all_ops(pi: &Tensor, a: &Tensor, e: &Tensor, l: Option<&Tensor>) -> Vec<Error> {
    vec![
        match hmm_log_likelihood(pi, a, e, l) {
            Err(e) => e,
            Ok(_) => panic!("loglik accepted bad input"),
        },
        match hmm_posteriors(pi, a, e, l, true) {
            Err(e) => e,
            Ok(_) => panic!("posteriors accepted bad input"),
        },
        match hmm_viterbi(pi, a, e, l) {
            Err(e) => e,
            Ok(_) => panic!("viterbi accepted bad input"),
        },
    ]
}

fn expect(errs: Vec<Error>, kind: &str, words: &[&str]) {
    for e in errs {
        let (k, msg) = match &e {
            Error::Shape(m) => ("shape", m),
            Error::DType(m) => ("dtype", m),
            Error::Value(m) => ("value", m),
            other => panic!("unexpected error kind: {other:?}"),
        };
        assert_eq!(k, kind, "{msg}");
        for w in words {
            assert!(msg.contains(w), "{msg:?} does not mention {w:?}");
        }
    }
}

#[test]
fn shapes_dtypes_lengths_and_values() {
    let c = Case::random(2, 5, 3, TransKind::Shared, false, vec![5, 3], 1, 2.0);
    let [pi, a, e] = c.tensors(DType::F64);
    let before: Vec<Vec<f64>> = [&pi, &a, &e].iter().map(|t| t.to_vec::<f64>()).collect();
    // shapes
    let e2 = Tensor::zeros(&[2, 5], DType::F64).unwrap();
    expect(all_ops(&pi, &a, &e2, None), "shape", &["log_emissions", "[2, 5]"]);
    let pi4 = Tensor::zeros(&[4], DType::F64).unwrap();
    expect(all_ops(&pi4, &a, &e, None), "shape", &["log_pi", "[4]"]);
    let a4 = Tensor::zeros(&[3, 4], DType::F64).unwrap();
    expect(all_ops(&pi, &a4, &e, None), "shape", &["log_A", "[3, 4]"]);
    let astep = Tensor::zeros(&[2, 5, 3, 3], DType::F64).unwrap(); // T, not T-1
    expect(all_ops(&pi, &astep, &e, None), "shape", &["log_A", "(B, T-1, K, K) = (2, 4, 3, 3)"]);
    let e0 = Tensor::zeros(&[2, 5, 0], DType::F64).unwrap();
    expect(
        all_ops(&Tensor::zeros(&[0], DType::F64).unwrap(), &Tensor::zeros(&[0, 0], DType::F64).unwrap(), &e0, None),
        "shape",
        &["0 states"],
    );
    // dtypes
    let pi32 = rbe_core::ext::ops::as_dtype(&pi, DType::F32).unwrap();
    expect(all_ops(&pi32, &a, &e, None), "dtype", &["log_pi", "float32", "float64"]);
    let ei = rbe_core::ext::ops::as_dtype(&e, DType::I64).unwrap();
    expect(all_ops(&pi, &a, &ei, None), "dtype", &["log_emissions", "int64"]);
    // lengths
    let lf = Tensor::from_vec(vec![5.0f64, 3.0], &[2]).unwrap();
    expect(all_ops(&pi, &a, &e, Some(&lf)), "dtype", &["lengths", "int64"]);
    let l3 = Tensor::from_vec(vec![5i64, 3, 1], &[3]).unwrap();
    expect(all_ops(&pi, &a, &e, Some(&l3)), "shape", &["lengths", "[3]"]);
    let lbig = Tensor::from_vec(vec![6i64, 3], &[2]).unwrap();
    expect(all_ops(&pi, &a, &e, Some(&lbig)), "value", &["lengths[0] = 6", "5 time steps"]);
    let lneg = Tensor::from_vec(vec![5i64, -1], &[2]).unwrap();
    expect(all_ops(&pi, &a, &e, Some(&lneg)), "value", &["lengths[1] = -1"]);
    // NaN and +inf
    let mut ev = c.e.clone();
    ev[(5 + 2) * 3 + 1] = f64::NAN;
    let en = Tensor::from_vec(ev.clone(), &[2, 5, 3]).unwrap();
    expect(all_ops(&pi, &a, &en, None), "value", &["log_emissions[1, 2, 1]", "NaN"]);
    // ... but not past the sequence's length
    ev[(5 + 2) * 3 + 1] = 0.0;
    ev[(5 + 4) * 3] = f64::NAN;
    let en = Tensor::from_vec(ev, &[2, 5, 3]).unwrap();
    let l = Tensor::from_vec(vec![5i64, 3], &[2]).unwrap();
    assert!(hmm_log_likelihood(&pi, &a, &en, Some(&l)).unwrap().to_vec::<f64>().iter().all(|v| v.is_finite()));
    let mut av = c.a.clone();
    av[4] = f64::INFINITY;
    let ai = Tensor::from_vec(av, &[3, 3]).unwrap();
    expect(all_ops(&pi, &ai, &e, None), "value", &["log_A[1, 1]", "inf"]);
    let mut pv = c.pi.clone();
    pv[2] = f64::NAN;
    expect(all_ops(&Tensor::from_vec(pv, &[3]).unwrap(), &a, &e, None), "value", &["log_pi[2]"]);
    // nothing was written
    let after: Vec<Vec<f64>> = [&pi, &a, &e].iter().map(|t| t.to_vec::<f64>()).collect();
    assert_eq!(before, after);
}

#[test]
fn empty_batches_and_sequences() {
    let pi = Tensor::from_vec(vec![0.0f64], &[1]).unwrap();
    let a = Tensor::from_vec(vec![0.0f64], &[1, 1]).unwrap();
    let e = Tensor::zeros(&[0, 4, 1], DType::F64).unwrap();
    assert_eq!(hmm_log_likelihood(&pi, &a, &e, None).unwrap().shape(), &[0]);
    let e = Tensor::zeros(&[2, 0, 1], DType::F64).unwrap();
    assert_eq!(hmm_log_likelihood(&pi, &a, &e, None).unwrap().to_vec::<f64>(), vec![0.0, 0.0]);
    let p = hmm_posteriors(&pi, &a, &e, None, true).unwrap();
    assert_eq!(p.gamma.shape(), &[2, 0, 1]);
    assert_eq!(hmm_viterbi(&pi, &a, &e, None).unwrap().path.shape(), &[2, 0]);
}
