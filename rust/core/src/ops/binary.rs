//! Binary elementwise ops with broadcasting: arithmetic, pow, maximum/minimum,
//! comparisons, logical ops, `where`, and the in-place variants.
use super::reduce::sum_to;
use super::unary::{log, neg};
use super::{as_dtype, promote};
use crate::autograd::{attach, needs_grad, SavedTensor};
use crate::dtype::DType;
use crate::error::Result;
use crate::kernels::{map1, map2};
use crate::tensor::Tensor;
use crate::{dispatch_all, dispatch_num, dtype_err};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    FloorDiv,
    Rem,
    Atan2,
}

impl Arith {
    fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
            Arith::Pow => "pow",
            Arith::Max => "maximum",
            Arith::Min => "minimum",
            Arith::FloorDiv => "floor_divide",
            Arith::Rem => "remainder",
            Arith::Atan2 => "atan2",
        }
    }
}

/// Result dtype of an arithmetic op (true division and atan2 go to float).
fn arith_dtype(op: Arith, a: &Tensor, b: &Tensor) -> Result<DType> {
    let dt = promote(&[a, b]);
    if op == Arith::Sub && (a.dtype() == DType::Bool || b.dtype() == DType::Bool) {
        return Err(dtype_err!(
            "Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying to invert a mask, use the `~` or `logical_not()` operator instead."
        ));
    }
    Ok(match op {
        Arith::Div | Arith::Atan2 if !dt.is_float() => crate::default_dtype(),
        Arith::Sub if dt == DType::Bool => {
            return Err(dtype_err!(
                "Subtraction, the `-` operator, with two bool tensors is not supported. Use the `^` or `logical_xor()` operator instead."
            ))
        }
        Arith::Add | Arith::Mul | Arith::Max | Arith::Min if dt == DType::Bool => DType::Bool,
        _ if dt == DType::Bool => DType::I64,
        _ => dt,
    })
}

/// The forward kernel only (no autograd).
pub fn arith_raw(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dt = arith_dtype(op, a, b)?;
    let a = as_dtype(a, dt)?;
    let b = as_dtype(b, dt)?;
    match dt {
        DType::F32 => float_kernel::<f32>(op, &a, &b),
        DType::F64 => float_kernel::<f64>(op, &a, &b),
        DType::I64 => int_kernel(op, &a, &b),
        DType::Bool => match op {
            Arith::Add | Arith::Max => map2::<bool, bool, bool>(&a, &b, |x, y| x | y),
            Arith::Mul | Arith::Min => map2::<bool, bool, bool>(&a, &b, |x, y| x & y),
            _ => Err(dtype_err!("{} is not supported for bool tensors", op.name())),
        },
    }
}

fn float_kernel<T: crate::elem::Real>(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match op {
        Arith::Add => map2::<T, T, T>(a, b, |x, y| x + y),
        Arith::Sub => map2::<T, T, T>(a, b, |x, y| x - y),
        Arith::Mul => map2::<T, T, T>(a, b, |x, y| x * y),
        Arith::Div => map2::<T, T, T>(a, b, |x, y| x / y),
        Arith::Pow => {
            // constant exponents torch also computes without pow (at most 1 ulp from powf)
            if b.ndim() == 0 && a.numel() > 0 {
                let e = b.data::<T>()[0];
                let one = T::c(1.0);
                let special = if e == T::c(2.0) {
                    Some(map1::<T, T>(a, |x| x * x))
                } else if e == T::c(3.0) {
                    Some(map1::<T, T>(a, |x| x * x * x))
                } else if e == T::c(1.0) {
                    Some(map1::<T, T>(a, |x| x))
                } else if e == T::c(0.5) {
                    Some(map1::<T, T>(a, |x| x.sqrt()))
                } else if e == T::c(-1.0) {
                    Some(map1::<T, T>(a, move |x| one / x))
                } else if e == T::c(-2.0) {
                    Some(map1::<T, T>(a, move |x| one / (x * x)))
                } else {
                    None
                };
                if let Some(t) = special {
                    return Ok(t);
                }
            }
            map2::<T, T, T>(a, b, |x, y| if y == T::c(2.0) { x * x } else { x.powf(y) })
        }
        Arith::Max => map2::<T, T, T>(a, b, |x, y| x.max_(y)),
        Arith::Min => map2::<T, T, T>(a, b, |x, y| x.min_(y)),
        Arith::FloorDiv => map2::<T, T, T>(a, b, |x, y| (x / y).floor()),
        Arith::Rem => map2::<T, T, T>(a, b, |x, y| x - (x / y).floor() * y),
        Arith::Atan2 => map2::<T, T, T>(a, b, |x, y| x.atan2(y)),
    }
}

fn int_kernel(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let needs_nonzero = matches!(op, Arith::FloorDiv | Arith::Rem);
    if needs_nonzero && b.to_vec::<i64>().contains(&0) {
        return Err(crate::value_err!("ZeroDivisionError: integer division or modulo by zero"));
    }
    match op {
        Arith::Add => map2::<i64, i64, i64>(a, b, |x, y| x.wrapping_add(y)),
        Arith::Sub => map2::<i64, i64, i64>(a, b, |x, y| x.wrapping_sub(y)),
        Arith::Mul => map2::<i64, i64, i64>(a, b, |x, y| x.wrapping_mul(y)),
        Arith::Max => map2::<i64, i64, i64>(a, b, |x, y| x.max(y)),
        Arith::Min => map2::<i64, i64, i64>(a, b, |x, y| x.min(y)),
        Arith::FloorDiv => map2::<i64, i64, i64>(a, b, |x, y| {
            let q = x.wrapping_div(y);
            if (x.wrapping_rem(y) != 0) && ((x < 0) != (y < 0)) {
                q - 1
            } else {
                q
            }
        }),
        Arith::Rem => map2::<i64, i64, i64>(a, b, |x, y| {
            let r = x.wrapping_rem(y);
            if r != 0 && ((r < 0) != (y < 0)) {
                r + y
            } else {
                r
            }
        }),
        Arith::Pow => {
            if b.to_vec::<i64>().iter().any(|&e| e < 0) {
                return Err(crate::value_err!("Integers to negative integer powers are not allowed."));
            }
            map2::<i64, i64, i64>(a, b, |x, y| x.wrapping_pow(y.min(u32::MAX as i64) as u32))
        }
        Arith::Div | Arith::Atan2 => unreachable!("promoted to float"),
    }
}

/// Differentiable arithmetic.
pub fn arith(op: Arith, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = arith_raw(op, a, b)?;
    if !needs_grad(&[a, b]) || !out.dtype().is_float() {
        return Ok(out);
    }
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    match op {
        Arith::Add => attach(&out, "AddBackward0", &[a, b], false, move |ctx, g| {
            Ok(vec![if ctx.needs(0) { Some(sum_to(g, &sa)?) } else { None }, if ctx.needs(1) { Some(sum_to(g, &sb)?) } else { None }])
        }),
        Arith::Sub => attach(&out, "SubBackward0", &[a, b], false, move |ctx, g| {
            Ok(vec![
                if ctx.needs(0) { Some(sum_to(g, &sa)?) } else { None },
                if ctx.needs(1) { Some(neg(&sum_to(g, &sb)?)?) } else { None },
            ])
        }),
        Arith::Mul => {
            let (xa, xb) = (SavedTensor::input(a), SavedTensor::input(b));
            attach(&out, "MulBackward0", &[a, b], true, move |ctx, g| {
                Ok(vec![
                    if ctx.needs(0) { Some(sum_to(&mul(g, &xb.get(ctx)?)?, &sa)?) } else { None },
                    if ctx.needs(1) { Some(sum_to(&mul(g, &xa.get(ctx)?)?, &sb)?) } else { None },
                ])
            })
        }
        Arith::Div => {
            let (xa, xb) = (SavedTensor::input(a), SavedTensor::input(b));
            attach(&out, "DivBackward0", &[a, b], true, move |ctx, g| {
                let b = xb.get(ctx)?;
                let ga = if ctx.needs(0) { Some(sum_to(&div(g, &b)?, &sa)?) } else { None };
                let gb = if ctx.needs(1) {
                    let a = xa.get(ctx)?;
                    // -g * a / b^2
                    Some(sum_to(&neg(&div(&mul(g, &a)?, &mul(&b, &b)?)?)?, &sb)?)
                } else {
                    None
                };
                Ok(vec![ga, gb])
            })
        }
        Arith::Pow => {
            let (xa, xb) = (SavedTensor::input(a), SavedTensor::input(b));
            let so = SavedTensor::output(&out);
            attach(&out, "PowBackward1", &[a, b], true, move |ctx, g| {
                let a = xa.get(ctx)?;
                let e = xb.get(ctx)?;
                let ga = if ctx.needs(0) {
                    // e * a^(e-1), with 0 where e == 0 (torch's convention)
                    let em1 = sub(&e, &Tensor::wrapped_scalar(1.0, DType::I64))?;
                    let d = mul(&e, &pow(&a, &em1)?)?;
                    let zero = Tensor::wrapped_scalar(0.0, d.dtype());
                    let d = where_(&eq(&e, &Tensor::wrapped_scalar(0.0, DType::I64))?, &zero, &d)?;
                    Some(sum_to(&mul(g, &d)?, &sa)?)
                } else {
                    None
                };
                let gb = if ctx.needs(1) {
                    // a^e * ln(a), masked to 0 where a == 0 and e >= 0
                    let y = so.get(ctx)?;
                    let d = mul(&y, &log(&a)?)?;
                    let zero = Tensor::wrapped_scalar(0.0, d.dtype());
                    let mask = logical_and(
                        &eq(&a, &Tensor::wrapped_scalar(0.0, DType::I64))?,
                        &ge(&e, &Tensor::wrapped_scalar(0.0, DType::I64))?,
                    )?;
                    let d = where_(&mask, &zero, &d)?;
                    Some(sum_to(&mul(g, &d)?, &sb)?)
                } else {
                    None
                };
                Ok(vec![ga, gb])
            })
        }
        Arith::Max | Arith::Min => {
            let (xa, xb) = (SavedTensor::input(a), SavedTensor::input(b));
            let name = if op == Arith::Max { "MaximumBackward0" } else { "MinimumBackward0" };
            attach(&out, name, &[a, b], true, move |ctx, g| {
                let (a, b) = (xa.get(ctx)?, xb.get(ctx)?);
                // a wins where a > b (max) / a < b (min); ties split the gradient
                let wins_a = if op == Arith::Max { gt(&a, &b)? } else { lt(&a, &b)? };
                let tie = eq(&a, &b)?;
                let half = mul(g, &Tensor::wrapped_scalar(0.5, DType::F64))?;
                let zero = Tensor::wrapped_scalar(0.0, g.dtype());
                let share = where_(&tie, &half, &zero)?;
                let ga = if ctx.needs(0) { Some(sum_to(&add(&where_(&wins_a, g, &zero)?, &share)?, &sa)?) } else { None };
                let gb = if ctx.needs(1) {
                    let wins_b = logical_not(&logical_or(&wins_a, &tie)?)?;
                    Some(sum_to(&add(&where_(&wins_b, g, &zero)?, &share)?, &sb)?)
                } else {
                    None
                };
                Ok(vec![ga, gb])
            })
        }
        Arith::FloorDiv | Arith::Rem => {
            // floor_divide has zero gradient almost everywhere; remainder: d/da = 1, d/db = -floor(a/b)
            let (xa, xb) = (SavedTensor::input(a), SavedTensor::input(b));
            attach(&out, if op == Arith::Rem { "RemainderBackward0" } else { "FloorDivideBackward0" }, &[a, b], true, move |ctx, g| {
                if op == Arith::FloorDiv {
                    let z = crate::ops::unary::zeros_like(g)?;
                    return Ok(vec![Some(sum_to(&z, &sa)?), Some(sum_to(&z, &sb)?)]);
                }
                let (a, b) = (xa.get(ctx)?, xb.get(ctx)?);
                let ga = if ctx.needs(0) { Some(sum_to(g, &sa)?) } else { None };
                let gb = if ctx.needs(1) {
                    let q = arith_raw(Arith::FloorDiv, &a.detach(), &b.detach())?;
                    Some(sum_to(&neg(&mul(g, &q)?)?, &sb)?)
                } else {
                    None
                };
                Ok(vec![ga, gb])
            })
        }
        Arith::Atan2 => {
            let (xa, xb) = (SavedTensor::input(a), SavedTensor::input(b));
            attach(&out, "Atan2Backward0", &[a, b], true, move |ctx, g| {
                let (a, b) = (xa.get(ctx)?, xb.get(ctx)?);
                let r = add(&mul(&a, &a)?, &mul(&b, &b)?)?;
                let ga = if ctx.needs(0) { Some(sum_to(&div(&mul(g, &b)?, &r)?, &sa)?) } else { None };
                let gb = if ctx.needs(1) { Some(sum_to(&neg(&div(&mul(g, &a)?, &r)?)?, &sb)?) } else { None };
                Ok(vec![ga, gb])
            })
        }
    }
    Ok(out)
}

pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Add, a, b)
}
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Sub, a, b)
}
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Mul, a, b)
}
pub fn div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Div, a, b)
}
pub fn pow(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Pow, a, b)
}
pub fn maximum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Max, a, b)
}
pub fn minimum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    arith(Arith::Min, a, b)
}
/// Multiply by a constant (no gradient for the constant).
pub fn mul_scalar(a: &Tensor, s: f64) -> Result<Tensor> {
    mul(a, &Tensor::wrapped_scalar(s, DType::F64))
}
pub fn add_scalar(a: &Tensor, s: f64) -> Result<Tensor> {
    add(a, &Tensor::wrapped_scalar(s, DType::F64))
}

/// `old += g` in place, without autograd (same shape and dtype; used for gradient accumulation).
pub fn add_assign_raw(old: &Tensor, g: &Tensor) -> Result<()> {
    crate::dispatch_float!(old.dtype(), "add_", T => {
        let g = as_dtype(g, old.dtype())?;
        if old.is_contiguous() && g.is_contiguous() && old.shape() == g.shape() && !std::sync::Arc::ptr_eq(old.storage(), g.storage()) {
            // SAFETY: both contiguous of dtype T over distinct storages; the
            // caller (gradient accumulation) owns `old` for the duration.
            crate::kernels::add_in_place(unsafe { old.data_mut::<T>() }, g.data::<T>());
            old.storage().bump_version();
        } else {
            let s = add(&old.detach(), &g.detach())?;
            crate::kernels::copy_into(old, &s)?;
        }
    });
    Ok(())
}

// ------------------------------------------------------------------ comparisons
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

// generic over every dtype, bool included
#[allow(clippy::bool_comparison)]
pub fn compare(op: Cmp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dt = promote(&[a, b]);
    let a = as_dtype(a, dt)?;
    let b = as_dtype(b, dt)?;
    dispatch_all!(dt, T => match op {
        Cmp::Eq => map2::<T, T, bool>(&a, &b, |x, y| x == y),
        Cmp::Ne => map2::<T, T, bool>(&a, &b, |x, y| x != y),
        Cmp::Lt => map2::<T, T, bool>(&a, &b, |x, y| x < y),
        Cmp::Le => map2::<T, T, bool>(&a, &b, |x, y| x <= y),
        Cmp::Gt => map2::<T, T, bool>(&a, &b, |x, y| x > y),
        Cmp::Ge => map2::<T, T, bool>(&a, &b, |x, y| x >= y),
    })
}
pub fn eq(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compare(Cmp::Eq, a, b)
}
pub fn ne(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compare(Cmp::Ne, a, b)
}
pub fn lt(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compare(Cmp::Lt, a, b)
}
pub fn le(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compare(Cmp::Le, a, b)
}
pub fn gt(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compare(Cmp::Gt, a, b)
}
pub fn ge(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    compare(Cmp::Ge, a, b)
}

// ------------------------------------------------------------------ logical / bitwise
fn to_bool(t: &Tensor) -> Result<Tensor> {
    as_dtype(t, DType::Bool)
}
pub fn logical_and(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    map2::<bool, bool, bool>(&to_bool(a)?, &to_bool(b)?, |x, y| x && y)
}
pub fn logical_or(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    map2::<bool, bool, bool>(&to_bool(a)?, &to_bool(b)?, |x, y| x || y)
}
pub fn logical_xor(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    map2::<bool, bool, bool>(&to_bool(a)?, &to_bool(b)?, |x, y| x ^ y)
}
pub fn logical_not(a: &Tensor) -> Result<Tensor> {
    Ok(crate::kernels::map1::<bool, bool>(&to_bool(a)?, |x| !x))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bitwise {
    And,
    Or,
    Xor,
}
/// `&`, `|`, `^` on bool and integer tensors.
pub fn bitwise(op: Bitwise, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dt = promote(&[a, b]);
    match dt {
        DType::Bool => match op {
            Bitwise::And => logical_and(a, b),
            Bitwise::Or => logical_or(a, b),
            Bitwise::Xor => logical_xor(a, b),
        },
        DType::I64 => {
            let (a, b) = (as_dtype(a, dt)?, as_dtype(b, dt)?);
            match op {
                Bitwise::And => map2::<i64, i64, i64>(&a, &b, |x, y| x & y),
                Bitwise::Or => map2::<i64, i64, i64>(&a, &b, |x, y| x | y),
                Bitwise::Xor => map2::<i64, i64, i64>(&a, &b, |x, y| x ^ y),
            }
        }
        d => Err(dtype_err!("bitwise operations are only defined for bool and integer tensors, got {}", d.name())),
    }
}

// ------------------------------------------------------------------ where
/// `where(cond, a, b)`: elements of `a` where `cond`, else of `b`, broadcast together.
pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if cond.dtype() != DType::Bool {
        return Err(dtype_err!("where expected condition to be a boolean tensor, but got a tensor with dtype {}", cond.dtype().name()));
    }
    let dt = promote(&[a, b]);
    let (ac, bc) = (as_dtype(a, dt)?, as_dtype(b, dt)?);
    let out = dispatch_all!(dt, T => crate::kernels::map3::<bool, T, T, T>(cond, &ac, &bc, |c, x, y| if c { x } else { y })?);
    if needs_grad(&[a, b]) && dt.is_float() {
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        let c = cond.detach();
        attach(&out, "WhereBackward0", &[a, b], true, move |ctx, g| {
            let zero = Tensor::wrapped_scalar(0.0, g.dtype());
            Ok(vec![
                if ctx.needs(0) { Some(sum_to(&where_(&c, g, &zero)?, &sa)?) } else { None },
                if ctx.needs(1) { Some(sum_to(&where_(&c, &zero, g)?, &sb)?) } else { None },
            ])
        });
    }
    Ok(out)
}

// ------------------------------------------------------------------ in-place
/// Refuse in-place writes that would corrupt autograd.
pub fn check_inplace(t: &Tensor) -> Result<()> {
    if t.shape().iter().zip(t.strides()).any(|(&n, &s)| n > 1 && s == 0) {
        return Err(crate::autograd_err!(
            "unsupported operation: more than one element of the written-to tensor refers to a single memory location. Please clone() the tensor before performing the operation."
        ));
    }
    if !crate::autograd::is_grad_enabled() {
        return Ok(());
    }
    if t.requires_grad() && t.is_leaf() {
        return Err(crate::autograd_err!("a leaf Variable that requires grad is being used in an in-place operation."));
    }
    if let Some(b) = t.view_base() {
        if b.requires_grad() && b.is_leaf() {
            return Err(crate::autograd_err!("a view of a leaf Variable that requires grad is being used in an in-place operation."));
        }
    }
    Ok(())
}

fn check_result(t: &Tensor, out: &Tensor, what: &str) -> Result<()> {
    if out.shape() != t.shape() {
        return Err(crate::shape_err!("{what}: output with shape {:?} doesn't match the broadcast shape {:?}", t.shape(), out.shape()));
    }
    if !out.dtype().can_cast_to(t.dtype()) {
        return Err(dtype_err!(
            "{what}: result type {} can't be cast to the desired output type {}",
            out.dtype().scalar_name(),
            t.dtype().scalar_name()
        ));
    }
    if !t.storage().writable() {
        return Err(crate::value_err!("{what}: the tensor's memory is read-only"));
    }
    Ok(())
}

/// Generic in-place update: `t <- f(t)` with torch's shape and dtype rules.
/// When recording, the history moves to `t` (and, for a view, to its base).
pub fn inplace(t: &Tensor, what: &str, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<()> {
    check_inplace(t)?;
    let record = crate::autograd::is_grad_enabled();
    if record {
        if let Some(base) = t.view_base() {
            let out = f(&super::unary::clone(t)?)?;
            check_result(t, &out, what)?;
            if out.requires_grad() || base.requires_grad() {
                return write_through_view(t, &base, &out);
            }
            return crate::kernels::copy_into(t, &out.detach());
        }
    }
    // When recording, the op runs on a copy of `t`, so that a saved input keeps
    // its values after `t` is overwritten.
    let out = if record && t.requires_grad() {
        f(&super::unary::clone(t)?)?
    } else {
        let o = f(&t.detach())?;
        if record && o.requires_grad() {
            f(&crate::kernels::copy_contiguous(t))?
        } else {
            o
        }
    };
    check_result(t, &out, what)?;
    crate::kernels::copy_into(t, &out.detach())?;
    if record && out.requires_grad() {
        let out = if out.dtype() != t.dtype() { super::unary::to_dtype(&out, t.dtype())? } else { out };
        crate::autograd::rebase_history(t, &out);
    }
    Ok(())
}

/// In-place write into a view whose base takes part in autograd: the base
/// gets the history "base with the view's elements replaced by `out`", and
/// the view becomes a differentiable selection of the new base.
fn write_through_view(t: &Tensor, base: &Tensor, out: &Tensor) -> Result<()> {
    use super::index::{base_positions, index_put, index_select, IndexItem};
    use super::shape::reshape;
    let idx = base_positions(t, base)?;
    let n = base.numel();
    let flat = reshape(base, &[n])?;
    let val = super::as_dtype(out, base.dtype())?;
    let new_flat = index_put(&flat, &[IndexItem::Tensor(idx.clone())], &val)?;
    let new_base = reshape(&new_flat, base.shape())?;
    crate::kernels::copy_into(base, &new_base.detach())?;
    crate::autograd::rebase_history(base, &new_base);
    let flat_idx = reshape(&idx, &[idx.numel()])?;
    let sel = index_select(&reshape(base, &[n])?, 0, &flat_idx)?;
    let new_view = reshape(&sel, t.shape())?;
    crate::autograd::rebase_history(t, &new_view);
    Ok(())
}

pub fn arith_(op: Arith, t: &Tensor, other: &Tensor) -> Result<()> {
    inplace(t, op.name(), |x| arith(op, x, other))
}

/// Integer dtype check helper used by the bindings for in-place scalar ops.
pub fn is_num(dt: DType) -> Result<()> {
    dispatch_num!(dt, "op", T => { let _ = std::mem::size_of::<T>(); Ok(()) })
}
