//! The HMM kernels: pure loops over slices (no tensors, no autograd).
//!
//! Every kernel runs one task per sequence ([`for_each_index`]); a task
//! writes only its own sequence's rows, and reductions over the batch (the
//! gradient of a shared transition matrix or initial distribution) are done
//! by the caller in sequence order, so results do not depend on the thread
//! count.
//!
//! # Representation
//! Messages are kept normalised in log space, so that every quantity a
//! kernel exponentiates has a small magnitude whatever the length of the
//! sequence: the forward message `lf_t = log alpha_t - C_t` with
//! `logsumexp(lf_t) = 0` and `C_t = cf_0 + ... + cf_t` (the increments `cf`
//! in f64; the log-likelihood is `C_{L-1}`), and the backward message
//! `lb_t = log beta_t - D_t` with `max(lb_t) = 0`, `D_t = dn_t + ... +
//! dn_{L-1}`.
//!
//! # The matrix-product step
//! A forward step `alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A[i][j]) + e_t[j]`
//! is computed as `q = p^T C` with `p = exp(lf_{t-1} - max)` and the
//! column-shifted `C[i][j] = exp(A[i][j] - cs_j)`, then `(max + cs_j) +
//! ln q_j + e_t[j]`: one vector-matrix product and `K` logarithms instead of
//! `K^2` exponentials. Every factor is in `[0, 1]`, so only terms below the
//! smallest normal number can be lost; a column whose sum falls below
//! [`HmmReal::TINY`] (all its terms tiny, or structurally zero) is recomputed
//! as an exact log-sum-exp, which keeps `-inf` exact. The backward step uses
//! the row-shifted matrix likewise, and the expected transition counts reuse
//! the backward step's products (`xi_t[i][j] = p'_i R[i][j] r_j / S_t`, an
//! outer product accumulated over `t` and multiplied by `R` once at the end).
//! Per-step transition matrices `(B, T-1, K, K)` take the exact log-sum-exp
//! form at every step (each matrix is used once, so nothing is gained by
//! shifting it).
//!
//! Reductions (sums, maxima, dot products) accumulate in 16 fixed lanes, so
//! they vectorise and give the same bits on every run. Each per-sequence
//! kernel is compiled for AVX-512, AVX2+FMA and the baseline and picks one at
//! run time ([`isa_dispatch`]).
use crate::math::HmmReal;
use rbe_core::ext::{simd, Result, SendPtr};

/// How the transition matrices are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransKind {
    /// One `(K, K)` matrix for every sequence and step.
    Shared,
    /// One `(K, K)` matrix per sequence: `(B, K, K)`.
    PerSeq,
    /// One matrix per sequence and step: `(B, T-1, K, K)`, matrix `t` for the
    /// transition from step `t` to `t + 1`.
    PerStep,
}

/// The inputs of an inference kernel, as contiguous row-major slices.
pub struct Problem<'a, T> {
    /// Batch size, padded length, states.
    pub b: usize,
    pub t: usize,
    pub k: usize,
    /// Length of each sequence (`<= t`).
    pub lens: &'a [usize],
    /// Initial log-probabilities: `K` values, or `B * K` when `pi_per_seq`.
    pub pi: &'a [T],
    pub pi_per_seq: bool,
    /// Transition log-probabilities, laid out as `kind` says.
    pub a: &'a [T],
    pub kind: TransKind,
    /// Emission log-probabilities `(B, T, K)`.
    pub e: &'a [T],
}

impl<'a, T: HmmReal> Problem<'a, T> {
    /// Initial log-probabilities of sequence `b`.
    pub fn pi_of(&self, b: usize) -> &'a [T] {
        if self.pi_per_seq {
            &self.pi[b * self.k..(b + 1) * self.k]
        } else {
            self.pi
        }
    }
    /// Emissions of sequence `b` (its `L_b` rows).
    pub fn e_of(&self, b: usize) -> &'a [T] {
        let n = self.t * self.k;
        &self.e[b * n..b * n + self.lens[b] * self.k]
    }
    /// The matrix of sequence `b` (shared and per-sequence kinds).
    pub fn a_of(&self, b: usize) -> &'a [T] {
        let kk = self.k * self.k;
        match self.kind {
            TransKind::Shared => self.a,
            TransKind::PerSeq => &self.a[b * kk..(b + 1) * kk],
            TransKind::PerStep => {
                let n = self.t.saturating_sub(1) * kk;
                &self.a[b * n..(b + 1) * n]
            }
        }
    }
    /// Elements of the transition gradient of one sequence.
    pub fn a_grad_len(&self) -> usize {
        match self.kind {
            TransKind::Shared | TransKind::PerSeq => self.k * self.k,
            TransKind::PerStep => self.t.saturating_sub(1) * self.k * self.k,
        }
    }
    /// A rough count of multiply-adds, for the parallel threshold.
    pub fn work(&self) -> usize {
        let steps: usize = self.lens.iter().sum();
        steps.saturating_mul(self.k).saturating_mul(self.k).saturating_mul(4)
    }
}

/// A vector of `n` copies of `v`, or an out-of-memory error naming these kernels.
pub fn try_vec<V: Clone>(n: usize, v: V) -> Result<Vec<V>> {
    rbe_core::ext::try_vec(n, v, "hmm kernels")
}

pub use rbe_core::ext::par_try;

/// An output buffer cut into equal chunks, one per task.
pub struct Chunks<V> {
    ptr: SendPtr<V>,
    len: usize,
    chunk: usize,
}

impl<V> Chunks<V> {
    /// `buf` cut into chunks of `chunk` elements.
    pub fn new(buf: &mut [V], chunk: usize) -> Chunks<V> {
        Chunks { ptr: SendPtr(buf.as_mut_ptr()), len: buf.len(), chunk }
    }
    /// Chunk `i`.
    ///
    /// # Safety
    /// No two live references may be obtained for the same `i` (each task
    /// takes the chunk of its own index, once), and the buffer given to
    /// [`Chunks::new`] must outlive the returned slice and not be used
    /// otherwise meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self, i: usize) -> &mut [V] {
        let start = i * self.chunk;
        assert!(start + self.chunk <= self.len, "chunk {i} outside the buffer");
        // SAFETY: inside the buffer (asserted); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.0.add(start), self.chunk) }
    }
}

/// Compiles `$imp` (an `#[inline(always)]` generic function) for AVX-512,
/// AVX2+FMA and the baseline, and picks one at run time.
macro_rules! isa_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<T>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $imp:ident) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<T: HmmReal>($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v512<T: HmmReal>($($arg: $ty),*) $(-> $ret)? {
                    $imp::<T>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v256<T: HmmReal>($($arg: $ty),*) $(-> $ret)? {
                    $imp::<T>($($arg),*)
                }
                if simd::has_avx512() {
                    // SAFETY: the CPU has AVX-512F/DQ, AVX2 and FMA (checked at run time).
                    return unsafe { v512::<T>($($arg),*) };
                }
                if simd::has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    return unsafe { v256::<T>($($arg),*) };
                }
            }
            $imp::<T>($($arg),*)
        }
    };
}

// ---------------------------------------------------------------- small vector helpers

const LANES: usize = 16;

#[inline(always)]
fn mx<T: HmmReal>(a: T, b: T) -> T {
    if b > a {
        b
    } else {
        a
    }
}

#[inline(always)]
fn lane_sum<T: HmmReal>(x: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let mut ch = x.chunks_exact(LANES);
    for c in &mut ch {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    for (l, &v) in ch.remainder().iter().enumerate() {
        acc[l] += v;
    }
    let mut s = T::ZERO;
    for a in acc {
        s += a;
    }
    s
}

#[inline(always)]
fn lane_max<T: HmmReal>(x: &[T]) -> T {
    let mut acc = [T::NEG_INF; LANES];
    let mut ch = x.chunks_exact(LANES);
    for c in &mut ch {
        for l in 0..LANES {
            acc[l] = mx(acc[l], c[l]);
        }
    }
    for (l, &v) in ch.remainder().iter().enumerate() {
        acc[l] = mx(acc[l], v);
    }
    let mut s = T::NEG_INF;
    for a in acc {
        s = mx(s, a);
    }
    s
}

/// The smallest element (NaN-free input; `+inf` for an empty slice).
#[inline(always)]
fn lane_min<T: HmmReal>(x: &[T]) -> T {
    let mut acc = [T::INF; LANES];
    let mut ch = x.chunks_exact(LANES);
    for c in &mut ch {
        for l in 0..LANES {
            acc[l] = if c[l] < acc[l] { c[l] } else { acc[l] };
        }
    }
    for (l, &v) in ch.remainder().iter().enumerate() {
        acc[l] = if v < acc[l] { v } else { acc[l] };
    }
    let mut s = T::INF;
    for a in acc {
        s = if a < s { a } else { s };
    }
    s
}

#[inline(always)]
fn lane_dot<T: HmmReal>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; LANES];
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    let mut s = T::ZERO;
    for a in acc {
        s += a;
    }
    s
}

/// `out = exp(x - m)`; returns the sum of `out`. `m` must be finite.
#[inline(always)]
fn exp_shift_sum<T: HmmReal>(x: &[T], m: T, out: &mut [T]) -> T {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - m).vexp();
    }
    lane_sum(out)
}

/// `out = (u - M) - ln(sum exp(u - M))`; returns `M + ln(sum)` in f64, or
/// `-inf` (with `out` all `-inf`) when every `u` is `-inf`.
#[inline(always)]
fn log_normalize<T: HmmReal>(u: &[T], out: &mut [T], tmp: &mut [T]) -> f64 {
    let m = lane_max(u);
    if m == T::NEG_INF {
        out.fill(T::NEG_INF);
        return f64::NEG_INFINITY;
    }
    let ls = exp_shift_sum(u, m, tmp).vln();
    for (o, &x) in out.iter_mut().zip(u) {
        *o = (x - m) - ls;
    }
    m.wide() + ls.wide()
}

/// `softmax(u)` into `out` (zeros when every `u` is `-inf`), times `scale`.
#[inline(always)]
fn softmax_scaled<T: HmmReal>(u: &[T], scale: T, out: &mut [T]) {
    let m = lane_max(u);
    if m == T::NEG_INF {
        out.fill(T::ZERO);
        return;
    }
    let s = exp_shift_sum(u, m, out);
    let ls = s.vln();
    for (o, &x) in out.iter_mut().zip(u) {
        *o = ((x - m) - ls).vexp() * scale;
    }
}

// ---------------------------------------------------------------- shifted transition matrices

/// The exponentials of one transition matrix, shifted per column (forward
/// steps) and per row (backward steps), stored transposed for the latter.
pub struct Shifted<T> {
    /// `col[i * K + j] = exp(A[i][j] - cs[j])` (0 in a column that is all `-inf`).
    pub col: Vec<T>,
    pub cs: Vec<T>,
    /// `row_t[j * K + i] = exp(A[i][j] - rs[i])` (0 in a row that is all `-inf`).
    pub row_t: Vec<T>,
    pub rs: Vec<T>,
}

impl<T: HmmReal> Shifted<T> {
    pub fn alloc(k: usize) -> Result<Shifted<T>> {
        Ok(Shifted { col: try_vec(k * k, T::ZERO)?, cs: try_vec(k, T::ZERO)?, row_t: try_vec(k * k, T::ZERO)?, rs: try_vec(k, T::ZERO)? })
    }
}

#[inline(always)]
fn shift_impl<T: HmmReal>(a: &[T], k: usize, sh: &mut Shifted<T>) {
    sh.cs.fill(T::NEG_INF);
    for i in 0..k {
        let row = &a[i * k..(i + 1) * k];
        for (c, &v) in sh.cs.iter_mut().zip(row) {
            *c = mx(*c, v);
        }
        sh.rs[i] = lane_max(row);
    }
    for i in 0..k {
        let row = &a[i * k..(i + 1) * k];
        let out = &mut sh.col[i * k..(i + 1) * k];
        for ((o, &v), &c) in out.iter_mut().zip(row).zip(&sh.cs) {
            let s = if c == T::NEG_INF { T::ZERO } else { c };
            *o = (v - s).vexp();
        }
        let r = sh.rs[i];
        let s = if r == T::NEG_INF { T::ZERO } else { r };
        for (j, &v) in row.iter().enumerate() {
            sh.row_t[j * k + i] = (v - s).vexp();
        }
    }
}
isa_dispatch! {
    /// Fills `sh` from the `K x K` matrix `a`.
    pub fn shift<T>(a: &[T], k: usize, sh: &mut Shifted<T>) = shift_impl
}

/// `out[l] = sum_i p[i] * c[i * k + j0 + l]` for `l < W`: one block of
/// columns of the rows of `c` weighted by `p`. Four independent partial sums
/// (rows `i = 4m + r` go to sum `r`, each term added by one fused
/// multiply-add), added as `(s0 + s1) + (s2 + s3)`, so the additions do not
/// wait on each other; a fixed order, so the bits depend on neither the
/// block nor the thread.
#[inline(always)]
fn block_dot<T: HmmReal, const W: usize>(p: &[T], c: &[T], k: usize, j0: usize) -> [T; W] {
    let n = p.len();
    assert!(j0 + W <= k && n.checked_mul(k).is_some_and(|nk| nk <= c.len()), "block_dot: block outside the matrix");
    let mut s = [[T::ZERO; W]; 4];
    let n4 = n / 4 * 4;
    let cp = c.as_ptr();
    let mut i = 0;
    while i < n4 {
        for (r, acc) in s.iter_mut().enumerate() {
            // SAFETY: i + r < n and j0 + W <= k, so the W elements from
            // (i + r) * k + j0 lie inside c (n * k <= c.len(), asserted above).
            let row = unsafe { std::slice::from_raw_parts(cp.add((i + r) * k + j0), W) };
            // SAFETY: i + r < n4 <= n = p.len().
            let pv = unsafe { *p.get_unchecked(i + r) };
            for (a, &x) in acc.iter_mut().zip(row) {
                *a = pv.fma(x, *a);
            }
        }
        i += 4;
    }
    for (r, acc) in s.iter_mut().enumerate().take(n - n4) {
        let row = &c[(i + r) * k + j0..(i + r) * k + j0 + W];
        let pv = p[i + r];
        for (a, &x) in acc.iter_mut().zip(row) {
            *a = pv.fma(x, *a);
        }
    }
    let mut out = [T::ZERO; W];
    for (l, o) in out.iter_mut().enumerate() {
        *o = (s[0][l] + s[1][l]) + (s[2][l] + s[3][l]);
    }
    out
}

/// `q[j] = sum_i p[i] * c[i * k + j]` for every `j` (the rows of the
/// `K x K` matrix `c` weighted by `p`), in blocks of 16 columns whose
/// accumulators stay in registers ([`block_dot`]; in f64 two AVX-512
/// registers per partial sum, eight independent chains of fused
/// multiply-adds). The width changes which columns share a loop, never the
/// order of any sum (the same bits for any width). Wider f32 blocks (32)
/// were tried: LLVM no longer vectorised them and the kernels ran 2.5x
/// slower.
#[inline(always)]
fn vecmat<T: HmmReal>(p: &[T], c: &[T], k: usize, q: &mut [T]) {
    vecmat_w::<T, 16>(p, c, k, q)
}

#[inline(always)]
fn vecmat_w<T: HmmReal, const W: usize>(p: &[T], c: &[T], k: usize, q: &mut [T]) {
    if k >= W {
        vecmat_blocks::<T, W>(p, c, k, q)
    } else if k >= 16 {
        vecmat_blocks::<T, 16>(p, c, k, q)
    } else if k >= 4 {
        vecmat_blocks::<T, 4>(p, c, k, q)
    } else {
        for (j, o) in q[..k].iter_mut().enumerate() {
            *o = block_dot::<T, 1>(p, c, k, j)[0];
        }
    }
}

/// [`vecmat`] in blocks of `W <= k` columns, the last block ending at column
/// `k` (the columns it shares with the previous block get the same sums
/// again: same order, same bits).
#[inline(always)]
fn vecmat_blocks<T: HmmReal, const W: usize>(p: &[T], c: &[T], k: usize, q: &mut [T]) {
    let full = k / W * W;
    for j0 in (0..full).step_by(W) {
        q[j0..j0 + W].copy_from_slice(&block_dot::<T, W>(p, c, k, j0));
    }
    if full < k {
        let j0 = k - W;
        q[j0..k].copy_from_slice(&block_dot::<T, W>(p, c, k, j0));
    }
}

// ---------------------------------------------------------------- forward

/// Exact `logsumexp_i(prev[i] + a[i][j])` for one column `j`.
#[inline(always)]
fn exact_col<T: HmmReal>(prev: &[T], a: &[T], k: usize, j: usize) -> T {
    let mut m = T::NEG_INF;
    for (i, &p) in prev.iter().enumerate() {
        m = mx(m, p + a[i * k + j]);
    }
    if m == T::NEG_INF {
        return m;
    }
    let mut s = T::ZERO;
    for (i, &p) in prev.iter().enumerate() {
        s += (p + a[i * k + j] - m).vexp();
    }
    m + s.vln()
}

/// `u[j] = logsumexp_i(prev[i] + a[i][j])` for every `j` (exact form; `cm`
/// and `cs` are scratch of `K`).
#[inline(always)]
fn exact_step_fwd<T: HmmReal>(prev: &[T], a: &[T], k: usize, u: &mut [T], cm: &mut [T]) {
    cm.fill(T::NEG_INF);
    for (i, &p) in prev.iter().enumerate() {
        if p == T::NEG_INF {
            continue;
        }
        for (c, &v) in cm.iter_mut().zip(&a[i * k..(i + 1) * k]) {
            *c = mx(*c, p + v);
        }
    }
    for c in cm.iter_mut() {
        // a column that is all -inf keeps shift 0, so the sum below is 0 and its log -inf
        if *c == T::NEG_INF {
            *c = T::ZERO;
        }
    }
    u.fill(T::ZERO);
    for (i, &p) in prev.iter().enumerate() {
        if p == T::NEG_INF {
            continue;
        }
        for ((s, &v), &c) in u.iter_mut().zip(&a[i * k..(i + 1) * k]).zip(cm.iter()) {
            *s += (p + v - c).vexp();
        }
    }
    for (s, &c) in u.iter_mut().zip(cm.iter()) {
        *s = c + s.vln();
    }
}

/// Scratch of a forward pass over one sequence: `4 K` elements.
pub fn fwd_scratch_len(k: usize) -> usize {
    4 * k
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // the per-sequence slices, passed apart so the borrows stay disjoint
fn forward_seq_impl<T: HmmReal>(
    pi: &[T],
    sh: Option<&Shifted<T>>,
    a: &[T],
    per_step: bool,
    e: &[T],
    k: usize,
    lf: &mut [T],
    cf: &mut [f64],
    scratch: &mut [T],
) {
    let l = e.len() / k;
    if l == 0 {
        return;
    }
    let (p, rest) = scratch.split_at_mut(k);
    let (q, rest) = rest.split_at_mut(k);
    let u = &mut rest[..k];
    for ((o, &x), &y) in u.iter_mut().zip(pi).zip(&e[..k]) {
        *o = x + y;
    }
    // `log_normalize` leaves `p = exp(u - max u)`: the shifted message the
    // next step multiplies (its shift, `max prev`, is `-ln sum p` exactly)
    cf[0] = log_normalize(u, &mut lf[..k], p);
    for t in 1..l {
        let (done, cur) = lf.split_at_mut(t * k);
        let prev = &done[(t - 1) * k..];
        let cur = &mut cur[..k];
        let et = &e[t * k..(t + 1) * k];
        let m = lane_max(prev);
        if m == T::NEG_INF {
            cur.fill(T::NEG_INF);
            cf[t] = f64::NEG_INFINITY;
            continue;
        }
        match (per_step, sh) {
            (false, Some(sh)) => {
                // p = exp(prev - m), left by the previous step's log_normalize
                vecmat(p, &sh.col, k, q);
                for (((uj, &qj), &cj), &ej) in u.iter_mut().zip(q.iter()).zip(&sh.cs).zip(et) {
                    *uj = (m + cj) + qj.vln() + ej;
                }
                if lane_min(q) < T::TINY {
                    for j in 0..k {
                        if q[j] < T::TINY {
                            u[j] = exact_col(prev, a, k, j) + et[j];
                        }
                    }
                }
            }
            _ => {
                let at = &a[(t - 1) * k * k..t * k * k];
                exact_step_fwd(prev, at, k, u, q);
                for (uj, &ej) in u.iter_mut().zip(et) {
                    *uj += ej;
                }
            }
        }
        cf[t] = log_normalize(u, cur, p);
    }
}
isa_dispatch! {
    /// The forward pass over one sequence of `e.len() / k` steps: `lf` and
    /// `cf` (see the module docs). `sh` is the shifted form of `a` for the
    /// shared and per-sequence kinds; with `per_step`, `a` holds `L - 1`
    /// matrices.
    pub fn forward_seq<T>(pi: &[T], sh: Option<&Shifted<T>>, a: &[T], per_step: bool, e: &[T], k: usize, lf: &mut [T], cf: &mut [f64], scratch: &mut [T]) = forward_seq_impl
}

/// The shifted matrices of `p` when they are shared by the batch.
fn shared_shift<T: HmmReal>(p: &Problem<T>) -> Result<Option<Shifted<T>>> {
    if p.kind != TransKind::Shared {
        return Ok(None);
    }
    let mut sh = Shifted::alloc(p.k)?;
    shift(p.a, p.k, &mut sh);
    Ok(Some(sh))
}

/// The shifted matrices of sequence `b`: the shared ones, or computed into `own`.
fn seq_shift<'s, T: HmmReal>(
    p: &Problem<T>,
    b: usize,
    shared: &'s Option<Shifted<T>>,
    own: &'s mut Option<Shifted<T>>,
) -> Result<Option<&'s Shifted<T>>> {
    match p.kind {
        TransKind::Shared => Ok(shared.as_ref()),
        TransKind::PerSeq => {
            let mut sh = Shifted::alloc(p.k)?;
            shift(p.a_of(b), p.k, &mut sh);
            *own = Some(sh);
            Ok(own.as_ref())
        }
        TransKind::PerStep => Ok(None),
    }
}

/// The forward pass over the batch: `lf` `(B, T, K)` and `cf` `(B, T)`
/// (rows past a sequence's length are left as they were).
pub fn forward<T: HmmReal>(p: &Problem<T>, lf: &mut [T], cf: &mut [f64]) -> Result<()> {
    let (t, k) = (p.t, p.k);
    let shared = shared_shift(p)?;
    let (lfc, cfc) = (Chunks::new(lf, t * k), Chunks::new(cf, t));
    par_try(p.b, p.work(), |b| {
        let mut own = None;
        let sh = seq_shift(p, b, &shared, &mut own)?;
        let mut scratch = try_vec(fwd_scratch_len(k), T::ZERO)?;
        // SAFETY: task b is the only one taking chunk b of each buffer.
        let (lf, cf) = unsafe { (lfc.get(b), cfc.get(b)) };
        forward_seq(p.pi_of(b), sh, p.a_of(b), p.kind == TransKind::PerStep, p.e_of(b), k, lf, cf, &mut scratch);
        Ok(())
    })
}

/// The log-likelihood of each sequence from the forward increments: `sum cf`
/// over its length (0 for an empty sequence).
pub fn log_likelihoods(cf: &[f64], t: usize, lens: &[usize]) -> Vec<f64> {
    lens.iter().enumerate().map(|(b, &l)| cf[b * t..b * t + l].iter().sum()).collect()
}

// ---------------------------------------------------------------- backward, posteriors, expected counts

/// What [`backward_seq`] writes, for one sequence (each optional).
pub struct BwdOut<'o, T> {
    /// The normalised backward messages `lb` (`L x K`) and their increments
    /// `dn` (`L`, `dn[L-1] = 0`).
    pub lb: Option<&'o mut [T]>,
    pub dn: Option<&'o mut [f64]>,
    /// The posteriors gamma times `scale` (`L x K`).
    pub gamma: Option<&'o mut [T]>,
    /// The expected transition counts times `scale`: their sum over steps
    /// (`K x K`) for the shared and per-sequence kinds, one matrix per step
    /// (`(L-1) x K x K`, rows of the padded `(T-1)` layout) for per-step.
    pub xi: Option<&'o mut [T]>,
    pub scale: T,
}

/// Scratch of [`backward_seq`]: `2 K^2 + 9 K`.
pub fn bwd_scratch_len(k: usize) -> usize {
    2 * k * k + 9 * k + 2 * XI_BATCH * k
}

/// Steps whose rank-one updates of the expected counts are gathered before
/// they are added (see [`flush_xi`]).
const XI_BATCH: usize = 32;

/// `acc[i][j] += sum_s cp[s][i] * rv[s][j]` over the `n` gathered steps: a
/// small matrix product in register tiles of `R` rows by 16 columns (eight
/// rows at a time, so the tile's accumulators are independent chains of
/// fused multiply-adds). Each element is one chain over the steps in order,
/// added to `acc` once per flush: the same bits for any tiling or thread.
#[inline(always)]
fn flush_xi<T: HmmReal>(acc: &mut [T], cp: &[T], rv: &[T], k: usize, n: usize) {
    let mut i0 = 0;
    while i0 + 8 <= k {
        flush_xi_rows::<T, 8>(acc, cp, rv, k, n, i0);
        i0 += 8;
    }
    if i0 + 4 <= k {
        flush_xi_rows::<T, 4>(acc, cp, rv, k, n, i0);
        i0 += 4;
    }
    while i0 < k {
        flush_xi_rows::<T, 1>(acc, cp, rv, k, n, i0);
        i0 += 1;
    }
}

/// Rows `i0 .. i0 + R` of [`flush_xi`], in blocks of 16 columns (4 or 1
/// when `K < 16`; the last block ends at column `K` and adds only its
/// columns not done yet).
#[inline(always)]
fn flush_xi_rows<T: HmmReal, const R: usize>(acc: &mut [T], cp: &[T], rv: &[T], k: usize, n: usize, i0: usize) {
    if k >= 16 {
        flush_xi_cols::<T, R, 16>(acc, cp, rv, k, n, i0)
    } else if k >= 4 {
        flush_xi_cols::<T, R, 4>(acc, cp, rv, k, n, i0)
    } else {
        flush_xi_cols::<T, R, 1>(acc, cp, rv, k, n, i0)
    }
}

#[inline(always)]
fn flush_xi_cols<T: HmmReal, const R: usize, const W: usize>(acc: &mut [T], cp: &[T], rv: &[T], k: usize, n: usize, i0: usize) {
    let full = k / W * W;
    let mut j0 = 0;
    while j0 < k {
        let (start, skip) = if j0 < full { (j0, 0) } else { (k - W, W - (k - full)) };
        let d = xi_tile::<T, R, W>(cp, rv, k, n, i0, start);
        for (r, dr) in d.iter().enumerate() {
            let row = &mut acc[(i0 + r) * k + start + skip..(i0 + r) * k + start + W];
            for (x, &y) in row.iter_mut().zip(&dr[skip..]) {
                *x += y;
            }
        }
        j0 = if j0 < full { j0 + W } else { k };
    }
}

/// The `R x W` tile `sum_s cp[s][i0 + r] * rv[s][j0 + l]`, one chain per element over `s < n` in order.
#[inline(always)]
fn xi_tile<T: HmmReal, const R: usize, const W: usize>(cp: &[T], rv: &[T], k: usize, n: usize, i0: usize, j0: usize) -> [[T; W]; R] {
    assert!(
        i0 + R <= k && j0 + W <= k && n.checked_mul(k).is_some_and(|nk| nk <= cp.len() && nk <= rv.len()),
        "xi_tile: tile outside the buffers"
    );
    let mut a = [[T::ZERO; W]; R];
    let (cpp, rvp) = (cp.as_ptr(), rv.as_ptr());
    for s in 0..n {
        // SAFETY: s < n, j0 + W <= k and n * k <= rv.len() (asserted), so the W elements lie inside rv.
        let rs = unsafe { std::slice::from_raw_parts(rvp.add(s * k + j0), W) };
        for (r, ar) in a.iter_mut().enumerate() {
            // SAFETY: s < n, i0 + r < i0 + R <= k and n * k <= cp.len() (asserted).
            let c = unsafe { *cpp.add(s * k + i0 + r) };
            for (x, &y) in ar.iter_mut().zip(rs) {
                *x = c.fma(y, *x);
            }
        }
    }
    a
}

/// Exact `u[i] = logsumexp_j(a[i][j] + w[j])` for one row.
#[inline(always)]
fn exact_row<T: HmmReal>(arow: &[T], w: &[T], tmp: &mut [T]) -> T {
    for ((o, &x), &y) in tmp.iter_mut().zip(arow).zip(w) {
        *o = x + y;
    }
    let m = lane_max(tmp);
    if m == T::NEG_INF {
        return m;
    }
    for o in tmp.iter_mut() {
        *o = (*o - m).vexp();
    }
    m + lane_sum(tmp).vln()
}

/// Adds `scale * xi_t` to `out` (`K x K`), exactly: `xi_t[i][j]` proportional
/// to `exp(lf[i] + a[i][j] + w[j])`, normalised over `(i, j)`. `tmp` has `K^2`.
#[inline(always)]
fn exact_xi<T: HmmReal>(lf: &[T], a: &[T], w: &[T], k: usize, scale: T, out: &mut [T], tmp: &mut [T]) {
    let mut m = T::NEG_INF;
    for i in 0..k {
        let row = &mut tmp[i * k..(i + 1) * k];
        for ((o, &x), &y) in row.iter_mut().zip(&a[i * k..(i + 1) * k]).zip(w) {
            *o = lf[i] + x + y;
        }
        m = mx(m, lane_max(row));
    }
    if m == T::NEG_INF {
        return;
    }
    let mut s = T::ZERO;
    for i in 0..k {
        let row = &mut tmp[i * k..(i + 1) * k];
        for o in row.iter_mut() {
            *o = (*o - m).vexp();
        }
        s += lane_sum(row);
    }
    let c = scale / s;
    for (o, &x) in out.iter_mut().zip(tmp.iter()) {
        *o += c * x;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // the per-sequence slices, passed apart so the borrows stay disjoint
fn backward_seq_impl<T: HmmReal>(
    sh: Option<&Shifted<T>>,
    a: &[T],
    per_step: bool,
    e: &[T],
    k: usize,
    lf: &[T],
    out: &mut BwdOut<'_, T>,
    scratch: &mut [T],
) {
    let l = e.len() / k;
    if l == 0 {
        return;
    }
    let (acc, rest) = scratch.split_at_mut(k * k);
    let (ktmp, rest) = rest.split_at_mut(k * k);
    let (nxt, rest) = rest.split_at_mut(k);
    let (cur, rest) = rest.split_at_mut(k);
    let (w, rest) = rest.split_at_mut(k);
    let (r, rest) = rest.split_at_mut(k);
    let (v, rest) = rest.split_at_mut(k);
    let (u, rest) = rest.split_at_mut(k);
    let (pp, rest) = rest.split_at_mut(k);
    let (g, rest) = rest.split_at_mut(k);
    let (tmp, rest) = rest.split_at_mut(k);
    let (cp, rv) = rest.split_at_mut(XI_BATCH * k);
    let rv = &mut rv[..XI_BATCH * k];
    let mut nb = 0usize;
    let want_xi = out.xi.is_some();
    if want_xi {
        acc.fill(T::ZERO);
    }
    if let Some(x) = out.xi.as_deref_mut() {
        x.fill(T::ZERO);
    }
    let scale = out.scale;
    // t = L-1: lb = 0
    nxt.fill(T::ZERO);
    if let Some(lb) = out.lb.as_deref_mut() {
        lb[(l - 1) * k..].fill(T::ZERO);
    }
    if let Some(dn) = out.dn.as_deref_mut() {
        dn[l - 1] = 0.0;
    }
    if let Some(gm) = out.gamma.as_deref_mut() {
        for ((o, &x), &y) in g.iter_mut().zip(&lf[(l - 1) * k..]).zip(nxt.iter()) {
            *o = x + y;
        }
        softmax_scaled(g, scale, &mut gm[(l - 1) * k..l * k]);
    }
    for t in (0..l - 1).rev() {
        let lft = &lf[t * k..(t + 1) * k];
        let e1 = &e[(t + 1) * k..(t + 2) * k];
        for ((o, &x), &y) in w.iter_mut().zip(e1).zip(nxt.iter()) {
            *o = x + y;
        }
        let m2 = lane_max(w);
        let dn_t;
        let mut gamma_done = false;
        if m2 == T::NEG_INF {
            cur.fill(T::NEG_INF);
            dn_t = f64::NEG_INFINITY;
        } else {
            match (per_step, sh) {
                (false, Some(sh)) => {
                    for (o, &x) in r.iter_mut().zip(w.iter()) {
                        *o = (x - m2).vexp();
                    }
                    vecmat(r, &sh.row_t, k, v);
                    for ((o, &vi), &ri) in u.iter_mut().zip(v.iter()).zip(&sh.rs) {
                        *o = (m2 + ri) + vi.vln();
                    }
                    let fast = lane_min(v) >= T::TINY;
                    if !fast {
                        for i in 0..k {
                            if v[i] < T::TINY {
                                u[i] = exact_row(&a[i * k..(i + 1) * k], w, tmp);
                            }
                        }
                    }
                    let gamma_fast = fast && out.gamma.is_some();
                    if want_xi || gamma_fast {
                        // p'_i = exp(lf_t[i] + rs_i - m1), S = sum_i p'_i v_i: xi_t[i][j] is
                        // p'_i R[i][j] r_j / S, and (no row recomputed exactly) gamma_t[i] is
                        // p'_i v_i / S, since exp(lf_t[i] + lb_t[i]) is proportional to p'_i v_i
                        for ((o, &x), &ri) in pp.iter_mut().zip(lft).zip(&sh.rs) {
                            *o = x + ri;
                        }
                        let m1 = lane_max(pp);
                        if m1 != T::NEG_INF {
                            for o in pp.iter_mut() {
                                *o = (*o - m1).vexp();
                            }
                            let s = lane_dot(pp, v);
                            if s >= T::TINY {
                                let c = scale / s;
                                let cpn = &mut cp[nb * k..(nb + 1) * k];
                                for (o, &pi) in cpn.iter_mut().zip(pp.iter()) {
                                    *o = c * pi;
                                }
                                if gamma_fast {
                                    if let Some(gm) = out.gamma.as_deref_mut() {
                                        for ((o, &ci), &vi) in gm[t * k..(t + 1) * k].iter_mut().zip(cpn.iter()).zip(v.iter()) {
                                            *o = ci * vi;
                                        }
                                        gamma_done = true;
                                    }
                                }
                                if want_xi {
                                    rv[nb * k..(nb + 1) * k].copy_from_slice(r);
                                    nb += 1;
                                    if nb == XI_BATCH {
                                        flush_xi(acc, cp, rv, k, nb);
                                        nb = 0;
                                    }
                                }
                            } else if let Some(x) = out.xi.as_deref_mut() {
                                exact_xi(lft, a, w, k, scale, x, ktmp);
                            }
                        }
                    }
                }
                _ => {
                    let at = &a[t * k * k..(t + 1) * k * k];
                    for i in 0..k {
                        u[i] = exact_row(&at[i * k..(i + 1) * k], w, tmp);
                    }
                    if let Some(x) = out.xi.as_deref_mut() {
                        exact_xi(lft, at, w, k, scale, &mut x[t * k * k..(t + 1) * k * k], ktmp);
                    }
                }
            }
            let mm = lane_max(u);
            if mm == T::NEG_INF {
                cur.fill(T::NEG_INF);
                dn_t = f64::NEG_INFINITY;
            } else {
                for (o, &x) in cur.iter_mut().zip(u.iter()) {
                    *o = x - mm;
                }
                dn_t = mm.wide();
            }
        }
        if let Some(lb) = out.lb.as_deref_mut() {
            lb[t * k..(t + 1) * k].copy_from_slice(cur);
        }
        if let Some(dn) = out.dn.as_deref_mut() {
            dn[t] = dn_t;
        }
        if let (Some(gm), false) = (out.gamma.as_deref_mut(), gamma_done) {
            for ((o, &x), &y) in g.iter_mut().zip(lft).zip(cur.iter()) {
                *o = x + y;
            }
            softmax_scaled(g, scale, &mut gm[t * k..(t + 1) * k]);
        }
        nxt.copy_from_slice(cur);
    }
    if nb > 0 {
        flush_xi(acc, cp, rv, k, nb);
    }
    if let (false, Some(sh), Some(x)) = (per_step, sh, out.xi.as_deref_mut()) {
        // xi = R * acc (+ the exact terms already in x)
        for i in 0..k {
            for j in 0..k {
                x[i * k + j] += sh.row_t[j * k + i] * acc[i * k + j];
            }
        }
    }
}
isa_dispatch! {
    /// The backward pass over one sequence (`e.len() / k` steps) given the
    /// forward messages `lf`: writes what `out` asks for.
    pub fn backward_seq<T>(sh: Option<&Shifted<T>>, a: &[T], per_step: bool, e: &[T], k: usize, lf: &[T], out: &mut BwdOut<'_, T>, scratch: &mut [T]) = backward_seq_impl
}

/// Batch outputs of [`backward`] (each `None` when not wanted): `lb` `(B, T,
/// K)`, `dn` `(B, T)`, `gamma` `(B, T, K)` (times `scale[b]`), `xi` `(B,
/// a_grad_len)` (times `scale[b]`). Rows past a sequence's length are zero
/// (`gamma`, `xi`) or left as they were (`lb`, `dn`).
pub struct BatchBwd<'o, T> {
    pub lb: Option<&'o mut [T]>,
    pub dn: Option<&'o mut [f64]>,
    pub gamma: Option<&'o mut [T]>,
    pub xi: Option<&'o mut [T]>,
    pub scale: Option<&'o [T]>,
}

/// The backward pass over the batch, given the forward messages `lf`.
pub fn backward<T: HmmReal>(p: &Problem<T>, lf: &[T], out: BatchBwd<'_, T>) -> Result<()> {
    let (t, k) = (p.t, p.k);
    let shared = shared_shift(p)?;
    let ag = p.a_grad_len();
    let lbc = out.lb.map(|x| Chunks::new(x, t * k));
    let dnc = out.dn.map(|x| Chunks::new(x, t));
    let gmc = out.gamma.map(|x| Chunks::new(x, t * k));
    let xic = out.xi.map(|x| Chunks::new(x, ag));
    let scale = out.scale;
    par_try(p.b, p.work() * 2, |b| {
        let mut own = None;
        let sh = seq_shift(p, b, &shared, &mut own)?;
        let mut scratch = try_vec(bwd_scratch_len(k), T::ZERO)?;
        let l = p.lens[b];
        // SAFETY: task b is the only one taking chunk b of each buffer.
        let (lb, dn, gm, xi) = unsafe {
            (lbc.as_ref().map(|c| c.get(b)), dnc.as_ref().map(|c| c.get(b)), gmc.as_ref().map(|c| c.get(b)), xic.as_ref().map(|c| c.get(b)))
        };
        let gm = gm.map(|g| {
            g[l * k..].fill(T::ZERO);
            &mut g[..l * k]
        });
        let xi = xi.map(|x| match p.kind {
            TransKind::PerStep => {
                let used = l.saturating_sub(1) * k * k;
                x[used..].fill(T::ZERO);
                x
            }
            _ => x,
        });
        let mut o = BwdOut { lb, dn, gamma: gm, xi, scale: scale.map_or(T::ONE, |s| s[b]) };
        if l == 0 {
            if let Some(x) = o.xi.as_deref_mut() {
                x.fill(T::ZERO);
            }
            return Ok(());
        }
        backward_seq(sh, p.a_of(b), p.kind == TransKind::PerStep, p.e_of(b), k, &lf[b * t * k..(b * t + l) * k], &mut o, &mut scratch);
        Ok(())
    })
}

// ---------------------------------------------------------------- general adjoint (gradients of alpha, beta, gamma, xi)

/// Upstream gradients of one sequence's outputs (each optional).
pub struct Upstream<'u, T> {
    pub ll: T,
    pub log_alpha: Option<&'u [T]>,
    pub log_beta: Option<&'u [T]>,
    pub gamma: Option<&'u [T]>,
    pub xi: Option<&'u [T]>,
}

/// Gradients of one sequence's inputs.
pub struct Adjoint<'o, T> {
    pub pi: &'o mut [T],
    pub a: &'o mut [T],
    pub e: &'o mut [T],
}

/// Scratch of [`adjoint_seq`]: `2 L K + 2 K^2 + 5 K`.
pub fn adj_scratch_len(l: usize, k: usize) -> usize {
    2 * l * k + 2 * k * k + 5 * k
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // the per-sequence slices, passed apart so the borrows stay disjoint
fn adjoint_seq_impl<T: HmmReal>(
    a: &[T],
    per_step: bool,
    e: &[T],
    k: usize,
    lf: &[T],
    lb: &[T],
    up: &Upstream<'_, T>,
    out: &mut Adjoint<'_, T>,
    scratch: &mut [T],
) {
    let l = e.len() / k;
    out.pi.fill(T::ZERO);
    out.a.fill(T::ZERO);
    out.e.fill(T::ZERO);
    if l == 0 {
        return;
    }
    let (abar, rest) = scratch.split_at_mut(l * k);
    let (bbar, rest) = rest.split_at_mut(l * k);
    let (mat, rest) = rest.split_at_mut(k * k);
    let (mat2, rest) = rest.split_at_mut(k * k);
    let (g, rest) = rest.split_at_mut(k);
    let (w, rest) = rest.split_at_mut(k);
    let (cm, rest) = rest.split_at_mut(k);
    let (bt, rest) = rest.split_at_mut(k);
    let tmp = &mut rest[..k];
    let kk = k * k;
    let a_at = |t: usize| if per_step { &a[t * kk..(t + 1) * kk] } else { a };
    match up.log_alpha {
        Some(ga) => abar.copy_from_slice(&ga[..l * k]),
        None => abar.fill(T::ZERO),
    }
    match up.log_beta {
        Some(gb) => bbar.copy_from_slice(&gb[..l * k]),
        None => bbar.fill(T::ZERO),
    }
    // gamma_t = softmax(alpha_t + beta_t)
    if let Some(gg) = up.gamma {
        for t in 0..l {
            let r = t * k..(t + 1) * k;
            for ((o, &x), &y) in g.iter_mut().zip(&lf[r.clone()]).zip(&lb[r.clone()]) {
                *o = x + y;
            }
            softmax_scaled(g, T::ONE, tmp);
            let s = lane_dot(tmp, &gg[r.clone()]);
            for (i, idx) in r.enumerate() {
                let h = tmp[i] * (gg[idx] - s);
                abar[idx] += h;
                bbar[idx] += h;
            }
        }
    }
    let mut llbar = up.ll;
    // xi_t[i][j] = exp(alpha_t[i] + A[i][j] + e_{t+1}[j] + beta_{t+1}[j] - ll)
    if let Some(gx) = up.xi {
        for t in 0..l - 1 {
            let at = a_at(t);
            for ((o, &x), &y) in w.iter_mut().zip(&e[(t + 1) * k..(t + 2) * k]).zip(&lb[(t + 1) * k..(t + 2) * k]) {
                *o = x + y;
            }
            mat.fill(T::ZERO);
            exact_xi(&lf[t * k..(t + 1) * k], at, w, k, T::ONE, mat, mat2);
            let gxt = if per_step { &gx[t * kk..(t + 1) * kk] } else { &gx[..kk] };
            let at_out = if per_step { &mut out.a[t * kk..(t + 1) * kk] } else { &mut out.a[..kk] };
            let mut tot = T::ZERO;
            for i in 0..k {
                let mut rs = T::ZERO;
                for j in 0..k {
                    let x = gxt[i * k + j] * mat[i * k + j];
                    at_out[i * k + j] += x;
                    rs += x;
                    out.e[(t + 1) * k + j] += x;
                    bbar[(t + 1) * k + j] += x;
                }
                abar[t * k + i] += rs;
                tot += rs;
            }
            llbar = llbar - tot;
        }
    }
    // ll = logsumexp(alpha_{L-1}): exp(lf_{L-1}) is its softmax
    for (o, &x) in abar[(l - 1) * k..].iter_mut().zip(&lf[(l - 1) * k..]) {
        *o += llbar * x.vexp();
    }
    // beta_t[i] = logsumexp_j(A_t[i][j] + e_{t+1}[j] + beta_{t+1}[j]), t ascending
    for t in 0..l - 1 {
        bt.copy_from_slice(&bbar[t * k..(t + 1) * k]);
        if bt.iter().all(|&x| x == T::ZERO) {
            continue;
        }
        let at = a_at(t);
        for ((o, &x), &y) in w.iter_mut().zip(&e[(t + 1) * k..(t + 2) * k]).zip(&lb[(t + 1) * k..(t + 2) * k]) {
            *o = x + y;
        }
        let at_out_off = if per_step { t * kk } else { 0 };
        for i in 0..k {
            if bt[i] == T::ZERO || lb[t * k + i] == T::NEG_INF {
                continue;
            }
            for ((o, &x), &y) in g.iter_mut().zip(&at[i * k..(i + 1) * k]).zip(w.iter()) {
                *o = x + y;
            }
            softmax_scaled(g, bt[i], tmp);
            for j in 0..k {
                let y = tmp[j];
                out.a[at_out_off + i * k + j] += y;
                out.e[(t + 1) * k + j] += y;
                bbar[(t + 1) * k + j] += y;
            }
        }
    }
    // alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + A_{t-1}[i][j]) + e_t[j], t descending
    for t in (1..l).rev() {
        for j in 0..k {
            out.e[t * k + j] += abar[t * k + j];
        }
        let at = a_at(t - 1);
        let prev = &lf[(t - 1) * k..t * k];
        // column softmax over i of prev[i] + A[i][j], weighted by abar_t[j]
        cm.fill(T::NEG_INF);
        for (i, &pv) in prev.iter().enumerate() {
            for (c, &v) in cm.iter_mut().zip(&at[i * k..(i + 1) * k]) {
                *c = mx(*c, pv + v);
            }
        }
        for c in cm.iter_mut() {
            if *c == T::NEG_INF {
                *c = T::ZERO;
            }
        }
        g.fill(T::ZERO);
        for (i, &pv) in prev.iter().enumerate() {
            let row = &mut mat[i * k..(i + 1) * k];
            for ((o, &v), &c) in row.iter_mut().zip(&at[i * k..(i + 1) * k]).zip(cm.iter()) {
                *o = (pv + v - c).vexp();
            }
            for (s, &x) in g.iter_mut().zip(row.iter()) {
                *s += x;
            }
        }
        // weight_j = abar_t[j] / colsum_j (0 for an unreachable state)
        for j in 0..k {
            let reach = lf[t * k + j] != T::NEG_INF && g[j] > T::ZERO;
            w[j] = if reach { abar[t * k + j] / g[j] } else { T::ZERO };
        }
        let at_out_off = if per_step { (t - 1) * kk } else { 0 };
        for i in 0..k {
            let row = &mat[i * k..(i + 1) * k];
            let mut s = T::ZERO;
            for j in 0..k {
                let z = row[j] * w[j];
                out.a[at_out_off + i * k + j] += z;
                s += z;
            }
            abar[(t - 1) * k + i] += s;
        }
    }
    for (j, &g) in abar[..k].iter().enumerate() {
        out.pi[j] += g;
        out.e[j] += g;
    }
}
isa_dispatch! {
    /// Gradients of one sequence's inputs from the upstream gradients of all
    /// the posteriors op's outputs (exact log-sum-exp form at every step).
    pub fn adjoint_seq<T>(a: &[T], per_step: bool, e: &[T], k: usize, lf: &[T], lb: &[T], up: &Upstream<'_, T>, out: &mut Adjoint<'_, T>, scratch: &mut [T]) = adjoint_seq_impl
}

// ---------------------------------------------------------------- Viterbi

#[inline(always)]
#[allow(clippy::too_many_arguments)] // the per-sequence slices, passed apart so the borrows stay disjoint
fn viterbi_seq_impl<T: HmmReal>(
    pi: &[T],
    a: &[T],
    per_step: bool,
    e: &[T],
    k: usize,
    bp: &mut [u32],
    path: &mut [i64],
    scratch: &mut [T],
) -> f64 {
    let l = e.len() / k;
    if l == 0 {
        return 0.0;
    }
    let (d, rest) = scratch.split_at_mut(k);
    let (best, _) = rest.split_at_mut(k);
    for ((o, &x), &y) in d.iter_mut().zip(pi).zip(&e[..k]) {
        *o = x + y;
    }
    let mut shift = 0.0f64;
    let mut m = lane_max(d);
    let mut dead = m == T::NEG_INF;
    if !dead {
        for o in d.iter_mut() {
            *o = *o - m;
        }
        shift += m.wide();
    }
    let kk = k * k;
    for t in 1..l {
        let at = if per_step { &a[(t - 1) * kk..t * kk] } else { a };
        let bpt = &mut bp[t * k..(t + 1) * k];
        best.fill(T::NEG_INF);
        bpt.fill(0);
        if !dead {
            for (i, &di) in d.iter().enumerate() {
                if di == T::NEG_INF {
                    continue;
                }
                let ii = i as u32;
                for ((bj, aj), &v) in best.iter_mut().zip(bpt.iter_mut()).zip(&at[i * k..(i + 1) * k]) {
                    let c = di + v;
                    // strict: ties keep the lowest state index
                    let better = c > *bj;
                    *bj = if better { c } else { *bj };
                    *aj = if better { ii } else { *aj };
                }
            }
        }
        for ((o, &x), &y) in d.iter_mut().zip(best.iter()).zip(&e[t * k..(t + 1) * k]) {
            *o = x + y;
        }
        m = lane_max(d);
        if m == T::NEG_INF {
            dead = true;
        } else {
            for o in d.iter_mut() {
                *o = *o - m;
            }
            shift += m.wide();
        }
    }
    // the lowest index among the best final states
    let mut j = 0;
    for (i, &x) in d.iter().enumerate() {
        if x > d[j] {
            j = i;
        }
    }
    path[l - 1] = j as i64;
    for t in (1..l).rev() {
        j = bp[t * k + j] as usize;
        path[t - 1] = j as i64;
    }
    if dead {
        f64::NEG_INFINITY
    } else {
        shift + d[path[l - 1] as usize].wide()
    }
}
isa_dispatch! {
    /// The Viterbi path of one sequence into `path` (`L` states) and its log-probability;
    /// `bp` holds `L x K` back-pointers, `scratch` `2 K`.
    pub fn viterbi_seq<T>(pi: &[T], a: &[T], per_step: bool, e: &[T], k: usize, bp: &mut [u32], path: &mut [i64], scratch: &mut [T]) -> f64 = viterbi_seq_impl
}

/// Viterbi over the batch: `path` `(B, T)` (-1 past each length) and the log-probabilities.
pub fn viterbi<T: HmmReal>(p: &Problem<T>, path: &mut [i64], logp: &mut [f64]) -> Result<()> {
    let (t, k) = (p.t, p.k);
    let pc = Chunks::new(path, t);
    let lc = Chunks::new(logp, 1);
    par_try(p.b, p.work() / 4, |b| {
        let l = p.lens[b];
        let mut bp = try_vec(l * k, 0u32)?;
        let mut scratch = try_vec(2 * k, T::ZERO)?;
        // SAFETY: task b is the only one taking chunk b of each buffer.
        let (path, lp) = unsafe { (pc.get(b), lc.get(b)) };
        path[l..].fill(-1);
        lp[0] = viterbi_seq(p.pi_of(b), p.a_of(b), p.kind == TransKind::PerStep, p.e_of(b), k, &mut bp, &mut path[..l], &mut scratch);
        Ok(())
    })
}
