//! `Tensor` indexing: `[]` get/set, gather/scatter, index_select/index_add, masks, nonzero.
use super::{guard, scaled, PyTensor};
use crate::conv::*;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PySlice, PyTuple};
use rbe_core::ops::binary as bin;
use rbe_core::ops::index::IndexItem;
use rbe_core::ops::{index, shape};
use rbe_core::{DType, Tensor};

#[pymethods]
impl PyTensor {
    fn __getitem__(&self, idx: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let items = parse_index(idx)?;
            guard(|| Ok(index::getitem(&self.t, &items)?))
        })
    }
    fn __setitem__(&self, idx: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::conv::protect(|| {
            let items = parse_index(idx)?;
            let v = operand(value)?;
            check_number_for(&v, self.t.dtype())?;
            index::setitem(&self.t, &items, &v).py()
        })
    }
    fn nonzero(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(index::nonzero(&self.t)?)))
    }
    fn gather(&self, dim: isize, index: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(index::gather(&self.t, dim, &tensor_arg(index, "gather")?)?)))
    }
    fn scatter_add(&self, dim: isize, index: &Bound<'_, PyAny>, src: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            guard(|| Ok(index::scatter_add(&self.t, dim, &tensor_arg(index, "scatter_add")?, &tensor_arg(src, "scatter_add")?)?))
        })
    }
    #[pyo3(signature = (dim, index, src=None, *, value=None))]
    fn scatter(
        &self,
        dim: isize,
        index: &Bound<'_, PyAny>,
        src: Option<&Bound<'_, PyAny>>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let idx = tensor_arg(index, "scatter")?;
            let s = scatter_src(&self.t, &idx, src, value)?;
            guard(|| Ok(index::scatter(&self.t, dim, &idx, &s)?))
        })
    }
    fn index_select(&self, dim: isize, index: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(index::index_select(&self.t, dim, &tensor_arg(index, "index_select")?)?)))
    }
    #[pyo3(signature = (dim, index, source, *, alpha=None))]
    fn index_add(
        &self,
        dim: isize,
        index: &Bound<'_, PyAny>,
        source: &Bound<'_, PyAny>,
        alpha: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let src = scaled(source, alpha)?;
            guard(|| Ok(index::index_add(&self.t, dim, &tensor_arg(index, "index_add")?, &src)?))
        })
    }
    fn masked_fill(&self, mask: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let v = operand(value)?;
            check_number_for(&v, self.t.dtype())?;
            guard(|| Ok(index::masked_fill(&self.t, &tensor_arg(mask, "masked_fill")?, &v)?))
        })
    }
    fn masked_select(&self, mask: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let m = tensor_arg(mask, "masked_select")?;
            let shape = rbe_core::kernels::broadcast_shapes(self.t.shape(), m.shape()).py()?;
            let x = shape::expand(&self.t, &shape).py()?;
            let m = shape::expand(&m, &shape).py()?;
            guard(|| Ok(index::getitem(&x, &[IndexItem::Tensor(m)])?))
        })
    }
    fn masked_fill_(slf: &Bound<'_, Self>, mask: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let m = tensor_arg(mask, "masked_fill_")?;
            let v = operand(value)?;
            check_number_for(&v, slf.get().t.dtype())?;
            bin::inplace(&slf.get().t, "masked_fill_", |x| index::masked_fill(x, &m, &v)).py()?;
            Ok(slf.clone().unbind())
        })
    }
    #[pyo3(signature = (dim, index, source, *, alpha=None))]
    fn index_add_(
        slf: &Bound<'_, Self>,
        dim: isize,
        index: &Bound<'_, PyAny>,
        source: &Bound<'_, PyAny>,
        alpha: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let src = scaled(source, alpha)?;
            let idx = tensor_arg(index, "index_add_")?;
            bin::inplace(&slf.get().t, "index_add_", |x| index::index_add(x, dim, &idx, &src)).py()?;
            Ok(slf.clone().unbind())
        })
    }
    fn scatter_add_(slf: &Bound<'_, Self>, dim: isize, index: &Bound<'_, PyAny>, src: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let s = tensor_arg(src, "scatter_add_")?;
            let idx = tensor_arg(index, "scatter_add_")?;
            bin::inplace(&slf.get().t, "scatter_add_", |x| index::scatter_add(x, dim, &idx, &s)).py()?;
            Ok(slf.clone().unbind())
        })
    }
}

fn parse_one_index(obj: &Bound<'_, PyAny>) -> PyResult<IndexItem> {
    crate::conv::protect(|| {
        let py = obj.py();
        if obj.is_none() {
            return Ok(IndexItem::NewAxis);
        }
        if obj.is(py.Ellipsis()) {
            return Ok(IndexItem::Ellipsis);
        }
        if let Ok(t) = obj.downcast::<PyTensor>() {
            let t = &t.get().t;
            if t.dtype() == DType::I64 && t.ndim() == 0 {
                return Ok(IndexItem::Int(t.item_i64().py()? as isize));
            }
            return Ok(IndexItem::Tensor(t.clone()));
        }
        if obj.is_instance_of::<pyo3::types::PyBool>() {
            return Ok(IndexItem::Tensor(Tensor::scalar(obj.extract::<bool>()?)));
        }
        if let Ok(s) = obj.downcast::<PySlice>() {
            let get = |name: &str| -> PyResult<Option<isize>> {
                let v = s.getattr(name)?;
                if v.is_none() {
                    Ok(None)
                } else {
                    Ok(Some(v.extract::<isize>().map_err(|_| PyTypeError::new_err("slice indices must be integers or None"))?))
                }
            };
            let step = get("step")?.unwrap_or(1);
            if step <= 0 {
                return Err(PyValueError::new_err("step must be greater than zero"));
            }
            return Ok(IndexItem::Slice(get("start")?, get("stop")?, step));
        }
        if obj.is_instance_of::<pyo3::types::PyInt>() || obj.hasattr("__index__")? && !obj.hasattr("__len__")? {
            return Ok(IndexItem::Int(obj.extract::<isize>()?));
        }
        if obj.is_instance_of::<PyList>() || obj.hasattr("__array_interface__")? || obj.is_instance_of::<PyTuple>() {
            let f = py.import("rbe")?.getattr("as_tensor")?;
            let t = f.call1((obj,))?;
            let t = t.downcast::<PyTensor>()?.get().t.clone();
            let t = if t.dtype() == DType::F32 && t.numel() == 0 { rbe_core::kernels::cast(&t, DType::I64) } else { t };
            return Ok(IndexItem::Tensor(t));
        }
        Err(PyTypeError::new_err(format!(
            "only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are valid indices (got {})",
            obj.get_type().name()?
        )))
    })
}

fn parse_index(obj: &Bound<'_, PyAny>) -> PyResult<Vec<IndexItem>> {
    crate::conv::protect(|| {
        if let Ok(t) = obj.downcast::<PyTuple>() {
            return t.iter().map(|o| parse_one_index(&o)).collect();
        }
        Ok(vec![parse_one_index(obj)?])
    })
}

fn scatter_src(x: &Tensor, idx: &Tensor, src: Option<&Bound<'_, PyAny>>, value: Option<&Bound<'_, PyAny>>) -> PyResult<Tensor> {
    crate::conv::protect(|| {
        if let Some(s) = src {
            if let Ok(t) = s.downcast::<PyTensor>() {
                return Ok(t.get().t.clone());
            }
            let v: f64 = s.extract()?;
            return Tensor::full(idx.shape(), v, x.dtype()).py();
        }
        if let Some(v) = value {
            return Tensor::full(idx.shape(), v.extract::<f64>()?, x.dtype()).py();
        }
        Err(PyTypeError::new_err("scatter(): expected either src or value"))
    })
}
