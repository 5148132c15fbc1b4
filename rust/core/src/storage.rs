//! Raw, possibly shared memory behind tensors. A `Storage` is either owned
//! (64-byte aligned allocation) or borrowed from an external owner (a NumPy
//! array) that it keeps alive. Views share one `Storage`; its version counter
//! is bumped by every in-place write so autograd can detect stale saved values.
use crate::dtype::DType;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Large buffers are cache-line aligned; small ones take malloc's natural
/// alignment, which is much faster to allocate (kernels use unaligned loads).
const ALIGN_LARGE: usize = 64;
const ALIGN_SMALL: usize = 16;
const LARGE: usize = 1 << 16;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Bytes currently held by tensor storages that rbe allocated (not NumPy-owned memory).
pub fn allocated_bytes() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}
/// Highest `allocated_bytes()` seen since start or the last `reset_peak()`.
pub fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}
pub fn reset_peak() {
    PEAK.store(ALLOCATED.load(Ordering::Relaxed), Ordering::Relaxed);
}

enum Owner {
    Alloc(Layout),
    External(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
    Empty,
}

pub struct Storage {
    ptr: *mut u8,
    nbytes: usize,
    owner: Owner,
    version: AtomicU64,
    writable: bool,
}

// Safety: the memory is plain data; concurrent writes through aliases are the
// user's responsibility, exactly as with torch tensors and NumPy arrays.
unsafe impl Send for Storage {}
unsafe impl Sync for Storage {}

impl Storage {
    /// Zero-filled owned storage of `nbytes` bytes.
    pub fn zeroed(nbytes: usize) -> Storage {
        if nbytes == 0 {
            return Storage {
                ptr: std::ptr::NonNull::<u64>::dangling().as_ptr() as *mut u8,
                nbytes: 0,
                owner: Owner::Empty,
                version: AtomicU64::new(0),
                writable: true,
            };
        }
        let align = if nbytes >= LARGE { ALIGN_LARGE } else { ALIGN_SMALL };
        let layout = Layout::from_size_align(nbytes, align)
            .unwrap_or_else(|_| panic!("out of memory: cannot allocate {nbytes} bytes"));
        // Safety: layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            // A panic (not an abort): the bindings turn it into a Python exception.
            panic!("out of memory: cannot allocate {nbytes} bytes");
        }
        let now = ALLOCATED.fetch_add(nbytes, Ordering::Relaxed) + nbytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
        Storage { ptr, nbytes, owner: Owner::Alloc(layout), version: AtomicU64::new(0), writable: true }
    }

    /// Storage over memory owned by someone else.
    ///
    /// # Safety
    /// `ptr` must be valid for `nbytes` bytes for as long as `owner` lives, and
    /// suitably aligned for the dtype it will be read as.
    pub unsafe fn external(ptr: *mut u8, nbytes: usize, owner: Box<dyn Any + Send + Sync>, writable: bool) -> Storage {
        Storage { ptr, nbytes, owner: Owner::External(owner), version: AtomicU64::new(0), writable }
    }

    pub fn from_vec<T: Copy>(v: Vec<T>) -> Storage {
        let nbytes = std::mem::size_of_val(v.as_slice());
        let s = Storage::zeroed(nbytes);
        // Safety: s has nbytes bytes, v is plain data.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr() as *const u8, s.ptr, nbytes) };
        s
    }

    pub fn nbytes(&self) -> usize {
        self.nbytes
    }
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }
    pub fn writable(&self) -> bool {
        self.writable
    }
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
    pub fn bump_version(&self) {
        self.version.fetch_add(1, Ordering::Relaxed);
    }
    pub fn is_external(&self) -> bool {
        matches!(self.owner, Owner::External(_))
    }
    /// Number of elements of `dt` that fit.
    pub fn len_of(&self, dt: DType) -> usize {
        self.nbytes / dt.size()
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Owner::Alloc(layout) = self.owner {
            ALLOCATED.fetch_sub(self.nbytes, Ordering::Relaxed);
            // Safety: allocated with this layout in `zeroed`.
            unsafe { dealloc(self.ptr, layout) };
        }
    }
}
