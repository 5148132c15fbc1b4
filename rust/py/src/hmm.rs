//! `rbe._core.hmm`: bindings of the HMM front-end (crate `rbe-hmm`): the
//! three differentiable inference ops. The Python front-end `rbe.hmm`
//! (`hmm_log_likelihood`, `GaussianHMM`, `NeuralHMM`, ...) builds on these.
//! Stub: `python/rbe/_core/hmm.pyi`.
use crate::conv::*;
use crate::tensor::PyTensor;
use pyo3::prelude::*;
use rbe_core::Tensor;

/// The submodule, exported from `_core` in `lib.rs` (importable as
/// `rbe._core.hmm`). A new function is one name in the `use` list (and its
/// entry in the stub).
#[pymodule(submodule)]
pub mod hmm {
    #[pymodule_export]
    use super::{log_likelihood, posteriors, viterbi};
}

/// Work (state-pair updates) above which an op runs with the interpreter released.
const NOGIL_WORK: usize = 1 << 18;

/// The tensor arguments of every op, and the work estimate `B * T * K * K`.
fn args(
    log_pi: &Bound<'_, PyAny>,
    log_a: &Bound<'_, PyAny>,
    log_e: &Bound<'_, PyAny>,
    lengths: Option<&Bound<'_, PyAny>>,
    op: &str,
) -> PyResult<(Tensor, Tensor, Tensor, Option<Tensor>, usize)> {
    let pi = tensor_arg(log_pi, &format!("{op}: log_pi"))?;
    let a = tensor_arg(log_a, &format!("{op}: log_A"))?;
    let e = tensor_arg(log_e, &format!("{op}: log_emissions"))?;
    let l = match lengths {
        Some(v) if !v.is_none() => Some(tensor_arg(v, &format!("{op}: lengths"))?),
        _ => None,
    };
    let k = e.shape().last().copied().unwrap_or(1);
    let work = e.numel().saturating_mul(k);
    Ok((pi, a, e, l, work))
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

/// `log P(x)` per sequence, `(B,)`: the forward algorithm.
#[pyfunction]
#[pyo3(signature = (log_pi, log_A, log_emissions, lengths=None))]
#[allow(non_snake_case)]
pub(crate) fn log_likelihood(
    py: Python<'_>,
    log_pi: &Bound<'_, PyAny>,
    log_A: &Bound<'_, PyAny>,
    log_emissions: &Bound<'_, PyAny>,
    lengths: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    protect(|| {
        let (pi, a, e, l, work) = args(log_pi, log_A, log_emissions, lengths, "hmm_log_likelihood")?;
        let t = run(py, work, || rbe_hmm::hmm_log_likelihood(&pi, &a, &e, l.as_ref()))?;
        Ok(PyTensor { t })
    })
}

/// Forward-backward: `(log_likelihood, log_alpha, log_beta, gamma, xi or None)`.
#[pyfunction]
#[pyo3(signature = (log_pi, log_A, log_emissions, lengths=None, with_xi=false))]
#[allow(non_snake_case)]
pub(crate) fn posteriors(
    py: Python<'_>,
    log_pi: &Bound<'_, PyAny>,
    log_A: &Bound<'_, PyAny>,
    log_emissions: &Bound<'_, PyAny>,
    lengths: Option<&Bound<'_, PyAny>>,
    with_xi: bool,
) -> PyResult<(PyTensor, PyTensor, PyTensor, PyTensor, Option<PyTensor>)> {
    protect(|| {
        let (pi, a, e, l, work) = args(log_pi, log_A, log_emissions, lengths, "hmm_posteriors")?;
        let p = run(py, work, || rbe_hmm::hmm_posteriors(&pi, &a, &e, l.as_ref(), with_xi))?;
        Ok((
            PyTensor { t: p.log_likelihood },
            PyTensor { t: p.log_alpha },
            PyTensor { t: p.log_beta },
            PyTensor { t: p.gamma },
            p.xi.map(|t| PyTensor { t }),
        ))
    })
}

/// Viterbi: `(path int64 (B, T) with -1 past each length, log_prob (B,))`.
#[pyfunction]
#[pyo3(signature = (log_pi, log_A, log_emissions, lengths=None))]
#[allow(non_snake_case)]
pub(crate) fn viterbi(
    py: Python<'_>,
    log_pi: &Bound<'_, PyAny>,
    log_A: &Bound<'_, PyAny>,
    log_emissions: &Bound<'_, PyAny>,
    lengths: Option<&Bound<'_, PyAny>>,
) -> PyResult<(PyTensor, PyTensor)> {
    protect(|| {
        let (pi, a, e, l, work) = args(log_pi, log_A, log_emissions, lengths, "hmm_viterbi")?;
        let v = run(py, work, || rbe_hmm::hmm_viterbi(&pi, &a, &e, l.as_ref()))?;
        Ok((PyTensor { t: v.path }, PyTensor { t: v.log_prob }))
    })
}
