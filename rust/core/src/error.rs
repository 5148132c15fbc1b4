//! The single error type of the core. The Python bindings map each kind to
//! one Python exception class (see `rust/py`).
use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq)]
pub enum Error {
    /// Shapes that do not fit together (maps to `ValueError`).
    #[error("{0}")]
    Shape(String),
    /// A dtype that the operation does not accept (maps to `TypeError`).
    #[error("{0}")]
    DType(String),
    /// An index or dimension out of range (maps to `IndexError`).
    #[error("{0}")]
    Index(String),
    /// Misuse of autograd: freed graph, in-place on a leaf, ... (maps to `RuntimeError`).
    #[error("{0}")]
    Autograd(String),
    /// Any other bad argument value (maps to `ValueError`).
    #[error("{0}")]
    Value(String),
    /// Something that is valid but not supported (maps to `RuntimeError`).
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

#[macro_export]
macro_rules! shape_err {
    ($($arg:tt)*) => { $crate::error::Error::Shape(format!($($arg)*)) };
}
#[macro_export]
macro_rules! dtype_err {
    ($($arg:tt)*) => { $crate::error::Error::DType(format!($($arg)*)) };
}
#[macro_export]
macro_rules! index_err {
    ($($arg:tt)*) => { $crate::error::Error::Index(format!($($arg)*)) };
}
#[macro_export]
macro_rules! autograd_err {
    ($($arg:tt)*) => { $crate::error::Error::Autograd(format!($($arg)*)) };
}
#[macro_export]
macro_rules! value_err {
    ($($arg:tt)*) => { $crate::error::Error::Value(format!($($arg)*)) };
}
