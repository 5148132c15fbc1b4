//! Raw, possibly shared memory behind tensors. A `Storage` is either owned
//! (64-byte aligned allocation) or borrowed from an external owner (a NumPy
//! array) that it keeps alive. Views share one `Storage`; its version counter
//! is bumped by every in-place write so autograd can detect stale saved values.
use crate::dtype::DType;
use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Every owned buffer is cache-line aligned and sized to a size class; freed
/// buffers go back to a per-thread pool and are handed out again for the next
/// request of the same class, so a training loop allocates nothing from the
/// system once it has run a step.
const ALIGN: usize = 64;
/// Buffers above this size are not pooled (returned to the system when freed).
const POOL_MAX_BUFFER: usize = 1 << 30;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static CACHED: AtomicUsize = AtomicUsize::new(0);
static HITS: AtomicU64 = AtomicU64::new(0);
static MISSES: AtomicU64 = AtomicU64::new(0);
static POOL_LIMIT: AtomicUsize = AtomicUsize::new(0);
static POISON: AtomicU8 = AtomicU8::new(2);

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

/// Counters of the buffer pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStats {
    /// Bytes held by live tensor storages.
    pub allocated: usize,
    /// Highest `allocated` since start or `reset_peak()`.
    pub peak: usize,
    /// Bytes of freed buffers kept for reuse.
    pub cached: usize,
    /// Requests served from the pool.
    pub hits: u64,
    /// Requests that went to the system allocator.
    pub misses: u64,
    /// Most bytes the pools may keep (per thread).
    pub limit: usize,
}

pub fn pool_stats() -> PoolStats {
    PoolStats {
        allocated: allocated_bytes(),
        peak: peak_bytes(),
        cached: CACHED.load(Ordering::Relaxed),
        hits: HITS.load(Ordering::Relaxed),
        misses: MISSES.load(Ordering::Relaxed),
        limit: pool_limit(),
    }
}

fn pool_limit() -> usize {
    let l = POOL_LIMIT.load(Ordering::Relaxed);
    if l != 0 {
        return l;
    }
    let l = std::env::var("RBE_POOL_LIMIT_MB").ok().and_then(|s| s.parse::<usize>().ok()).map(|mb| mb << 20).unwrap_or(2usize << 30).max(1);
    POOL_LIMIT.store(l, Ordering::Relaxed);
    l
}

/// Sets the most bytes a thread's pool keeps; buffers freed beyond it go back to the system.
pub fn set_pool_limit(bytes: usize) {
    POOL_LIMIT.store(bytes.max(1), Ordering::Relaxed);
}

/// With RBE_POISON_UNINIT=1, fresh uninitialised buffers are filled with 0xFF
/// bytes (NaN / -1), so that a kernel reading memory it did not write shows up in tests.
fn poison() -> bool {
    let p = POISON.load(Ordering::Relaxed);
    if p != 2 {
        return p == 1;
    }
    let on = std::env::var("RBE_POISON_UNINIT").map(|v| v == "1").unwrap_or(false);
    POISON.store(on as u8, Ordering::Relaxed);
    on
}

/// Size class of a request: 64 bytes, then four classes per power of two.
fn class_of(nbytes: usize) -> (usize, usize) {
    if nbytes <= 64 {
        return (0, 64);
    }
    let p = (usize::BITS - 1 - (nbytes - 1).leading_zeros()) as usize; // 2^p < nbytes <= 2^(p+1)
    let step = 1usize << (p - 2);
    let q = (nbytes - (1 << p)).div_ceil(step); // 1..=4
    (1 + (p - 6) * 4 + (q - 1), (1 << p) + q * step)
}

struct Pool {
    lists: Vec<Vec<usize>>,
    bytes: usize,
}

impl Pool {
    fn release_all(&mut self) {
        for (class, list) in self.lists.iter_mut().enumerate() {
            for ptr in list.drain(..) {
                let size = class_size(class);
                CACHED.fetch_sub(size, Ordering::Relaxed);
                // Safety: pooled buffers were allocated with this layout.
                unsafe { dealloc(ptr as *mut u8, Layout::from_size_align_unchecked(size, ALIGN)) };
            }
        }
        self.bytes = 0;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.release_all();
    }
}

fn class_size(class: usize) -> usize {
    if class == 0 {
        return 64;
    }
    let p = (class - 1) / 4 + 6;
    let q = (class - 1) % 4 + 1;
    (1 << p) + q * (1 << (p - 2))
}

static NEXT_TAG: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static TAG: usize = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
}

/// A small number identifying the calling thread (0 once its thread-locals are gone).
fn thread_tag() -> usize {
    TAG.try_with(|t| *t).unwrap_or(0)
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const { std::cell::RefCell::new(Pool { lists: Vec::new(), bytes: 0 }) };
}

/// Returns the calling thread's cached buffers to the system (as torch's `empty_cache`).
pub fn empty_cache() {
    let _ = POOL.try_with(|p| p.borrow_mut().release_all());
}

enum Owner {
    /// A pooled buffer of the given size class, allocated by thread `tid`.
    Pooled(usize, usize),
    /// Too large for the pool.
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

// SAFETY: the memory is plain data; concurrent writes through aliases are the
// user's responsibility, exactly as with torch tensors and NumPy arrays.
unsafe impl Send for Storage {}
// SAFETY: as for Send.
unsafe impl Sync for Storage {}

impl Storage {
    fn empty_storage() -> Storage {
        Storage {
            ptr: std::ptr::NonNull::<u64>::dangling().as_ptr() as *mut u8,
            nbytes: 0,
            owner: Owner::Empty,
            version: AtomicU64::new(0),
            writable: true,
        }
    }

    /// Owned storage of `nbytes` bytes whose contents are unspecified (a reused
    /// buffer keeps its old bytes). The caller writes every byte before reading.
    pub fn uninit(nbytes: usize) -> Storage {
        Storage::alloc(nbytes, false)
    }

    /// Zero-filled owned storage of `nbytes` bytes.
    pub fn zeroed(nbytes: usize) -> Storage {
        Storage::alloc(nbytes, true)
    }

    fn alloc(nbytes: usize, zero: bool) -> Storage {
        Storage::try_alloc(nbytes, zero).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Owned storage of `nbytes` bytes (zero-filled when `zero`), or an
    /// out-of-memory error when the system refuses the allocation.
    pub fn try_alloc(nbytes: usize, zero: bool) -> crate::Result<Storage> {
        if nbytes == 0 {
            return Ok(Storage::empty_storage());
        }
        let now = ALLOCATED.fetch_add(nbytes, Ordering::Relaxed) + nbytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
        let (ptr, owner) = if nbytes <= POOL_MAX_BUFFER {
            let (class, size) = class_of(nbytes);
            let reused = POOL
                .try_with(|p| {
                    let mut p = p.borrow_mut();
                    let ptr = p.lists.get_mut(class).and_then(|l| l.pop());
                    if ptr.is_some() {
                        p.bytes -= size;
                    }
                    ptr
                })
                .ok()
                .flatten();
            match reused {
                Some(ptr) => {
                    HITS.fetch_add(1, Ordering::Relaxed);
                    CACHED.fetch_sub(size, Ordering::Relaxed);
                    let ptr = ptr as *mut u8;
                    if zero {
                        // SAFETY: a pooled buffer of this class has at least nbytes bytes.
                        unsafe { std::ptr::write_bytes(ptr, 0, nbytes) };
                    }
                    (ptr, Owner::Pooled(class, thread_tag()))
                }
                None => (Storage::fresh(nbytes, size, zero)?, Owner::Pooled(class, thread_tag())),
            }
        } else {
            let ptr = Storage::fresh(nbytes, nbytes, zero)?;
            // `fresh` built this layout successfully, so it is valid.
            (ptr, Owner::Alloc(Layout::from_size_align(nbytes, ALIGN).expect("layout checked in fresh")))
        };
        Ok(Storage { ptr, nbytes, owner, version: AtomicU64::new(0), writable: true })
    }

    fn fresh(nbytes: usize, size: usize, zero: bool) -> crate::Result<*mut u8> {
        MISSES.fetch_add(1, Ordering::Relaxed);
        let Ok(layout) = Layout::from_size_align(size, ALIGN) else {
            ALLOCATED.fetch_sub(nbytes, Ordering::Relaxed);
            return Err(crate::memory_err!("out of memory: cannot allocate {nbytes} bytes"));
        };
        // SAFETY: layout has non-zero size (nbytes > 0 and size >= nbytes).
        let ptr = unsafe {
            if zero {
                alloc_zeroed(layout)
            } else {
                alloc(layout)
            }
        };
        if ptr.is_null() {
            ALLOCATED.fetch_sub(nbytes, Ordering::Relaxed);
            return Err(crate::memory_err!("out of memory: cannot allocate {nbytes} bytes"));
        }
        if !zero && poison() {
            // SAFETY: fresh buffer of `size` bytes.
            unsafe { std::ptr::write_bytes(ptr, 0xFF, size) };
        }
        Ok(ptr)
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
        let s = Storage::uninit(nbytes);
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
        match self.owner {
            Owner::Pooled(class, tid) => {
                ALLOCATED.fetch_sub(self.nbytes, Ordering::Relaxed);
                let size = class_size(class);
                let ptr = self.ptr as usize;
                // a buffer freed by another thread than its allocator goes back to the
                // system: caching it here would grow this thread's pool with sizes it
                // may never ask for (a producer thread keeps allocating fresh ones)
                let kept = tid == thread_tag()
                    && POOL
                        .try_with(|p| {
                            let mut p = p.borrow_mut();
                            if p.bytes + size > pool_limit() {
                                return false;
                            }
                            if p.lists.len() <= class {
                                p.lists.resize_with(class + 1, Vec::new);
                            }
                            p.lists[class].push(ptr);
                            p.bytes += size;
                            true
                        })
                        .unwrap_or(false);
                if kept {
                    CACHED.fetch_add(size, Ordering::Relaxed);
                    if poison() {
                        // Safety: the buffer is ours and no longer referenced.
                        unsafe { std::ptr::write_bytes(self.ptr, 0xFF, size) };
                    }
                } else {
                    // Safety: allocated with this layout in `fresh`.
                    unsafe { dealloc(self.ptr, Layout::from_size_align_unchecked(size, ALIGN)) };
                }
            }
            Owner::Alloc(layout) => {
                ALLOCATED.fetch_sub(self.nbytes, Ordering::Relaxed);
                // Safety: allocated with this layout in `fresh`.
                unsafe { dealloc(self.ptr, layout) };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_cover_requests_with_little_waste() {
        for n in 1..100_000usize {
            let (c, size) = class_of(n);
            assert!(size >= n && (n <= 64 || size * 4 <= n * 5 + 256), "{n} -> {size}");
            assert_eq!(class_size(c), size);
        }
    }

    #[test]
    fn freed_buffers_are_reused() {
        let before = pool_stats();
        for _ in 0..10 {
            let s = Storage::uninit(1000);
            drop(s);
        }
        let after = pool_stats();
        assert!(after.hits - before.hits >= 9);
    }
}
