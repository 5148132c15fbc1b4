//! Matrix products: matmul (1-D, 2-D, batched with broadcasting), mm, bmm,
//! mv, dot, outer, and the fused `linear`.
use super::binary::{add, mul};
use super::reduce::{sum, sum_to};
use super::shape::{mt, reshape, squeeze_dims, unsqueeze};
use crate::autograd::{attach, needs_grad};
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::broadcast_shapes;
use crate::tensor::Tensor;
use crate::{dtype_err, shape_err};

fn check_same_dtype(a: &Tensor, b: &Tensor, op: &str) -> Result<DType> {
    if a.dtype() != b.dtype() {
        return Err(dtype_err!("{op}: expected m1 and m2 to have the same dtype, but got: {} != {}", a.dtype().name(), b.dtype().name()));
    }
    if a.dtype() == DType::Bool {
        return Err(dtype_err!("{op}: not implemented for 'Bool'"));
    }
    Ok(a.dtype())
}

/// Batched product of a[..., m, k] and b[..., k, n] with broadcast batch dims (no autograd).
fn bmm_broadcast_raw(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k) = (a.shape()[ra - 2], a.shape()[ra - 1]);
    let (k2, n) = (b.shape()[rb - 2], b.shape()[rb - 1]);
    if k != k2 {
        return Err(shape_err!(
            "mat1 and mat2 shapes cannot be multiplied ({}x{} and {}x{}) (shapes {:?} and {:?})",
            m,
            k,
            k2,
            n,
            a.shape(),
            b.shape()
        ));
    }
    let batch = broadcast_shapes(&a.shape()[..ra - 2], &b.shape()[..rb - 2])?;
    let mut oshape = batch.to_vec();
    oshape.push(m);
    oshape.push(n);
    let dt = a.dtype();
    let out = Tensor::empty(&oshape, dt)?;
    let nb: usize = batch.iter().product();
    // broadcast strides of the batch dims
    let mut ab_shape = batch.to_vec();
    ab_shape.extend_from_slice(&[m, k]);
    let sa = crate::kernels::broadcast_strides(a, &ab_shape)?;
    let mut bb_shape = batch.to_vec();
    bb_shape.extend_from_slice(&[k, n]);
    let sb = crate::kernels::broadcast_strides(b, &bb_shape)?;
    let nbd = batch.len();
    let offsets = |st: &[isize], i: usize| -> isize {
        let mut rem = i;
        let mut off = 0isize;
        for d in (0..nbd).rev() {
            off += (rem % batch[d]) as isize * st[d];
            rem /= batch[d];
        }
        off
    };
    if m * n == 0 {
        return Ok(out);
    }
    // b without batch dims and a's batch dims laid out as further rows (e.g.
    // a contiguous): one (nb*m) x k product, as torch folds them, so that the
    // product's own fixed row split can use the threads (nb products of m
    // rows each would be too small to); each element is still one micro-kernel
    // sum over k in fixed blocks, so results do not depend on the thread count.
    let fold = rb == 2 && nb > 1 && {
        let mut rows = m;
        let mut ok = true;
        for d in (0..nbd).rev() {
            ok &= batch[d] == 1 || sa[d] == sa[nbd] * rows as isize;
            rows *= batch[d];
        }
        ok
    };
    let (nb, m) = if fold { (1, nb * m) } else { (nb, m) };
    macro_rules! run {
        ($T:ty) => {{
            <$T as crate::gemm::GemmElem>::reserve_scratch(n, k)?;
            let (pa, pb, po) = (a.data_ptr::<$T>(), b.data_ptr::<$T>(), out.data_ptr::<$T>());
            for i in 0..nb {
                // SAFETY: batch offsets and the m x k / k x n strides address
                // elements of a and b (broadcast strides are 0); out is a
                // fresh nb x m x n tensor.
                unsafe {
                    <$T as crate::gemm::GemmElem>::gemm(
                        m,
                        n,
                        k,
                        po.add(i * m * n),
                        n as isize,
                        1,
                        false,
                        pa.offset(offsets(&sa, i)),
                        sa[nbd],
                        sa[nbd + 1],
                        pb.offset(offsets(&sb, i)),
                        sb[nbd],
                        sb[nbd + 1],
                    );
                }
            }
        }};
    }
    match dt {
        DType::F32 => run!(f32),
        DType::F64 => run!(f64),
        DType::I64 => {
            let (pa, pb) = (a.data_ptr::<i64>(), b.data_ptr::<i64>());
            // SAFETY: `out` was allocated above by this function and is not shared yet.
            let o = unsafe { out.data_mut::<i64>() };
            for bi in 0..nb {
                let (oa, ob) = (offsets(&sa, bi), offsets(&sb, bi));
                for i in 0..m {
                    for j in 0..n {
                        let mut acc = 0i64;
                        for l in 0..k {
                            // SAFETY: as for the float product above.
                            unsafe {
                                acc = acc.wrapping_add(
                                    (*pa.offset(oa + i as isize * sa[nbd] + l as isize * sa[nbd + 1]))
                                        .wrapping_mul(*pb.offset(ob + l as isize * sb[nbd] + j as isize * sb[nbd + 1])),
                                );
                            }
                        }
                        o[bi * m * n + i * n + j] = acc;
                    }
                }
            }
        }
        DType::Bool => unreachable!(),
    }
    Ok(out)
}

/// Differentiable batched product with broadcasting of batch dims (inputs >= 2-D).
pub fn bmm_broadcast(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = bmm_broadcast_raw(a, b)?;
    if needs_grad(&[a, b]) {
        let (sva, svb) = (crate::autograd::SavedTensor::input(a), crate::autograd::SavedTensor::input(b));
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        attach(&out, "MmBackward0", &[a, b], true, move |ctx, g| {
            let xa = if ctx.needs(1) { Some(sva.get(ctx)?) } else { None };
            let xb = if ctx.needs(0) { Some(svb.get(ctx)?) } else { None };
            let ga = if ctx.needs(0) { Some(sum_to(&bmm_broadcast(g, &mt(xb.as_ref().unwrap())?)?, &sa)?) } else { None };
            let gb = if !ctx.needs(1) {
                None
            } else if sb.len() == 2 && sa.len() > 2 {
                // b without batch dims: its gradient sums over a's batch, as
                // one (k x rows) @ (rows x n) product over all rows at once
                let xa = xa.as_ref().unwrap();
                let rows: usize = sa[..sa.len() - 1].iter().product();
                let a2 = reshape(xa, &[rows, sa[sa.len() - 1]])?;
                let g2 = reshape(g, &[rows, sb[1]])?;
                Some(bmm_broadcast(&mt(&a2)?, &g2)?)
            } else {
                Some(sum_to(&bmm_broadcast(&mt(xa.as_ref().unwrap())?, g)?, &sb)?)
            };
            Ok(vec![ga, gb])
        });
    }
    Ok(out)
}

/// `matmul` with NumPy/torch semantics for 1-D and N-D operands.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_same_dtype(a, b, "matmul")?;
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(shape_err!("both arguments to matmul need to be at least 1D, but they are {}D and {}D", a.ndim(), b.ndim()));
    }
    if a.ndim() == 1 && b.ndim() == 1 && a.shape()[0] != b.shape()[0] {
        return Err(shape_err!(
            "inconsistent tensor size, expected tensor [{}] and src [{}] to have the same number of elements, but got {} and {} elements respectively",
            a.shape()[0],
            b.shape()[0],
            a.shape()[0],
            b.shape()[0]
        ));
    }
    let a2 = if a.ndim() == 1 { unsqueeze(a, 0)? } else { a.clone() };
    let b2 = if b.ndim() == 1 { unsqueeze(b, -1)? } else { b.clone() };
    let out = bmm_broadcast(&a2, &b2)?;
    let mut drop = Vec::new();
    if b.ndim() == 1 {
        drop.push(out.ndim() - 1);
    }
    if a.ndim() == 1 {
        drop.push(out.ndim() - 2);
    }
    drop.sort_unstable();
    if drop.is_empty() {
        Ok(out)
    } else {
        squeeze_dims(&out, &drop)
    }
}

pub fn mm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.ndim() != 2 || b.ndim() != 2 {
        return Err(shape_err!(
            "mm: expected 2-D tensors, got {}-D and {}-D (shapes {:?} and {:?})",
            a.ndim(),
            b.ndim(),
            a.shape(),
            b.shape()
        ));
    }
    matmul(a, b)
}

pub fn bmm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.ndim() != 3 || b.ndim() != 3 {
        return Err(shape_err!("batch1 and batch2 must be 3D tensors, got {}-D and {}-D", a.ndim(), b.ndim()));
    }
    if a.shape()[0] != b.shape()[0] {
        return Err(shape_err!(
            "batch1 and batch2 must have same number of batches, got {} and {} (shapes {:?} and {:?})",
            a.shape()[0],
            b.shape()[0],
            a.shape(),
            b.shape()
        ));
    }
    matmul(a, b)
}

pub fn mv(a: &Tensor, v: &Tensor) -> Result<Tensor> {
    if a.ndim() != 2 || v.ndim() != 1 {
        return Err(shape_err!("mv: expected a matrix and a vector, got shapes {:?} and {:?}", a.shape(), v.shape()));
    }
    matmul(a, v)
}

pub fn dot(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.ndim() != 1 || b.ndim() != 1 {
        return Err(shape_err!("1D tensors expected, but got {}D and {}D tensors", a.ndim(), b.ndim()));
    }
    matmul(a, b)
}

pub fn outer(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.ndim() != 1 || b.ndim() != 1 {
        return Err(shape_err!("outer: expected 1-D tensors, got shapes {:?} and {:?}", a.shape(), b.shape()));
    }
    mul(&unsqueeze(a, 1)?, &unsqueeze(b, 0)?)
}

/// Fused `x @ w.T + bias`: one GEMM with the bias as the initial accumulator.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    check_same_dtype(x, w, "linear")?;
    if w.ndim() != 2 {
        return Err(shape_err!("linear: weight must be 2-D (out_features, in_features), got shape {:?}", w.shape()));
    }
    if x.ndim() == 0 {
        return Err(shape_err!("linear: input must be at least 1-D"));
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let k = x.shape()[x.ndim() - 1];
    if k != in_f {
        let rows: usize = x.shape()[..x.ndim() - 1].iter().product();
        return Err(shape_err!(
            "mat1 and mat2 shapes cannot be multiplied ({}x{} and {}x{}) (input {:?}, weight {:?})",
            rows,
            k,
            in_f,
            out_f,
            x.shape(),
            w.shape()
        ));
    }
    if let Some(b) = bias {
        if b.dtype() != x.dtype() {
            return Err(dtype_err!("linear: bias dtype {} does not match input dtype {}", b.dtype().name(), x.dtype().name()));
        }
        if !(b.ndim() == 1 && b.shape()[0] == out_f) {
            return Err(shape_err!("linear: bias must have shape [{out_f}], got {:?}", b.shape()));
        }
    }
    if !x.dtype().is_float() {
        let y = matmul(x, &mt(w)?)?;
        return match bias {
            Some(b) => add(&y, b),
            None => Ok(y),
        };
    }
    let rows: usize = x.shape()[..x.ndim() - 1].iter().product();
    let mut oshape = x.shape()[..x.ndim() - 1].to_vec();
    oshape.push(out_f);
    let out = match bias {
        Some(b) => crate::kernels::copy_contiguous(&crate::ops::shape::expand(&b.detach(), &[rows, out_f])?),
        None => Tensor::empty(&[rows, out_f], x.dtype())?,
    };
    let xc = x.contiguous();
    if rows * out_f > 0 {
        macro_rules! run {
            ($T:ty) => {{
                <$T as crate::gemm::GemmElem>::reserve_scratch(out_f, in_f)?;
                // SAFETY: out is a fresh rows x out_f tensor, xc a contiguous
                // rows x in_f one, and w an out_f x in_f view read through its strides.
                unsafe {
                    <$T as crate::gemm::GemmElem>::gemm(
                        rows,
                        out_f,
                        in_f,
                        out.data_ptr::<$T>(),
                        out_f as isize,
                        1,
                        bias.is_some(),
                        xc.data_ptr::<$T>(),
                        in_f as isize,
                        1,
                        // w.T: element (l, j) = w[j, l]
                        w.data_ptr::<$T>(),
                        w.strides()[1],
                        w.strides()[0],
                    );
                }
            }};
        }
        match x.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            _ => unreachable!(),
        }
    }
    let out = out.alias(&oshape, &crate::tensor::contiguous_strides(&oshape), 0)?;
    let inputs: Vec<&Tensor> = match bias {
        Some(b) => vec![x, w, b],
        None => vec![x, w],
    };
    if needs_grad(&inputs) {
        let (sx, sw) = (crate::autograd::SavedTensor::input(x), crate::autograd::SavedTensor::input(w));
        let xshape = x.shape().to_vec();
        let bshape = bias.map(|b| b.shape().to_vec());
        attach(&out, "AddmmBackward0", &inputs, true, move |ctx, g| {
            let g2 = reshape(g, &[rows, out_f])?;
            let gx = if ctx.needs(0) {
                let w = sw.get(ctx)?;
                Some(reshape(&matmul(&g2, &w)?, &xshape)?)
            } else {
                None
            };
            let gw = if ctx.needs(1) {
                let x2 = reshape(&sx.get(ctx)?, &[rows, in_f])?;
                Some(matmul(&mt(&g2)?, &x2)?)
            } else {
                None
            };
            let mut v = vec![gx, gw];
            if let Some(bs) = &bshape {
                v.push(if ctx.needs(2) { Some(reshape(&sum(&g2, Some(&[0]), false)?, bs)?) } else { None });
            }
            Ok(v)
        });
    }
    Ok(out)
}
