//! The fused-op harness (`rbe_core::testing`) over the ChebyKAN ops:
//! `cheb_basis`, `chebykan` (tanh and affine input maps) and
//! `chebykan_taylor` (gradient, Laplacian and Hessian-diagonal modes, seeded
//! and given jets): fused equals a composite written with plain core ops
//! (the Chebyshev recurrences for the basis and its derivatives, the map's
//! derivatives, broadcast products and sums), derivatives to third order
//! against finite differences (a Laplacian followed by a parameter gradient
//! is a third derivative of the layer), and identical bits with 1 and 2
//! threads.
//!
//! Added to the harness's checks: the first-order gradients of the
//! `create_graph` backward (the composite path) equal those of the fused
//! backward, since the harness compares each order only with finite
//! differences of the same path.
use rbe_core::ext::ops::binary::{add, add_scalar, mul, mul_scalar, sub};
use rbe_core::ext::ops::reduce::sum;
use rbe_core::ext::ops::shape::{stack, unsqueeze};
use rbe_core::ext::ops::unary::tanh;
use rbe_core::ext::{ops, run_backward, DType, Result, Tensor, PAR_WORK};
use rbe_core::testing::{check_fused_op, check_thread_bits, CheckOptions};
use rbe_pinn::{cheb_basis, chebykan, chebykan_taylor, InputMap, Second};

/// Deterministic values in [lo, hi).
fn uniform(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

fn t(v: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape).unwrap()
}

fn as_f32(x: &Tensor) -> Tensor {
    ops::as_dtype(x, DType::F32).unwrap()
}

/// `[T_0^{(m)}(z), ..., T_K^{(m)}(z)]` for `m = 0..=orders-1`, by the
/// recurrence written with plain ops; each of shape `z.shape() + [K + 1]`.
fn plain_basis(z: &Tensor, degree: usize, orders: usize) -> Result<Vec<Tensor>> {
    let one = ops::unary::ones_like(z)?;
    let zero = ops::unary::zeros_like(z)?;
    let mut all: Vec<Vec<Tensor>> = Vec::new();
    for m in 0..orders {
        let mut row: Vec<Tensor> = Vec::new();
        for n in 0..=degree {
            let v = match n {
                0 => {
                    if m == 0 {
                        one.clone()
                    } else {
                        zero.clone()
                    }
                }
                1 => match m {
                    0 => z.clone(),
                    1 => one.clone(),
                    _ => zero.clone(),
                },
                _ => {
                    let mut v = sub(&mul_scalar(&mul(z, &row[n - 1])?, 2.0)?, &row[n - 2])?;
                    if m > 0 {
                        v = add(&v, &mul_scalar(&all[m - 1][n - 1], 2.0 * m as f64)?)?;
                    }
                    v
                }
            };
            row.push(v);
        }
        all.push(row);
    }
    all.into_iter().map(|row| stack(&row, -1)).collect()
}

/// `d^m/dx^m T_k(phi(x))`, `m < orders` (at most 3), with plain ops.
fn plain_g(x: &Tensor, map: &InputMap, degree: usize, orders: usize) -> Result<Vec<Tensor>> {
    let (z, p1, p2) = match map {
        InputMap::Tanh => {
            let z = tanh(x)?;
            let p1 = sub(&ops::unary::ones_like(&z)?, &mul(&z, &z)?)?;
            let p2 = mul_scalar(&mul(&z, &p1)?, -2.0)?;
            (z, p1, p2)
        }
        InputMap::Affine { scale, shift } => {
            let i = x.shape()[x.ndim() - 1];
            let s = ops::as_dtype(&t(if scale.len() == 1 { vec![scale[0]; i] } else { scale.clone() }, &[i]), x.dtype())?;
            let b = ops::as_dtype(&t(if shift.len() == 1 { vec![shift[0]; i] } else { shift.clone() }, &[i]), x.dtype())?;
            let z = add(&mul(x, &s)?, &b)?;
            let p1 = mul(&ops::unary::ones_like(x)?, &s)?;
            (z, p1, ops::unary::zeros_like(x)?)
        }
    };
    let b = plain_basis(&z, degree, orders)?;
    let (p1, p2) = (unsqueeze(&p1, -1)?, unsqueeze(&p2, -1)?);
    let mut g = vec![b[0].clone()];
    if orders > 1 {
        g.push(mul(&b[1], &p1)?);
    }
    if orders > 2 {
        g.push(add(&mul(&b[2], &mul(&p1, &p1)?)?, &mul(&b[1], &p2)?)?);
    }
    Ok(g)
}

/// `sum_{i,k} P[..., i, k] C[i, o, k]` for `P` of shape `(..., I, K+1)`.
fn contract(p: &Tensor, c: &Tensor) -> Result<Tensor> {
    // (..., I, 1, K1) * (I, O, K1) summed over I and K1
    let nd = p.ndim() as isize;
    let prod = mul(&unsqueeze(p, -2)?, c)?;
    sum(&prod, Some(&[nd - 2, nd]), false)
}

/// The layer with plain ops.
fn plain_layer(x: &Tensor, c: &Tensor, map: &InputMap) -> Result<Tensor> {
    let degree = c.shape()[2] - 1;
    contract(&plain_g(x, map, degree, 1)?[0], c)
}

/// The Taylor layer with plain ops: `(y, yj, ys)`.
fn plain_taylor(x: &Tensor, j: Option<&Tensor>, s: Option<&Tensor>, c: &Tensor, map: &InputMap, mode: Second) -> Result<Vec<Tensor>> {
    let degree = c.shape()[2] - 1;
    let (n, i) = (x.shape()[0], x.shape()[1]);
    let g = plain_g(x, map, degree, if mode == Second::None { 2 } else { 3 })?;
    let j = match j {
        Some(j) => j.clone(),
        None => {
            let eye: Vec<f64> = (0..n * i * i).map(|e| if (e / i) % i == e % i { 1.0 } else { 0.0 }).collect();
            ops::as_dtype(&t(eye, &[n, i, i]), x.dtype())?
        }
    };
    let y = contract(&g[0], c)?;
    let ju = unsqueeze(&j, -1)?;
    let (g1u, g2u) = (unsqueeze(&g[1], 1)?, g.get(2).map(|v| unsqueeze(v, 1)).transpose()?);
    let yj = contract(&mul(&g1u, &ju)?, c)?;
    let mut out = vec![y, yj];
    match mode {
        Second::None => {}
        Second::Diag => {
            let mut p = mul(g2u.as_ref().unwrap(), &mul(&ju, &ju)?)?;
            if let Some(s) = s {
                p = add(&p, &mul(&g1u, &unsqueeze(s, -1)?)?)?;
            }
            out.push(contract(&p, c)?);
        }
        Second::Trace => {
            let q = unsqueeze(&sum(&mul(&j, &j)?, Some(&[1]), false)?, -1)?;
            let mut p = mul(&g[2], &q)?;
            if let Some(s) = s {
                p = add(&p, &mul(&g[1], &unsqueeze(s, -1)?)?)?;
            }
            out.push(contract(&p, c)?);
        }
    }
    Ok(out)
}

fn opts3() -> CheckOptions {
    CheckOptions { order: 3, eps: 1e-5, atol: 1e-5, rtol: 1e-3, threads: vec![1, 2], ..CheckOptions::default() }
}

fn opts_f32() -> CheckOptions {
    CheckOptions { order: 1, fused_rtol: 2e-4, fused_atol: 2e-5, ..opts3() }
}

/// The gradients of `sum_k <w_k, f(x)_k>` (fixed weights) by the fused
/// backward and by the composite backward (`create_graph`) agree.
fn check_graph_backward(f: &dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>, inputs: &[Tensor]) -> std::result::Result<(), String> {
    let run = || -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|x| {
                let l = t(x.to_vec::<f64>(), x.shape());
                l.set_requires_grad(true)?;
                Ok(l)
            })
            .collect::<Result<_>>()?;
        let ys = f(&leaves)?;
        let mut s: Option<Tensor> = None;
        for (k, y) in ys.iter().enumerate() {
            let w = t(uniform(y.numel(), 77 + k as u64, -1.5, 1.5), y.shape());
            let v = sum(&mul(y, &w)?, None, false)?;
            s = Some(match s {
                None => v,
                Some(a) => add(&a, &v)?,
            });
        }
        let s = s.unwrap();
        let one = Tensor::ones(&[], DType::F64)?;
        let fused = run_backward(std::slice::from_ref(&s), std::slice::from_ref(&one), true, false, Some(&leaves), true)?;
        let graph = run_backward(&[s], &[one], false, true, Some(&leaves), true)?;
        Ok(fused
            .iter()
            .zip(&graph)
            .map(|(a, b)| {
                (a.as_ref().map(|v| v.to_vec::<f64>()).unwrap_or_default(), b.as_ref().map(|v| v.to_vec::<f64>()).unwrap_or_default())
            })
            .collect())
    };
    let pairs = run().map_err(|e| e.to_string())?;
    for (i, (a, b)) in pairs.iter().enumerate() {
        if a.len() != b.len() {
            return Err(format!("input {i}: {} fused gradient entries, {} composite", a.len(), b.len()));
        }
        for (e, (x, y)) in a.iter().zip(b).enumerate() {
            if (x - y).abs() > 1e-12 + 1e-10 * y.abs() {
                return Err(format!("input {i} [element {e}]: fused backward {x} vs create_graph backward {y}"));
            }
        }
    }
    Ok(())
}

fn maps(i: usize) -> Vec<(&'static str, InputMap)> {
    let lo: Vec<f64> = (0..i).map(|k| -1.0 - 0.5 * k as f64).collect();
    let hi: Vec<f64> = (0..i).map(|k| 1.5 + k as f64).collect();
    vec![("tanh", InputMap::Tanh), ("affine", InputMap::from_box(&lo, &hi).unwrap())]
}

#[test]
fn basis_matches_the_recurrence_with_plain_ops_to_third_order() {
    let z = t(uniform(7, 1, -1.0, 1.0), &[7]);
    for degree in [0, 1, 2, 5] {
        for order in 0..3 {
            let fused = move |x: &[Tensor]| Ok(vec![cheb_basis(&x[0], degree, order)?]);
            let composite = move |x: &[Tensor]| Ok(vec![plain_basis(&x[0], degree, order + 1)?.pop().unwrap()]);
            check_fused_op(&fused, &composite, std::slice::from_ref(&z), &[true], &opts3())
                .unwrap_or_else(|e| panic!("cheb_basis degree {degree} order {order}: {e}"));
            check_fused_op(&fused, &composite, &[as_f32(&z)], &[true], &opts_f32())
                .unwrap_or_else(|e| panic!("cheb_basis f32 degree {degree} order {order}: {e}"));
        }
    }
}

#[test]
fn basis_closed_forms() {
    // T_k(cos th) = cos(k th), T_k'(cos th) = k sin(k th) / sin(th),
    // T_k'' = (k cos th sin(k th) / sin th - k^2 cos(k th)) / sin^2 th
    let th: Vec<f64> = uniform(9, 2, 0.2, 2.9);
    let z = t(th.iter().map(|v| v.cos()).collect(), &[9]);
    let k1 = 8;
    let b: Vec<Vec<f64>> = (0..3).map(|m| cheb_basis(&z, k1 - 1, m).unwrap().to_vec::<f64>()).collect();
    for (e, &a) in th.iter().enumerate() {
        for k in 0..k1 {
            let kf = k as f64;
            let (s, c) = (a.sin(), a.cos());
            let want = [(kf * a).cos(), kf * (kf * a).sin() / s, (kf * c * (kf * a).sin() / s - kf * kf * (kf * a).cos()) / (s * s)];
            for m in 0..3 {
                let got = b[m][e * k1 + k];
                assert!((got - want[m]).abs() <= 1e-9 * (1.0 + want[m].abs()), "T_{k}^({m})(cos {a}) = {got}, want {}", want[m]);
            }
        }
    }
    // at the end points: T_k(1) = 1, T_k'(1) = k^2, T_k''(1) = k^2 (k^2 - 1) / 3
    let one = t(vec![1.0, -1.0], &[2]);
    let b: Vec<Vec<f64>> = (0..3).map(|m| cheb_basis(&one, 6, m).unwrap().to_vec::<f64>()).collect();
    for k in 0..7 {
        let kf = k as f64;
        let sg = if k % 2 == 0 { 1.0 } else { -1.0 };
        assert_eq!(b[0][k], 1.0);
        assert!((b[1][k] - kf * kf).abs() < 1e-12);
        assert!((b[2][k] - kf * kf * (kf * kf - 1.0) / 3.0).abs() < 1e-9);
        assert!((b[0][7 + k] - sg).abs() < 1e-12);
    }
}

fn layer_inputs(n: usize, i: usize, o: usize, degree: usize, seed: u64) -> (Tensor, Tensor) {
    let x = t(uniform(n * i, seed, -1.2, 1.4), &[n, i]);
    let c = t(uniform(i * o * (degree + 1), seed + 1, -0.6, 0.6), &[i, o, degree + 1]);
    (x, c)
}

#[test]
fn layer_through_the_harness_to_third_order() {
    for (name, map) in maps(3) {
        for degree in [1, 3, 5] {
            let (x, c) = layer_inputs(4, 3, 2, degree, 10 + degree as u64);
            let m1 = map.clone();
            let m2 = map.clone();
            let fused = move |v: &[Tensor]| Ok(vec![chebykan(&v[0], &v[1], &m1)?]);
            let composite = move |v: &[Tensor]| Ok(vec![plain_layer(&v[0], &v[1], &m2)?]);
            let inputs = [x.clone(), c.clone()];
            check_fused_op(&fused, &composite, &inputs, &[true, true], &opts3())
                .unwrap_or_else(|e| panic!("chebykan {name} degree {degree}: {e}"));
            check_graph_backward(&fused, &inputs).unwrap_or_else(|e| panic!("chebykan {name} degree {degree}: {e}"));
            let inputs32 = [as_f32(&x), as_f32(&c)];
            check_fused_op(&fused, &composite, &inputs32, &[true, true], &opts_f32())
                .unwrap_or_else(|e| panic!("chebykan f32 {name} degree {degree}: {e}"));
        }
    }
    // leading dimensions are kept
    let (x, c) = layer_inputs(6, 3, 2, 2, 3);
    let x3 = ops::shape::reshape(&x, &[2, 3, 3]).unwrap();
    let y = chebykan(&x3, &c, &InputMap::Tanh).unwrap();
    assert_eq!(y.shape(), &[2, 3, 2]);
}

type Fns = (Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>, Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>);

/// Fused and composite Taylor layers over inputs `[x, (first), (second), coeffs]`.
fn taylor_fns(map: &InputMap, mode: Second, given: bool, with_second: bool) -> Fns {
    let (m1, m2) = (map.clone(), map.clone());
    let split = move |v: &[Tensor]| -> (Tensor, Option<Tensor>, Option<Tensor>, Tensor) {
        let mut k = 1;
        let j = given.then(|| {
            k += 1;
            v[1].clone()
        });
        let s = with_second.then(|| {
            k += 1;
            v[2].clone()
        });
        (v[0].clone(), j, s, v[k].clone())
    };
    let fused = move |v: &[Tensor]| -> Result<Vec<Tensor>> {
        let (x, j, s, c) = split(v);
        let r = chebykan_taylor(&x, j.as_ref(), s.as_ref(), &c, &m1, mode)?;
        let mut out = vec![r.value, r.first];
        out.extend(r.second);
        Ok(out)
    };
    let composite = move |v: &[Tensor]| -> Result<Vec<Tensor>> {
        let (x, j, s, c) = split(v);
        plain_taylor(&x, j.as_ref(), s.as_ref(), &c, &m2, mode)
    };
    (Box::new(fused), Box::new(composite))
}

#[allow(clippy::too_many_arguments)]
fn taylor_inputs(
    n: usize,
    i: usize,
    o: usize,
    d: usize,
    degree: usize,
    mode: Second,
    given: bool,
    with_second: bool,
    seed: u64,
) -> Vec<Tensor> {
    let (x, c) = layer_inputs(n, i, o, degree, seed);
    let mut v = vec![x];
    if given {
        v.push(t(uniform(n * d * i, seed + 5, -1.0, 1.0), &[n, d, i]));
    }
    if with_second {
        let shape: Vec<usize> = if mode == Second::Diag { vec![n, d, i] } else { vec![n, i] };
        v.push(t(uniform(shape.iter().product(), seed + 6, -1.0, 1.0), &shape));
    }
    v.push(c);
    v
}

#[test]
fn taylor_through_the_harness_to_third_order() {
    let cases: [(Second, bool, bool); 7] = [
        (Second::None, false, false),
        (Second::None, true, false),
        (Second::Trace, false, false),
        (Second::Trace, true, false),
        (Second::Trace, true, true),
        (Second::Diag, false, false),
        (Second::Diag, true, true),
    ];
    for (name, map) in maps(2) {
        for (ci, &(mode, given, with_second)) in cases.iter().enumerate() {
            let inputs = taylor_inputs(3, 2, 2, 2, 3, mode, given, with_second, 40 + ci as u64);
            let diff = vec![true; inputs.len()];
            let (fused, composite) = taylor_fns(&map, mode, given, with_second);
            let what = format!("chebykan_taylor {name} {mode:?} given={given} second={with_second}");
            check_fused_op(&*fused, &*composite, &inputs, &diff, &opts3()).unwrap_or_else(|e| panic!("{what}: {e}"));
            check_graph_backward(&*fused, &inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
            let inputs32: Vec<Tensor> = inputs.iter().map(as_f32).collect();
            check_fused_op(&*fused, &*composite, &inputs32, &diff, &opts_f32()).unwrap_or_else(|e| panic!("{what} f32: {e}"));
        }
    }
}

/// The Taylor outputs are the derivatives of the layer: central differences
/// of `chebykan` along each input axis (the seeded case, `d = I`).
#[test]
fn taylor_equals_finite_differences_of_the_layer() {
    let (n, i, o) = (5, 3, 4);
    for (name, map) in maps(i) {
        let (x, c) = layer_inputs(n, i, o, 5, 60);
        let diag = chebykan_taylor(&x, None, None, &c, &map, Second::Diag).unwrap();
        let trace = chebykan_taylor(&x, None, None, &c, &map, Second::Trace).unwrap();
        let y0 = chebykan(&x, &c, &map).unwrap().to_vec::<f64>();
        assert_eq!(diag.value.to_vec::<f64>(), y0, "{name}: value");
        let (yj, yd, yt) = (diag.first.to_vec::<f64>(), diag.second.unwrap().to_vec::<f64>(), trace.second.unwrap().to_vec::<f64>());
        let h = 1e-4;
        let xv = x.to_vec::<f64>();
        let mut lap = vec![0.0; n * o];
        for a in 0..i {
            let shifted = |delta: f64| {
                let v: Vec<f64> = xv.iter().enumerate().map(|(e, &u)| if e % i == a { u + delta } else { u }).collect();
                chebykan(&t(v, &[n, i]), &c, &map).unwrap().to_vec::<f64>()
            };
            let (p, m) = (shifted(h), shifted(-h));
            for r in 0..n {
                for q in 0..o {
                    let e = r * o + q;
                    let d1 = (p[e] - m[e]) / (2.0 * h);
                    let d2 = (p[e] - 2.0 * y0[e] + m[e]) / (h * h);
                    let (g1, g2) = (yj[(r * i + a) * o + q], yd[(r * i + a) * o + q]);
                    assert!((g1 - d1).abs() < 1e-6 * (1.0 + d1.abs()), "{name}: first [{r},{a},{q}] {g1} vs {d1}");
                    assert!((g2 - d2).abs() < 2e-4 * (1.0 + d2.abs()), "{name}: second [{r},{a},{q}] {g2} vs {d2}");
                    lap[e] += g2;
                }
            }
        }
        for (e, (&a, &b)) in yt.iter().zip(&lap).enumerate() {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{name}: trace [{e}] {a} vs sum of the diagonal {b}");
        }
    }
}

/// Two layers chained in Taylor mode equal nested reverse mode (the gradient
/// of the gradient) through the plain layers.
#[test]
fn chained_taylor_equals_nested_reverse_mode() {
    let (n, d, h) = (4, 2, 5);
    let x = t(uniform(n * d, 70, -1.0, 1.0), &[n, d]);
    let c1 = t(uniform(d * h * 4, 71, -0.7, 0.7), &[d, h, 4]);
    let c2 = t(uniform(h * 6, 72, -0.7, 0.7), &[h, 1, 6]);
    let box_map = InputMap::from_box(&[-1.0, -2.0], &[1.0, 3.0]).unwrap();
    let l1 = chebykan_taylor(&x, None, None, &c1, &box_map, Second::Diag).unwrap();
    let l2 = chebykan_taylor(&l1.value, Some(&l1.first), l1.second.as_ref(), &c2, &InputMap::Tanh, Second::Diag).unwrap();
    let l1t = chebykan_taylor(&x, None, None, &c1, &box_map, Second::Trace).unwrap();
    let l2t = chebykan_taylor(&l1t.value, Some(&l1t.first), l1t.second.as_ref(), &c2, &InputMap::Tanh, Second::Trace).unwrap();
    // nested reverse mode
    let xl = t(x.to_vec::<f64>(), &[n, d]);
    xl.set_requires_grad(true).unwrap();
    let u = chebykan(&chebykan(&xl, &c1, &box_map).unwrap(), &c2, &InputMap::Tanh).unwrap();
    let one = Tensor::ones(&[], DType::F64).unwrap();
    let us = sum(&u, None, false).unwrap();
    let g = run_backward(&[us], std::slice::from_ref(&one), true, true, Some(std::slice::from_ref(&xl)), true).unwrap()[0].clone().unwrap();
    let gv = g.to_vec::<f64>();
    let fj = l2.first.to_vec::<f64>();
    let fd = l2.second.unwrap().to_vec::<f64>();
    let ft = l2t.second.unwrap().to_vec::<f64>();
    let mut lap = vec![0.0; n];
    for a in 0..d {
        let ga = sum(&ops::shape::select(&g, 1, a as isize).unwrap(), None, false).unwrap();
        let h2 = run_backward(&[ga], std::slice::from_ref(&one), true, false, Some(std::slice::from_ref(&xl)), true).unwrap()[0]
            .clone()
            .unwrap();
        let hv = h2.to_vec::<f64>();
        for r in 0..n {
            assert!((fj[r * d + a] - gv[r * d + a]).abs() < 1e-12, "first [{r},{a}]");
            assert!(
                (fd[r * d + a] - hv[r * d + a]).abs() < 1e-10 * (1.0 + hv[r * d + a].abs()),
                "second [{r},{a}]: {} vs {}",
                fd[r * d + a],
                hv[r * d + a]
            );
            lap[r] += hv[r * d + a];
        }
    }
    for r in 0..n {
        assert!((ft[r] - lap[r]).abs() < 1e-10 * (1.0 + lap[r].abs()), "laplacian [{r}]: {} vs {}", ft[r], lap[r]);
    }
}

/// Sizes large enough that the basis fill, the GEMMs and the backward loops
/// all run on two threads: the bits must not change.
#[test]
fn thread_counts_give_identical_bits_on_layers_large_enough_to_split() {
    let (n, i, o, degree) = (3000, 16, 16, 5);
    assert!(n * i * (degree + 1) * 4 >= PAR_WORK);
    for (name, map) in maps(i) {
        for dt in [DType::F64, DType::F32] {
            let (x, c) = layer_inputs(n, i, o, degree, 80);
            let inputs = [ops::as_dtype(&x, dt).unwrap(), ops::as_dtype(&c, dt).unwrap()];
            let m1 = map.clone();
            let f = move |v: &[Tensor]| Ok(vec![chebykan(&v[0], &v[1], &m1)?]);
            check_thread_bits(&f, &inputs, &[true, true], &[1, 2]).unwrap_or_else(|e| panic!("chebykan {name} {dt:?}: {e}"));
            for mode in [Second::Trace, Second::Diag] {
                let inputs: Vec<Tensor> =
                    taylor_inputs(n, i, o, 3, degree, mode, true, true, 81).iter().map(|v| ops::as_dtype(v, dt).unwrap()).collect();
                let (fused, _) = taylor_fns(&map, mode, true, true);
                check_thread_bits(&*fused, &inputs, &vec![true; inputs.len()], &[1, 2])
                    .unwrap_or_else(|e| panic!("chebykan_taylor {name} {mode:?} {dt:?}: {e}"));
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let (x, c) = layer_inputs(4, 3, 2, 3, 90);
    let map = InputMap::Tanh;
    assert!(chebykan(&x, &c, &map).is_ok());
    let msg = |r: Result<Tensor>| r.unwrap_err().to_string();
    // input width, dtypes, coefficient rank
    assert!(msg(chebykan(&Tensor::zeros(&[4, 2], DType::F64).unwrap(), &c, &map)).contains("in_features = 3"));
    assert!(msg(chebykan(&as_f32(&x), &c, &map)).contains("dtype"));
    assert!(msg(chebykan(&x, &Tensor::zeros(&[3, 2], DType::F64).unwrap(), &map)).contains("coeffs must have shape"));
    assert!(chebykan(&x, &Tensor::zeros(&[3, 2, 0], DType::F64).unwrap(), &map).is_err());
    assert!(chebykan(&Tensor::zeros(&[4, 3], DType::I64).unwrap(), &Tensor::zeros(&[3, 2, 2], DType::I64).unwrap(), &map).is_err());
    // affine maps: wrong length, non-finite values, empty or inverted boxes
    let bad = InputMap::Affine { scale: vec![1.0, 2.0], shift: vec![0.0] };
    assert!(msg(chebykan(&x, &c, &bad)).contains("scale has 2 values for 3 input features"));
    let nan = InputMap::Affine { scale: vec![f64::NAN], shift: vec![0.0] };
    assert!(chebykan(&x, &c, &nan).is_err());
    assert!(InputMap::from_box(&[0.0], &[0.0]).is_err());
    assert!(InputMap::from_box(&[0.0, 1.0], &[1.0]).is_err());
    assert!(InputMap::from_box(&[f64::NEG_INFINITY], &[1.0]).is_err());
    // Taylor mode: shapes of the jets, second without first, second in gradient mode
    let j = Tensor::zeros(&[4, 2, 3], DType::F64).unwrap();
    let s = Tensor::zeros(&[4, 3], DType::F64).unwrap();
    assert!(chebykan_taylor(&x, Some(&j), Some(&s), &c, &map, Second::Trace).is_ok());
    let err = |r: Result<rbe_pinn::TaylorOut>| r.unwrap_err().to_string();
    assert!(err(chebykan_taylor(&x, Some(&Tensor::zeros(&[4, 2, 2], DType::F64).unwrap()), None, &c, &map, Second::Trace))
        .contains("first must have shape"));
    assert!(err(chebykan_taylor(&x, Some(&j), Some(&s), &c, &map, Second::Diag)).contains("second must have shape"));
    assert!(err(chebykan_taylor(&x, None, Some(&s), &c, &map, Second::Trace)).contains("without first-order input"));
    assert!(err(chebykan_taylor(&x, Some(&j), Some(&s), &c, &map, Second::None)).contains("no second derivatives"));
    assert!(chebykan_taylor(&ops::shape::reshape(&x, &[2, 2, 3]).unwrap(), None, None, &c, &map, Second::Trace).is_err());
    // an input that requires grad is left unchanged by a failed call
    let xl = t(x.to_vec::<f64>(), &[4, 3]);
    xl.set_requires_grad(true).unwrap();
    assert!(chebykan(&xl, &c, &bad).is_err());
    assert!(xl.grad_fn().is_none());
    // empty batches work
    let e = chebykan(&Tensor::zeros(&[0, 3], DType::F64).unwrap(), &c, &map).unwrap();
    assert_eq!(e.shape(), &[0, 2]);
    let cl = t(c.to_vec::<f64>(), c.shape());
    cl.set_requires_grad(true).unwrap();
    let r = chebykan_taylor(&Tensor::zeros(&[0, 3], DType::F64).unwrap(), None, None, &cl, &map, Second::Trace).unwrap();
    let s = add_scalar(&sum(&r.second.unwrap(), None, false).unwrap(), 0.0).unwrap();
    let one = Tensor::ones(&[], DType::F64).unwrap();
    let g = run_backward(&[s], &[one], false, false, Some(&[cl]), true).unwrap();
    assert!(g[0].as_ref().map(|v| v.to_vec::<f64>().iter().all(|&u| u == 0.0)).unwrap_or(true));
}

/// The backward given the forward's basis matrices (what a layer call keeps
/// for its backward) gives the same bits as the backward that writes them
/// again; with only the coefficient gradient wanted it skips the row pass.
#[test]
fn backward_with_the_forward_basis_gives_the_same_bits() {
    use rbe_pinn::kernels::{taylor_backward, taylor_forward, Dims, First, Jets, Map, Needs};
    let (n, i, o, k1) = (37, 3, 4, 5); // 37 rows: blocks of 16 and a partial one
    let (scale, shift) = (vec![2.0, 0.5, 1.5], vec![-1.0, 0.25, 0.0]);
    let maps = [Map::Tanh, Map::Affine { scale: &scale, shift: &shift }];
    for (mi, map) in maps.iter().enumerate() {
        for (second, given, with_second) in
            [(Second::Trace, true, true), (Second::Diag, true, true), (Second::Trace, false, false), (Second::Diag, false, false)]
        {
            let d = if given { 2 } else { i };
            let dm = Dims { n, i, o, k1, d, second };
            let m = dm.m();
            let x = uniform(n * i, 1 + mi as u64, -1.5, 1.5);
            let xj = uniform(n * d * i, 2, -1.0, 1.0);
            let xs = uniform(n * m * i, 3, -1.0, 1.0);
            let c = uniform(i * o * k1, 4, -0.5, 0.5);
            let jets = Jets { x: &x, first: if given { First::Given(&xj) } else { First::Seed }, second: with_second.then_some(&xs[..]) };
            let (mut y, mut yj, mut ys) = (vec![0.0; n * o], vec![0.0; n * d * o], vec![0.0; n * m * o]);
            let basis = taylor_forward(&dm, map, &jets, &c, &mut y, &mut yj, &mut ys, true).unwrap().unwrap();
            let (mut y2, mut yj2, mut ys2) = (vec![0.0; n * o], vec![0.0; n * d * o], vec![0.0; n * m * o]);
            assert!(taylor_forward(&dm, map, &jets, &c, &mut y2, &mut yj2, &mut ys2, false).unwrap().is_none());
            assert_eq!((&y, &yj, &ys), (&y2, &yj2, &ys2));
            let (gy, gj, gs) = (uniform(n * o, 5, -1.0, 1.0), uniform(n * d * o, 6, -1.0, 1.0), uniform(n * m * o, 7, -1.0, 1.0));
            let b = Some((&basis.pv[..], &basis.pj[..], &basis.ps[..]));
            let all = Needs { x: true, first: given, second: with_second, coeffs: true };
            let only_c = Needs { x: false, first: false, second: false, coeffs: true };
            let vecs = |g: rbe_pinn::kernels::Grads<f64>| [g.x, g.first, g.second, g.coeffs].map(|t| t.map(|t| t.to_vec()));
            let what = format!("map {mi} {second:?} given={given}");
            let fresh = vecs(taylor_backward(&dm, map, &jets, &c, Some(&gy), Some(&gj), Some(&gs), all, None).unwrap());
            let kept = vecs(taylor_backward(&dm, map, &jets, &c, Some(&gy), Some(&gj), Some(&gs), all, b).unwrap());
            assert_eq!(fresh, kept, "{what}");
            let c_fresh = vecs(taylor_backward(&dm, map, &jets, &c, Some(&gy), Some(&gj), Some(&gs), only_c, None).unwrap());
            let c_kept = vecs(taylor_backward(&dm, map, &jets, &c, Some(&gy), Some(&gj), Some(&gs), only_c, b).unwrap());
            assert!(c_kept[3].is_some() && c_kept[..3].iter().all(Option::is_none), "{what}");
            assert_eq!(c_fresh, c_kept, "{what}");
            assert_eq!(c_kept[3], fresh[3], "{what}");
            // a basis of the wrong size is an error, not a panic
            let short = Some((&basis.pv[1..], &basis.pj[..], &basis.ps[..]));
            assert!(taylor_backward(&dm, map, &jets, &c, Some(&gy), Some(&gj), Some(&gs), all, short).is_err(), "{what}");
            // a missing output gradient is a zero one (its stream is skipped)
            let (zy, zj) = (vec![0.0; n * o], vec![0.0; n * d * o]);
            for (gy_, gj_, gs_) in [(None, None, Some(&gs[..])), (Some(&gy[..]), None, None), (None, Some(&gj[..]), None)] {
                let skipped = vecs(taylor_backward(&dm, map, &jets, &c, gy_, gj_, gs_, all, b).unwrap());
                let zeros = vecs(
                    taylor_backward(
                        &dm,
                        map,
                        &jets,
                        &c,
                        Some(gy_.unwrap_or(&zy)),
                        Some(gj_.unwrap_or(&zj)),
                        Some(gs_.unwrap_or(&vec![0.0; n * m * o])),
                        all,
                        b,
                    )
                    .unwrap(),
                );
                assert_eq!(skipped, zeros, "{what}: skipped streams");
            }
            // gradients of the wrong size are an error, not a panic
            assert!(taylor_backward(&dm, map, &jets, &c, Some(&gy[1..]), None, None, all, b).is_err(), "{what}");
        }
    }
}
