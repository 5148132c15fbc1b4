//! Creation ops: arange, linspace, eye, and random tensors drawn from a
//! counter-based generator (same seed, same bits, whatever the thread count).
use crate::dtype::DType;
use crate::elem::Elem;
use crate::error::Result;
use crate::random::Generator;
use crate::tensor::{FreshTensor, Tensor};
use crate::{dtype_err, value_err};
use parking_lot::Mutex;

static DEFAULT_GEN: Mutex<Option<Generator>> = Mutex::new(None);

/// Run `f` with the process-wide default generator (seed 0 until `manual_seed`).
pub fn with_default_generator<R>(f: impl FnOnce(&mut Generator) -> R) -> R {
    let mut g = DEFAULT_GEN.lock();
    f(g.get_or_insert_with(|| Generator::new(67280421310721)))
}

pub fn manual_seed(seed: u64) {
    with_default_generator(|g| g.manual_seed(seed));
}

pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
    if step == 0.0 {
        return Err(value_err!("arange: step must be nonzero"));
    }
    if !start.is_finite() || !end.is_finite() {
        return Err(value_err!("arange: unsupported range: {start} -> {end}"));
    }
    if (step > 0.0 && end < start) || (step < 0.0 && end > start) {
        return Err(value_err!("arange: upper bound and larger bound inconsistent with step sign"));
    }
    let n = ((end - start) / step).ceil().max(0.0) as usize;
    let t = crate::dispatch_all!(dtype, T => {
        let mut d = FreshTensor::<T>::uninit(&[n])?;
        for (i, v) in d.iter_mut().enumerate() {
            *v = if dtype == DType::I64 { T::from_i64(start as i64 + (i as i64) * step as i64) } else { T::from_f64(start + i as f64 * step) };
        }
        d.into_tensor()
    });
    Ok(t)
}

pub fn linspace(start: f64, end: f64, steps: usize, dtype: DType) -> Result<Tensor> {
    let step = if steps > 1 { (end - start) / (steps - 1) as f64 } else { 0.0 };
    let half = steps / 2;
    let t = crate::dispatch_all!(dtype, T => {
        let mut d = FreshTensor::<T>::uninit(&[steps])?;
        for (i, v) in d.iter_mut().enumerate() {
            // symmetric evaluation as torch does, so both ends are exact
            let x = if steps == 1 { start } else if i < half { start + step * i as f64 } else { end - step * (steps - 1 - i) as f64 };
            *v = T::from_f64(x);
        }
        d.into_tensor()
    });
    Ok(t)
}

pub fn eye(n: usize, m: usize, dtype: DType) -> Tensor {
    crate::dispatch_all!(dtype, T => {
        let mut d = FreshTensor::<T>::zeros(&[n, m]).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..n.min(m) {
            d[i * m + i] = T::from_i64(1);
        }
        d.into_tensor()
    })
}

fn gen_or_default<R>(g: Option<&Mutex<Generator>>, f: impl FnOnce(&mut Generator) -> R) -> R {
    match g {
        Some(m) => f(&mut m.lock()),
        None => with_default_generator(f),
    }
}

/// Uniform on [low, high).
pub fn rand(shape: &[usize], low: f64, high: f64, dtype: DType, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    if !(low.is_finite() && high.is_finite() && (high - low).is_finite()) || low > high {
        return Err(value_err!("uniform_ expects finite bounds with from <= to and a finite range to - from, got from={low}, to={high}"));
    }
    if dtype == DType::F32 && !((low as f32).is_finite() && (high as f32).is_finite()) {
        return Err(value_err!("uniform_: bounds [{low}, {high}) are outside the range of float32"));
    }
    Ok(match dtype {
        DType::F32 => {
            let mut t = FreshTensor::<f32>::uninit(shape)?;
            gen_or_default(g, |g| g.fill_uniform_f32(&mut t, low as f32, high as f32));
            t.into_tensor()
        }
        DType::F64 => {
            let mut t = FreshTensor::<f64>::uninit(shape)?;
            gen_or_default(g, |g| g.fill_uniform_f64(&mut t, low, high));
            t.into_tensor()
        }
        d => return Err(dtype_err!("rand: expected a floating point dtype, got {}", d.name())),
    })
}

/// Normal(mean, std).
pub fn randn(shape: &[usize], mean: f64, std: f64, dtype: DType, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    if std.is_nan() || std < 0.0 {
        return Err(value_err!("normal expects std >= 0.0, but found std {std}"));
    }
    Ok(match dtype {
        DType::F32 => {
            let mut t = FreshTensor::<f32>::uninit(shape)?;
            gen_or_default(g, |g| g.fill_normal_f32(&mut t, mean as f32, std as f32));
            t.into_tensor()
        }
        DType::F64 => {
            let mut t = FreshTensor::<f64>::uninit(shape)?;
            gen_or_default(g, |g| g.fill_normal_f64(&mut t, mean, std));
            t.into_tensor()
        }
        d => return Err(dtype_err!("randn: expected a floating point dtype, got {}", d.name())),
    })
}

/// Integers uniform on [low, high).
pub fn randint(shape: &[usize], low: i64, high: i64, dtype: DType, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    if low >= high {
        return Err(value_err!("random_ expects 'from' to be less than 'to', but got from={low} >= to={high}"));
    }
    let mut t = FreshTensor::<i64>::uninit(shape)?;
    gen_or_default(g, |g| g.fill_randint(&mut t, low, high));
    let t = t.into_tensor();
    if dtype == DType::I64 {
        Ok(t)
    } else {
        Ok(crate::kernels::cast(&t, dtype))
    }
}

pub fn randperm(n: usize, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    let mut t = FreshTensor::<i64>::uninit(&[n])?;
    gen_or_default(g, |g| g.randperm_into(&mut t));
    Ok(t.into_tensor())
}

/// torch's check of a Python number stored into an element of `dtype`
/// (`full`, `fill_`, `x[i] = v`, `masked_fill`): an int64 takes a float in
/// [-2^63, 2^63) (truncated toward zero) and refuses NaN, the infinities and
/// anything beyond; a float32 refuses a finite value beyond its range
/// (infinities and NaN are kept). Bool and float64 take every value.
pub fn check_scalar_fits(v: f64, dtype: DType) -> Result<()> {
    let ok = match dtype {
        // 2^63 is exact in f64; the range is half-open as torch's check
        DType::I64 => (-9.223_372_036_854_775_808e18..9.223_372_036_854_775_808e18).contains(&v),
        DType::F32 => !v.is_finite() || v.abs() <= f32::MAX as f64,
        DType::F64 | DType::Bool => true,
    };
    if ok {
        Ok(())
    } else {
        let name = if dtype == DType::I64 { "int64" } else { "float32" };
        Err(value_err!("value cannot be converted to type {name} without overflow (got {v:?})"))
    }
}

/// A tensor of `shape` and `dtype` filled with the scalar `v` (a Python number
/// as a one-element tensor): checked by [`check_scalar_fits`], and exact for
/// integers (an int64 `v` into an int64 tensor is not rounded through f64).
pub fn full_scalar(shape: &[usize], v: &Tensor, dtype: DType) -> Result<Tensor> {
    match (v.dtype(), dtype) {
        (DType::I64 | DType::Bool, DType::I64) => {
            let x = v.item_i64()?;
            FreshTensor::<i64>::build(shape, |d| d.fill(x))
        }
        _ => {
            let x = v.item_f64()?;
            if v.dtype().is_float() {
                check_scalar_fits(x, dtype)?;
            }
            crate::dispatch_all!(dtype, T => FreshTensor::<T>::build(shape, |d| d.fill(T::from_f64(x))))
        }
    }
}

/// Elementwise 0/1 draws with the probabilities in `p` (same shape and float
/// dtype as `p`; no gradient). Every probability must be in [0, 1]: a NaN or
/// an out-of-range value is refused before anything is drawn.
pub fn bernoulli_tensor(p: &Tensor, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    if p.dtype().is_float() {
        if let Some(bad) = p.to_vec::<f64>().into_iter().find(|x| !(0.0..=1.0).contains(x)) {
            return Err(value_err!("bernoulli: every probability must be in [0, 1], got {bad}"));
        }
    }
    let dt = if p.dtype() == DType::F64 { DType::F64 } else { DType::F32 };
    let u = rand(p.shape(), 0.0, 1.0, dt, g)?;
    let m = super::binary::lt(&u, &p.detach())?;
    super::unary::to_dtype(&m, p.dtype())
}

/// 0/1 draws with probability `p` of 1 (float tensor of `dtype`).
pub fn bernoulli(shape: &[usize], p: f64, dtype: DType, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&p) {
        return Err(value_err!("bernoulli: p must be in [0, 1], got {p}"));
    }
    let mut t = FreshTensor::<f64>::uninit(shape)?;
    gen_or_default(g, |g| g.bernoulli_f64(&mut t, p));
    let t = t.into_tensor();
    Ok(if dtype == DType::F64 { t } else { crate::kernels::cast(&t, dtype) })
}

/// Dropout: zero with probability p, scale the rest by 1/(1-p).
pub fn dropout(x: &Tensor, p: f64, train: bool, g: Option<&Mutex<Generator>>) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&p) {
        return Err(value_err!("dropout probability has to be between 0 and 1, but got {p}"));
    }
    if !train || p == 0.0 {
        return Ok(x.clone());
    }
    if p == 1.0 {
        return super::binary::mul_scalar(x, 0.0);
    }
    let keep = bernoulli(x.shape(), 1.0 - p, x.dtype(), g)?;
    let mask = super::binary::mul_scalar(&keep, 1.0 / (1.0 - p))?;
    super::binary::mul(x, &mask)
}
