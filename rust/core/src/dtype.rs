//! Element types and torch's type-promotion rules.
use crate::error::Result;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    I64,
    F32,
    F64,
}

/// Promotion category: bool < integer < floating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Bool,
    Int,
    Float,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::Bool => 1,
            DType::I64 | DType::F64 => 8,
            DType::F32 => 4,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }
    pub fn category(self) -> Category {
        match self {
            DType::Bool => Category::Bool,
            DType::I64 => Category::Int,
            DType::F32 | DType::F64 => Category::Float,
        }
    }
    /// torch's name, as printed in `repr` and errors (`torch.float32`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }
    /// torch's scalar-type name used in some error messages ("Float", "Long").
    pub fn scalar_name(self) -> &'static str {
        match self {
            DType::Bool => "Bool",
            DType::I64 => "Long",
            DType::F32 => "Float",
            DType::F64 => "Double",
        }
    }
    pub fn from_name(s: &str) -> Option<DType> {
        Some(match s {
            "bool" => DType::Bool,
            "int64" | "long" | "int" => DType::I64,
            "float32" | "float" => DType::F32,
            "float64" | "double" => DType::F64,
            _ => return None,
        })
    }
    /// Can a value of type `self` be written into a tensor of type `to` by an in-place op?
    pub fn can_cast_to(self, to: DType) -> bool {
        self.category() <= to.category()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rbe.{}", self.name())
    }
}

/// Priority of an operand in promotion (torch: dimensioned tensors beat
/// zero-dim tensors, which beat wrapped Python numbers, within a category).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Scalar,
    ZeroDim,
    Tensor,
}

fn promote_same_level(a: DType, b: DType) -> DType {
    use DType::*;
    match (a, b) {
        (x, y) if x == y => x,
        (F64, _) | (_, F64) => F64,
        (F32, _) | (_, F32) => F32,
        (I64, _) | (_, I64) => I64,
        _ => Bool,
    }
}

/// torch.result_type over operands given as (dtype, priority). `default_float`
/// is the dtype a Python float takes when it decides the category.
pub fn result_type(ops: &[(DType, Priority)], default_float: DType) -> DType {
    let mut best: [Option<DType>; 3] = [None, None, None];
    for &(dt, p) in ops {
        let slot = &mut best[p as usize];
        *slot = Some(match *slot {
            None => dt,
            Some(cur) => promote_same_level(cur, dt),
        });
    }
    let mut out: Option<DType> = None;
    for level in [Priority::Tensor, Priority::ZeroDim, Priority::Scalar] {
        if let Some(dt) = best[level as usize] {
            out = Some(match out {
                None => {
                    if level == Priority::Scalar && dt == DType::F64 {
                        default_float
                    } else {
                        dt
                    }
                }
                Some(cur) => {
                    if dt.category() > cur.category() {
                        match (level, dt.category()) {
                            (Priority::Scalar, Category::Float) => default_float,
                            (Priority::Scalar, Category::Int) => DType::I64,
                            _ => dt,
                        }
                    } else {
                        cur
                    }
                }
            });
        }
    }
    out.unwrap_or(default_float)
}

pub fn check_float(dt: DType, op: &str) -> Result<()> {
    if dt.is_float() {
        Ok(())
    } else {
        Err(crate::dtype_err!("{op}: expected a floating point tensor (float32 or float64), got {}", dt.name()))
    }
}
