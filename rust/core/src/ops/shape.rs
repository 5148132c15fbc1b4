//! Shape and view ops: reshape/view, permute/transpose, expand, squeeze/
//! unsqueeze, slicing, select, flatten/unflatten, cat/stack/split/chunk,
//! flip, repeat, tril/triu. Views share storage with their input.
use super::binary::mul;
use super::reduce::sum_to;
use crate::autograd::{attach, needs_grad};
use crate::error::Result;
use crate::tensor::{contiguous_strides, norm_dim, numel_of, Tensor};
use crate::{index_err, shape_err, value_err};

/// An alias of `x` with new geometry; remembers its base for in-place checks.
fn view_of(x: &Tensor, shape: &[usize], strides: &[isize], offset: usize) -> Result<Tensor> {
    let v = x.alias(shape, strides, offset)?;
    let base = x.view_base().unwrap_or_else(|| x.clone());
    v.0.meta.lock().view_base = Some(base);
    Ok(v)
}

/// Resolve one `-1` in a requested shape.
pub fn infer_shape(req: &[isize], numel: usize) -> Result<Vec<usize>> {
    let mut neg = None;
    let mut known = 1usize;
    for (i, &d) in req.iter().enumerate() {
        if d == -1 {
            if neg.is_some() {
                return Err(value_err!("only one dimension can be inferred"));
            }
            neg = Some(i);
        } else if d < 0 {
            return Err(value_err!("invalid shape dimension {d}"));
        } else {
            known =
                known.checked_mul(d as usize).ok_or_else(|| shape_err!("shape '{:?}' has more elements than a tensor can hold", req))?;
        }
    }
    let mut out: Vec<usize> = req.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = neg {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(shape_err!("shape '{:?}' is invalid for input of size {numel}", req));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(shape_err!("shape '{:?}' is invalid for input of size {numel}", req));
    }
    Ok(out)
}

/// Strides that let `newshape` view the memory of (oldshape, oldstride), if any.
fn view_strides(oldshape: &[usize], oldstride: &[isize], newshape: &[usize]) -> Option<Vec<isize>> {
    if numel_of(oldshape) == 0 || oldshape.is_empty() {
        return Some(contiguous_strides(newshape).to_vec());
    }
    let mut newstride = vec![0isize; newshape.len()];
    let mut view_d = newshape.len() as isize - 1;
    let mut chunk_base = *oldstride.last().unwrap();
    let mut tensor_numel = 1usize;
    let mut view_numel = 1usize;
    for td in (0..oldshape.len()).rev() {
        tensor_numel *= oldshape[td];
        if td == 0 || (oldshape[td - 1] != 1 && oldstride[td - 1] != tensor_numel as isize * chunk_base) {
            while view_d >= 0 && (view_numel < tensor_numel || newshape[view_d as usize] == 1) {
                newstride[view_d as usize] = view_numel as isize * chunk_base;
                view_numel *= newshape[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if td > 0 {
                chunk_base = oldstride[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    if view_d != -1 {
        return None;
    }
    Some(newstride)
}

/// `reshape`: a view when the memory allows, else a copy.
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if crate::tensor::checked_numel(shape)? != x.numel() {
        return Err(shape_err!("shape '{:?}' is invalid for input of size {}", shape, x.numel()));
    }
    if x.shape() == shape {
        return Ok(x.clone());
    }
    let out = match view_strides(x.shape(), x.strides(), shape) {
        Some(st) => view_of(x, shape, &st, x.offset())?,
        None => {
            let c = x.contiguous();
            c.alias(shape, &contiguous_strides(shape), c.offset())?
        }
    };
    if needs_grad(&[x]) {
        let s = x.shape().to_vec();
        attach(&out, "ViewBackward0", &[x], false, move |_, g| Ok(vec![Some(reshape(g, &s)?)]));
    }
    Ok(out)
}

pub fn reshape_i(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    let s = infer_shape(shape, x.numel())?;
    reshape(x, &s)
}

/// `view`: like reshape but never copies.
pub fn view(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    let s = infer_shape(shape, x.numel())?;
    if view_strides(x.shape(), x.strides(), &s).is_none() {
        return Err(crate::autograd_err!(
            "view size is not compatible with input tensor's size and stride (at least one dimension spans across two contiguous subspaces). Use .reshape(...) instead. (input shape {:?}, requested {:?})",
            x.shape(),
            s
        ));
    }
    reshape(x, &s)
}

pub fn permute(x: &Tensor, dims: &[isize]) -> Result<Tensor> {
    let nd = x.ndim();
    if dims.len() != nd {
        return Err(shape_err!(
            "permute(sparse_coo): number of dimensions in the tensor input does not match the length of the desired ordering of dimensions i.e. input.dim() = {nd} is not equal to len(dims) = {}",
            dims.len()
        ));
    }
    let mut p = Vec::with_capacity(nd);
    let mut seen = vec![false; nd];
    for &d in dims {
        let n = norm_dim(d, nd)?;
        if seen[n] {
            return Err(value_err!("permute(): duplicate dims are not allowed."));
        }
        seen[n] = true;
        p.push(n);
    }
    if p.iter().enumerate().all(|(i, &v)| i == v) {
        return Ok(x.clone());
    }
    let shape: Vec<usize> = p.iter().map(|&i| x.shape()[i]).collect();
    let strides: Vec<isize> = p.iter().map(|&i| x.strides()[i]).collect();
    let out = view_of(x, &shape, &strides, x.offset())?;
    if needs_grad(&[x]) {
        let mut inv = vec![0isize; nd];
        for (i, &v) in p.iter().enumerate() {
            inv[v] = i as isize;
        }
        attach(&out, "PermuteBackward0", &[x], false, move |_, g| Ok(vec![Some(permute(g, &inv)?)]));
    }
    Ok(out)
}

pub fn transpose(x: &Tensor, d0: isize, d1: isize) -> Result<Tensor> {
    let nd = x.ndim();
    if nd == 0 {
        return Ok(x.clone());
    }
    let (a, b) = (norm_dim(d0, nd)?, norm_dim(d1, nd)?);
    let mut p: Vec<isize> = (0..nd as isize).collect();
    p.swap(a, b);
    permute(x, &p)
}

/// `.T` (reverse all dims) and `.mT` (swap the last two).
pub fn t_all(x: &Tensor) -> Result<Tensor> {
    let p: Vec<isize> = (0..x.ndim() as isize).rev().collect();
    permute(x, &p)
}
pub fn mt(x: &Tensor) -> Result<Tensor> {
    if x.ndim() < 2 {
        return Err(shape_err!("tensor.mT is only supported on matrices or batches of matrices. Got {}-D tensor.", x.ndim()));
    }
    transpose(x, -2, -1)
}

/// `expand` (broadcast view; `-1` keeps a size).
pub fn expand_i(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    if shape.len() < x.ndim() {
        return Err(shape_err!(
            "expand: the number of sizes provided ({}) must be greater or equal to the number of dimensions in the tensor ({})",
            shape.len(),
            x.ndim()
        ));
    }
    let lead = shape.len() - x.ndim();
    let mut s = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if d == -1 {
            if i < lead {
                return Err(shape_err!("expand: -1 is not allowed in a leading, non-existing dimension {i}"));
            }
            s.push(x.shape()[i - lead]);
        } else if d < 0 {
            return Err(shape_err!("expand: invalid size {d}"));
        } else {
            s.push(d as usize);
        }
    }
    expand(x, &s)
}

pub fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if x.shape() == shape {
        return Ok(x.clone());
    }
    let st = crate::kernels::broadcast_strides(x, shape).map_err(|_| {
        shape_err!(
            "The expanded size of the tensor must match the existing size at non-singleton dimensions: cannot expand shape {:?} to {:?}",
            x.shape(),
            shape
        )
    })?;
    let out = view_of(x, shape, &st, x.offset())?;
    if needs_grad(&[x]) {
        let s = x.shape().to_vec();
        attach(&out, "ExpandBackward0", &[x], false, move |_, g| Ok(vec![Some(sum_to(g, &s)?)]));
    }
    Ok(out)
}

pub fn unsqueeze(x: &Tensor, d: isize) -> Result<Tensor> {
    let nd = x.ndim() + 1;
    let d = norm_dim(d, nd)?;
    unsqueeze_dims(x, &[d])
}

/// Insert size-1 dims so that they sit at positions `dims` (sorted) of the result.
pub fn unsqueeze_dims(x: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let mut shape = x.shape().to_vec();
    for &d in dims {
        if d > shape.len() {
            return Err(index_err!("unsqueeze: dimension {d} out of range for {} dims", shape.len() + 1));
        }
        shape.insert(d, 1);
    }
    reshape(x, &shape)
}

pub fn squeeze(x: &Tensor, dims: Option<&[isize]>) -> Result<Tensor> {
    let ds: Vec<usize> = match dims {
        None => (0..x.ndim()).filter(|&i| x.shape()[i] == 1).collect(),
        Some(ds) => {
            let mut v = Vec::new();
            for &d in ds {
                let n = norm_dim(d, x.ndim())?;
                if x.ndim() > 0 && x.shape()[n] == 1 {
                    v.push(n);
                }
            }
            v
        }
    };
    squeeze_dims(x, &ds)
}

/// Remove the given size-1 dims.
pub fn squeeze_dims(x: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let shape: Vec<usize> = x.shape().iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &n)| n).collect();
    reshape(x, &shape)
}

pub fn flatten(x: &Tensor, start: isize, end: isize) -> Result<Tensor> {
    if x.ndim() == 0 {
        return reshape(x, &[1]);
    }
    let (s, e) = (norm_dim(start, x.ndim())?, norm_dim(end, x.ndim())?);
    if s > e {
        return Err(value_err!("flatten() has invalid args: start_dim cannot come after end_dim"));
    }
    let mut shape: Vec<usize> = x.shape()[..s].to_vec();
    shape.push(x.shape()[s..=e].iter().product());
    shape.extend_from_slice(&x.shape()[e + 1..]);
    reshape(x, &shape)
}

pub fn unflatten(x: &Tensor, dim: isize, sizes: &[isize]) -> Result<Tensor> {
    if x.ndim() == 0 {
        return Err(index_err!("unflatten() expects at least a 1-dimensional tensor"));
    }
    let d = norm_dim(dim, x.ndim())?;
    let inner = infer_shape(sizes, x.shape()[d]).map_err(|_| {
        shape_err!(
            "unflatten: Provided sizes {:?} don't multiply up to the size of dim {} ({}) in the input tensor",
            sizes,
            dim,
            x.shape()[d]
        )
    })?;
    let mut shape: Vec<usize> = x.shape()[..d].to_vec();
    shape.extend_from_slice(&inner);
    shape.extend_from_slice(&x.shape()[d + 1..]);
    reshape(x, &shape)
}

/// Python-style slice bounds → (start, len) for a positive step.
pub fn slice_bounds(n: usize, start: Option<isize>, stop: Option<isize>, step: isize) -> Result<(usize, usize)> {
    if step <= 0 {
        return Err(value_err!("slice step must be positive (got {step}); use flip() for reversal"));
    }
    let n_i = n as isize;
    let clampi = |v: isize| -> isize {
        let v = if v < 0 { v + n_i } else { v };
        v.clamp(0, n_i)
    };
    let s = start.map(clampi).unwrap_or(0);
    let e = stop.map(clampi).unwrap_or(n_i);
    let len = if e > s { ((e - s) + step - 1) / step } else { 0 };
    Ok((s as usize, len as usize))
}

/// `x[..., start:stop:step, ...]` on dim `dim`: a view.
pub fn slice(x: &Tensor, dim: usize, start: usize, len: usize, step: usize) -> Result<Tensor> {
    if dim >= x.ndim() {
        return Err(index_err!("slice: dimension {dim} out of range for a tensor of {} dims", x.ndim()));
    }
    let n = x.shape()[dim];
    let last = len.checked_sub(1).map(|l| l.checked_mul(step).and_then(|v| v.checked_add(start)));
    if step == 0 || matches!(last, Some(None)) || matches!(last, Some(Some(e)) if e >= n) || (len == 0 && start > n) {
        return Err(index_err!("slice: start {start}, length {len} and step {step} do not fit in dimension {dim} of size {n}"));
    }
    let mut shape = x.shape().to_vec();
    let mut strides = x.strides().to_vec();
    // in range of the (valid) view, so these products cannot overflow
    let offset = if len > 0 { (x.offset() as isize + start as isize * strides[dim]) as usize } else { x.offset() };
    shape[dim] = len;
    strides[dim] = strides[dim].checked_mul(step as isize).ok_or_else(|| index_err!("slice: step {step} is too large"))?;
    let out = view_of(x, &shape, &strides, offset)?;
    if needs_grad(&[x]) {
        let s = x.shape().to_vec();
        crate::autograd::attach_slice(&out, x, (dim, start, step), move |_, g| Ok(vec![Some(slice_backward(g, &s, dim, start, step)?)]));
    }
    Ok(out)
}

/// Zeros of `shape` with `g` written at the slice; its gradient is the slice again.
pub fn slice_backward(g: &Tensor, shape: &[usize], dim: usize, start: usize, step: usize) -> Result<Tensor> {
    let out = Tensor::zeros(shape, g.dtype())?;
    let len = g.shape()[dim];
    {
        let mut st = out.strides().to_vec();
        let off = if len > 0 { start as isize * st[dim] } else { 0 } as usize;
        st[dim] *= step as isize;
        let region = out.alias(g.shape(), &st, off)?;
        crate::kernels::copy_into(&region, &g.detach())?;
    }
    if needs_grad(&[g]) {
        attach(&out, "SliceBackwardBackward0", &[g], false, move |_, gg| Ok(vec![Some(slice(gg, dim, start, len, step)?)]));
    }
    Ok(out)
}

/// `x.select(dim, i)` (integer indexing): a view without `dim`.
pub fn select(x: &Tensor, dim: isize, i: isize) -> Result<Tensor> {
    if x.ndim() == 0 {
        return Err(index_err!("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` in C++ to convert a 0-dim tensor to a number"));
    }
    let d = norm_dim(dim, x.ndim())?;
    let n = x.shape()[d] as isize;
    if i < -n || i >= n {
        return Err(index_err!("index {i} is out of bounds for dimension {d} with size {n}"));
    }
    let i = if i < 0 { i + n } else { i } as usize;
    let s = slice(x, d, i, 1, 1)?;
    squeeze_dims(&s, &[d])
}

pub fn narrow(x: &Tensor, dim: isize, start: isize, length: usize) -> Result<Tensor> {
    if x.ndim() == 0 {
        return Err(index_err!("narrow() expects at least a 1-dimensional tensor"));
    }
    let d = norm_dim(dim, x.ndim())?;
    let n = x.shape()[d] as isize;
    let s = if start < 0 { start + n } else { start };
    if s < 0 || (s as usize).checked_add(length).is_none_or(|e| e > n as usize) {
        return Err(index_err!("start ({start}) + length ({length}) exceeds dimension size ({n})."));
    }
    slice(x, d, s as usize, length, 1)
}

/// Concatenate along `dim` (dtypes promoted as torch does).
pub fn cat(ts: &[Tensor], dim: isize) -> Result<Tensor> {
    if ts.is_empty() {
        return Err(value_err!("torch.cat(): expected a non-empty list of Tensors"));
    }
    // torch skips legacy empty 1-D tensors of shape [0]
    let parts: Vec<&Tensor> = ts.iter().filter(|t| !(t.ndim() == 1 && t.numel() == 0)).collect();
    if parts.is_empty() {
        return Ok(ts[0].clone());
    }
    let refs: Vec<&Tensor> = parts.clone();
    let dt = super::promote(&refs);
    let nd = parts[0].ndim();
    if nd == 0 {
        return Err(shape_err!("zero-dimensional tensor (at position 0) cannot be concatenated"));
    }
    let d = norm_dim(dim, nd)?;
    let mut total = 0usize;
    for (k, t) in parts.iter().enumerate() {
        if t.ndim() != nd {
            return Err(shape_err!(
                "Tensors must have same number of dimensions: got {} and {} (shapes {:?} and {:?})",
                nd,
                t.ndim(),
                parts[0].shape(),
                t.shape()
            ));
        }
        for i in 0..nd {
            if i != d && t.shape()[i] != parts[0].shape()[i] {
                return Err(shape_err!(
                    "Sizes of tensors must match except in dimension {d}. Expected size {} but got size {} for tensor number {k} in the list (shapes {:?} and {:?}).",
                    parts[0].shape()[i],
                    t.shape()[i],
                    parts[0].shape(),
                    t.shape()
                ));
            }
        }
        total += t.shape()[d];
    }
    let mut shape = parts[0].shape().to_vec();
    shape[d] = total;
    let out = Tensor::empty(&shape, dt)?;
    let mut pos = 0;
    let mut sizes = Vec::with_capacity(parts.len());
    for t in &parts {
        let n = t.shape()[d];
        let mut st = out.strides().to_vec();
        let off = pos as isize * st[d];
        st[d] = out.strides()[d];
        let region = out.alias(t.shape(), &st, off as usize)?;
        crate::kernels::copy_into(&region, &t.detach())?;
        pos += n;
        sizes.push(n);
    }
    if needs_grad(&refs) {
        attach(&out, "CatBackward0", &refs, false, move |ctx, g| {
            let mut res = Vec::with_capacity(sizes.len());
            let mut p = 0;
            for (k, &n) in sizes.iter().enumerate() {
                res.push(if ctx.needs(k) { Some(slice(g, d, p, n, 1)?) } else { None });
                p += n;
            }
            Ok(res)
        });
    }
    Ok(out)
}

pub fn stack(ts: &[Tensor], dim: isize) -> Result<Tensor> {
    if ts.is_empty() {
        return Err(value_err!("stack expects a non-empty TensorList"));
    }
    for (k, t) in ts.iter().enumerate() {
        if t.shape() != ts[0].shape() {
            return Err(shape_err!(
                "stack expects each tensor to be equal size, but got {:?} at entry 0 and {:?} at entry {k}",
                ts[0].shape(),
                t.shape()
            ));
        }
    }
    let d = norm_dim(dim, ts[0].ndim() + 1)?;
    let us: Vec<Tensor> = ts.iter().map(|t| unsqueeze_dims(t, &[d])).collect::<Result<_>>()?;
    cat(&us, d as isize)
}

/// `split` into pieces of `size` (the last may be smaller).
pub fn split(x: &Tensor, size: usize, dim: isize) -> Result<Vec<Tensor>> {
    if x.ndim() == 0 {
        return Err(index_err!("split() expects at least a 1-dimensional tensor"));
    }
    let d = norm_dim(dim, x.ndim())?;
    let n = x.shape()[d];
    if size == 0 {
        if n == 0 {
            return Ok(vec![x.clone()]);
        }
        return Err(value_err!("split_size can only be 0 if dimension size is 0, but got dimension size of {n}"));
    }
    let mut out = Vec::new();
    let mut p = 0;
    while p < n {
        let len = size.min(n - p);
        out.push(slice(x, d, p, len, 1)?);
        p += len;
    }
    if out.is_empty() {
        out.push(x.clone());
    }
    Ok(out)
}

/// `split` with explicit section sizes.
pub fn split_sizes(x: &Tensor, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
    if x.ndim() == 0 {
        return Err(index_err!("split() expects at least a 1-dimensional tensor"));
    }
    let d = norm_dim(dim, x.ndim())?;
    let n = x.shape()[d];
    if sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b)) != Some(n) {
        return Err(value_err!(
            "split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at dimension {d}), but got split_sizes={:?}",
            sizes
        ));
    }
    let mut out = Vec::new();
    let mut p = 0;
    for &s in sizes {
        out.push(slice(x, d, p, s, 1)?);
        p += s;
    }
    Ok(out)
}

pub fn chunk(x: &Tensor, chunks: usize, dim: isize) -> Result<Vec<Tensor>> {
    if x.ndim() == 0 {
        return Err(index_err!("chunk() expects at least a 1-dimensional tensor"));
    }
    if chunks == 0 {
        return Err(value_err!("chunk expects `chunks` to be greater than 0, got: 0"));
    }
    let d = norm_dim(dim, x.ndim())?;
    let n = x.shape()[d];
    let size = n.div_ceil(chunks).max(if n == 0 { 0 } else { 1 });
    split(x, size, d as isize)
}

/// Reverse the order along `dims` (a copy, as in torch).
pub fn flip(x: &Tensor, dims: &[isize]) -> Result<Tensor> {
    let ds = super::reduce::norm_dims(Some(dims), x.ndim())?;
    let mut strides = x.strides().to_vec();
    let mut off = x.offset() as isize;
    for &d in &ds {
        let n = x.shape()[d];
        if x.numel() > 0 {
            off += (n as isize - 1) * strides[d];
        }
        strides[d] = -strides[d];
    }
    let out = crate::kernels::copy_contiguous(&x.alias(x.shape(), &strides, off as usize)?);
    if needs_grad(&[x]) {
        let dv: Vec<isize> = ds.iter().map(|&d| d as isize).collect();
        attach(&out, "FlipBackward0", &[x], false, move |_, g| Ok(vec![Some(flip(g, &dv)?)]));
    }
    Ok(out)
}

/// `repeat` (tile): out[i, j] = x[i % s0, j % s1].
pub fn repeat(x: &Tensor, reps: &[usize]) -> Result<Tensor> {
    if reps.len() < x.ndim() {
        return Err(shape_err!(
            "Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor ({} < {})",
            reps.len(),
            x.ndim()
        ));
    }
    let lead = reps.len() - x.ndim();
    let mut src_shape = vec![1usize; lead];
    src_shape.extend_from_slice(x.shape());
    let mut inter = Vec::new();
    let mut expanded = Vec::new();
    let mut fin = Vec::new();
    for (i, &r) in reps.iter().enumerate() {
        inter.push(1);
        inter.push(src_shape[i]);
        expanded.push(r);
        expanded.push(src_shape[i]);
        fin.push(
            r.checked_mul(src_shape[i]).ok_or_else(|| shape_err!("repeat: {r} x {} elements along dim {i} is too many", src_shape[i]))?,
        );
    }
    let y = reshape(x, &inter)?;
    let y = expand(&y, &expanded)?;
    let y = super::unary::clone(&y)?;
    reshape(&y, &fin)
}

/// Lower (`upper = false`) or upper triangle of the last two dims, offset by `k`.
pub fn tri(x: &Tensor, k: isize, upper: bool) -> Result<Tensor> {
    if x.ndim() < 2 {
        return Err(shape_err!("{}: input tensor must have at least 2 dimensions", if upper { "triu" } else { "tril" }));
    }
    let (r, c) = (x.shape()[x.ndim() - 2], x.shape()[x.ndim() - 1]);
    let rc = r.checked_mul(c).ok_or_else(|| shape_err!("tril/triu: a {r} x {c} matrix is too large"))?;
    let mut m = Vec::new();
    m.try_reserve_exact(rc).map_err(|_| crate::memory_err!("out of memory: tril/triu needs a {r} x {c} mask"))?;
    m.resize(rc, false);
    for i in 0..r {
        for j in 0..c {
            let d = j as isize - i as isize;
            m[i * c + j] = if upper { d >= k } else { d <= k };
        }
    }
    let mask = Tensor::from_vec(m, &[r, c])?;
    let zero = Tensor::wrapped_scalar(0.0, x.dtype());
    let out = super::binary::where_(&mask, &x.detach(), &zero)?;
    if needs_grad(&[x]) {
        attach(&out, if upper { "TriuBackward0" } else { "TrilBackward0" }, &[x], false, move |_, g| Ok(vec![Some(tri(g, k, upper)?)]));
    }
    let _ = mul;
    Ok(out)
}

/// Move dims (`movedim`).
pub fn movedim(x: &Tensor, src: &[isize], dst: &[isize]) -> Result<Tensor> {
    let nd = x.ndim();
    if src.len() != dst.len() {
        return Err(value_err!("movedim: Invalid source or destination dims: source ({:?} dims) should contain the same number of dims as destination ({:?} dims)", src, dst));
    }
    let s: Vec<usize> = src.iter().map(|&d| norm_dim(d, nd)).collect::<Result<_>>()?;
    let t: Vec<usize> = dst.iter().map(|&d| norm_dim(d, nd)).collect::<Result<_>>()?;
    if nd == 0 {
        // a 0-dim tensor has the one (scalar) dim 0 / -1, which stays where it is
        return Ok(x.clone());
    }
    for (v, what, given) in [(&s, "source", src), (&t, "destination", dst)] {
        if v.iter().enumerate().any(|(i, d)| v[..i].contains(d)) {
            return Err(value_err!("movedim: repeated dim in `{what}` ({:?})", given));
        }
    }
    let mut perm = vec![usize::MAX; nd];
    for (a, b) in s.iter().zip(&t) {
        perm[*b] = *a;
    }
    let mut rest = (0..nd).filter(|d| !s.contains(d));
    for p in perm.iter_mut() {
        if *p == usize::MAX {
            // as many free slots as dims not in `src` (both lists are repeat-free)
            *p = rest.next().ok_or_else(|| value_err!("movedim: invalid dims {:?} -> {:?}", src, dst))?;
        }
    }
    let p: Vec<isize> = perm.iter().map(|&v| v as isize).collect();
    permute(x, &p)
}

/// Differentiable `contiguous()`.
pub fn contiguous(x: &Tensor) -> Result<Tensor> {
    if x.is_contiguous() {
        Ok(x.clone())
    } else {
        super::unary::clone(x)
    }
}
