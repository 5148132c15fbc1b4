//! `Tensor` methods of autograd: `requires_grad`, `grad`, `grad_fn`, `.data`, `detach`, `backward`.
use super::{pt, PyNode, PyTensor};
use crate::conv::*;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rbe_core::autograd;
use rbe_core::Tensor;

#[pymethods]
impl PyTensor {
    #[getter]
    fn requires_grad(&self) -> bool {
        self.t.requires_grad()
    }
    #[setter(requires_grad)]
    fn set_requires_grad(&self, v: bool) -> PyResult<()> {
        crate::conv::protect(|| self.t.set_requires_grad(v).py())
    }
    #[pyo3(signature = (requires_grad=true))]
    fn requires_grad_(slf: &Bound<'_, Self>, requires_grad: bool) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            slf.get().t.set_requires_grad(requires_grad).py()?;
            Ok(slf.clone().unbind())
        })
    }
    /// The version counter of the tensor's memory (bumped by every in-place write).
    #[getter]
    fn _version(&self) -> u64 {
        self.t.version()
    }
    #[getter]
    fn is_leaf(&self) -> bool {
        self.t.is_leaf()
    }
    #[getter]
    fn grad_fn(&self, py: Python<'_>) -> PyResult<PyObject> {
        crate::conv::protect(|| {
            Ok(match self.t.grad_fn() {
                Some(n) => Py::new(py, PyNode { n })?.into_any(),
                None => py.None(),
            })
        })
    }
    #[getter]
    fn grad(&self) -> Option<PyTensor> {
        self.t.grad().map(pt)
    }
    #[setter(grad)]
    fn set_grad(&self, g: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        crate::conv::protect(|| match g {
            None => self.t.set_grad(None).py(),
            Some(g) if g.is_none() => self.t.set_grad(None).py(),
            Some(g) => self.t.set_grad(Some(tensor_arg(g, "grad")?)).py(),
        })
    }
    #[getter]
    fn retains_grad(&self) -> bool {
        self.t.retains_grad()
    }
    fn retain_grad(&self) -> PyResult<()> {
        crate::conv::protect(|| autograd::retain_grad(&self.t).py())
    }
    #[getter]
    fn data(&self) -> PyTensor {
        pt(self.t.detach())
    }
    #[setter(data)]
    fn set_data(&self, other: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::conv::protect(|| {
            let o = tensor_arg(other, "data")?;
            if o.shape() != self.t.shape() || o.dtype() != self.t.dtype() {
                return Err(PyRuntimeError::new_err(format!(
                    "setting .data to a tensor of a different shape or dtype is not supported (have {:?} {}, got {:?} {})",
                    self.t.shape(),
                    self.t.dtype().name(),
                    o.shape(),
                    o.dtype().name()
                )));
            }
            let _g = autograd::no_grad();
            rbe_core::kernels::copy_into(&self.t.detach(), &o).py()
        })
    }
    fn detach(&self) -> PyTensor {
        pt(self.t.detach())
    }
    fn detach_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let me = &slf.get().t;
            me.detach_in_place();
            Ok(slf.clone().unbind())
        })
    }
    #[pyo3(signature = (gradient=None, retain_graph=None, create_graph=false, inputs=None))]
    fn backward(
        &self,
        py: Python<'_>,
        gradient: Option<&Bound<'_, PyAny>>,
        retain_graph: Option<bool>,
        create_graph: bool,
        inputs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        crate::conv::protect(|| {
            let g = match gradient {
                Some(g) if !g.is_none() => operand(g)?,
                _ => {
                    if self.t.numel() != 1 {
                        return Err(to_py_err(rbe_core::autograd_err!(
                            "grad can be implicitly created only for scalar outputs (got shape {:?})",
                            self.t.shape()
                        )));
                    }
                    Tensor::ones(self.t.shape(), self.t.dtype()).py()?
                }
            };
            let g = if g.shape() != self.t.shape() && g.numel() == self.t.numel() && g.is_wrapped_scalar() {
                Tensor::full(self.t.shape(), g.item_f64().py()?, self.t.dtype()).py()?
            } else {
                g
            };
            if inputs.is_some_and(|i| !i.is_none()) {
                let f = py.import("rbe.autograd")?.getattr("backward")?;
                let kw = PyDict::new(py);
                kw.set_item("grad_tensors", pt(g))?;
                kw.set_item("retain_graph", retain_graph)?;
                kw.set_item("create_graph", create_graph)?;
                kw.set_item("inputs", inputs)?;
                f.call((Py::new(py, pt(self.t.clone()))?,), Some(&kw))?;
                return Ok(());
            }
            let retain = retain_graph.unwrap_or(create_graph);
            // the interpreter is released during backward (Python autograd.Function
            // nodes take it back themselves)
            let t = self.t.clone();
            let r = py.allow_threads(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    autograd::run_backward(&[t], &[g], retain, create_graph, None, false)
                }))
            });
            match r {
                Ok(res) => {
                    res.py()?;
                    Ok(())
                }
                Err(p) => Err(panic_to_py(p)),
            }
        })
    }
}
