//! Conversions between Python objects and core values, and error mapping.
use pyo3::exceptions::{PyIndexError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyTuple, PyType};
use rbe_core::{DType, Error, Tensor};

use crate::tensor::PyTensor;

/// The classes of `rbe.errors`, looked up once.
struct ErrorClasses {
    shape: Py<PyType>,
    dtype: Py<PyType>,
    index: Py<PyType>,
    autograd: Py<PyType>,
    argument: Py<PyType>,
    unsupported: Py<PyType>,
    memory: Py<PyType>,
}

static ERROR_CLASSES: GILOnceCell<ErrorClasses> = GILOnceCell::new();

fn error_classes(py: Python<'_>) -> PyResult<&ErrorClasses> {
    ERROR_CLASSES.get_or_try_init(py, || {
        let m = py.import("rbe.errors")?;
        let get = |name: &str| -> PyResult<Py<PyType>> { Ok(m.getattr(name)?.downcast_into::<PyType>()?.unbind()) };
        Ok(ErrorClasses {
            shape: get("ShapeError")?,
            dtype: get("DTypeError")?,
            index: get("RbeIndexError")?,
            autograd: get("AutogradError")?,
            argument: get("ArgumentError")?,
            unsupported: get("UnsupportedError")?,
            memory: get("OutOfMemoryError")?,
        })
    })
}

/// A core error as a Python exception of the `rbe.errors` hierarchy; an
/// error raised by Python code the core called back into comes back as it was.
pub fn to_py_err(e: Error) -> PyErr {
    Python::with_gil(|py| {
        let (class, msg) = match e {
            Error::External(inner) => {
                if let Some(pe) = (&*inner as &(dyn std::error::Error + 'static)).downcast_ref::<PyErr>() {
                    return pe.clone_ref(py);
                }
                return PyRuntimeError::new_err(inner.to_string());
            }
            Error::Shape(m) => (ErrKind::Shape, m),
            Error::DType(m) => (ErrKind::DType, m),
            Error::Index(m) => (ErrKind::Index, m),
            Error::Autograd(m) => (ErrKind::Autograd, m),
            Error::Value(m) => (ErrKind::Argument, m),
            Error::Unsupported(m) => (ErrKind::Unsupported, m),
            Error::Memory(m) => (ErrKind::Memory, m),
        };
        match error_classes(py) {
            Ok(c) => {
                let ty = match class {
                    ErrKind::Shape => &c.shape,
                    ErrKind::DType => &c.dtype,
                    ErrKind::Index => &c.index,
                    ErrKind::Autograd => &c.autograd,
                    ErrKind::Argument => &c.argument,
                    ErrKind::Unsupported => &c.unsupported,
                    ErrKind::Memory => &c.memory,
                };
                PyErr::from_type(ty.bind(py).clone(), msg)
            }
            // rbe.errors could not be imported (interpreter shutting down): builtin classes.
            Err(_) => match class {
                ErrKind::Shape | ErrKind::Argument => PyValueError::new_err(msg),
                ErrKind::DType => PyTypeError::new_err(msg),
                ErrKind::Index => PyIndexError::new_err(msg),
                ErrKind::Memory => pyo3::exceptions::PyMemoryError::new_err(msg),
                ErrKind::Autograd | ErrKind::Unsupported => PyRuntimeError::new_err(msg),
            },
        }
    })
}

#[derive(Clone, Copy)]
enum ErrKind {
    Shape,
    DType,
    Index,
    Autograd,
    Argument,
    Unsupported,
    Memory,
}

/// A Python exception raised by a callback, carried through the core unchanged.
pub fn py_to_core_err(e: PyErr) -> Error {
    Error::external(e)
}

/// Runs a binding's body with panics caught: a Rust panic never reaches
/// Python as `PanicException` (which escapes `except Exception`); an
/// out-of-memory panic becomes `OutOfMemoryError`, any other a `RuntimeError`
/// saying it is an internal error.
#[inline]
pub fn protect<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(panic_to_py(p)),
    }
}

/// A panic caught at the boundary, as a Python exception (MemoryError for allocation failures).
pub fn panic_to_py(p: Box<dyn std::any::Any + Send>) -> PyErr {
    let msg = if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "unknown internal error".to_string()
    };
    if msg.starts_with("out of memory") {
        to_py_err(Error::Memory(msg))
    } else {
        PyRuntimeError::new_err(format!("internal error in rbe (please report): {msg}"))
    }
}

pub trait PyRes<T> {
    fn py(self) -> PyResult<T>;
}
impl<T> PyRes<T> for rbe_core::Result<T> {
    #[inline]
    fn py(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

/// A dtype object (`rbe.float32`, ...). One instance per dtype.
#[pyclass(name = "dtype", module = "rbe", frozen)]
pub struct PyDType {
    pub dt: DType,
}

#[pymethods]
impl PyDType {
    fn __repr__(&self) -> String {
        format!("rbe.{}", self.dt.name())
    }
    #[getter]
    fn is_floating_point(&self) -> bool {
        self.dt.is_float()
    }
    #[getter]
    fn itemsize(&self) -> usize {
        self.dt.size()
    }
    #[getter]
    fn name(&self) -> &'static str {
        self.dt.name()
    }
    /// Pickled by name: `rbe.float32` (and so on) loads back as the same object.
    fn __reduce__(&self) -> &'static str {
        self.dt.name()
    }
    /// A dtype is a singleton: copies are the object itself.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }
    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }
}

static DTYPES: GILOnceCell<[Py<PyDType>; 4]> = GILOnceCell::new();

fn dtype_slot(dt: DType) -> usize {
    match dt {
        DType::Bool => 0,
        DType::I64 => 1,
        DType::F32 => 2,
        DType::F64 => 3,
    }
}

pub fn register_dtypes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let arr = [
        Py::new(py, PyDType { dt: DType::Bool })?,
        Py::new(py, PyDType { dt: DType::I64 })?,
        Py::new(py, PyDType { dt: DType::F32 })?,
        Py::new(py, PyDType { dt: DType::F64 })?,
    ];
    let _ = DTYPES.set(py, arr);
    for dt in [DType::Bool, DType::I64, DType::F32, DType::F64] {
        m.add(dt.name(), dtype_obj(py, dt))?;
    }
    Ok(())
}

pub fn dtype_obj(py: Python<'_>, dt: DType) -> Py<PyDType> {
    DTYPES.get(py).expect("dtypes registered")[dtype_slot(dt)].clone_ref(py)
}

/// Accept an rbe dtype, a NumPy dtype, a string, or the Python types float/int/bool.
pub fn parse_dtype(obj: &Bound<'_, PyAny>) -> PyResult<DType> {
    if let Ok(d) = obj.downcast::<PyDType>() {
        return Ok(d.get().dt);
    }
    let py = obj.py();
    if obj.is(py.get_type::<PyFloat>()) {
        return Ok(DType::F64);
    }
    if obj.is(py.get_type::<PyBool>()) {
        return Ok(DType::Bool);
    }
    if obj.is(py.get_type::<PyInt>()) {
        return Ok(DType::I64);
    }
    let name: Option<String> = if let Ok(s) = obj.extract::<String>() {
        Some(s)
    } else if let Ok(n) = obj.getattr("name") {
        n.extract::<String>().ok()
    } else {
        None
    };
    let name = name.map(|s| s.trim_start_matches("rbe.").trim_start_matches("torch.").to_string());
    if let Some(dt) = name.as_deref().and_then(DType::from_name) {
        return Ok(dt);
    }
    // numpy dtype given as a type (np.float32)
    if let Ok(np) = py.import("numpy") {
        if let Ok(d) = np.call_method1("dtype", (obj,)) {
            if let Ok(n) = d.getattr("name").and_then(|n| n.extract::<String>()) {
                if let Some(dt) = DType::from_name(&n) {
                    return Ok(dt);
                }
                return Err(PyTypeError::new_err(format!("unsupported dtype {n}; rbe supports float32, float64, int64 and bool")));
            }
        }
    }
    Err(PyTypeError::new_err(format!("expected a dtype, got {}", obj.repr()?)))
}

pub fn opt_dtype(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<DType>> {
    match obj {
        None => Ok(None),
        Some(o) if o.is_none() => Ok(None),
        Some(o) => parse_dtype(o).map(Some),
    }
}

/// A Python number or tensor as a tensor operand (numbers become wrapped scalars).
pub fn operand(obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    if let Ok(t) = obj.downcast::<PyTensor>() {
        return Ok(t.get().t.clone());
    }
    scalar_operand(obj)
}

pub fn scalar_operand(obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(Tensor::wrapped_scalar(if obj.extract::<bool>()? { 1.0 } else { 0.0 }, DType::Bool));
    }
    if obj.is_instance_of::<PyInt>() {
        let v: i64 = obj.extract().map_err(|_| PyValueError::new_err("Python integer too large to convert to int64"))?;
        return Ok(Tensor::wrapped_scalar_i64(v));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Tensor::wrapped_scalar(obj.extract::<f64>()?, DType::F64));
    }
    // NumPy scalars and other number-likes
    if obj.hasattr("dtype")? && obj.hasattr("item")? && !obj.hasattr("__array_interface__").unwrap_or(false) {
        return scalar_operand(&obj.call_method0("item")?);
    }
    if obj.hasattr("__index__")? {
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Tensor::wrapped_scalar_i64(v));
        }
    }
    if obj.hasattr("__float__")? && !obj.hasattr("__array_interface__").unwrap_or(false) {
        return Ok(Tensor::wrapped_scalar(obj.extract::<f64>()?, DType::F64));
    }
    if obj.hasattr("__array_interface__").unwrap_or(false) {
        let py = obj.py();
        let f = py.import("rbe")?.getattr("as_tensor")?;
        let t = f.call1((obj,))?;
        return Ok(t.downcast::<PyTensor>()?.get().t.clone());
    }
    Err(PyTypeError::new_err(format!("expected a Tensor or a number, got {}", obj.get_type().name()?)))
}

/// torch's overflow check for a Python number `v` (a wrapped scalar from
/// [`operand`]) written into a tensor of `dt`: NaN, the infinities and values
/// beyond 2^63 refused by int64, finite values beyond its range by float32.
/// A tensor value is cast as tensors are, unchecked (as torch does).
pub fn check_number_for(v: &Tensor, dt: DType) -> PyResult<()> {
    if v.is_wrapped_scalar() && v.dtype().is_float() {
        rbe_core::ops::creation::check_scalar_fits(v.item_f64().py()?, dt).py()?;
    }
    Ok(())
}

pub fn tensor_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    if let Ok(t) = obj.downcast::<PyTensor>() {
        return Ok(t.get().t.clone());
    }
    Err(PyTypeError::new_err(format!("{what}: expected a Tensor, got {}", obj.get_type().name()?)))
}

/// `None`, an int, or a sequence of ints.
pub fn parse_dims(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<isize>>> {
    let Some(o) = obj else { return Ok(None) };
    if o.is_none() {
        return Ok(None);
    }
    if let Ok(i) = o.extract::<isize>() {
        return Ok(Some(vec![i]));
    }
    if o.is_instance_of::<PyTuple>() || o.is_instance_of::<PyList>() {
        let v: Vec<isize> = o.extract()?;
        return Ok(Some(v));
    }
    Err(PyTypeError::new_err(format!("dim must be an int or a tuple of ints, got {}", o.get_type().name()?)))
}

/// Shape given as `*sizes` or a single sequence.
pub fn parse_shape_args(args: &Bound<'_, PyTuple>) -> PyResult<Vec<isize>> {
    if args.len() == 1 {
        let a = args.get_item(0)?;
        if a.is_instance_of::<PyTuple>() || a.is_instance_of::<PyList>() || a.hasattr("__len__")? && !a.is_instance_of::<PyTensor>() {
            let v: Vec<isize> = a.extract().map_err(|_| PyTypeError::new_err("shape must be a sequence of ints"))?;
            return Ok(v);
        }
    }
    let mut v = Vec::with_capacity(args.len());
    for a in args.iter() {
        v.push(a.extract::<isize>().map_err(|_| {
            PyTypeError::new_err(format!(
                "expected a sequence of ints as the shape, got an element of type {}",
                a.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?);
    }
    Ok(v)
}

pub fn to_usize_shape(v: &[isize]) -> PyResult<Vec<usize>> {
    v.iter()
        .map(|&d| {
            if d < 0 {
                Err(PyValueError::new_err(format!("Trying to create tensor with negative dimension {d}: {:?}", v)))
            } else {
                Ok(d as usize)
            }
        })
        .collect()
}
