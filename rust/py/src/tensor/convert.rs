//! `Tensor` conversions: Python numbers and lists, NumPy, dtype casts, `to`, `clone`.
use super::{guard, pt, PyTensor};
use crate::conv::*;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyTuple};
use rbe_core::ops::unary as un;
use rbe_core::{DType, Tensor};
use std::sync::Arc;

#[pymethods]
impl PyTensor {
    fn item<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| match self.t.dtype() {
            DType::I64 => Ok(self.t.item_i64().py()?.into_pyobject(py)?.into_any()),
            DType::Bool => Ok((self.t.item_i64().py()? != 0).into_pyobject(py)?.to_owned().into_any()),
            _ => Ok(self.t.item_f64().py()?.into_pyobject(py)?.into_any()),
        })
    }
    fn tolist(&self, py: Python<'_>) -> PyResult<PyObject> {
        crate::conv::protect(|| {
            let (data, ints) = if self.t.dtype().is_float() { (self.t.to_vec::<f64>(), vec![]) } else { (vec![], self.t.to_vec::<i64>()) };
            let mut off = 0;
            tolist_rec(py, &self.t, &data, &ints, 0, &mut off)
        })
    }
    fn __float__(&self) -> PyResult<f64> {
        crate::conv::protect(|| self.t.item_f64().py())
    }
    /// As Python's `int(float)`: exact, ValueError for NaN, OverflowError for the infinities.
    fn __int__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| {
            if self.t.dtype().is_float() {
                PyFloat::new(py, self.t.item_f64().py()?).call_method0("__int__")
            } else {
                Ok(self.t.item_i64().py()?.into_pyobject(py)?.into_any())
            }
        })
    }
    fn __index__(&self) -> PyResult<i64> {
        crate::conv::protect(|| {
            if self.t.dtype().is_float() || self.t.numel() != 1 {
                return Err(PyTypeError::new_err("only integer tensors of a single element can be converted to an index"));
            }
            self.t.item_i64().py()
        })
    }
    fn __bool__(&self) -> PyResult<bool> {
        crate::conv::protect(|| {
            if self.t.numel() != 1 {
                return Err(PyRuntimeError::new_err(format!(
                    "Boolean value of Tensor with {} values is ambiguous",
                    if self.t.numel() == 0 { "no".to_string() } else { "more than one".to_string() }
                )));
            }
            Ok(self.t.item_f64().py()? != 0.0)
        })
    }
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        crate::conv::protect(|| {
            if self.t.requires_grad() {
                return Err(PyRuntimeError::new_err(
                    "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.",
                ));
            }
            let d = PyDict::new(py);
            let dt = self.t.dtype();
            let typestr = match dt {
                DType::F32 => "<f4",
                DType::F64 => "<f8",
                DType::I64 => "<i8",
                DType::Bool => "|b1",
            };
            let isz = dt.size() as isize;
            d.set_item("shape", PyTuple::new(py, self.t.shape())?)?;
            d.set_item("typestr", typestr)?;
            let strides: Vec<isize> = self.t.strides().iter().map(|s| s * isz).collect();
            d.set_item("strides", PyTuple::new(py, strides)?)?;
            let ptr = if self.t.numel() == 0 { 0 } else { self.data_ptr() };
            d.set_item("data", (ptr, !self.t.storage().writable()))?;
            d.set_item("version", 3)?;
            Ok(d)
        })
    }
    /// A NumPy array sharing this tensor's memory.
    #[pyo3(signature = (*, force=false))]
    fn numpy<'py>(slf: &Bound<'py, Self>, force: bool) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| {
            let py = slf.py();
            let me = slf.get();
            if me.t.requires_grad() && !force {
                return Err(PyRuntimeError::new_err(
                    "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.",
                ));
            }
            let np = py.import("numpy")?;
            if me.t.numel() == 0 {
                let dt = me.t.dtype().name();
                return np.call_method1("zeros", (PyTuple::new(py, me.t.shape())?, dt));
            }
            if me.t.requires_grad() {
                // force=True: a view of the detached data
                let d = Py::new(py, pt(me.t.detach()))?;
                return np.call_method1("asarray", (d,));
            }
            np.call_method1("asarray", (slf,))
        })
    }
    /// `to(dtype)` / `to(other)` / `to("cpu")`; returns self when nothing changes.
    #[pyo3(signature = (*args, dtype=None, device=None, copy=false, non_blocking=false))]
    fn to(
        slf: &Bound<'_, Self>,
        args: &Bound<'_, PyTuple>,
        dtype: Option<&Bound<'_, PyAny>>,
        device: Option<&Bound<'_, PyAny>>,
        copy: bool,
        non_blocking: bool,
    ) -> PyResult<PyObject> {
        crate::conv::protect(|| {
            let _ = (device, non_blocking);
            let py = slf.py();
            let me = &slf.get().t;
            let mut target = opt_dtype(dtype)?;
            for a in args.iter() {
                if let Ok(o) = a.downcast::<PyTensor>() {
                    target = Some(o.get().t.dtype());
                } else if a.downcast::<PyDType>().is_ok() {
                    target = Some(parse_dtype(&a)?);
                } else if let Ok(s) = a.extract::<String>() {
                    if s != "cpu" && !s.starts_with("cpu") {
                        return Err(PyRuntimeError::new_err(format!("rbe runs on the CPU only; cannot move a tensor to device '{s}'")));
                    }
                } else if a.hasattr("type")? {
                    let ty: String = a.getattr("type")?.extract()?;
                    if ty != "cpu" {
                        return Err(PyRuntimeError::new_err(format!("rbe runs on the CPU only; cannot move a tensor to device '{ty}'")));
                    }
                } else {
                    target = Some(parse_dtype(&a)?);
                }
            }
            let dt = target.unwrap_or(me.dtype());
            if dt == me.dtype() && !copy {
                return Ok(slf.clone().into_any().unbind());
            }
            let r = if dt == me.dtype() { un::clone(me) } else { un::to_dtype(me, dt) };
            Ok(Py::new(py, guard(|| Ok(r?))?)?.into_any())
        })
    }
    fn double(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        crate::conv::protect(|| Self::cast_to(slf, DType::F64))
    }
    fn float(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        crate::conv::protect(|| Self::cast_to(slf, DType::F32))
    }
    fn long(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        crate::conv::protect(|| Self::cast_to(slf, DType::I64))
    }
    fn int(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        crate::conv::protect(|| Self::cast_to(slf, DType::I64))
    }
    fn bool(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        crate::conv::protect(|| Self::cast_to(slf, DType::Bool))
    }
    fn type_as(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        crate::conv::protect(|| {
            let dt = tensor_arg(other, "type_as")?.dtype();
            Self::cast_to(slf, dt)
        })
    }
    fn cpu(slf: &Bound<'_, Self>) -> Py<Self> {
        slf.clone().unbind()
    }
    fn clone(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(un::clone(&self.t)?)))
    }
    /// An identity of the memory under this tensor, equal for tensors that
    /// share it (while they live); `copy.deepcopy` keys its memo with it.
    fn _storage_key(&self) -> usize {
        Arc::as_ptr(self.t.storage()) as usize
    }
    /// A copy of all the memory under this tensor, as a new 1-D contiguous
    /// tensor of this dtype (`copy.deepcopy` copies each storage once).
    fn _storage_copy(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let st = self.t.storage();
            let n = st.len_of(self.t.dtype());
            guard(|| {
                let flat = Tensor::from_storage(st.clone(), &[n], &[1], 0, self.t.dtype())?;
                Ok(un::clone(&flat)?)
            })
        })
    }
    /// A tensor with this one's shape, strides and storage offset over the
    /// memory of `storage` (a tensor made by `_storage_copy`); no autograd history.
    fn _restride_onto(&self, storage: &Bound<'_, PyTensor>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let s = &storage.get().t;
            if s.dtype() != self.t.dtype() {
                return Err(to_py_err(rbe_core::dtype_err!(
                    "_restride_onto: storage of dtype {} for a tensor of dtype {}",
                    s.dtype().name(),
                    self.t.dtype().name()
                )));
            }
            // check_view (inside from_storage) refuses a layout that does not fit
            Ok(pt(Tensor::from_storage(s.storage().clone(), self.t.shape(), self.t.strides(), self.t.offset(), self.t.dtype()).py()?))
        })
    }
}

fn tolist_rec(py: Python<'_>, t: &Tensor, data: &[f64], ints: &[i64], dim: usize, off: &mut usize) -> PyResult<PyObject> {
    crate::conv::protect(|| {
        if dim == t.ndim() {
            let i = *off;
            *off += 1;
            return Ok(match t.dtype() {
                DType::Bool => (ints[i] != 0).into_pyobject(py)?.to_owned().into_any().unbind(),
                DType::I64 => ints[i].into_pyobject(py)?.into_any().unbind(),
                _ => data[i].into_pyobject(py)?.into_any().unbind(),
            });
        }
        let mut items = Vec::with_capacity(t.shape()[dim]);
        for _ in 0..t.shape()[dim] {
            items.push(tolist_rec(py, t, data, ints, dim + 1, off)?);
        }
        Ok(PyList::new(py, items)?.into_any().unbind())
    })
}

impl PyTensor {
    fn cast_to(slf: &Bound<'_, Self>, dt: DType) -> PyResult<PyObject> {
        crate::conv::protect(|| {
            let me = &slf.get().t;
            if me.dtype() == dt {
                return Ok(slf.clone().into_any().unbind());
            }
            Ok(Py::new(slf.py(), guard(|| Ok(un::to_dtype(me, dt)?))?)?.into_any())
        })
    }
}
