//! Cost of one small op from Rust (cargo run --release --example op_overhead).
use rbe_core::ops::{binary, unary};
use rbe_core::{DType, Tensor};
fn time(name: &str, n: usize, mut f: impl FnMut()) {
    for _ in 0..1000 {
        f();
    }
    let t = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    println!("{name}: {:.0} ns", t.elapsed().as_secs_f64() / n as f64 * 1e9);
}
fn main() {
    let x = Tensor::ones(&[8, 8], DType::F32).unwrap();
    let y = Tensor::ones(&[8, 8], DType::F32).unwrap();
    let xg = Tensor::ones(&[8, 8], DType::F32).unwrap();
    xg.set_requires_grad(true).unwrap();
    time("empty 8x8", 200_000, || drop(Tensor::empty(&[8, 8], DType::F32).unwrap()));
    time("neg", 200_000, || drop(unary::neg(&x).unwrap()));
    time("mul", 200_000, || drop(binary::mul(&x, &y).unwrap()));
    time("mul (grad)", 200_000, || drop(binary::mul(&xg, &y).unwrap()));
}
