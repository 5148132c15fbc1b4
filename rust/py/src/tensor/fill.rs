//! In-place fills of a `Tensor`: `zero_`, `fill_`, `copy_`, and the random fills.
use super::PyTensor;
use crate::conv::*;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rbe_core::autograd;
use rbe_core::ops::binary as bin;
use rbe_core::ops::unary as un;
use rbe_core::ops::{creation, shape};
use rbe_core::{DType, Tensor};

#[pymethods]
impl PyTensor {
    fn zero_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            fill_impl(&slf.get().t, 0.0)?;
            Ok(slf.clone().unbind())
        })
    }
    fn fill_(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let v = operand(value)?;
            if v.numel() != 1 {
                return Err(PyValueError::new_err(format!(
                    "fill_ only supports 0-dimension value tensor but got tensor with {} dimensions.",
                    v.ndim()
                )));
            }
            let me = &slf.get().t;
            check_number_for(&v, me.dtype())?;
            if v.requires_grad() {
                bin::inplace(me, "fill_", |x| shape::expand(&rbe_core::ops::as_dtype(&v, x.dtype())?, x.shape())).py()?;
            } else if me.dtype() == DType::I64 && matches!(v.dtype(), DType::I64 | DType::Bool) {
                // exact: an int64 value is not rounded through f64 (int64 tensors never require grad)
                bin::check_inplace(me).py()?;
                un::fill_raw_i64(me, v.item_i64().py()?);
            } else {
                fill_impl(me, v.item_f64().py()?)?;
            }
            Ok(slf.clone().unbind())
        })
    }
    fn copy_(slf: &Bound<'_, Self>, src: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let s = operand(src)?;
            let me = &slf.get().t;
            if s.requires_grad() || me.requires_grad() {
                bin::inplace(me, "copy_", |x| {
                    let c = rbe_core::ops::as_dtype(&s, x.dtype())?;
                    shape::expand(&c, x.shape())
                })
                .py()?;
            } else {
                bin::check_inplace(me).py()?;
                rbe_core::kernels::copy_into(me, &s).py()?;
            }
            Ok(slf.clone().unbind())
        })
    }
    #[pyo3(signature = (low=0.0, high=1.0, *, generator=None))]
    fn uniform_(slf: &Bound<'_, Self>, low: f64, high: f64, generator: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let me = &slf.get().t;
            let r = crate::functions::with_gen(generator, |g| creation::rand(me.shape(), low, high, float_or_err(me)?, g))?;
            random_fill(me, &r)?;
            Ok(slf.clone().unbind())
        })
    }
    #[pyo3(signature = (mean=0.0, std=1.0, *, generator=None))]
    fn normal_(slf: &Bound<'_, Self>, mean: f64, std: f64, generator: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let me = &slf.get().t;
            let r = crate::functions::with_gen(generator, |g| creation::randn(me.shape(), mean, std, float_or_err(me)?, g))?;
            random_fill(me, &r)?;
            Ok(slf.clone().unbind())
        })
    }
    #[pyo3(signature = (p=0.5, *, generator=None))]
    fn bernoulli_(slf: &Bound<'_, Self>, p: f64, generator: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let me = &slf.get().t;
            let r = crate::functions::with_gen(generator, |g| creation::bernoulli(me.shape(), p, me.dtype(), g))?;
            random_fill(me, &r)?;
            Ok(slf.clone().unbind())
        })
    }
}

fn float_or_err(t: &Tensor) -> rbe_core::Result<DType> {
    if t.dtype().is_float() {
        Ok(t.dtype())
    } else {
        Err(rbe_core::Error::DType(format!("expected a floating point tensor, got {}", t.dtype().name())))
    }
}

fn random_fill(me: &Tensor, r: &Tensor) -> PyResult<()> {
    crate::conv::protect(|| {
        bin::check_inplace(me).py()?;
        rbe_core::kernels::copy_into(me, r).py()
    })
}

fn fill_impl(t: &Tensor, v: f64) -> PyResult<()> {
    crate::conv::protect(|| {
        if autograd::is_grad_enabled() && t.requires_grad() {
            bin::inplace(t, "fill_", |x| Tensor::full(x.shape(), v, x.dtype())).py()
        } else {
            bin::check_inplace(t).py()?;
            un::fill_raw(t, v);
            Ok(())
        }
    })
}
