//! Module-level functions of `rbe._core`: creation, random numbers, NumPy
//! interop, grad mode, the autograd engine entry point, and ops that are not
//! methods (cat, stack, where, nn functions, special functions).
use crate::conv::*;
use crate::tensor::{guard, pt, PyTensor};
use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rbe_core::autograd;
use rbe_core::ops::unary::{self as un, Fun};
use rbe_core::ops::{binary as bin, creation, linalg, nn, shape};
use rbe_core::random::Generator;
use rbe_core::storage::Storage;
use rbe_core::{DType, Tensor};
use std::sync::Arc;

/// A random number generator (Philox4x32-10): `rbe.Generator().manual_seed(s)`.
#[pyclass(name = "Generator", module = "rbe", frozen)]
pub struct PyGenerator {
    pub g: Mutex<Generator>,
}

#[pymethods]
impl PyGenerator {
    #[new]
    #[pyo3(signature = (device="cpu"))]
    fn new(device: &str) -> PyResult<Self> {
        crate::conv::protect(|| {
            if device != "cpu" {
                return Err(PyValueError::new_err("rbe generators live on the CPU"));
            }
            Ok(PyGenerator { g: Mutex::new(Generator::new(67280421310721)) })
        })
    }
    fn manual_seed(slf: &Bound<'_, Self>, seed: i128) -> Py<Self> {
        slf.get().g.lock().manual_seed(seed as u64);
        slf.clone().unbind()
    }
    fn initial_seed(&self) -> u64 {
        self.g.lock().seed()
    }
    fn seed(&self) -> u64 {
        let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        self.g.lock().manual_seed(s);
        s
    }
    fn get_state(&self) -> (u64, u64) {
        self.g.lock().get_state()
    }
    fn set_state(&self, state: (u64, u64)) {
        self.g.lock().set_state(state.0, state.1)
    }
    /// Pickled (and deep-copied) with its state: the copy continues the same stream.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<GenReduce<'py>> {
        crate::conv::protect(|| Ok((slf.get_type().into_any(), ("cpu",), slf.get().g.lock().get_state())))
    }
    fn __setstate__(&self, state: (u64, u64)) {
        self.g.lock().set_state(state.0, state.1)
    }
}

/// `Generator.__reduce__`: (the class, its constructor arguments, the state for `__setstate__`).
type GenReduce<'py> = (Bound<'py, PyAny>, (&'static str,), (u64, u64));

/// Run `f` with the generator passed from Python (or the default one).
pub fn with_gen<R>(gen: Option<&Bound<'_, PyAny>>, f: impl FnOnce(Option<&Mutex<Generator>>) -> rbe_core::Result<R>) -> PyResult<R> {
    crate::conv::protect(|| match gen {
        Some(g) if !g.is_none() && !g.hasattr("_is_default_generator")? => {
            let g = g.downcast::<PyGenerator>().map_err(|_| PyTypeError::new_err("generator must be an rbe.Generator"))?;
            f(Some(&g.get().g)).py()
        }
        _ => f(None).py(),
    })
}

fn dt_or_default(dtype: Option<&Bound<'_, PyAny>>) -> PyResult<DType> {
    crate::conv::protect(|| Ok(opt_dtype(dtype)?.unwrap_or_else(rbe_core::default_dtype)))
}

fn finish(f: impl FnOnce() -> Result<Tensor, crate::tensor::GuardErr>, requires_grad: bool) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let t = guard(f)?;
        if requires_grad {
            t.t.set_requires_grad(true).py()?;
        }
        Ok(t)
    })
}

#[pyfunction]
#[pyo3(signature = (shape, dtype=None, requires_grad=false))]
pub(crate) fn zeros(shape: Vec<isize>, dtype: Option<&Bound<'_, PyAny>>, requires_grad: bool) -> PyResult<PyTensor> {
    crate::conv::protect(|| finish(|| Ok(Tensor::zeros(&to_usize_shape(&shape)?, dt_or_default(dtype)?)?), requires_grad))
}

#[pyfunction]
#[pyo3(signature = (shape, fill_value, dtype=None, requires_grad=false))]
pub(crate) fn full(
    shape: Vec<isize>,
    fill_value: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let v = scalar_operand(fill_value)?;
        let dt = match opt_dtype(dtype)? {
            Some(d) => d,
            None => match v.dtype() {
                DType::F64 => rbe_core::default_dtype(),
                d => d,
            },
        };
        let shape = to_usize_shape(&shape)?;
        finish(|| Ok(creation::full_scalar(&shape, &v, dt)?), requires_grad)
    })
}

#[pyfunction]
#[pyo3(signature = (n, m=None, dtype=None, requires_grad=false))]
pub(crate) fn eye(n: usize, m: Option<usize>, dtype: Option<&Bound<'_, PyAny>>, requires_grad: bool) -> PyResult<PyTensor> {
    crate::conv::protect(|| finish(|| Ok(creation::eye(n, m.unwrap_or(n), dt_or_default(dtype)?)), requires_grad))
}

#[pyfunction]
#[pyo3(signature = (start, end, step, dtype=None, requires_grad=false))]
pub(crate) fn arange(
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    step: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let all_int = [start, end, step]
            .iter()
            .all(|o| o.is_instance_of::<pyo3::types::PyInt>() || o.downcast::<PyTensor>().is_ok_and(|t| t.get().t.dtype() == DType::I64));
        let dt = match opt_dtype(dtype)? {
            Some(d) => d,
            None if all_int => DType::I64,
            None => rbe_core::default_dtype(),
        };
        let (s, e, st): (f64, f64, f64) = (start.extract()?, end.extract()?, step.extract()?);
        finish(|| Ok(creation::arange(s, e, st, dt).py()?), requires_grad)
    })
}

#[pyfunction]
#[pyo3(signature = (start, end, steps, dtype=None, requires_grad=false))]
pub(crate) fn linspace(start: f64, end: f64, steps: i64, dtype: Option<&Bound<'_, PyAny>>, requires_grad: bool) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        if steps < 0 {
            return Err(PyValueError::new_err("linspace: number of steps must be non-negative"));
        }
        finish(|| Ok(creation::linspace(start, end, steps as usize, dt_or_default(dtype)?).py()?), requires_grad)
    })
}

#[pyfunction]
#[pyo3(signature = (shape, low=0.0, high=1.0, dtype=None, generator=None, requires_grad=false))]
pub(crate) fn rand(
    shape: Vec<isize>,
    low: f64,
    high: f64,
    dtype: Option<&Bound<'_, PyAny>>,
    generator: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let s = to_usize_shape(&shape)?;
        let dt = dt_or_default(dtype)?;
        finish(|| Ok(with_gen(generator, |g| creation::rand(&s, low, high, dt, g))?), requires_grad)
    })
}

#[pyfunction]
#[pyo3(signature = (shape, mean=0.0, std=1.0, dtype=None, generator=None, requires_grad=false))]
pub(crate) fn randn(
    shape: Vec<isize>,
    mean: f64,
    std: f64,
    dtype: Option<&Bound<'_, PyAny>>,
    generator: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let s = to_usize_shape(&shape)?;
        let dt = dt_or_default(dtype)?;
        finish(|| Ok(with_gen(generator, |g| creation::randn(&s, mean, std, dt, g))?), requires_grad)
    })
}

#[pyfunction]
#[pyo3(signature = (low, high, shape, dtype=None, generator=None))]
pub(crate) fn randint(
    low: i64,
    high: i64,
    shape: Vec<isize>,
    dtype: Option<&Bound<'_, PyAny>>,
    generator: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let s = to_usize_shape(&shape)?;
        let dt = opt_dtype(dtype)?.unwrap_or(DType::I64);
        guard(|| Ok(with_gen(generator, |g| creation::randint(&s, low, high, dt, g))?))
    })
}

#[pyfunction]
#[pyo3(signature = (n, generator=None))]
pub(crate) fn randperm(n: usize, generator: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(with_gen(generator, |g| creation::randperm(n, g))?)))
}

#[pyfunction]
#[pyo3(signature = (input, generator=None))]
pub(crate) fn bernoulli(input: &Bound<'_, PyAny>, generator: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        // elementwise probabilities (checked to be in [0, 1] first): u < p
        let p = tensor_arg(input, "bernoulli")?;
        Ok(pt(with_gen(generator, |g| creation::bernoulli_tensor(&p, g))?))
    })
}

#[pyfunction]
pub(crate) fn manual_seed(seed: i128) {
    creation::manual_seed(seed as u64);
}

#[pyfunction]
pub(crate) fn initial_seed() -> u64 {
    creation::with_default_generator(|g| g.seed())
}

#[pyfunction]
pub(crate) fn get_rng_state() -> (u64, u64) {
    creation::with_default_generator(|g| g.get_state())
}

#[pyfunction]
pub(crate) fn set_rng_state(state: (u64, u64)) {
    creation::with_default_generator(|g| g.set_state(state.0, state.1))
}

#[pyfunction]
pub(crate) fn set_default_dtype(dtype: &Bound<'_, PyAny>) -> PyResult<()> {
    crate::conv::protect(|| {
        let dt = parse_dtype(dtype)?;
        rbe_core::set_default_dtype(dt).map_err(|e| PyTypeError::new_err(e.to_string()))
    })
}

#[pyfunction]
pub(crate) fn get_default_dtype(py: Python<'_>) -> Py<PyDType> {
    dtype_obj(py, rbe_core::default_dtype())
}

#[pyfunction]
pub(crate) fn is_grad_enabled() -> bool {
    autograd::is_grad_enabled()
}

/// Set grad mode for this thread; returns the previous mode.
#[pyfunction]
pub(crate) fn set_grad_enabled(mode: bool) -> bool {
    autograd::set_grad_enabled(mode)
}

struct PyOwner(#[allow(dead_code)] Py<PyAny>);

/// A tensor sharing memory with a NumPy array (any strides, including negative ones).
///
/// The layout is read from the array itself, through a plain `np.ndarray` view
/// of it: a subclass overriding `__array_interface__` (or `shape`, `dtype`,
/// ...) cannot make rbe address memory outside the array. The view must also
/// stay inside the memory that owns it (an `as_strided` view reaching past its
/// base is refused).
#[pyfunction]
pub(crate) fn from_numpy(arr: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let py = arr.py();
        let np = py.import("numpy")?;
        let ndarray = np.getattr("ndarray")?;
        if !arr.get_type().is_subclass(&ndarray)? {
            return Err(PyTypeError::new_err(format!("expected np.ndarray (got {})", arr.get_type().name()?)));
        }
        // np.ndarray.view(arr, np.ndarray): the same memory, as a base-class array
        let view = ndarray.getattr("view")?.call1((arr, &ndarray))?;
        let lay = Layout::of(&view)?;
        let dt = match &lay.typestr[1..] {
            "f4" => DType::F32,
            "f8" => DType::F64,
            "i8" => DType::I64,
            "b1" => DType::Bool,
            _ => {
                let name: String = view.getattr("dtype")?.getattr("name")?.extract()?;
                return Err(PyTypeError::new_err(format!(
                    "can't convert np.ndarray of type numpy.{name}. The only supported types are: float64, float32, int64, and bool."
                )));
            }
        };
        if lay.typestr.starts_with('>') {
            return Err(PyValueError::new_err("given numpy array has byte order different from the native byte order"));
        }
        let isz = dt.size() as i128;
        if lay.strides.iter().any(|x| x % isz != 0) {
            return Err(PyValueError::new_err(
                "given numpy array strides not a multiple of the element byte size. Copy the numpy array to reallocate the memory.",
            ));
        }
        let n_zero = lay.shape.contains(&0);
        let (lo, hi) = lay.span(isz);
        if !n_zero {
            let (blo, bhi) = owner_extent(&view)?;
            if lo < blo || hi > bhi {
                return Err(to_py_err(rbe_core::Error::Value(format!(
                    "from_numpy: the array's shape {:?} and strides {:?} reach bytes [{}, {}) relative to its data, outside the memory that holds it ([{}, {})); copy the array first",
                    lay.shape,
                    lay.strides,
                    lo - lay.ptr,
                    hi - lay.ptr,
                    blo - lay.ptr,
                    bhi - lay.ptr
                ))));
            }
        }
        let shape: Vec<usize> = lay.shape.iter().map(|&d| d as usize).collect();
        let strides: Vec<isize> = lay.strides.iter().map(|&s| (s / isz) as isize).collect();
        let nbytes = if n_zero { 0 } else { (hi - lo) as usize };
        let offset = if n_zero { 0 } else { ((lay.ptr - lo) / isz) as usize };
        let base = if n_zero { std::ptr::NonNull::<u64>::dangling().as_ptr() as *mut u8 } else { lo as usize as *mut u8 };
        let owner = Box::new(PyOwner(view.clone().unbind()));
        // SAFETY: `view` (which holds the array, and so its memory) lives as long
        // as the storage (the owner); [lo, hi) is the span of the view's elements,
        // checked above to be inside the memory block that holds them.
        let st = unsafe { Storage::external(base, nbytes, owner, !lay.readonly) };
        Ok(pt(Tensor::from_storage(Arc::new(st), &shape, &strides, offset, dt).py()?))
    })
}

/// The memory layout of a base-class `np.ndarray`, from its `__array_interface__`.
struct Layout {
    typestr: String,
    shape: Vec<i128>,
    /// In bytes.
    strides: Vec<i128>,
    ptr: i128,
    readonly: bool,
    itemsize: i128,
}

impl Layout {
    /// `view` must be an instance of `np.ndarray` itself (not a subclass).
    fn of(view: &Bound<'_, PyAny>) -> PyResult<Layout> {
        crate::conv::protect(|| {
            let ai = view.getattr("__array_interface__")?;
            let ai = ai.downcast::<PyDict>()?;
            let item = |k: &str| -> PyResult<Bound<'_, PyAny>> {
                ai.get_item(k)?.ok_or_else(|| PyValueError::new_err(format!("from_numpy: the array interface has no '{k}'")))
            };
            let typestr: String = item("typestr")?.extract()?;
            if typestr.len() < 2 {
                return Err(PyValueError::new_err(format!("from_numpy: bad typestr {typestr:?}")));
            }
            let shape: Vec<i128> = item("shape")?.extract::<Vec<u64>>()?.into_iter().map(i128::from).collect();
            let (ptr, readonly): (usize, bool) = item("data")?.extract()?;
            let itemsize: i128 = view.getattr("itemsize")?.extract::<u64>()?.into();
            let strides: Vec<i128> = match ai.get_item("strides")? {
                Some(s) if !s.is_none() => s.extract::<Vec<i64>>()?.into_iter().map(i128::from).collect(),
                _ => {
                    // C-contiguous
                    let mut st = vec![0i128; shape.len()];
                    let mut acc = itemsize;
                    for i in (0..shape.len()).rev() {
                        st[i] = acc;
                        acc = acc.saturating_mul(shape[i].max(1));
                    }
                    st
                }
            };
            if strides.len() != shape.len() {
                return Err(PyValueError::new_err("from_numpy: the array's strides and shape differ in length"));
            }
            Ok(Layout { typestr, shape, strides, ptr: ptr as i128, readonly, itemsize })
        })
    }

    /// Byte addresses [lo, hi) spanned by the elements (sizes that overflow
    /// saturate, and are then refused as outside any buffer).
    fn span(&self, isz: i128) -> (i128, i128) {
        let (mut lo, mut hi) = (self.ptr, self.ptr);
        for (&d, &s) in self.shape.iter().zip(&self.strides) {
            let ext = (d - 1).saturating_mul(s);
            if ext < 0 {
                lo = lo.saturating_add(ext);
            } else {
                hi = hi.saturating_add(ext);
            }
        }
        (lo, hi.saturating_add(isz))
    }
}

/// Byte addresses [lo, hi) of the memory block that holds the elements of the
/// base-class array `view`: found by following `.base` to the array that owns
/// its data, or to the buffer object (bytes, mmap, ...) under it.
fn owner_extent(view: &Bound<'_, PyAny>) -> PyResult<(i128, i128)> {
    crate::conv::protect(|| {
        let py = view.py();
        let np = py.import("numpy")?;
        let ndarray = np.getattr("ndarray")?;
        let base_of = ndarray.getattr("base")?;
        let mut cur = view.clone();
        // bounded walk: numpy collapses chains of views, so this is short
        for _ in 0..64 {
            let base = base_of.call_method1("__get__", (&cur,))?;
            if base.is_none() {
                // `cur` owns its memory: exactly its own span
                let lay = Layout::of(&ndarray.getattr("view")?.call1((&cur, &ndarray))?)?;
                return Ok(lay.span(lay.itemsize));
            }
            if base.get_type().is_subclass(&ndarray)? {
                cur = base;
                continue;
            }
            // a buffer object (bytes, bytearray, mmap, memoryview, ...)
            if let Ok(b) = np.call_method1("frombuffer", (&base, np.getattr("uint8")?)) {
                let lay = Layout::of(&b)?;
                return Ok((lay.ptr, lay.ptr + lay.shape.first().copied().unwrap_or(0)));
            }
            // an object exposing `__array_interface__` over another array (as_strided's)
            match base.getattr("base") {
                Ok(b) if b.get_type().is_subclass(&ndarray)? => {
                    cur = b;
                    continue;
                }
                _ => break,
            }
        }
        // memory rbe cannot see the bounds of: trust numpy's layout of the array
        let lay = Layout::of(&ndarray.getattr("view")?.call1((&cur, &ndarray))?)?;
        Ok(lay.span(lay.itemsize))
    })
}

#[pyfunction]
#[pyo3(signature = (tensors, dim=0))]
pub(crate) fn cat(tensors: Vec<Bound<'_, PyAny>>, dim: isize) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let ts: Vec<Tensor> = tensors.iter().map(|t| tensor_arg(t, "cat")).collect::<PyResult<_>>()?;
        guard(|| Ok(shape::cat(&ts, dim)?))
    })
}

#[pyfunction]
#[pyo3(signature = (tensors, dim=0))]
pub(crate) fn stack(tensors: Vec<Bound<'_, PyAny>>, dim: isize) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let ts: Vec<Tensor> = tensors.iter().map(|t| tensor_arg(t, "stack")).collect::<PyResult<_>>()?;
        guard(|| Ok(shape::stack(&ts, dim)?))
    })
}

#[pyfunction]
#[pyo3(name = "where_")]
pub(crate) fn where_fn(condition: &Bound<'_, PyAny>, input: &Bound<'_, PyAny>, other: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(bin::where_(&tensor_arg(condition, "where")?, &operand(input)?, &operand(other)?)?)))
}

#[pyfunction]
#[pyo3(signature = (input, negative_slope=0.01))]
pub(crate) fn leaky_relu(input: &Bound<'_, PyAny>, negative_slope: f64) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::leaky_relu(&tensor_arg(input, "leaky_relu")?, negative_slope)?)))
}

#[pyfunction]
#[pyo3(signature = (input, alpha=1.0))]
pub(crate) fn elu(input: &Bound<'_, PyAny>, alpha: f64) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::elu(&tensor_arg(input, "elu")?, alpha)?)))
}

#[pyfunction]
#[pyo3(signature = (input, approximate="none"))]
pub(crate) fn gelu(input: &Bound<'_, PyAny>, approximate: &str) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let tanh = match approximate {
            "none" => false,
            "tanh" => true,
            a => return Err(PyValueError::new_err(format!("approximate argument must be either none or tanh, got '{a}'"))),
        };
        guard(|| Ok(un::gelu(&tensor_arg(input, "gelu")?, tanh)?))
    })
}

#[pyfunction]
pub(crate) fn silu(input: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::unary(Fun::Silu, &tensor_arg(input, "silu")?)?)))
}

#[pyfunction]
#[pyo3(signature = (input, beta=1.0, threshold=20.0))]
pub(crate) fn softplus(input: &Bound<'_, PyAny>, beta: f64, threshold: f64) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::softplus(&tensor_arg(input, "softplus")?, beta, threshold)?)))
}

#[pyfunction]
pub(crate) fn ndtr(input: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::unary(Fun::Ndtr, &tensor_arg(input, "ndtr")?)?)))
}

#[pyfunction]
pub(crate) fn log_ndtr(input: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::unary(Fun::LogNdtr, &tensor_arg(input, "log_ndtr")?)?)))
}

#[pyfunction]
pub(crate) fn ndtr_ratio(input: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(un::unary(Fun::NdtrRatio, &tensor_arg(input, "ndtr_ratio")?)?)))
}

#[pyfunction]
#[pyo3(signature = (input, weight, bias=None))]
pub(crate) fn linear(input: &Bound<'_, PyAny>, weight: &Bound<'_, PyAny>, bias: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let b = match bias {
            Some(b) if !b.is_none() => Some(tensor_arg(b, "linear")?),
            _ => None,
        };
        let (x, w) = (tensor_arg(input, "linear")?, tensor_arg(weight, "linear")?);
        crate::tensor::guard_nogil(input.py(), x.numel().saturating_mul(w.shape().first().copied().unwrap_or(1)), || {
            linalg::linear(&x, &w, b.as_ref())
        })
    })
}

#[pyfunction]
#[pyo3(signature = (input, pad, value=0.0))]
pub(crate) fn pad_constant(input: &Bound<'_, PyAny>, pad: Vec<isize>, value: f64) -> PyResult<PyTensor> {
    crate::conv::protect(|| guard(|| Ok(nn::pad_constant(&tensor_arg(input, "pad")?, &pad, value)?)))
}

#[pyfunction]
#[pyo3(signature = (input, p=0.5, training=true, generator=None))]
pub(crate) fn dropout(input: &Bound<'_, PyAny>, p: f64, training: bool, generator: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let x = tensor_arg(input, "dropout")?;
        guard(|| Ok(with_gen(generator, |g| creation::dropout(&x, p, training, g))?))
    })
}

#[pyfunction]
pub(crate) fn broadcast_shapes(py: Python<'_>, shapes: Vec<Vec<usize>>) -> PyResult<Py<PyTuple>> {
    crate::conv::protect(|| {
        let mut out: Vec<usize> = Vec::new();
        for s in &shapes {
            out = rbe_core::kernels::broadcast_shapes(&out, s).py()?.to_vec();
        }
        Ok(PyTuple::new(py, out)?.unbind())
    })
}

/// The engine entry point behind `backward` and `autograd.grad`.
#[pyfunction]
#[pyo3(signature = (outputs, grad_outputs, retain_graph, create_graph, inputs=None, allow_unused=false))]
pub(crate) fn run_backward(
    py: Python<'_>,
    outputs: Vec<Bound<'_, PyAny>>,
    grad_outputs: Vec<Option<Bound<'_, PyAny>>>,
    retain_graph: bool,
    create_graph: bool,
    inputs: Option<Vec<Bound<'_, PyAny>>>,
    allow_unused: bool,
) -> PyResult<PyObject> {
    crate::conv::protect(|| {
        let outs: Vec<Tensor> = outputs.iter().map(|t| tensor_arg(t, "backward")).collect::<PyResult<_>>()?;
        if grad_outputs.len() != outs.len() {
            return Err(PyValueError::new_err(format!(
                "grad_outputs has {} entries but there are {} outputs",
                grad_outputs.len(),
                outs.len()
            )));
        }
        let mut gs = Vec::with_capacity(outs.len());
        for (i, (o, g)) in outs.iter().zip(&grad_outputs).enumerate() {
            gs.push(match g {
                Some(g) if !g.is_none() => {
                    let g = operand(g)?;
                    if g.is_wrapped_scalar() && o.numel() == 1 {
                        Tensor::full(o.shape(), g.item_f64().py()?, o.dtype()).py()?
                    } else {
                        g
                    }
                }
                _ => {
                    if o.numel() != 1 {
                        return Err(to_py_err(rbe_core::autograd_err!(
                            "grad can be implicitly created only for scalar outputs (output {i} has shape {:?})",
                            o.shape()
                        )));
                    }
                    Tensor::ones(o.shape(), o.dtype()).py()?
                }
            });
        }
        let ins: Option<Vec<Tensor>> = match &inputs {
            Some(v) => Some(v.iter().map(|t| tensor_arg(t, "grad")).collect::<PyResult<_>>()?),
            None => None,
        };
        let res = py
            .allow_threads(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    autograd::run_backward(&outs, &gs, retain_graph, create_graph, ins.as_deref(), allow_unused)
                }))
            })
            .map_err(crate::conv::panic_to_py)?
            .py()?;
        if inputs.is_none() {
            return Ok(py.None());
        }
        let items: Vec<PyObject> = res
            .into_iter()
            .map(|r| match r {
                Some(t) => Py::new(py, pt(t)).map(|p| p.into_any()),
                None => Ok(py.None()),
            })
            .collect::<PyResult<_>>()?;
        Ok(PyTuple::new(py, items)?.into_any().unbind())
    })
}

fn tensors(v: &[Bound<'_, PyAny>], what: &str) -> PyResult<Vec<Tensor>> {
    crate::conv::protect(|| v.iter().map(|t| tensor_arg(t, what)).collect())
}

fn opt_tensors(v: &[Option<Bound<'_, PyAny>>], what: &str) -> PyResult<Vec<Option<Tensor>>> {
    crate::conv::protect(|| {
        v.iter()
            .map(|t| match t {
                Some(t) if !t.is_none() => tensor_arg(t, what).map(Some),
                _ => Ok(None),
            })
            .collect()
    })
}

fn opt_tensor(t: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Tensor>> {
    crate::conv::protect(|| match t {
        Some(t) if !t.is_none() => tensor_arg(t, what).map(Some),
        _ => Ok(None),
    })
}

fn same_len(n: usize, lens: &[(usize, &str)]) -> PyResult<()> {
    crate::conv::protect(|| {
        for (l, what) in lens {
            if *l != n {
                return Err(PyValueError::new_err(format!("optimizer step: {what} has {l} entries, expected {n}")));
            }
        }
        Ok(())
    })
}

/// Cross-entropy over logits in one fused op (see `rbe.nn.functional.cross_entropy`).
#[pyfunction]
// text_signature: pyo3 renders the negative default as `...`
#[pyo3(
    signature = (input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0),
    text_signature = "(input, target, weight=None, ignore_index=-100, reduction=\"mean\", label_smoothing=0.0)"
)]
pub(crate) fn cross_entropy(
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    reduction: &str,
    label_smoothing: f64,
) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let x = tensor_arg(input, "cross_entropy")?;
        let t = tensor_arg(target, "cross_entropy")?;
        let w = opt_tensor(weight, "cross_entropy")?;
        let red = rbe_core::ops::loss::Reduction::parse(reduction).py()?;
        guard(|| Ok(rbe_core::ops::loss::cross_entropy(&x, &t, w.as_ref(), ignore_index, red, label_smoothing)?))
    })
}

/// (coefficients (R, C), normaliser) of class-index targets, for nll_loss.
#[pyfunction]
#[pyo3(signature = (target, num_classes, weight, ignore_index, label_smoothing, dtype))]
pub(crate) fn class_coefficients(
    py: Python<'_>,
    target: &Bound<'_, PyAny>,
    num_classes: usize,
    weight: Option<&Bound<'_, PyAny>>,
    ignore_index: i64,
    label_smoothing: f64,
    dtype: &Bound<'_, PyAny>,
) -> PyResult<(Py<PyTensor>, f64)> {
    crate::conv::protect(|| {
        let t = tensor_arg(target, "nll_loss")?;
        let w = opt_tensor(weight, "nll_loss")?;
        let dt = parse_dtype(dtype)?;
        let (a, n) = rbe_core::ops::loss::class_coefficients(&t, num_classes, w.as_ref(), ignore_index, label_smoothing, dt).py()?;
        Ok((Py::new(py, pt(a))?, n))
    })
}

#[pyfunction]
#[pyo3(signature = (params, grads, bufs, first, lr, momentum, dampening, weight_decay, nesterov, maximize))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd_step(
    params: Vec<Bound<'_, PyAny>>,
    grads: Vec<Bound<'_, PyAny>>,
    bufs: Vec<Option<Bound<'_, PyAny>>>,
    first: Vec<bool>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
) -> PyResult<()> {
    crate::conv::protect(|| {
        let (p, g, b) = (tensors(&params, "sgd")?, tensors(&grads, "sgd")?, opt_tensors(&bufs, "sgd")?);
        same_len(p.len(), &[(g.len(), "grads"), (b.len(), "momentum buffers"), (first.len(), "first")])?;
        let cfg = rbe_core::ops::optim::SgdConfig { lr, momentum, dampening, weight_decay, nesterov, maximize };
        rbe_core::ops::optim::sgd_step(&p, &g, &b, &first, cfg).py()
    })
}

#[pyfunction]
#[pyo3(signature = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_step(
    params: Vec<Bound<'_, PyAny>>,
    grads: Vec<Bound<'_, PyAny>>,
    exp_avgs: Vec<Bound<'_, PyAny>>,
    exp_avg_sqs: Vec<Bound<'_, PyAny>>,
    max_exp_avg_sqs: Vec<Option<Bound<'_, PyAny>>>,
    steps: Vec<u64>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    decoupled: bool,
) -> PyResult<()> {
    crate::conv::protect(|| {
        let (p, g) = (tensors(&params, "adam")?, tensors(&grads, "adam")?);
        let (m, v, x) = (tensors(&exp_avgs, "adam")?, tensors(&exp_avg_sqs, "adam")?, opt_tensors(&max_exp_avg_sqs, "adam")?);
        same_len(
            p.len(),
            &[(g.len(), "grads"), (m.len(), "exp_avgs"), (v.len(), "exp_avg_sqs"), (x.len(), "max_exp_avg_sqs"), (steps.len(), "steps")],
        )?;
        let cfg = rbe_core::ops::optim::AdamConfig { lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled };
        let n: usize = p.iter().map(|t| t.numel()).sum();
        let run = move || rbe_core::ops::optim::adam_step(&p, &g, &m, &v, &x, &steps, cfg);
        if n >= 1 << 18 { Python::with_gil(|py| py.allow_threads(run)) } else { run() }.py()
    })
}

#[pyfunction]
#[pyo3(signature = (params, grads, square_avgs, grad_avgs, momentum_buffers, lr, alpha, eps, weight_decay, momentum, centered, maximize))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rmsprop_step(
    params: Vec<Bound<'_, PyAny>>,
    grads: Vec<Bound<'_, PyAny>>,
    square_avgs: Vec<Bound<'_, PyAny>>,
    grad_avgs: Vec<Option<Bound<'_, PyAny>>>,
    momentum_buffers: Vec<Option<Bound<'_, PyAny>>>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
) -> PyResult<()> {
    crate::conv::protect(|| {
        let (p, g, s) = (tensors(&params, "rmsprop")?, tensors(&grads, "rmsprop")?, tensors(&square_avgs, "rmsprop")?);
        let (ga, b) = (opt_tensors(&grad_avgs, "rmsprop")?, opt_tensors(&momentum_buffers, "rmsprop")?);
        same_len(p.len(), &[(g.len(), "grads"), (s.len(), "square_avgs"), (ga.len(), "grad_avgs"), (b.len(), "momentum_buffers")])?;
        let cfg = rbe_core::ops::optim::RmsConfig { lr, alpha, eps, weight_decay, momentum, centered, maximize };
        rbe_core::ops::optim::rmsprop_step(&p, &g, &s, &ga, &b, cfg).py()
    })
}

static NODE_NAMES: parking_lot::Mutex<Vec<&'static str>> = parking_lot::Mutex::new(Vec::new());

fn static_name(name: &str) -> &'static str {
    let mut names = NODE_NAMES.lock();
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

/// Record `outputs` as computed from `inputs` by one Python function whose
/// backward is `backward(*grads) -> tuple of (Tensor | None)`, one per input.
/// An exception raised by `backward` reaches the caller of `backward()` as it was.
#[pyfunction]
#[pyo3(signature = (outputs, inputs, backward, name, materialize_grads=true, saved_outputs=Vec::new()))]
pub(crate) fn attach_py_function(
    outputs: Vec<Bound<'_, PyAny>>,
    inputs: Vec<Bound<'_, PyAny>>,
    backward: &Bound<'_, PyAny>,
    name: &str,
    materialize_grads: bool,
    saved_outputs: Vec<usize>,
) -> PyResult<()> {
    crate::conv::protect(|| {
        let outs = tensors(&outputs, "Function")?;
        let ins = tensors(&inputs, "Function")?;
        let refs: Vec<&Tensor> = ins.iter().collect();
        if !autograd::needs_grad(&refs) || outs.is_empty() {
            return Ok(());
        }
        let shapes: Vec<Vec<usize>> = ins.iter().map(|t| t.shape().to_vec()).collect();
        let f: Py<PyAny> = backward.clone().unbind();
        let n_in = ins.len();
        let out_refs: Vec<&Tensor> = outs.iter().collect();
        // Outputs the Python context saved for backward are held here without
        // their history (as torch's saved variables), so the context does not
        // keep the node alive through its own outputs: that cycle runs through
        // Rust and Python's collector cannot break it. They are handed back,
        // with their history re-attached, as `backward`'s first argument.
        let mut kept = Vec::with_capacity(saved_outputs.len());
        for &k in &saved_outputs {
            let o = outs
                .get(k)
                .ok_or_else(|| to_py_err(rbe_core::value_err!("attach_py_function: saved output {k} of {} outputs", outs.len())))?;
            kept.push(autograd::SavedTensor::output_nr(o, k as u32));
        }
        // One node for all outputs: `backward` runs once per pass and receives a
        // tuple with the gradient of every output (zeros or None where unused).
        autograd::attach_multi(&out_refs, static_name(name), &refs, true, materialize_grads, move |ctx, gs| {
            let restored: Vec<Tensor> = kept.iter().map(|s| s.get(ctx)).collect::<rbe_core::Result<_>>()?;
            Python::with_gil(|py| -> rbe_core::Result<Vec<Option<Tensor>>> {
                let ext = crate::conv::py_to_core_err;
                let mut args = Vec::with_capacity(gs.len() + 1);
                let restored: Vec<PyObject> =
                    restored.into_iter().map(|t| Py::new(py, pt(t)).map(|p| p.into_any())).collect::<PyResult<_>>().map_err(ext)?;
                args.push(PyTuple::new(py, restored).map_err(ext)?.into_any().unbind());
                for g in gs {
                    args.push(match g {
                        Some(g) => Py::new(py, pt(g.clone())).map_err(ext)?.into_any(),
                        None => py.None(),
                    });
                }
                let args = PyTuple::new(py, args).map_err(ext)?;
                let r = f.call1(py, args).map_err(ext)?;
                let r = r.bind(py);
                let items: Vec<Bound<'_, PyAny>> = if let Ok(t) = r.downcast::<PyTuple>() { t.iter().collect() } else { vec![r.clone()] };
                if items.len() < n_in {
                    return Err(rbe_core::Error::Autograd(format!(
                        "function backward returned an incorrect number of gradients (expected {n_in}, got {})",
                        items.len()
                    )));
                }
                let mut out = Vec::with_capacity(n_in);
                for (k, it) in items.iter().take(n_in).enumerate() {
                    if it.is_none() {
                        out.push(None);
                        continue;
                    }
                    let t = it.downcast::<PyTensor>().map_err(|_| {
                        rbe_core::Error::Autograd(format!(
                            "function backward returned a {} for input {k}, expected a Tensor or None",
                            it.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                        ))
                    })?;
                    let t = t.get().t.clone();
                    if t.shape() != &shapes[k][..] {
                        return Err(rbe_core::Error::Shape(format!(
                            "function backward returned an invalid gradient at index {k} - got {:?} but expected shape compatible with {:?}",
                            t.shape(),
                            shapes[k]
                        )));
                    }
                    out.push(Some(t));
                }
                Ok(out)
            })
        })
        .py()
    })
}

#[pyfunction]
pub(crate) fn memory_allocated() -> usize {
    rbe_core::storage::allocated_bytes()
}

#[pyfunction]
pub(crate) fn max_memory_allocated() -> usize {
    rbe_core::storage::peak_bytes()
}

#[pyfunction]
pub(crate) fn reset_peak_memory_stats() {
    rbe_core::storage::reset_peak()
}

/// Counters of the tensor buffer pool, as a dict.
#[pyfunction]
pub(crate) fn memory_stats(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyDict>> {
    crate::conv::protect(|| {
        let s = rbe_core::storage::pool_stats();
        let d = pyo3::types::PyDict::new(py);
        d.set_item("allocated_bytes", s.allocated)?;
        d.set_item("peak_bytes", s.peak)?;
        d.set_item("cached_bytes", s.cached)?;
        d.set_item("pool_hits", s.hits)?;
        d.set_item("pool_misses", s.misses)?;
        d.set_item("pool_limit_bytes", s.limit)?;
        Ok(d)
    })
}

/// Returns this thread's cached tensor buffers to the system.
#[pyfunction]
pub(crate) fn empty_cache() {
    rbe_core::storage::empty_cache()
}

/// Most bytes of freed buffers one thread's pool keeps for reuse.
#[pyfunction]
pub(crate) fn set_pool_limit(nbytes: i64) -> PyResult<()> {
    crate::conv::protect(|| {
        if nbytes <= 0 {
            return Err(PyValueError::new_err(format!("set_pool_limit expects a positive number of bytes, got {nbytes}")));
        }
        rbe_core::storage::set_pool_limit(nbytes as usize);
        Ok(())
    })
}

/// Threads used by parallel kernels (results do not depend on it).
#[pyfunction]
pub(crate) fn set_num_threads(n: i64) -> PyResult<()> {
    crate::conv::protect(|| {
        if n <= 0 || n > 1024 {
            return Err(PyValueError::new_err(format!("set_num_threads expects an integer between 1 and 1024, got {n}")));
        }
        rbe_core::parallel::set_num_threads(n as usize).py()
    })
}

#[pyfunction]
pub(crate) fn get_num_threads() -> usize {
    rbe_core::parallel::num_threads()
}
