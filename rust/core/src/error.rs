//! The single error type of the core. The Python bindings map each kind to
//! one class of the `rbe.errors` hierarchy (see `rust/py/src/conv.rs`), whose
//! classes also derive from the builtin exceptions torch raises.
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum Error {
    /// Shapes that do not fit together (`rbe.errors.ShapeError`: a `RuntimeError` and a `ValueError`).
    #[error("{0}")]
    Shape(String),
    /// A dtype that the operation does not accept (`DTypeError`: a `RuntimeError` and a `TypeError`).
    #[error("{0}")]
    DType(String),
    /// An index or dimension out of range (`IndexError`).
    #[error("{0}")]
    Index(String),
    /// Misuse of autograd: freed graph, in-place on a leaf, ... (`AutogradError`: a `RuntimeError`).
    #[error("{0}")]
    Autograd(String),
    /// Any other bad argument value (`ArgumentError`: a `RuntimeError` and a `ValueError`).
    #[error("{0}")]
    Value(String),
    /// Something that is valid but not supported (`UnsupportedError`: a `RuntimeError`).
    #[error("{0}")]
    Unsupported(String),
    /// An allocation that cannot be served (`OutOfMemoryError`: a `MemoryError` and a `RuntimeError`).
    #[error("{0}")]
    Memory(String),
    /// An error raised by code the core called back into (a Python
    /// `Function.backward`, a hook), carried through unchanged so the caller
    /// sees it with its own type (the bindings downcast it back).
    #[error("{0}")]
    External(Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// The message, whatever the kind.
    pub fn message(&self) -> String {
        self.to_string()
    }
    /// Wrap an error raised by a callback.
    pub fn external(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::External(Arc::new(e))
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (Shape(a), Shape(b))
            | (DType(a), DType(b))
            | (Index(a), Index(b))
            | (Autograd(a), Autograd(b))
            | (Value(a), Value(b))
            | (Unsupported(a), Unsupported(b))
            | (Memory(a), Memory(b)) => a == b,
            (External(a), External(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
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
#[macro_export]
macro_rules! unsupported_err {
    ($($arg:tt)*) => { $crate::error::Error::Unsupported(format!($($arg)*)) };
}
#[macro_export]
macro_rules! memory_err {
    ($($arg:tt)*) => { $crate::error::Error::Memory(format!($($arg)*)) };
}
