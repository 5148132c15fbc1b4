//! The fused-op harness (`rbe_core::testing`) over `rbe_generate` and
//! `rbe_linear`: fused equals composite (the matrix materialised with plain
//! differentiable ops, then `x @ W^T + b`), derivatives to second order
//! against finite differences (the second order goes through the composite
//! `create_graph` backward of the ops), and identical bits with 1 and 2
//! threads. Both `rbe_linear` kernels (streaming for batches of at most
//! `SMALL_BATCH` rows, whole-layer GEMMs above), SIN, TANH, mixed and relaxed
//! tracks, with and without residuals and bias.
//!
//! One check is added to the harness's: the first-order gradients of the
//! `create_graph` backward (the composite path) equal those of the fused
//! backward. The harness compares each order with finite differences of the
//! previous order *as computed by the same path*, so a composite backward
//! that is wrong but consistent with its own derivatives would pass it.
use rbe_core::ext::ops::binary::{add, mul, mul_scalar, sub};
use rbe_core::ext::ops::linalg::{linear, matmul};
use rbe_core::ext::ops::reduce::sum;
use rbe_core::ext::ops::shape::{mt, narrow, permute, reshape, select, unsqueeze};
use rbe_core::ext::ops::unary::{sin, tanh};
use rbe_core::ext::{ops, run_backward, DType, Result, Tensor, PAR_WORK};
use rbe_core::testing::{check_fused_op, check_thread_bits, CheckOptions};
use rbe_structured::dct::dct_matrix;
use rbe_structured::kernels::SMALL_BATCH;
use rbe_structured::{rbe_generate, rbe_linear, Layout, RbeParams};

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

#[derive(Clone, Copy, Debug)]
enum Tracks {
    Sin,
    Tanh,
    Mixed,
    /// Values strictly inside (0, 1) on odd atoms: the relaxation `(1 - alpha) sin + alpha tanh`.
    Relaxed,
}

/// One case: the layout and the parameter tensors (float64 unless cast).
struct Case {
    lay: Layout,
    atoms: Tensor,
    tracks: Tensor,
    res: Option<(Tensor, Tensor)>,
    bias: Option<Tensor>,
}

/// `(out, in, Br, Bc)`, `J` atoms and `K` residual coefficients per block.
fn case((out, inp, br, bc): (usize, usize, usize, usize), j: usize, k: usize, tracks: Tracks, bias: bool, seed: u64) -> Case {
    let lay = Layout::new(out, inp, br, bc, None).unwrap();
    let nb = lay.n_blocks();
    let amp = uniform(nb * j, seed, -1.0, 1.0);
    let phase = uniform(nb * j, seed + 1, -3.0, 3.0);
    // frequencies up to about half the grid's Nyquist frequency
    let pmax = 0.5 * std::f64::consts::PI * br.max(bc) as f64 / 2.0 / (2.0 * lay.kappa);
    let p = uniform(2 * nb * j, seed + 2, -pmax, pmax);
    let atoms: Vec<f64> = (0..nb * j).flat_map(|i| [amp[i], phase[i], p[2 * i], p[2 * i + 1]]).collect();
    let relaxed = uniform(nb * j, seed + 3, 0.2, 0.8);
    let alpha: Vec<f64> = (0..nb * j)
        .map(|i| match tracks {
            Tracks::Sin => 0.0,
            Tracks::Tanh => 1.0,
            Tracks::Mixed => (i % j % 2) as f64,
            Tracks::Relaxed => {
                if i % j % 2 == 1 {
                    relaxed[i]
                } else {
                    0.0
                }
            }
        })
        .collect();
    let res = (k > 0).then(|| {
        let vals = uniform(nb * k, seed + 4, -0.5, 0.5);
        // k distinct indices per block
        let idx: Vec<i64> = (0..nb).flat_map(|b| (0..k).map(move |q| ((b * 7 + q * (br * bc / k).max(1)) % (br * bc)) as i64)).collect();
        (Tensor::from_vec(vals, &[nb, k]).unwrap(), Tensor::from_vec(idx, &[nb, k]).unwrap())
    });
    let bias = bias.then(|| Tensor::from_vec(uniform(out, seed + 5, -1.0, 1.0), &[out]).unwrap());
    Case { lay, atoms: Tensor::from_vec(atoms, &[nb, j, 4]).unwrap(), tracks: Tensor::from_vec(alpha, &[nb, j]).unwrap(), res, bias }
}

fn as_f32(t: &Tensor) -> Tensor {
    ops::as_dtype(t, DType::F32).unwrap()
}

/// The matrix of spec section 2 written with plain differentiable ops (no
/// fused kernel): per-atom waves summed per block, the residual as
/// `D_r^T C D_c` with `C` scattered by one-hot weights, blocks assembled and
/// edge blocks cropped.
fn composite_generate(lay: &Layout, atoms: &Tensor, tracks: &Tensor, res: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let dt = atoms.dtype();
    let (nbr, nbc) = lay.grid();
    let (nb, br, bc) = (lay.n_blocks(), lay.br, lay.bc);
    let cst = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> { ops::as_dtype(&Tensor::from_vec(v, shape)?, dt) };
    let xs = cst((0..bc).map(|j| lay.x(j)).collect(), &[1, 1, 1, bc])?;
    let ys = cst((0..br).map(|i| lay.y(i)).collect(), &[1, 1, br, 1])?;
    let field = |c: isize| -> Result<Tensor> { unsqueeze(&unsqueeze(&select(atoms, 2, c)?, -1)?, -1) };
    let kk = 2.0 * lay.kappa;
    let u = add(&add(&mul(&mul_scalar(&field(2)?, kk)?, &xs)?, &mul(&mul_scalar(&field(3)?, kk)?, &ys)?)?, &field(1)?)?;
    let al = unsqueeze(&unsqueeze(tracks, -1)?, -1)?;
    let (s, t) = (sin(&u)?, tanh(&u)?);
    let g = add(&s, &mul(&al, &sub(&t, &s)?)?)?;
    let mut blk = sum(&mul(&field(0)?, &g)?, Some(&[1]), false)?; // (nb, br, bc)
    if let Some((vals, idx)) = res {
        let k = vals.shape()[1];
        let idx = idx.to_vec::<i64>();
        let mut onehot = vec![0.0; nb * k * br * bc];
        for (bq, &i) in idx.iter().enumerate() {
            onehot[bq * br * bc + i as usize] = 1.0;
        }
        let onehot = cst(onehot, &[nb, k, br * bc])?;
        let coef = reshape(&sum(&mul(&unsqueeze(vals, -1)?, &onehot)?, Some(&[1]), false)?, &[nb, br, bc])?;
        let (dr, dc) = (cst(dct_matrix(br), &[br, br])?, cst(dct_matrix(bc), &[bc, bc])?);
        blk = add(&blk, &matmul(&matmul(&mt(&dr)?, &coef)?, &dc)?)?;
    }
    let full = reshape(&permute(&reshape(&blk, &[nbr, nbc, br, bc])?, &[0, 2, 1, 3])?, &[nbr * br, nbc * bc])?;
    narrow(&narrow(&full, 0, 0, lay.out)?, 1, 0, lay.inp)
}

/// Inputs of the linear case: `[x, atoms, tracks, (res_vals), (bias)]`, all differentiated.
fn linear_inputs(c: &Case, x: &Tensor) -> Vec<Tensor> {
    let mut v = vec![x.clone(), c.atoms.clone(), c.tracks.clone()];
    if let Some((vals, _)) = &c.res {
        v.push(vals.clone());
    }
    if let Some(b) = &c.bias {
        v.push(b.clone());
    }
    v
}

type Fns = (Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>, Box<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>>);

/// Fused and composite forms of `rbe_linear` for the inputs of [`linear_inputs`].
fn linear_fns(c: &Case) -> Fns {
    let (lay, idx, has_res, has_bias) = (c.lay, c.res.as_ref().map(|r| r.1.clone()), c.res.is_some(), c.bias.is_some());
    let idx2 = idx.clone();
    let fused = move |t: &[Tensor]| -> Result<Vec<Tensor>> {
        let rv = has_res.then(|| &t[3]);
        let b = has_bias.then(|| &t[3 + has_res as usize]);
        let p = RbeParams { atoms: &t[1], tracks: &t[2], res_vals: rv, res_idx: idx.as_ref() };
        Ok(vec![rbe_linear(&t[0], &lay, &p, b)?])
    };
    let composite = move |t: &[Tensor]| -> Result<Vec<Tensor>> {
        let res = has_res.then(|| (&t[3], idx2.as_ref().unwrap()));
        let b = has_bias.then(|| &t[3 + has_res as usize]);
        let w = composite_generate(&lay, &t[1], &t[2], res)?;
        Ok(vec![linear(&t[0], &w, b)?])
    };
    (Box::new(fused), Box::new(composite))
}

fn generate_fns(c: &Case) -> Fns {
    let (lay, idx, has_res) = (c.lay, c.res.as_ref().map(|r| r.1.clone()), c.res.is_some());
    let idx2 = idx.clone();
    let fused = move |t: &[Tensor]| -> Result<Vec<Tensor>> {
        let p = RbeParams { atoms: &t[0], tracks: &t[1], res_vals: has_res.then(|| &t[2]), res_idx: idx.as_ref() };
        Ok(vec![rbe_generate(&lay, &p)?])
    };
    let composite = move |t: &[Tensor]| -> Result<Vec<Tensor>> {
        Ok(vec![composite_generate(&lay, &t[0], &t[1], has_res.then(|| (&t[2], idx2.as_ref().unwrap())))?])
    };
    (Box::new(fused), Box::new(composite))
}

/// The gradients of `sum_k w_k f(x)_k` (fixed weights `w`) by the fused
/// backward and by the composite backward (`create_graph`) agree.
fn check_graph_backward(f: &dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>, inputs: &[Tensor]) -> std::result::Result<(), String> {
    let run = || -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
        let leaves: Vec<Tensor> = inputs
            .iter()
            .map(|t| {
                let l = Tensor::from_vec(t.to_vec::<f64>(), t.shape())?;
                l.set_requires_grad(true)?;
                Ok(l)
            })
            .collect::<Result<_>>()?;
        let y = f(&leaves)?.remove(0);
        let w = Tensor::from_vec(uniform(y.numel(), 77, -1.5, 1.5), y.shape())?;
        let s = sum(&mul(&y, &w)?, None, false)?;
        let one = Tensor::ones(&[], DType::F64).unwrap();
        let fused = run_backward(std::slice::from_ref(&s), std::slice::from_ref(&one), true, false, Some(&leaves), true)?;
        let graph = run_backward(&[s], &[one], false, true, Some(&leaves), true)?;
        Ok(fused
            .iter()
            .zip(&graph)
            .map(|(a, b)| {
                (a.as_ref().map(|t| t.to_vec::<f64>()).unwrap_or_default(), b.as_ref().map(|t| t.to_vec::<f64>()).unwrap_or_default())
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

fn opts() -> CheckOptions {
    CheckOptions { order: 2, threads: vec![1, 2], ..CheckOptions::default() }
}

/// float32 inputs: fused and composite agree to float32 rounding (the
/// derivative check still runs on float64 copies).
fn opts_f32() -> CheckOptions {
    CheckOptions { fused_rtol: 1e-4, fused_atol: 1e-5, ..opts() }
}

fn check_linear(c: &Case, n: usize, f32_too: bool) {
    let x = Tensor::from_vec(uniform(n * c.lay.inp, 99 + n as u64, -1.0, 1.0), &[n, c.lay.inp]).unwrap();
    let inputs = linear_inputs(c, &x);
    let diff = vec![true; inputs.len()];
    let (fused, composite) = linear_fns(c);
    check_fused_op(&*fused, &*composite, &inputs, &diff, &opts()).unwrap_or_else(|e| panic!("rbe_linear, n = {n}: {e}"));
    check_graph_backward(&*fused, &inputs).unwrap_or_else(|e| panic!("rbe_linear, n = {n}: {e}"));
    if f32_too {
        let inputs: Vec<Tensor> = inputs.iter().map(as_f32).collect();
        check_fused_op(&*fused, &*composite, &inputs, &diff, &opts_f32()).unwrap_or_else(|e| panic!("rbe_linear f32, n = {n}: {e}"));
    }
}

/// Batch sizes that take each kernel.
const STREAMING: usize = 3;
const GEMM: usize = SMALL_BATCH + 2;

#[test]
fn linear_sin_tracks_both_kernels() {
    for (res, bias) in [(false, false), (true, true)] {
        let c = case((5, 7, 3, 4), 2, if res { 2 } else { 0 }, Tracks::Sin, bias, 1);
        check_linear(&c, STREAMING, res);
        check_linear(&c, GEMM, res);
    }
}

#[test]
fn linear_tanh_tracks_both_kernels() {
    for (res, bias) in [(false, true), (true, false)] {
        let c = case((5, 7, 3, 4), 2, if res { 2 } else { 0 }, Tracks::Tanh, bias, 2);
        check_linear(&c, STREAMING, false);
        check_linear(&c, GEMM, false);
    }
}

#[test]
fn linear_mixed_tracks_both_kernels() {
    for (res, bias) in [(false, false), (true, true)] {
        let c = case((6, 7, 4, 3), 3, if res { 1 } else { 0 }, Tracks::Mixed, bias, 3);
        check_linear(&c, STREAMING, !res);
        check_linear(&c, GEMM, !res);
    }
}

#[test]
fn linear_relaxed_tracks_both_kernels() {
    let c = case((5, 6, 3, 3), 2, 1, Tracks::Relaxed, true, 4);
    check_linear(&c, STREAMING, false);
    check_linear(&c, GEMM, false);
}

#[test]
fn linear_at_the_kernel_boundary() {
    // SMALL_BATCH rows is the last batch on the streaming kernel, one more the first on the GEMM one
    let c = case((4, 5, 2, 3), 2, 1, Tracks::Mixed, true, 5);
    check_linear(&c, SMALL_BATCH, false);
    check_linear(&c, SMALL_BATCH + 1, false);
}

#[test]
fn generate_all_tracks_with_and_without_residual() {
    for (t, tracks) in [Tracks::Sin, Tracks::Tanh, Tracks::Mixed, Tracks::Relaxed].into_iter().enumerate() {
        for k in [0, 2] {
            let c = case((5, 7, 3, 4), 2, k, tracks, false, 10 + t as u64);
            let mut inputs = vec![c.atoms.clone(), c.tracks.clone()];
            if let Some((vals, _)) = &c.res {
                inputs.push(vals.clone());
            }
            let diff = vec![true; inputs.len()];
            let (fused, composite) = generate_fns(&c);
            check_fused_op(&*fused, &*composite, &inputs, &diff, &opts()).unwrap_or_else(|e| panic!("rbe_generate {tracks:?} K={k}: {e}"));
            check_graph_backward(&*fused, &inputs).unwrap_or_else(|e| panic!("rbe_generate {tracks:?} K={k}: {e}"));
            let inputs: Vec<Tensor> = inputs.iter().map(as_f32).collect();
            check_fused_op(&*fused, &*composite, &inputs, &diff, &opts_f32())
                .unwrap_or_else(|e| panic!("rbe_generate f32 {tracks:?} K={k}: {e}"));
        }
    }
}

/// The layouts above are too small for the pool to split the work; these are
/// large enough that every parallel loop of both kernels (and of the
/// generator) runs on two threads, and the bits must still be the same.
#[test]
fn thread_counts_give_identical_bits_on_layers_large_enough_to_split() {
    let c = case((256, 384, 16, 16), 3, 2, Tracks::Mixed, true, 20);
    // work estimate of a forward pass for n rows: n (2J + K)(Br + Bc) + Br Bc per block
    let per_row = ((2 * 3 + 2) * 32 + 256) * c.lay.n_blocks();
    for n in [SMALL_BATCH, 32] {
        assert!(n * per_row >= PAR_WORK, "n = {n}: the forward would not be split");
        let x = Tensor::from_vec(uniform(n * c.lay.inp, 7, -1.0, 1.0), &[n, c.lay.inp]).unwrap();
        let (fused, _) = linear_fns(&c);
        for dt in [DType::F64, DType::F32] {
            let inputs: Vec<Tensor> = linear_inputs(&c, &x).iter().map(|t| ops::as_dtype(t, dt).unwrap()).collect();
            let diff = vec![true; inputs.len()];
            check_thread_bits(&*fused, &inputs, &diff, &[1, 2]).unwrap_or_else(|e| panic!("rbe_linear n = {n} {dt:?}: {e}"));
        }
    }
    let c = case((1024, 1024, 32, 32), 3, 2, Tracks::Mixed, false, 21);
    assert!(((2 * 3 + 2) * 64 + 1024) * c.lay.n_blocks() >= PAR_WORK);
    let (fused, _) = generate_fns(&c);
    for dt in [DType::F64, DType::F32] {
        let inputs: Vec<Tensor> = [&c.atoms, &c.tracks, &c.res.as_ref().unwrap().0].iter().map(|t| ops::as_dtype(t, dt).unwrap()).collect();
        check_thread_bits(&*fused, &inputs, &[true, true, true], &[1, 2]).unwrap_or_else(|e| panic!("rbe_generate {dt:?}: {e}"));
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let c = case((5, 7, 3, 4), 2, 2, Tracks::Mixed, true, 30);
    let (vals, idx) = c.res.as_ref().unwrap();
    let p = RbeParams { atoms: &c.atoms, tracks: &c.tracks, res_vals: Some(vals), res_idx: Some(idx) };
    let x = Tensor::zeros(&[2, 7], DType::F64).unwrap();
    assert!(rbe_linear(&x, &c.lay, &p, c.bias.as_ref()).is_ok());
    // input width, input dtype, bias shape and dtype
    assert!(rbe_linear(&Tensor::zeros(&[2, 6], DType::F64).unwrap(), &c.lay, &p, None).is_err());
    assert!(rbe_linear(&Tensor::zeros(&[2, 7], DType::F32).unwrap(), &c.lay, &p, None).is_err());
    assert!(rbe_linear(&x, &c.lay, &p, Some(&Tensor::zeros(&[4], DType::F64).unwrap())).is_err());
    assert!(rbe_linear(&x, &c.lay, &p, Some(&Tensor::zeros(&[5], DType::F32).unwrap())).is_err());
    // parameters: atoms shape, tracks dtype, residual index out of range, values without indices
    let bad_atoms = Tensor::zeros(&[3, 2, 4], DType::F64).unwrap();
    assert!(rbe_generate(&c.lay, &RbeParams { atoms: &bad_atoms, ..p }).is_err());
    let bad_tracks = Tensor::zeros(&[4, 2], DType::F32).unwrap();
    assert!(rbe_generate(&c.lay, &RbeParams { tracks: &bad_tracks, ..p }).is_err());
    let far = Tensor::from_vec(vec![12i64; 8], &[4, 2]).unwrap();
    assert!(rbe_generate(&c.lay, &RbeParams { res_idx: Some(&far), ..p }).is_err());
    assert!(rbe_generate(&c.lay, &RbeParams { res_idx: None, ..p }).is_err());
}
