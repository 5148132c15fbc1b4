//! `Tensor` views and shape ops: reshape, transpose, expand, split, ...
use super::{guard, pt, PyTensor};
use crate::conv::*;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rbe_core::ops::shape;
use rbe_core::Tensor;

#[pymethods]
impl PyTensor {
    #[getter(T)]
    fn t_prop(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::t_all(&self.t)?)))
    }
    #[getter(mT)]
    fn mt_prop(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::mt(&self.t)?)))
    }
    fn t(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            if self.t.ndim() > 2 {
                return Err(PyValueError::new_err(format!("t() expects a tensor with <= 2 dimensions, but self is {}D", self.t.ndim())));
            }
            guard(|| Ok(shape::t_all(&self.t)?))
        })
    }
    fn contiguous(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::contiguous(&self.t)?)))
    }
    #[pyo3(signature = (*shape))]
    fn reshape(&self, shape: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::reshape_i(&self.t, &parse_shape_args(shape)?)?)))
    }
    #[pyo3(signature = (*shape))]
    fn view(&self, shape: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            if shape.len() == 1 {
                let a = shape.get_item(0)?;
                if a.downcast::<PyDType>().is_ok() {
                    return Err(PyTypeError::new_err("view(dtype) is not supported"));
                }
            }
            guard(|| Ok(shape::view(&self.t, &parse_shape_args(shape)?)?))
        })
    }
    fn view_as(&self, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let o = tensor_arg(other, "view_as")?;
            let s: Vec<isize> = o.shape().iter().map(|&d| d as isize).collect();
            guard(|| Ok(shape::view(&self.t, &s)?))
        })
    }
    fn reshape_as(&self, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let o = tensor_arg(other, "reshape_as")?;
            guard(|| Ok(shape::reshape(&self.t, o.shape())?))
        })
    }
    // text_signature: pyo3 renders the negative default as `...`
    #[pyo3(signature = (start_dim=0, end_dim=-1), text_signature = "($self, start_dim=0, end_dim=-1)")]
    fn flatten(&self, start_dim: isize, end_dim: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::flatten(&self.t, start_dim, end_dim)?)))
    }
    fn unflatten(&self, dim: isize, sizes: Vec<isize>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::unflatten(&self.t, dim, &sizes)?)))
    }
    fn transpose(&self, dim0: isize, dim1: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::transpose(&self.t, dim0, dim1)?)))
    }
    fn swapaxes(&self, dim0: isize, dim1: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::transpose(&self.t, dim0, dim1)?)))
    }
    #[pyo3(signature = (*dims))]
    fn permute(&self, dims: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::permute(&self.t, &parse_shape_args(dims)?)?)))
    }
    fn movedim(&self, source: &Bound<'_, PyAny>, destination: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let s = parse_dims(Some(source))?.unwrap_or_default();
            let d = parse_dims(Some(destination))?.unwrap_or_default();
            guard(|| Ok(shape::movedim(&self.t, &s, &d)?))
        })
    }
    #[pyo3(signature = (dim=None))]
    fn squeeze(&self, dim: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::squeeze(&self.t, parse_dims(dim)?.as_deref())?)))
    }
    fn unsqueeze(&self, dim: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::unsqueeze(&self.t, dim)?)))
    }
    #[pyo3(signature = (*sizes))]
    fn expand(&self, sizes: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::expand_i(&self.t, &parse_shape_args(sizes)?)?)))
    }
    fn expand_as(&self, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::expand(&self.t, tensor_arg(other, "expand_as")?.shape())?)))
    }
    fn broadcast_to(&self, shape: Vec<isize>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::expand_i(&self.t, &shape)?)))
    }
    #[pyo3(signature = (*sizes))]
    fn repeat(&self, sizes: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let s = to_usize_shape(&parse_shape_args(sizes)?)?;
            guard(|| Ok(shape::repeat(&self.t, &s)?))
        })
    }
    #[pyo3(signature = (*dims))]
    fn flip(&self, dims: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::flip(&self.t, &parse_shape_args(dims)?)?)))
    }
    #[pyo3(signature = (split_size_or_sections, dim=0))]
    fn split(&self, py: Python<'_>, split_size_or_sections: &Bound<'_, PyAny>, dim: isize) -> PyResult<Py<PyTuple>> {
        crate::conv::protect(|| {
            let parts = if let Ok(n) = split_size_or_sections.extract::<usize>() {
                shape::split(&self.t, n, dim).py()?
            } else {
                let v: Vec<usize> = split_size_or_sections.extract()?;
                shape::split_sizes(&self.t, &v, dim).py()?
            };
            tuple_of(py, parts)
        })
    }
    #[pyo3(signature = (chunks, dim=0))]
    fn chunk(&self, py: Python<'_>, chunks: usize, dim: isize) -> PyResult<Py<PyTuple>> {
        crate::conv::protect(|| tuple_of(py, shape::chunk(&self.t, chunks, dim).py()?))
    }
    #[pyo3(signature = (dim=0))]
    fn unbind(&self, py: Python<'_>, dim: isize) -> PyResult<Py<PyTuple>> {
        crate::conv::protect(|| {
            let n = self.t.size_at(dim).py()?;
            let parts: Vec<Tensor> = (0..n).map(|i| shape::select(&self.t, dim, i as isize)).collect::<rbe_core::Result<_>>().py()?;
            tuple_of(py, parts)
        })
    }
    fn narrow(&self, dim: isize, start: isize, length: usize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::narrow(&self.t, dim, start, length)?)))
    }
    fn select(&self, dim: isize, index: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::select(&self.t, dim, index)?)))
    }
    #[pyo3(signature = (diagonal=0))]
    fn tril(&self, diagonal: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::tri(&self.t, diagonal, false)?)))
    }
    #[pyo3(signature = (diagonal=0))]
    fn triu(&self, diagonal: isize) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(shape::tri(&self.t, diagonal, true)?)))
    }
}

fn tuple_of(py: Python<'_>, parts: Vec<Tensor>) -> PyResult<Py<PyTuple>> {
    crate::conv::protect(|| {
        let objs: Vec<Py<PyTensor>> = parts.into_iter().map(|t| Py::new(py, pt(t))).collect::<PyResult<_>>()?;
        Ok(PyTuple::new(py, objs)?.unbind())
    })
}
