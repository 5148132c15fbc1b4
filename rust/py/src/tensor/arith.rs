//! `Tensor` operators and binary ops: arithmetic (also in place), comparisons, logical and bitwise ops, matrix products.
use super::{guard, guard_nogil, matmul_work, scaled, PyTensor};
use crate::conv::*;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use rbe_core::ops::binary::{self as bin, Arith, Bitwise, Cmp};
use rbe_core::ops::linalg;
use rbe_core::ops::unary::{self as un, Fun};
use rbe_core::{DType, Tensor};

#[pymethods]
impl PyTensor {
    fn __add__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Add, &self.t, o, false))
    }
    fn __radd__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Add, &self.t, o, true))
    }
    fn __sub__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Sub, &self.t, o, false))
    }
    fn __rsub__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Sub, &self.t, o, true))
    }
    fn __mul__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Mul, &self.t, o, false))
    }
    fn __rmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Mul, &self.t, o, true))
    }
    fn __truediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Div, &self.t, o, false))
    }
    fn __rtruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Div, &self.t, o, true))
    }
    fn __floordiv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::FloorDiv, &self.t, o, false))
    }
    fn __rfloordiv__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::FloorDiv, &self.t, o, true))
    }
    fn __mod__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Rem, &self.t, o, false))
    }
    fn __rmod__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Rem, &self.t, o, true))
    }
    fn __pow__(&self, o: &Bound<'_, PyAny>, _m: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Pow, &self.t, o, false))
    }
    fn __rpow__(&self, o: &Bound<'_, PyAny>, _m: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Pow, &self.t, o, true))
    }
    fn __matmul__(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let b = tensor_arg(o, "matmul")?;
            guard_nogil(py, matmul_work(&self.t, &b), || linalg::matmul(&self.t, &b))
        })
    }
    fn __rmatmul__(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let a = tensor_arg(o, "matmul")?;
            guard_nogil(py, matmul_work(&a, &self.t), || linalg::matmul(&a, &self.t))
        })
    }
    fn __neg__(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(un::neg(&self.t)?)))
    }
    fn __pos__(slf: &Bound<'_, Self>) -> Py<Self> {
        slf.clone().unbind()
    }
    fn __abs__(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(un::abs(&self.t)?)))
    }
    fn __invert__(&self) -> PyResult<PyTensor> {
        crate::conv::protect(|| match self.t.dtype() {
            DType::Bool => guard(|| Ok(bin::logical_not(&self.t)?)),
            DType::I64 => guard(|| Ok(rbe_core::ops::binary::bitwise(Bitwise::Xor, &self.t, &Tensor::wrapped_scalar_i64(-1))?)),
            d => Err(PyTypeError::new_err(format!("~ (bitwise_not) is only supported for integer and bool tensors, got {}", d.name()))),
        })
    }
    fn __and__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::bitwise(Bitwise::And, &self.t, &operand(o)?)?)))
    }
    fn __rand__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::bitwise(Bitwise::And, &operand(o)?, &self.t)?)))
    }
    fn __or__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::bitwise(Bitwise::Or, &self.t, &operand(o)?)?)))
    }
    fn __ror__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::bitwise(Bitwise::Or, &operand(o)?, &self.t)?)))
    }
    fn __xor__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::bitwise(Bitwise::Xor, &self.t, &operand(o)?)?)))
    }
    fn __rxor__(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::bitwise(Bitwise::Xor, &operand(o)?, &self.t)?)))
    }
    fn __richcmp__(&self, o: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<PyObject> {
        crate::conv::protect(|| {
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
        })
    }
    fn __iadd__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::conv::protect(|| bin::arith_(Arith::Add, &self.t, &operand(o)?).py())
    }
    fn __isub__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::conv::protect(|| bin::arith_(Arith::Sub, &self.t, &operand(o)?).py())
    }
    fn __imul__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::conv::protect(|| bin::arith_(Arith::Mul, &self.t, &operand(o)?).py())
    }
    fn __itruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::conv::protect(|| bin::arith_(Arith::Div, &self.t, &operand(o)?).py())
    }
    fn __ipow__(&self, o: &Bound<'_, PyAny>, _m: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        crate::conv::protect(|| bin::arith_(Arith::Pow, &self.t, &operand(o)?).py())
    }
    #[pyo3(signature = (other, *, alpha=None))]
    fn add(&self, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let o = scaled(other, alpha)?;
            guard(|| Ok(bin::add(&self.t, &o)?))
        })
    }
    #[pyo3(signature = (other, *, alpha=None))]
    fn sub(&self, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let o = scaled(other, alpha)?;
            guard(|| Ok(bin::sub(&self.t, &o)?))
        })
    }
    fn mul(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Mul, &self.t, o, false))
    }
    #[pyo3(signature = (other, *, rounding_mode=None))]
    fn div(&self, other: &Bound<'_, PyAny>, rounding_mode: Option<&str>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
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
        })
    }
    fn true_divide(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Div, &self.t, o, false))
    }
    fn floor_divide(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::FloorDiv, &self.t, o, false))
    }
    fn remainder(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Rem, &self.t, o, false))
    }
    fn pow(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| arith_op(Arith::Pow, &self.t, o, false))
    }
    fn maximum(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::maximum(&self.t, &tensor_arg(o, "maximum")?)?)))
    }
    fn minimum(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::minimum(&self.t, &tensor_arg(o, "minimum")?)?)))
    }
    fn atan2(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::arith(Arith::Atan2, &self.t, &tensor_arg(o, "atan2")?)?)))
    }
    fn eq(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::eq(&self.t, &operand(o)?)?)))
    }
    fn ne(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::ne(&self.t, &operand(o)?)?)))
    }
    fn lt(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::lt(&self.t, &operand(o)?)?)))
    }
    fn le(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::le(&self.t, &operand(o)?)?)))
    }
    fn gt(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::gt(&self.t, &operand(o)?)?)))
    }
    fn ge(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::ge(&self.t, &operand(o)?)?)))
    }
    fn logical_and(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::logical_and(&self.t, &operand(o)?)?)))
    }
    fn logical_or(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::logical_or(&self.t, &operand(o)?)?)))
    }
    fn logical_xor(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(bin::logical_xor(&self.t, &operand(o)?)?)))
    }
    fn equal(&self, o: &Bound<'_, PyAny>) -> PyResult<bool> {
        crate::conv::protect(|| {
            let o = tensor_arg(o, "equal")?;
            if o.shape() != self.t.shape() {
                return Ok(false);
            }
            let e = bin::eq(&self.t, &o).py()?;
            Ok(e.to_vec::<bool>().iter().all(|&b| b))
        })
    }
    fn matmul(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let b = tensor_arg(o, "matmul")?;
            guard_nogil(py, matmul_work(&self.t, &b), || linalg::matmul(&self.t, &b))
        })
    }
    fn mm(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let b = tensor_arg(o, "mm")?;
            guard_nogil(py, matmul_work(&self.t, &b), || linalg::mm(&self.t, &b))
        })
    }
    fn bmm(&self, py: Python<'_>, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| {
            let b = tensor_arg(o, "bmm")?;
            guard_nogil(py, matmul_work(&self.t, &b), || linalg::bmm(&self.t, &b))
        })
    }
    fn mv(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(linalg::mv(&self.t, &tensor_arg(o, "mv")?)?)))
    }
    fn dot(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(linalg::dot(&self.t, &tensor_arg(o, "dot")?)?)))
    }
    fn outer(&self, o: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        crate::conv::protect(|| guard(|| Ok(linalg::outer(&self.t, &tensor_arg(o, "outer")?)?)))
    }
    #[pyo3(signature = (other, *, alpha=None))]
    fn add_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let o = scaled(other, alpha)?;
            bin::arith_(Arith::Add, &slf.get().t, &o).py()?;
            Ok(slf.clone().unbind())
        })
    }
    #[pyo3(signature = (other, *, alpha=None))]
    fn sub_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, alpha: Option<&Bound<'_, PyAny>>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            let o = scaled(other, alpha)?;
            bin::arith_(Arith::Sub, &slf.get().t, &o).py()?;
            Ok(slf.clone().unbind())
        })
    }
    fn mul_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            bin::arith_(Arith::Mul, &slf.get().t, &operand(other)?).py()?;
            Ok(slf.clone().unbind())
        })
    }
    fn div_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            bin::arith_(Arith::Div, &slf.get().t, &operand(other)?).py()?;
            Ok(slf.clone().unbind())
        })
    }
    fn pow_(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<Self>> {
        crate::conv::protect(|| {
            bin::arith_(Arith::Pow, &slf.get().t, &operand(other)?).py()?;
            Ok(slf.clone().unbind())
        })
    }
}

fn arith_op(op: Arith, a: &Tensor, other: &Bound<'_, PyAny>, reflected: bool) -> PyResult<PyTensor> {
    crate::conv::protect(|| {
        let b = operand(other)?;
        if reflected {
            guard(|| Ok(bin::arith(op, &b, a)?))
        } else {
            guard(|| Ok(bin::arith(op, a, &b)?))
        }
    })
}
