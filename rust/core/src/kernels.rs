//! Element loops over strided, broadcast operands. Every op reduces to a few
//! of these: `map1`, `map2`, `map3` (contiguous output), `cast`, `copy_into`.
use crate::dtype::DType;
use crate::elem::Elem;
use crate::error::Result;
use crate::shape_err;
use crate::tensor::{contiguous_strides, numel_of, FreshTensor, Shape, Strides, Tensor};
use smallvec::SmallVec;

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Shape> {
    let n = a.len().max(b.len());
    let mut out: Shape = SmallVec::from_elem(0, n);
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(shape_err!(
                "The size of tensor a ({da}) must match the size of tensor b ({db}) at non-singleton dimension {i}; shapes {:?} and {:?} cannot be broadcast together",
                a, b
            ));
        };
    }
    Ok(out)
}

/// Strides of `t` viewed as broadcast to `shape` (0 on broadcast dims).
pub fn broadcast_strides(t: &Tensor, shape: &[usize]) -> Result<Strides> {
    let n = shape.len();
    let k = t.ndim();
    if k > n {
        return Err(shape_err!("cannot broadcast shape {:?} to {:?}", t.shape(), shape));
    }
    let mut st: Strides = SmallVec::from_elem(0, n);
    for i in 0..k {
        let d = t.shape()[i];
        let o = shape[n - k + i];
        if d == o {
            st[n - k + i] = if d == 1 { 0 } else { t.strides()[i] };
        } else if d == 1 {
            st[n - k + i] = 0;
        } else {
            return Err(shape_err!("the shape {:?} cannot be broadcast to {:?}", t.shape(), shape));
        }
    }
    Ok(st)
}

/// Merge adjacent dimensions that are contiguous with each other for every
/// operand, so loops run over as few, as long rows as possible.
fn coalesce<const N: usize>(shape: &[usize], strides: [&[isize]; N]) -> (Shape, [Strides; N]) {
    let mut sh: Shape = SmallVec::new();
    let mut st: [Strides; N] = std::array::from_fn(|_| SmallVec::new());
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        if let Some(&last) = sh.last() {
            let mergeable = (0..N).all(|k| *st[k].last().unwrap() == strides[k][d] * shape[d] as isize);
            if mergeable {
                let l = sh.len() - 1;
                sh[l] = last * shape[d];
                for k in 0..N {
                    *st[k].last_mut().unwrap() = strides[k][d];
                }
                continue;
            }
        }
        sh.push(shape[d]);
        for k in 0..N {
            st[k].push(strides[k][d]);
        }
    }
    if sh.is_empty() {
        sh.push(1);
        for k in 0..N {
            st[k].push(0);
        }
    }
    (sh, st)
}

/// Call `f(offsets, inner_len, inner_strides)` for every innermost row of the
/// N operands, in row-major order of `shape`.
#[inline(always)]
pub fn strided_rows<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
    base: [isize; N],
    mut f: impl FnMut([isize; N], usize, [isize; N]),
) {
    if numel_of(shape) == 0 {
        return;
    }
    let (sh, st) = coalesce(shape, strides);
    let nd = sh.len();
    let inner = sh[nd - 1];
    let inner_st: [isize; N] = std::array::from_fn(|k| st[k][nd - 1]);
    let outer = nd - 1;
    let mut idx: SmallVec<[usize; 6]> = SmallVec::from_elem(0, outer);
    let mut off = base;
    loop {
        f(off, inner, inner_st);
        // increment the multi-index over the outer dims
        let mut d = outer;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..N {
                off[k] += st[k][d];
            }
            if idx[d] < sh[d] {
                break;
            }
            for k in 0..N {
                off[k] -= st[k][d] * sh[d] as isize;
            }
            idx[d] = 0;
        }
    }
}

/// The slice loops of the elementwise kernels, compiled for AVX-512 and AVX2
/// as well as the baseline and picked at run time. Same operations in the
/// same order per element, so the results do not depend on the choice.
macro_rules! vector_loop {
    ($name:ident, <$($g:ident),*>, $o:ident, $f:ident, ($($arg:ident: $ty:ty),*), $body:block) => {
        #[inline(always)]
        fn $name<$($g: Copy),*, O, F: Fn($($g),*) -> O>($o: &mut [O], $($arg: $ty,)* $f: F) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                unsafe fn v512<$($g: Copy),*, O, F: Fn($($g),*) -> O>($o: &mut [O], $($arg: $ty,)* $f: F) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256<$($g: Copy),*, O, F: Fn($($g),*) -> O>($o: &mut [O], $($arg: $ty,)* $f: F) $body
                if $o.len() >= 32 {
                    if crate::simd::has_avx512() {
                        // Safety: the features were detected at run time.
                        // SAFETY: AVX-512 was detected at run time.
                        return unsafe { v512($o, $($arg,)* $f) };
                    }
                    if crate::simd::has_avx2() {
                        // SAFETY: AVX2 and FMA were detected at run time.
                        return unsafe { v256($o, $($arg,)* $f) };
                    }
                }
            }
            $body
        }
    };
}
vector_loop!(loop1, <A>, o, f, (a: &[A]), {
    for (y, &x) in o.iter_mut().zip(a) {
        *y = f(x);
    }
});
vector_loop!(loop2, <A, B>, o, f, (a: &[A], b: &[B]), {
    for ((y, &x1), &x2) in o.iter_mut().zip(a).zip(b) {
        *y = f(x1, x2);
    }
});
vector_loop!(loop2s, <A, B>, o, f, (a: &[A], s: B), {
    for (y, &x1) in o.iter_mut().zip(a) {
        *y = f(x1, s);
    }
});
vector_loop!(loop2f, <A, B>, o, f, (s: A, b: &[B]), {
    for (y, &x2) in o.iter_mut().zip(b) {
        *y = f(s, x2);
    }
});
vector_loop!(loop3, <A, B, C>, o, f, (a: &[A], b: &[B], c: &[C]), {
    for (((y, &x1), &x2), &x3) in o.iter_mut().zip(a).zip(b).zip(c) {
        *y = f(x1, x2, x3);
    }
});

/// o[i] += g[i] (gradient accumulation), vectorised like the loops above.
pub fn add_in_place<T: Copy + std::ops::Add<Output = T>>(o: &mut [T], g: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn v512<T: Copy + std::ops::Add<Output = T>>(o: &mut [T], g: &[T]) {
            for (x, &y) in o.iter_mut().zip(g) {
                *x = *x + y;
            }
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v256<T: Copy + std::ops::Add<Output = T>>(o: &mut [T], g: &[T]) {
            for (x, &y) in o.iter_mut().zip(g) {
                *x = *x + y;
            }
        }
        if o.len() >= 32 {
            if crate::simd::has_avx512() {
                // Safety: the features were detected at run time.
                // SAFETY: AVX-512 was detected at run time.
                return unsafe { v512(o, g) };
            }
            if crate::simd::has_avx2() {
                // SAFETY: AVX2 and FMA were detected at run time.
                return unsafe { v256(o, g) };
            }
        }
    }
    for (x, &y) in o.iter_mut().zip(g) {
        *x = *x + y;
    }
}

/// out[i] = f(a[i]) with a contiguous output of dtype `O` (an allocation
/// that cannot be served panics with an out-of-memory message; see `try_map1`).
pub fn map1<A: Elem, O: Elem>(a: &Tensor, f: impl Fn(A) -> O) -> Tensor {
    try_map1(a, f).unwrap_or_else(|e| panic!("{e}"))
}

/// `map1` reporting an allocation that cannot be served as an error.
pub fn try_map1<A: Elem, O: Elem>(a: &Tensor, f: impl Fn(A) -> O) -> Result<Tensor> {
    let mut out = FreshTensor::<O>::uninit(a.shape())?;
    let o = out.as_mut_slice();
    if a.is_contiguous() {
        loop1(o, a.data::<A>(), f);
        return Ok(out.into_tensor());
    }
    let pa = a.data_ptr::<A>();
    let mut i = 0usize;
    strided_rows(a.shape(), [a.strides()], [0], |off, n, st| {
        for j in 0..n {
            // Safety: offsets stay inside the view.
            o[i + j] = f(unsafe { *pa.offset(off[0] + j as isize * st[0]) });
        }
        i += n;
    });
    Ok(out.into_tensor())
}

/// out = f(a, b) with NumPy broadcasting; contiguous output of dtype `O`.
pub fn map2<A: Elem, B: Elem, O: Elem>(a: &Tensor, b: &Tensor, f: impl Fn(A, B) -> O) -> Result<Tensor> {
    let shape = broadcast_shapes(a.shape(), b.shape())?;
    let mut out = FreshTensor::<O>::uninit(&shape)?;
    let o = out.as_mut_slice();
    if a.shape() == b.shape() && a.is_contiguous() && b.is_contiguous() {
        loop2(o, a.data::<A>(), b.data::<B>(), f);
        return Ok(out.into_tensor());
    }
    if b.numel() == 1 && a.is_contiguous() && a.shape() == &shape[..] {
        // SAFETY: b has exactly one element, at its data pointer.
        let s = unsafe { *b.data_ptr::<B>() };
        loop2s(o, a.data::<A>(), s, f);
        return Ok(out.into_tensor());
    }
    if a.numel() == 1 && b.is_contiguous() && b.shape() == &shape[..] {
        // SAFETY: a has exactly one element, at its data pointer.
        let s = unsafe { *a.data_ptr::<A>() };
        loop2f(o, s, b.data::<B>(), f);
        return Ok(out.into_tensor());
    }
    let sa = broadcast_strides(a, &shape)?;
    let sb = broadcast_strides(b, &shape)?;
    let (pa, pb) = (a.data_ptr::<A>(), b.data_ptr::<B>());
    // Safety: broadcast offsets stay inside each view; `o` has one slot per element.
    unsafe { rows2(&shape, &sa, &sb, pa, pb, o, f) };
    Ok(out.into_tensor())
}

/// The broadcasting loop of `map2`, row by row, compiled per vector ISA as a
/// whole so that the per-row loops are inlined (rows are often short).
///
/// # Safety
/// `pa`/`pb` with strides `sa`/`sb` must address valid elements for every index of `shape`.
unsafe fn rows2<A: Elem, B: Elem, O: Elem, F: Fn(A, B) -> O>(
    shape: &[usize],
    sa: &[isize],
    sb: &[isize],
    pa: *const A,
    pb: *const B,
    o: &mut [O],
    f: F,
) {
    #[inline(always)]
    unsafe fn body<A: Elem, B: Elem, O: Elem, F: Fn(A, B) -> O>(
        shape: &[usize],
        sa: &[isize],
        sb: &[isize],
        pa: *const A,
        pb: *const B,
        o: &mut [O],
        f: F,
    ) {
        let mut i = 0usize;
        strided_rows(shape, [sa, sb], [0, 0], |off, n, st| {
            let dst = &mut o[i..i + n];
            match (st[0], st[1]) {
                (1, 1) => {
                    let (ra, rb) = (std::slice::from_raw_parts(pa.offset(off[0]), n), std::slice::from_raw_parts(pb.offset(off[1]), n));
                    for ((y, &x1), &x2) in dst.iter_mut().zip(ra).zip(rb) {
                        *y = f(x1, x2);
                    }
                }
                (1, 0) => {
                    let (ra, s) = (std::slice::from_raw_parts(pa.offset(off[0]), n), *pb.offset(off[1]));
                    for (y, &x1) in dst.iter_mut().zip(ra) {
                        *y = f(x1, s);
                    }
                }
                (0, 1) => {
                    let (s, rb) = (*pa.offset(off[0]), std::slice::from_raw_parts(pb.offset(off[1]), n));
                    for (y, &x2) in dst.iter_mut().zip(rb) {
                        *y = f(s, x2);
                    }
                }
                _ => {
                    for (j, y) in dst.iter_mut().enumerate() {
                        let j = j as isize;
                        *y = f(*pa.offset(off[0] + j * st[0]), *pb.offset(off[1] + j * st[1]));
                    }
                }
            }
            i += n;
        });
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn v512<A: Elem, B: Elem, O: Elem, F: Fn(A, B) -> O>(
            shape: &[usize],
            sa: &[isize],
            sb: &[isize],
            pa: *const A,
            pb: *const B,
            o: &mut [O],
            f: F,
        ) {
            body(shape, sa, sb, pa, pb, o, f)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v256<A: Elem, B: Elem, O: Elem, F: Fn(A, B) -> O>(
            shape: &[usize],
            sa: &[isize],
            sb: &[isize],
            pa: *const A,
            pb: *const B,
            o: &mut [O],
            f: F,
        ) {
            body(shape, sa, sb, pa, pb, o, f)
        }
        if o.len() >= 32 {
            if crate::simd::has_avx512() {
                return v512(shape, sa, sb, pa, pb, o, f);
            }
            if crate::simd::has_avx2() {
                return v256(shape, sa, sb, pa, pb, o, f);
            }
        }
    }
    body(shape, sa, sb, pa, pb, o, f)
}

/// out = f(a, b, c) with broadcasting (used by `where`, fused backward kernels).
pub fn map3<A: Elem, B: Elem, C: Elem, O: Elem>(a: &Tensor, b: &Tensor, c: &Tensor, f: impl Fn(A, B, C) -> O) -> Result<Tensor> {
    let shape = broadcast_shapes(&broadcast_shapes(a.shape(), b.shape())?, c.shape())?;
    let mut out = FreshTensor::<O>::uninit(&shape)?;
    let o = out.as_mut_slice();
    if a.shape() == &shape[..]
        && b.shape() == &shape[..]
        && c.shape() == &shape[..]
        && a.is_contiguous()
        && b.is_contiguous()
        && c.is_contiguous()
    {
        loop3(o, a.data::<A>(), b.data::<B>(), c.data::<C>(), f);
        return Ok(out.into_tensor());
    }
    // Operands that are either full contiguous tensors or one value (a scalar,
    // or a gradient expanded from one: every stride 0) take a flat loop; this
    // is the usual case of fused backward kernels (`g` broadcast from a sum).
    let n = o.len();
    let one = |t: &Tensor| t.numel() == 1 || (t.numel() > 0 && t.strides().iter().all(|&s| s == 0));
    let full = |t: &Tensor| t.is_contiguous() && t.shape() == &shape[..];
    if n > 0 && [a, b, c].iter().all(|t| one(t) || full(t)) {
        // SAFETY: a one-value operand has an element at its data pointer; a
        // full operand is contiguous with n elements.
        let (va, vb, vc) = unsafe { (*a.data_ptr::<A>(), *b.data_ptr::<B>(), *c.data_ptr::<C>()) };
        let (xa, xb, xc) = (
            if one(a) { None } else { Some(a.data::<A>()) },
            if one(b) { None } else { Some(b.data::<B>()) },
            if one(c) { None } else { Some(c.data::<C>()) },
        );
        match (xa, xb, xc) {
            (Some(xa), Some(xb), None) => o.iter_mut().zip(xa).zip(xb).for_each(|((y, &p), &q)| *y = f(p, q, vc)),
            (Some(xa), None, Some(xc)) => o.iter_mut().zip(xa).zip(xc).for_each(|((y, &p), &r)| *y = f(p, vb, r)),
            (None, Some(xb), Some(xc)) => o.iter_mut().zip(xb).zip(xc).for_each(|((y, &q), &r)| *y = f(va, q, r)),
            (Some(xa), None, None) => o.iter_mut().zip(xa).for_each(|(y, &p)| *y = f(p, vb, vc)),
            (None, Some(xb), None) => o.iter_mut().zip(xb).for_each(|(y, &q)| *y = f(va, q, vc)),
            (None, None, Some(xc)) => o.iter_mut().zip(xc).for_each(|(y, &r)| *y = f(va, vb, r)),
            (None, None, None) => o.iter_mut().for_each(|y| *y = f(va, vb, vc)),
            (Some(xa), Some(xb), Some(xc)) => loop3(o, xa, xb, xc, f),
        }
        return Ok(out.into_tensor());
    }
    let sa = broadcast_strides(a, &shape)?;
    let sb = broadcast_strides(b, &shape)?;
    let sc = broadcast_strides(c, &shape)?;
    let (pa, pb, pc) = (a.data_ptr::<A>(), b.data_ptr::<B>(), c.data_ptr::<C>());
    let mut i = 0usize;
    strided_rows(&shape, [&sa, &sb, &sc], [0, 0, 0], |off, n, st| {
        for j in 0..n {
            let j = j as isize;
            // SAFETY: strided_rows yields offsets of elements inside each view (broadcast strides are 0 on expanded dims).
            unsafe {
                o[i + j as usize] = f(*pa.offset(off[0] + j * st[0]), *pb.offset(off[1] + j * st[1]), *pc.offset(off[2] + j * st[2]));
            }
        }
        i += n;
    });
    Ok(out.into_tensor())
}

/// A contiguous copy converted to `dt`.
pub fn cast(a: &Tensor, dt: DType) -> Tensor {
    crate::dispatch_all!(a.dtype(), A => crate::dispatch_all!(dt, O => map1::<A, O>(a, cast_elem::<A, O>)))
}

#[inline(always)]
pub fn cast_elem<A: Elem, O: Elem>(x: A) -> O {
    match O::DTYPE {
        DType::Bool => O::from_bool(x.to_bool()),
        DType::I64 => match A::DTYPE {
            DType::I64 | DType::Bool => O::from_i64(x.to_i64()),
            // as torch on x86: NaN and values outside the int64 range give INT64_MIN
            // (the result of cvttsd2si), rather than Rust's saturating cast
            _ => {
                let v = x.to_f64();
                O::from_i64(if v.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v) {
                    i64::MIN
                } else {
                    v as i64
                })
            }
        },
        _ => match A::DTYPE {
            DType::I64 => O::from_f64(x.to_i64() as f64),
            _ => O::from_f64(x.to_f64()),
        },
    }
}

pub fn copy_contiguous(a: &Tensor) -> Tensor {
    crate::dispatch_all!(a.dtype(), T => map1::<T, T>(a, |x| x))
}

/// `copy_contiguous` reporting an allocation that cannot be served as an error.
pub fn try_copy_contiguous(a: &Tensor) -> Result<Tensor> {
    crate::dispatch_all!(a.dtype(), T => try_map1::<T, T>(a, |x| x))
}

/// `cast` reporting an allocation that cannot be served as an error.
pub fn try_cast(a: &Tensor, dt: DType) -> Result<Tensor> {
    crate::dispatch_all!(a.dtype(), A => crate::dispatch_all!(dt, O => try_map1::<A, O>(a, cast_elem::<A, O>)))
}

/// Write `src` (broadcast to dst's shape, cast to dst's dtype) into the strided view `dst`.
pub fn copy_into(dst: &Tensor, src: &Tensor) -> Result<()> {
    let ss =
        broadcast_strides(src, dst.shape()).map_err(|_| {
            shape_err!(
            "The size of tensor a ({:?}) must match the size of tensor b ({:?}): cannot copy a tensor of shape {:?} into one of shape {:?}",
            dst.shape(), src.shape(), src.shape(), dst.shape()
        )
        })?;
    crate::dispatch_all!(dst.dtype(), D => crate::dispatch_all!(src.dtype(), S => {
        let pd = dst.data_ptr::<D>();
        let ps = src.data_ptr::<S>();
        // Copy through a temporary when source and destination overlap.
        if std::sync::Arc::ptr_eq(dst.storage(), src.storage()) {
            let tmp = map1::<S, S>(&src.detach(), |x| x);
            return copy_into(dst, &tmp);
        }
        strided_rows(dst.shape(), [dst.strides(), &ss], [0, 0], |off, n, st| {
            for j in 0..n as isize {
                // SAFETY: offsets from strided_rows stay inside both views; overlapping storages were copied first.
                unsafe { *pd.offset(off[0] + j * st[0]) = cast_elem::<S, D>(*ps.offset(off[1] + j * st[1])); }
            }
        });
    }));
    dst.storage().bump_version();
    Ok(())
}

/// Apply `f` to every element of the strided view in place.
pub fn apply_inplace<T: Elem>(dst: &Tensor, f: impl Fn(T) -> T) {
    let pd = dst.data_ptr::<T>();
    strided_rows(dst.shape(), [dst.strides()], [0], |off, n, st| {
        for j in 0..n as isize {
            // SAFETY: offsets from strided_rows stay inside the view.
            unsafe {
                let p = pd.offset(off[0] + j * st[0]);
                *p = f(*p);
            }
        }
    });
    dst.storage().bump_version();
}

pub fn contiguous_strides_of(shape: &[usize]) -> Strides {
    contiguous_strides(shape)
}
