//! GFLOP/s of the f32/f64 GEMM for a few shapes: `cargo run --release --example gemm_speed`.
use rbe_core::gemm::GemmElem;
use std::time::Instant;

fn bench<T: GemmElem + From<f32>>(m: usize, n: usize, k: usize, bt: bool, threads: usize) -> f64 {
    rbe_core::parallel::set_num_threads(threads).unwrap();
    let a: Vec<T> = (0..m * k).map(|i| T::from(((i * 7) % 13) as f32 * 0.1)).collect();
    let b: Vec<T> = (0..k * n).map(|i| T::from(((i * 5) % 11) as f32 * 0.1)).collect();
    let mut c: Vec<T> = vec![T::ZERO; m * n];
    let (b_rs, b_cs) = if bt { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: a, b and c hold m x k, k x n and m x n elements addressed by these strides.
    let run = |c: &mut Vec<T>| unsafe {
        T::gemm(m, n, k, c.as_mut_ptr(), n as isize, 1, false, a.as_ptr(), k as isize, 1, b.as_ptr(), b_rs, b_cs)
    };
    let flop = 2.0 * (m * n * k) as f64;
    let reps = ((2e9 / flop) as usize).clamp(3, 20000);
    run(&mut c);
    let mut times = vec![];
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..reps {
            run(&mut c);
        }
        times.push(t0.elapsed().as_secs_f64() / reps as f64);
    }
    times.sort_by(|x, y| x.partial_cmp(y).unwrap());
    flop / times[2] / 1e9
}

fn main() {
    for &(m, n, k, bt) in &[
        (32, 128, 128, false),
        (32, 128, 128, true),
        (128, 128, 32, false),
        (64, 512, 784, true),
        (64, 784, 512, false),
        (1024, 64, 64, true),
        (256, 256, 256, false),
        (1024, 1024, 1024, false),
        (2048, 2048, 2048, false),
    ] {
        let g1 = bench::<f32>(m, n, k, bt, 1);
        let g2 = bench::<f32>(m, n, k, bt, 2);
        let d1 = bench::<f64>(m, n, k, bt, 1);
        println!("{m}x{n}x{k} bt={bt}: f32 {g1:.1} GF/s (1t) {g2:.1} (2t); f64 {d1:.1} (1t)");
    }
}
