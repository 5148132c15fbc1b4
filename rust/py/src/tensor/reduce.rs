//! `Tensor` reductions (sum, mean, max, ...) and softmax.
use super::{guard, pt, py_helper, PyTensor};
use crate::conv::*;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use rbe_core::ops::binary as bin;
use rbe_core::ops::nn;
use rbe_core::ops::reduce::{self as red, Extreme};
use rbe_core::ops::unary as un;
use rbe_core::Tensor;

#[pymethods]
impl PyTensor {
    #[pyo3(signature = (dim=None, keepdim=false, *, dtype=None))]
    fn sum(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let x = cast_opt(&self.t, dtype)?;
            guard(|| Ok(red::sum(&x, dim_opt(dim)?.as_deref(), keepdim)?))
        })
    }
    #[pyo3(signature = (dim=None, keepdim=false, *, dtype=None))]
    fn mean(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let x = cast_opt(&self.t, dtype)?;
            guard(|| Ok(red::mean(&x, dim_opt(dim)?.as_deref(), keepdim)?))
        })
    }
    #[pyo3(signature = (dim=None, keepdim=false, *, dtype=None))]
    fn prod(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let x = cast_opt(&self.t, dtype)?;
            guard(|| Ok(red::prod(&x, dim_opt(dim)?.as_deref(), keepdim)?))
        })
    }
    #[pyo3(signature = (dim=None, unbiased=None, keepdim=false, *, correction=None))]
    fn var(&self, dim: Option<&Bound<'_, PyAny>>, unbiased: Option<bool>, keepdim: bool, correction: Option<f64>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let c = correction_of(unbiased, correction);
            guard(|| Ok(red::var(&self.t, dim_opt(dim)?.as_deref(), c, keepdim)?))
        })
    }
    #[pyo3(signature = (dim=None, unbiased=None, keepdim=false, *, correction=None))]
    fn std(&self, dim: Option<&Bound<'_, PyAny>>, unbiased: Option<bool>, keepdim: bool, correction: Option<f64>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let c = correction_of(unbiased, correction);
            guard(|| Ok(red::std(&self.t, dim_opt(dim)?.as_deref(), c, keepdim)?))
        })
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn amax(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::amax(&self.t, dim_opt(dim)?.as_deref(), keepdim, Extreme::Max)?)))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn amin(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::amax(&self.t, dim_opt(dim)?.as_deref(), keepdim, Extreme::Min)?)))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn max(&self, py: Python<'_>, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyObject> {
        crate::conv::protect(|| max_min(py, &self.t, dim, keepdim, Extreme::Max))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn min(&self, py: Python<'_>, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyObject> {
        crate::conv::protect(|| max_min(py, &self.t, dim, keepdim, Extreme::Min))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn argmax(&self, dim: Option<isize>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::argext(&self.t, dim, keepdim, Extreme::Max)?)))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn argmin(&self, dim: Option<isize>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::argext(&self.t, dim, keepdim, Extreme::Min)?)))
    }
    #[pyo3(signature = (dim, keepdim=false))]
    fn logsumexp(&self, dim: &Bound<'_, PyAny>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::logsumexp(&self.t, parse_dims(Some(dim))?.as_deref(), keepdim)?)))
    }
    #[pyo3(signature = (dim, *, dtype=None))]
    fn cumsum(&self, dim: isize, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let x = cast_opt(&self.t, dtype)?;
            guard(|| Ok(red::cumsum(&x, dim, false)?))
        })
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn all(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::all(&self.t, dim_opt(dim)?.as_deref(), keepdim)?)))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn any(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(red::any(&self.t, dim_opt(dim)?.as_deref(), keepdim)?)))
    }
    #[pyo3(signature = (dim, dtype=None))]
    fn softmax(&self, dim: isize, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(nn::softmax(&cast_opt(&self.t, dtype)?, dim)?)))
    }
    #[pyo3(signature = (dim, dtype=None))]
    fn log_softmax(&self, dim: isize, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(nn::log_softmax(&cast_opt(&self.t, dtype)?, dim)?)))
    }
}

static RETURN_TYPES: GILOnceCell<PyObject> = GILOnceCell::new();

fn dim_opt(dim: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<isize>>> {
    crate::conv::protect(|| parse_dims(dim))
}

fn max_result(py: Python<'_>, name: &str, v: Tensor, i: Tensor) -> PyResult<PyObject> {
    crate::conv::protect(|| {
        let rt = py_helper(py, &RETURN_TYPES, "rbe._return_types", "make")?;
        Ok(rt.call1((name, pt(v), pt(i)))?.unbind())
    })
}

fn cast_opt(t: &Tensor, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<Tensor> {
    crate::conv::protect(|| match opt_dtype(dtype)? {
        Some(dt) => un::to_dtype(t, dt).py(),
        None => Ok(t.clone()),
    })
}

fn correction_of(unbiased: Option<bool>, correction: Option<f64>) -> f64 {
    match (correction, unbiased) {
        (Some(c), _) => c,
        (None, Some(false)) => 0.0,
        _ => 1.0,
    }
}

fn max_min(py: Python<'_>, t: &Tensor, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, which: Extreme) -> PyResult<PyObject> {
    crate::conv::protect(|| match dim {
        Some(d) if !d.is_none() => {
            if let Ok(o) = d.downcast::<PyTensor>() {
                let o = o.get().t.clone();
                let r = if which == Extreme::Max { bin::maximum(t, &o) } else { bin::minimum(t, &o) };
                return Ok(Py::new(py, guard(|| Ok(r?))?)?.into_any());
            }
            let dd: isize = d.extract()?;
            let (v, i) = red::max_dim(t, dd, keepdim, which).py()?;
            max_result(py, if which == Extreme::Max { "max" } else { "min" }, v, i)
        }
        _ => Ok(Py::new(py, guard(|| Ok(red::amax(t, None, false, which)?))?)?.into_any()),
    })
}
