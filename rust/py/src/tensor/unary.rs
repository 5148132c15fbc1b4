//! Elementwise `Tensor` functions and activations; the one-line ones come from `unary_methods!`.
use super::{guard, PyTensor};
use crate::conv::*;
use pyo3::prelude::*;
use rbe_core::ops::binary as bin;
use rbe_core::ops::unary::{self as un, Fun};
use rbe_core::{DType, Tensor};

/// Binds one-line unary methods. Each entry is `name => call` or, with an
/// in-place variant, `name / name_ => call`, where `call` is either
/// - `Fun::X`: `name` is `un::unary(Fun::X, &self.t)` and `name_` is
///   `unary_inplace(slf, Fun::X)`, or
/// - a core function of one tensor (`un::neg`): `name` is `f(&self.t)` and
///   `name_` is `bin::inplace(.., "name_", f)`.
///
/// The entries are collected first (`@acc`) and emitted as one
/// `#[pymethods] impl PyTensor` block, since `#[pymethods]` does not expand
/// macro calls inside it.
macro_rules! unary_methods {
    (@acc [$($out:tt)*]) => {
        #[pymethods]
        impl PyTensor {
            $($out)*
        }
    };
    (@acc [$($out:tt)*] $name:ident $(/ $inplace:ident)? => Fun::$f:ident $(, $($rest:tt)*)?) => {
        unary_methods!(@acc [
            $($out)*
            fn $name(&self) -> PyResult<PyTensor> {
                guard(|| Ok(un::unary(Fun::$f, &self.t)?))
            }
            $(
                fn $inplace(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
                    unary_inplace(slf, Fun::$f)
                }
            )?
        ] $($($rest)*)?);
    };
    (@acc [$($out:tt)*] $name:ident $(/ $inplace:ident)? => $call:path $(, $($rest:tt)*)?) => {
        unary_methods!(@acc [
            $($out)*
            fn $name(&self) -> PyResult<PyTensor> {
                guard(|| Ok($call(&self.t)?))
            }
            $(
                fn $inplace(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
                    bin::inplace(&slf.get().t, stringify!($inplace), $call).py()?;
                    Ok(slf.clone().unbind())
                }
            )?
        ] $($($rest)*)?);
    };
    ($($entries:tt)*) => {
        unary_methods!(@acc [] $($entries)*);
    };
}

unary_methods! {
    neg / neg_ => un::neg,
    negative => un::neg,
    abs / abs_ => un::abs,
    sign => un::sign,
    exp / exp_ => Fun::Exp,
    expm1 => Fun::Expm1,
    log / log_ => Fun::Log,
    log1p => Fun::Log1p,
    log2 => Fun::Log2,
    log10 => Fun::Log10,
    sqrt / sqrt_ => Fun::Sqrt,
    rsqrt => Fun::Rsqrt,
    square => Fun::Square,
    reciprocal => Fun::Reciprocal,
    sin => Fun::Sin,
    cos => Fun::Cos,
    tan => Fun::Tan,
    asin => Fun::Asin,
    acos => Fun::Acos,
    atan => Fun::Atan,
    sinh => Fun::Sinh,
    cosh => Fun::Cosh,
    tanh / tanh_ => Fun::Tanh,
    sigmoid / sigmoid_ => Fun::Sigmoid,
    relu / relu_ => Fun::Relu,
    erf => Fun::Erf,
    erfc => Fun::Erfc,
    floor => Fun::Floor,
    ceil => Fun::Ceil,
    round => Fun::Round,
    trunc => Fun::Trunc,
    frac => Fun::Frac,
    isnan => un::isnan,
    isinf => un::isinf,
    isfinite => un::isfinite,
    logical_not => bin::logical_not,
}

#[pymethods]
impl PyTensor {
    #[pyo3(signature = (eps=None))]
    fn logit(&self, eps: Option<f64>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(un::logit(&self.t, eps)?)))
    }
    #[pyo3(signature = (min=None, max=None))]
    fn clamp(&self, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| clamp_impl(&self.t, min, max))
    }
    #[pyo3(signature = (min=None, max=None))]
    fn clip(&self, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| clamp_impl(&self.t, min, max))
    }
    #[pyo3(signature = (min=None, max=None))]
    fn clamp_(slf: &Bound<'_, Self>, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let me = &slf.get().t;
            let (lo, hi) = (min.map(|m| m.clone().unbind()), max.map(|m| m.clone().unbind()));
            let py = slf.py();
            bin::inplace(me, "clamp_", |x| {
                clamp_impl(x, lo.as_ref().map(|o| o.bind(py)), hi.as_ref().map(|o| o.bind(py)))
                    .map(|p| p.t)
                    .map_err(|e| rbe_core::Error::Value(e.to_string()))
            })
            .py()?;
            Ok(slf.clone().unbind())
        })
    }
}

fn unary_inplace(slf: &Bound<'_, PyTensor>, f: Fun) -> PyResult<Py<PyTensor>> {
    crate::conv::protect(|| {
        bin::inplace(&slf.get().t, "unary_", |x| un::unary(f, x)).py()?;
        Ok(slf.clone().unbind())
    })
}

fn bound_value(o: Option<&Bound<'_, PyAny>>) -> PyResult<(Option<f64>, Option<Tensor>)> {
    crate::conv::protect(|| match o {
        None => Ok((None, None)),
        Some(v) if v.is_none() => Ok((None, None)),
        Some(v) => {
            if let Ok(t) = v.downcast::<PyTensor>() {
                Ok((None, Some(t.get().t.clone())))
            } else {
                Ok((Some(v.extract::<f64>()?), None))
            }
        }
    })
}

fn clamp_impl(t: &Tensor, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let (lo, lot) = bound_value(min)?;
        let (hi, hit) = bound_value(max)?;
        // torch promotes an integer tensor clamped by float bounds to a float result
        let float_bound = [min, max].iter().flatten().any(|b| b.is_instance_of::<pyo3::types::PyFloat>());
        let promoted;
        let t = if !t.dtype().is_float() && float_bound {
            promoted = un::to_dtype(t, rbe_core::default_dtype()).py()?;
            &promoted
        } else {
            t
        };
        if lot.is_some() || hit.is_some() {
            let lo_t = lot.or_else(|| lo.map(|v| Tensor::wrapped_scalar(v, DType::F64)));
            let hi_t = hit.or_else(|| hi.map(|v| Tensor::wrapped_scalar(v, DType::F64)));
            return guard(|| Ok(un::clamp_tensor(t, lo_t.as_ref(), hi_t.as_ref())?));
        }
        guard(|| Ok(un::clamp(t, lo, hi)?))
    })
}
