//! The `Tensor` class: the pyclass, the guards that turn core errors and
//! panics into Python exceptions, construction, attributes and repr.
//!
//! The methods are split by family into the submodules below, each with its own
//! `#[pymethods] impl PyTensor` block (pyo3's `multiple-pymethods` feature).
mod arith;
mod autograd;
mod convert;
mod fill;
mod index;
mod reduce;
mod shape;
mod unary;

use crate::conv::*;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyTuple;
use rbe_core::ops::binary as bin;
use rbe_core::Tensor;

/// A multi-dimensional array with autograd support (float32/float64/int64/bool, CPU).
#[pyclass(name = "Tensor", module = "rbe", subclass, frozen, weakref)]
pub struct PyTensor {
    pub t: Tensor,
}

/// Run an op, turning its error or any panic into a Python exception.
pub fn guard(f: impl FnOnce() -> Result<Tensor, GuardErr>) -> PyResult<PyTensor> {
    crate::conv::protect(|| match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(t)) => Ok(PyTensor { t }),
        Ok(Err(GuardErr::Core(e))) => Err(to_py_err(e)),
        Ok(Err(GuardErr::Py(e))) => Err(e),
        Err(p) => Err(panic_to_py(p)),
    })
}

/// Work (multiply-adds) above which an op runs with the interpreter released.
const NOGIL_WORK: usize = 1 << 20;

/// `guard` for a core op that may be long: with `work` above the threshold the
/// GIL is released while it runs (other Python threads proceed meanwhile).
pub fn guard_nogil(py: Python<'_>, work: usize, f: impl FnOnce() -> rbe_core::Result<Tensor> + Send) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let run = move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let r = if work >= NOGIL_WORK { py.allow_threads(run) } else { run() };
        match r {
            Ok(Ok(t)) => Ok(PyTensor { t }),
            Ok(Err(e)) => Err(to_py_err(e)),
            Err(p) => Err(panic_to_py(p)),
        }
    })
}

/// Multiply-adds of a matrix product of `a` and `b` (an estimate for `guard_nogil`).
pub fn matmul_work(a: &Tensor, b: &Tensor) -> usize {
    let k = a.shape().last().copied().unwrap_or(1);
    a.numel().saturating_mul(b.numel()) / k.max(1)
}

/// Either kind of error inside a guarded op.
pub enum GuardErr {
    Core(rbe_core::Error),
    Py(PyErr),
}

impl From<rbe_core::Error> for GuardErr {
    fn from(e: rbe_core::Error) -> Self {
        GuardErr::Core(e)
    }
}

impl From<PyErr> for GuardErr {
    fn from(e: PyErr) -> Self {
        GuardErr::Py(e)
    }
}

pub fn pt(t: Tensor) -> PyTensor {
    PyTensor { t }
}

/// A recorded backward node, as seen from Python (`tensor.grad_fn`).
#[pyclass(name = "Node", module = "rbe.autograd", frozen)]
pub struct PyNode {
    pub n: std::sync::Arc<rbe_core::autograd::Node>,
}

#[pymethods]
impl PyNode {
    fn name(&self) -> &'static str {
        self.n.name()
    }
    fn __repr__(&self) -> String {
        format!("<{} object at {:#x}>", self.n.name(), std::sync::Arc::as_ptr(&self.n) as usize)
    }
    #[getter]
    fn next_functions(&self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        crate::conv::protect(|| {
            let mut items: Vec<PyObject> = Vec::with_capacity(self.n.next_functions().len());
            for e in self.n.next_functions() {
                let (node, nr): (PyObject, i64) = match e {
                    Some(e) => (Py::new(py, PyNode { n: e.node.clone() })?.into_any(), e.nr as i64),
                    None => (py.None(), 0),
                };
                items.push(PyTuple::new(py, [node, nr.into_pyobject(py)?.into_any().unbind()])?.into_any().unbind());
            }
            Ok(PyTuple::new(py, items)?.unbind())
        })
    }
}

static REPR_FN: GILOnceCell<PyObject> = GILOnceCell::new();

fn py_helper<'py>(py: Python<'py>, cell: &'static GILOnceCell<PyObject>, module: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    crate::conv::protect(|| {
        let f = cell.get_or_try_init(py, || -> PyResult<PyObject> { Ok(py.import(module)?.getattr(name)?.unbind()) })?;
        Ok(f.bind(py).clone())
    })
}

#[pymethods]
impl PyTensor {
    /// `Tensor(data=None, *, requires_grad=False)`: an alias of `data` (a Tensor) or an empty float tensor.
    #[new]
    #[pyo3(signature = (data=None, *, requires_grad=false))]
    fn py_new(data: Option<&Bound<'_, PyAny>>, requires_grad: bool) -> PyResult<Self> {
        crate::conv::protect(|| {
            let t = match data {
                None => Tensor::empty(&[0], rbe_core::default_dtype()).py()?,
                Some(d) if d.is_none() => Tensor::empty(&[0], rbe_core::default_dtype()).py()?,
                Some(d) => {
                    if let Ok(t) = d.downcast::<PyTensor>() {
                        t.get().t.detach()
                    } else {
                        let f = d.py().import("rbe")?.getattr("tensor")?;
                        f.call1((d,))?.downcast::<PyTensor>()?.get().t.detach()
                    }
                }
            };
            if requires_grad {
                t.set_requires_grad(true).py()?;
            }
            Ok(PyTensor { t })
        })
    }
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| {
            let tup = PyTuple::new(py, self.t.shape())?;
            let size = py.import("rbe._size")?.getattr("Size")?;
            size.call1((tup,))
        })
    }
    #[pyo3(signature = (dim=None))]
    fn size<'py>(&self, py: Python<'py>, dim: Option<isize>) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| match dim {
            Some(d) => Ok(self.t.size_at(d).py()?.into_pyobject(py)?.into_any()),
            None => self.shape(py),
        })
    }
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyDType> {
        dtype_obj(py, self.t.dtype())
    }
    #[getter]
    fn device<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| py.import("rbe")?.getattr("device")?.call1(("cpu",)))
    }
    #[getter]
    fn is_cuda(&self) -> bool {
        false
    }
    #[getter]
    fn ndim(&self) -> usize {
        self.t.ndim()
    }
    fn dim(&self) -> usize {
        self.t.ndim()
    }
    fn ndimension(&self) -> usize {
        self.t.ndim()
    }
    fn numel(&self) -> usize {
        self.t.numel()
    }
    fn nelement(&self) -> usize {
        self.t.numel()
    }
    fn element_size(&self) -> usize {
        self.t.dtype().size()
    }
    #[pyo3(signature = (dim=None))]
    fn stride<'py>(&self, py: Python<'py>, dim: Option<isize>) -> PyResult<Bound<'py, PyAny>> {
        crate::conv::protect(|| match dim {
            Some(d) => {
                self.t.size_at(d).py()?;
                Ok(self.t.strides()[self.t.dim_index(d).py()?].into_pyobject(py)?.into_any())
            }
            None => Ok(PyTuple::new(py, self.t.strides())?.into_any()),
        })
    }
    fn storage_offset(&self) -> usize {
        self.t.offset()
    }
    fn data_ptr(&self) -> usize {
        self.t.storage().ptr() as usize + self.t.offset() * self.t.dtype().size()
    }
    fn is_contiguous(&self) -> bool {
        self.t.is_contiguous()
    }
    fn is_floating_point(&self) -> bool {
        self.t.dtype().is_float()
    }
    fn __len__(&self) -> PyResult<usize> {
        crate::conv::protect(|| {
            if self.t.ndim() == 0 {
                return Err(PyTypeError::new_err("len() of a 0-d tensor"));
            }
            Ok(self.t.shape()[0])
        })
    }
    fn __hash__(&self) -> isize {
        self.t.id() as isize
    }
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        crate::conv::protect(|| {
            let f = py_helper(slf.py(), &REPR_FN, "rbe._tensor_str", "tensor_repr")?;
            f.call1((slf,))?.extract()
        })
    }
}

/// `other * alpha` (just `other` without alpha), for `add`/`sub`/`index_add` and their in-place forms.
fn scaled(other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<Tensor> {
    crate::conv::protect(|| {
        let o = operand(other)?;
        match alpha {
            None => Ok(o),
            Some(a) if a.is_none() => Ok(o),
            Some(a) => bin::mul(&o, &scalar_operand(a)?).py(),
        }
    })
}
