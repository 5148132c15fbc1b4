//! Loss functions that need their own kernels: cross-entropy over logits,
//! fused (one pass computes the log-sum-exp and the loss; logits are never
//! exponentiated without subtracting the row maximum).
//!
//! A row's loss is written `-sum_c a_c log p_c = A * lse - sum_c a_c z_c`
//! with coefficients `a` (one-hot, smoothed and weighted for class targets,
//! weighted probabilities for soft targets) and `A = sum_c a_c`. Its gradient
//! is `softmax(z) * A - a` for the logits and `-log p` for the coefficients.
use super::binary::{mul, sub};
use super::reduce::sum;
use super::shape::{movedim, reshape, unsqueeze};
use crate::autograd::{attach, is_grad_enabled, needs_grad, SavedTensor};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::{FreshTensor, Tensor};
use crate::{dtype_err, index_err, shape_err, value_err};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    None,
    Mean,
    Sum,
}

impl Reduction {
    pub fn parse(s: &str) -> Result<Reduction> {
        match s {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(value_err!("{s} is not a valid value for reduction")),
        }
    }
}

/// Per-row `A * lse(z) - sum(a * z)` for contiguous (R, C) `z` and `a`.
// generic over f32 and f64: `as f64` is a no-op for one of them
#[allow(clippy::unnecessary_cast)]
pub fn ce_rows(z: &Tensor, a: &Tensor) -> Result<Tensor> {
    let (r, c) = (z.shape()[0], z.shape()[1]);
    let zc = z.contiguous();
    let ac = a.contiguous();
    let (out, lse) = crate::dispatch_float!(z.dtype(), "cross_entropy", T => {
        let mut out = FreshTensor::<T>::uninit(&[r])?;
        // per row: the max and the log of the shifted sum, kept apart so the
        // backward computes exp((z - max) - log_sum) at full precision
        let mut lse = FreshTensor::<T>::uninit(&[r, 2])?;
        let zd = zc.data::<T>();
        let ad = ac.data::<T>();
        let (o, l) = (out.as_mut_slice(), lse.as_mut_slice());
        for i in 0..r {
            let zr = &zd[i * c..(i + 1) * c];
            let ar = &ad[i * c..(i + 1) * c];
            let m = zr.iter().fold(T::NEG_INFINITY, |acc, &v| if v > acc || v.is_nan() { v } else { acc });
            let (mut s, mut sa, mut dot) = (0f64, 0f64, 0f64);
            for k in 0..c {
                s += ((zr[k] - m) as f64).exp();
                sa += ar[k] as f64;
                if ar[k] != 0.0 {
                    dot += ar[k] as f64 * zr[k] as f64;
                }
            }
            let ls = m as f64 + s.ln();
            l[2 * i] = m;
            l[2 * i + 1] = s.ln() as T;
            o[i] = if sa == 0.0 { 0.0 } else { (ls * sa - dot) as T };
        }
        (out.into_tensor(), lse.into_tensor())
    });
    if needs_grad(&[z, a]) {
        let (sz, sa) = (SavedTensor::input(z), SavedTensor::input(a));
        let lse = lse.detach();
        attach(&out, "CrossEntropyBackward0", &[z, a], true, move |ctx, g| {
            let z = sz.get(ctx)?;
            let a = sa.get(ctx)?;
            let g1 = unsqueeze(g, 1)?;
            let gz = if ctx.needs(0) {
                if is_grad_enabled() {
                    // create_graph: the same formula written with differentiable ops
                    let p = super::nn::softmax(&z, 1)?;
                    let big_a = sum(&a, Some(&[1]), true)?;
                    Some(mul(&g1, &sub(&mul(&p, &big_a)?, &a)?)?)
                } else {
                    Some(ce_grad_kernel(&z, &a, &lse, g)?)
                }
            } else {
                None
            };
            let ga = if ctx.needs(1) { Some(mul(&g1, &super::unary::neg(&super::nn::log_softmax(&z, 1)?)?)?) } else { None };
            Ok(vec![gz, ga])
        });
    }
    Ok(out)
}

/// First-order gradient `g * (softmax(z) * A - a)` in one pass.
fn ce_grad_kernel(z: &Tensor, a: &Tensor, lse: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (r, c) = (z.shape()[0], z.shape()[1]);
    let (zc, ac, gc) = (z.contiguous(), a.contiguous(), g.contiguous());
    let out = crate::dispatch_float!(z.dtype(), "cross_entropy", T => {
        let (zd, ad, ld, gd) = (zc.data::<T>(), ac.data::<T>(), lse.data::<T>(), gc.data::<T>());
        let mut out = FreshTensor::<T>::uninit(&[r, c])?;
        let o = out.as_mut_slice();
        for i in 0..r {
            let sa: T = ad[i * c..(i + 1) * c].iter().copied().sum();
            for k in 0..c {
                let p = ((zd[i * c + k] - ld[2 * i]) - ld[2 * i + 1]).exp();
                o[i * c + k] = gd[i] * (p * sa - ad[i * c + k]);
            }
        }
        out.into_tensor()
    });
    Ok(out)
}

/// Coefficients for class-index targets: (a of shape (R, C), sum of the
/// weights of the counted rows). Ignored rows get zero coefficients.
pub fn class_coefficients(
    target: &Tensor,
    c: usize,
    weight: Option<&Tensor>,
    ignore_index: i64,
    smoothing: f64,
    dtype: DType,
) -> Result<(Tensor, f64)> {
    if target.dtype() != DType::I64 {
        return Err(dtype_err!("expected scalar type Long but found {} for the class-index target", target.dtype().name()));
    }
    let t = target.to_vec::<i64>();
    let w: Vec<f64> = match weight {
        Some(w) => {
            if w.ndim() != 1 || w.shape()[0] != c {
                return Err(shape_err!(
                    "weight tensor should be defined either for all {c} classes or no classes but got weight tensor of shape: {:?}",
                    w.shape()
                ));
            }
            w.to_vec::<f64>()
        }
        None => vec![1.0; c],
    };
    let r = t.len();
    let mut a = vec![0f64; r * c];
    let mut norm = 0f64;
    for (i, &y) in t.iter().enumerate() {
        if y == ignore_index {
            continue;
        }
        if y < 0 || y as usize >= c {
            return Err(index_err!("Target {y} is out of bounds (number of classes {c})."));
        }
        let row = &mut a[i * c..(i + 1) * c];
        if smoothing > 0.0 {
            for k in 0..c {
                row[k] = smoothing / c as f64 * w[k];
            }
        }
        row[y as usize] += (1.0 - smoothing) * w[y as usize];
        norm += w[y as usize];
    }
    let at = Tensor::from_vec(a, &[r, c])?;
    Ok((crate::kernels::cast(&at, dtype), norm))
}

/// `cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)`
/// with torch's semantics: class dim 1 (or 0 for a 1-D input), class-index
/// (int64) or probability (float, same shape as input) targets.
pub fn cross_entropy(
    x: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    ignore_index: i64,
    reduction: Reduction,
    smoothing: f64,
) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return Err(dtype_err!("cross_entropy: expected floating point logits, got {}", x.dtype().name()));
    }
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(value_err!("label_smoothing must be between 0.0 and 1.0. Got: {smoothing}"));
    }
    if x.ndim() == 0 {
        return Err(shape_err!("cross_entropy: input must have at least one dimension (classes), got a 0-dim tensor"));
    }
    let cdim = if x.ndim() == 1 { 0 } else { 1 };
    let c = x.shape()[cdim];
    let mut row_shape: Vec<usize> = x.shape().to_vec();
    row_shape.remove(cdim);
    let rows: usize = row_shape.iter().product();
    let z = reshape(&movedim(x, &[cdim as isize], &[-1])?, &[rows, c])?;
    let (a, norm) = if target.dtype().is_float() {
        if target.shape() != x.shape() {
            return Err(shape_err!("cross_entropy: soft targets must have the input's shape {:?}, got {:?}", x.shape(), target.shape()));
        }
        let t = reshape(&movedim(&super::as_dtype(target, x.dtype())?, &[cdim as isize], &[-1])?, &[rows, c])?;
        let t = if smoothing > 0.0 {
            super::binary::add_scalar(&super::binary::mul_scalar(&t, 1.0 - smoothing)?, smoothing / c as f64)?
        } else {
            t
        };
        let a = match weight {
            Some(w) => mul(&t, &unsqueeze(&super::as_dtype(w, x.dtype())?, 0)?)?,
            None => t,
        };
        (a, rows as f64)
    } else {
        if target.shape() != &row_shape[..] {
            return Err(shape_err!(
                "cross_entropy: expected target of shape {:?} for input of shape {:?}, got {:?}",
                row_shape,
                x.shape(),
                target.shape()
            ));
        }
        class_coefficients(target, c, weight, ignore_index, smoothing, x.dtype())?
    };
    let per_row = ce_rows(&z, &a)?;
    match reduction {
        Reduction::None => reshape(&per_row, &row_shape),
        Reduction::Sum => sum(&per_row, None, false),
        // every target ignored (or zero total weight): the loss is 0/0 = NaN
        // as torch's, but its gradient is zero, as torch's (not NaN from 0 * inf)
        Reduction::Mean if norm == 0.0 => {
            super::binary::add_scalar(&super::binary::mul_scalar(&sum(&per_row, None, false)?, 0.0)?, f64::NAN)
        }
        Reduction::Mean => super::binary::mul_scalar(&sum(&per_row, None, false)?, 1.0 / norm),
    }
}
