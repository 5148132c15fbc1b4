//! Neural-network functions: softmax, log_softmax, padding, dropout.
use super::binary::{mul, sub};
use super::reduce::sum;
use super::shape::slice;
use super::unary::exp;
use crate::autograd::{attach, needs_grad, SavedTensor};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::{norm_dim, FreshTensor, Tensor};
use crate::{shape_err, value_err};

fn floatify(x: &Tensor) -> Result<Tensor> {
    if x.dtype().is_float() {
        Ok(x.clone())
    } else {
        super::unary::to_dtype(x, crate::default_dtype())
    }
}

/// `(x - max, log(sum(exp(x - max))))` along `d`, without autograd. The
/// shift is subtracted before anything else, so `(x - max) - log(sum)` keeps
/// full precision at large offsets, where `x - (max + log(sum))` would round
/// `max + log(sum)` to the spacing of `max` first.
fn shifted_and_log_sum(x: &Tensor, d: usize) -> Result<(Tensor, Tensor)> {
    let x = x.detach();
    let m = super::reduce::amax(&x, Some(&[d as isize]), true, super::reduce::Extreme::Max)?;
    // a row that is all -inf gets a zero shift instead of NaN from -inf - -inf
    // (its softmax is then NaN from 0/0, as torch's); a +inf max stays, so
    // that row is NaN everywhere, as torch's
    let all_neg_inf = super::binary::compare(super::binary::Cmp::Eq, &m, &Tensor::wrapped_scalar(f64::NEG_INFINITY, m.dtype()))?;
    let m = super::binary::where_(&all_neg_inf, &Tensor::zeros(&[], m.dtype())?, &m)?;
    let shifted = sub(&x, &m)?;
    let ls = super::unary::log(&sum(&exp(&shifted)?, Some(&[d as isize]), true)?)?;
    Ok((shifted, ls))
}

/// Elements per task of the row kernels (whole rows; a fixed partition, so
/// the results do not depend on the thread count).
const ROW_CHUNK: usize = 8192;

/// A row kernel `k(a, b, out)` of [`par_rows`].
type RowKernel<'a, T> = dyn Fn(&[T], &[T], &mut [T]) + Sync + 'a;

/// `k(a, b, out)` over fixed chunks of whole runs of `r` elements (`b` is
/// empty for the forward), on the pool when the tensor is large.
fn par_rows<T: crate::elem::Elem>(a: &[T], b: &[T], r: usize, out: &mut [T], k: &RowKernel<'_, T>) {
    let n = a.len().min(out.len());
    let rows_per = (ROW_CHUNK / r).max(1);
    let chunk = rows_per * r;
    if n <= chunk {
        return k(&a[..n], if b.is_empty() { b } else { &b[..n] }, &mut out[..n]);
    }
    let optr = crate::parallel::SendPtr(out.as_mut_ptr());
    crate::parallel::for_each_index(n.div_ceil(chunk), n.saturating_mul(32), |c| {
        let lo = c * chunk;
        let hi = (lo + chunk).min(n);
        // SAFETY: chunk `c` writes only out[lo..hi], which lies inside `out`
        // (hi <= n <= out.len()) and is disjoint from every other chunk's range.
        let o = unsafe { std::slice::from_raw_parts_mut(optr.get().add(lo), hi - lo) };
        k(&a[lo..hi], if b.is_empty() { b } else { &b[lo..hi] }, o);
    });
}

/// The fused forward over the last dim (`log`: log_softmax, else softmax) of
/// a float tensor, without autograd; rows split over threads in fixed chunks.
fn rows_forward(x: &Tensor, log: bool) -> Result<Tensor> {
    let x = x.detach().contiguous();
    let r = *x.shape().last().unwrap_or(&1);
    if r == 0 || x.numel() == 0 {
        return Tensor::zeros(x.shape(), x.dtype());
    }
    match x.dtype() {
        DType::F32 => FreshTensor::<f32>::build(x.shape(), |o| {
            par_rows(x.data::<f32>(), &[], r, o, &|a, _, o| crate::simd::softmax_rows_f32(a, r, log, o))
        }),
        _ => FreshTensor::<f64>::build(x.shape(), |o| {
            par_rows(x.data::<f64>(), &[], r, o, &|a, _, o| crate::simd::softmax_rows_f64(a, r, log, o))
        }),
    }
}

/// The fused first-order backward over the last dim from the output `y`, or
/// None when a graph of it is needed (higher orders take the composite) or
/// the dtypes/shapes do not match.
fn rows_backward(y: &Tensor, g: &Tensor, log: bool) -> Result<Option<Tensor>> {
    if needs_grad(&[y, g]) || g.dtype() != y.dtype() || g.shape() != y.shape() || y.numel() == 0 {
        return Ok(None);
    }
    let r = *y.shape().last().unwrap_or(&1);
    let (yc, gc) = (y.contiguous(), g.contiguous());
    let out = match y.dtype() {
        DType::F32 => FreshTensor::<f32>::build(y.shape(), |o| {
            par_rows(yc.data::<f32>(), gc.data::<f32>(), r, o, &|a, b, o| crate::simd::softmax_rows_backward_f32(a, b, r, log, o))
        })?,
        _ => FreshTensor::<f64>::build(y.shape(), |o| {
            par_rows(yc.data::<f64>(), gc.data::<f64>(), r, o, &|a, b, o| crate::simd::softmax_rows_backward_f64(a, b, r, log, o))
        })?,
    };
    Ok(Some(out))
}

/// Whether the fused row kernels apply: `dim` is the last one (of extent > 0).
fn fused_dim(x: &Tensor, d: usize) -> bool {
    d + 1 == x.ndim() && x.shape()[d] > 0 && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// softmax along `dim`: exp((x - max) - log(sum(exp(x - max)))), never
/// exponentiating raw logits. Over the last dim, one fused row kernel.
pub fn softmax(x: &Tensor, dim: isize) -> Result<Tensor> {
    let x = floatify(x)?;
    if x.ndim() == 0 {
        return super::unary::exp(&sub(&x, &x.detach())?);
    }
    let d = norm_dim(dim, x.ndim())?;
    let fused = fused_dim(&x, d);
    let out = if fused {
        rows_forward(&x, false)?
    } else {
        let (shifted, ls) = shifted_and_log_sum(&x, d)?;
        exp(&sub(&shifted, &ls)?)?
    };
    if needs_grad(&[&x]) {
        let so = SavedTensor::output(&out);
        attach(&out, "SoftmaxBackward0", &[&x], true, move |ctx, g| {
            let y = so.get(ctx)?;
            if fused {
                if let Some(gx) = rows_backward(&y, g, false)? {
                    return Ok(vec![Some(gx)]);
                }
            }
            let gy = mul(g, &y)?;
            let s = sum(&gy, Some(&[d as isize]), true)?;
            Ok(vec![Some(sub(&gy, &mul(&y, &s)?)?)])
        });
    }
    Ok(out)
}

/// log_softmax along `dim`: (x - max) - log(sum(exp(x - max))). Over the
/// last dim, one fused row kernel.
pub fn log_softmax(x: &Tensor, dim: isize) -> Result<Tensor> {
    let x = floatify(x)?;
    if x.ndim() == 0 {
        return sub(&x, &x.detach());
    }
    let d = norm_dim(dim, x.ndim())?;
    let fused = fused_dim(&x, d);
    let out = if fused {
        rows_forward(&x, true)?
    } else {
        let (shifted, ls) = shifted_and_log_sum(&x, d)?;
        sub(&shifted, &ls)?
    };
    if needs_grad(&[&x]) {
        let so = SavedTensor::output(&out);
        attach(&out, "LogSoftmaxBackward0", &[&x], true, move |ctx, g| {
            let y = so.get(ctx)?;
            if fused {
                if let Some(gx) = rows_backward(&y, g, true)? {
                    return Ok(vec![Some(gx)]);
                }
            }
            let s = sum(g, Some(&[d as isize]), true)?;
            Ok(vec![Some(sub(g, &mul(&exp(&y)?, &s)?)?)])
        });
    }
    Ok(out)
}

/// Constant padding, torch's `F.pad(x, pads, value=v)`: `pads` lists
/// (left, right) pairs starting from the last dim; negative values crop.
pub fn pad_constant(x: &Tensor, pads: &[isize], value: f64) -> Result<Tensor> {
    if !pads.len().is_multiple_of(2) {
        return Err(value_err!("Padding length must be divisible by 2, got {}", pads.len()));
    }
    if pads.len() / 2 > x.ndim() {
        return Err(value_err!(
            "Padding length should be less than or equal to two times the input dimension but got padding length {} and input of dimension {}",
            pads.len(),
            x.ndim()
        ));
    }
    let nd = x.ndim();
    let mut oshape = x.shape().to_vec();
    // region of the output that receives x (after cropping negative pads)
    let mut src = x.clone();
    let mut starts = vec![0usize; nd];
    for i in 0..pads.len() / 2 {
        let d = nd - 1 - i;
        let (l, r) = (pads[2 * i], pads[2 * i + 1]);
        let n = x.shape()[d] as isize;
        let new = n + l + r;
        if new < 0 {
            return Err(shape_err!("The input size {n}, plus negative padding {l} and {r} resulted in a negative output size, which is invalid. Check dimension {d} of your input."));
        }
        oshape[d] = new as usize;
        let crop_l = (-l).max(0);
        let crop_r = (-r).max(0);
        let keep = (n - crop_l - crop_r).max(0) as usize;
        src = slice(&src, d, crop_l as usize, keep, 1)?;
        starts[d] = l.max(0) as usize;
    }
    let out = Tensor::full(&oshape, value, x.dtype())?;
    {
        let st = out.strides().to_vec();
        let off: isize = starts.iter().zip(&st).map(|(&s, &t)| s as isize * t).sum();
        let region = out.alias(src.shape(), &st, off as usize)?;
        crate::kernels::copy_into(&region, &src.detach())?;
    }
    if needs_grad(&[x]) {
        let neg: Vec<isize> = pads.iter().map(|p| -p).collect();
        attach(&out, "ConstantPadNdBackward0", &[x], false, move |_, g| Ok(vec![Some(pad_constant(g, &neg, 0.0)?)]));
    }
    Ok(out)
}
