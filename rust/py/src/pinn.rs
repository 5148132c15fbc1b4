//! `rbe._core.pinn`: bindings of the PINN front-end (crate `rbe-pinn`): the
//! Chebyshev basis, the fused ChebyKAN layer and its Taylor-mode form. The
//! Python front-end `rbe.pinn` (`ChebyKAN`, `laplacian`, `Trainer`, ...)
//! builds on these. Stub: `python/rbe/_core/pinn.pyi`.
use crate::conv::*;
use crate::tensor::{guard_nogil, PyTensor};
use pyo3::prelude::*;
use rbe_core::{value_err, Tensor};
use rbe_pinn::{cheb_basis, chebykan, chebykan_taylor, InputMap, Second};

/// The submodule, exported from `_core` in `lib.rs` (which makes it
/// importable as `rbe._core.pinn`). A new function is one name in the `use`
/// list (and its entry in the stub).
#[pymodule(submodule)]
pub mod pinn {
    #[pymodule_export]
    use super::{basis, box_map, layer, taylor};
}

/// Work (multiply-adds) above which a call runs with the interpreter released.
const NOGIL_WORK: usize = 1 << 20;

fn input_map(map: &str, scale: Option<Vec<f64>>, shift: Option<Vec<f64>>) -> PyResult<InputMap> {
    protect(|| match (map, scale, shift) {
        ("tanh", None, None) => Ok(InputMap::Tanh),
        ("tanh", _, _) => Err(value_err!("chebykan: map 'tanh' takes no scale or shift")).py(),
        ("affine", Some(scale), Some(shift)) => Ok(InputMap::Affine { scale, shift }),
        ("affine", _, _) => Err(value_err!("chebykan: map 'affine' needs both scale and shift")).py(),
        (m, _, _) => Err(value_err!("chebykan: map must be 'tanh' or 'affine', got {m:?}")).py(),
    })
}

fn mode(s: &str) -> PyResult<Second> {
    protect(|| match s {
        "gradient" | "none" => Ok(Second::None),
        "laplacian" | "trace" => Ok(Second::Trace),
        "hessian_diag" | "diag" => Ok(Second::Diag),
        _ => Err(value_err!("chebykan_taylor: mode must be 'gradient', 'laplacian' or 'hessian_diag', got {s:?}")).py(),
    })
}

fn opt_tensor(o: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Tensor>> {
    protect(|| match o {
        Some(v) if !v.is_none() => Ok(Some(tensor_arg(v, what)?)),
        _ => Ok(None),
    })
}

/// `T_k^{(order)}(z)` for `k = 0..=degree`, shape `z.shape + (degree + 1,)`.
#[pyfunction]
#[pyo3(signature = (z, degree, order=0))]
pub(crate) fn basis(py: Python<'_>, z: &Bound<'_, PyAny>, degree: usize, order: usize) -> PyResult<PyTensor> {
    protect(|| {
        let z = tensor_arg(z, "cheb_basis")?;
        let work = z.numel().saturating_mul(degree.saturating_add(1)).saturating_mul(order + 1);
        guard_nogil(py, work, || cheb_basis(&z, degree, order))
    })
}

/// The ChebyKAN layer: `input (..., in)`, `coeffs (in, out, degree + 1)`.
#[pyfunction]
#[pyo3(signature = (input, coeffs, map="tanh", scale=None, shift=None))]
pub(crate) fn layer(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    coeffs: &Bound<'_, PyAny>,
    map: &str,
    scale: Option<Vec<f64>>,
    shift: Option<Vec<f64>>,
) -> PyResult<PyTensor> {
    protect(|| {
        let m = input_map(map, scale, shift)?;
        let (x, c) = (tensor_arg(input, "chebykan")?, tensor_arg(coeffs, "chebykan")?);
        let work = x.numel().saturating_mul(c.numel()) / c.shape().first().copied().unwrap_or(1).max(1);
        guard_nogil(py, work, || chebykan(&x, &c, &m))
    })
}

/// The layer in Taylor mode: returns `(value, first, second)` (`second` is
/// `None` in mode `"gradient"`).
#[pyfunction]
#[pyo3(signature = (x, first, second, coeffs, mode="laplacian", map="tanh", scale=None, shift=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn taylor(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    first: Option<&Bound<'_, PyAny>>,
    second: Option<&Bound<'_, PyAny>>,
    coeffs: &Bound<'_, PyAny>,
    mode: &str,
    map: &str,
    scale: Option<Vec<f64>>,
    shift: Option<Vec<f64>>,
) -> PyResult<(PyTensor, PyTensor, Option<PyTensor>)> {
    protect(|| {
        let md = self::mode(mode)?;
        let m = input_map(map, scale, shift)?;
        let x = tensor_arg(x, "chebykan_taylor")?;
        let (j, s) = (opt_tensor(first, "chebykan_taylor")?, opt_tensor(second, "chebykan_taylor")?);
        let c = tensor_arg(coeffs, "chebykan_taylor")?;
        let streams = 1 + j.as_ref().map_or(x.shape().last().copied().unwrap_or(0), |j| j.shape().get(1).copied().unwrap_or(0)) * 2;
        let work = x.numel().saturating_mul(c.numel()).saturating_mul(streams) / c.shape().first().copied().unwrap_or(1).max(1);
        let run = || chebykan_taylor(&x, j.as_ref(), s.as_ref(), &c, &m, md);
        let r = if work >= NOGIL_WORK { py.allow_threads(run) } else { run() }.py()?;
        Ok((PyTensor { t: r.value }, PyTensor { t: r.first }, r.second.map(|t| PyTensor { t })))
    })
}

/// `(scale, shift)` of the affine map of the box `[lo, hi]` onto `[-1, 1]`.
#[pyfunction]
pub(crate) fn box_map(lo: Vec<f64>, hi: Vec<f64>) -> PyResult<(Vec<f64>, Vec<f64>)> {
    protect(|| match InputMap::from_box(&lo, &hi).py()? {
        InputMap::Affine { scale, shift } => Ok((scale, shift)),
        InputMap::Tanh => unreachable!("from_box returns an affine map"),
    })
}
