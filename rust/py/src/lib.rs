//! `rbe._core`: the PyO3 binding of rbe-core.
//!
//! Errors from the core map to Python exceptions here (shapes -> ValueError,
//! dtypes -> TypeError, indices -> IndexError, autograd misuse -> RuntimeError).
use pyo3::prelude::*;

mod conv;
mod functions;
mod rbe;
mod tensor;

pub use conv::*;
pub use tensor::PyTensor;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Panics are turned into Python exceptions at the boundary; keep the
    // default hook's stderr report only when debugging.
    if std::env::var_os("RBE_DEBUG_PANICS").is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    m.add_class::<PyTensor>()?;
    m.add_class::<conv::PyDType>()?;
    m.add_class::<functions::PyGenerator>()?;
    conv::register_dtypes(m)?;
    functions::register(m)?;
    functions::register_training(m)?;
    functions::register_extra(m)?;
    functions::register_threads(m)?;
    rbe::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
