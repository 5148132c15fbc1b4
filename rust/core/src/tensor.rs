//! The tensor handle: shared storage + shape/strides/offset + autograd metadata.
use crate::autograd::{Meta, Node};
use crate::dtype::{DType, Priority};
use crate::elem::Elem;
use crate::error::Result;
use crate::storage::Storage;
use crate::{dtype_err, shape_err};
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub type Shape = SmallVec<[usize; 6]>;
pub type Strides = SmallVec<[isize; 6]>;

pub struct TensorImpl {
    pub(crate) storage: Arc<Storage>,
    pub(crate) shape: Shape,
    pub(crate) strides: Strides,
    pub(crate) offset: usize,
    pub(crate) dtype: DType,
    /// Created from a Python number: lowest priority in type promotion.
    pub(crate) wrapped_scalar: bool,
    /// Row-major contiguous (computed once: shape and strides never change).
    pub(crate) contiguous: bool,
    pub(crate) requires_grad: AtomicBool,
    pub(crate) meta: Mutex<Meta>,
}

/// A reference-counted tensor handle; cloning shares everything (like a Python reference).
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorImpl>);

/// Row-major strides of `shape`. For a shape with a zero dimension, whose
/// strides address nothing, the products saturate instead of overflowing.
pub fn contiguous_strides(shape: &[usize]) -> Strides {
    let mut st: Strides = SmallVec::from_elem(0, shape.len());
    let mut acc = 1isize;
    for i in (0..shape.len()).rev() {
        st[i] = acc;
        acc = acc.saturating_mul(shape[i].clamp(1, isize::MAX as usize) as isize);
    }
    st
}

/// The number of elements of `shape`, saturating at `usize::MAX` (which no
/// valid tensor reaches: see [`checked_numel`]).
pub fn numel_of(shape: &[usize]) -> usize {
    shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).unwrap_or(usize::MAX)
}

/// The largest number of elements a tensor may have (torch's sizes are int64).
pub const MAX_NUMEL: usize = isize::MAX as usize;

/// The number of elements of `shape`, or a shape error when the product
/// overflows or exceeds [`MAX_NUMEL`] (torch: "numel overflow"). Every size
/// a user gives goes through here (or through [`check_view`]).
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .filter(|&n| n <= MAX_NUMEL)
        .ok_or_else(|| shape_err!("the shape {:?} has more elements than a tensor can hold (numel overflow: at most 2^63 - 1)", shape))
}

/// Checks that a view of geometry (`shape`, `strides`, `offset`) addresses
/// only elements `0..len` of a storage of `len` elements: its element count is
/// valid, and its lowest and highest addressed elements, computed without
/// overflow, are inside. Every view is made through this check, so no index
/// computed inside a valid view can leave its storage.
pub fn check_view(len: usize, shape: &[usize], strides: &[isize], offset: usize) -> Result<()> {
    if shape.len() != strides.len() {
        return Err(shape_err!("view: {} sizes but {} strides", shape.len(), strides.len()));
    }
    let n = checked_numel(shape)?;
    if n == 0 {
        return if offset <= len { Ok(()) } else { Err(shape_err!("view: offset {offset} is outside a storage of {len} elements")) };
    }
    let (mut lo, mut hi) = (offset as i128, offset as i128);
    for (&d, &st) in shape.iter().zip(strides) {
        let span = (d as i128 - 1) * st as i128;
        if span < 0 {
            lo += span;
        } else {
            hi += span;
        }
    }
    if lo < 0 || hi >= len as i128 {
        return Err(shape_err!(
            "view of shape {:?} with strides {:?} and offset {offset} addresses elements {lo}..={hi}, outside a storage of {len} elements",
            shape,
            strides
        ));
    }
    Ok(())
}

pub fn fmt_shape(shape: &[usize]) -> String {
    format!("{:?}", shape)
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor(shape={:?}, dtype={})", self.shape(), self.dtype().name())
    }
}

fn strides_are_contiguous(shape: &[usize], strides: &[isize]) -> bool {
    if shape.contains(&0) {
        return true;
    }
    let mut acc = 1isize;
    for i in (0..shape.len()).rev() {
        let n = shape[i];
        if n != 1 && strides[i] != acc {
            return false;
        }
        acc *= n as isize;
    }
    true
}

impl Tensor {
    // ---------------------------------------------------------------- construction
    pub(crate) fn from_parts(storage: Arc<Storage>, shape: Shape, strides: Strides, offset: usize, dtype: DType) -> Tensor {
        let contiguous = strides_are_contiguous(&shape, &strides);
        Tensor(Arc::new(TensorImpl {
            contiguous,
            storage,
            shape,
            strides,
            offset,
            dtype,
            wrapped_scalar: false,
            requires_grad: AtomicBool::new(false),
            meta: Mutex::new(Meta::default()),
        }))
    }

    /// Bytes of a contiguous tensor of `shape` and `dtype`, or an error when
    /// that does not fit in memory at all.
    pub fn checked_nbytes(shape: &[usize], dtype: DType) -> Result<usize> {
        checked_numel(shape)?
            .checked_mul(dtype.size())
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| crate::memory_err!("out of memory: a tensor of shape {:?} and dtype {} is too large", shape, dtype.name()))
    }

    /// Contiguous tensor with unspecified contents (a pooled buffer is reused
    /// as is): the caller must write every element. Errors: a shape whose
    /// element count overflows, an allocation that cannot be served.
    pub fn empty(shape: &[usize], dtype: DType) -> Result<Tensor> {
        let st = Arc::new(Storage::try_alloc(Tensor::checked_nbytes(shape, dtype)?, false)?);
        Ok(Tensor::from_parts(st, shape.into(), contiguous_strides(shape), 0, dtype))
    }
    /// A zero-filled contiguous tensor (errors as `empty`).
    pub fn zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        let st = Arc::new(Storage::try_alloc(Tensor::checked_nbytes(shape, dtype)?, true)?);
        Ok(Tensor::from_parts(st, shape.into(), contiguous_strides(shape), 0, dtype))
    }
    /// A contiguous tensor filled with `value` (cast to `dtype`; errors as `empty`).
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        if value == 0.0 {
            return Tensor::zeros(shape, dtype);
        }
        Ok(crate::dispatch_all!(dtype, T => {
            let mut t = FreshTensor::<T>::uninit(shape)?;
            t.fill(T::from_f64(value));
            t.into_tensor()
        }))
    }
    pub fn ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::full(shape, 1.0, dtype)
    }
    /// A 0-dim tensor holding `value` (cast to `dtype`).
    pub fn scalar_of(value: f64, dtype: DType) -> Tensor {
        crate::dispatch_all!(dtype, T => Tensor::scalar(T::from_f64(value)))
    }
    pub fn from_vec<T: Elem>(v: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        if v.len() != numel_of(shape) {
            return Err(shape_err!("from_vec: {} values cannot fill shape {:?}", v.len(), shape));
        }
        let st = Arc::new(Storage::from_vec(v));
        Ok(Tensor::from_parts(st, shape.into(), contiguous_strides(shape), 0, T::DTYPE))
    }
    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_vec(vec![v], &[]).unwrap()
    }
    /// A 0-dim tensor standing for a Python number (lowest promotion priority).
    pub fn wrapped_scalar(v: f64, dtype: DType) -> Tensor {
        let t = Tensor::scalar_of(v, dtype);
        let mut imp = Arc::try_unwrap(t.0).ok().expect("fresh tensor");
        imp.wrapped_scalar = true;
        Tensor(Arc::new(imp))
    }
    /// A 0-dim int64 tensor standing for a Python int.
    pub fn wrapped_scalar_i64(v: i64) -> Tensor {
        let t = Tensor::scalar(v);
        let mut imp = Arc::try_unwrap(t.0).ok().expect("fresh tensor");
        imp.wrapped_scalar = true;
        Tensor(Arc::new(imp))
    }
    /// Tensor over external memory (NumPy). `strides` are in elements; an
    /// error when the geometry leaves the storage.
    pub fn from_storage(storage: Arc<Storage>, shape: &[usize], strides: &[isize], offset: usize, dtype: DType) -> Result<Tensor> {
        check_view(storage.len_of(dtype), shape, strides, offset)?;
        Ok(Tensor::from_parts(storage, shape.into(), strides.into(), offset, dtype))
    }

    // ---------------------------------------------------------------- accessors
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn strides(&self) -> &[isize] {
        &self.0.strides
    }
    pub fn offset(&self) -> usize {
        self.0.offset
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel_of(&self.0.shape)
    }
    pub fn storage(&self) -> &Arc<Storage> {
        &self.0.storage
    }
    pub fn is_wrapped_scalar(&self) -> bool {
        self.0.wrapped_scalar
    }
    pub fn priority(&self) -> Priority {
        if self.0.wrapped_scalar {
            Priority::Scalar
        } else if self.ndim() == 0 {
            Priority::ZeroDim
        } else {
            Priority::Tensor
        }
    }
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.0.contiguous
    }
    pub fn version(&self) -> u64 {
        self.0.storage.version()
    }
    /// Normalise a possibly negative dimension index.
    pub fn dim_index(&self, d: isize) -> Result<usize> {
        norm_dim(d, self.ndim())
    }
    pub fn size_at(&self, d: isize) -> Result<usize> {
        if self.ndim() == 0 {
            return Err(crate::index_err!("dimension specified as {d} but tensor has no dimensions"));
        }
        Ok(self.0.shape[self.dim_index(d)?])
    }

    // ---------------------------------------------------------------- raw data
    /// Pointer to the first element of the view.
    pub fn data_ptr<T: Elem>(&self) -> *mut T {
        debug_assert_eq!(T::DTYPE, self.dtype());
        // Safety: offset is within the storage by construction.
        unsafe { (self.0.storage.ptr() as *mut T).add(self.0.offset) }
    }
    /// The elements of a contiguous tensor.
    pub fn data<T: Elem>(&self) -> &[T] {
        assert!(self.is_contiguous() && T::DTYPE == self.dtype(), "data(): needs a contiguous tensor of the right dtype");
        // Safety: contiguous view of numel elements inside the storage.
        unsafe { std::slice::from_raw_parts(self.data_ptr::<T>(), self.numel()) }
    }
    /// Mutable elements of a contiguous tensor, for in-place kernels
    /// (optimiser steps, gradient accumulation into a buffer one owns).
    /// A fresh output is written through [`FreshTensor`] instead, which is safe.
    ///
    /// # Safety
    /// For as long as the slice lives, no other reference (another tensor
    /// sharing the storage, a NumPy view, another thread) may read or write
    /// these elements. In-place kernels uphold this the way torch's do: the
    /// caller owns the tensor for the duration of the op.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn data_mut<T: Elem>(&self) -> &mut [T] {
        assert!(self.is_contiguous() && T::DTYPE == self.dtype(), "data_mut(): needs a contiguous tensor of the right dtype");
        // SAFETY: a contiguous view of numel elements of T inside the storage
        // (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr::<T>(), self.numel()) }
    }
    /// Elements in row-major logical order, converted to `T`'s dtype if needed.
    pub fn to_vec<T: Elem>(&self) -> Vec<T> {
        let c = if self.dtype() == T::DTYPE { self.contiguous() } else { crate::kernels::cast(self, T::DTYPE) };
        c.data::<T>().to_vec()
    }
    /// `to_vec` reporting an allocation that cannot be served as an error.
    pub fn try_to_vec<T: Elem>(&self) -> Result<Vec<T>> {
        let c = if self.dtype() == T::DTYPE { self.try_contiguous()? } else { crate::kernels::try_cast(self, T::DTYPE)? };
        let d = c.data::<T>();
        let mut v = Vec::new();
        v.try_reserve_exact(d.len()).map_err(|_| crate::memory_err!("out of memory: cannot copy {} elements to a vector", d.len()))?;
        v.extend_from_slice(d);
        Ok(v)
    }
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.to_vec::<f64>()
    }
    /// The single value of a one-element tensor as f64.
    pub fn item_f64(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(crate::value_err!("a Tensor with {} elements cannot be converted to Scalar", self.numel()));
        }
        // SAFETY: numel is 1, so the data pointer addresses the one element.
        Ok(crate::dispatch_all!(self.dtype(), T => unsafe { (*self.data_ptr::<T>()).to_f64() }))
    }
    pub fn item_i64(&self) -> Result<i64> {
        if self.numel() != 1 {
            return Err(crate::value_err!("a Tensor with {} elements cannot be converted to Scalar", self.numel()));
        }
        // SAFETY: numel is 1, so the data pointer addresses the one element.
        Ok(crate::dispatch_all!(self.dtype(), T => unsafe { (*self.data_ptr::<T>()).to_i64() }))
    }

    /// `contiguous` reporting an allocation that cannot be served as an error.
    pub fn try_contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            Ok(self.clone())
        } else {
            crate::kernels::try_copy_contiguous(self)
        }
    }

    /// Same data, contiguous (self if already contiguous). Not recorded by autograd.
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            self.clone()
        } else {
            crate::kernels::copy_contiguous(self)
        }
    }

    /// An alias with the given geometry and no autograd history; an error
    /// when that geometry would address memory outside the storage.
    pub fn alias(&self, shape: &[usize], strides: &[isize], offset: usize) -> Result<Tensor> {
        check_view(self.0.storage.len_of(self.dtype()), shape, strides, offset)?;
        Ok(Tensor::from_parts(self.0.storage.clone(), shape.into(), strides.into(), offset, self.dtype()))
    }
    /// An alias of the same geometry with no autograd history (`detach`).
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), self.0.shape.clone(), self.0.strides.clone(), self.0.offset, self.dtype())
    }

    pub fn check_dtype(&self, dt: DType, what: &str) -> Result<()> {
        if self.dtype() != dt {
            return Err(dtype_err!("{what}: expected dtype {}, got {}", dt.name(), self.dtype().name()));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- autograd accessors
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.load(Ordering::Relaxed)
    }
    pub(crate) fn set_requires_grad_flag(&self, v: bool) {
        self.0.requires_grad.store(v, Ordering::Relaxed)
    }
    pub fn grad_fn(&self) -> Option<Arc<Node>> {
        self.0.meta.lock().grad_fn.clone()
    }
    /// Which output of `grad_fn()` this tensor is (0 for single-output ops and leaves).
    pub fn output_nr(&self) -> u32 {
        self.0.meta.lock().output_nr
    }
    pub fn is_leaf(&self) -> bool {
        self.0.meta.lock().grad_fn.is_none()
    }
    pub fn grad(&self) -> Option<Tensor> {
        self.0.meta.lock().grad.clone()
    }
    pub fn set_grad(&self, g: Option<Tensor>) -> Result<()> {
        if let Some(g) = &g {
            if g.same(self) {
                // torch refuses this too; here it would also make a reference cycle
                return Err(crate::autograd_err!("can't assign Variable as its own grad"));
            }
            if g.shape() != self.shape() {
                return Err(shape_err!("assigned grad has data of a different size: expected {:?}, got {:?}", self.shape(), g.shape()));
            }
            if g.dtype() != self.dtype() {
                return Err(dtype_err!(
                    "assigned grad has data of a different type: expected {}, got {}",
                    self.dtype().name(),
                    g.dtype().name()
                ));
            }
        }
        self.0.meta.lock().grad = g;
        Ok(())
    }
    /// `requires_grad_()`: only leaves may change it, and only float tensors may require grad.
    pub fn set_requires_grad(&self, v: bool) -> Result<()> {
        if !self.is_leaf() {
            if !v {
                return Err(crate::autograd_err!(
                    "you can only change requires_grad flags of leaf variables. If you want to use a computed variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach()."
                ));
            }
            return Ok(());
        }
        if v && !self.dtype().is_float() {
            return Err(crate::autograd_err!("only Tensors of floating point dtype can require gradients (got {})", self.dtype().name()));
        }
        self.set_requires_grad_flag(v);
        Ok(())
    }
    /// `detach_()`: make this tensor a leaf that does not require grad.
    pub fn detach_in_place(&self) {
        {
            let mut m = self.0.meta.lock();
            m.grad_fn = None;
            m.output_nr = 0;
            m.view_base = None;
        }
        self.set_requires_grad_flag(false);
    }
    /// The tensor this view was taken from (None for tensors that own their data).
    pub fn view_base(&self) -> Option<Tensor> {
        self.0.meta.lock().view_base.clone()
    }
    pub fn retains_grad(&self) -> bool {
        self.0.meta.lock().retains_grad
    }
}

/// A freshly allocated contiguous tensor of element type `T` that nothing
/// else references yet: the safe way for a kernel to write its output.
///
/// ```
/// use rbe_core::tensor::FreshTensor;
/// let mut out = FreshTensor::<f64>::zeros(&[2, 3]).unwrap();
/// out[4] = 1.5;
/// let t = out.into_tensor();
/// assert_eq!(t.to_vec::<f64>(), vec![0.0, 0.0, 0.0, 0.0, 1.5, 0.0]);
/// ```
pub struct FreshTensor<T: Elem> {
    t: Tensor,
    _elem: std::marker::PhantomData<T>,
}

impl<T: Elem> FreshTensor<T> {
    /// Contents unspecified (a pooled buffer keeps its old bytes): write
    /// every element that will be read.
    pub fn uninit(shape: &[usize]) -> Result<FreshTensor<T>> {
        Ok(FreshTensor { t: Tensor::empty(shape, T::DTYPE)?, _elem: std::marker::PhantomData })
    }
    /// All elements zero.
    pub fn zeros(shape: &[usize]) -> Result<FreshTensor<T>> {
        Ok(FreshTensor { t: Tensor::zeros(shape, T::DTYPE)?, _elem: std::marker::PhantomData })
    }
    /// The elements, row-major.
    pub fn as_slice(&self) -> &[T] {
        self.t.data::<T>()
    }
    /// The elements, writable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: `self.t` was allocated by this FreshTensor and never handed
        // out, so no other reference to its storage exists; `&mut self`
        // makes this borrow the only one.
        unsafe { self.t.data_mut::<T>() }
    }
    pub fn shape(&self) -> &[usize] {
        self.t.shape()
    }
    /// The finished tensor (no autograd history).
    pub fn into_tensor(self) -> Tensor {
        self.t
    }
    /// A tensor whose every element `fill` writes (it receives uninitialised
    /// contents, row-major).
    pub fn build(shape: &[usize], fill: impl FnOnce(&mut [T])) -> Result<Tensor> {
        let mut t = FreshTensor::<T>::uninit(shape)?;
        fill(&mut t);
        Ok(t.into_tensor())
    }
    /// A zero-filled tensor that `fill` then updates.
    pub fn build_zeroed(shape: &[usize], fill: impl FnOnce(&mut [T])) -> Result<Tensor> {
        let mut t = FreshTensor::<T>::zeros(shape)?;
        fill(&mut t);
        Ok(t.into_tensor())
    }
    /// A fresh contiguous copy of `src` (same dtype), to be modified before it is shared.
    pub fn copy_of(src: &Tensor) -> Result<FreshTensor<T>> {
        if src.dtype() != T::DTYPE {
            return Err(dtype_err!("copy_of: expected a {} tensor, got {}", T::DTYPE.name(), src.dtype().name()));
        }
        let mut t = FreshTensor::<T>::uninit(src.shape())?;
        let c = src.contiguous();
        t.copy_from_slice(c.data::<T>());
        Ok(t)
    }
}

impl<T: Elem> std::ops::Deref for FreshTensor<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Elem> std::ops::DerefMut for FreshTensor<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

pub fn norm_dim(d: isize, ndim: usize) -> Result<usize> {
    let n = ndim.max(1) as isize;
    if d < -n || d >= n {
        return Err(crate::index_err!("Dimension out of range (expected to be in range of [{}, {}], but got {})", -n, n - 1, d));
    }
    Ok(if d < 0 { (d + n) as usize } else { d as usize })
}

/// Dispatch over every dtype: binds `T` to the Rust element type.
#[macro_export]
macro_rules! dispatch_all {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::dtype::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::dtype::DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}

/// Dispatch over f32/f64; other dtypes give a dtype error naming `$op`.
#[macro_export]
macro_rules! dispatch_float {
    ($dt:expr, $op:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            d => return Err($crate::dtype_err!("{}: expected a floating point tensor (float32 or float64), got {}", $op, d.name())),
        }
    };
}

/// Dispatch over numeric dtypes (f32, f64, i64).
#[macro_export]
macro_rules! dispatch_num {
    ($dt:expr, $op:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::dtype::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::dtype::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::dtype::DType::I64 => {
                type $T = i64;
                $body
            }
            d => return Err($crate::dtype_err!("{}: not implemented for dtype {}", $op, d.name())),
        }
    };
}
