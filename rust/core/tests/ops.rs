//! The core's ops from Rust alone: forward values against plain-loop
//! references, and first and second derivatives of every differentiable op
//! family against finite differences (through `rbe_core::testing`).
use rbe_core::ext::*;
use rbe_core::ops::binary::{self, Arith};
use rbe_core::ops::unary::{self, Fun};
use rbe_core::ops::{index, linalg, reduce, shape};
use rbe_core::testing::{check_derivatives, CheckOptions};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

fn vals(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn rnd(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor {
    t(&vals(shape.iter().product(), seed, lo, hi), shape)
}

fn derivs(name: &str, f: &dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>, x: &[Tensor], order: usize) {
    let diff: Vec<bool> = x.iter().map(|t| t.dtype().is_float()).collect();
    if let Err(e) = check_derivatives(f, x, &diff, &CheckOptions { order, ..CheckOptions::default() }) {
        panic!("{name}: {e}");
    }
}

/// (function, reference, domain low, domain high)
type UnaryCase = (Fun, fn(f64) -> f64, f64, f64);

#[test]
fn unary_functions_values_and_two_derivatives() {
    // (function, reference, domain)
    let cases: Vec<UnaryCase> = vec![
        (Fun::Exp, f64::exp, -2.0, 2.0),
        (Fun::Expm1, f64::exp_m1, -2.0, 2.0),
        (Fun::Log, f64::ln, 0.2, 3.0),
        (Fun::Log1p, f64::ln_1p, -0.5, 2.0),
        (Fun::Log2, f64::log2, 0.2, 3.0),
        (Fun::Sqrt, f64::sqrt, 0.2, 3.0),
        (Fun::Sin, f64::sin, -3.0, 3.0),
        (Fun::Cos, f64::cos, -3.0, 3.0),
        (Fun::Tan, f64::tan, -1.2, 1.2),
        (Fun::Tanh, f64::tanh, -3.0, 3.0),
        (Fun::Sigmoid, |v| 1.0 / (1.0 + (-v).exp()), -4.0, 4.0),
        (Fun::Asin, f64::asin, -0.9, 0.9),
        (Fun::Atan, f64::atan, -3.0, 3.0),
        (Fun::Sinh, f64::sinh, -2.0, 2.0),
        (Fun::Cosh, f64::cosh, -2.0, 2.0),
        (Fun::Reciprocal, |v| 1.0 / v, 0.3, 3.0),
        (Fun::Square, |v| v * v, -2.0, 2.0),
        (Fun::Rsqrt, |v| 1.0 / v.sqrt(), 0.3, 3.0),
    ];
    for (k, (f, reference, lo, hi)) in cases.into_iter().enumerate() {
        let x = rnd(&[7], k as u64, lo, hi);
        let y = unary::unary(f, &x).unwrap().to_vec::<f64>();
        for (a, xv) in y.iter().zip(x.to_vec::<f64>()) {
            let b = reference(xv);
            assert!((a - b).abs() <= 1e-14 * b.abs().max(1.0), "{f:?}({xv}) = {a}, want {b}");
        }
        derivs(&format!("{f:?}"), &move |x| Ok(vec![unary::unary(f, &x[0])?]), &[x], 2);
    }
}

#[test]
fn binary_arithmetic_with_broadcasting() {
    let a = rnd(&[3, 1, 4], 1, 0.5, 2.0);
    let b = rnd(&[2, 4], 2, 0.5, 2.0);
    for (op, reference) in [
        (Arith::Add, (|x, y| x + y) as fn(f64, f64) -> f64),
        (Arith::Sub, |x, y| x - y),
        (Arith::Mul, |x, y| x * y),
        (Arith::Div, |x, y| x / y),
        (Arith::Pow, f64::powf),
        (Arith::Atan2, f64::atan2),
    ] {
        let y = binary::arith(op, &a, &b).unwrap();
        assert_eq!(y.shape(), [3, 2, 4]);
        let (av, bv, yv) = (a.to_vec::<f64>(), b.to_vec::<f64>(), y.to_vec::<f64>());
        for i in 0..3 {
            for j in 0..2 {
                for l in 0..4 {
                    let want = reference(av[i * 4 + l], bv[j * 4 + l]);
                    let got = yv[(i * 2 + j) * 4 + l];
                    assert!((got - want).abs() <= 1e-14 * want.abs().max(1.0), "{op:?}: {got} vs {want}");
                }
            }
        }
        derivs(&format!("{op:?}"), &move |x| Ok(vec![binary::arith(op, &x[0], &x[1])?]), &[a.clone(), b.clone()], 2);
    }
    let e = binary::arith(Arith::Add, &rnd(&[3], 0, 0.0, 1.0), &rnd(&[4], 0, 0.0, 1.0)).unwrap_err();
    assert!(matches!(e, Error::Shape(ref m) if m.contains('3') && m.contains('4')), "{e:?}");
}

#[test]
fn reductions() {
    let x = rnd(&[2, 3, 4], 3, -1.0, 1.0);
    let v = x.to_vec::<f64>();
    let s = reduce::sum(&x, Some(&[1]), false).unwrap().to_vec::<f64>();
    for i in 0..2 {
        for l in 0..4 {
            let want: f64 = (0..3).map(|j| v[(i * 3 + j) * 4 + l]).sum();
            assert!((s[i * 4 + l] - want).abs() < 1e-14);
        }
    }
    let m = reduce::mean(&x, None, false).unwrap().item_f64().unwrap();
    assert!((m - v.iter().sum::<f64>() / 24.0).abs() < 1e-15);
    let dims: &[isize] = &[0, 2];
    derivs("sum", &|x| Ok(vec![reduce::sum(&x[0], Some(&[0, 2]), true)?]), std::slice::from_ref(&x), 2);
    derivs("mean", &|x| Ok(vec![reduce::mean(&x[0], Some(&[1]), false)?]), std::slice::from_ref(&x), 2);
    derivs("var", &|x| Ok(vec![reduce::var(&x[0], Some(&[2]), 1.0, false)?]), std::slice::from_ref(&x), 2);
    derivs("prod", &|x| Ok(vec![reduce::prod(&x[0], Some(&[1]), false)?]), std::slice::from_ref(&x), 2);
    derivs("logsumexp", &move |x| Ok(vec![reduce::logsumexp(&x[0], Some(dims), false)?]), std::slice::from_ref(&x), 2);
    derivs("cumsum", &|x| Ok(vec![reduce::cumsum(&x[0], 1, false)?]), std::slice::from_ref(&x), 2);
    derivs(
        "amax",
        &|x| Ok(vec![reduce::amax(&x[0], Some(&[2]), false, rbe_core::ops::reduce::Extreme::Max)?]),
        std::slice::from_ref(&x),
        1,
    );
}

#[test]
fn shape_ops_move_gradients_back_exactly() {
    let x = rnd(&[2, 3, 4], 4, -1.0, 1.0);
    let xs = std::slice::from_ref(&x);
    derivs("reshape", &|x| Ok(vec![shape::reshape(&x[0], &[4, 6])?]), xs, 2);
    derivs("permute", &|x| Ok(vec![shape::permute(&x[0], &[2, 0, 1])?]), xs, 2);
    derivs("expand", &|x| Ok(vec![shape::expand(&shape::unsqueeze(&x[0], 0)?, &[3, 2, 3, 4])?]), xs, 2);
    derivs("slice", &|x| Ok(vec![shape::slice(&x[0], 2, 1, 2, 2)?]), xs, 2);
    derivs("narrow", &|x| Ok(vec![shape::narrow(&x[0], 1, 1, 2)?]), xs, 2);
    derivs("flip", &|x| Ok(vec![shape::flip(&x[0], &[0, 2])?]), xs, 2);
    derivs("repeat", &|x| Ok(vec![shape::repeat(&x[0], &[1, 2, 1])?]), xs, 2);
    derivs("tril", &|x| Ok(vec![shape::tri(&x[0], 0, false)?]), xs, 2);
    derivs("cat", &|x| Ok(vec![shape::cat(&[x[0].clone(), binary::mul_scalar(&x[0], 2.0)?], 1)?]), xs, 2);
    derivs("stack+split", &|x| shape::split(&shape::stack(&[x[0].clone(), x[0].clone()], 0)?, 1, 0), xs, 2);
    let f = shape::flip(&x, &[2]).unwrap().to_vec::<f64>();
    let v = x.to_vec::<f64>();
    assert_eq!(f[0], v[3]);
    assert!(matches!(shape::reshape(&x, &[5, 5]), Err(Error::Shape(_))));
}

#[test]
fn index_ops() {
    let x = rnd(&[3, 4], 5, -1.0, 1.0);
    let idx = Tensor::from_vec(vec![2i64, 0, 0, 1], &[4]).unwrap();
    let g = index::index_select(&x, 0, &idx).unwrap();
    let (xv, gv) = (x.to_vec::<f64>(), g.to_vec::<f64>());
    for (r, &i) in [2usize, 0, 0, 1].iter().enumerate() {
        assert_eq!(gv[r * 4..r * 4 + 4], xv[i * 4..i * 4 + 4]);
    }
    let idx2 = idx.clone();
    derivs("index_select (repeated rows)", &move |x| Ok(vec![index::index_select(&x[0], 0, &idx2)?]), std::slice::from_ref(&x), 2);
    let gi = Tensor::from_vec(vec![0i64, 3, 3, 1, 2, 2], &[3, 2]).unwrap();
    derivs("gather", &move |x| Ok(vec![index::gather(&x[0], 1, &gi)?]), std::slice::from_ref(&x), 2);
    let bad = Tensor::from_vec(vec![7i64], &[1]).unwrap();
    assert!(matches!(index::index_select(&x, 0, &bad), Err(Error::Index(_))));
}

#[test]
fn matrix_products() {
    let a = rnd(&[2, 3, 4], 6, -1.0, 1.0);
    let b = rnd(&[4, 5], 7, -1.0, 1.0);
    let y = linalg::matmul(&a, &b).unwrap();
    assert_eq!(y.shape(), [2, 3, 5]);
    let (av, bv, yv) = (a.to_vec::<f64>(), b.to_vec::<f64>(), y.to_vec::<f64>());
    for p in 0..2 {
        for i in 0..3 {
            for j in 0..5 {
                let want: f64 = (0..4).map(|l| av[(p * 3 + i) * 4 + l] * bv[l * 5 + j]).sum();
                assert!((yv[(p * 3 + i) * 5 + j] - want).abs() < 1e-14);
            }
        }
    }
    derivs("matmul batched", &|x| Ok(vec![linalg::matmul(&x[0], &x[1])?]), &[a, b], 2);
    derivs("mv", &|x| Ok(vec![linalg::mv(&x[0], &x[1])?]), &[rnd(&[3, 4], 8, -1.0, 1.0), rnd(&[4], 9, -1.0, 1.0)], 2);
    derivs("outer", &|x| Ok(vec![linalg::outer(&x[0], &x[1])?]), &[rnd(&[3], 10, -1.0, 1.0), rnd(&[4], 11, -1.0, 1.0)], 2);
}

/// `a[B, m, k] @ b[k, n]` folds the batch into rows (one product that can use
/// the threads): values against a plain loop for a foldable and a
/// non-foldable layout of `a`, bits independent of the thread count, and the
/// gradient of `b` (one product over all rows) against per-batch sums.
#[test]
fn batched_matmul_with_an_unbatched_right_operand() {
    use rbe_core::autograd::run_backward;
    let (nb, m, k, n) = (16, 200, 80, 50); // m*n*k per batch below the parallel threshold, the fold above it
    let a = rnd(&[nb, m, k], 21, -1.0, 1.0);
    // the same values with batch rows not laid out as further rows (not foldable)
    let at = shape::transpose(&shape::contiguous(&shape::transpose(&a, 0, 1).unwrap()).unwrap(), 0, 1).unwrap();
    let b = rnd(&[k, n], 22, -1.0, 1.0);
    let bt = shape::transpose(&shape::contiguous(&shape::transpose(&b, 0, 1).unwrap()).unwrap(), 0, 1).unwrap();
    let (av, bv) = (a.to_vec::<f64>(), b.to_vec::<f64>());
    let want: Vec<f64> = (0..nb * m * n)
        .map(|e| {
            let (r, j) = (e / n, e % n);
            (0..k).map(|l| av[r * k + l] * bv[l * n + j]).sum()
        })
        .collect();
    for (x, y) in [(&a, &b), (&at, &b), (&a, &bt)] {
        let mut bits = vec![];
        for threads in [1, 2, 3] {
            let got = with_num_threads(threads, || linalg::matmul(x, y).unwrap()).unwrap();
            assert_eq!(got.shape(), [nb, m, n]);
            let gv = got.to_vec::<f64>();
            assert!(gv.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-12 * (1.0 + w.abs())));
            bits.push(gv.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        }
        assert!(bits.iter().all(|v| *v == bits[0]), "results depend on the thread count");
    }
    // the gradient of b: sum over batches and rows of a^T g
    let g = rnd(&[nb, m, n], 23, -1.0, 1.0);
    let gv = g.to_vec::<f64>();
    let mut want_gb = vec![0.0; k * n];
    for r in 0..nb * m {
        for l in 0..k {
            for j in 0..n {
                want_gb[l * n + j] += av[r * k + l] * gv[r * n + j];
            }
        }
    }
    for threads in [1, 2] {
        let bg = b.detach();
        bg.set_requires_grad(true).unwrap();
        let y = linalg::matmul(&a, &bg).unwrap();
        let got = with_num_threads(threads, || {
            run_backward(&[y], std::slice::from_ref(&g), false, false, Some(std::slice::from_ref(&bg)), false)
        })
        .unwrap()
        .unwrap();
        let got = got[0].as_ref().unwrap().to_vec::<f64>();
        assert!(got.iter().zip(&want_gb).all(|(x, w)| (x - w).abs() <= 1e-11 * (1.0 + w.abs())));
    }
}

/// Row reductions (`amax`, `argmax`, `prod`) run over fixed chunks of rows:
/// the values of a plain loop, whatever the thread count.
#[test]
fn row_reductions_split_over_threads() {
    let (rows, r) = (3200, 50);
    let x = rnd(&[rows, r], 24, -3.0, 3.0);
    let xv = x.to_vec::<f64>();
    let want_max: Vec<f64> = xv.chunks(r).map(|c| c.iter().cloned().fold(f64::NEG_INFINITY, f64::max)).collect();
    let want_arg: Vec<i64> = xv.chunks(r).map(|c| c.iter().enumerate().fold(0, |b, (i, &v)| if v > c[b] { i } else { b }) as i64).collect();
    let want_prod: Vec<f64> = xv.chunks(r).map(|c| c.iter().product()).collect();
    for threads in [1, 2, 3] {
        let (m, a, p) = with_num_threads(threads, || {
            (
                reduce::amax(&x, Some(&[1]), false, reduce::Extreme::Max).unwrap().to_vec::<f64>(),
                reduce::argext(&x, Some(1), false, reduce::Extreme::Max).unwrap().to_vec::<i64>(),
                reduce::prod(&x, Some(&[-1]), false).unwrap().to_vec::<f64>(),
            )
        })
        .unwrap();
        assert_eq!(m, want_max);
        assert_eq!(a, want_arg);
        assert!(p.iter().zip(&want_prod).all(|(g, w)| g.to_bits() == w.to_bits()), "prod with {threads} threads");
    }
}

#[test]
fn activations_and_clamp() {
    let x = rnd(&[9], 12, -2.0, 2.0);
    let xs = std::slice::from_ref(&x);
    derivs("leaky_relu", &|x| Ok(vec![unary::leaky_relu(&x[0], 0.1)?]), xs, 2);
    derivs("elu", &|x| Ok(vec![unary::elu(&x[0], 1.3)?]), xs, 2);
    derivs("softplus", &|x| Ok(vec![unary::softplus(&x[0], 2.0, 20.0)?]), xs, 2);
    derivs("gelu", &|x| Ok(vec![unary::gelu(&x[0], false)?]), xs, 2);
    derivs("gelu tanh", &|x| Ok(vec![unary::gelu(&x[0], true)?]), xs, 2);
    derivs("clamp", &|x| Ok(vec![unary::clamp(&x[0], Some(-1.0), Some(1.5))?]), xs, 1);
    derivs(
        "where",
        &|x| Ok(vec![binary::where_(&binary::gt(&x[0], &Tensor::zeros(&[], DType::F64).unwrap())?, &x[0], &unary::sin(&x[0])?)?]),
        xs,
        2,
    );
}
