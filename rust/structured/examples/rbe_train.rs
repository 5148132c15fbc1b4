//! Train a small RBE MLP in pure Rust (no Python) and compare it with a dense
//! MLP of the same shape trained the same way.
//!
//! Run with:
//!
//! ```text
//! cargo run -p rbe-structured --release --example rbe_train
//! ```
//!
//! Task: `y = sin(u . x) + 0.5 (v . x)^2 + 0.3 cos(3 x_0)` for `x` uniform in
//! `[-1, 1]^16` and fixed random directions `u`, `v` (4096 training points,
//! 2048 test points). Both models are `16 -> 64 -> tanh -> 1`; the RBE one
//! generates each weight matrix from `J = 4` atoms per `16 x 16` block. Both
//! are trained with Adam (same learning rate, steps and minibatches). A dense
//! `16 -> 10 -> 1` MLP with about as many parameters as the RBE one is
//! trained too, for reference.
use rbe_core::ext::ops::index::index_select;
use rbe_core::ext::{no_grad, DType, Generator, Result, Tensor};
use rbe_structured::nn::{backward, mse_loss, Activation, Adam, Dense, Module, RbeConfig, RbeLinear, Sequential};
use std::time::Instant;

const IN: usize = 16;
const HIDDEN: usize = 64;
/// Hidden width of the parameter-matched dense baseline.
const SMALL_HIDDEN: usize = 10;
const N_TRAIN: usize = 4096;
const N_TEST: usize = 2048;
const BATCH: usize = 256;
const STEPS: usize = 3000;
const LR: f64 = 0.01;
const PRINT_EVERY: usize = 500;

/// Inputs `(n, IN)` and targets `(n, 1)` of the synthetic task.
fn make_data(n: usize, g: &mut Generator, u: &[f32], v: &[f32]) -> Result<(Tensor, Tensor)> {
    let mut x = vec![0f32; n * IN];
    g.fill_uniform_f32(&mut x, -1.0, 1.0);
    let y: Vec<f32> = x
        .chunks(IN)
        .map(|r| {
            let a: f32 = r.iter().zip(u).map(|(p, q)| p * q).sum();
            let b: f32 = r.iter().zip(v).map(|(p, q)| p * q).sum();
            a.sin() + 0.5 * b * b + 0.3 * (3.0 * r[0]).cos()
        })
        .collect();
    Ok((Tensor::from_vec(x, &[n, IN])?, Tensor::from_vec(y, &[n, 1])?))
}

fn mse(model: &dyn Module, x: &Tensor, y: &Tensor) -> Result<f64> {
    let _ng = no_grad();
    mse_loss(&model.forward(x)?, y)?.item_f64()
}

/// Adam on shuffled minibatches (the shuffle depends only on `seed`).
fn train(name: &str, model: &dyn Module, x: &Tensor, y: &Tensor, seed: u64) -> Result<f64> {
    let mut opt = Adam::new(model.parameters(), LR)?;
    let mut g = Generator::new(seed);
    let mut perm: Vec<i64> = Vec::new();
    let t0 = Instant::now();
    let mut running = 0.0;
    for step in 0..STEPS {
        let start = (step * BATCH) % N_TRAIN;
        if start == 0 {
            perm = g.randperm(N_TRAIN);
        }
        let idx = Tensor::from_vec(perm[start..start + BATCH].to_vec(), &[BATCH])?;
        let (xb, yb) = (index_select(x, 0, &idx)?, index_select(y, 0, &idx)?);
        opt.zero_grad()?;
        let loss = mse_loss(&model.forward(&xb)?, &yb)?;
        running += loss.item_f64()?;
        backward(&loss)?;
        opt.step()?;
        if (step + 1) % PRINT_EVERY == 0 {
            println!(
                "{name:>5} step {:>5}: train minibatch MSE (mean of last {PRINT_EVERY}) {:.5}",
                step + 1,
                running / PRINT_EVERY as f64
            );
            running = 0.0;
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let mut g = Generator::new(2024);
    let mut u = vec![0f32; IN];
    let mut v = vec![0f32; IN];
    g.fill_normal_f32(&mut u, 0.0, 1.5 / (IN as f32).sqrt());
    g.fill_normal_f32(&mut v, 0.0, 1.5 / (IN as f32).sqrt());
    let (x, y) = make_data(N_TRAIN, &mut g, &u, &v)?;
    let (xt, yt) = make_data(N_TEST, &mut g, &u, &v)?;
    let var_y = {
        let t = yt.to_vec_f64();
        let m = t.iter().sum::<f64>() / t.len() as f64;
        t.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / t.len() as f64
    };

    let cfg = RbeConfig { block: (16, 16), atoms: 4, ..RbeConfig::default() };
    let rbe1 = RbeLinear::new(IN, HIDDEN, RbeConfig { seed: 1, ..cfg.clone() })?;
    let rbe2 = RbeLinear::new(HIDDEN, 1, RbeConfig { seed: 2, ..cfg })?;
    let rbe_bits = rbe1.bits() + rbe2.bits();
    let rbe = Sequential::new().push(rbe1).push(Activation::Tanh).push(rbe2);

    let dense_mlp = |hidden: usize| -> Result<(Sequential, usize)> {
        let d1 = Dense::new(IN, hidden, true, DType::F32, 1)?;
        let d2 = Dense::new(hidden, 1, true, DType::F32, 2)?;
        let bits = d1.bits() + d2.bits();
        Ok((Sequential::new().push(d1).push(Activation::Tanh).push(d2), bits))
    };
    let (dense, dense_bits) = dense_mlp(HIDDEN)?;
    // a dense MLP with about as many parameters as the RBE one, for reference
    let (small, small_bits) = dense_mlp(SMALL_HIDDEN)?;

    println!("task: {IN} inputs, Var(y_test) = {var_y:.4}; Adam lr {LR}, {STEPS} steps of batch {BATCH}");
    let models: [(&str, &Sequential, usize, usize); 3] =
        [("rbe", &rbe, HIDDEN, rbe_bits), ("dense", &dense, HIDDEN, dense_bits), ("small", &small, SMALL_HIDDEN, small_bits)];
    let mut rows = Vec::new();
    for (name, model, hidden, bits) in models {
        let init = mse(model, &xt, &yt)?;
        let secs = train(name, model, &x, &y, 7)?;
        rows.push((name, hidden, model.num_parameters(), bits, init, mse(model, &xt, &yt)?, secs));
    }

    println!();
    println!("model  shape      params  weight bits  init test MSE  final test MSE  train time");
    for (name, hidden, params, bits, init, fin, secs) in &rows {
        println!("{name:<5}  {IN}-{hidden}-1  {params:>8}  {bits:>11}  {init:>13.5}  {fin:>14.5}  {secs:>8.2} s");
    }
    let (rbe_test, dense_test) = (rows[0].5, rows[1].5);
    println!(
        "RBE weights: {:.1}x fewer bits than the float32 dense weights of the same shape; test MSE rbe/dense = {:.1}",
        dense_bits as f64 / rbe_bits as f64,
        rbe_test / dense_test
    );
    println!("(weight bits: RBE n_blocks (128 J + 32 K), dense 32 per weight; biases are float32 in every model)");
    Ok(())
}
