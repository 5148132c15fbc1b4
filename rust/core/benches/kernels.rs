//! Criterion benchmarks of the CPU kernels: `cargo bench -p rbe-core --bench kernels`.
//!
//! Groups:
//! - `gemm_f32` / `gemm_f64`: the raw `GemmElem::gemm` kernel and the tensor op
//!   `linalg::matmul` (plus `linalg::linear` for the Linear-layer shape).
//!   Throughput is reported in FLOPs (`2*m*n*k`), which criterion prints as
//!   "elem/s": read `Gelem/s` as GFLOP/s.
//! - `gemm_threads`: the raw f32 kernel at 1 and 2 threads.
//! - `elementwise`: add/mul of two f32 tensors, exp/tanh of one (elements/s).
//! - `reduce`: sum over everything, sum over dim 1, logsumexp over a middle dim
//!   (input elements/s).
//! - `mlp`: a 784-128-10 MLP on a batch of 64, forward (no grad) and
//!   forward+backward with cross-entropy.
//!
//! Every group except `gemm_threads` runs with one thread
//! (`parallel::set_num_threads(1)`). Pass a filter to run a subset, e.g.
//! `cargo bench -p rbe-core --bench kernels -- gemm_f32`, and `--quick` for a
//! fast, rougher run.
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use rbe_core::autograd::{no_grad, run_backward};
use rbe_core::gemm::GemmElem;
use rbe_core::ops::{binary, creation, linalg, loss, reduce, shape, unary};
use rbe_core::{DType, Tensor};
use std::hint::black_box;
use std::time::Duration;

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
}

fn single_thread() {
    rbe_core::parallel::set_num_threads(1).unwrap();
}

fn randn(shape: &[usize], dtype: DType) -> Tensor {
    creation::randn(shape, 0.0, 1.0, dtype, None).unwrap()
}

/// (label, m, n, k, b transposed): `C[m,n] = A[m,k] @ B[k,n]`.
const GEMM_SHAPES: &[(&str, usize, usize, usize, bool)] = &[
    ("64", 64, 64, 64, false),
    ("256", 256, 256, 256, false),
    ("1024", 1024, 1024, 1024, false),
    // Linear layer: x[32,128] @ w[128,128].T
    ("linear_32x128x128_bT", 32, 128, 128, true),
];

trait BenchElem: GemmElem + From<f32> {
    const DTYPE: DType;
}
impl BenchElem for f32 {
    const DTYPE: DType = DType::F32;
}
impl BenchElem for f64 {
    const DTYPE: DType = DType::F64;
}

fn fill<T: BenchElem>(len: usize, mul: usize, modulo: usize) -> Vec<T> {
    (0..len).map(|i| T::from(((i * mul) % modulo) as f32 * 0.1 - 0.5)).collect()
}

fn gemm_group<T: BenchElem>(c: &mut Criterion, name: &str) {
    single_thread();
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    for &(label, m, n, k, bt) in GEMM_SHAPES {
        if m >= 1024 {
            // ~2 GFLOP per call: fewer samples, each of the same iteration
            // count, so the 2 s budget holds even for f64.
            g.sample_size(10);
            g.sampling_mode(SamplingMode::Flat);
        } else {
            g.sample_size(20);
            g.sampling_mode(SamplingMode::Auto);
        }
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));

        // Raw kernel. B is stored [k,n] row-major, or as w[n,k] row-major read transposed.
        let a: Vec<T> = fill(m * k, 7, 13);
        let b: Vec<T> = fill(k * n, 5, 11);
        let mut cbuf: Vec<T> = vec![T::ZERO; m * n];
        let (b_rs, b_cs) = if bt { (1, k as isize) } else { (n as isize, 1) };
        g.bench_function(BenchmarkId::new("raw", label), |bch| {
            // SAFETY: a, b and cbuf hold m x k, k x n and m x n elements addressed by these strides.
            bch.iter(|| unsafe {
                T::gemm(
                    m,
                    n,
                    k,
                    cbuf.as_mut_ptr(),
                    n as isize,
                    1,
                    false,
                    black_box(a.as_ptr()),
                    k as isize,
                    1,
                    black_box(b.as_ptr()),
                    b_rs,
                    b_cs,
                );
                black_box(cbuf.as_ptr());
            })
        });

        // Tensor op (allocates the output, dispatches on dtype/strides).
        let at = randn(&[m, k], T::DTYPE);
        if bt {
            let w = randn(&[n, k], T::DTYPE);
            let wt = shape::transpose(&w, 0, 1).unwrap();
            g.bench_function(BenchmarkId::new("matmul", label), |bch| {
                bch.iter(|| black_box(linalg::matmul(black_box(&at), black_box(&wt)).unwrap()))
            });
            g.bench_function(BenchmarkId::new("linear_nobias", label), |bch| {
                bch.iter(|| black_box(linalg::linear(black_box(&at), black_box(&w), None).unwrap()))
            });
        } else {
            let bt_ = randn(&[k, n], T::DTYPE);
            g.bench_function(BenchmarkId::new("matmul", label), |bch| {
                bch.iter(|| black_box(linalg::matmul(black_box(&at), black_box(&bt_)).unwrap()))
            });
        }
    }
    g.finish();
}

fn bench_gemm_f32(c: &mut Criterion) {
    gemm_group::<f32>(c, "gemm_f32");
}

fn bench_gemm_f64(c: &mut Criterion) {
    gemm_group::<f64>(c, "gemm_f64");
}

fn bench_gemm_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm_threads");
    configure(&mut g);
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    for &s in &[256usize, 1024] {
        let a: Vec<f32> = fill(s * s, 7, 13);
        let b: Vec<f32> = fill(s * s, 5, 11);
        let mut cbuf = vec![0f32; s * s];
        g.throughput(Throughput::Elements((2 * s * s * s) as u64));
        for &th in &[1usize, 2] {
            rbe_core::parallel::set_num_threads(th).unwrap();
            g.bench_function(BenchmarkId::new(format!("f32_{th}t"), s), |bch| {
                // SAFETY: row-major s x s matrices.
                bch.iter(|| unsafe {
                    f32::gemm(
                        s,
                        s,
                        s,
                        cbuf.as_mut_ptr(),
                        s as isize,
                        1,
                        false,
                        black_box(a.as_ptr()),
                        s as isize,
                        1,
                        black_box(b.as_ptr()),
                        s as isize,
                        1,
                    );
                    black_box(cbuf.as_ptr());
                })
            });
        }
    }
    g.finish();
    single_thread();
}

fn bench_elementwise(c: &mut Criterion) {
    single_thread();
    let mut g = c.benchmark_group("elementwise");
    configure(&mut g);
    for &n in &[64usize, 4096, 1 << 20] {
        let x = randn(&[n], DType::F32);
        let y = randn(&[n], DType::F32);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("add", n), &n, |b, _| b.iter(|| black_box(binary::add(black_box(&x), black_box(&y)).unwrap())));
        g.bench_with_input(BenchmarkId::new("mul", n), &n, |b, _| b.iter(|| black_box(binary::mul(black_box(&x), black_box(&y)).unwrap())));
        g.bench_with_input(BenchmarkId::new("exp", n), &n, |b, _| b.iter(|| black_box(unary::exp(black_box(&x)).unwrap())));
        g.bench_with_input(BenchmarkId::new("tanh", n), &n, |b, _| b.iter(|| black_box(unary::tanh(black_box(&x)).unwrap())));
    }
    g.finish();
}

fn bench_reduce(c: &mut Criterion) {
    single_thread();
    let mut g = c.benchmark_group("reduce");
    configure(&mut g);
    for &n in &[4096usize, 1 << 20] {
        let x = randn(&[n], DType::F32);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("sum_all", n), &n, |b, _| {
            b.iter(|| black_box(reduce::sum(black_box(&x), None, false).unwrap()))
        });
    }
    for &(r, cdim) in &[(64usize, 64usize), (1024, 1024), (64, 16384)] {
        let x = randn(&[r, cdim], DType::F32);
        g.throughput(Throughput::Elements((r * cdim) as u64));
        g.bench_function(BenchmarkId::new("sum_dim1", format!("{r}x{cdim}")), |b| {
            b.iter(|| black_box(reduce::sum(black_box(&x), Some(&[1]), false).unwrap()))
        });
    }
    for &(d0, d1, d2) in &[(4usize, 64usize, 16usize), (16, 256, 256), (256, 16, 256)] {
        let x = randn(&[d0, d1, d2], DType::F32);
        g.throughput(Throughput::Elements((d0 * d1 * d2) as u64));
        g.bench_function(BenchmarkId::new("logsumexp_dim1", format!("{d0}x{d1}x{d2}")), |b| {
            b.iter(|| black_box(reduce::logsumexp(black_box(&x), Some(&[1]), false).unwrap()))
        });
    }
    g.finish();
}

struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

impl Mlp {
    fn new() -> Mlp {
        let param = |shape: &[usize], fan_in: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let t = creation::rand(shape, -bound, bound, DType::F32, None).unwrap();
            t.set_requires_grad(true).unwrap();
            t
        };
        Mlp { w1: param(&[128, 784], 784), b1: param(&[128], 784), w2: param(&[10, 128], 128), b2: param(&[10], 128) }
    }
    fn params(&self) -> [&Tensor; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }
    fn loss(&self, x: &Tensor, target: &Tensor) -> Tensor {
        let h = unary::relu(&linalg::linear(x, &self.w1, Some(&self.b1)).unwrap()).unwrap();
        let z = linalg::linear(&h, &self.w2, Some(&self.b2)).unwrap();
        loss::cross_entropy(&z, target, None, -100, loss::Reduction::Mean, 0.0).unwrap()
    }
}

fn bench_mlp(c: &mut Criterion) {
    single_thread();
    creation::manual_seed(0);
    let mut g = c.benchmark_group("mlp");
    configure(&mut g);
    let batch = 64;
    let x = randn(&[batch, 784], DType::F32);
    let target = creation::randint(&[batch], 0, 10, DType::I64, None).unwrap();
    let mlp = Mlp::new();
    let one = Tensor::ones(&[], DType::F32).unwrap();
    // Sanity check once: backward fills every parameter's gradient.
    run_backward(&[mlp.loss(&x, &target)], std::slice::from_ref(&one), false, false, None, false).unwrap();
    for p in mlp.params() {
        assert_eq!(p.grad().expect("grad after backward").shape(), p.shape());
    }
    // Throughput in samples (rows of the batch) per second.
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function("forward_no_grad_784_128_10_b64", |b| {
        b.iter(|| {
            let _ng = no_grad();
            black_box(mlp.loss(black_box(&x), &target))
        })
    });
    g.bench_function("forward_backward_784_128_10_b64", |b| {
        b.iter(|| {
            for p in mlp.params() {
                p.set_grad(None).unwrap();
            }
            let l = mlp.loss(black_box(&x), &target);
            run_backward(&[l], std::slice::from_ref(&one), false, false, None, false).unwrap();
            black_box(mlp.w1.grad())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_gemm_f32, bench_gemm_f64, bench_gemm_threads, bench_elementwise, bench_reduce, bench_mlp);
criterion_main!(benches);
