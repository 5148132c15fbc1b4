//! Throughput of the vectorised exp against std's (cargo run --release --example exp_speed).
fn main() {
    let x: Vec<f32> = (0..40_000).map(|i| (i as f32) * 1e-4 - 2.0).collect();
    let mut out = vec![0f32; x.len()];
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        rbe_core::simd::exp_slice_f32(&x, &mut out);
    }
    let simd = t.elapsed().as_secs_f64() / 1000.0;
    let t = std::time::Instant::now();
    for _ in 0..1000 {
        for (o, &v) in out.iter_mut().zip(&x) {
            *o = v.exp();
        }
    }
    let std_ = t.elapsed().as_secs_f64() / 1000.0;
    println!("exp f32 x 40000: simd {:.1} us, std {:.1} us", simd * 1e6, std_ * 1e6);
}
