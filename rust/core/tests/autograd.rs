//! Core autograd from Rust alone: gradients against central finite differences.
use rbe_core::autograd::run_backward;
use rbe_core::ops::{binary, linalg, reduce, shape, unary};
use rbe_core::{DType, Tensor};

fn t(v: &[f64], shape: &[usize], grad: bool) -> Tensor {
    let x = Tensor::from_vec(v.to_vec(), shape).unwrap();
    if grad {
        x.set_requires_grad(true).unwrap();
    }
    x
}

fn grad_of(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> Vec<f64> {
    let y = f(x);
    let one = Tensor::ones(&[], DType::F64);
    let g = run_backward(&[y], &[one], false, false, Some(std::slice::from_ref(x)), false).unwrap();
    g[0].as_ref().unwrap().to_vec::<f64>()
}

fn fd(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor) -> Vec<f64> {
    rbe_core::testing::finite_difference(&|x| Ok(f(x)), x, 1e-6).unwrap()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn composite_function_gradient_matches_finite_differences() {
    let x = t(&[0.3, -1.2, 0.7, 2.0, -0.1, 0.5], &[2, 3], true);
    let f = |x: &Tensor| -> Tensor {
        let w = Tensor::from_vec(vec![0.2, -0.4, 0.9, 1.1, -0.3, 0.8], &[3, 2]).unwrap();
        let h = unary::tanh(&linalg::matmul(x, &w).unwrap()).unwrap();
        let s = unary::sigmoid(&binary::mul(&h, &h).unwrap()).unwrap();
        reduce::sum(&reduce::logsumexp(&s, Some(&[1]), false).unwrap(), None, false).unwrap()
    };
    assert_close(&grad_of(&f, &x), &fd(&f, &x), 1e-6);
}

#[test]
fn broadcast_gradient_is_reduced_to_input_shape() {
    let a = t(&[1.0, 2.0, 3.0], &[3, 1], true);
    let b = t(&[10.0, 20.0], &[1, 2], true);
    let y = reduce::sum(&binary::mul(&a, &b).unwrap(), None, false).unwrap();
    let one = Tensor::ones(&[], DType::F64);
    run_backward(&[y], &[one], false, false, None, false).unwrap();
    assert_eq!(a.grad().unwrap().shape(), &[3, 1]);
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), vec![30.0, 30.0, 30.0]);
    assert_eq!(b.grad().unwrap().to_vec::<f64>(), vec![6.0, 6.0]);
}

#[test]
fn second_derivative_via_create_graph() {
    // d2/dx2 of x^3 = 6x
    let x = t(&[0.5, -2.0], &[2], true);
    let y = reduce::sum(&binary::pow(&x, &Tensor::wrapped_scalar(3.0, DType::F64)).unwrap(), None, false).unwrap();
    let one = Tensor::ones(&[], DType::F64);
    let g = run_backward(&[y], std::slice::from_ref(&one), true, true, Some(std::slice::from_ref(&x)), false).unwrap();
    let gs = reduce::sum(g[0].as_ref().unwrap(), None, false).unwrap();
    let h = run_backward(&[gs], &[one], false, false, Some(std::slice::from_ref(&x)), false).unwrap();
    assert_close(&h[0].as_ref().unwrap().to_vec::<f64>(), &[3.0, -12.0], 1e-12);
}

#[test]
fn views_share_storage_and_reshape_copies_only_when_needed() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], false);
    let v = shape::transpose(&x, 0, 1).unwrap();
    assert!(std::sync::Arc::ptr_eq(v.storage(), x.storage()));
    assert_eq!(v.to_vec::<f64>(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let r = shape::reshape(&v, &[6]).unwrap();
    assert!(!std::sync::Arc::ptr_eq(r.storage(), x.storage()));
    let r2 = shape::reshape(&x, &[3, 2]).unwrap();
    assert!(std::sync::Arc::ptr_eq(r2.storage(), x.storage()));
}

#[test]
fn errors_name_the_shapes() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let b = Tensor::zeros(&[4, 3], DType::F32);
    let e = binary::add(&a, &b).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4, 3]"), "{e}");
}
