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
    let one = Tensor::ones(&[], DType::F64).unwrap();
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
    let one = Tensor::ones(&[], DType::F64).unwrap();
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
    let one = Tensor::ones(&[], DType::F64).unwrap();
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
    let a = Tensor::zeros(&[2, 3], DType::F32).unwrap();
    let b = Tensor::zeros(&[4, 3], DType::F32).unwrap();
    let e = binary::add(&a, &b).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4, 3]"), "{e}");
}

/// A node with two outputs (sin x, cos x): one backward call gets both gradients.
fn sincos(x: &Tensor, calls: std::sync::Arc<std::sync::atomic::AtomicUsize>, materialize: bool) -> (Tensor, Tensor) {
    use rbe_core::autograd::{attach_multi, needs_grad, SavedTensor};
    let (s, c) = (unary::sin(&x.detach()).unwrap(), unary::cos(&x.detach()).unwrap());
    if needs_grad(&[x]) {
        let sx = SavedTensor::input(x);
        attach_multi(&[&s, &c], "SinCosBackward", &[x], true, materialize, move |ctx, gs| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let x = sx.get(ctx)?;
            let mut out: Option<Tensor> = None;
            if let Some(g) = &gs[0] {
                out = Some(binary::mul(g, &unary::cos(&x)?)?);
            }
            if let Some(g) = &gs[1] {
                let t = binary::mul(g, &unary::neg(&unary::sin(&x)?)?)?;
                out = Some(match out {
                    Some(o) => binary::add(&o, &t)?,
                    None => t,
                });
            }
            Ok(vec![out])
        })
        .unwrap();
    }
    (s, c)
}

#[test]
fn multi_output_node_runs_backward_once_with_both_gradients() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let x = t(&[0.3, -1.1, 2.0], &[3], true);
    let calls = Arc::new(AtomicUsize::new(0));
    let (s, c) = sincos(&x, calls.clone(), true);
    assert!(Arc::ptr_eq(&s.grad_fn().unwrap(), &c.grad_fn().unwrap()));
    assert_eq!((s.output_nr(), c.output_nr()), (0, 1));
    // y = sum(3 s + c^2): dy/dx = 3 cos x - 2 c sin x
    let y = reduce::sum(&binary::add(&binary::mul_scalar(&s, 3.0).unwrap(), &binary::mul(&c, &c).unwrap()).unwrap(), None, false).unwrap();
    run_backward(&[y], &[Tensor::ones(&[], DType::F64).unwrap()], false, false, None, false).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let want: Vec<f64> = [0.3f64, -1.1, 2.0].iter().map(|v| 3.0 * v.cos() - 2.0 * v.cos() * v.sin()).collect();
    assert_close(&x.grad().unwrap().to_vec::<f64>(), &want, 1e-14);
}

#[test]
fn multi_output_node_unused_output_is_zeros_or_none_and_second_order_works() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    for materialize in [true, false] {
        let x = t(&[0.5, 1.5], &[2], true);
        let (s, _c) = sincos(&x, Arc::new(AtomicUsize::new(0)), materialize);
        let y = reduce::sum(&s, None, false).unwrap();
        let g = run_backward(&[y], &[Tensor::ones(&[], DType::F64).unwrap()], false, false, Some(std::slice::from_ref(&x)), false).unwrap();
        assert_close(&g[0].as_ref().unwrap().to_vec::<f64>(), &[0.5f64.cos(), 1.5f64.cos()], 1e-14);
    }
    // d2/dx2 sum(s * c) = d/dx sum(cos 2x) = -2 sin 2x
    let x = t(&[0.2, -0.7], &[2], true);
    let (s, c) = sincos(&x, Arc::new(AtomicUsize::new(0)), true);
    let y = reduce::sum(&binary::mul(&s, &c).unwrap(), None, false).unwrap();
    let one = Tensor::ones(&[], DType::F64).unwrap();
    // retain_graph with create_graph (torch's default): the gradient of s is c, whose history is this node
    let g = run_backward(&[y], std::slice::from_ref(&one), true, true, Some(std::slice::from_ref(&x)), false).unwrap();
    let gs = reduce::sum(g[0].as_ref().unwrap(), None, false).unwrap();
    let h = run_backward(&[gs], &[one], false, false, Some(std::slice::from_ref(&x)), false).unwrap();
    assert_close(&h[0].as_ref().unwrap().to_vec::<f64>(), &[-2.0 * 0.4f64.sin(), -2.0 * (-1.4f64).sin()], 1e-13);
}

#[test]
fn attach_multi_refuses_bad_outputs() {
    use rbe_core::autograd::attach_multi;
    let x = t(&[1.0], &[1], true);
    let y = unary::exp(&x.detach()).unwrap();
    let i = Tensor::from_vec(vec![1i64], &[1]).unwrap();
    assert!(attach_multi(&[], "Empty", &[&x], false, true, |_, _| Ok(vec![None])).is_err());
    assert!(attach_multi(&[&y, &i], "IntOut", &[&x], false, true, |_, _| Ok(vec![None])).is_err());
    assert!(attach_multi(&[&y, &y], "Twice", &[&x], false, true, |_, _| Ok(vec![None])).is_err());
    assert!(!y.requires_grad(), "a refused attach changes nothing");
}

#[test]
fn saved_tensor_modified_in_place_is_reported() {
    let x = t(&[1.0, 2.0], &[2], true);
    let e = unary::exp(&x).unwrap(); // saves its output
    let y = reduce::sum(&e, None, false).unwrap();
    {
        let _ng = rbe_core::autograd::no_grad();
        binary::add_assign_raw(&e, &Tensor::ones(&[2], DType::F64).unwrap()).unwrap();
    }
    let err = run_backward(&[y], &[Tensor::ones(&[], DType::F64).unwrap()], false, false, None, false).unwrap_err();
    assert!(matches!(err, rbe_core::Error::Autograd(ref m) if m.contains("modified by an inplace operation")), "{err:?}");
}

#[test]
fn second_backward_needs_retain_graph() {
    let x = t(&[1.0, 2.0], &[2], true);
    let y = reduce::sum(&unary::exp(&x).unwrap(), None, false).unwrap();
    let one = Tensor::ones(&[], DType::F64).unwrap();
    run_backward(std::slice::from_ref(&y), std::slice::from_ref(&one), true, false, None, false).unwrap();
    run_backward(std::slice::from_ref(&y), std::slice::from_ref(&one), false, false, None, false).unwrap();
    assert_close(&x.grad().unwrap().to_vec::<f64>(), &[2.0 * 1f64.exp(), 2.0 * 2f64.exp()], 1e-14);
    let e = run_backward(&[y], &[one], false, false, None, false).unwrap_err();
    assert!(matches!(e, rbe_core::Error::Autograd(ref m) if m.contains("second time")));
}
