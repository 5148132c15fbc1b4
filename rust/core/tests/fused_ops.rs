//! Every fused op of the core through the shared harness
//! (`rbe_core::testing::check_fused_op`): fused equals its composite formula,
//! derivatives against finite differences (to third order where PINNs need
//! it), identical bits with 1 and 2 threads.
use rbe_core::ext::*;
use rbe_core::ops::{binary, linalg, loss, nn, reduce, shape, unary};
use rbe_core::testing::{check_fused_op, CheckOptions, MultiFn};

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

/// Deterministic values in [lo, hi).
fn vals(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn rnd(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    t64(&vals(shape.iter().product(), seed, lo, hi), shape)
}

fn f32_of(t: &Tensor) -> Tensor {
    ops::as_dtype(t, DType::F32).unwrap()
}

fn opts(order: usize) -> CheckOptions {
    CheckOptions { order, ..CheckOptions::default() }
}

fn run(name: &str, fused: &MultiFn, composite: &MultiFn, inputs: &[Tensor], diff: &[bool], o: &CheckOptions) {
    if let Err(e) = check_fused_op(fused, composite, inputs, diff, o) {
        panic!("{name}: {e}");
    }
}

fn one(dt: DType) -> Tensor {
    Tensor::ones(&[], dt).unwrap()
}

#[test]
fn tanh_and_its_fused_backward_to_third_order() {
    let fused = |x: &[Tensor]| Ok(vec![unary::tanh(&x[0])?]);
    let composite = |x: &[Tensor]| {
        let e = unary::exp(&binary::mul_scalar(&x[0], 2.0)?)?;
        Ok(vec![binary::div(&binary::sub(&e, &one(e.dtype()))?, &binary::add(&e, &one(e.dtype()))?)?])
    };
    let x = rnd(&[3, 4], 1, -2.0, 2.0);
    run("tanh f64", &fused, &composite, std::slice::from_ref(&x), &[true], &opts(3));
    let o = CheckOptions { fused_rtol: 1e-5, fused_atol: 1e-6, ..opts(3) };
    run("tanh f32", &fused, &composite, &[f32_of(&x)], &[true], &o);
    // large enough for the vectorised f32 kernel's main loop and tail
    let big = rnd(&[1000], 2, -6.0, 6.0);
    run("tanh f32 long", &fused, &composite, &[f32_of(&big)], &[true], &CheckOptions { order: 1, ..o });
}

#[test]
fn tanh_backward_and_product3() {
    let fused = |x: &[Tensor]| Ok(vec![unary::tanh_backward(&x[0], &x[1])?]);
    let composite = |x: &[Tensor]| Ok(vec![binary::mul(&x[0], &binary::sub(&one(x[1].dtype()), &binary::mul(&x[1], &x[1])?)?)?]);
    let (g, y) = (rnd(&[2, 5], 3, -1.0, 1.0), rnd(&[2, 5], 4, -0.9, 0.9));
    run("tanh_backward", &fused, &composite, &[g.clone(), y.clone()], &[true, true], &opts(3));
    // broadcasting
    run("tanh_backward broadcast", &fused, &composite, &[rnd(&[2, 1], 5, -1.0, 1.0), y], &[true, true], &opts(2));

    let fused = |x: &[Tensor]| Ok(vec![unary::product3(&x[0], &x[1], &x[2], -2.0)?]);
    let composite = |x: &[Tensor]| Ok(vec![binary::mul_scalar(&binary::mul(&binary::mul(&x[0], &x[1])?, &x[2])?, -2.0)?]);
    let xs = [rnd(&[3, 1], 6, -1.0, 1.0), rnd(&[1, 4], 7, -1.0, 1.0), rnd(&[3, 4], 8, -1.0, 1.0)];
    run("product3", &fused, &composite, &xs, &[true, true, true], &opts(3));
}

#[test]
fn logsumexp_with_its_fused_first_order_backward() {
    let lse_composite = |x: &Tensor, d: &[isize]| -> Result<Tensor> {
        let m = reduce::amax(&x.detach(), Some(d), true, rbe_core::ops::reduce::Extreme::Max)?;
        let s = reduce::sum(&unary::exp(&binary::sub(x, &m)?)?, Some(d), true)?;
        let r = binary::add(&unary::log(&s)?, &m)?;
        let keep: Vec<usize> = (0..x.ndim()).filter(|i| !d.contains(&(*i as isize))).map(|i| x.shape()[i]).collect();
        shape::reshape(&r, &keep)
    };
    for (shape, dims) in [(vec![4, 5], vec![1isize]), (vec![3, 4, 5], vec![1]), (vec![3, 4, 5], vec![0, 1]), (vec![3, 4, 5], vec![0, 2])] {
        let d2 = dims.clone();
        let fused = move |x: &[Tensor]| Ok(vec![reduce::logsumexp(&x[0], Some(&dims), false)?]);
        let composite = move |x: &[Tensor]| Ok(vec![lse_composite(&x[0], &d2)?]);
        let x = rnd(&shape, 9, -3.0, 3.0);
        run(&format!("logsumexp {shape:?}"), &fused, &composite, &[x], &[true], &opts(2));
    }
}

#[test]
fn logsumexp_keeps_precision_at_large_offsets() {
    // the classic check: softmax / log_softmax of [1000, 1001, 1002] in float32
    let x = f32_of(&t64(&[1000.0, 1001.0, 1002.0], &[3]));
    let ls = nn::log_softmax(&x, 0).unwrap().to_vec::<f64>();
    let want = [-2.407_605_964_3, -1.407_605_964_3, -0.407_605_964_3];
    for (a, b) in ls.iter().zip(want) {
        assert!((a - b).abs() <= 2e-7 * b.abs().max(1.0), "log_softmax {ls:?} vs {want:?}");
    }
    let sm = nn::softmax(&x, 0).unwrap().to_vec::<f64>();
    for (a, b) in sm.iter().zip(want) {
        assert!((a - b.exp()).abs() <= 2e-7 * b.exp(), "softmax {sm:?}");
    }
}

#[test]
fn softmax_and_log_softmax() {
    for dim in [0isize, 1, -1] {
        let fused = move |x: &[Tensor]| Ok(vec![nn::softmax(&x[0], dim)?, nn::log_softmax(&x[0], dim)?]);
        let composite = move |x: &[Tensor]| {
            let l = reduce::logsumexp(&x[0], Some(&[dim]), true)?;
            let ls = binary::sub(&x[0], &l)?;
            Ok(vec![unary::exp(&ls)?, ls])
        };
        let x = rnd(&[3, 4], 10, -2.0, 2.0);
        run(&format!("softmax dim {dim}"), &fused, &composite, &[x], &[true], &opts(2));
    }
}

/// softmax and log_softmax through the logsumexp formula (a different kernel).
fn softmax_reference(x: &[Tensor], dim: isize) -> Result<Vec<Tensor>> {
    let l = reduce::logsumexp(&x[0], Some(&[dim]), true)?;
    let ls = binary::sub(&x[0], &l)?;
    Ok(vec![unary::exp(&ls)?, ls])
}

#[test]
fn softmax_and_log_softmax_fused_rows_over_the_last_dim() {
    let fused = |x: &[Tensor]| Ok(vec![nn::softmax(&x[0], -1)?, nn::log_softmax(&x[0], -1)?]);
    let composite = |x: &[Tensor]| softmax_reference(x, -1);
    // rows shorter than, equal to and longer than the vector width, with a tail
    for (k, shape) in [vec![2, 3, 37], vec![4, 16], vec![3, 1], vec![5]].into_iter().enumerate() {
        let x = rnd(&shape, 40 + k as u64, -3.0, 3.0);
        run(&format!("softmax rows {shape:?} f64"), &fused, &composite, std::slice::from_ref(&x), &[true], &opts(3));
        let o = CheckOptions { fused_rtol: 1e-5, fused_atol: 1e-6, ..opts(2) };
        run(&format!("softmax rows {shape:?} f32"), &fused, &composite, &[f32_of(&x)], &[true], &o);
    }
}

#[test]
fn softmax_rows_above_the_parallel_threshold_match_and_keep_their_bits() {
    // 700 rows of 50: several fixed row chunks, run on the pool with 2 threads
    let fused = |x: &[Tensor]| Ok(vec![nn::softmax(&x[0], -1)?, nn::log_softmax(&x[0], -1)?]);
    let composite = |x: &[Tensor]| softmax_reference(x, -1);
    let x = rnd(&[7, 100, 50], 50, -8.0, 8.0);
    rbe_core::testing::check_matches_composite(&fused, &composite, std::slice::from_ref(&x), &[true], 1e-12, 1e-10).unwrap();
    rbe_core::testing::check_matches_composite(&fused, &composite, &[f32_of(&x)], &[true], 1e-6, 1e-5).unwrap();
    for t in [x.clone(), f32_of(&x)] {
        rbe_core::testing::check_thread_bits(&fused, std::slice::from_ref(&t), &[true], &[1, 2, 3]).unwrap();
    }
    // rows longer than one block of 64 vectors, with a tail in the last block
    let long = rnd(&[3, 1100], 51, -8.0, 8.0);
    rbe_core::testing::check_matches_composite(&fused, &composite, std::slice::from_ref(&long), &[true], 1e-12, 1e-10).unwrap();
    rbe_core::testing::check_matches_composite(&fused, &composite, &[f32_of(&long)], &[true], 1e-6, 1e-5).unwrap();
}

#[test]
fn softmax_rows_with_non_finite_entries() {
    let inf = f64::INFINITY;
    // rows: a -inf among finite values; all -inf; a +inf; a NaN
    let x = t64(&[0.5, -inf, 1.5, -inf, -inf, -inf, 1.0, inf, 2.0, 0.0, f64::NAN, 3.0], &[4, 3]);
    for dt in [DType::F64, DType::F32] {
        let xd = ops::as_dtype(&x, dt).unwrap();
        let ls = nn::log_softmax(&xd, -1).unwrap().to_vec::<f64>();
        let sm = nn::softmax(&xd, -1).unwrap().to_vec::<f64>();
        let l0 = (0.5f64.exp() + 1.5f64.exp()).ln();
        assert!((ls[0] - (0.5 - l0)).abs() < 1e-6 && ls[1] == f64::NEG_INFINITY && (ls[2] - (1.5 - l0)).abs() < 1e-6, "{ls:?}");
        assert!(sm[1] == 0.0 && (sm[0] + sm[2] - 1.0).abs() < 1e-6, "{sm:?}");
        assert!(ls[3..].iter().all(|v| v.is_nan()) && sm[3..].iter().all(|v| v.is_nan()), "{ls:?} {sm:?}");
    }
}

#[test]
fn fused_linear_equals_matmul_plus_bias() {
    let fused = |x: &[Tensor]| Ok(vec![linalg::linear(&x[0], &x[1], Some(&x[2]))?]);
    let composite = |x: &[Tensor]| Ok(vec![binary::add(&linalg::matmul(&x[0], &shape::transpose(&x[1], 0, 1)?)?, &x[2])?]);
    let xs = [rnd(&[2, 3, 4], 11, -1.0, 1.0), rnd(&[5, 4], 12, -1.0, 1.0), rnd(&[5], 13, -1.0, 1.0)];
    run("linear", &fused, &composite, &xs, &[true, true, true], &opts(2));
    let fused = |x: &[Tensor]| Ok(vec![linalg::linear(&x[0], &x[1], None)?]);
    let composite = |x: &[Tensor]| Ok(vec![linalg::matmul(&x[0], &shape::transpose(&x[1], 0, 1)?)?]);
    run("linear no bias", &fused, &composite, &xs[..2], &[true, true], &opts(2));
}

#[test]
fn fused_linear_bits_do_not_depend_on_threads_above_the_parallel_threshold() {
    // 256 x 256 x 256 is above the GEMM's parallel threshold
    let fused = |x: &[Tensor]| Ok(vec![linalg::linear(&x[0], &x[1], Some(&x[2]))?]);
    let xs = [f32_of(&rnd(&[256, 256], 14, -1.0, 1.0)), f32_of(&rnd(&[256, 256], 15, -1.0, 1.0)), f32_of(&rnd(&[256], 16, -1.0, 1.0))];
    rbe_core::testing::check_thread_bits(&fused, &xs, &[true, true, true], &[1, 2]).unwrap();
}

#[test]
fn cross_entropy_fused_equals_the_log_softmax_formula() {
    let fused = |x: &[Tensor]| Ok(vec![loss::cross_entropy(&x[0], &x[1], None, -100, loss::Reduction::Mean, 0.1)?]);
    let composite = |x: &[Tensor]| {
        let c = x[0].shape()[1] as f64;
        let t = binary::add_scalar(&binary::mul_scalar(&x[1], 0.9)?, 0.1 / c)?;
        let l = nn::log_softmax(&x[0], 1)?;
        let per_row = reduce::sum(&binary::mul(&t, &l)?, Some(&[1]), false)?;
        Ok(vec![unary::neg(&reduce::mean(&per_row, None, false)?)?])
    };
    let z = rnd(&[4, 5], 17, -2.0, 2.0);
    let p = nn::softmax(&rnd(&[4, 5], 18, -1.0, 1.0), 1).unwrap();
    run("cross_entropy soft targets", &fused, &composite, &[z.clone(), p], &[true, false], &opts(2));
    // class-index targets
    let idx = Tensor::from_vec(vec![0i64, 3, 4, 1], &[4]).unwrap();
    let fused = |x: &[Tensor]| Ok(vec![loss::cross_entropy(&x[0], &x[1], None, -100, loss::Reduction::Sum, 0.0)?]);
    let composite = |x: &[Tensor]| {
        let l = nn::log_softmax(&x[0], 1)?;
        let picked = rbe_core::ops::index::gather(&l, 1, &shape::unsqueeze(&x[1], 1)?)?;
        Ok(vec![unary::neg(&reduce::sum(&picked, None, false)?)?])
    };
    run("cross_entropy indices", &fused, &composite, &[z, idx], &[true, false], &opts(2));
}
