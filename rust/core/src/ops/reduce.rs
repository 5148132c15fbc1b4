//! Reductions over any set of dimensions, with `keepdim`: sum, mean, prod,
//! var/std, amax/amin, max/min with indices, argmax/argmin, logsumexp, cumsum.
use super::binary::{div, eq, mul, mul_scalar, sub};
use super::shape::{expand, permute, reshape, squeeze_dims, unsqueeze_dims};
use super::unary::{exp, sqrt, to_dtype};
use crate::autograd::{attach, needs_grad, SavedTensor};
use crate::dtype::DType;
use crate::elem::Elem;
use crate::error::Result;
use crate::tensor::{norm_dim, numel_of, FreshTensor, Tensor};
use crate::{dispatch_all, dtype_err, value_err};

/// Normalise `dims` (None = all); sorted, deduplicated.
pub fn norm_dims(dims: Option<&[isize]>, ndim: usize) -> Result<Vec<usize>> {
    let mut out = match dims {
        None => (0..ndim).collect::<Vec<_>>(),
        Some([]) => (0..ndim).collect(),
        Some(ds) => {
            let mut v = Vec::with_capacity(ds.len());
            for &d in ds {
                let n = norm_dim(d, ndim)?;
                if v.contains(&n) {
                    return Err(value_err!("dim {n} appears multiple times in the list of dims"));
                }
                v.push(n);
            }
            v
        }
    };
    out.sort_unstable();
    if ndim == 0 {
        out.clear();
    }
    Ok(out)
}

fn out_shape(shape: &[usize], dims: &[usize], keepdim: bool) -> Vec<usize> {
    let mut o = Vec::new();
    for (i, &n) in shape.iter().enumerate() {
        if dims.contains(&i) {
            if keepdim {
                o.push(1);
            }
        } else {
            o.push(n);
        }
    }
    o
}

/// Layout `x` so that each output element's reduced values are one contiguous
/// run of `r` elements; returns (data, r).
fn grouped(x: &Tensor, dims: &[usize]) -> (Tensor, usize) {
    let nd = x.ndim();
    let r: usize = dims.iter().map(|&d| x.shape()[d]).product();
    let tail_ok = dims.iter().enumerate().all(|(i, &d)| d == nd - dims.len() + i);
    if tail_ok {
        return (x.contiguous(), r);
    }
    let mut perm: Vec<usize> = (0..nd).filter(|d| !dims.contains(d)).collect();
    perm.extend_from_slice(dims);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let strides: Vec<isize> = perm.iter().map(|&p| x.strides()[p]).collect();
    // a permutation of x's own (valid) geometry
    (x.alias(&shape, &strides, x.offset()).expect("a permutation of a valid view is valid").contiguous(), r)
}

/// For a contiguous `x` reduced over one contiguous range of dims that is not
/// at the end: the block layout (outer, r, inner).
fn middle_layout(x: &Tensor, dims: &[usize]) -> Option<(usize, usize, usize)> {
    if dims.is_empty() || !x.is_contiguous() || x.numel() == 0 {
        return None;
    }
    let (d0, d1) = (dims[0], *dims.last().unwrap());
    if d1 - d0 + 1 != dims.len() || d1 + 1 >= x.ndim() {
        return None;
    }
    let outer = x.shape()[..d0].iter().product();
    let r = x.shape()[d0..=d1].iter().product();
    let inner = x.shape()[d1 + 1..].iter().product();
    Some((outer, r, inner))
}

/// Generic reduction kernel: each output element is `f(run)` over its reduced run.
fn reduce_with<T: Elem, O: Elem>(x: &Tensor, dims: &[usize], keepdim: bool, f: impl Fn(&[T]) -> O + Send + Sync) -> Tensor {
    let (g, r) = grouped(x, dims);
    let oshape = out_shape(x.shape(), dims, keepdim);
    let mut out = FreshTensor::<O>::uninit(&oshape).unwrap_or_else(|e| panic!("{e}"));
    let o = out.as_mut_slice();
    let d = g.data::<T>();
    if r == 0 {
        for y in o.iter_mut() {
            *y = f(&[]);
        }
    } else {
        // fixed chunks of outputs, each output from its own run by `f`: the
        // results do not depend on the thread count
        const CHUNK: usize = 256;
        let n = o.len();
        let ptr = crate::parallel::SendPtr(o.as_mut_ptr());
        crate::parallel::for_each_index(n.div_ceil(CHUNK), d.len().saturating_mul(8), |c| {
            let p = ptr;
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            // SAFETY: chunk c is the only task writing outputs lo..hi of `o`,
            // which outlives this loop.
            let oc = unsafe { std::slice::from_raw_parts_mut(p.0.add(lo), hi - lo) };
            for (y, run) in oc.iter_mut().zip(d[lo * r..hi * r].chunks_exact(r)) {
                *y = f(run);
            }
        });
    }
    out.into_tensor()
}

fn sum_raw(x: &Tensor, dims: &[usize], keepdim: bool) -> Tensor {
    if let Some((outer, r, inner)) = middle_layout(x, dims) {
        if x.dtype().is_float() {
            let os = out_shape(x.shape(), dims, keepdim);
            let out = match x.dtype() {
                DType::F32 => FreshTensor::<f32>::build(&os, |o| crate::simd::sum_middle_f32(x.data::<f32>(), outer, r, inner, o)),
                _ => FreshTensor::<f64>::build(&os, |o| crate::simd::sum_middle_f64(x.data::<f64>(), outer, r, inner, o)),
            };
            return out.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    if x.dtype().is_float() {
        let (g, r) = grouped(x, dims);
        if r > 0 {
            let os = out_shape(x.shape(), dims, keepdim);
            let out = match x.dtype() {
                DType::F32 => FreshTensor::<f32>::build(&os, |o| crate::simd::sum_runs_f32(g.data::<f32>(), r, o)),
                _ => FreshTensor::<f64>::build(&os, |o| crate::simd::sum_runs_f64(g.data::<f64>(), r, o)),
            };
            return out.unwrap_or_else(|e| panic!("{e}"));
        }
    }
    match x.dtype() {
        DType::F32 => reduce_with::<f32, f32>(x, dims, keepdim, |r| r.iter().fold(0f64, |a, &v| a + v as f64) as f32),
        DType::F64 => reduce_with::<f64, f64>(x, dims, keepdim, pairwise_sum),
        DType::I64 => reduce_with::<i64, i64>(x, dims, keepdim, |r| r.iter().fold(0i64, |a, &b| a.wrapping_add(b))),
        DType::Bool => reduce_with::<bool, i64>(x, dims, keepdim, |r| r.iter().filter(|&&b| b).count() as i64),
    }
}

/// Pairwise summation: error O(log n) ulps, deterministic.
fn pairwise_sum(r: &[f64]) -> f64 {
    if r.len() <= 32 {
        let mut acc = [0f64; 4];
        let chunks = r.chunks_exact(4);
        let rem = chunks.remainder();
        for c in chunks {
            for k in 0..4 {
                acc[k] += c[k];
            }
        }
        let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for &v in rem {
            s += v;
        }
        s
    } else {
        let m = r.len() / 2;
        pairwise_sum(&r[..m]) + pairwise_sum(&r[m..])
    }
}

/// Gradient of a reduction: `g` (reduced shape) broadcast back to `shape`.
fn expand_back(g: &Tensor, shape: &[usize], dims: &[usize], keepdim: bool) -> Result<Tensor> {
    let g = if keepdim { g.clone() } else { unsqueeze_dims(g, dims)? };
    expand(&g, shape)
}

pub fn sum(x: &Tensor, dims: Option<&[isize]>, keepdim: bool) -> Result<Tensor> {
    let d = norm_dims(dims, x.ndim())?;
    let out = sum_raw(x, &d, keepdim);
    if needs_grad(&[x]) {
        let shape = x.shape().to_vec();
        attach(&out, "SumBackward1", &[x], false, move |_, g| Ok(vec![Some(expand_back(g, &shape, &d, keepdim)?)]));
    }
    Ok(out)
}

/// Sum `g` down to `shape` (the inverse of broadcasting); differentiable.
pub fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let lead = g.ndim() - shape.len();
    let mut dims: Vec<isize> = (0..lead as isize).collect();
    for (i, &n) in shape.iter().enumerate() {
        if n == 1 && g.shape()[lead + i] != 1 {
            dims.push((lead + i) as isize);
        }
    }
    let s = if dims.is_empty() { g.clone() } else { sum(g, Some(&dims), true)? };
    reshape(&s, shape)
}

pub fn mean(x: &Tensor, dims: Option<&[isize]>, keepdim: bool) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return Err(dtype_err!(
            "mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: {}",
            x.dtype().scalar_name()
        ));
    }
    let d = norm_dims(dims, x.ndim())?;
    let n: usize = d.iter().map(|&i| x.shape()[i]).product();
    let s = sum(x, dims, keepdim)?;
    mul_scalar(&s, 1.0 / n as f64)
}

/// Variance with Bessel-style `correction` (torch's default 1).
pub fn var(x: &Tensor, dims: Option<&[isize]>, correction: f64, keepdim: bool) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return Err(dtype_err!("var(): expected a floating point tensor, got {}", x.dtype().name()));
    }
    let d = norm_dims(dims, x.ndim())?;
    let n: usize = d.iter().map(|&i| x.shape()[i]).product();
    let m = mean(x, dims, true)?;
    let c = sub(x, &m)?;
    let ss = sum(&mul(&c, &c)?, dims, keepdim)?;
    mul_scalar(&ss, 1.0 / (n as f64 - correction).max(0.0))
}

pub fn std(x: &Tensor, dims: Option<&[isize]>, correction: f64, keepdim: bool) -> Result<Tensor> {
    sqrt(&var(x, dims, correction, keepdim)?)
}

pub fn prod(x: &Tensor, dims: Option<&[isize]>, keepdim: bool) -> Result<Tensor> {
    let d = norm_dims(dims, x.ndim())?;
    let out = match x.dtype() {
        DType::F32 => reduce_with::<f32, f32>(x, &d, keepdim, |r| r.iter().map(|&v| v as f64).product::<f64>() as f32),
        DType::F64 => reduce_with::<f64, f64>(x, &d, keepdim, |r| r.iter().product()),
        DType::I64 => reduce_with::<i64, i64>(x, &d, keepdim, |r| r.iter().fold(1i64, |a, &b| a.wrapping_mul(b))),
        DType::Bool => reduce_with::<bool, i64>(x, &d, keepdim, |r| r.iter().all(|&b| b) as i64),
    };
    if needs_grad(&[x]) {
        let sx = SavedTensor::input(x);
        let so = SavedTensor::output(&out);
        let shape = x.shape().to_vec();
        attach(&out, "ProdBackward1", &[x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            let has_zero = x.to_vec::<f64>().contains(&0.0);
            if !has_zero {
                // d prod / d x_i = prod / x_i
                let y = expand_back(&so.get(ctx)?, &shape, &d, keepdim)?;
                let ge = expand_back(g, &shape, &d, keepdim)?;
                return Ok(vec![Some(div(&mul(&ge, &y)?, &x)?)]);
            }
            // With zeros: product of the other elements, computed directly
            // (first order only).
            if crate::autograd::is_grad_enabled() {
                return Err(crate::error::Error::Unsupported(
                    "the second derivative of prod() at an input containing zeros is not implemented".into(),
                ));
            }
            let others = prod_of_others(&x.detach(), &d)?;
            let ge = expand_back(g, &shape, &d, keepdim)?;
            Ok(vec![Some(mul(&ge, &others)?)])
        });
    }
    Ok(out)
}

fn prod_of_others(x: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let nd = x.ndim();
    let mut perm: Vec<usize> = (0..nd).filter(|d| !dims.contains(d)).collect();
    perm.extend_from_slice(dims);
    let (g, r) = grouped(x, dims);
    let res = crate::dispatch_float!(x.dtype(), "prod", T => {
        let src = g.data::<T>();
        let mut res = FreshTensor::<T>::uninit(g.shape())?;
        let dst = res.as_mut_slice();
        if r > 0 {
            for (o, run) in dst.chunks_exact_mut(r).zip(src.chunks_exact(r)) {
                for i in 0..r {
                    let mut p = 1.0 as T;
                    for (j, &v) in run.iter().enumerate() {
                        if j != i { p *= v; }
                    }
                    o[i] = p;
                }
            }
        }
        res.into_tensor()
    });
    // res has the permuted layout: shape = x.shape permuted by `perm`
    let pshape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let res = reshape(&res, &pshape)?;
    let mut inv = vec![0isize; nd];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i as isize;
    }
    Ok(permute(&res, &inv)?.contiguous())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Extreme {
    Max,
    Min,
}

/// Index of the first max/min in a run (NaN counts as the extreme, as in torch).
fn arg_extreme<T: Elem>(r: &[T], which: Extreme) -> usize {
    let mut best = 0usize;
    for i in 1..r.len() {
        let (a, b) = (r[i], r[best]);
        #[allow(clippy::eq_op)]
        let a_nan = a != a;
        #[allow(clippy::eq_op)]
        let b_nan = b != b;
        if b_nan {
            break;
        }
        let better = a_nan
            || match which {
                Extreme::Max => a > b,
                Extreme::Min => a < b,
            };
        if better {
            best = i;
            if a_nan {
                break;
            }
        }
    }
    best
}

fn check_nonempty(x: &Tensor, dims: &[usize], op: &str) -> Result<()> {
    if dims.iter().any(|&d| x.shape()[d] == 0) || (dims.is_empty() && x.numel() == 0) {
        return Err(crate::index_err!(
            "{op}(): Expected reduction dim to be specified for input.numel() == 0, or the reduced dimension has size 0 (shape {:?})",
            x.shape()
        ));
    }
    Ok(())
}

/// `amax` / `amin`: the gradient is shared evenly among tied extremes.
pub fn amax(x: &Tensor, dims: Option<&[isize]>, keepdim: bool, which: Extreme) -> Result<Tensor> {
    let d = norm_dims(dims, x.ndim())?;
    check_nonempty(x, &d, if which == Extreme::Max { "amax" } else { "amin" })?;
    let out = dispatch_all!(x.dtype(), T => reduce_with::<T, T>(x, &d, keepdim, |r| r[arg_extreme(r, which)]));
    if needs_grad(&[x]) {
        let sx = SavedTensor::input(x);
        let so = SavedTensor::output(&out);
        let shape = x.shape().to_vec();
        attach(&out, if which == Extreme::Max { "AmaxBackward0" } else { "AminBackward0" }, &[x], true, move |ctx, g| {
            let x = sx.get(ctx)?.detach();
            let y = expand_back(&so.get(ctx)?.detach(), &shape, &d, keepdim)?;
            let mask = to_dtype(&eq(&x, &y)?, g.dtype())?;
            let count = expand_back(&sum_raw(&mask, &d, keepdim), &shape, &d, keepdim)?;
            let ge = expand_back(g, &shape, &d, keepdim)?;
            Ok(vec![Some(div(&mul(&ge, &mask)?, &count)?)])
        });
    }
    Ok(out)
}

/// `argmax` / `argmin` over one dim (or the flattened tensor).
pub fn argext(x: &Tensor, dim: Option<isize>, keepdim: bool, which: Extreme) -> Result<Tensor> {
    match dim {
        None => {
            let flat = reshape(&x.detach(), &[x.numel()])?;
            check_nonempty(&flat, &[0], "argmax")?;
            let r = dispatch_all!(x.dtype(), T => reduce_with::<T, i64>(&flat, &[0], false, |r| arg_extreme(r, which) as i64));
            if keepdim {
                reshape(&r, &vec![1; x.ndim()])
            } else {
                Ok(r)
            }
        }
        Some(dd) => {
            let d = norm_dims(Some(&[dd]), x.ndim())?;
            check_nonempty(x, &d, "argmax")?;
            Ok(dispatch_all!(x.dtype(), T => reduce_with::<T, i64>(x, &d, keepdim, |r| arg_extreme(r, which) as i64)))
        }
    }
}

/// `max(x, dim)` / `min(x, dim)`: (values, indices); the gradient goes to the index.
pub fn max_dim(x: &Tensor, dim: isize, keepdim: bool, which: Extreme) -> Result<(Tensor, Tensor)> {
    let idx = argext(x, Some(dim), true, which)?;
    let d = norm_dim(dim, x.ndim())?;
    let vals = super::index::gather(x, d as isize, &idx)?;
    if keepdim {
        Ok((vals, idx))
    } else {
        let dims = if x.ndim() == 0 { vec![] } else { vec![d] };
        Ok((squeeze_dims(&vals, &dims)?, squeeze_dims(&idx, &dims)?))
    }
}

/// log(sum(exp(x))) over dims, stable.
pub fn logsumexp(x: &Tensor, dims: Option<&[isize]>, keepdim: bool) -> Result<Tensor> {
    let x = if x.dtype().is_float() { x.clone() } else { to_dtype(x, crate::default_dtype())? };
    let d = norm_dims(dims, x.ndim())?;
    if !x.dtype().is_float() {
        return Err(dtype_err!("logsumexp: expected a floating point tensor, got {}", x.dtype().name()));
    }
    let oshape = out_shape(x.shape(), &d, keepdim);
    let grad = needs_grad(&[&x]);
    // with a gradient to come, the shift and the log-sum of each output are kept
    let aux = |n: usize| if grad { n } else { 0 };
    let (out, ms, lss) = if let Some((outer, r, inner)) = middle_layout(&x, &d) {
        let n = aux(outer * inner);
        macro_rules! run {
            ($T:ty, $k:path) => {{
                let (mut o, mut m, mut l) =
                    (FreshTensor::<$T>::uninit(&oshape)?, FreshTensor::<$T>::uninit(&[n])?, FreshTensor::<$T>::uninit(&[n])?);
                $k(x.data::<$T>(), outer, r, inner, &mut o, &mut m, &mut l);
                (o.into_tensor(), m.into_tensor(), l.into_tensor())
            }};
        }
        match x.dtype() {
            DType::F32 => run!(f32, crate::simd::lse_middle_f32),
            _ => run!(f64, crate::simd::lse_middle_f64),
        }
    } else {
        let (g, r) = grouped(&x, &d);
        let n = numel_of(&oshape);
        if r == 0 {
            let o = Tensor::full(&oshape, f64::NEG_INFINITY, x.dtype())?;
            (o.clone(), Tensor::full(&[aux(n)], f64::NEG_INFINITY, x.dtype())?, Tensor::zeros(&[aux(n)], x.dtype())?)
        } else {
            let n = aux(n);
            macro_rules! run {
                ($T:ty, $k:path) => {{
                    let (mut o, mut m, mut l) =
                        (FreshTensor::<$T>::uninit(&oshape)?, FreshTensor::<$T>::uninit(&[n])?, FreshTensor::<$T>::uninit(&[n])?);
                    $k(g.data::<$T>(), r, &mut o, &mut m, &mut l);
                    (o.into_tensor(), m.into_tensor(), l.into_tensor())
                }};
            }
            match x.dtype() {
                DType::F32 => run!(f32, crate::simd::lse_runs_f32),
                _ => run!(f64, crate::simd::lse_runs_f64),
            }
        }
    };
    if grad {
        let sx = SavedTensor::input(&x);
        let so = SavedTensor::output(&out);
        let shape = x.shape().to_vec();
        let (ms, lss) = (reshape(&ms, &oshape)?, reshape(&lss, &oshape)?);
        attach(&out, "LogsumexpBackward0", &[&x], true, move |ctx, g| {
            let x = sx.get(ctx)?;
            if let Some(gx) = lse_backward_fused(&x, &ms, &lss, g, &d)? {
                return Ok(vec![Some(gx)]);
            }
            // (x - m) - ls has the value of x - y at full precision; adding
            // (y - y.detach()), which is zero, keeps y's history for higher orders
            let y = so.get(ctx)?;
            let m = expand_back(&ms, &shape, &d, keepdim)?;
            let ls = expand_back(&lss, &shape, &d, keepdim)?;
            let dy = expand_back(&sub(&y, &y.detach())?, &shape, &d, keepdim)?;
            let z = sub(&sub(&sub(&x, &m)?, &ls)?, &dy)?;
            let ge = expand_back(g, &shape, &d, keepdim)?;
            Ok(vec![Some(mul(&ge, &exp(&z)?)?)])
        });
    }
    Ok(out)
}

/// `g * exp((x - m) - ls)` in one pass when nothing needs a graph of it
/// (first-order backward) and the reduced dims form one contiguous block of a
/// contiguous `x`; `m` and `ls` are the forward's shift and log-sum.
fn lse_backward_fused(x: &Tensor, m: &Tensor, ls: &Tensor, g: &Tensor, dims: &[usize]) -> Result<Option<Tensor>> {
    if dims.is_empty() || needs_grad(&[x, g]) || g.dtype() != x.dtype() || x.numel() == 0 {
        return Ok(None);
    }
    let (d0, d1) = (dims[0], *dims.last().unwrap());
    if !x.is_contiguous() || d1 - d0 + 1 != dims.len() {
        return Ok(None);
    }
    let outer: usize = x.shape()[..d0].iter().product();
    let r: usize = x.shape()[d0..=d1].iter().product();
    let inner: usize = x.shape()[d1 + 1..].iter().product();
    let gc = g.contiguous();
    if m.numel() != outer * inner || gc.numel() != outer * inner {
        return Ok(None);
    }
    let out = match x.dtype() {
        DType::F32 => FreshTensor::<f32>::build(x.shape(), |o| {
            crate::simd::lse_backward_f32(x.data::<f32>(), m.data::<f32>(), ls.data::<f32>(), gc.data::<f32>(), outer, r, inner, o)
        })?,
        _ => FreshTensor::<f64>::build(x.shape(), |o| {
            crate::simd::lse_backward_f64(x.data::<f64>(), m.data::<f64>(), ls.data::<f64>(), gc.data::<f64>(), outer, r, inner, o)
        })?,
    };
    Ok(Some(out))
}

/// Inclusive cumulative sum along `dim` (`reverse` sums from the end).
pub fn cumsum(x: &Tensor, dim: isize, reverse: bool) -> Result<Tensor> {
    let x = if x.dtype() == DType::Bool { to_dtype(x, DType::I64)? } else { x.clone() };
    let d = norm_dim(dim, x.ndim())?;
    let nd = x.ndim();
    if nd == 0 {
        return super::unary::clone(&x);
    }
    // move `d` last, run the scan on contiguous rows, move it back
    let mut perm: Vec<isize> = (0..nd as isize).filter(|&i| i != d as isize).collect();
    perm.push(d as isize);
    let xp = permute(&x.detach(), &perm)?.contiguous();
    let n = x.shape()[d];
    let out_p = crate::dispatch_num!(x.dtype(), "cumsum", T => {
        let src = xp.data::<T>();
        let mut out_p = FreshTensor::<T>::uninit(xp.shape())?;
        let dst = out_p.as_mut_slice();
        if n > 0 {
            for (o, r) in dst.chunks_exact_mut(n).zip(src.chunks_exact(n)) {
                let mut acc = T::default();
                if reverse {
                    for i in (0..n).rev() { acc = acc + r[i]; o[i] = acc; }
                } else {
                    for i in 0..n { acc = acc + r[i]; o[i] = acc; }
                }
            }
        }
        out_p.into_tensor()
    });
    let mut inv = vec![0isize; nd];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as isize;
    }
    let out = permute(&out_p, &inv)?.contiguous();
    if needs_grad(&[&x]) {
        attach(&out, "CumsumBackward0", &[&x], false, move |_, g| Ok(vec![Some(cumsum(g, d as isize, !reverse)?)]));
    }
    Ok(out)
}

/// Count of elements (for mean-like reductions on shapes).
pub fn reduced_count(shape: &[usize], dims: &[usize]) -> usize {
    if dims.is_empty() {
        numel_of(shape)
    } else {
        dims.iter().map(|&d| shape[d]).product()
    }
}

/// `all` / `any` (bool results).
pub fn all(x: &Tensor, dims: Option<&[isize]>, keepdim: bool) -> Result<Tensor> {
    let d = norm_dims(dims, x.ndim())?;
    let b = super::as_dtype(x, DType::Bool)?;
    Ok(reduce_with::<bool, bool>(&b, &d, keepdim, |r| r.iter().all(|&v| v)))
}
pub fn any(x: &Tensor, dims: Option<&[isize]>, keepdim: bool) -> Result<Tensor> {
    let d = norm_dims(dims, x.ndim())?;
    let b = super::as_dtype(x, DType::Bool)?;
    Ok(reduce_with::<bool, bool>(&b, &d, keepdim, |r| r.iter().any(|&v| v)))
}
