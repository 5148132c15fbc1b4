//! `rbe._core.iclv`: bindings of the ICLV front-end (crate `rbe-iclv`): the
//! fused hot-path ops of `rbe.iclv` (ordered-response and MNL
//! log-probabilities, panel sums, log-mean-exp over draws). The Python
//! front-end `rbe.iclv` builds on these. Stub: `python/rbe/_core/iclv.pyi`.
use crate::conv::*;
use crate::tensor::{guard_nogil, PyTensor};
use pyo3::prelude::*;
use rbe_core::{value_err, Tensor};
use rbe_iclv::Link;

/// The submodule, exported from `_core` in `lib.rs` (importable as
/// `rbe._core.iclv`). A new function is one name in the `use` list (and its
/// entry in the stub).
#[pymodule(submodule)]
pub mod iclv {
    #[pymodule_export]
    use super::{expand_rows, log_mean_exp, mnl_logprob, mnl_probs, ordered_logprob, ordered_rho, panel_sum};
}

/// Work (elements times a cost) above which a call runs with the interpreter released.
const NOGIL_WORK: usize = 1 << 16;

fn link_of(op: &str, s: &str) -> PyResult<Link> {
    Link::parse(s).ok_or_else(|| value_err!("{op}: link must be 'probit' or 'logit', got {s:?}")).py()
}

fn opt_tensor(o: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Tensor>> {
    match o {
        Some(v) if !v.is_none() => Ok(Some(tensor_arg(v, what)?)),
        _ => Ok(None),
    }
}

fn tensors(o: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Tensor>> {
    let mut out = Vec::new();
    for (j, item) in o.try_iter()?.enumerate() {
        out.push(tensor_arg(&item?, &format!("{what}[{j}]"))?);
    }
    Ok(out)
}

/// Runs `f` (with the interpreter released when `work` is large), turning
/// core errors and panics into Python exceptions.
fn run<T: Send>(py: Python<'_>, work: usize, f: impl FnOnce() -> rbe_core::Result<T> + Send) -> PyResult<T> {
    let go = move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let r = if work >= NOGIL_WORK { py.allow_threads(go) } else { go() };
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_py_err(e)),
        Err(p) => Err(panic_to_py(p)),
    }
}

/// `log P(y | v)` of an ordered probit or logit, the shape of `v` `(N, ...)`.
#[pyfunction]
#[pyo3(signature = (v, tau, y, link="probit"))]
pub(crate) fn ordered_logprob(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    tau: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    link: &str,
) -> PyResult<PyTensor> {
    protect(|| {
        let op = "ordered_logprob";
        let (v, tau, y) =
            (tensor_arg(v, &format!("{op}: v"))?, tensor_arg(tau, &format!("{op}: tau"))?, tensor_arg(y, &format!("{op}: y"))?);
        let link = link_of(op, link)?;
        guard_nogil(py, v.numel().saturating_mul(8), || rbe_iclv::ordered_logprob(&v, &tau, &y, link))
    })
}

/// `(rho_a, rho_b) = (f(a) / P, f(b) / P)`: the derivatives of `ordered_logprob`
/// with respect to the lower and upper thresholds are `-rho_a` and `rho_b`.
#[pyfunction]
#[pyo3(signature = (v, tau, y, link="probit"))]
pub(crate) fn ordered_rho(
    py: Python<'_>,
    v: &Bound<'_, PyAny>,
    tau: &Bound<'_, PyAny>,
    y: &Bound<'_, PyAny>,
    link: &str,
) -> PyResult<(PyTensor, PyTensor)> {
    protect(|| {
        let op = "ordered_rho";
        let (v, tau, y) =
            (tensor_arg(v, &format!("{op}: v"))?, tensor_arg(tau, &format!("{op}: tau"))?, tensor_arg(y, &format!("{op}: y"))?);
        let link = link_of(op, link)?;
        let (a, b) = run(py, v.numel().saturating_mul(8), || rbe_iclv::ordered_rho(&v, &tau, &y, link))?;
        Ok((PyTensor { t: a }, PyTensor { t: b }))
    })
}

/// Log-probability of the chosen alternative of a multinomial logit, `(M, R)`.
#[pyfunction]
#[pyo3(signature = (utilities, choice, avail=None))]
pub(crate) fn mnl_logprob(
    py: Python<'_>,
    utilities: &Bound<'_, PyAny>,
    choice: &Bound<'_, PyAny>,
    avail: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    protect(|| {
        let op = "mnl_logprob";
        let us = tensors(utilities, &format!("{op}: utilities"))?;
        let ch = tensor_arg(choice, &format!("{op}: choice"))?;
        let av = opt_tensor(avail, &format!("{op}: avail"))?;
        let work = us.iter().map(|u| u.numel()).sum::<usize>().saturating_mul(4);
        guard_nogil(py, work, || rbe_iclv::mnl_logprob(&us, &ch, av.as_ref()))
    })
}

/// The choice probabilities of a multinomial logit, one `(M, R)` tensor per alternative.
#[pyfunction]
#[pyo3(signature = (utilities, choice, avail=None))]
pub(crate) fn mnl_probs(
    py: Python<'_>,
    utilities: &Bound<'_, PyAny>,
    choice: &Bound<'_, PyAny>,
    avail: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<PyTensor>> {
    protect(|| {
        let op = "mnl_probs";
        let us = tensors(utilities, &format!("{op}: utilities"))?;
        let ch = tensor_arg(choice, &format!("{op}: choice"))?;
        let av = opt_tensor(avail, &format!("{op}: avail"))?;
        let work = us.iter().map(|u| u.numel()).sum::<usize>().saturating_mul(4);
        let ps = run(py, work, || rbe_iclv::mnl_probs(&us, &ch, av.as_ref()))?;
        Ok(ps.into_iter().map(|t| PyTensor { t }).collect())
    })
}

/// Sum of each individual's rows: `x (M, ...)`, `offsets` int64 `(N + 1,)` -> `(N, ...)`.
#[pyfunction]
pub(crate) fn panel_sum(py: Python<'_>, x: &Bound<'_, PyAny>, offsets: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    protect(|| {
        let (x, o) = (tensor_arg(x, "panel_sum: x")?, tensor_arg(offsets, "panel_sum: offsets")?);
        guard_nogil(py, x.numel(), || rbe_iclv::panel_sum(&x, &o))
    })
}

/// Each individual's row repeated over its rows: `x (N, ...)` -> `(offsets[N], ...)`.
#[pyfunction]
pub(crate) fn expand_rows(py: Python<'_>, x: &Bound<'_, PyAny>, offsets: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    protect(|| {
        let (x, o) = (tensor_arg(x, "expand_rows: x")?, tensor_arg(offsets, "expand_rows: offsets")?);
        guard_nogil(py, x.numel(), || rbe_iclv::expand_rows(&x, &o))
    })
}

/// `log sum_r w_r exp(x[n, r])` over the draws of `x (N, R)`; `w_r = 1/R` or `exp(log_weights)`.
#[pyfunction]
#[pyo3(signature = (x, log_weights=None))]
pub(crate) fn log_mean_exp(py: Python<'_>, x: &Bound<'_, PyAny>, log_weights: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    protect(|| {
        let x = tensor_arg(x, "log_mean_exp: x")?;
        let w = opt_tensor(log_weights, "log_mean_exp: log_weights")?;
        guard_nogil(py, x.numel().saturating_mul(4), || rbe_iclv::log_mean_exp(&x, w.as_ref()))
    })
}
