//! The `Tensor` class.
use crate::conv::*;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyList, PySlice, PyTuple};
use rbe_core::autograd;
use rbe_core::ops::binary::{self as bin, Arith, Bitwise, Cmp};
use rbe_core::ops::index::IndexItem;
use rbe_core::ops::reduce::{self as red, Extreme};
use rbe_core::ops::unary::{self as un, Fun};
use rbe_core::ops::{creation, index, linalg, nn, shape};
use rbe_core::{DType, Tensor};

/// A multi-dimensional array with autograd support (float32/float64/int64/bool, CPU).
#[pyclass(name = "Tensor", module = "rbe", subclass, frozen, weakref)]
pub struct PyTensor {
    pub t: Tensor,
}

/// Run an op, turning its error or any panic into a Python exception.
pub fn guard(f: impl FnOnce() -> Result<Tensor, GuardErr>) -> PyResult<PyTensor> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(t)) => Ok(PyTensor { t }),
        Ok(Err(GuardErr::Core(e))) => Err(to_py_err(e)),
        Ok(Err(GuardErr::Py(e))) => Err(e),
        Err(p) => Err(panic_to_py(p)),
    }
}

/// Work (multiply-adds) above which an op runs with the interpreter released.
const NOGIL_WORK: usize = 1 << 20;

/// `guard` for a core op that may be long: with `work` above the threshold the
/// GIL is released while it runs (other Python threads proceed meanwhile).
pub fn guard_nogil(py: Python<'_>, work: usize, f: impl FnOnce() -> rbe_core::Result<Tensor> + Send) -> PyResult<PyTensor> {
    let run = move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let r = if work >= NOGIL_WORK { py.allow_threads(run) } else { run() };
    match r {
        Ok(Ok(t)) => Ok(PyTensor { t }),
        Ok(Err(e)) => Err(to_py_err(e)),
        Err(p) => Err(panic_to_py(p)),
    }
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
    pub n: std::sync::Arc<autograd::Node>,
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
        let items: Vec<PyObject> = self
            .n
            .next_functions()
            .iter()
            .map(|e| {
                let (node, nr): (PyObject, i64) = match e {
                    Some(e) => (Py::new(py, PyNode { n: e.node.clone() }).unwrap().into_any(), e.nr as i64),
                    None => (py.None(), 0),
                };
                PyTuple::new(py, [node, nr.into_pyobject(py).unwrap().into_any().unbind()]).unwrap().into_any().unbind()
            })
            .collect();
        Ok(PyTuple::new(py, items)?.unbind())
    }
}

static REPR_FN: GILOnceCell<PyObject> = GILOnceCell::new();
static RETURN_TYPES: GILOnceCell<PyObject> = GILOnceCell::new();

fn py_helper<'py>(py: Python<'py>, cell: &'static GILOnceCell<PyObject>, module: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    let f = cell.get_or_try_init(py, || -> PyResult<PyObject> { Ok(py.import(module)?.getattr(name)?.unbind()) })?;
    Ok(f.bind(py).clone())
}

fn parse_one_index(obj: &Bound<'_, PyAny>) -> PyResult<IndexItem> {
    let py = obj.py();
    if obj.is_none() {
        return Ok(IndexItem::NewAxis);
    }
    if obj.is(&py.Ellipsis()) {
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
}

fn parse_index(obj: &Bound<'_, PyAny>) -> PyResult<Vec<IndexItem>> {
    if let Ok(t) = obj.downcast::<PyTuple>() {
        return t.iter().map(|o| parse_one_index(&o)).collect();
    }
    Ok(vec![parse_one_index(obj)?])
}

fn tolist_rec(py: Python<'_>, t: &Tensor, data: &[f64], ints: &[i64], dim: usize, off: &mut usize) -> PyResult<PyObject> {
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
}

fn arith_op(op: Arith, a: &Tensor, other: &Bound<'_, PyAny>, reflected: bool) -> PyResult<PyTensor> {
    let b = operand(other)?;
    if reflected {
        guard(|| Ok(bin::arith(op, &b, a)?))
    } else {
        guard(|| Ok(bin::arith(op, a, &b)?))
    }
}

fn dim_opt(dim: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<isize>>> {
    parse_dims(dim)
}

fn max_result(py: Python<'_>, name: &str, v: Tensor, i: Tensor) -> PyResult<PyObject> {
    let rt = py_helper(py, &RETURN_TYPES, "rbe._return_types", "make")?;
    Ok(rt.call1((name, pt(v), pt(i)))?.unbind())
}

#[pymethods]
impl PyTensor {
    /// `Tensor(data=None, *, requires_grad=False)`: an alias of `data` (a Tensor) or an empty float tensor.
    #[new]
    #[pyo3(signature = (data=None, *, requires_grad=false))]
    fn py_new(data: Option<&Bound<'_, PyAny>>, requires_grad: bool) -> PyResult<Self> {
        let t = match data {
            None => Tensor::empty(&[0], rbe_core::default_dtype()),
            Some(d) if d.is_none() => Tensor::empty(&[0], rbe_core::default_dtype()),
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
    }

    // ------------------------------------------------------------ attributes
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let tup = PyTuple::new(py, self.t.shape())?;
        let size = py.import("rbe._size")?.getattr("Size")?;
        size.call1((tup,))
    }
    #[pyo3(signature = (dim=None))]
    fn size<'py>(&self, py: Python<'py>, dim: Option<isize>) -> PyResult<Bound<'py, PyAny>> {
        match dim {
            Some(d) => Ok(self.t.size_at(d).py()?.into_pyobject(py)?.into_any()),
            None => self.shape(py),
        }
    }
    #[getter]
    fn dtype(&self, py: Python<'_>) -> Py<PyDType> {
        dtype_obj(py, self.t.dtype())
    }
    #[getter]
    fn device<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import("rbe")?.getattr("device")?.call1(("cpu",))
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
        match dim {
            Some(d) => {
                self.t.size_at(d).py()?;
                Ok(self.t.strides()[self.t.dim_index(d).py()?].into_pyobject(py)?.into_any())
            }
            None => Ok(PyTuple::new(py, self.t.strides())?.into_any()),
        }
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
    #[getter]
    fn requires_grad(&self) -> bool {
        self.t.requires_grad()
    }
    #[setter(requires_grad)]
    fn set_requires_grad(&self, v: bool) -> PyResult<()> {
        self.t.set_requires_grad(v).py()
    }
    #[pyo3(signature = (requires_grad=true))]
    fn requires_grad_(slf: &Bound<'_, Self>, requires_grad: bool) -> PyResult<Py<Self>> {
        slf.get().t.set_requires_grad(requires_grad).py()?;
        Ok(slf.clone().unbind())
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
        Ok(match self.t.grad_fn() {
            Some(n) => Py::new(py, PyNode { n })?.into_any(),
            None => py.None(),
        })
    }
    #[getter]
    fn grad(&self) -> Option<PyTensor> {
        self.t.grad().map(pt)
    }
    #[setter(grad)]
    fn set_grad(&self, g: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        match g {
            None => self.t.set_grad(None).py(),
            Some(g) if g.is_none() => self.t.set_grad(None).py(),
            Some(g) => self.t.set_grad(Some(tensor_arg(g, "grad")?)).py(),
        }
    }
    #[getter]
    fn retains_grad(&self) -> bool {
        self.t.retains_grad()
    }
    fn retain_grad(&self) -> PyResult<()> {
        autograd::retain_grad(&self.t).py()
    }
    #[getter]
    fn data(&self) -> PyTensor {
        pt(self.t.detach())
    }
    #[setter(data)]
    fn set_data(&self, other: &Bound<'_, PyAny>) -> PyResult<()> {
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
    }
    #[getter(T)]
    fn t_prop(&self) -> PyResult<PyTensor> {
        guard(|| Ok(shape::t_all(&self.t)?))
    }
    #[getter(mT)]
    fn mt_prop(&self) -> PyResult<PyTensor> {
        guard(|| Ok(shape::mt(&self.t)?))
    }
    fn t(&self) -> PyResult<PyTensor> {
        if self.t.ndim() > 2 {
            return Err(PyValueError::new_err(format!("t() expects a tensor with <= 2 dimensions, but self is {}D", self.t.ndim())));
        }
        guard(|| Ok(shape::t_all(&self.t)?))
    }

    // ------------------------------------------------------------ conversion
    fn item<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.t.dtype() {
            DType::I64 => Ok(self.t.item_i64().py()?.into_pyobject(py)?.into_any()),
            DType::Bool => Ok((self.t.item_i64().py()? != 0).into_pyobject(py)?.to_owned().into_any()),
            _ => Ok(self.t.item_f64().py()?.into_pyobject(py)?.into_any()),
        }
    }
    fn tolist(&self, py: Python<'_>) -> PyResult<PyObject> {
        let (data, ints) = if self.t.dtype().is_float() { (self.t.to_vec::<f64>(), vec![]) } else { (vec![], self.t.to_vec::<i64>()) };
        let mut off = 0;
        tolist_rec(py, &self.t, &data, &ints, 0, &mut off)
    }
    fn __float__(&self) -> PyResult<f64> {
        self.t.item_f64().py()
    }
    fn __int__(&self) -> PyResult<i64> {
        if self.t.dtype().is_float() {
            Ok(self.t.item_f64().py()?.trunc() as i64)
        } else {
            self.t.item_i64().py()
        }
    }
    fn __index__(&self) -> PyResult<i64> {
        if self.t.dtype().is_float() || self.t.numel() != 1 {
            return Err(PyTypeError::new_err("only integer tensors of a single element can be converted to an index"));
        }
        self.t.item_i64().py()
    }
    fn __bool__(&self) -> PyResult<bool> {
        if self.t.numel() != 1 {
            return Err(PyRuntimeError::new_err(format!(
                "Boolean value of Tensor with {} values is ambiguous",
                if self.t.numel() == 0 { "no".to_string() } else { "more than one".to_string() }
            )));
        }
        Ok(self.t.item_f64().py()? != 0.0)
    }
    fn __len__(&self) -> PyResult<usize> {
        if self.t.ndim() == 0 {
            return Err(PyTypeError::new_err("len() of a 0-d tensor"));
        }
        Ok(self.t.shape()[0])
    }
    fn __hash__(&self) -> isize {
        self.t.id() as isize
    }
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let f = py_helper(slf.py(), &REPR_FN, "rbe._tensor_str", "tensor_repr")?;
        f.call1((slf,))?.extract()
    }
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if self.t.requires_grad() {
            return Err(PyRuntimeError::new_err("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."));
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
    }
    /// A NumPy array sharing this tensor's memory.
    #[pyo3(signature = (*, force=false))]
    fn numpy<'py>(slf: &Bound<'py, Self>, force: bool) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        if me.t.requires_grad() && !force {
            return Err(PyRuntimeError::new_err("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead."));
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
    }
    fn double(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        Self::cast_to(slf, DType::F64)
    }
    fn float(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        Self::cast_to(slf, DType::F32)
    }
    fn long(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        Self::cast_to(slf, DType::I64)
    }
    fn int(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        Self::cast_to(slf, DType::I64)
    }
    fn bool(slf: &Bound<'_, Self>) -> PyResult<PyObject> {
        Self::cast_to(slf, DType::Bool)
    }
    fn type_as(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<PyObject> {
        let dt = tensor_arg(other, "type_as")?.dtype();
        Self::cast_to(slf, dt)
    }
    fn cpu(slf: &Bound<'_, Self>) -> Py<Self> {
        slf.clone().unbind()
    }
    fn clone(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::clone(&self.t)?))
    }
    fn detach(&self) -> PyTensor {
        pt(self.t.detach())
    }
    fn detach_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        let me = &slf.get().t;
        me.detach_in_place();
        Ok(slf.clone().unbind())
    }
    fn contiguous(&self) -> PyResult<PyTensor> {
        guard(|| Ok(shape::contiguous(&self.t)?))
    }

    // ------------------------------------------------------------ autograd
    #[pyo3(signature = (gradient=None, retain_graph=None, create_graph=false, inputs=None))]
    fn backward(
        &self,
        py: Python<'_>,
        gradient: Option<&Bound<'_, PyAny>>,
        retain_graph: Option<bool>,
        create_graph: bool,
        inputs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let g = match gradient {
            Some(g) if !g.is_none() => operand(g)?,
            _ => {
                if self.t.numel() != 1 {
                    return Err(to_py_err(rbe_core::autograd_err!(
                        "grad can be implicitly created only for scalar outputs (got shape {:?})",
                        self.t.shape()
                    )));
                }
                Tensor::ones(self.t.shape(), self.t.dtype())
            }
        };
        let g = if g.shape() != self.t.shape() && g.numel() == self.t.numel() && g.is_wrapped_scalar() {
            Tensor::full(self.t.shape(), g.item_f64().py()?, self.t.dtype())
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
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| autograd::run_backward(&[t], &[g], retain, create_graph, None, false)))
        });
        match r {
            Ok(res) => {
                res.py()?;
                Ok(())
            }
            Err(p) => Err(panic_to_py(p)),
        }
    }

    // ------------------------------------------------------------ arithmetic dunders
    fn __add__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Add, &self.t, o, false)
    }
    fn __radd__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Add, &self.t, o, true)
    }
    fn __sub__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Sub, &self.t, o, false)
    }
    fn __rsub__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Sub, &self.t, o, true)
    }
    fn __mul__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Mul, &self.t, o, false)
    }
    fn __rmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Mul, &self.t, o, true)
    }
    fn __truediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Div, &self.t, o, false)
    }
    fn __rtruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Div, &self.t, o, true)
    }
    fn __floordiv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::FloorDiv, &self.t, o, false)
    }
    fn __rfloordiv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::FloorDiv, &self.t, o, true)
    }
    fn __mod__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Rem, &self.t, o, false)
    }
    fn __rmod__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Rem, &self.t, o, true)
    }
    fn __pow__(&self, o: &Bound<'_, PyAny>, _m: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        arith_op(Arith::Pow, &self.t, o, false)
    }
    fn __rpow__(&self, o: &Bound<'_, PyAny>, _m: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        arith_op(Arith::Pow, &self.t, o, true)
    }
    fn __matmul__(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let b = tensor_arg(o, "matmul")?;
        guard_nogil(py, matmul_work(&self.t, &b), || linalg::matmul(&self.t, &b))
    }
    fn __rmatmul__(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let a = tensor_arg(o, "matmul")?;
        guard_nogil(py, matmul_work(&a, &self.t), || linalg::matmul(&a, &self.t))
    }
    fn __neg__(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::neg(&self.t)?))
    }
    fn __pos__(slf: &Bound<'_, Self>) -> Py<Self> {
        slf.clone().unbind()
    }
    fn __abs__(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::abs(&self.t)?))
    }
    fn __invert__(&self) -> PyResult<PyTensor> {
        match self.t.dtype() {
            DType::Bool => guard(|| Ok(bin::logical_not(&self.t)?)),
            DType::I64 => guard(|| Ok(rbe_core::ops::binary::bitwise(Bitwise::Xor, &self.t, &Tensor::wrapped_scalar_i64(-1))?)),
            d => Err(PyTypeError::new_err(format!("~ (bitwise_not) is only supported for integer and bool tensors, got {}", d.name()))),
        }
    }
    fn __and__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::bitwise(Bitwise::And, &self.t, &operand(o)?)?))
    }
    fn __rand__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::bitwise(Bitwise::And, &operand(o)?, &self.t)?))
    }
    fn __or__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::bitwise(Bitwise::Or, &self.t, &operand(o)?)?))
    }
    fn __ror__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::bitwise(Bitwise::Or, &operand(o)?, &self.t)?))
    }
    fn __xor__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::bitwise(Bitwise::Xor, &self.t, &operand(o)?)?))
    }
    fn __rxor__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::bitwise(Bitwise::Xor, &operand(o)?, &self.t)?))
    }
    fn __richcmp__(&self, o: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<PyObject> {
        let py = o.py();
        let other = match operand(o) {
            Ok(t) => t,
            Err(_) => {
                return Ok(match op {
                    CompareOp::Eq => false.into_pyobject(py)?.to_owned().into_any().unbind(),
                    CompareOp::Ne => true.into_pyobject(py)?.to_owned().into_any().unbind(),
                    _ => py.NotImplemented(),
                })
            }
        };
        let c = match op {
            CompareOp::Eq => Cmp::Eq,
            CompareOp::Ne => Cmp::Ne,
            CompareOp::Lt => Cmp::Lt,
            CompareOp::Le => Cmp::Le,
            CompareOp::Gt => Cmp::Gt,
            CompareOp::Ge => Cmp::Ge,
        };
        Ok(Py::new(py, guard(|| Ok(bin::compare(c, &self.t, &other)?))?)?.into_any())
    }
    fn __iadd__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        bin::arith_(Arith::Add, &self.t, &operand(o)?).py()
    }
    fn __isub__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        bin::arith_(Arith::Sub, &self.t, &operand(o)?).py()
    }
    fn __imul__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        bin::arith_(Arith::Mul, &self.t, &operand(o)?).py()
    }
    fn __itruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        bin::arith_(Arith::Div, &self.t, &operand(o)?).py()
    }
    fn __ipow__(&self, o: &Bound<'_, PyAny>, _m: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        bin::arith_(Arith::Pow, &self.t, &operand(o)?).py()
    }
    fn __getitem__(&self, idx: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let items = parse_index(idx)?;
        guard(|| Ok(index::getitem(&self.t, &items)?))
    }
    fn __setitem__(&self, idx: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let items = parse_index(idx)?;
        let v = operand(value)?;
        index::setitem(&self.t, &items, &v).py()
    }

    // ------------------------------------------------------------ named arithmetic
    #[pyo3(signature = (other, *, alpha=None))]
    fn add(&self, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        let o = scaled(other, alpha)?;
        guard(|| Ok(bin::add(&self.t, &o)?))
    }
    #[pyo3(signature = (other, *, alpha=None))]
    fn sub(&self, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        let o = scaled(other, alpha)?;
        guard(|| Ok(bin::sub(&self.t, &o)?))
    }
    fn mul(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Mul, &self.t, o, false)
    }
    #[pyo3(signature = (other, *, rounding_mode=None))]
    fn div(&self, other: &Bound<'_, PyAny>, rounding_mode: Option<&str>) -> PyResult<PyTensor> {
        let o = operand(other)?;
        match rounding_mode {
            None => guard(|| Ok(bin::div(&self.t, &o)?)),
            Some("floor") => guard(|| Ok(bin::arith(Arith::FloorDiv, &self.t, &o)?)),
            Some("trunc") => {
                let q = bin::div(&self.t, &o).py()?;
                let r = un::unary(Fun::Trunc, &q).py()?;
                let dt = rbe_core::ops::promote(&[&self.t, &o]);
                guard(|| Ok(rbe_core::ops::as_dtype(&r, dt)?))
            }
            Some(m) => {
                Err(PyValueError::new_err(format!("div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '{m}'")))
            }
        }
    }
    fn true_divide(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Div, &self.t, o, false)
    }
    fn floor_divide(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::FloorDiv, &self.t, o, false)
    }
    fn remainder(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Rem, &self.t, o, false)
    }
    fn pow(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        arith_op(Arith::Pow, &self.t, o, false)
    }
    fn maximum(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::maximum(&self.t, &tensor_arg(o, "maximum")?)?))
    }
    fn minimum(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::minimum(&self.t, &tensor_arg(o, "minimum")?)?))
    }
    fn atan2(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::arith(Arith::Atan2, &self.t, &tensor_arg(o, "atan2")?)?))
    }
    fn eq(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::eq(&self.t, &operand(o)?)?))
    }
    fn ne(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::ne(&self.t, &operand(o)?)?))
    }
    fn lt(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::lt(&self.t, &operand(o)?)?))
    }
    fn le(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::le(&self.t, &operand(o)?)?))
    }
    fn gt(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::gt(&self.t, &operand(o)?)?))
    }
    fn ge(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::ge(&self.t, &operand(o)?)?))
    }
    fn logical_and(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::logical_and(&self.t, &operand(o)?)?))
    }
    fn logical_or(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::logical_or(&self.t, &operand(o)?)?))
    }
    fn logical_xor(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(bin::logical_xor(&self.t, &operand(o)?)?))
    }
    fn logical_not(&self) -> PyResult<PyTensor> {
        guard(|| Ok(bin::logical_not(&self.t)?))
    }
    fn equal(&self, o: &Bound<'_, PyAny>) -> PyResult<bool> {
        let o = tensor_arg(o, "equal")?;
        if o.shape() != self.t.shape() {
            return Ok(false);
        }
        let e = bin::eq(&self.t, &o).py()?;
        Ok(e.to_vec::<bool>().iter().all(|&b| b))
    }
    fn matmul(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let b = tensor_arg(o, "matmul")?;
        guard_nogil(py, matmul_work(&self.t, &b), || linalg::matmul(&self.t, &b))
    }
    fn mm(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let b = tensor_arg(o, "mm")?;
        guard_nogil(py, matmul_work(&self.t, &b), || linalg::mm(&self.t, &b))
    }
    fn bmm(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let b = tensor_arg(o, "bmm")?;
        guard_nogil(py, matmul_work(&self.t, &b), || linalg::bmm(&self.t, &b))
    }
    fn mv(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(linalg::mv(&self.t, &tensor_arg(o, "mv")?)?))
    }
    fn dot(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(linalg::dot(&self.t, &tensor_arg(o, "dot")?)?))
    }
    fn outer(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(linalg::outer(&self.t, &tensor_arg(o, "outer")?)?))
    }

    // ------------------------------------------------------------ unary
    fn neg(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::neg(&self.t)?))
    }
    fn negative(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::neg(&self.t)?))
    }
    fn abs(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::abs(&self.t)?))
    }
    fn sign(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::sign(&self.t)?))
    }
    fn exp(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Exp, &self.t)?))
    }
    fn expm1(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Expm1, &self.t)?))
    }
    fn log(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Log, &self.t)?))
    }
    fn log1p(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Log1p, &self.t)?))
    }
    fn log2(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Log2, &self.t)?))
    }
    fn log10(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Log10, &self.t)?))
    }
    fn sqrt(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Sqrt, &self.t)?))
    }
    fn rsqrt(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Rsqrt, &self.t)?))
    }
    fn square(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Square, &self.t)?))
    }
    fn reciprocal(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Reciprocal, &self.t)?))
    }
    fn sin(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Sin, &self.t)?))
    }
    fn cos(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Cos, &self.t)?))
    }
    fn tan(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Tan, &self.t)?))
    }
    fn asin(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Asin, &self.t)?))
    }
    fn acos(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Acos, &self.t)?))
    }
    fn atan(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Atan, &self.t)?))
    }
    fn sinh(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Sinh, &self.t)?))
    }
    fn cosh(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Cosh, &self.t)?))
    }
    fn tanh(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Tanh, &self.t)?))
    }
    fn sigmoid(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Sigmoid, &self.t)?))
    }
    fn relu(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Relu, &self.t)?))
    }
    fn erf(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Erf, &self.t)?))
    }
    fn erfc(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Erfc, &self.t)?))
    }
    fn floor(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Floor, &self.t)?))
    }
    fn ceil(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Ceil, &self.t)?))
    }
    fn round(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Round, &self.t)?))
    }
    fn trunc(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Trunc, &self.t)?))
    }
    fn frac(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::unary(Fun::Frac, &self.t)?))
    }
    #[pyo3(signature = (eps=None))]
    fn logit(&self, eps: Option<f64>) -> PyResult<PyTensor> {
        guard(|| Ok(un::logit(&self.t, eps)?))
    }
    fn isnan(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::isnan(&self.t)?))
    }
    fn isinf(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::isinf(&self.t)?))
    }
    fn isfinite(&self) -> PyResult<PyTensor> {
        guard(|| Ok(un::isfinite(&self.t)?))
    }
    #[pyo3(signature = (min=None, max=None))]
    fn clamp(&self, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        clamp_impl(&self.t, min, max)
    }
    #[pyo3(signature = (min=None, max=None))]
    fn clip(&self, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        clamp_impl(&self.t, min, max)
    }

    // ------------------------------------------------------------ reductions
    #[pyo3(signature = (dim=None, keepdim=false, *, dtype=None))]
    fn sum(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        let x = cast_opt(&self.t, dtype)?;
        guard(|| Ok(red::sum(&x, dim_opt(dim)?.as_deref(), keepdim)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false, *, dtype=None))]
    fn mean(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        let x = cast_opt(&self.t, dtype)?;
        guard(|| Ok(red::mean(&x, dim_opt(dim)?.as_deref(), keepdim)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false, *, dtype=None))]
    fn prod(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        let x = cast_opt(&self.t, dtype)?;
        guard(|| Ok(red::prod(&x, dim_opt(dim)?.as_deref(), keepdim)?))
    }
    #[pyo3(signature = (dim=None, unbiased=None, keepdim=false, *, correction=None))]
    fn var(&self, dim: Option<&Bound<'_, PyAny>>, unbiased: Option<bool>, keepdim: bool, correction: Option<f64>) -> PyResult<PyTensor> {
        let c = correction_of(unbiased, correction);
        guard(|| Ok(red::var(&self.t, dim_opt(dim)?.as_deref(), c, keepdim)?))
    }
    #[pyo3(signature = (dim=None, unbiased=None, keepdim=false, *, correction=None))]
    fn std(&self, dim: Option<&Bound<'_, PyAny>>, unbiased: Option<bool>, keepdim: bool, correction: Option<f64>) -> PyResult<PyTensor> {
        let c = correction_of(unbiased, correction);
        guard(|| Ok(red::std(&self.t, dim_opt(dim)?.as_deref(), c, keepdim)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn amax(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::amax(&self.t, dim_opt(dim)?.as_deref(), keepdim, Extreme::Max)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn amin(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::amax(&self.t, dim_opt(dim)?.as_deref(), keepdim, Extreme::Min)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn max(&self, py: Python<'_>, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyObject> {
        max_min(py, &self.t, dim, keepdim, Extreme::Max)
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn min(&self, py: Python<'_>, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyObject> {
        max_min(py, &self.t, dim, keepdim, Extreme::Min)
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn argmax(&self, dim: Option<isize>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::argext(&self.t, dim, keepdim, Extreme::Max)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn argmin(&self, dim: Option<isize>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::argext(&self.t, dim, keepdim, Extreme::Min)?))
    }
    #[pyo3(signature = (dim, keepdim=false))]
    fn logsumexp(&self, dim: &Bound<'_, PyAny>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::logsumexp(&self.t, parse_dims(Some(dim))?.as_deref(), keepdim)?))
    }
    #[pyo3(signature = (dim, *, dtype=None))]
    fn cumsum(&self, dim: isize, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        let x = cast_opt(&self.t, dtype)?;
        guard(|| Ok(red::cumsum(&x, dim, false)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn all(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::all(&self.t, dim_opt(dim)?.as_deref(), keepdim)?))
    }
    #[pyo3(signature = (dim=None, keepdim=false))]
    fn any(&self, dim: Option<&Bound<'_, PyAny>>, keepdim: bool) -> PyResult<PyTensor> {
        guard(|| Ok(red::any(&self.t, dim_opt(dim)?.as_deref(), keepdim)?))
    }
    #[pyo3(signature = (dim, dtype=None))]
    fn softmax(&self, dim: isize, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        guard(|| Ok(nn::softmax(&cast_opt(&self.t, dtype)?, dim)?))
    }
    #[pyo3(signature = (dim, dtype=None))]
    fn log_softmax(&self, dim: isize, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        guard(|| Ok(nn::log_softmax(&cast_opt(&self.t, dtype)?, dim)?))
    }
    fn nonzero(&self) -> PyResult<PyTensor> {
        guard(|| Ok(index::nonzero(&self.t)?))
    }

    // ------------------------------------------------------------ shape
    #[pyo3(signature = (*shape))]
    fn reshape(&self, shape: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::reshape_i(&self.t, &parse_shape_args(shape)?)?))
    }
    #[pyo3(signature = (*shape))]
    fn view(&self, shape: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        if shape.len() == 1 {
            let a = shape.get_item(0)?;
            if a.downcast::<PyDType>().is_ok() {
                return Err(PyTypeError::new_err("view(dtype) is not supported"));
            }
        }
        guard(|| Ok(shape::view(&self.t, &parse_shape_args(shape)?)?))
    }
    fn view_as(&self, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let o = tensor_arg(other, "view_as")?;
        let s: Vec<isize> = o.shape().iter().map(|&d| d as isize).collect();
        guard(|| Ok(shape::view(&self.t, &s)?))
    }
    fn reshape_as(&self, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let o = tensor_arg(other, "reshape_as")?;
        guard(|| Ok(shape::reshape(&self.t, o.shape())?))
    }
    #[pyo3(signature = (start_dim=0, end_dim=-1))]
    fn flatten(&self, start_dim: isize, end_dim: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::flatten(&self.t, start_dim, end_dim)?))
    }
    fn unflatten(&self, dim: isize, sizes: Vec<isize>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::unflatten(&self.t, dim, &sizes)?))
    }
    fn transpose(&self, dim0: isize, dim1: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::transpose(&self.t, dim0, dim1)?))
    }
    fn swapaxes(&self, dim0: isize, dim1: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::transpose(&self.t, dim0, dim1)?))
    }
    #[pyo3(signature = (*dims))]
    fn permute(&self, dims: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::permute(&self.t, &parse_shape_args(dims)?)?))
    }
    fn movedim(&self, source: &Bound<'_, PyAny>, destination: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let s = parse_dims(Some(source))?.unwrap_or_default();
        let d = parse_dims(Some(destination))?.unwrap_or_default();
        guard(|| Ok(shape::movedim(&self.t, &s, &d)?))
    }
    #[pyo3(signature = (dim=None))]
    fn squeeze(&self, dim: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::squeeze(&self.t, parse_dims(dim)?.as_deref())?))
    }
    fn unsqueeze(&self, dim: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::unsqueeze(&self.t, dim)?))
    }
    #[pyo3(signature = (*sizes))]
    fn expand(&self, sizes: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::expand_i(&self.t, &parse_shape_args(sizes)?)?))
    }
    fn expand_as(&self, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::expand(&self.t, tensor_arg(other, "expand_as")?.shape())?))
    }
    fn broadcast_to(&self, shape: Vec<isize>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::expand_i(&self.t, &shape)?))
    }
    #[pyo3(signature = (*sizes))]
    fn repeat(&self, sizes: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        let s = to_usize_shape(&parse_shape_args(sizes)?)?;
        guard(|| Ok(shape::repeat(&self.t, &s)?))
    }
    #[pyo3(signature = (*dims))]
    fn flip(&self, dims: &Bound<'_, PyTuple>) -> PyResult<PyTensor> {
        guard(|| Ok(shape::flip(&self.t, &parse_shape_args(dims)?)?))
    }
    #[pyo3(signature = (split_size_or_sections, dim=0))]
    fn split(&self, py: Python<'_>, split_size_or_sections: &Bound<'_, PyAny>, dim: isize) -> PyResult<Py<PyTuple>> {
        let parts = if let Ok(n) = split_size_or_sections.extract::<usize>() {
            shape::split(&self.t, n, dim).py()?
        } else {
            let v: Vec<usize> = split_size_or_sections.extract()?;
            shape::split_sizes(&self.t, &v, dim).py()?
        };
        tuple_of(py, parts)
    }
    #[pyo3(signature = (chunks, dim=0))]
    fn chunk(&self, py: Python<'_>, chunks: usize, dim: isize) -> PyResult<Py<PyTuple>> {
        tuple_of(py, shape::chunk(&self.t, chunks, dim).py()?)
    }
    #[pyo3(signature = (dim=0))]
    fn unbind(&self, py: Python<'_>, dim: isize) -> PyResult<Py<PyTuple>> {
        let n = self.t.size_at(dim).py()?;
        let parts: Vec<Tensor> = (0..n).map(|i| shape::select(&self.t, dim, i as isize)).collect::<rbe_core::Result<_>>().py()?;
        tuple_of(py, parts)
    }
    fn narrow(&self, dim: isize, start: isize, length: usize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::narrow(&self.t, dim, start, length)?))
    }
    fn select(&self, dim: isize, index: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::select(&self.t, dim, index)?))
    }
    #[pyo3(signature = (diagonal=0))]
    fn tril(&self, diagonal: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::tri(&self.t, diagonal, false)?))
    }
    #[pyo3(signature = (diagonal=0))]
    fn triu(&self, diagonal: isize) -> PyResult<PyTensor> {
        guard(|| Ok(shape::tri(&self.t, diagonal, true)?))
    }

    // ------------------------------------------------------------ indexing ops
    fn gather(&self, dim: isize, index: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(index::gather(&self.t, dim, &tensor_arg(index, "gather")?)?))
    }
    fn scatter_add(&self, dim: isize, index: &Bound<'_, PyAny>, src: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(index::scatter_add(&self.t, dim, &tensor_arg(index, "scatter_add")?, &tensor_arg(src, "scatter_add")?)?))
    }
    #[pyo3(signature = (dim, index, src=None, *, value=None))]
    fn scatter(
        &self,
        dim: isize,
        index: &Bound<'_, PyAny>,
        src: Option<&Bound<'_, PyAny>>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyTensor> {
        let idx = tensor_arg(index, "scatter")?;
        let s = scatter_src(&self.t, &idx, src, value)?;
        guard(|| Ok(index::scatter(&self.t, dim, &idx, &s)?))
    }
    fn index_select(&self, dim: isize, index: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(index::index_select(&self.t, dim, &tensor_arg(index, "index_select")?)?))
    }
    #[pyo3(signature = (dim, index, source, *, alpha=None))]
    fn index_add(
        &self,
        dim: isize,
        index: &Bound<'_, PyAny>,
        source: &Bound<'_, PyAny>,
        alpha: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyTensor> {
        let src = scaled(source, alpha)?;
        guard(|| Ok(index::index_add(&self.t, dim, &tensor_arg(index, "index_add")?, &src)?))
    }
    fn masked_fill(&self, mask: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        guard(|| Ok(index::masked_fill(&self.t, &tensor_arg(mask, "masked_fill")?, &operand(value)?)?))
    }
    fn masked_select(&self, mask: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let m = tensor_arg(mask, "masked_select")?;
        let shape = rbe_core::kernels::broadcast_shapes(self.t.shape(), m.shape()).py()?;
        let x = shape::expand(&self.t, &shape).py()?;
        let m = shape::expand(&m, &shape).py()?;
        guard(|| Ok(index::getitem(&x, &[IndexItem::Tensor(m)])?))
    }

    // ------------------------------------------------------------ in-place
    #[pyo3(signature = (other, *, alpha=None))]
    fn add_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        let o = scaled(other, alpha)?;
        bin::arith_(Arith::Add, &slf.get().t, &o).py()?;
        Ok(slf.clone().unbind())
    }
    #[pyo3(signature = (other, *, alpha=None))]
    fn sub_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        let o = scaled(other, alpha)?;
        bin::arith_(Arith::Sub, &slf.get().t, &o).py()?;
        Ok(slf.clone().unbind())
    }
    fn mul_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        bin::arith_(Arith::Mul, &slf.get().t, &operand(other)?).py()?;
        Ok(slf.clone().unbind())
    }
    fn div_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        bin::arith_(Arith::Div, &slf.get().t, &operand(other)?).py()?;
        Ok(slf.clone().unbind())
    }
    fn pow_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        bin::arith_(Arith::Pow, &slf.get().t, &operand(other)?).py()?;
        Ok(slf.clone().unbind())
    }
    fn zero_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        fill_impl(&slf.get().t, 0.0)?;
        Ok(slf.clone().unbind())
    }
    fn fill_(slf: &Bound<'_, Self>, value: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        let v = operand(value)?;
        if v.numel() != 1 {
            return Err(PyValueError::new_err(format!(
                "fill_ only supports 0-dimension value tensor but got tensor with {} dimensions.",
                v.ndim()
            )));
        }
        if v.requires_grad() {
            bin::inplace(&slf.get().t, "fill_", |x| shape::expand(&rbe_core::ops::as_dtype(&v, x.dtype())?, x.shape())).py()?;
        } else {
            fill_impl(&slf.get().t, v.item_f64().py()?)?;
        }
        Ok(slf.clone().unbind())
    }
    #[pyo3(signature = (min=None, max=None))]
    fn clamp_(slf: &Bound<'_, Self>, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
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
    }
    fn copy_(slf: &Bound<'_, Self>, src: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
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
    }
    fn masked_fill_(slf: &Bound<'_, Self>, mask: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        let m = tensor_arg(mask, "masked_fill_")?;
        let v = operand(value)?;
        bin::inplace(&slf.get().t, "masked_fill_", |x| index::masked_fill(x, &m, &v)).py()?;
        Ok(slf.clone().unbind())
    }
    #[pyo3(signature = (dim, index, source, *, alpha=None))]
    fn index_add_(
        slf: &Bound<'_, Self>,
        dim: isize,
        index: &Bound<'_, PyAny>,
        source: &Bound<'_, PyAny>,
        alpha: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Self>> {
        let src = scaled(source, alpha)?;
        let idx = tensor_arg(index, "index_add_")?;
        bin::inplace(&slf.get().t, "index_add_", |x| index::index_add(x, dim, &idx, &src)).py()?;
        Ok(slf.clone().unbind())
    }
    fn scatter_add_(slf: &Bound<'_, Self>, dim: isize, index: &Bound<'_, PyAny>, src: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        let s = tensor_arg(src, "scatter_add_")?;
        let idx = tensor_arg(index, "scatter_add_")?;
        bin::inplace(&slf.get().t, "scatter_add_", |x| index::scatter_add(x, dim, &idx, &s)).py()?;
        Ok(slf.clone().unbind())
    }
    fn exp_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        unary_inplace(slf, Fun::Exp)
    }
    fn log_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        unary_inplace(slf, Fun::Log)
    }
    fn sqrt_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        unary_inplace(slf, Fun::Sqrt)
    }
    fn sigmoid_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        unary_inplace(slf, Fun::Sigmoid)
    }
    fn tanh_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        unary_inplace(slf, Fun::Tanh)
    }
    fn relu_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        unary_inplace(slf, Fun::Relu)
    }
    fn neg_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        bin::inplace(&slf.get().t, "neg_", un::neg).py()?;
        Ok(slf.clone().unbind())
    }
    fn abs_(slf: &Bound<'_, Self>) -> PyResult<Py<Self>> {
        bin::inplace(&slf.get().t, "abs_", un::abs).py()?;
        Ok(slf.clone().unbind())
    }
    #[pyo3(signature = (low=0.0, high=1.0, *, generator=None))]
    fn uniform_(slf: &Bound<'_, Self>, low: f64, high: f64, generator: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        let me = &slf.get().t;
        let r = crate::functions::with_gen(generator, |g| creation::rand(me.shape(), low, high, float_or_err(me)?, g))?;
        random_fill(me, &r)?;
        Ok(slf.clone().unbind())
    }
    #[pyo3(signature = (mean=0.0, std=1.0, *, generator=None))]
    fn normal_(slf: &Bound<'_, Self>, mean: f64, std: f64, generator: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        let me = &slf.get().t;
        let r = crate::functions::with_gen(generator, |g| creation::randn(me.shape(), mean, std, float_or_err(me)?, g))?;
        random_fill(me, &r)?;
        Ok(slf.clone().unbind())
    }
    #[pyo3(signature = (p=0.5, *, generator=None))]
    fn bernoulli_(slf: &Bound<'_, Self>, p: f64, generator: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        let me = &slf.get().t;
        let r = crate::functions::with_gen(generator, |g| creation::bernoulli(me.shape(), p, me.dtype(), g))?;
        random_fill(me, &r)?;
        Ok(slf.clone().unbind())
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
    bin::check_inplace(me).py()?;
    rbe_core::kernels::copy_into(me, r).py()
}

fn unary_inplace(slf: &Bound<'_, PyTensor>, f: Fun) -> PyResult<Py<PyTensor>> {
    bin::inplace(&slf.get().t, "unary_", |x| un::unary(f, x)).py()?;
    Ok(slf.clone().unbind())
}

fn fill_impl(t: &Tensor, v: f64) -> PyResult<()> {
    if autograd::is_grad_enabled() && t.requires_grad() {
        bin::inplace(t, "fill_", |x| Ok(Tensor::full(x.shape(), v, x.dtype()))).py()
    } else {
        bin::check_inplace(t).py()?;
        un::fill_raw(t, v);
        Ok(())
    }
}

impl PyTensor {
    fn cast_to(slf: &Bound<'_, Self>, dt: DType) -> PyResult<PyObject> {
        let me = &slf.get().t;
        if me.dtype() == dt {
            return Ok(slf.clone().into_any().unbind());
        }
        Ok(Py::new(slf.py(), guard(|| Ok(un::to_dtype(me, dt)?))?)?.into_any())
    }
}

fn tuple_of(py: Python<'_>, parts: Vec<Tensor>) -> PyResult<Py<PyTuple>> {
    let objs: Vec<Py<PyTensor>> = parts.into_iter().map(|t| Py::new(py, pt(t))).collect::<PyResult<_>>()?;
    Ok(PyTuple::new(py, objs)?.unbind())
}

fn scaled(other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<Tensor> {
    let o = operand(other)?;
    match alpha {
        None => Ok(o),
        Some(a) if a.is_none() => Ok(o),
        Some(a) => bin::mul(&o, &scalar_operand(a)?).py(),
    }
}

fn cast_opt(t: &Tensor, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<Tensor> {
    match opt_dtype(dtype)? {
        Some(dt) => un::to_dtype(t, dt).py(),
        None => Ok(t.clone()),
    }
}

fn correction_of(unbiased: Option<bool>, correction: Option<f64>) -> f64 {
    match (correction, unbiased) {
        (Some(c), _) => c,
        (None, Some(false)) => 0.0,
        _ => 1.0,
    }
}

fn bound_value(o: Option<&Bound<'_, PyAny>>) -> PyResult<(Option<f64>, Option<Tensor>)> {
    match o {
        None => Ok((None, None)),
        Some(v) if v.is_none() => Ok((None, None)),
        Some(v) => {
            if let Ok(t) = v.downcast::<PyTensor>() {
                Ok((None, Some(t.get().t.clone())))
            } else {
                Ok((Some(v.extract::<f64>()?), None))
            }
        }
    }
}

fn clamp_impl(t: &Tensor, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
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
}

fn max_min(py: Python<'_>, t: &Tensor, dim: Option<&Bound<'_, PyAny>>, keepdim: bool, which: Extreme) -> PyResult<PyObject> {
    match dim {
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
    }
}

fn scatter_src(x: &Tensor, idx: &Tensor, src: Option<&Bound<'_, PyAny>>, value: Option<&Bound<'_, PyAny>>) -> PyResult<Tensor> {
    if let Some(s) = src {
        if let Ok(t) = s.downcast::<PyTensor>() {
            return Ok(t.get().t.clone());
        }
        let v: f64 = s.extract()?;
        return Ok(Tensor::full(idx.shape(), v, x.dtype()));
    }
    if let Some(v) = value {
        return Ok(Tensor::full(idx.shape(), v.extract::<f64>()?, x.dtype()));
    }
    Err(PyTypeError::new_err("scatter(): expected either src or value"))
}
