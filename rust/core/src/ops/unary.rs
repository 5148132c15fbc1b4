//! Unary elementwise ops: math functions, activations, special functions,
//! casts. Each op: forward kernel + backward written with differentiable ops.
use super::binary::{add, add_scalar, div, gt, logical_and, mul, mul_scalar, sub, where_};
use crate::autograd::{attach, needs_grad, SavedTensor};
use crate::dtype::DType;
use crate::elem::{Elem, Real};
use crate::error::Result;
use crate::kernels::map1;
use crate::tensor::{FreshTensor, Tensor};
use crate::{dispatch_all, dtype_err};

/// Apply a float-only elementwise kernel written once for both float types.
macro_rules! float_map {
    ($x:expr, $name:expr, |$v:ident| $body:expr) => {{
        let x: &Tensor = $x;
        match x.dtype() {
            DType::F32 => {
                #[allow(dead_code)]
                type F = f32;
                map1::<f32, f32>(x, |$v: f32| $body)
            }
            DType::F64 => {
                #[allow(dead_code)]
                type F = f64;
                map1::<f64, f64>(x, |$v: f64| $body)
            }
            d => return Err(dtype_err!("{}: expected a floating point tensor (float32 or float64), got {}", $name, d.name())),
        }
    }};
}

/// Integer/bool inputs of float functions are promoted to the default dtype (torch: `exp(int)` is float).
fn floatify(x: &Tensor) -> Result<Tensor> {
    if x.dtype().is_float() {
        Ok(x.clone())
    } else {
        to_dtype(x, crate::default_dtype())
    }
}

fn sc(v: f64, like: &Tensor) -> Tensor {
    Tensor::wrapped_scalar(v, if like.dtype().is_float() { like.dtype() } else { DType::F64 })
}

pub fn zeros_like(t: &Tensor) -> Result<Tensor> {
    Tensor::zeros(t.shape(), t.dtype())
}
pub fn ones_like(t: &Tensor) -> Result<Tensor> {
    Tensor::ones(t.shape(), t.dtype())
}

/// Differentiable dtype conversion (gradient flows between float types).
pub fn to_dtype(x: &Tensor, dt: DType) -> Result<Tensor> {
    if x.dtype() == dt {
        return Ok(x.clone());
    }
    let out = crate::kernels::cast(x, dt);
    if dt.is_float() && needs_grad(&[x]) {
        let src = x.dtype();
        attach(&out, "ToCopyBackward0", &[x], false, move |_, g| Ok(vec![Some(to_dtype(g, src)?)]));
    }
    Ok(out)
}

/// Differentiable copy into fresh contiguous memory.
pub fn clone(x: &Tensor) -> Result<Tensor> {
    let out = crate::kernels::copy_contiguous(x);
    if needs_grad(&[x]) {
        attach(&out, "CloneBackward0", &[x], false, |_, g| Ok(vec![Some(g.clone())]));
    }
    Ok(out)
}

pub fn neg(x: &Tensor) -> Result<Tensor> {
    let out = match x.dtype() {
        DType::F32 => map1::<f32, f32>(x, |v| -v),
        DType::F64 => map1::<f64, f64>(x, |v| -v),
        DType::I64 => map1::<i64, i64>(x, |v| v.wrapping_neg()),
        DType::Bool => {
            return Err(dtype_err!(
                "Negation, the `-` operator, on a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead."
            ))
        }
    };
    if needs_grad(&[x]) {
        attach(&out, "NegBackward0", &[x], false, |_, g| Ok(vec![Some(neg(g)?)]));
    }
    Ok(out)
}

pub fn abs(x: &Tensor) -> Result<Tensor> {
    let out = match x.dtype() {
        DType::F32 => map1::<f32, f32>(x, |v| v.abs()),
        DType::F64 => map1::<f64, f64>(x, |v| v.abs()),
        DType::I64 => map1::<i64, i64>(x, |v| v.wrapping_abs()),
        DType::Bool => return Err(dtype_err!("abs is not supported for bool tensors")),
    };
    if needs_grad(&[x]) {
        let sx = SavedTensor::input(x);
        attach(&out, "AbsBackward0", &[x], true, move |ctx, g| Ok(vec![Some(mul(g, &sign(&sx.get(ctx)?)?)?)]));
    }
    Ok(out)
}

/// sign (zero gradient).
pub fn sign(x: &Tensor) -> Result<Tensor> {
    // generic over every dtype, bool included (where `v > z` is `v && !z`)
    #[allow(clippy::bool_comparison)]
    let out = dispatch_all!(x.dtype(), T => map1::<T, T>(x, |v| {
        let z = T::default();
        if v > z { T::from_i64(1) } else if v < z { T::from_i64(-1) } else { v }
    }));
    if needs_grad(&[x]) {
        attach(&out, "SignBackward0", &[x], false, |_, g| Ok(vec![Some(zeros_like(g)?)]));
    }
    Ok(out)
}

/// Elementwise functions of one float input whose derivative is a function
/// of the input `x` and/or the output `y`, written with differentiable ops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fun {
    Exp,
    Expm1,
    Log,
    Log1p,
    Log2,
    Log10,
    Sqrt,
    Rsqrt,
    Sin,
    Cos,
    Tan,
    Tanh,
    Sigmoid,
    Relu,
    Erf,
    Erfc,
    Ndtr,
    LogNdtr,
    NdtrRatio,
    Silu,
    Reciprocal,
    Square,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Floor,
    Ceil,
    Round,
    Trunc,
    Frac,
}

fn kernel(f: Fun, x: &Tensor) -> Result<Tensor> {
    if f == Fun::Tanh && x.dtype() == DType::F32 {
        let xc = x.contiguous();
        return FreshTensor::<f32>::build(x.shape(), |o| crate::simd::tanh_slice_f32(xc.data::<f32>(), o));
    }
    if f == Fun::Exp {
        let xc = x.contiguous();
        return match x.dtype() {
            DType::F32 => FreshTensor::<f32>::build(x.shape(), |o| crate::simd::exp_slice_f32(xc.data::<f32>(), o)),
            DType::F64 => FreshTensor::<f64>::build(x.shape(), |o| crate::simd::exp_slice_f64(xc.data::<f64>(), o)),
            d => Err(dtype_err!("exp: expected a floating point tensor (float32 or float64), got {}", d.name())),
        };
    }
    if matches!(f, Fun::Log | Fun::Log1p | Fun::Expm1) && x.dtype() == DType::F64 {
        let xc = x.contiguous();
        let k: SliceKernel<f64> = match f {
            Fun::Log => crate::simd::log_slice_f64,
            Fun::Log1p => crate::simd::log1p_slice_f64,
            _ => crate::simd::expm1_slice_f64,
        };
        return FreshTensor::<f64>::build(x.shape(), |o| par_chunks(xc.data::<f64>(), o, k));
    }
    if matches!(f, Fun::Erf | Fun::Erfc | Fun::Ndtr | Fun::LogNdtr | Fun::NdtrRatio) {
        use crate::simd::*;
        let xc = x.contiguous();
        let (k64, k32): (SliceKernel<f64>, SliceKernel<f32>) = match f {
            Fun::Erf => (erf_slice_f64, erf_slice_f32),
            Fun::Erfc => (erfc_slice_f64, erfc_slice_f32),
            Fun::Ndtr => (ndtr_slice_f64, ndtr_slice_f32),
            Fun::LogNdtr => (log_ndtr_slice_f64, log_ndtr_slice_f32),
            _ => (ndtr_ratio_slice_f64, ndtr_ratio_slice_f32),
        };
        return match x.dtype() {
            DType::F64 => FreshTensor::<f64>::build(x.shape(), |o| par_chunks(xc.data::<f64>(), o, k64)),
            DType::F32 => FreshTensor::<f32>::build(x.shape(), |o| par_chunks(xc.data::<f32>(), o, k32)),
            d => Err(dtype_err!("{}: expected a floating point tensor (float32 or float64), got {}", name(f), d.name())),
        };
    }
    Ok(match f {
        Fun::Exp => float_map!(x, "exp", |v| v.exp()),
        Fun::Expm1 => float_map!(x, "expm1", |v| v.exp_m1()),
        Fun::Log => float_map!(x, "log", |v| v.ln()),
        Fun::Log1p => float_map!(x, "log1p", |v| v.ln_1p()),
        Fun::Log2 => float_map!(x, "log2", |v| v.log2()),
        Fun::Log10 => float_map!(x, "log10", |v| v.log10()),
        Fun::Sqrt => float_map!(x, "sqrt", |v| v.sqrt()),
        Fun::Rsqrt => float_map!(x, "rsqrt", |v| 1.0 / v.sqrt()),
        Fun::Sin => float_map!(x, "sin", |v| v.sin()),
        Fun::Cos => float_map!(x, "cos", |v| v.cos()),
        Fun::Tan => float_map!(x, "tan", |v| v.tan()),
        Fun::Tanh => float_map!(x, "tanh", |v| v.tanh()),
        Fun::Sigmoid => float_map!(x, "sigmoid", |v| sigmoid_scalar(v)),
        Fun::Relu => float_map!(x, "relu", |v| if v > 0.0 || v.is_nan() { v } else { 0.0 }),
        Fun::Erf => float_map!(x, "erf", |v| Real::erf(v)),
        Fun::Erfc => float_map!(x, "erfc", |v| Real::erfc(v)),
        Fun::Ndtr => float_map!(x, "ndtr", |v| Real::ndtr(v)),
        Fun::LogNdtr => float_map!(x, "log_ndtr", |v| Real::log_ndtr(v)),
        Fun::NdtrRatio => float_map!(x, "ndtr_ratio", |v| Real::ndtr_ratio(v)),
        Fun::Silu => float_map!(x, "silu", |v| v * sigmoid_scalar(v)),
        Fun::Reciprocal => float_map!(x, "reciprocal", |v| 1.0 / v),
        Fun::Square => float_map!(x, "square", |v| v * v),
        Fun::Asin => float_map!(x, "asin", |v| v.asin()),
        Fun::Acos => float_map!(x, "acos", |v| v.acos()),
        Fun::Atan => float_map!(x, "atan", |v| v.atan()),
        Fun::Sinh => float_map!(x, "sinh", |v| v.sinh()),
        Fun::Cosh => float_map!(x, "cosh", |v| v.cosh()),
        Fun::Floor => float_map!(x, "floor", |v| v.floor()),
        Fun::Ceil => float_map!(x, "ceil", |v| v.ceil()),
        Fun::Round => float_map!(x, "round", |v| v.round_ties_even()),
        Fun::Trunc => float_map!(x, "trunc", |v| v.trunc()),
        Fun::Frac => float_map!(x, "frac", |v| v.fract()),
    })
}

/// An elementwise slice kernel `k(x, out)`.
type SliceKernel<T> = fn(&[T], &mut [T]);
/// A fused backward slice kernel `k(x, g, out)`.
type BackwardKernel<'a> = dyn Fn(&[f64], &[f64], &mut [f64]) + Sync + 'a;

/// Elements per task of [`par_chunks`] (a fixed partition: the results do
/// not depend on the thread count).
const CHUNK: usize = 8192;

/// `k(x, out)` over fixed chunks of the slices, on the pool when they are
/// large (an elementwise kernel costing tens of flops per element).
fn par_chunks<T: Elem>(x: &[T], out: &mut [T], k: SliceKernel<T>) {
    let n = x.len().min(out.len());
    if n <= CHUNK {
        return k(&x[..n], &mut out[..n]);
    }
    let optr = crate::parallel::SendPtr(out.as_mut_ptr());
    crate::parallel::for_each_index(n.div_ceil(CHUNK), n.saturating_mul(32), |c| {
        let lo = c * CHUNK;
        let hi = (lo + CHUNK).min(n);
        // SAFETY: chunk `c` writes only out[lo..hi], which lies inside `out`
        // (hi <= n <= out.len()) and is disjoint from every other chunk's range.
        let o = unsafe { std::slice::from_raw_parts_mut(optr.get().add(lo), hi - lo) };
        k(&x[lo..hi], o);
    });
}

/// `k(x, g, out)` over fixed chunks (as [`par_chunks`]), for fused backward kernels.
fn par_chunks2(x: &[f64], g: &[f64], out: &mut [f64], k: &BackwardKernel<'_>) {
    let n = x.len().min(out.len()).min(g.len());
    if n <= CHUNK {
        return k(&x[..n], &g[..n], &mut out[..n]);
    }
    let optr = crate::parallel::SendPtr(out.as_mut_ptr());
    crate::parallel::for_each_index(n.div_ceil(CHUNK), n.saturating_mul(32), |c| {
        let lo = c * CHUNK;
        let hi = (lo + CHUNK).min(n);
        // SAFETY: chunk `c` writes only out[lo..hi], inside `out` and disjoint from the other chunks.
        let o = unsafe { std::slice::from_raw_parts_mut(optr.get().add(lo), hi - lo) };
        k(&x[lo..hi], &g[lo..hi], o);
    });
}

/// The first-order backward of erf, erfc, ndtr and log_ndtr in one vectorised
/// pass (`g f'(x)`), when `x` and `g` are float64 of the same shape; None
/// otherwise (the differentiable composite is used).
fn fused_special_backward(f: Fun, x: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
    if x.dtype() != DType::F64 || g.dtype() != DType::F64 || x.shape() != g.shape() {
        return Ok(None);
    }
    let (xc, gc) = (x.contiguous(), g.contiguous());
    let (xs, gs) = (xc.data::<f64>(), gc.data::<f64>());
    let out = match f {
        Fun::LogNdtr => FreshTensor::<f64>::build(x.shape(), |o| par_chunks2(xs, gs, o, &crate::simd::log_ndtr_backward_f64))?,
        Fun::Erf | Fun::Erfc | Fun::Ndtr => {
            use crate::simd::Gauss;
            let kind = match f {
                Fun::Erf => Gauss::Erf,
                Fun::Erfc => Gauss::Erfc,
                _ => Gauss::Ndtr,
            };
            FreshTensor::<f64>::build(x.shape(), |o| par_chunks2(xs, gs, o, &|a, b, c2| crate::simd::gauss_backward_f64(a, b, kind, c2)))?
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

#[inline(always)]
fn sigmoid_scalar<T: Real>(v: T) -> T {
    if v >= T::ZERO {
        T::ONE / (T::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::ONE + e)
    }
}

fn name(f: Fun) -> &'static str {
    match f {
        Fun::Exp => "ExpBackward0",
        Fun::Expm1 => "Expm1Backward0",
        Fun::Log => "LogBackward0",
        Fun::Log1p => "Log1pBackward0",
        Fun::Log2 => "Log2Backward0",
        Fun::Log10 => "Log10Backward0",
        Fun::Sqrt => "SqrtBackward0",
        Fun::Rsqrt => "RsqrtBackward0",
        Fun::Sin => "SinBackward0",
        Fun::Cos => "CosBackward0",
        Fun::Tan => "TanBackward0",
        Fun::Tanh => "TanhBackward0",
        Fun::Sigmoid => "SigmoidBackward0",
        Fun::Relu => "ReluBackward0",
        Fun::Erf => "ErfBackward0",
        Fun::Erfc => "ErfcBackward0",
        Fun::Ndtr => "SpecialNdtrBackward0",
        Fun::LogNdtr => "SpecialLogNdtrBackward0",
        Fun::NdtrRatio => "NdtrRatioBackward0",
        Fun::Silu => "SiluBackward0",
        Fun::Reciprocal => "ReciprocalBackward0",
        Fun::Square => "SquareBackward0",
        Fun::Asin => "AsinBackward0",
        Fun::Acos => "AcosBackward0",
        Fun::Atan => "AtanBackward0",
        Fun::Sinh => "SinhBackward0",
        Fun::Cosh => "CoshBackward0",
        Fun::Floor => "FloorBackward0",
        Fun::Ceil => "CeilBackward0",
        Fun::Round => "RoundBackward0",
        Fun::Trunc => "TruncBackward0",
        Fun::Frac => "FracBackward0",
    }
}

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// d f / d x as a differentiable expression of x and y = f(x).
fn derivative(f: Fun, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(match f {
        Fun::Exp => y.clone(),
        Fun::Expm1 => add_scalar(y, 1.0)?,
        Fun::Log => reciprocal(x)?,
        Fun::Log1p => reciprocal(&add_scalar(x, 1.0)?)?,
        Fun::Log2 => reciprocal(&mul_scalar(x, std::f64::consts::LN_2)?)?,
        Fun::Log10 => reciprocal(&mul_scalar(x, std::f64::consts::LN_10)?)?,
        Fun::Sqrt => div(&sc(0.5, y), y)?,
        Fun::Rsqrt => mul_scalar(&mul(&mul(y, y)?, y)?, -0.5)?,
        Fun::Sin => cos(x)?,
        Fun::Cos => neg(&sin(x)?)?,
        Fun::Tan => add_scalar(&mul(y, y)?, 1.0)?,
        Fun::Tanh => sub(&sc(1.0, y), &mul(y, y)?)?,
        Fun::Sigmoid => mul(y, &sub(&sc(1.0, y), y)?)?,
        Fun::Relu => {
            let z = sc(0.0, y);
            where_(&gt(y, &z)?, &sc(1.0, y), &z)?
        }
        Fun::Erf => mul_scalar(&exp(&neg(&mul(x, x)?)?)?, FRAC_2_SQRT_PI)?,
        Fun::Erfc => mul_scalar(&exp(&neg(&mul(x, x)?)?)?, -FRAC_2_SQRT_PI)?,
        Fun::Ndtr => mul_scalar(&exp(&mul_scalar(&mul(x, x)?, -0.5)?)?, INV_SQRT_2PI)?,
        Fun::LogNdtr => unary(Fun::NdtrRatio, x)?,
        // r = phi/Phi  =>  r' = -r (x + r)
        Fun::NdtrRatio => neg(&mul(y, &add(x, y)?)?)?,
        Fun::Silu => {
            // s (1 + x (1 - s))
            let s = sigmoid(x)?;
            mul(&s, &add_scalar(&mul(x, &sub(&sc(1.0, &s), &s)?)?, 1.0)?)?
        }
        Fun::Reciprocal => neg(&mul(y, y)?)?,
        Fun::Square => mul_scalar(x, 2.0)?,
        Fun::Asin => unary(Fun::Rsqrt, &sub(&sc(1.0, x), &mul(x, x)?)?)?,
        Fun::Acos => neg(&unary(Fun::Rsqrt, &sub(&sc(1.0, x), &mul(x, x)?)?)?)?,
        Fun::Atan => reciprocal(&add_scalar(&mul(x, x)?, 1.0)?)?,
        Fun::Sinh => unary(Fun::Cosh, x)?,
        Fun::Cosh => unary(Fun::Sinh, x)?,
        Fun::Floor | Fun::Ceil | Fun::Round | Fun::Trunc => zeros_like(x)?,
        Fun::Frac => ones_like(x)?,
    })
}

/// Does the derivative use the output (then it is saved), the input, or both?
fn uses(f: Fun) -> (bool, bool) {
    match f {
        Fun::Exp | Fun::Expm1 | Fun::Sqrt | Fun::Rsqrt | Fun::Tan | Fun::Tanh | Fun::Sigmoid | Fun::Relu | Fun::Reciprocal => (false, true),
        Fun::NdtrRatio => (true, true),
        _ => (true, false),
    }
}

/// `k(x, y, r)` over fixed chunks (as [`par_chunks`]), for kernels with two outputs.
fn par_chunks_pair(x: &[f64], y: &mut [f64], r: &mut [f64], k: fn(&[f64], &mut [f64], &mut [f64])) {
    let n = x.len().min(y.len()).min(r.len());
    if n <= CHUNK {
        return k(&x[..n], &mut y[..n], &mut r[..n]);
    }
    let (yp, rp) = (crate::parallel::SendPtr(y.as_mut_ptr()), crate::parallel::SendPtr(r.as_mut_ptr()));
    crate::parallel::for_each_index(n.div_ceil(CHUNK), n.saturating_mul(32), |c| {
        let lo = c * CHUNK;
        let hi = (lo + CHUNK).min(n);
        // SAFETY: chunk `c` writes only y[lo..hi] and r[lo..hi], inside both
        // slices (hi <= n <= their lengths) and disjoint from the other chunks.
        let (yo, ro) = unsafe {
            (std::slice::from_raw_parts_mut(yp.get().add(lo), hi - lo), std::slice::from_raw_parts_mut(rp.get().add(lo), hi - lo))
        };
        k(&x[lo..hi], yo, ro);
    });
}

/// `log_ndtr` of a float64 tensor whose gradient is wanted: the forward pass
/// also writes `phi / Phi` (from the same erfcx evaluation), kept for a
/// first-order backward that is one product; under `create_graph` the
/// composite derivative (any order).
fn log_ndtr_with_ratio(x: &Tensor) -> Result<Tensor> {
    let xc = x.contiguous();
    let mut y = FreshTensor::<f64>::uninit(x.shape())?;
    let mut r = FreshTensor::<f64>::uninit(x.shape())?;
    par_chunks_pair(xc.data::<f64>(), y.as_mut_slice(), r.as_mut_slice(), crate::simd::log_ndtr_and_ratio_f64);
    let out = y.into_tensor();
    let ratio = r.into_tensor();
    let sx = SavedTensor::input(x);
    attach(&out, name(Fun::LogNdtr), &[x], true, move |ctx, g| {
        let x = sx.get(ctx)?; // version check, as for every saved input
        if !crate::autograd::is_grad_enabled() && g.dtype() == DType::F64 {
            return Ok(vec![Some(mul(g, &ratio)?)]);
        }
        Ok(vec![Some(mul(g, &derivative(Fun::LogNdtr, &x, &Tensor::scalar(0f64))?)?)])
    });
    Ok(out)
}

/// Apply `f` elementwise, recording its backward.
pub fn unary(f: Fun, x: &Tensor) -> Result<Tensor> {
    let xf = if matches!(f, Fun::Floor | Fun::Ceil | Fun::Round | Fun::Trunc) && !x.dtype().is_float() {
        return Ok(x.clone());
    } else {
        floatify(x)?
    };
    if f == Fun::LogNdtr && xf.dtype() == DType::F64 && needs_grad(&[&xf]) {
        return log_ndtr_with_ratio(&xf);
    }
    let out = kernel(f, &xf)?;
    if needs_grad(&[&xf]) {
        let (ux, uy) = uses(f);
        let sx = if ux { Some(SavedTensor::input(&xf)) } else { None };
        let sy = if uy { Some(SavedTensor::output(&out)) } else { None };
        attach(&out, name(f), &[&xf], true, move |ctx, g| {
            let x = match &sx {
                Some(s) => s.get(ctx)?,
                None => Tensor::scalar(0f64),
            };
            let y = match &sy {
                Some(s) => s.get(ctx)?,
                None => Tensor::scalar(0f64),
            };
            if f == Fun::Tanh && g.dtype() == y.dtype() {
                return Ok(vec![Some(tanh_backward(g, &y)?)]);
            }
            if matches!(f, Fun::Erf | Fun::Erfc | Fun::Ndtr | Fun::LogNdtr) && !crate::autograd::is_grad_enabled() {
                // first order: one fused pass; under create_graph the composite below
                if let Some(gx) = fused_special_backward(f, &x, g)? {
                    return Ok(vec![Some(gx)]);
                }
            }
            Ok(vec![Some(mul(g, &derivative(f, &x, &y)?)?)])
        });
    }
    Ok(out)
}

pub fn exp(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Exp, x)
}
pub fn log(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Log, x)
}
pub fn sin(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Sin, x)
}
pub fn cos(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Cos, x)
}
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Sigmoid, x)
}
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Tanh, x)
}
pub fn sqrt(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Sqrt, x)
}
pub fn reciprocal(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Reciprocal, x)
}
pub fn relu(x: &Tensor) -> Result<Tensor> {
    unary(Fun::Relu, x)
}

/// `leaky_relu(x, slope)`.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let x = floatify(x)?;
    let out = float_map!(&x, "leaky_relu", |v| if v > 0.0 { v } else { v * (slope as F) });
    if needs_grad(&[&x]) {
        let sx = SavedTensor::input(&x);
        attach(&out, "LeakyReluBackward0", &[&x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            let pos = gt(&x, &sc(0.0, &x))?;
            Ok(vec![Some(where_(&pos, g, &mul_scalar(g, slope)?)?)])
        });
    }
    Ok(out)
}

/// `elu(x, alpha)`.
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let x = floatify(x)?;
    let out = float_map!(&x, "elu", |v| if v > 0.0 { v } else { (alpha as F) * v.exp_m1() });
    if needs_grad(&[&x]) {
        let sx = SavedTensor::input(&x);
        attach(&out, "EluBackward0", &[&x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            let pos = gt(&x, &sc(0.0, &x))?;
            let d = mul_scalar(&exp(&x)?, alpha)?;
            Ok(vec![Some(where_(&pos, g, &mul(g, &d)?)?)])
        });
    }
    Ok(out)
}

/// `softplus(x, beta, threshold)`: log(1 + exp(beta x)) / beta, linear above the threshold.
pub fn softplus(x: &Tensor, beta: f64, threshold: f64) -> Result<Tensor> {
    let x = floatify(x)?;
    let out = float_map!(&x, "softplus", |v| {
        let bx = v * (beta as F);
        // stable for any magnitude: max(bx, 0) + log1p(exp(-|bx|))
        if bx > (threshold as F) {
            v
        } else {
            (bx.max(0.0) + (-bx.abs()).exp().ln_1p()) / (beta as F)
        }
    });
    if needs_grad(&[&x]) {
        let sx = SavedTensor::input(&x);
        attach(&out, "SoftplusBackward0", &[&x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            let bx = mul_scalar(&x, beta)?;
            let lin = gt(&bx, &sc(threshold, &x))?;
            Ok(vec![Some(where_(&lin, g, &mul(g, &sigmoid(&bx)?)?)?)])
        });
    }
    Ok(out)
}

/// `gelu(x)`: exact (x Phi(x)) or the tanh approximation (composite, so every order is exact).
pub fn gelu(x: &Tensor, tanh_approx: bool) -> Result<Tensor> {
    let x = floatify(x)?;
    if tanh_approx {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let x3 = mul(&mul(&x, &x)?, &x)?;
        let inner = mul_scalar(&add(&x, &mul_scalar(&x3, 0.044715)?)?, k)?;
        return mul(&mul_scalar(&x, 0.5)?, &add_scalar(&tanh(&inner)?, 1.0)?);
    }
    let out = float_map!(&x, "gelu", |v| v * Real::ndtr(v));
    if needs_grad(&[&x]) {
        let sx = SavedTensor::input(&x);
        attach(&out, "GeluBackward0", &[&x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            let phi = mul_scalar(&exp(&mul_scalar(&mul(&x, &x)?, -0.5)?)?, INV_SQRT_2PI)?;
            let d = add(&unary(Fun::Ndtr, &x)?, &mul(&x, &phi)?)?;
            Ok(vec![Some(mul(g, &d)?)])
        });
    }
    Ok(out)
}

/// `logit(x, eps)`: log(x / (1 - x)), with x clamped to [eps, 1 - eps] when eps is given.
pub fn logit(x: &Tensor, eps: Option<f64>) -> Result<Tensor> {
    let x = floatify(x)?;
    let xc = match eps {
        Some(e) => clamp(&x, Some(e), Some(1.0 - e))?,
        None => x.clone(),
    };
    sub(&log(&xc)?, &unary(Fun::Log1p, &neg(&xc)?)?)
}

/// `clamp(x, min, max)`; the gradient passes where min < x < max (torch's rule:
/// zero at the bounds).
pub fn clamp(x: &Tensor, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
    if min.is_none() && max.is_none() {
        return Err(crate::value_err!("clamp: At least one of 'min' or 'max' must not be None"));
    }
    let lo = min.unwrap_or(f64::NEG_INFINITY);
    let hi = max.unwrap_or(f64::INFINITY);
    let out = match x.dtype() {
        DType::F32 => map1::<f32, f32>(x, |v| if v.is_nan() { v } else { v.max(lo as f32).min(hi as f32) }),
        DType::F64 => map1::<f64, f64>(x, |v| if v.is_nan() { v } else { v.max(lo).min(hi) }),
        DType::I64 => {
            let l = if lo.is_finite() { lo.ceil() as i64 } else { i64::MIN };
            let h = if hi.is_finite() { hi.floor() as i64 } else { i64::MAX };
            map1::<i64, i64>(x, |v| v.max(l).min(h))
        }
        DType::Bool => return Err(dtype_err!("clamp is not supported for bool tensors")),
    };
    if needs_grad(&[x]) {
        let sx = SavedTensor::input(x);
        attach(&out, "ClampBackward1", &[x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            let inside = logical_and(&gt(&x, &sc(lo, &x))?, &super::binary::lt(&x, &sc(hi, &x))?)?;
            Ok(vec![Some(where_(&inside, g, &sc(0.0, g))?)])
        });
    }
    Ok(out)
}

/// clamp with tensor bounds: min/max elementwise (maximum then minimum).
pub fn clamp_tensor(x: &Tensor, min: Option<&Tensor>, max: Option<&Tensor>) -> Result<Tensor> {
    let mut y = x.clone();
    if let Some(m) = min {
        y = super::binary::maximum(&y, m)?;
    }
    if let Some(m) = max {
        y = super::binary::minimum(&y, m)?;
    }
    Ok(y)
}

/// Elementwise NaN test etc. (no gradient).
pub fn isnan(x: &Tensor) -> Result<Tensor> {
    Ok(match x.dtype() {
        DType::F32 => map1::<f32, bool>(x, |v| v.is_nan()),
        DType::F64 => map1::<f64, bool>(x, |v| v.is_nan()),
        _ => Tensor::zeros(x.shape(), DType::Bool)?,
    })
}
pub fn isfinite(x: &Tensor) -> Result<Tensor> {
    Ok(match x.dtype() {
        DType::F32 => map1::<f32, bool>(x, |v| v.is_finite()),
        DType::F64 => map1::<f64, bool>(x, |v| v.is_finite()),
        _ => Tensor::ones(x.shape(), DType::Bool)?,
    })
}
pub fn isinf(x: &Tensor) -> Result<Tensor> {
    Ok(match x.dtype() {
        DType::F32 => map1::<f32, bool>(x, |v| v.is_infinite()),
        DType::F64 => map1::<f64, bool>(x, |v| v.is_infinite()),
        _ => Tensor::zeros(x.shape(), DType::Bool)?,
    })
}

/// Fill every element of `t` with `v` in place (no autograd check; used under no_grad).
pub fn fill_raw(t: &Tensor, v: f64) {
    dispatch_all!(t.dtype(), T => crate::kernels::apply_inplace::<T>(t, |_| T::from_f64(v)));
}

/// Fill every element of `t` with the integer `v` in place, exactly for an
/// int64 tensor (no rounding through f64; no autograd check).
pub fn fill_raw_i64(t: &Tensor, v: i64) {
    dispatch_all!(t.dtype(), T => crate::kernels::apply_inplace::<T>(t, |_| T::from_i64(v)));
}

// ------------------------------------------------------------ fused backward ops
// Backward formulas used at every order (PINNs differentiate through them two
// or three times), fused into one kernel each and closed under differentiation:
//   tanh_backward(g, y) = g (1 - y^2)
//     d/dg: tanh_backward(go, y);  d/dy: product3(go, g, y, -2)
//   product3(a, b, c, s) = s a b c
//     d/da: product3(go, b, c, s), and likewise for b and c.

/// `g * (1 - y * y)`, the gradient of tanh from its output `y`.
pub fn tanh_backward(g: &Tensor, y: &Tensor) -> Result<Tensor> {
    if g.dtype() != y.dtype() || !g.dtype().is_float() {
        return mul(g, &sub(&sc(1.0, y), &mul(y, y)?)?);
    }
    let out = match g.dtype() {
        DType::F32 => crate::kernels::map2::<f32, f32, f32>(g, y, |g, y| g * (1.0 - y * y))?,
        _ => crate::kernels::map2::<f64, f64, f64>(g, y, |g, y| g * (1.0 - y * y))?,
    };
    if needs_grad(&[g, y]) {
        let (sg, sy) = (SavedTensor::input(g), SavedTensor::input(y));
        let (gshape, yshape) = (g.shape().to_vec(), y.shape().to_vec());
        attach(&out, "TanhBackwardBackward0", &[g, y], true, move |ctx, go| {
            let y = sy.get(ctx)?;
            let dg = if ctx.needs(0) { Some(super::reduce::sum_to(&tanh_backward(go, &y)?, &gshape)?) } else { None };
            let dy = if ctx.needs(1) {
                let g = sg.get(ctx)?;
                Some(super::reduce::sum_to(&product3(go, &g, &y, -2.0)?, &yshape)?)
            } else {
                None
            };
            Ok(vec![dg, dy])
        });
    }
    Ok(out)
}

/// `s * a * b * c` in one pass (same floating dtype; broadcasting).
pub fn product3(a: &Tensor, b: &Tensor, c: &Tensor, s: f64) -> Result<Tensor> {
    if a.dtype() != b.dtype() || a.dtype() != c.dtype() || !a.dtype().is_float() {
        return mul_scalar(&mul(&mul(a, b)?, c)?, s);
    }
    let out = match a.dtype() {
        DType::F32 => {
            let s = s as f32;
            crate::kernels::map3::<f32, f32, f32, f32>(a, b, c, move |a, b, c| s * a * b * c)?
        }
        _ => crate::kernels::map3::<f64, f64, f64, f64>(a, b, c, move |a, b, c| s * a * b * c)?,
    };
    if needs_grad(&[a, b, c]) {
        let saved = [SavedTensor::input(a), SavedTensor::input(b), SavedTensor::input(c)];
        let shapes = [a.shape().to_vec(), b.shape().to_vec(), c.shape().to_vec()];
        attach(&out, "Product3Backward0", &[a, b, c], true, move |ctx, go| {
            let mut v = Vec::with_capacity(3);
            for i in 0..3 {
                v.push(if ctx.needs(i) {
                    let (p, q) = (saved[(i + 1) % 3].get(ctx)?, saved[(i + 2) % 3].get(ctx)?);
                    Some(super::reduce::sum_to(&product3(go, &p, &q, s)?, &shapes[i])?)
                } else {
                    None
                });
            }
            Ok(v)
        });
    }
    Ok(out)
}
