//! Matrix product kernels: `C (=|+=) A @ B` for f32 and f64 with arbitrary
//! strides.
//!
//! On CPUs with AVX-512 the product is ours: B is packed once into panels of
//! `NR` columns, each task packs its rows of A into panels of `MR` rows, and a
//! register-blocked micro-kernel (`MR x NR` accumulators, one broadcast of A
//! and two vector loads of B per step of k) does the arithmetic. Elsewhere the
//! `gemm` crate does it.
//!
//! Determinism: every element of C is computed by the same sequence of
//! operations whatever the thread count, because k is cut into blocks of the
//! fixed size `KC` and each block is accumulated in order by one micro-kernel
//! call; how rows and columns are split between threads changes which thread
//! computes an element, never how.
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Work (m*n*k) below which the product runs on the calling thread.
const PAR_THRESHOLD: usize = 1 << 22;

/// Element types with a GEMM.
pub trait GemmElem: Copy + Send + Sync + 'static {
    const ZERO: Self;
    const ONE: Self;
    /// # Safety
    /// Pointers and strides must describe valid matrices of the given sizes,
    /// and `dst` must not overlap `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        n: usize,
        k: usize,
        dst: *mut Self,
        dst_rs: isize,
        dst_cs: isize,
        accumulate: bool,
        a: *const Self,
        a_rs: isize,
        a_cs: isize,
        b: *const Self,
        b_rs: isize,
        b_cs: isize,
    );
    /// Makes sure the calling thread's packing buffer can serve a product
    /// with these `n` and `k`, so that `gemm` itself allocates nothing that
    /// could fail; an allocation that cannot be served is an error here.
    fn reserve_scratch(n: usize, k: usize) -> crate::Result<()>;
}

#[derive(Clone, Copy)]
struct Mat<T> {
    p: *const T,
    rs: isize,
    cs: isize,
}
// SAFETY: a Mat is a read-only view (pointer and strides) of memory its creator keeps alive for the product; sharing it between the product's tasks only reads.
unsafe impl<T> Send for Mat<T> {}
// SAFETY: as for Send.
unsafe impl<T> Sync for Mat<T> {}
#[derive(Clone, Copy)]
struct MatMut<T> {
    p: *mut T,
    rs: isize,
    cs: isize,
}
// SAFETY: each task of a product writes a disjoint tile of the MatMut; the creator keeps the memory alive for the product.
unsafe impl<T> Send for MatMut<T> {}
// SAFETY: as for Send.
unsafe impl<T> Sync for MatMut<T> {}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The `gemm` crate, used where our micro-kernel is not available. Rows are
/// cut into fixed blocks so that the split is the same serial and parallel.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_crate<T: GemmElem>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    a: *const T,
    a_rs: isize,
    a_cs: isize,
    b: *const T,
    b_rs: isize,
    b_cs: isize,
) {
    const ROW_BLOCK: usize = 64;
    let d = MatMut { p: dst, rs: dst_rs, cs: dst_cs };
    let am = Mat { p: a, rs: a_rs, cs: a_cs };
    let bm = Mat { p: b, rs: b_rs, cs: b_cs };
    let block = move |bi: usize| {
        let (d, am, bm) = (d, am, bm);
        let r0 = bi * ROW_BLOCK;
        let rows = ROW_BLOCK.min(m - r0);
        gemm::gemm(
            rows,
            n,
            k,
            d.p.offset(r0 as isize * d.rs),
            d.cs,
            d.rs,
            accumulate,
            am.p.offset(r0 as isize * am.rs),
            am.cs,
            am.rs,
            bm.p,
            bm.cs,
            bm.rs,
            if accumulate { T::ONE } else { T::ZERO },
            T::ONE,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    };
    let blocks = m.div_ceil(ROW_BLOCK);
    if m * n * k < PAR_THRESHOLD || blocks == 1 || crate::parallel::num_threads() == 1 {
        (0..blocks).for_each(block);
    } else {
        crate::parallel::pool().install(|| {
            use rayon::prelude::*;
            (0..blocks).into_par_iter().for_each(block);
        });
    }
}

thread_local! {
    static PACK_A: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PACK_B: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Grows the thread's scratch buffer to hold `len` elements of `T`
/// (aligned), reporting a failed allocation as an error.
fn try_reserve_scratch<T>(key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>, len: usize) -> crate::Result<()> {
    let bytes = len.checked_mul(std::mem::size_of::<T>()).and_then(|b| b.checked_add(64)).and_then(|b| b.checked_next_power_of_two());
    let Some(bytes) = bytes.filter(|&b| b <= isize::MAX as usize) else {
        return Err(crate::memory_err!("out of memory: a matrix product needs a packing buffer of {len} elements"));
    };
    key.with(|cell| {
        let mut v = cell.borrow_mut();
        if v.len() < bytes {
            let mut nv: Vec<u8> = Vec::new();
            nv.try_reserve_exact(bytes)
                .map_err(|_| crate::memory_err!("out of memory: cannot allocate {bytes} bytes for a matrix product"))?;
            nv.resize(bytes, 0);
            *v = nv;
        }
        Ok(())
    })
}

/// A scratch buffer of at least `len` elements, 64-byte aligned, reused by the thread.
fn with_scratch<T, R>(key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>, len: usize, f: impl FnOnce(*mut T) -> R) -> R {
    key.with(|cell| {
        let mut v = cell.borrow_mut();
        let bytes = len * std::mem::size_of::<T>() + 64;
        if v.len() < bytes {
            *v = vec![0u8; bytes.next_power_of_two()];
        }
        let p = v.as_mut_ptr();
        let off = p.align_offset(64);
        // SAFETY: the vector was sized with 64 bytes of slack, so the aligned start stays inside it
        f(unsafe { p.add(off) } as *mut T)
    })
}

/// In-register transposes used by the packing routines: `rows` rows of `W`
/// contiguous elements at `src` (row stride `ss`) become `W` vectors, vector
/// `t` holding element `t` of every row (zero past `rows`), of which the first
/// `store` lanes are written to `dst + t * ds`.
#[cfg(target_arch = "x86_64")]
mod transpose {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn f32x16(src: *const f32, ss: isize, rows: usize, dst: *mut f32, ds: usize, store: usize) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, ri) in r.iter_mut().enumerate().take(rows) {
            *ri = _mm512_loadu_ps(src.offset(i as isize * ss));
        }
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // u[4g + c], lane L: column 4L + c of rows 4g..4g+3
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let (a0, a1, a2, a3) = (
                _mm512_castps_pd(t[4 * g]),
                _mm512_castps_pd(t[4 * g + 1]),
                _mm512_castps_pd(t[4 * g + 2]),
                _mm512_castps_pd(t[4 * g + 3]),
            );
            u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
            u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
            u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
            u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
        }
        let mask: __mmask16 = if store >= 16 { 0xFFFF } else { (1u16 << store) - 1 };
        for c in 0..4 {
            let v = _mm512_shuffle_f32x4::<0x88>(u[c], u[4 + c]);
            let w = _mm512_shuffle_f32x4::<0xDD>(u[c], u[4 + c]);
            let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + c], u[12 + c]);
            let w2 = _mm512_shuffle_f32x4::<0xDD>(u[8 + c], u[12 + c]);
            _mm512_mask_storeu_ps(dst.add(c * ds), mask, _mm512_shuffle_f32x4::<0x88>(v, v2));
            _mm512_mask_storeu_ps(dst.add((8 + c) * ds), mask, _mm512_shuffle_f32x4::<0xDD>(v, v2));
            _mm512_mask_storeu_ps(dst.add((4 + c) * ds), mask, _mm512_shuffle_f32x4::<0x88>(w, w2));
            _mm512_mask_storeu_ps(dst.add((12 + c) * ds), mask, _mm512_shuffle_f32x4::<0xDD>(w, w2));
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn f64x8(src: *const f64, ss: isize, rows: usize, dst: *mut f64, ds: usize, store: usize) {
        let mut r = [_mm512_setzero_pd(); 8];
        for (i, ri) in r.iter_mut().enumerate().take(rows) {
            *ri = _mm512_loadu_pd(src.offset(i as isize * ss));
        }
        // t[2g + c], lane L: column 2L + c of rows 2g, 2g+1
        let mut t = [_mm512_setzero_pd(); 8];
        for i in 0..4 {
            t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
        }
        let mask: __mmask8 = if store >= 8 { 0xFF } else { (1u8 << store) - 1 };
        for c in 0..2 {
            let v = _mm512_shuffle_f64x2::<0x88>(t[c], t[2 + c]);
            let w = _mm512_shuffle_f64x2::<0xDD>(t[c], t[2 + c]);
            let v2 = _mm512_shuffle_f64x2::<0x88>(t[4 + c], t[6 + c]);
            let w2 = _mm512_shuffle_f64x2::<0xDD>(t[4 + c], t[6 + c]);
            _mm512_mask_storeu_pd(dst.add(c * ds), mask, _mm512_shuffle_f64x2::<0x88>(v, v2));
            _mm512_mask_storeu_pd(dst.add((4 + c) * ds), mask, _mm512_shuffle_f64x2::<0xDD>(v, v2));
            _mm512_mask_storeu_pd(dst.add((2 + c) * ds), mask, _mm512_shuffle_f64x2::<0x88>(w, w2));
            _mm512_mask_storeu_pd(dst.add((6 + c) * ds), mask, _mm512_shuffle_f64x2::<0xDD>(w, w2));
        }
    }
}

macro_rules! avx512_gemm {
    ($T:ty, $modname:ident, $MR:literal, $NR:literal, $LANES:literal, $KC:literal, $MC:literal,
     $vec:ty, $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident, $add:ident, $tr:path) => {
        #[cfg(target_arch = "x86_64")]
        mod $modname {
            use super::*;
            use std::arch::x86_64::*;
            pub const MR: usize = $MR;
            pub const NR: usize = $NR;
            pub const KC: usize = $KC;
            pub const MC: usize = $MC;
            const DIRECT_PANELS: usize = 4;
            const DIRECT_B_ELEMS: usize = 1 << 16;

            /// Packs rows [i0, i0+mc) x cols [k0, k0+kc) of A into MR-row panels,
            /// each stored k-major ([p][MR]), padded with zeros.
            #[target_feature(enable = "avx512f")]
            pub unsafe fn pack_a(a: Mat<$T>, i0: usize, mc: usize, k0: usize, kc: usize, dst: *mut $T) {
                let panels = mc.div_ceil(MR);
                for ip in 0..panels {
                    let rows = MR.min(mc - ip * MR);
                    let d = dst.add(ip * MR * kc);
                    let base = a.p.offset((i0 + ip * MR) as isize * a.rs + k0 as isize * a.cs);
                    if a.rs == 1 && rows == MR {
                        for p in 0..kc {
                            let s = base.offset(p as isize * a.cs);
                            for i in 0..MR {
                                *d.add(p * MR + i) = *s.add(i);
                            }
                        }
                    } else if a.cs == 1 {
                        // row-major A: transpose blocks of W rows x W columns
                        let full = kc / $LANES * $LANES;
                        let mut i = 0;
                        while i < MR {
                            let r = $LANES.min(MR - i);
                            let valid = rows.saturating_sub(i).min(r);
                            let mut p = 0;
                            while p < full {
                                $tr(base.offset(i as isize * a.rs + p as isize), a.rs, valid, d.add(p * MR + i), MR, r);
                                p += $LANES;
                            }
                            i += r;
                        }
                        for p in full..kc {
                            for i in 0..MR {
                                *d.add(p * MR + i) = if i < rows { *base.offset(i as isize * a.rs + p as isize) } else { 0.0 };
                            }
                        }
                    } else {
                        for i in 0..rows {
                            let src = base.offset(i as isize * a.rs);
                            for p in 0..kc {
                                *d.add(p * MR + i) = *src.offset(p as isize * a.cs);
                            }
                        }
                        for i in rows..MR {
                            for p in 0..kc {
                                *d.add(p * MR + i) = 0.0;
                            }
                        }
                    }
                }
            }

            /// Packs rows [k0, k0+kc) x cols [j0, j0+nc) of B into NR-column panels
            /// ([p][NR] each, panel stride KC*NR), padded with zeros.
            #[target_feature(enable = "avx512f")]
            pub unsafe fn pack_b(b: Mat<$T>, k0: usize, kc: usize, j0: usize, nc: usize, dst: *mut $T) {
                let panels = nc.div_ceil(NR);
                for jp in 0..panels {
                    let cols = NR.min(nc - jp * NR);
                    let d = dst.add(jp * KC * NR);
                    let base = b.p.offset(k0 as isize * b.rs + (j0 + jp * NR) as isize * b.cs);
                    if b.cs == 1 {
                        for p in 0..kc {
                            let s = base.offset(p as isize * b.rs);
                            std::ptr::copy_nonoverlapping(s, d.add(p * NR), cols);
                            for j in cols..NR {
                                *d.add(p * NR + j) = 0.0;
                            }
                        }
                    } else if b.rs == 1 {
                        // B with contiguous columns (the weight of x @ w.T): transpose blocks
                        let full = kc / $LANES * $LANES;
                        for h in 0..NR / $LANES {
                            let valid = cols.saturating_sub(h * $LANES).min($LANES);
                            let mut p = 0;
                            while p < full {
                                $tr(base.offset((h * $LANES) as isize * b.cs + p as isize), b.cs, valid, d.add(p * NR + h * $LANES), NR, $LANES);
                                p += $LANES;
                            }
                        }
                        for p in full..kc {
                            for j in 0..NR {
                                *d.add(p * NR + j) = if j < cols { *base.offset(j as isize * b.cs + p as isize) } else { 0.0 };
                            }
                        }
                    } else {
                        for j in 0..cols {
                            let src = base.offset(j as isize * b.cs);
                            for p in 0..kc {
                                *d.add(p * NR + j) = *src.offset(p as isize * b.rs);
                            }
                        }
                        for j in cols..NR {
                            for p in 0..kc {
                                *d.add(p * NR + j) = 0.0;
                            }
                        }
                    }
                }
            }

            /// c[0..mr, 0..nr] (= or +=) (packed a panel) @ (packed b panel) over kc steps.
            #[target_feature(enable = "avx512f")]
            /// With `DIRECT`, A is read in place with strides (a_rs, a_cs);
            /// otherwise it is a packed panel and the strides are ignored.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn kernel<const DIRECT: bool>(
                kc: usize, a: *const $T, a_rs: isize, a_cs: isize, b: *const $T, b_rs: isize, c: MatMut<$T>, mr: usize, nr: usize, add: bool,
            ) {
                let (a_rs, a_cs) = if DIRECT { (a_rs, a_cs) } else { (1, MR as isize) };
                let mut acc: [[$vec; 2]; MR] = [[$zero(); 2]; MR];
                let (mut a, mut b) = (a, b);
                for _ in 0..kc {
                    let b0 = $load(b);
                    let b1 = $load(b.add($LANES));
                    seq_macro::seq!(I in 0..$MR {
                        let ai = $set1(*a.offset(I * a_rs));
                        acc[I][0] = $fmadd(ai, b0, acc[I][0]);
                        acc[I][1] = $fmadd(ai, b1, acc[I][1]);
                    });
                    a = a.offset(a_cs);
                    b = b.offset(b_rs);
                }
                if mr == MR && nr == NR && c.cs == 1 {
                    seq_macro::seq!(I in 0..$MR {
                        let row = c.p.offset(I * c.rs);
                        if add {
                            $store(row, $add($load(row), acc[I][0]));
                            $store(row.add($LANES), $add($load(row.add($LANES)), acc[I][1]));
                        } else {
                            $store(row, acc[I][0]);
                            $store(row.add($LANES), acc[I][1]);
                        }
                    });
                } else {
                    let mut tile = [[0.0 as $T; NR]; MR];
                    for i in 0..MR {
                        $store(tile[i].as_mut_ptr(), acc[i][0]);
                        $store(tile[i].as_mut_ptr().add($LANES), acc[i][1]);
                    }
                    for i in 0..mr {
                        for j in 0..nr {
                            let q = c.p.offset(i as isize * c.rs + j as isize * c.cs);
                            *q = if add { *q + tile[i][j] } else { tile[i][j] };
                        }
                    }
                }
            }

            /// Rows [i0, i0+mc) x panels [jp0, jp1) of C, over all of k, with B packed in `bp`.
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn tile(
                k: usize, n: usize, a: Mat<$T>, bp: *const $T, c: MatMut<$T>, accumulate: bool,
                i0: usize, mc: usize, jp0: usize, jp1: usize, bd: Option<Mat<$T>>,
            ) {
                let npanels = n.div_ceil(NR);
                with_scratch::<$T, _>(&PACK_A, MC.div_ceil(MR) * MR * KC, |ap| {
                    let mut k0 = 0;
                    let mut q = 0;
                    while k0 < k {
                        let kc = KC.min(k - k0);
                        let add = accumulate || k0 > 0;
                        let mut ii = 0;
                        while ii < mc {
                            let mcb = MC.min(mc - ii);
                            // A few column panels reuse a packed A too little to pay for
                            // packing it: full row panels are then read in place.
                            let direct = jp1 - jp0 <= DIRECT_PANELS;
                            if !direct {
                                pack_a(a, i0 + ii, mcb, k0, kc, ap);
                            }
                            for jp in jp0..jp1 {
                                let nr = NR.min(n - jp * NR);
                                // B read in place (small, row-major, full panel), or packed
                                let (bpanel, b_rs) = match bd {
                                    Some(b) if nr == NR => (b.p.offset(k0 as isize * b.rs + (jp * NR) as isize), b.rs),
                                    Some(b) => {
                                        pack_b(b, k0, kc, jp * NR, nr, bp as *mut $T);
                                        (bp, NR as isize)
                                    }
                                    None => (bp.add((q * npanels + jp) * KC * NR), NR as isize),
                                };
                                for ip in 0..mcb.div_ceil(MR) {
                                    let mr = MR.min(mcb - ip * MR);
                                    let row = i0 + ii + ip * MR;
                                    let cp = MatMut { p: c.p.offset(row as isize * c.rs + (jp * NR) as isize * c.cs), rs: c.rs, cs: c.cs };
                                    if !direct {
                                        kernel::<false>(kc, ap.add(ip * MR * kc), 0, 0, bpanel, b_rs, cp, mr, nr, add);
                                    } else if mr == MR {
                                        let ad = a.p.offset(row as isize * a.rs + k0 as isize * a.cs);
                                        kernel::<true>(kc, ad, a.rs, a.cs, bpanel, b_rs, cp, mr, nr, add);
                                    } else {
                                        pack_a(a, row, mr, k0, kc, ap);
                                        kernel::<false>(kc, ap, 0, 0, bpanel, b_rs, cp, mr, nr, add);
                                    }
                                }
                            }
                            ii += mcb;
                        }
                        k0 += kc;
                        q += 1;
                    }
                });
            }

            pub fn reserve(n: usize, k: usize) -> crate::Result<()> {
                let len = k.div_ceil(KC).checked_mul(n.div_ceil(NR)).and_then(|v| v.checked_mul(KC * NR)).unwrap_or(usize::MAX);
                try_reserve_scratch::<$T>(&PACK_B, len)?;
                try_reserve_scratch::<$T>(&PACK_A, MC.div_ceil(MR) * MR * KC)
            }

            #[allow(clippy::too_many_arguments)]
            pub unsafe fn gemm(m: usize, n: usize, k: usize, c: MatMut<$T>, accumulate: bool, a: Mat<$T>, b: Mat<$T>) {
                let npanels = n.div_ceil(NR);
                let kblocks = k.div_ceil(KC);
                let threads = if m * n * k <= PAR_THRESHOLD { 1 } else { crate::parallel::num_threads() };
                with_scratch::<$T, _>(&PACK_B, kblocks * npanels * KC * NR, |bp| {
                    let bpm = MatMut { p: bp, rs: 0, cs: 0 };
                    let pack = move |q: usize, jp0: usize, jp1: usize| {
                        let bpm = bpm;
                        let k0 = q * KC;
                        let j0 = jp0 * NR;
                        let nc = (jp1 * NR).min(n) - j0;
                        pack_b(b, k0, KC.min(k - k0), j0, nc, bpm.p.add((q * npanels + jp0) * KC * NR));
                    };
                    if threads == 1 && b.cs == 1 && k * n <= DIRECT_B_ELEMS {
                        // small row-major B stays in cache: no packing pass at all
                        tile(k, n, a, bp, c, accumulate, 0, m, 0, npanels, Some(b));
                        return;
                    }
                    // a small B is packed by the calling thread before any worker wakes
                    let serial_pack = threads == 1 || k * n < 1 << 18;
                    if serial_pack {
                        for q in 0..kblocks {
                            pack(q, 0, npanels);
                        }
                    }
                    if threads == 1 {
                        tile(k, n, a, bp, c, accumulate, 0, m, 0, npanels, None);
                        return;
                    }
                    // Tasks: bands of rows (A is packed once, B shared), or for short
                    // matrices groups of columns (each task packs the few rows of A).
                    let mp = m.div_ceil(MR);
                    let (rtasks, cgroups) = if mp >= 2 * threads { (mp.min(4 * threads), 1) } else { (1, npanels.min(4 * threads)) };
                    let rows_per = mp.div_ceil(rtasks) * MR;
                    let rtasks = m.div_ceil(rows_per);
                    let per_group = npanels.div_ceil(cgroups);
                    let cgroups = npanels.div_ceil(per_group);
                    let bgroups = npanels.min(2 * threads);
                    let bper = npanels.div_ceil(bgroups);
                    let bgroups = npanels.div_ceil(bper);
                    // The calling thread works too, and tasks are claimed from counters,
                    // so a worker that wakes late costs nothing: one entry into the pool
                    // per product, and packing B then computing tiles behind a spin-wait.
                    let npack = if serial_pack { 0 } else { kblocks * bgroups };
                    let ntile = rtasks * cgroups;
                    let (next_pack, packed, next_tile) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
                    let work = || {
                        // capture the whole (Copy) struct, not its raw-pointer field, so the closure is Send
                        #[allow(clippy::redundant_locals)]
                        let bpm = bpm;
                        loop {
                            let t = next_pack.fetch_add(1, Ordering::Relaxed);
                            if t >= npack {
                                break;
                            }
                            let (q, g) = (t / bgroups, t % bgroups);
                            pack(q, g * bper, ((g + 1) * bper).min(npanels));
                            packed.fetch_add(1, Ordering::Release);
                        }
                        let mut spins = 0u32;
                        while packed.load(Ordering::Acquire) < npack {
                            spins += 1;
                            if spins < 1 << 12 {
                                std::hint::spin_loop();
                            } else {
                                std::thread::yield_now();
                            }
                        }
                        loop {
                            let t = next_tile.fetch_add(1, Ordering::Relaxed);
                            if t >= ntile {
                                break;
                            }
                            let (r, g) = (t / cgroups, t % cgroups);
                            let i0 = r * rows_per;
                            tile(k, n, a, bpm.p, c, accumulate, i0, rows_per.min(m - i0), g * per_group, ((g + 1) * per_group).min(npanels), None);
                        }
                    };
                    crate::parallel::pool().in_place_scope(|s| {
                        for _ in 1..threads {
                            s.spawn(|_| work());
                        }
                        work();
                    });
                });
            }
        }
    };
}

avx512_gemm!(
    f32,
    f32k,
    12,
    32,
    16,
    256,
    288,
    __m512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    super::transpose::f32x16
);
avx512_gemm!(
    f64,
    f64k,
    12,
    16,
    8,
    256,
    288,
    __m512d,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd,
    super::transpose::f64x8
);

macro_rules! impl_elem {
    ($T:ty, $modname:ident) => {
        impl GemmElem for $T {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn reserve_scratch(n: usize, k: usize) -> crate::Result<()> {
                #[cfg(target_arch = "x86_64")]
                if has_avx512() && n > 0 && k > 0 {
                    return $modname::reserve(n, k);
                }
                let _ = (n, k);
                Ok(())
            }
            unsafe fn gemm(
                m: usize,
                n: usize,
                k: usize,
                dst: *mut Self,
                dst_rs: isize,
                dst_cs: isize,
                accumulate: bool,
                a: *const Self,
                a_rs: isize,
                a_cs: isize,
                b: *const Self,
                b_rs: isize,
                b_cs: isize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                if k == 0 {
                    if !accumulate {
                        for i in 0..m {
                            for j in 0..n {
                                *dst.offset(i as isize * dst_rs + j as isize * dst_cs) = 0.0;
                            }
                        }
                    }
                    return;
                }
                #[cfg(target_arch = "x86_64")]
                if has_avx512() {
                    return $modname::gemm(
                        m,
                        n,
                        k,
                        MatMut { p: dst, rs: dst_rs, cs: dst_cs },
                        accumulate,
                        Mat { p: a, rs: a_rs, cs: a_cs },
                        Mat { p: b, rs: b_rs, cs: b_cs },
                    );
                }
                gemm_crate::<$T>(m, n, k, dst, dst_rs, dst_cs, accumulate, a, a_rs, a_cs, b, b_rs, b_cs)
            }
        }
    };
}
impl_elem!(f32, f32k);
impl_elem!(f64, f64k);

#[cfg(test)]
mod tests {
    use super::GemmElem;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }

    /// Naive product in f64 as the oracle, for every layout of A, B and C.
    fn check<T: GemmElem + Into<f64> + From<f32>>(m: usize, n: usize, k: usize, tol: f64) {
        let mut seed = (m * 1000003 + n * 1009 + k) as u64;
        let av: Vec<T> = (0..m * k).map(|_| T::from(lcg(&mut seed) as f32)).collect();
        let bv: Vec<T> = (0..k * n).map(|_| T::from(lcg(&mut seed) as f32)).collect();
        for &(at, bt, ct, acc) in
            &[(false, false, false, false), (true, false, false, true), (false, true, true, false), (true, true, false, true)]
        {
            let (a_rs, a_cs) = if at { (1isize, m as isize) } else { (k as isize, 1) };
            let (b_rs, b_cs) = if bt { (1isize, k as isize) } else { (n as isize, 1) };
            let (c_rs, c_cs) = if ct { (1isize, m as isize) } else { (n as isize, 1) };
            let c0: Vec<T> = (0..m * n).map(|_| T::from(lcg(&mut seed) as f32)).collect();
            let mut c = c0.clone();
            // SAFETY: the three vectors hold m x k, k x n and m x n elements addressed by these strides.
            unsafe { T::gemm(m, n, k, c.as_mut_ptr(), c_rs, c_cs, acc, av.as_ptr(), a_rs, a_cs, bv.as_ptr(), b_rs, b_cs) };
            for i in 0..m {
                for j in 0..n {
                    let mut s: f64 = if acc { c0[i * c_rs as usize + j * c_cs as usize].into() } else { 0.0 };
                    for l in 0..k {
                        s += av[i * a_rs as usize + l * a_cs as usize].into() * bv[l * b_rs as usize + j * b_cs as usize].into();
                    }
                    let got: f64 = c[i * c_rs as usize + j * c_cs as usize].into();
                    assert!(
                        (got - s).abs() <= tol * (1.0 + s.abs()),
                        "{m}x{n}x{k} at={at} bt={bt} ct={ct} acc={acc} ({i},{j}): {got} vs {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn gemm_matches_naive_product() {
        for &(m, n, k) in
            &[(1, 1, 1), (3, 5, 7), (12, 32, 1), (13, 33, 257), (37, 70, 300), (144, 40, 20), (200, 65, 513), (5, 300, 64), (1, 1, 600)]
        {
            check::<f32>(m, n, k, 1e-4);
            check::<f64>(m, n, k, 1e-12);
        }
    }

    #[test]
    fn gemm_bits_do_not_depend_on_thread_count() {
        let (m, n, k) = (300, 200, 700);
        let mut seed = 7u64;
        let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed) as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed) as f32).collect();
        let mut outs = vec![];
        for t in [1, 2, 3, 4] {
            crate::parallel::set_num_threads(t).unwrap();
            let mut c = vec![0f32; m * n];
            // SAFETY: row-major m x k, k x n and m x n vectors.
            unsafe { f32::gemm(m, n, k, c.as_mut_ptr(), n as isize, 1, false, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1) };
            outs.push(c);
        }
        for o in &outs[1..] {
            assert!(o.iter().zip(&outs[0]).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
