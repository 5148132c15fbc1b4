//! Throughput of the vectorised exp / tanh / log-sum-exp kernels:
//! `cargo run --release -p rbe-core --example math_speed`.
use std::time::Instant;
fn main() {
    let n = 65536;
    let x: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) * 0.01).collect();
    let mut out = vec![0f32; n];
    for (name, f) in [("exp", rbe_core::simd::exp_slice_f32 as fn(&[f32], &mut [f32])), ("tanh", rbe_core::simd::tanh_slice_f32)] {
        for _ in 0..10 {
            f(&x, &mut out);
        }
        let t = Instant::now();
        for _ in 0..200 {
            f(&x, &mut out);
        }
        println!("{name}: {:.2} us", t.elapsed().as_secs_f64() / 200.0 * 1e6);
    }
    let t = Instant::now();
    for _ in 0..200 {
        rbe_core::simd::lse_middle_f32(&x[..40000], 16, 50, 50, &mut out[..800], &mut [], &mut []);
    }
    println!("lse_middle 16x50x50: {:.2} us", t.elapsed().as_secs_f64() / 200.0 * 1e6);
    for &(o, r, i) in &[(16usize, 50usize, 64usize), (16, 64, 50), (1, 800, 50), (800, 50, 1)] {
        let t = Instant::now();
        for _ in 0..200 {
            rbe_core::simd::lse_middle_f32(&x[..o * r * i], o, r, i, &mut out[..o * i], &mut [], &mut []);
        }
        println!("lse_middle {o}x{r}x{i}: {:.2} us", t.elapsed().as_secs_f64() / 200.0 * 1e6);
    }
    let t = Instant::now();
    for _ in 0..200 {
        rbe_core::simd::lse_runs_f32(&x[..40000], 50, &mut out[..800], &mut [], &mut []);
    }
    println!("lse_runs 800x50: {:.2} us", t.elapsed().as_secs_f64() / 200.0 * 1e6);
}
