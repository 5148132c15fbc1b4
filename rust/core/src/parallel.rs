//! The thread pool used by parallel kernels. Kernels split work into pieces
//! whose boundaries do not depend on the number of threads, so results are
//! bit-identical whatever `set_num_threads` says.
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The global pool, tagged with the fork generation it was built in; `None`
/// inside when not even one worker thread could be started (kernels then run
/// on the calling thread: see [`num_threads`]).
type Global = Option<(u64, Option<Arc<rayon::ThreadPool>>)>;
static POOL: RwLock<Global> = RwLock::new(None);

/// Bumped in a child process right after `fork()`: the parent's worker
/// threads do not exist there, so a pool built before the fork must not be
/// used (a kernel waiting on it would never finish). The child builds a new one.
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    FORK_GEN.fetch_add(1, Ordering::SeqCst);
}

fn register_fork_handler() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: registers a handler that only increments an atomic,
            // which is async-signal-safe as a fork handler must be.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        });
    }
}

fn default_threads() -> usize {
    std::env::var("RBE_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn try_build(n: usize) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("rbe-worker-{i}")).build()
}

/// A pool of `n` threads, or of fewer when the system refuses to start that
/// many (results do not depend on the count, so fewer is only slower).
fn build(n: usize) -> crate::Result<Arc<rayon::ThreadPool>> {
    let mut k = n.max(1);
    loop {
        match try_build(k) {
            Ok(p) => return Ok(Arc::new(p)),
            Err(e) if k == 1 => return Err(crate::unsupported_err!("cannot start a worker thread: {e}")),
            Err(_) => k /= 2,
        }
    }
}

thread_local! {
    /// A pool that `with_num_threads` installs for the calling thread only.
    static OVERRIDE: std::cell::RefCell<Option<Arc<rayon::ThreadPool>>> = const { std::cell::RefCell::new(None) };
}

/// The global pool for this process (built on first use).
fn global() -> Option<Arc<rayon::ThreadPool>> {
    let generation = FORK_GEN.load(Ordering::SeqCst);
    if let Some((g, p)) = POOL.read().as_ref() {
        if *g == generation {
            return p.clone();
        }
    }
    register_fork_handler();
    let mut w = POOL.write();
    if let Some((g, p)) = w.as_ref() {
        if *g == generation {
            return p.clone();
        }
    }
    let n = match w.take() {
        // built before a fork: its threads are not in this process, so it is
        // forgotten rather than dropped (dropping would signal absent threads)
        Some((_, Some(old))) => {
            let n = old.current_num_threads();
            std::mem::forget(old);
            n
        }
        Some((_, None)) | None => default_threads(),
    };
    // a system that cannot start even one thread leaves the calling thread
    let p = build(n).ok();
    *w = Some((generation, p.clone()));
    p
}

/// The pool parallel kernels run on: the calling thread's override from
/// [`with_num_threads`] if any, else the global one. Call it only when
/// [`num_threads`] is above 1 (then a pool exists).
pub fn pool() -> Arc<rayon::ThreadPool> {
    if let Some(p) = OVERRIDE.with(|o| o.borrow().clone()) {
        return p;
    }
    global().unwrap_or_else(|| panic!("no worker thread could be started (num_threads() is 1: run on the calling thread)"))
}

pub fn set_num_threads(n: usize) -> crate::Result<()> {
    if n == 0 || n > 1024 {
        return Err(crate::value_err!("set_num_threads expects an integer between 1 and 1024, got {n}"));
    }
    register_fork_handler();
    let p = build(n)?;
    *POOL.write() = Some((FORK_GEN.load(Ordering::SeqCst), Some(p)));
    Ok(())
}

/// Threads parallel kernels may use: 1 when no worker thread could be started.
pub fn num_threads() -> usize {
    if let Some(p) = OVERRIDE.with(|o| o.borrow().clone()) {
        return p.current_num_threads();
    }
    global().map(|p| p.current_num_threads()).unwrap_or(1)
}

/// Runs `f` with kernels called from this thread using a pool of `n`
/// threads, whatever the global setting (other threads are not affected).
/// Used by tests that compare results across thread counts.
pub fn with_num_threads<R>(n: usize, f: impl FnOnce() -> R) -> crate::Result<R> {
    if n == 0 || n > 1024 {
        return Err(crate::value_err!("with_num_threads expects an integer between 1 and 1024, got {n}"));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("rbe-scoped-worker-{i}"))
        .build()
        .map_err(|e| crate::unsupported_err!("cannot start a pool of {n} threads: {e}"))?;
    struct Restore(Option<Arc<rayon::ThreadPool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            OVERRIDE.with(|o| *o.borrow_mut() = prev);
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.borrow_mut().replace(Arc::new(p))));
    Ok(f())
}

/// Runs `f(i)` for every `i < n`: on the pool when `work` (an estimate of the
/// total cost, e.g. multiply-adds) is large and there is more than one thread,
/// else on this thread. Each index must write only its own outputs; the
/// partition is by index, so results never depend on the thread count.
pub fn for_each_index(n: usize, work: usize, f: impl Fn(usize) + Send + Sync) {
    use rayon::prelude::*;
    if n > 1 && work >= PAR_WORK && num_threads() > 1 {
        pool().install(|| (0..n).into_par_iter().for_each(f));
    } else {
        (0..n).for_each(f);
    }
}

/// Runs `f(i)` for `i < n` (see [`for_each_index`]) and returns the error of
/// the lowest index that failed, if any (so the error, like the results, does
/// not depend on the thread count).
pub fn par_try(n: usize, work: usize, f: impl Fn(usize) -> crate::error::Result<()> + Send + Sync) -> crate::error::Result<()> {
    let first: std::sync::Mutex<Option<(usize, crate::error::Error)>> = std::sync::Mutex::new(None);
    for_each_index(n, work, |i| {
        if let Err(e) = f(i) {
            let mut g = first.lock().unwrap_or_else(|p| p.into_inner());
            if g.as_ref().is_none_or(|(j, _)| i < *j) {
                *g = Some((i, e));
            }
        }
    });
    match first.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// A vector of `n` copies of `v` (a kernel's scratch buffer), or an
/// out-of-memory error naming `what`.
pub fn try_vec<V: Clone>(n: usize, v: V, what: &str) -> crate::error::Result<Vec<V>> {
    let mut out = Vec::new();
    out.try_reserve_exact(n).map_err(|_| crate::memory_err!("out of memory: {what} need a scratch buffer of {n} elements"))?;
    out.resize(n, v);
    Ok(out)
}

/// Work below which `for_each_index` stays on the calling thread.
pub const PAR_WORK: usize = 1 << 20;

/// A raw pointer that parallel tasks share, each writing its own disjoint part.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: a SendPtr is only a pointer value; the tasks that dereference it
// write disjoint elements (the contract of its users), so sharing it between
// threads creates no data race.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the wrapper, not the raw field).
    #[inline]
    pub fn get(self) -> *mut T {
        self.0
    }
}
