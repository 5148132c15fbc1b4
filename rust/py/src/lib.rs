//! `rbe._core`: the PyO3 binding of rbe-core.
//!
//! Errors from the core map to the classes of `rbe.errors` (`conv::to_py_err`):
//! a shape error is a `RuntimeError` and a `ValueError`, a dtype error a
//! `RuntimeError` and a `TypeError`, and so on; an exception raised by Python
//! code the core called back into comes out unchanged.
#![warn(clippy::undocumented_unsafe_blocks)]
use pyo3::prelude::*;

mod conv;
mod functions;
mod hmm;
mod iclv;
mod pinn;
mod structured;
mod tensor;

pub use conv::*;
pub use tensor::PyTensor;

/// The contents of `rbe._core`, declared in this one place.
///
/// pyo3's declarative module syntax (rather than a table macro) works with
/// pyo3 0.25 and abi3: each `#[pymodule_export]` name is checked by the
/// compiler, and what is not a class or function (the panic hook, the dtype
/// objects, `__version__`) goes in `#[pymodule_init]`, which runs after the
/// exports are added. A new function is one name in a `use` list below (its
/// `#[pyfunction]` must be `pub(crate)`); it also needs its entry in
/// `python/rbe/_core.pyi`.
///
/// Each front-end crate is bound as a submodule `rbe._core.<name>` declared
/// in its own file (`#[pymodule(submodule)] pub mod <name>` in
/// `rust/py/src/<name>.rs`) and exported below with one `#[pymodule_export]`
/// line; the init registers every exported submodule ([`register_submodule`]).
#[pymodule]
mod _core {
    use crate::conv;
    use pyo3::prelude::*;

    // ------------------------------------------------------------ classes
    #[pymodule_export]
    use crate::conv::PyDType;
    #[pymodule_export]
    use crate::functions::PyGenerator;
    #[pymodule_export]
    use crate::tensor::{PyNode, PyTensor};

    // ------------------------------------------------------------ creation and random numbers
    #[pymodule_export]
    use crate::functions::{arange, bernoulli, eye, full, linspace, rand, randint, randn, randperm, zeros};
    #[pymodule_export]
    use crate::functions::{get_rng_state, initial_seed, manual_seed, set_rng_state};

    // ------------------------------------------------------------ dtype and grad mode
    #[pymodule_export]
    use crate::functions::{get_default_dtype, is_grad_enabled, set_default_dtype, set_grad_enabled};

    // ------------------------------------------------------------ NumPy interop and ops that are not methods
    #[pymodule_export]
    use crate::functions::{broadcast_shapes, cat, from_numpy, stack, where_fn};
    #[pymodule_export]
    use crate::functions::{dropout, elu, gelu, leaky_relu, linear, log_ndtr, ndtr, ndtr_ratio, pad_constant, silu, softplus};

    // ------------------------------------------------------------ autograd engine
    #[pymodule_export]
    use crate::functions::{attach_py_function, run_backward};

    // ------------------------------------------------------------ training support
    #[pymodule_export]
    use crate::functions::{adam_step, class_coefficients, cross_entropy, rmsprop_step, sgd_step};

    // ------------------------------------------------------------ memory and threads
    #[pymodule_export]
    use crate::functions::{empty_cache, max_memory_allocated, memory_allocated, memory_stats, reset_peak_memory_stats, set_pool_limit};
    #[pymodule_export]
    use crate::functions::{get_num_threads, set_num_threads};

    // ------------------------------------------------------------ front-ends (submodules)
    #[pymodule_export]
    use crate::hmm::hmm;
    #[pymodule_export]
    use crate::iclv::iclv;
    #[pymodule_export]
    use crate::structured::structured;

    #[pymodule_export]
    use crate::pinn::pinn;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // Panics are turned into Python exceptions at the boundary; keep the
        // default hook's stderr report only when debugging.
        if std::env::var_os("RBE_DEBUG_PANICS").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
        conv::register_dtypes(m)?;
        for name in m.index()?.iter() {
            if let Ok(sub) = m.getattr(name.downcast::<pyo3::types::PyString>()?)?.downcast::<PyModule>() {
                crate::register_submodule(m, sub)?;
            }
        }
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}

/// Makes the front-end submodule `sub` of `_core` importable as
/// `rbe._core.<name>` (`import rbe._core.structured`, `from
/// rbe._core.structured import linear`): an extension module is not a
/// package, so the import system finds a submodule only in `sys.modules`.
/// Also gives the submodule and its functions their full name (`__name__`,
/// `__module__`), as the functions of `_core` itself have. Called from the
/// init of `_core` for every submodule it exports (after they are added: the
/// attribute and the `__all__` entry keep the short name).
fn register_submodule(parent: &Bound<'_, PyModule>, sub: &Bound<'_, PyModule>) -> PyResult<()> {
    let full = format!("{}.{}", parent.name()?, sub.name()?);
    sub.setattr("__name__", &full)?;
    for item in sub.index()?.iter() {
        let obj = sub.getattr(item.downcast::<pyo3::types::PyString>()?)?;
        if obj.is_instance_of::<pyo3::types::PyCFunction>() {
            obj.setattr("__module__", &full)?;
        }
    }
    sub.py().import("sys")?.getattr("modules")?.set_item(&full, sub)
}
