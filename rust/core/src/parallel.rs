//! The thread pool used by parallel kernels. Kernels split work into pieces
//! whose boundaries do not depend on the number of threads, so results are
//! bit-identical whatever `set_num_threads` says.
use parking_lot::RwLock;
use std::sync::Arc;

static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

fn default_threads() -> usize {
    std::env::var("RBE_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn build(n: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("rbe-worker-{i}")).build().expect("thread pool"))
}

pub fn pool() -> Arc<rayon::ThreadPool> {
    if let Some(p) = POOL.read().as_ref() {
        return p.clone();
    }
    let mut w = POOL.write();
    w.get_or_insert_with(|| build(default_threads())).clone()
}

pub fn set_num_threads(n: usize) -> crate::Result<()> {
    if n == 0 || n > 1024 {
        return Err(crate::value_err!("set_num_threads expects an integer between 1 and 1024, got {n}"));
    }
    *POOL.write() = Some(build(n));
    Ok(())
}

pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// A raw pointer that parallel tasks share, each writing its own disjoint part.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the wrapper, not the raw field).
    #[inline]
    pub fn get(self) -> *mut T {
        self.0
    }
}
