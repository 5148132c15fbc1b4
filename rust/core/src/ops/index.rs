//! Indexing: gather/scatter_add, index_select/index_add, masked_fill,
//! nonzero, and NumPy-style `x[items]` / `x[items] = v` (ints, slices with
//! steps, None, Ellipsis, bool masks, integer tensors).
use super::binary::where_;
use super::reduce::sum_to;
use super::shape::{expand, permute, reshape, select, slice, slice_bounds, unsqueeze};
use crate::autograd::{attach, needs_grad};
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::{broadcast_shapes, strided_rows};
use crate::tensor::{norm_dim, FreshTensor, Tensor};
use crate::{dispatch_all, dtype_err, index_err, shape_err};

fn check_index_tensor(idx: &Tensor, what: &str) -> Result<()> {
    if idx.dtype() != DType::I64 {
        return Err(dtype_err!("{what}(): Expected dtype int64 for index, got {}", idx.dtype().name()));
    }
    Ok(())
}

fn check_bounds(idx: &Tensor, n: usize, dim: usize) -> Result<()> {
    for v in idx.try_to_vec::<i64>()? {
        if v < 0 || v as usize >= n {
            return Err(index_err!("index {v} is out of bounds for dimension {dim} with size {n}"));
        }
    }
    Ok(())
}

/// Strides of `x` with `dim` zeroed, checked to cover `shape` elsewhere.
fn strides_except(x: &Tensor, dim: usize, shape: &[usize], what: &str) -> Result<Vec<isize>> {
    if x.ndim() != shape.len() {
        return Err(shape_err!(
            "{what}(): Index tensor must have the same number of dimensions as input tensor (index shape {:?}, input shape {:?})",
            shape,
            x.shape()
        ));
    }
    let mut st = x.strides().to_vec();
    for d in 0..shape.len() {
        if d != dim && shape[d] > x.shape()[d] {
            return Err(shape_err!(
                "{what}(): Size does not match at dimension {d} expected index {:?} to be smaller than self {:?} apart from dimension {dim}",
                shape,
                x.shape()
            ));
        }
    }
    st[dim] = 0;
    Ok(st)
}

/// out[..i..] = x[..idx[..i..]..] along `dim`.
pub fn gather(x: &Tensor, dim: isize, idx: &Tensor) -> Result<Tensor> {
    check_index_tensor(idx, "gather")?;
    let d = norm_dim(dim, x.ndim())?;
    if x.ndim() == 0 {
        return Ok(x.clone());
    }
    check_bounds(idx, x.shape()[d], d)?;
    let xs = strides_except(x, d, idx.shape(), "gather")?;
    let sd = x.strides()[d];
    let out = dispatch_all!(x.dtype(), T => {
        let mut out = FreshTensor::<T>::uninit(idx.shape())?;
        let o = out.as_mut_slice();
        let (px, pi) = (x.data_ptr::<T>(), idx.data_ptr::<i64>());
        let mut k = 0;
        strided_rows(idx.shape(), [idx.strides(), &xs], [0, 0], |off, n, st| {
            for j in 0..n as isize {
                // SAFETY: strided_rows offsets stay inside idx and x;
                // check_bounds verified every index is within dim d of x.
                unsafe {
                    let iv = *pi.offset(off[0] + j * st[0]) as isize;
                    o[k] = *px.offset(off[1] + j * st[1] + iv * sd);
                }
                k += 1;
            }
        });
        out.into_tensor()
    });
    if needs_grad(&[x]) {
        let shape = x.shape().to_vec();
        let idx = idx.clone();
        let dt = x.dtype();
        attach(&out, "GatherBackward0", &[x], false, move |_, g| {
            Ok(vec![Some(scatter_add(&Tensor::zeros(&shape, dt)?, d as isize, &idx, g)?)])
        });
    }
    Ok(out)
}

/// out = x; out[..idx[..i..]..] += src[..i..] along `dim`.
pub fn scatter_add(x: &Tensor, dim: isize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
    scatter_impl(x, dim, idx, src, true)
}

/// out = x; out[..idx[..i..]..] = src[..i..] along `dim`.
pub fn scatter(x: &Tensor, dim: isize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
    scatter_impl(x, dim, idx, src, false)
}

fn scatter_impl(x: &Tensor, dim: isize, idx: &Tensor, src: &Tensor, accumulate: bool) -> Result<Tensor> {
    let what = if accumulate { "scatter_add" } else { "scatter" };
    check_index_tensor(idx, what)?;
    let d = norm_dim(dim, x.ndim())?;
    if src.dtype() != x.dtype() {
        return Err(dtype_err!("{what}(): Expected self.dtype to be equal to src.dtype ({} vs {})", x.dtype().name(), src.dtype().name()));
    }
    if idx.ndim() != src.ndim() || idx.shape().iter().zip(src.shape()).any(|(a, b)| a > b) {
        return Err(shape_err!("{what}(): index {:?} must not be larger than src {:?} in any dimension", idx.shape(), src.shape()));
    }
    let n = if x.ndim() == 0 { 1 } else { x.shape()[d] };
    check_bounds(idx, n, d)?;
    let out = crate::kernels::copy_contiguous(x);
    let os = strides_except(&out, d, idx.shape(), what)?;
    let sd = if out.ndim() == 0 { 0 } else { out.strides()[d] };
    dispatch_all!(x.dtype(), T => {
        let (po, pi, ps) = (out.data_ptr::<T>(), idx.data_ptr::<i64>(), src.data_ptr::<T>());
        strided_rows(idx.shape(), [idx.strides(), &os, src.strides()], [0, 0, 0], |off, n, st| {
            for j in 0..n as isize {
                // SAFETY: strided_rows offsets stay inside idx, out and src;
                // check_bounds verified every index is within dim d of out,
                // a fresh copy of x that nothing else references.
                unsafe {
                    let iv = *pi.offset(off[0] + j * st[0]) as isize;
                    let p = po.offset(off[1] + j * st[1] + iv * sd);
                    let v = *ps.offset(off[2] + j * st[2]);
                    *p = if accumulate { add_elem(*p, v) } else { v };
                }
            }
        });
    });
    if needs_grad(&[x, src]) {
        let idx = idx.clone();
        let sshape = src.shape().to_vec();
        attach(&out, if accumulate { "ScatterAddBackward0" } else { "ScatterBackward0" }, &[x, src], false, move |ctx, g| {
            let gx = if ctx.needs(0) {
                if accumulate {
                    Some(g.clone())
                } else {
                    let z = Tensor::zeros(idx.shape(), g.dtype())?;
                    Some(scatter(g, d as isize, &idx, &z)?)
                }
            } else {
                None
            };
            let gs = if ctx.needs(1) {
                let gg = gather(g, d as isize, &idx)?;
                Some(if gg.shape() == &sshape[..] { gg } else { pad_to(&gg, &sshape)? })
            } else {
                None
            };
            Ok(vec![gx, gs])
        });
    }
    Ok(out)
}

#[inline(always)]
fn add_elem<T: crate::elem::Elem>(a: T, b: T) -> T {
    match T::DTYPE {
        DType::Bool => T::from_bool(a.to_bool() | b.to_bool()),
        DType::I64 => T::from_i64(a.to_i64().wrapping_add(b.to_i64())),
        _ => T::from_f64(a.to_f64() + b.to_f64()),
    }
}

/// Zero-pad `g` at the end of each dim up to `shape` (src larger than index).
fn pad_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let mut pads = Vec::new();
    for i in (0..shape.len()).rev() {
        pads.push(0);
        pads.push((shape[i] - g.shape()[i]) as isize);
    }
    super::nn::pad_constant(g, &pads, 0.0)
}

/// Rows of `x` along `dim` picked by the 1-D index.
pub fn index_select(x: &Tensor, dim: isize, idx: &Tensor) -> Result<Tensor> {
    check_index_tensor(idx, "index_select")?;
    if idx.ndim() > 1 {
        return Err(index_err!("index_select(): Index is supposed to be a vector, got shape {:?}", idx.shape()));
    }
    let d = norm_dim(dim, x.ndim())?;
    if x.ndim() == 0 {
        check_bounds(idx, 1, 0)?;
        return Ok(x.clone());
    }
    check_bounds(idx, x.shape()[d], d)?;
    let iv = idx.try_to_vec::<i64>()?;
    let mut shape = x.shape().to_vec();
    shape[d] = iv.len();
    let outer: usize = x.shape()[..d].iter().product();
    let inner: usize = x.shape()[d + 1..].iter().product();
    let xc = x.contiguous();
    let n = x.shape()[d];
    let out = dispatch_all!(x.dtype(), T => {
        let src = xc.data::<T>();
        let mut out = FreshTensor::<T>::uninit(&shape)?;
        let dst = out.as_mut_slice();
        for o in 0..outer {
            for (k, &i) in iv.iter().enumerate() {
                let s = (o * n + i as usize) * inner;
                let t = (o * iv.len() + k) * inner;
                dst[t..t + inner].copy_from_slice(&src[s..s + inner]);
            }
        }
        out.into_tensor()
    });
    if needs_grad(&[x]) {
        let shape = x.shape().to_vec();
        let idx = idx.clone();
        let dt = x.dtype();
        attach(&out, "IndexSelectBackward0", &[x], false, move |_, g| {
            Ok(vec![Some(index_add(&Tensor::zeros(&shape, dt)?, d as isize, &idx, g)?)])
        });
    }
    Ok(out)
}

/// out = x; out.select(dim, idx[i]) += src.select(dim, i).
pub fn index_add(x: &Tensor, dim: isize, idx: &Tensor, src: &Tensor) -> Result<Tensor> {
    check_index_tensor(idx, "index_add")?;
    let d = norm_dim(dim, x.ndim())?;
    let iv = idx.try_to_vec::<i64>()?;
    if x.ndim() == 0 {
        return Err(shape_err!("index_add(): needs a tensor with at least one dimension"));
    }
    let mut want = x.shape().to_vec();
    want[d] = iv.len();
    if src.shape() != &want[..] {
        return Err(shape_err!(
            "index_add_(): Source/destination tensor must have the same shape except at dim {d}: source {:?}, destination {:?}, index length {}",
            src.shape(),
            x.shape(),
            iv.len()
        ));
    }
    if src.dtype() != x.dtype() {
        return Err(dtype_err!(
            "index_add_(): self ({}) and source ({}) must have the same scalar type",
            x.dtype().name(),
            src.dtype().name()
        ));
    }
    check_bounds(idx, x.shape()[d], d)?;
    let sc = src.contiguous();
    let outer: usize = x.shape()[..d].iter().product();
    let inner: usize = x.shape()[d + 1..].iter().product();
    let n = x.shape()[d];
    let out = dispatch_all!(x.dtype(), T => {
        let s = sc.data::<T>();
        let mut out = FreshTensor::<T>::copy_of(x)?;
        let o = out.as_mut_slice();
        for a in 0..outer {
            for (k, &i) in iv.iter().enumerate() {
                let t = (a * n + i as usize) * inner;
                let f = (a * iv.len() + k) * inner;
                for j in 0..inner {
                    o[t + j] = add_elem(o[t + j], s[f + j]);
                }
            }
        }
        out.into_tensor()
    });
    if needs_grad(&[x, src]) {
        let idx = idx.clone();
        attach(&out, "IndexAddBackward0", &[x, src], false, move |ctx, g| {
            Ok(vec![
                if ctx.needs(0) { Some(g.clone()) } else { None },
                if ctx.needs(1) { Some(index_select(g, d as isize, &idx)?) } else { None },
            ])
        });
    }
    Ok(out)
}

/// `masked_fill(x, mask, value)`: value where mask, x elsewhere.
pub fn masked_fill(x: &Tensor, mask: &Tensor, value: &Tensor) -> Result<Tensor> {
    if mask.dtype() != DType::Bool {
        return Err(dtype_err!("masked_fill_ only supports boolean masks, but got mask with dtype {}", mask.dtype().name()));
    }
    if value.ndim() != 0 {
        return Err(shape_err!(
            "masked_fill_ only supports a 0-dimensional value tensor, but got tensor with {} dimension(s).",
            value.ndim()
        ));
    }
    let shape = broadcast_shapes(x.shape(), mask.shape())?;
    if &shape[..] != x.shape() {
        return Err(shape_err!("masked_fill: mask of shape {:?} cannot be broadcast to the input's shape {:?}", mask.shape(), x.shape()));
    }
    let v = super::as_dtype(value, x.dtype())?;
    where_(mask, &v, x)
}

/// Indices of the non-zero elements, shape [n, ndim].
pub fn nonzero(x: &Tensor) -> Result<Tensor> {
    let b = crate::kernels::cast(x, DType::Bool);
    let flags = b.data::<bool>();
    let nd = x.ndim();
    let mut out = Vec::new();
    let shape = x.shape();
    let mut count = 0;
    for (lin, &f) in flags.iter().enumerate() {
        if f {
            let mut rem = lin;
            let start = out.len();
            out.resize(start + nd, 0i64);
            for d in (0..nd).rev() {
                out[start + d] = (rem % shape[d]) as i64;
                rem /= shape[d];
            }
            count += 1;
        }
    }
    Tensor::from_vec(out, &[count, nd])
}

/// One item of a NumPy-style index expression.
#[derive(Clone, Debug)]
pub enum IndexItem {
    Int(isize),
    Slice(Option<isize>, Option<isize>, isize),
    NewAxis,
    /// A new axis of length 0 (from indexing with a scalar `False`).
    EmptyAxis,
    Ellipsis,
    Tensor(Tensor),
}

/// `x[items]`.
pub fn getitem(x: &Tensor, items: &[IndexItem]) -> Result<Tensor> {
    // bool masks become integer index tensors, one per masked dim
    let consumed_src: usize = items
        .iter()
        .map(|i| match i {
            IndexItem::Int(_) | IndexItem::Slice(..) => 1,
            IndexItem::Tensor(t) if t.dtype() == DType::Bool => t.ndim(),
            IndexItem::Tensor(_) => 1,
            _ => 0,
        })
        .sum();
    let mut its: Vec<IndexItem> = Vec::with_capacity(items.len());
    let mut src_dim = 0usize;
    for it in items {
        match it {
            IndexItem::Tensor(t) if t.dtype() == DType::Bool => {
                if t.ndim() == 0 {
                    // x[True] adds a dim of size 1, x[False] one of size 0
                    its.push(if t.to_vec::<bool>()[0] { IndexItem::NewAxis } else { IndexItem::EmptyAxis });
                    continue;
                }
                for k in 0..t.ndim() {
                    let have = x.shape().get(src_dim + k).copied();
                    if have != Some(t.shape()[k]) {
                        return Err(index_err!(
                            "The shape of the mask {:?} at index {k} does not match the shape of the indexed tensor {:?} at index {}",
                            t.shape(),
                            x.shape(),
                            src_dim + k
                        ));
                    }
                }
                src_dim += t.ndim();
                let nz = nonzero(t)?;
                for k in 0..t.ndim() {
                    its.push(IndexItem::Tensor(select(&nz, 1, k as isize)?.contiguous()));
                }
            }
            IndexItem::Tensor(t) if t.dtype() != DType::I64 => {
                return Err(index_err!("tensors used as indices must be long, int, byte or bool tensors (got {})", t.dtype().name()))
            }
            IndexItem::Ellipsis => {
                src_dim += x.ndim().saturating_sub(consumed_src);
                its.push(IndexItem::Ellipsis)
            }
            other => {
                if matches!(other, IndexItem::Int(_) | IndexItem::Slice(..) | IndexItem::Tensor(_)) {
                    src_dim += 1;
                }
                its.push(other.clone())
            }
        }
    }
    let consumed = its.iter().filter(|i| matches!(i, IndexItem::Int(_) | IndexItem::Slice(..) | IndexItem::Tensor(_))).count();
    let n_ell = its.iter().filter(|i| matches!(i, IndexItem::Ellipsis)).count();
    if n_ell > 1 {
        return Err(index_err!("an index can only have a single ellipsis ('...')"));
    }
    if consumed > x.ndim() {
        return Err(index_err!("too many indices for tensor of dimension {} (got {})", x.ndim(), consumed));
    }
    let mut y = x.clone();
    let mut d = 0usize;
    let mut adv: Vec<(usize, Tensor)> = Vec::new();
    // A full slice (`:`) changes nothing: it is skipped, so that `x[:, t]` is one
    // select of `x` (a cheap backward) rather than a select of a full-size view.
    let mut skipped_full: Option<usize> = None;
    let mut applied = false;
    for it in &its {
        if !matches!(it, IndexItem::Slice(..) | IndexItem::Ellipsis) {
            applied = true;
        }
        match it {
            IndexItem::Int(i) => {
                y = select(&y, d as isize, *i)?;
            }
            IndexItem::Slice(a, b, s) => {
                let (st, len) = slice_bounds(y.shape()[d], *a, *b, *s)?;
                if st == 0 && len == y.shape()[d] && *s == 1 {
                    skipped_full.get_or_insert(d);
                } else {
                    y = slice(&y, d, st, len, *s as usize)?;
                    applied = true;
                }
                d += 1;
            }
            IndexItem::NewAxis => {
                y = unsqueeze(&y, d as isize)?;
                d += 1;
            }
            IndexItem::EmptyAxis => {
                y = slice(&unsqueeze(&y, d as isize)?, d, 0, 0, 1)?;
                d += 1;
            }
            IndexItem::Ellipsis => d += x.ndim() - consumed,
            IndexItem::Tensor(t) => {
                adv.push((d, t.clone()));
                d += 1;
            }
        }
    }
    if let (Some(d0), false) = (skipped_full, applied) {
        // only full slices: still return a view, as torch does
        y = slice(&y, d0, 0, y.shape()[d0], 1)?;
    }
    if adv.is_empty() {
        return Ok(y);
    }
    advanced(&y, &adv)
}

/// Apply integer-tensor indices at dims `adv[k].0` of `y` (NumPy placement rules).
fn advanced(y: &Tensor, adv: &[(usize, Tensor)]) -> Result<Tensor> {
    let mut bshape: Vec<usize> = Vec::new();
    for (_, t) in adv {
        bshape = broadcast_shapes(&bshape, t.shape())
            .map_err(|_| {
                index_err!(
                    "shape mismatch: indexing tensors could not be broadcast together with shapes {:?}",
                    adv.iter().map(|(_, t)| t.shape().to_vec()).collect::<Vec<_>>()
                )
            })?
            .to_vec();
    }
    let nd = y.ndim();
    let dims: Vec<usize> = adv.iter().map(|(d, _)| *d).collect();
    let mut perm: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
    perm.extend((0..nd).filter(|d| !dims.contains(d)).map(|d| d as isize));
    let yp = permute(y, &perm)?;
    let sizes: Vec<usize> = dims.iter().map(|&d| y.shape()[d]).collect();
    // linear index into the flattened indexed dims
    let nb = crate::tensor::checked_numel(&bshape)?;
    let mut lin = FreshTensor::<i64>::zeros(&[nb])?;
    let mut mult = 1i64;
    for k in (0..adv.len()).rev() {
        let t = expand(&adv[k].1.detach(), &bshape)?;
        let vals = t.try_to_vec::<i64>()?;
        let n = sizes[k] as i64;
        for (l, &v) in lin.iter_mut().zip(&vals) {
            if v < -n || v >= n {
                return Err(index_err!("index {v} is out of bounds for dimension {} with size {n}", dims[k]));
            }
            *l += (if v < 0 { v + n } else { v }) * mult;
        }
        mult *= n;
    }
    let rest: Vec<usize> = yp.shape()[adv.len()..].to_vec();
    let mut flat_shape = vec![sizes.iter().product::<usize>()];
    flat_shape.extend_from_slice(&rest);
    let yf = reshape(&yp, &flat_shape)?;
    let sel = index_select(&yf, 0, &lin.into_tensor())?;
    let mut out_shape = bshape.clone();
    out_shape.extend_from_slice(&rest);
    let out = reshape(&sel, &out_shape)?;
    let adjacent = dims.windows(2).all(|w| w[1] == w[0] + 1);
    let first = dims[0];
    if adjacent && first > 0 {
        // move the broadcast dims to where the indexed dims were
        let nbd = bshape.len();
        let total = out.ndim();
        let mut p: Vec<isize> = Vec::with_capacity(total);
        for i in 0..first {
            p.push((nbd + i) as isize);
        }
        for i in 0..nbd {
            p.push(i as isize);
        }
        for i in nbd + first..total {
            p.push(i as isize);
        }
        return permute(&out, &p);
    }
    Ok(out)
}

/// Out-of-place `x[items] = value` (differentiable in x and value).
pub fn index_put(x: &Tensor, items: &[IndexItem], value: &Tensor) -> Result<Tensor> {
    // Linear positions of the selected elements, in the shape of x[items].
    let mut pos_all = FreshTensor::<i64>::uninit(x.shape())?;
    for (i, p) in pos_all.iter_mut().enumerate() {
        *p = i as i64;
    }
    let pos_all = pos_all.into_tensor();
    let pos = getitem(&pos_all, items)?;
    let v = super::as_dtype(value, x.dtype())?;
    let vb = expand(&v.detach(), pos.shape()).map_err(|_| {
        shape_err!(
            "shape mismatch: value tensor of shape {:?} cannot be broadcast to indexing result of shape {:?}",
            value.shape(),
            pos.shape()
        )
    })?;
    let pv = pos.try_to_vec::<i64>()?;
    let vv = vb.contiguous();
    let out = dispatch_all!(x.dtype(), T => {
        let mut out = FreshTensor::<T>::copy_of(x)?;
        let src = vv.data::<T>();
        for (&p, &s) in pv.iter().zip(src) {
            out[p as usize] = s;
        }
        out.into_tensor()
    });
    if needs_grad(&[x, value]) {
        let its = items.to_vec();
        let vshape = value.shape().to_vec();
        let vdt = value.dtype();
        attach(&out, "IndexPutBackward0", &[x, value], false, move |ctx, g| {
            let gx = if ctx.needs(0) { Some(index_put(g, &its, &Tensor::wrapped_scalar(0.0, g.dtype()))?) } else { None };
            let gv = if ctx.needs(1) {
                let r = getitem(g, &its)?;
                let r = if r.ndim() < vshape.len() { reshape(&r, &pad_left(r.shape(), vshape.len()))? } else { r };
                Some(super::as_dtype(&sum_to(&r, &vshape)?, vdt)?)
            } else {
                None
            };
            Ok(vec![gx, gv])
        });
    }
    Ok(out)
}

fn pad_left(shape: &[usize], n: usize) -> Vec<usize> {
    let mut s = vec![1; n - shape.len()];
    s.extend_from_slice(shape);
    s
}

/// In-place `x[items] = value`.
pub fn setitem(x: &Tensor, items: &[IndexItem], value: &Tensor) -> Result<()> {
    let grad = crate::autograd::is_grad_enabled() && (x.requires_grad() || value.requires_grad());
    if !grad {
        let basic = items.iter().all(|i| !matches!(i, IndexItem::Tensor(_)));
        if basic {
            let view = getitem(&x.detach(), items)?;
            super::binary::check_inplace(x)?;
            return crate::kernels::copy_into(&view, &value.detach()).map_err(|_| {
                shape_err!(
                    "shape mismatch: value tensor of shape {:?} cannot be broadcast to indexing result of shape {:?}",
                    value.shape(),
                    view.shape()
                )
            });
        }
    }
    super::binary::inplace(x, "index_put_", |src| index_put(src, items, value))
}

/// Storage offsets of the elements of `t`, in row-major order.
fn storage_offsets(t: &Tensor) -> Vec<isize> {
    let mut v = Vec::with_capacity(t.numel());
    strided_rows(t.shape(), [t.strides()], [t.offset() as isize], |off, n, st| {
        for j in 0..n as isize {
            v.push(off[0] + j * st[0]);
        }
    });
    v
}

/// For a view `t` of `base` (same storage): the row-major index into `base`
/// of each element of `t`, as an int64 tensor of `t`'s shape.
pub fn base_positions(t: &Tensor, base: &Tensor) -> Result<Tensor> {
    if !std::sync::Arc::ptr_eq(t.storage(), base.storage()) {
        return Err(crate::value_err!("base_positions: the tensors do not share storage"));
    }
    let b = storage_offsets(base);
    let (lo, hi) = match (b.iter().min(), b.iter().max()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => return Tensor::from_vec(Vec::<i64>::new(), t.shape()),
    };
    let mut inv = vec![-1i64; (hi - lo + 1) as usize];
    for (j, &p) in b.iter().enumerate() {
        inv[(p - lo) as usize] = j as i64;
    }
    let mut out = Vec::with_capacity(t.numel());
    for p in storage_offsets(t) {
        let k = p - lo;
        let j = if k >= 0 && (k as usize) < inv.len() { inv[k as usize] } else { -1 };
        if j < 0 {
            return Err(crate::autograd_err!("in-place write through a view: an element lies outside its base"));
        }
        out.push(j);
    }
    Tensor::from_vec(out, t.shape())
}
