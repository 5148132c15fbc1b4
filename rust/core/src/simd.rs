//! Vectorisable math kernels. The loops are plain Rust written so that LLVM
//! vectorises them; each public kernel is compiled three times (AVX-512,
//! AVX2+FMA, baseline) and picks the best the CPU has at run time.
//!
//! The environment variable `RBE_SIMD` (read once, at the first kernel call)
//! caps the dispatch level of the kernels built by `multiversion!` here (the
//! erf family, exp, log, the sums; not the GEMM or `kernels.rs`, which
//! dispatch on their own), for testing: `avx512` (the default: the best the
//! CPU has), `avx2` (AVX2+FMA even on an AVX-512 CPU) or `scalar` (the
//! baseline build, no FMA instructions: `mul_add` is the libm call). The
//! three builds of the erf family run the same IEEE operations in the same
//! order (no reassociation, explicit `mul_add`) and give bit-identical
//! results (tested on every level).
//!
//! `exp` uses Cody-Waite range reduction (x = n ln2 + r, |r| <= ln2/2) and a
//! Taylor polynomial of degree 7 (f32) / 13 (f64), below one ulp of error
//! before the final scaling by 2^n, which is done on the exponent bits.

/// The dispatch level of the multiversioned kernels: 2 AVX-512, 1 AVX2+FMA,
/// 0 baseline; the best the CPU has, capped by `RBE_SIMD` (see the module docs).
pub fn simd_level() -> u8 {
    use std::sync::OnceLock;
    static L: OnceLock<u8> = OnceLock::new();
    let level = *L.get_or_init(|| {
        let cap = match std::env::var("RBE_SIMD").ok().as_deref().map(str::trim) {
            Some("scalar") | Some("baseline") => 0,
            Some("avx2") => 1,
            _ => 2,
        };
        let hw = if has_avx512() {
            2
        } else if has_avx2() {
            1
        } else {
            0
        };
        cap.min(hw)
    });
    #[cfg(test)]
    if let Some(f) = FORCE_LEVEL.with(|c| c.get()) {
        return level.min(f);
    }
    level
}

#[cfg(test)]
thread_local! {
    /// Tests cap the dispatch level of their own thread with this.
    pub(crate) static FORCE_LEVEL: std::cell::Cell<Option<u8>> = const { std::cell::Cell::new(None) };
}

/// Run-time CPU features, detected once.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static F: OnceLock<bool> = OnceLock::new();
        *F.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$m])*
        // kernels take their slices and sizes as plain arguments
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[allow(clippy::too_many_arguments)]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
                unsafe fn v512($($arg: $ty),*) $body
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256($($arg: $ty),*) $body
                let level = simd_level();
                if level >= 2 {
                    // SAFETY: the features were detected at run time (simd_level never exceeds the hardware's).
                    return unsafe { v512($($arg),*) };
                }
                if level >= 1 {
                    // SAFETY: the features were detected at run time.
                    return unsafe { v256($($arg),*) };
                }
            }
            $body
        }
    };
}

/// One exp per float type: the same algorithm, with the type's constants and
/// the Taylor coefficients 1/k! listed from the highest degree down.
macro_rules! exp_impl {
    ($name:ident, $t:ty, $i:ty, $u:ty, $bias:expr, $mant:expr, $lo:expr, $hi:expr, $ln2_hi:expr, $ln2_lo:expr, [$($c:expr),+]) => {
        /// `e^x` within two ulps, branch-free (selects only), inlined so that the
        /// loop it sits in vectorises under the caller's target features; the
        /// slice kernels here and the front-ends' fused kernels use this one.
        #[inline(always)]
        pub fn $name(x: $t) -> $t {
            let xc = x.max($lo).min($hi);
            let n = (xc * <$t>::LOG2_E_).round_ties_even();
            let r = (xc - n * $ln2_hi) - n * $ln2_lo;
            let mut p: $t = 0.0;
            $( p = p.mul_add(r, $c); )+
            // 2^n in two halves so that the smallest n still give subnormals
            let n1 = (n * 0.5).floor();
            let n2 = n - n1;
            // Safety: n is clamped to a small range, so the conversions cannot overflow.
            let (i1, i2): ($i, $i) = unsafe { (n1.to_int_unchecked(), n2.to_int_unchecked()) };
            let s1 = <$t>::from_bits(((i1 + $bias) as $u) << $mant);
            let s2 = <$t>::from_bits(((i2 + $bias) as $u) << $mant);
            let y = p * s1 * s2;
            let y = if x > $hi { <$t>::INFINITY } else { y };
            let y = if x < $lo { 0.0 } else { y };
            if x != x { x } else { y }
        }
    };
}

trait Log2E {
    const LOG2_E_: Self;
}
impl Log2E for f32 {
    const LOG2_E_: f32 = std::f32::consts::LOG2_E;
}
impl Log2E for f64 {
    const LOG2_E_: f64 = std::f64::consts::LOG2_E;
}

exp_impl!(
    exp_f32,
    f32,
    i32,
    u32,
    127,
    23,
    -104.0,
    88.8,
    0.693_145_75,
    1.428_606_8e-6,
    [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0]
);
exp_impl!(
    exp_f64,
    f64,
    i64,
    u64,
    1023,
    52,
    -745.2,
    709.8,
    6.931_471_803_691_238_164_90e-01,
    1.908_214_929_270_587_700_02e-10,
    [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0
    ]
);

multiversion! {
    /// out[i] = exp(x[i])
    pub fn exp_slice_f32(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp_f32(v);
        }
    }
}

multiversion! {
    /// out[i] = exp(x[i])
    pub fn exp_slice_f64(x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp_f64(v);
        }
    }
}

multiversion! {
    /// out[i] = exp(x[i] - shift)
    pub fn exp_shift_f32(x: &[f32], shift: f32, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp_f32(v - shift);
        }
    }
}

multiversion! {
    /// out[i] = exp(x[i] - shift)
    pub fn exp_shift_f64(x: &[f64], shift: f64, out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = exp_f64(v - shift);
        }
    }
}

/// Scalar exp with the same results as the slice kernels.
pub fn exp_scalar_f32(x: f32) -> f32 {
    exp_f32(x)
}
pub fn exp_scalar_f64(x: f64) -> f64 {
    exp_f64(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_an_ulp_or_two() {
        let xs: Vec<f64> =
            (0..20001).map(|i| -740.0 + i as f64 * (1449.0 / 20000.0)).chain([0.0, -0.0, 1e-300, -1e-10, 709.7, -745.1]).collect();
        let mut out = vec![0.0; xs.len()];
        exp_slice_f64(&xs, &mut out);
        for (&x, &y) in xs.iter().zip(&out) {
            let want = x.exp();
            if want.is_normal() {
                assert!(((y - want) / want).abs() < 4.5e-16, "f64 exp({x}) = {y}, libm {want}");
            } else {
                assert!((y - want).abs() <= 1e-320, "f64 exp({x}) = {y}, libm {want}");
            }
        }
        let xs32: Vec<f32> = (0..20001).map(|i| -103.0 + i as f32 * (191.0 / 20000.0)).collect();
        let mut o32 = vec![0.0f32; xs32.len()];
        exp_slice_f32(&xs32, &mut o32);
        for (&x, &y) in xs32.iter().zip(&o32) {
            let want = (x as f64).exp();
            if want > 1.2e-38 && want < 3.4e38 {
                assert!(((y as f64 - want) / want).abs() < 2.5e-7, "f32 exp({x}) = {y}, exact {want}");
            }
        }
        let mut s = [0.0f32; 4];
        exp_slice_f32(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 89.0], &mut s);
        assert!(s[0].is_nan() && s[1] == f32::INFINITY && s[2] == 0.0 && s[3] == f32::INFINITY);
    }
}

macro_rules! sum_middle {
    ($name:ident, $t:ty) => {
        multiversion! {
            /// Sum over the middle axis of a contiguous (outer, r, inner) block (accumulated in f64).
            pub fn $name(x: &[$t], outer: usize, r: usize, inner: usize, out: &mut [$t]) {
                let mut acc = vec![0.0f64; inner];
                for o in 0..outer {
                    acc.iter_mut().for_each(|v| *v = 0.0);
                    for k in 0..r {
                        let row = &x[(o * r + k) * inner..(o * r + k + 1) * inner];
                        for (a, &v) in acc.iter_mut().zip(row) {
                            *a += v as f64;
                        }
                    }
                    for (d, &a) in out[o * inner..(o + 1) * inner].iter_mut().zip(acc.iter()) {
                        *d = a as $t;
                    }
                }
            }
        }
    };
}
sum_middle!(sum_middle_f32, f32);
sum_middle!(sum_middle_f64, f64);

multiversion! {
    /// Sum of each contiguous run of `r` f32 values, accumulated in f64 in 16
    /// fixed lanes (vectorised, and the same order on every machine).
    pub fn sum_runs_f32(x: &[f32], r: usize, out: &mut [f32]) {
        for (d, run) in out.iter_mut().zip(x.chunks_exact(r)) {
            let mut acc = [0f64; 16];
            let ch = run.chunks_exact(16);
            let rem = ch.remainder();
            for c in ch {
                for k in 0..16 {
                    acc[k] += c[k] as f64;
                }
            }
            let mut w = 8;
            while w > 0 {
                for k in 0..w {
                    acc[k] += acc[k + w];
                }
                w /= 2;
            }
            let mut s = acc[0];
            for &v in rem {
                s += v as f64;
            }
            *d = s as f32;
        }
    }
}

multiversion! {
    /// Sum of each contiguous run of `r` f64 values: blocks of 256 summed in 8
    /// lanes, then the block sums pairwise (error O(log r) ulps, fixed order).
    pub fn sum_runs_f64(x: &[f64], r: usize, out: &mut [f64]) {
        let mut blocks: Vec<f64> = Vec::new();
        for (d, run) in out.iter_mut().zip(x.chunks_exact(r)) {
            blocks.clear();
            for b in run.chunks(256) {
                let mut acc = [0f64; 8];
                let ch = b.chunks_exact(8);
                let rem = ch.remainder();
                for c in ch {
                    for k in 0..8 {
                        acc[k] += c[k];
                    }
                }
                let mut s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                for &v in rem {
                    s += v;
                }
                blocks.push(s);
            }
            while blocks.len() > 1 {
                let h = blocks.len().div_ceil(2);
                for i in 0..blocks.len() / 2 {
                    blocks[i] = blocks[2 * i] + blocks[2 * i + 1];
                }
                if blocks.len() % 2 == 1 {
                    blocks[h - 1] = blocks[blocks.len() - 1];
                }
                blocks.truncate(h);
            }
            *d = blocks.first().copied().unwrap_or(0.0);
        }
    }
}

/// tanh for f32: near 0 an odd polynomial (least-squares fit of tanh(x)/x
/// on |x| < 0.5625, 1.5e-9 relative error), elsewhere `1 - 2 / (exp(2|x|) + 1)`;
/// within 2 ulp everywhere.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    let a = x.abs();
    let u = x * x;
    let mut p: f32 = -0.006_202_339_5;
    p = p.mul_add(u, 0.021_025_32);
    p = p.mul_add(u, -0.053_842_36);
    p = p.mul_add(u, 0.133_325_07);
    p = p.mul_add(u, -0.333_333_16);
    let small = (x * u).mul_add(p, x).copysign(x);
    let big = (1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0)).copysign(x);
    if a < 0.5625 {
        small
    } else {
        big
    }
}

multiversion! {
    /// out[i] = tanh(x[i])
    pub fn tanh_slice_f32(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = tanh_f32(v);
        }
    }
}

/// ln(s) for s >= 1 (finite) or NaN, without libm so that it vectorises:
/// s = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh((m-1)/(m+1)) by
/// its series (|z| <= 0.172, ten terms: below 1e-17 relative).
#[inline(always)]
fn ln_ge1(s: f64) -> f64 {
    let bits = s.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut p: f64 = 1.0 / 21.0;
    for c in [1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        p = p.mul_add(z2, c);
    }
    let ef = e as f64;
    let r = ef.mul_add(6.931_471_803_691_238_164_90e-01, (2.0 * z).mul_add(p, ef * 1.908_214_929_270_587_700_02e-10));
    if s.is_nan() {
        s
    } else {
        r
    }
}

/// log-sum-exp kernels: exp sums accumulate in the element type over blocks
/// of at most 64 rows / 64 vectors, and the block sums in f64.
macro_rules! lse_kernels {
    ($mid:ident, $runs:ident, $bwd:ident, $t:ty, $w:literal, $exp:ident) => {
        multiversion! {
            /// log-sum-exp over the middle axis of a contiguous (outer, r, inner) block.
            /// When `ms` and `lss` are not empty they receive, per output, the
            /// shift (the max) and the log of the shifted sum (`out = ms + lss`),
            /// from which the backward computes `exp((x - ms) - lss)` at full precision.
            pub fn $mid(x: &[$t], outer: usize, r: usize, inner: usize, out: &mut [$t], ms: &mut [$t], lss: &mut [$t]) {
                if inner == 1 {
                    return $runs(x, r, out, ms, lss);
                }
                // a partial chunk of columns is copied, padded with -inf, so that
                // every loop below runs at full vector width
                let mut tmp: Vec<$t> = Vec::new();
                for o in 0..outer {
                    let blk = &x[o * r * inner..(o + 1) * r * inner];
                    let mut j0 = 0;
                    while j0 < inner {
                        let mut w = $w.min(inner - j0);
                        if w < $w && inner >= $w {
                            // last partial chunk: redo the chunk ending at `inner`
                            // (same per-column arithmetic) and keep its new columns
                            j0 = inner - $w;
                            w = $w;
                        }
                        let (src, stride, base): (&[$t], usize, usize) = if w == $w {
                            (blk, inner, j0)
                        } else {
                            tmp.clear();
                            tmp.resize(r * $w, <$t>::NEG_INFINITY);
                            for k in 0..r {
                                tmp[k * $w..k * $w + w].copy_from_slice(&blk[k * inner + j0..k * inner + j0 + w]);
                            }
                            (&tmp[..], $w, 0)
                        };
                        assert!(base + (r - 1) * stride + $w <= src.len());
                        // Safety: checked just above for the last row.
                        let row = |k: usize| -> [$t; $w] { unsafe { *(src.as_ptr().add(base + k * stride) as *const [$t; $w]) } };
                        let mut m = [<$t>::NEG_INFINITY; $w];
                        for k in 0..r {
                            let v: [$t; $w] = row(k);
                            for l in 0..$w {
                                m[l] = if v[l] > m[l] || v[l] != v[l] { v[l] } else { m[l] };
                            }
                        }
                        let mut sh = [0.0 as $t; $w];
                        for l in 0..$w {
                            sh[l] = if m[l].is_finite() { m[l] } else { 0.0 };
                        }
                        let mut tot = [0f64; $w];
                        let mut k0 = 0;
                        while k0 < r {
                            let k1 = (k0 + 64).min(r);
                            let mut acc = [0.0 as $t; $w];
                            for k in k0..k1 {
                                let v: [$t; $w] = row(k);
                                for l in 0..$w {
                                    acc[l] += $exp(v[l] - sh[l]);
                                }
                            }
                            for l in 0..$w {
                                tot[l] += acc[l] as f64;
                            }
                            k0 = k1;
                        }
                        let mut res = [0.0 as $t; $w];
                        let mut lsv = [0.0 as $t; $w];
                        for l in 0..$w {
                            lsv[l] = if m[l].is_finite() { ln_ge1(tot[l]) as $t } else { 0.0 };
                            res[l] = if m[l].is_finite() { m[l] + lsv[l] } else { m[l] };
                        }
                        out[o * inner + j0..o * inner + j0 + w].copy_from_slice(&res[..w]);
                        if !ms.is_empty() {
                            ms[o * inner + j0..o * inner + j0 + w].copy_from_slice(&m[..w]);
                            lss[o * inner + j0..o * inner + j0 + w].copy_from_slice(&lsv[..w]);
                        }
                        j0 += w;
                    }
                }
            }
        }

        multiversion! {
            /// log-sum-exp of each contiguous run of `r` elements (runs laid end to
            /// end); `ms`/`lss` as for the middle-axis kernel.
            pub fn $runs(x: &[$t], r: usize, out: &mut [$t], ms: &mut [$t], lss: &mut [$t]) {
                for (i, (d, run)) in out.iter_mut().zip(x.chunks_exact(r)).enumerate() {
                    let ch = run.chunks_exact($w);
                    let rem = ch.remainder();
                    let mut mv = [<$t>::NEG_INFINITY; $w];
                    for c in ch {
                        for l in 0..$w {
                            mv[l] = if c[l] > mv[l] || c[l] != c[l] { c[l] } else { mv[l] };
                        }
                    }
                    let mut last = [<$t>::NEG_INFINITY; $w];
                    for (l, &v) in rem.iter().enumerate() {
                        last[l] = v;
                    }
                    for l in 0..$w {
                        mv[l] = if last[l] > mv[l] || last[l] != last[l] { last[l] } else { mv[l] };
                    }
                    let mut m = <$t>::NEG_INFINITY;
                    for &v in mv.iter() {
                        m = if v > m || v != v { v } else { m };
                    }
                    if !m.is_finite() {
                        *d = m;
                        if !ms.is_empty() {
                            ms[i] = m;
                            lss[i] = 0.0;
                        }
                        continue;
                    }
                    let mut tot = 0f64;
                    for big in run.chunks(64 * $w) {
                        let ch = big.chunks_exact($w);
                        let rem = ch.remainder();
                        let mut acc = [0.0 as $t; $w];
                        for c in ch {
                            for l in 0..$w {
                                acc[l] += $exp(c[l] - m);
                            }
                        }
                        let mut last = [<$t>::NEG_INFINITY; $w];
                        for (l, &v) in rem.iter().enumerate() {
                            last[l] = v;
                        }
                        for l in 0..$w {
                            acc[l] += $exp(last[l] - m);
                        }
                        let mut s = 0f64;
                        for &a in &acc {
                            s += a as f64;
                        }
                        tot += s;
                    }
                    let ls = ln_ge1(tot) as $t;
                    *d = m + ls;
                    if !ms.is_empty() {
                        ms[i] = m;
                        lss[i] = ls;
                    }
                }
            }
        }

        multiversion! {
            /// Gradient of log-sum-exp over the middle axis from the forward's
            /// shift `m` and log-sum `ls`: out[o,k,j] = g[o,j] exp((x[o,k,j] - m[o,j]) - ls[o,j]).
            pub fn $bwd(x: &[$t], m: &[$t], ls: &[$t], g: &[$t], outer: usize, r: usize, inner: usize, out: &mut [$t]) {
                for o in 0..outer {
                    let (mr, lr, gr) = (&m[o * inner..(o + 1) * inner], &ls[o * inner..(o + 1) * inner], &g[o * inner..(o + 1) * inner]);
                    if inner == 1 {
                        let (mv, lv, gv) = (mr[0], lr[0], gr[0]);
                        for (d, &v) in out[o * r..(o + 1) * r].iter_mut().zip(&x[o * r..(o + 1) * r]) {
                            *d = gv * $exp((v - mv) - lv);
                        }
                        continue;
                    }
                    for k in 0..r {
                        let base = (o * r + k) * inner;
                        let xr = &x[base..base + inner];
                        let dr = &mut out[base..base + inner];
                        if inner < $w {
                            for ((((d, &v), &mv), &lv), &gv) in dr.iter_mut().zip(xr).zip(mr).zip(lr).zip(gr) {
                                *d = gv * $exp((v - mv) - lv);
                            }
                            continue;
                        }
                        // full-width chunks, the last one overlapping (same values rewritten)
                        let mut j0 = 0;
                        while j0 < inner {
                            let j = j0.min(inner - $w);
                            let xv: &[$t; $w] = xr[j..j + $w].try_into().unwrap();
                            let mv: &[$t; $w] = mr[j..j + $w].try_into().unwrap();
                            let lv: &[$t; $w] = lr[j..j + $w].try_into().unwrap();
                            let gv: &[$t; $w] = gr[j..j + $w].try_into().unwrap();
                            let dv: &mut [$t; $w] = (&mut dr[j..j + $w]).try_into().unwrap();
                            for l in 0..$w {
                                dv[l] = gv[l] * $exp((xv[l] - mv[l]) - lv[l]);
                            }
                            j0 += $w;
                        }
                    }
                }
            }
        }
    };
}
lse_kernels!(lse_middle_f32, lse_runs_f32, lse_backward_f32, f32, 16, exp_f32);
lse_kernels!(lse_middle_f64, lse_runs_f64, lse_backward_f64, f64, 8, exp_f64);

/// Row kernels of `log_softmax` / `softmax` over the last dim: per run of `r`
/// contiguous elements one pass for the max, one for the sum of exp, one to
/// write. The shift is subtracted first, `(x - m) - ls`, so large offsets
/// keep full precision. Short rows (the common case: a few dozen classes)
/// are cheap only if the per-row work is: the lanes are reduced as trees,
/// rows go in blocks of 64 (each pass over the whole block, so the rows'
/// dependency chains overlap) and the logs of a block's sums are one
/// vectorised loop.
macro_rules! softmax_kernels {
    ($fwd:ident, $bwd:ident, $t:ty, $w:literal, $exp:ident, [$($h:literal),+]) => {
        multiversion! {
            /// log_softmax (`log`) or softmax of each contiguous run of `r`
            /// elements (runs laid end to end). A run whose max is not finite
            /// (a NaN, a +inf, or all -inf) is NaN throughout, as the composite
            /// formula and torch give.
            pub fn $fwd(x: &[$t], r: usize, log: bool, out: &mut [$t]) {
                const BLK: usize = 64;
                let rows = x.len() / r;
                let mut ms = [0.0 as $t; BLK];
                let mut tots = [1f64; BLK];
                let mut lss = [0f64; BLK];
                let mut b0 = 0;
                while b0 < rows {
                    let nb = BLK.min(rows - b0);
                    let xb = &x[b0 * r..(b0 + nb) * r];
                    let ob = &mut out[b0 * r..(b0 + nb) * r];
                    // max of each row (NaN if any is NaN), lanes then a tree
                    for (i, run) in xb.chunks_exact(r).enumerate() {
                        let ch = run.chunks_exact($w);
                        let rem = ch.remainder();
                        let mut mv = [<$t>::NEG_INFINITY; $w];
                        for c in ch {
                            for l in 0..$w {
                                mv[l] = if c[l] > mv[l] || c[l] != c[l] { c[l] } else { mv[l] };
                            }
                        }
                        // the tail: the last full-width chunk again when the row
                        // has one (max is idempotent), else a padded copy
                        let mut last = [<$t>::NEG_INFINITY; $w];
                        if r >= $w {
                            last = run[r - $w..].try_into().unwrap();
                        } else {
                            last[..rem.len()].copy_from_slice(rem);
                        }
                        for l in 0..$w {
                            mv[l] = if last[l] > mv[l] || last[l] != last[l] { last[l] } else { mv[l] };
                        }
                        $(
                            for l in 0..$h {
                                mv[l] = if mv[l + $h] > mv[l] || mv[l + $h] != mv[l + $h] { mv[l + $h] } else { mv[l] };
                            }
                        )+
                        ms[i] = mv[0];
                    }
                    // sum of exp(x - m): blocks of 64 vectors in the element type,
                    // lanes added as a tree in f64
                    for (i, run) in xb.chunks_exact(r).enumerate() {
                        let m = ms[i];
                        if !m.is_finite() {
                            tots[i] = 1.0;
                            continue;
                        }
                        let mut tot = 0f64;
                        for (k, big) in run.chunks(64 * $w).enumerate() {
                            let ch = big.chunks_exact($w);
                            let rem = ch.remainder().len();
                            let mut acc = [0.0 as $t; $w];
                            for c in ch {
                                for l in 0..$w {
                                    acc[l] += $exp(c[l] - m);
                                }
                            }
                            if rem > 0 {
                                // the tail: the full-width chunk ending at the block's
                                // end with its already-counted lanes masked off, or a
                                // padded copy when the row is shorter than a vector
                                let end = k * 64 * $w + big.len();
                                if r >= $w {
                                    let c: &[$t; $w] = run[end - $w..end].try_into().unwrap();
                                    let off = $w - rem;
                                    for l in 0..$w {
                                        let v = if l >= off { c[l] } else { <$t>::NEG_INFINITY };
                                        acc[l] += $exp(v - m);
                                    }
                                } else {
                                    let mut last = [<$t>::NEG_INFINITY; $w];
                                    last[..rem].copy_from_slice(&big[big.len() - rem..]);
                                    for l in 0..$w {
                                        acc[l] += $exp(last[l] - m);
                                    }
                                }
                            }
                            let mut a64 = [0f64; $w];
                            for l in 0..$w {
                                a64[l] = acc[l] as f64;
                            }
                            $(
                                for l in 0..$h {
                                    a64[l] += a64[l + $h];
                                }
                            )+
                            tot += a64[0];
                        }
                        tots[i] = tot;
                    }
                    for i in 0..nb {
                        lss[i] = ln_ge1(tots[i]);
                    }
                    for (i, (run, dst)) in xb.chunks_exact(r).zip(ob.chunks_exact_mut(r)).enumerate() {
                        let (m, ls) = (ms[i], lss[i] as $t);
                        if !m.is_finite() {
                            dst.fill(<$t>::NAN);
                        } else if r >= $w {
                            // full-width chunks, the last one overlapping (the same
                            // values written again)
                            let mut j0 = 0;
                            while j0 < r {
                                let j = j0.min(r - $w);
                                let xv: &[$t; $w] = run[j..j + $w].try_into().unwrap();
                                let dv: &mut [$t; $w] = (&mut dst[j..j + $w]).try_into().unwrap();
                                if log {
                                    for l in 0..$w {
                                        dv[l] = (xv[l] - m) - ls;
                                    }
                                } else {
                                    for l in 0..$w {
                                        dv[l] = $exp((xv[l] - m) - ls);
                                    }
                                }
                                j0 += $w;
                            }
                        } else if log {
                            for (d, &v) in dst.iter_mut().zip(run) {
                                *d = (v - m) - ls;
                            }
                        } else {
                            for (d, &v) in dst.iter_mut().zip(run) {
                                *d = $exp((v - m) - ls);
                            }
                        }
                    }
                    b0 += nb;
                }
            }
        }

        multiversion! {
            /// First-order backward per run of `r` from the forward's output `y`:
            /// log_softmax (`log`) `g - exp(y) sum(g)`, softmax
            /// `g y - y sum(g y)`; the sums accumulated in f64 in fixed lanes.
            pub fn $bwd(y: &[$t], g: &[$t], r: usize, log: bool, out: &mut [$t]) {
                for ((yr, gr), dst) in y.chunks_exact(r).zip(g.chunks_exact(r)).zip(out.chunks_exact_mut(r)) {
                    let mut acc = [0f64; $w];
                    let (gc, yc) = (gr.chunks_exact($w), yr.chunks_exact($w));
                    let (grem, yrem) = (gc.remainder(), yc.remainder());
                    for (a, b) in gc.zip(yc) {
                        for l in 0..$w {
                            acc[l] += if log { a[l] as f64 } else { (a[l] * b[l]) as f64 };
                        }
                    }
                    // the tail padded with zeros, then the lanes added as a tree
                    let (mut ga, mut ya) = ([0.0 as $t; $w], [0.0 as $t; $w]);
                    ga[..grem.len()].copy_from_slice(grem);
                    ya[..yrem.len()].copy_from_slice(yrem);
                    for l in 0..$w {
                        acc[l] += if log { ga[l] as f64 } else { (ga[l] * ya[l]) as f64 };
                    }
                    $(
                        for l in 0..$h {
                            acc[l] += acc[l + $h];
                        }
                    )+
                    let s = acc[0];
                    let s = s as $t;
                    if log {
                        for ((d, &gv), &yv) in dst.iter_mut().zip(gr).zip(yr) {
                            *d = gv - $exp(yv) * s;
                        }
                    } else {
                        for ((d, &gv), &yv) in dst.iter_mut().zip(gr).zip(yr) {
                            *d = gv * yv - yv * s;
                        }
                    }
                }
            }
        }
    };
}
softmax_kernels!(softmax_rows_f32, softmax_rows_backward_f32, f32, 16, exp_f32, [8, 4, 2, 1]);
softmax_kernels!(softmax_rows_f64, softmax_rows_backward_f64, f64, 8, exp_f64, [4, 2, 1]);

#[cfg(test)]
mod lse_tests {
    use super::*;

    #[test]
    fn ln_ge1_is_accurate() {
        for i in 0..100_000 {
            let s = 1.0 + (i as f64) * 0.37 + (i as f64).powi(3) * 1e-3;
            let (got, want) = (ln_ge1(s), s.ln());
            assert!((got - want).abs() <= 2.0 * f64::EPSILON * want.abs().max(1e-300) + 1e-300, "{s}: {got} vs {want}");
        }
        assert!(ln_ge1(f64::NAN).is_nan());
        assert_eq!(ln_ge1(1.0), 0.0);
    }

    #[test]
    fn lse_kernels_match_naive() {
        let (outer, r, inner) = (3, 70, 19);
        let x: Vec<f64> = (0..outer * r * inner).map(|i| ((i * 7919) % 1000) as f64 * 0.013 - 6.0).collect();
        let mut mid = vec![0.0; outer * inner];
        lse_middle_f64(&x, outer, r, inner, &mut mid, &mut [], &mut []);
        for o in 0..outer {
            for j in 0..inner {
                let want = (0..r).map(|k| x[(o * r + k) * inner + j].exp()).sum::<f64>().ln();
                assert!((mid[o * inner + j] - want).abs() < 1e-13);
            }
        }
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut runs = vec![0f32; outer * inner];
        lse_runs_f32(&xf, r, &mut runs, &mut [], &mut []);
        for i in 0..outer * inner {
            let want = xf[i * r..(i + 1) * r].iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            assert!((runs[i] as f64 - want).abs() < 2e-6);
        }
    }
}

/// Sequences evaluated side by side by [`sincos_lanes`].
pub const SINCOS_LANES: usize = 8;
const LANES: usize = SINCOS_LANES;

multiversion! {
/// `sin` and `cos` of `t0[l] + i d[l]` for `i < n` and `LANES` sequences at
/// once (`s[i * LANES + l]`). The steps `r d` (`r <= 16`) are tabulated by a
/// short rotation recurrence, the anchors `t0 + 16 q d` follow by rotations
/// by `16 d` (re-anchored with a direct evaluation every 16 anchors), and
/// each value is one angle addition from its anchor: no long dependency
/// chain, and the lanes fill the vector units. Error: a few tens of ulp (f64).
/// Multiplications and additions are rounded separately in every version, so
/// the results do not depend on the instruction set.
pub fn sincos_lanes(t0: &[f64; LANES], d: &[f64; LANES], n: usize, s: &mut [f64], c: &mut [f64]) {
    const L: usize = 16;
    if n == 0 {
        return;
    }
    let (mut sd, mut cd) = ([0.0; LANES], [0.0; LANES]);
    let (mut sa, mut ca) = ([0.0; LANES], [0.0; LANES]);
    for l in 0..LANES {
        (sd[l], cd[l]) = d[l].sin_cos();
        (sa[l], ca[l]) = t0[l].sin_cos();
    }
    let (mut ts, mut tc) = ([[0.0; LANES]; L + 1], [[0.0; LANES]; L + 1]);
    tc[0] = [1.0; LANES];
    for r in 1..=L.min(n) {
        for l in 0..LANES {
            ts[r][l] = ts[r - 1][l] * cd[l] + tc[r - 1][l] * sd[l];
            tc[r][l] = tc[r - 1][l] * cd[l] - ts[r - 1][l] * sd[l];
        }
    }
    let (sl, cl) = (ts[L], tc[L]);
    for q in 0..n.div_ceil(L) {
        if q > 0 {
            for l in 0..LANES {
                if q % L == 0 {
                    (sa[l], ca[l]) = (t0[l] + (q * L) as f64 * d[l]).sin_cos();
                } else {
                    (sa[l], ca[l]) = (sa[l] * cl[l] + ca[l] * sl[l], ca[l] * cl[l] - sa[l] * sl[l]);
                }
            }
        }
        for r in 0..L.min(n - q * L) {
            let o = (q * L + r) * LANES;
            for l in 0..LANES {
                s[o + l] = sa[l] * tc[r][l] + ca[l] * ts[r][l];
                c[o + l] = ca[l] * tc[r][l] - sa[l] * ts[r][l];
            }
        }
    }
}
}

// ---------------------------------------------------------------------------
// special functions: erf, erfc, ndtr, log_ndtr, ndtr_ratio and their
// derivatives, vectorised, within 2 ulp in float64
// ---------------------------------------------------------------------------
//
// Everything goes through two scaled complementary error functions of an
// exact argument s >= 0, E(s) = erfcx(s) (erf, erfc: s = |x|) and
// N(s) = erfcx(s / sqrt2) (ndtr, log_ndtr, phi / Phi: s = |x|), each a
// piecewise polynomial (degree 18 for E, 21 for N) over three regions (in u = s - c near
// the origin, in w = 1/s^2 as s f(s) beyond; coefficients in
// `crate::erf_coeffs`, fitted by `rust/core/tools/fit_erfcx.py`, relative
// error below 3e-18), and the exponential exp(-s^2) or exp(-s^2/2) with s^2
// split exactly by an FMA. The last steps are compensated so that each
// result is rounded about once:
//
// * the polynomial's last three Horner steps run in double-double (with the
//   low parts of the first five coefficients), the rounding errors of u and
//   w enter through the first-order term, and 1/s is corrected by its exact
//   residual;
// * the exponential is 2^n (1 + q) with r = -s^2 - n ln2 kept as a
//   double-double, and the product f exp(r) = f + f q is summed in
//   double-double before the one final rounding;
// * 1 - erfc, 2 - erfc and 1 - Phi(-x) are exact two-sums; log Phi(x) adds
//   -x^2/2, k ln2 and log(m) (fdlibm's kernel) with the rounding errors
//   carried; phi / Phi is one division refined by its exact residual.
//
// The code has no branches (every lane computes every candidate and a select
// keeps the right one; arguments are clamped so that no lane traps), so LLVM
// vectorises it. Lanes outside the range the vector formulas cover (for
// `ndtr_ratio` arguments below -1e8) take the scalar functions.

use crate::erf_coeffs::*;
use crate::special::ERF_TAYLOR;

/// The coefficients of the three regions of one variant (`D` per region).
struct Scaled<const D: usize> {
    split: [f64; 2],
    centre: [f64; 2],
    c: &'static [[f64; D]; 3],
    lo: &'static [[f64; 5]; 3],
}

const SCALED_E: Scaled<19> = Scaled { split: ERFCX_E_SPLIT, centre: ERFCX_E_CENTRE, c: &ERFCX_E, lo: &ERFCX_E_LO };
const SCALED_N: Scaled<22> = Scaled { split: ERFCX_N_SPLIT, centre: ERFCX_N_CENTRE, c: &ERFCX_N, lo: &ERFCX_N_LO };

/// `a + b = s + e` exactly (Knuth's two-sum).
#[inline(always)]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

/// `a + b = s + e` exactly when `|a| >= |b|` (or a is zero).
#[inline(always)]
fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

/// `c + x (h + l)` as a double-double, `c = (ch, cl)`.
#[inline(always)]
fn dd_horner_step(ch: f64, cl: f64, x: f64, h: f64, l: f64) -> (f64, f64) {
    let m = x * h;
    let me = x.mul_add(h, -m);
    let (s, e) = two_sum(ch, m);
    (s, e + x.mul_add(l, me) + cl)
}

/// `f(s)` as a double-double for `s >= 0` finite (callers clamp; `s` below the
/// first region's start extrapolates, which callers do not select).
#[inline(always)]
fn scaled_dd<const D: usize>(s: f64, t: &Scaled<D>) -> (f64, f64) {
    scaled_dd_g::<D, false>(s, t)
}

/// [`scaled_dd`]; with `R0` for arguments the caller knows to be in region
/// 0 (`s < split[0]`): the region selects fold to constants and the unused
/// region-2 terms (a division) vanish, the arithmetic of region 0 being the
/// same operations, so the same bits.
#[inline(always)]
fn scaled_dd_g<const D: usize, const R0: bool>(s: f64, t: &Scaled<D>) -> (f64, f64) {
    let r1 = !R0 && s >= t.split[0];
    let r2 = !R0 && s >= t.split[1];
    // The region's coefficient is picked with bit masks, not `if`: with
    // `if`, LLVM turned the 2 x D selects into three branches (one Horner
    // loop per region), which its cost model would not if-convert for AVX2
    // (the AVX2 build stayed scalar). Same values bit for bit.
    let m1 = u64::from(r1).wrapping_neg();
    let m2 = u64::from(r2).wrapping_neg();
    let sel = |a: f64, b: f64, c: f64| f64::from_bits((((a.to_bits() & !m1) | (b.to_bits() & m1)) & !m2) | (c.to_bits() & m2));
    let pick = |k: usize| sel(t.c[0][k], t.c[1][k], t.c[2][k]);
    let pick_lo = |k: usize| sel(t.lo[0][k], t.lo[1][k], t.lo[2][k]);
    // region 2: w = 1/s^2 from v = 1/s, with 1/s = v (1 + rho) and
    // v^2 = w + wl exactly, so the exact 1/s^2 is w + wl + 2 rho w (to 2^-105)
    let sc = s.max(t.split[1]);
    let v = 1.0 / sc;
    let rho = (-v).mul_add(sc, 1.0);
    let w = v * v;
    let wl = v.mul_add(v, -w);
    // regions 0 and 1: u = s - c with its rounding error
    let (u, ul) = two_sum(s, if r1 { -t.centre[1] } else { -t.centre[0] });
    let x = if r2 { w } else { u };
    let dx = if r2 { (2.0 * rho).mul_add(w, wl) } else { ul };
    let mut q = pick(D - 1);
    let mut k = D - 2;
    while k >= 3 {
        q = q.mul_add(x, pick(k));
        k -= 1;
    }
    // q = c3 + c4 x + ...; the low parts of c3 and c4
    let q_lo = x.mul_add(pick_lo(4), pick_lo(3));
    let (h, l) = dd_horner_step(pick(2), pick_lo(2), x, q, q_lo);
    let c1 = pick(1);
    let c2 = pick(2);
    let (h, l) = dd_horner_step(c1, pick_lo(1), x, h, l);
    let m = x * h;
    let me = x.mul_add(h, -m);
    let (ph, pe) = fast_two_sum(pick(0), m);
    // first-order term of the rounding error of x: p'(x) dx, p' ~ c1 + 2 c2 x
    let pl = pe + (x.mul_add(l, me) + pick_lo(0)) + (2.0 * c2).mul_add(x, c1) * dx;
    // region 2: times 1/s = v (1 + rho)
    let mv = if r2 { v } else { 1.0 };
    let mr = if r2 { rho } else { 0.0 };
    let ch = mv * ph;
    let cl = mv.mul_add(ph, -ch) + mv * ph.mul_add(mr, pl);
    (ch, cl)
}

/// `exp(-a - b)` for `0 <= a <= 746` and `|b| <= ulp(a)` as `2^n (1 + rh + t)`:
/// returns `(n, rh, t)` with `rh` in `[-ln2/2, ln2/2]` and `t` the rest of
/// `expm1` plus the low part of the reduced argument (`|t| < 0.07`).
#[inline(always)]
fn exp_neg_parts(a: f64, b: f64) -> (f64, f64, f64) {
    let n = (-a * std::f64::consts::LOG2_E).round_ties_even();
    // n ln2_hi is exact (ln2_hi has 32 significant bits, |n| < 2^11) and so is
    // the difference (Sterbenz)
    let r0 = (-a) - n * LN2_HI;
    let tail = n.mul_add(LN2_LO, b);
    let (rh, rl) = two_sum(r0, -tail);
    // expm1(rh) = rh + rh^2 (1/2! + rh/3! + ... + rh^11/13!)
    let mut p: f64 = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ] {
        p = p.mul_add(rh, c);
    }
    // exp(rh + rl) = (1 + expm1(rh)) (1 + rl) with |rl| <= 2^-55
    let t = (rh * rh).mul_add(p, rl);
    (n, rh, t)
}

/// `(h + l) (1 + rh + t)` as a double-double (the product of [`exp_neg_parts`]).
#[inline(always)]
fn times_exp_parts(h: f64, l: f64, rh: f64, t: f64) -> (f64, f64) {
    let p = h * rh;
    let pe = h.mul_add(rh, -p);
    let rest = h.mul_add(t, l.mul_add(rh + t, l));
    let (s, e) = fast_two_sum(h, p);
    // renormalised: |t| < 0.07 leaves `rest` a tenth of `s`
    fast_two_sum(s, e + (pe + rest))
}

/// `2^k` for an integral `k` in `[-1022, 1023]`: `k + 1023` sits in the low
/// bits of `k + 1023 + 2^52`, and a shift moves it into the exponent field
/// (no float-to-integer conversion, which AVX2 lacks for 64-bit lanes).
#[inline(always)]
fn pow2i(k: f64) -> f64 {
    f64::from_bits((k + (1023.0 + 4_503_599_627_370_496.0)).to_bits() << 52)
}

/// `y 2^n` for an integral `n` in `[-1100, 0]` (in two steps so that `2^n`
/// itself is never subnormal).
#[inline(always)]
fn scale_pow2(y: f64, n: f64) -> f64 {
    let n1 = (n * 0.5).floor();
    y * pow2i(n1) * pow2i(n - n1)
}

/// `exp(-s^2)` (`half`: `exp(-s^2/2)`) parts for `0 <= s` finite, clamped so
/// that the exponent stays in range.
#[inline(always)]
fn gauss_parts(s: f64, half: bool) -> (f64, f64, f64) {
    let sc = s.min(if half { 38.6 } else { 27.3 });
    let p = sc * sc;
    let e = sc.mul_add(sc, -p);
    if half {
        exp_neg_parts(0.5 * p, 0.5 * e)
    } else {
        exp_neg_parts(p, e)
    }
}

/// `erfc(s)` for `s >= 0` (any, including +inf) as a double-double, valid for
/// `s >= 15/32` (zero beyond 27.3, where it underflows).
#[inline(always)]
fn erfc_big_dd(s: f64) -> (f64, f64) {
    let sc = s.min(27.3);
    let (ch, cl) = scaled_dd(sc, &SCALED_E);
    let (n, rh, t) = gauss_parts(sc, false);
    let (h, l) = times_exp_parts(ch, cl, rh, t);
    let far = s > 27.3;
    let h2 = scale_pow2(h, n);
    let l2 = scale_pow2(l, n);
    (if far { 0.0 } else { h2 }, if far { 0.0 } else { l2 })
}

/// `erf(x)` for `|x| < 1/2` (argument clamped there) as a double-double:
/// `x (c0 + x^2 R(x^2))` with `c0 = 2/sqrt(pi)` in double-double.
#[inline(always)]
fn erf_taylor_dd(x: f64) -> (f64, f64) {
    let xs = x.clamp(-0.5, 0.5);
    let z = xs * xs;
    let mut acc = 0.0;
    let mut k = ERF_TAYLOR.len();
    while k > 1 {
        k -= 1;
        acc = acc * z + ERF_TAYLOR[k];
    }
    let (ph, pe) = fast_two_sum(FRAC_2_SQRT_PI_DD.0, z * acc);
    let pl = pe + FRAC_2_SQRT_PI_DD.1;
    let h = xs * ph;
    (h, xs.mul_add(ph, -h) + xs * pl)
}

/// `a - (h + l)` rounded once, for `|a| >= |h|`.
#[inline(always)]
fn sub_dd(a: f64, h: f64, l: f64) -> f64 {
    let (s, e) = fast_two_sum(a, -h);
    s + (e - l)
}

#[inline(always)]
pub(crate) fn erf_v(x: f64) -> f64 {
    let ax = x.abs();
    let (th, tl) = erf_taylor_dd(x);
    let (ch, cl) = erfc_big_dd(ax);
    let r = sub_dd(1.0, ch, cl);
    let big = if x < 0.0 { -r } else { r };
    let y = if ax < 0.5 { th + tl } else { big };
    // (th + tl would turn -0 into +0)
    if x.is_nan() || x == 0.0 {
        x
    } else {
        y
    }
}

#[inline(always)]
pub(crate) fn erfc_v(x: f64) -> f64 {
    let (ch, cl) = erfc_big_dd(x.abs());
    let (th, tl) = erf_taylor_dd(x);
    let y = if x >= 0.46875 {
        ch + cl
    } else if x > -0.5 {
        sub_dd(1.0, th, tl)
    } else {
        sub_dd(2.0, ch, cl)
    };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `Phi(-s)` for `s >= 0` (any, including +inf) as a double-double, and the
/// parts of `exp(-s^2/2)` (`n` is 0 beyond 38.6, where `Phi(-s)` underflows).
#[inline(always)]
fn ndtr_neg_dd(s: f64, ch: f64, cl: f64) -> (f64, f64, f64, f64, f64) {
    let (n, rh, t) = gauss_parts(s, true);
    let (h, l) = times_exp_parts(0.5 * ch, 0.5 * cl, rh, t);
    let far = s > 38.6;
    let h2 = scale_pow2(h, n);
    let l2 = scale_pow2(l, n);
    (if far { 0.0 } else { h2 }, if far { 0.0 } else { l2 }, n, rh, t)
}

#[inline(always)]
pub(crate) fn ndtr_v(x: f64) -> f64 {
    let s = x.abs().min(38.6);
    let (ch, cl) = scaled_dd(s, &SCALED_N);
    let (qh, ql, ..) = ndtr_neg_dd(x.abs(), ch, cl);
    let y = if x <= 0.0 { qh + ql } else { sub_dd(1.0, qh, ql) };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `(log Phi(x), phi(x) / Phi(x))` for `x >= -1e8` (the ratio; log Phi for
/// any x) from one evaluation of N and of the exponential.
#[inline(always)]
fn log_ndtr_and_ratio_v(x: f64) -> (f64, f64) {
    log_ndtr_and_ratio_g::<false>(x)
}

/// `|x|` below which [`log_ndtr_and_ratio_g`] may take its region-0 variant.
const LOG_NDTR_R0: f64 = ERFCX_N_SPLIT[0];

/// [`log_ndtr_and_ratio_v`]; with `R0` only for `|x| < LOG_NDTR_R0` (the
/// same bits there, fewer operations).
#[inline(always)]
fn log_ndtr_and_ratio_g<const R0: bool>(x: f64) -> (f64, f64) {
    let s = x.abs();
    let (ch, cl) = scaled_dd_g::<22, R0>(s.min(1e300), &SCALED_N);
    let (qh, ql, n, rh, t) = ndtr_neg_dd(s, ch, cl);
    // right (x > 0): Phi(x) = 1 - Q = d + dl
    let (d, de) = fast_two_sum(1.0, -qh);
    let dl = de - ql;
    // one division serves both sides: 1 / N(s) on the left, 1 / Phi(x) on the right
    let left = x <= 0.0;
    let den = if left { ch } else { d };
    let den_l = if left { cl } else { dl };
    let inv = 1.0 / den;
    // log Phi, left: -x^2/2 + log(N/2) with N/2 = m 2^k (k <= -1, m in
    // [sqrt2/2, sqrt2)), log(m) carrying log(1 + cl/ch) ~ cl/ch; right, above
    // Q = 1/32: log(d) + dl/d the same way with d = m 2^k (no -x^2/2). One
    // fdlibm kernel serves both sides (its inputs are selected first).
    let sl = if left { s.min(1e150) } else { 0.0 };
    let p = sl * sl;
    let e = sl.mul_add(sl, -p);
    // (the right side's k ln2 goes into the kernel, as fdlibm's log does; the
    // left side's is added to -x^2/2 exactly first)
    let (k, m) = split_sqrt2(if left { 0.5 * ch } else { d });
    let (kl, kr) = if left { (k, 0.0) } else { (0.0, k) };
    let lm = log_kernel(kr, m - 1.0, den_l * inv);
    let (a, ae) = two_sum(-0.5 * p, kl * LN2_HI);
    let y_log = a + (ae + (kl.mul_add(LN2_LO, lm) - 0.5 * e));
    let y_left = if s > 1e150 { -0.5 * s * s } else { y_log };
    // right, Q below 1/32: log1p(-Q) by the series -Q - Q^2 (1/2 + Q/3 + ...)
    let mut hq: f64 = 1.0 / 14.0;
    for c in
        [1.0 / 13.0, 1.0 / 12.0, 1.0 / 11.0, 1.0 / 10.0, 1.0 / 9.0, 1.0 / 8.0, 1.0 / 7.0, 1.0 / 6.0, 1.0 / 5.0, 1.0 / 4.0, 1.0 / 3.0, 0.5]
    {
        hq = hq.mul_add(qh, c);
    }
    let small = -qh - (qh * qh).mul_add(hq, ql);
    let y_right = if qh < 0.03125 { small } else { y_log };
    let y = if left { y_left } else { y_right };
    let y = if x == f64::NEG_INFINITY { f64::NEG_INFINITY } else { y };
    // phi / Phi: left sqrt(2/pi) / N(s); right phi(x) / (1 - Q), phi = 2^n (c + c (rh + t))
    let (nh, nl) = times_exp_parts(FRAC_1_SQRT_2PI_DD.0, FRAC_1_SQRT_2PI_DD.1, rh, t);
    let num = if left { SQRT_2_OVER_PI_DD.0 } else { nh };
    let num_l = if left { SQRT_2_OVER_PI_DD.1 } else { nl };
    let r0 = num * inv;
    let res = (-r0).mul_add(den, num) + (-r0).mul_add(den_l, num_l);
    let r = res.mul_add(inv, r0);
    let r = if left { r } else { scale_pow2(r, n) };
    let r = if x > 38.6 { 0.0 } else { r };
    if x.is_nan() {
        (x, x)
    } else {
        (y, r)
    }
}

#[inline(always)]
pub(crate) fn log_ndtr_v(x: f64) -> f64 {
    log_ndtr_and_ratio_v(x).0
}

/// `phi(x) / Phi(x)` for `x >= -1e8` (the caller takes the scalar below).
#[inline(always)]
pub(crate) fn ndtr_ratio_v(x: f64) -> f64 {
    log_ndtr_and_ratio_v(x).1
}

/// Which derivative [`gauss_backward_f64`] multiplies the incoming gradient by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gauss {
    /// `2/sqrt(pi) exp(-x^2)`
    Erf,
    /// `-2/sqrt(pi) exp(-x^2)`
    Erfc,
    /// `exp(-x^2/2) / sqrt(2 pi)`
    Ndtr,
}

/// `g c exp(-k x^2)` (`k` 1, or 1/2 when `half`) rounded about once, with `c = (c, cl)`
/// in double-double and `g c` exact.
#[inline(always)]
fn gauss_times_v(x: f64, g: f64, c: f64, cl: f64, half: bool) -> f64 {
    let s = x.abs();
    let (n, rh, t) = gauss_parts(s, half);
    let h = g * c;
    let finite = h.is_finite();
    let l = g.mul_add(c, -h) + g * cl;
    let (yh, yl) = times_exp_parts(h, if finite { l } else { 0.0 }, rh, t);
    let y = scale_pow2(yh + yl, n);
    let y = if finite { y } else { h * scale_pow2(1.0 + (rh + t), n) };
    let y = if s > (if half { 38.6 } else { 27.3 }) { g * 0.0 } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `out[i] = f(x[i])` with the short tail (fewer than 8 elements) run through
/// the vector loop too, padded with ones: rows of a few hundred elements
/// (the front-ends call these kernels per row) otherwise spend a quarter of
/// their time in the scalar remainder. Same bits (the same function per
/// lane). A macro, not a generic function, so that `f` is inlined under the
/// caller's target features.
macro_rules! map_padded {
    ($x:expr, $out:expr, $f:ident) => {{
        let (x, out): (&[f64], &mut [f64]) = ($x, $out);
        let n = x.len().min(out.len());
        let main = n - n % 8;
        for (o, &v) in out[..main].iter_mut().zip(&x[..main]) {
            *o = $f(v);
        }
        if main < n {
            let mut xb = [1.0f64; 8];
            let mut ob = [0.0f64; 8];
            xb[..n - main].copy_from_slice(&x[main..n]);
            for (o, &v) in ob.iter_mut().zip(&xb) {
                *o = $f(v);
            }
            out[main..n].copy_from_slice(&ob[..n - main]);
        }
    }};
}

/// [`map_padded`] for the `log Phi` kernels: `y[i] = log Phi(x[i])` and, with
/// `r`, `r[i] = phi(x[i]) / Phi(x[i])` (for `x[i] >= -1e8`). Chunks of 8 whose
/// arguments all lie within `|x| < LOG_NDTR_R0` take the region-0 variant
/// of [`log_ndtr_and_ratio_g`] (the same bits there, fewer operations), the
/// others the general one. Each chunk goes through arrays of 8, whose
/// fixed-length loops vectorise.
macro_rules! map_log_ndtr_chunks {
    ($x:expr, $y:expr) => {
        map_log_ndtr_chunks!(@go $x, $y, None)
    };
    ($x:expr, $y:expr, $r:expr) => {
        map_log_ndtr_chunks!(@go $x, $y, Some($r))
    };
    (@go $x:expr, $y:expr, $r:expr) => {{
        let x: &[f64] = $x;
        let y: &mut [f64] = $y;
        let mut r: Option<&mut [f64]> = $r;
        let n = x.len();
        let mut c0 = 0;
        while c0 < n {
            let len = (n - c0).min(8);
            let mut xb = [1.0f64; 8];
            xb[..len].copy_from_slice(&x[c0..c0 + len]);
            // (NaN is not near: it takes the general variant)
            let near = xb.iter().fold(1u8, |a, &v| a & u8::from(v.abs() < LOG_NDTR_R0));
            let mut yb = [0.0f64; 8];
            let mut rb = [0.0f64; 8];
            if near == 1 {
                for ((yo, ro), &v) in yb.iter_mut().zip(rb.iter_mut()).zip(&xb) {
                    (*yo, *ro) = log_ndtr_and_ratio_g::<true>(v);
                }
            } else {
                for ((yo, ro), &v) in yb.iter_mut().zip(rb.iter_mut()).zip(&xb) {
                    (*yo, *ro) = log_ndtr_and_ratio_g::<false>(v);
                }
            }
            y[c0..c0 + len].copy_from_slice(&yb[..len]);
            if let Some(r) = r.as_deref_mut() {
                r[c0..c0 + len].copy_from_slice(&rb[..len]);
            }
            c0 += len;
        }
    }};
}

/// Re-evaluates with the scalar function the lanes the vector formula does not cover.
#[inline(always)]
fn fix_lanes(x: &[f64], out: &mut [f64], bad: impl Fn(f64) -> bool, f: fn(f64) -> f64) {
    // a branch-free scan first (it vectorises); such lanes are rare
    if x.iter().fold(0u8, |a, &v| a | u8::from(bad(v))) == 0 {
        return;
    }
    for (o, &v) in out.iter_mut().zip(x) {
        if bad(v) {
            *o = f(v);
        }
    }
}

macro_rules! special_slices {
    ($($(#[$m:meta])* $f64name:ident, $f32name:ident, $v:ident;)*) => {$(
        multiversion! {
            $(#[$m])*
            pub fn $f64name(x: &[f64], out: &mut [f64]) {
                map_padded!(x, out, $v);
            }
        }
        multiversion! {
            $(#[$m])*
            /// (float32: evaluated in float64, rounded once.)
            pub fn $f32name(x: &[f32], out: &mut [f32]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = $v(v as f64) as f32;
                }
            }
        }
    )*};
}

special_slices! {
    /// out[i] = erf(x[i])
    erf_slice_f64, erf_slice_f32, erf_v;
    /// out[i] = erfc(x[i]), relatively accurate in the right tail
    erfc_slice_f64, erfc_slice_f32, erfc_v;
    /// out[i] = Phi(x[i]), relatively accurate in the left tail
    ndtr_slice_f64, ndtr_slice_f32, ndtr_v;
}

multiversion! {
    /// out[i] = log Phi(x[i]), full relative precision everywhere
    pub fn log_ndtr_slice_f64(x: &[f64], out: &mut [f64]) {
        let n = x.len().min(out.len());
        map_log_ndtr_chunks!(&x[..n], &mut out[..n]);
    }
}
multiversion! {
    /// out[i] = log Phi(x[i]), full relative precision everywhere
    /// (float32: evaluated in float64, rounded once.)
    pub fn log_ndtr_slice_f32(x: &[f32], out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = log_ndtr_v(v as f64) as f32;
        }
    }
}

multiversion! {
    /// out[i] = phi(x[i]) / Phi(x[i]) for x[i] >= -1e8 (use [`ndtr_ratio_slice_f64`], which fixes up the lanes below)
    pub fn ndtr_ratio_raw_f64(x: &[f64], out: &mut [f64]) {
        map_padded!(x, out, ndtr_ratio_v);
    }
}

/// out[i] = phi(x[i]) / Phi(x[i]), the inverse Mills ratio (the derivative of log Phi).
pub fn ndtr_ratio_slice_f64(x: &[f64], out: &mut [f64]) {
    ndtr_ratio_raw_f64(x, out);
    fix_lanes(x, out, |v| v < -1e8, crate::special::ndtr_ratio);
}

/// out[i] = phi(x[i]) / Phi(x[i]) for float32 (in float64, rounded once).
pub fn ndtr_ratio_slice_f32(x: &[f32], out: &mut [f32]) {
    let mut buf = [0f64; 256];
    let mut res = [0f64; 256];
    for (xc, oc) in x.chunks(256).zip(out.chunks_mut(256)) {
        let n = xc.len();
        for (b, &v) in buf.iter_mut().zip(xc) {
            *b = v as f64;
        }
        ndtr_ratio_slice_f64(&buf[..n], &mut res[..n]);
        for (o, &r) in oc.iter_mut().zip(&res[..n]) {
            *o = r as f32;
        }
    }
}

multiversion! {
    /// y[i] = log Phi(x[i]) and r[i] = phi(x[i]) / Phi(x[i]) for x[i] >= -1e8 (use [`log_ndtr_and_ratio_f64`], which fixes up the lanes below)
    pub fn log_ndtr_and_ratio_raw_f64(x: &[f64], y: &mut [f64], r: &mut [f64]) {
        let n = x.len().min(y.len()).min(r.len());
        map_log_ndtr_chunks!(&x[..n], &mut y[..n], &mut r[..n]);
    }
}

/// `y[i] = log Phi(x[i])` and `r[i] = phi(x[i]) / Phi(x[i])` (the derivative) in one pass.
pub fn log_ndtr_and_ratio_f64(x: &[f64], y: &mut [f64], r: &mut [f64]) {
    log_ndtr_and_ratio_raw_f64(x, y, r);
    fix_lanes(x, r, |v| v < -1e8, crate::special::ndtr_ratio);
}

multiversion! {
    /// The backward of log Phi for x[i] >= -1e8 (use [`log_ndtr_backward_f64`], which fixes up the lanes below)
    pub fn log_ndtr_backward_raw_f64(x: &[f64], g: &[f64], out: &mut [f64]) {
        for ((o, &v), &gv) in out.iter_mut().zip(x).zip(g) {
            *o = gv * ndtr_ratio_v(v);
        }
    }
}

/// The backward of log Phi in one pass: `out[i] = g[i] phi(x[i]) / Phi(x[i])`.
pub fn log_ndtr_backward_f64(x: &[f64], g: &[f64], out: &mut [f64]) {
    log_ndtr_backward_raw_f64(x, g, out);
    for ((o, &v), &gv) in out.iter_mut().zip(x).zip(g) {
        if v < -1e8 {
            *o = gv * crate::special::ndtr_ratio(v);
        }
    }
}

multiversion! {
    /// The backward of erf, erfc and ndtr in one pass: `out[i] = g[i] f'(x[i])`
    /// (`f'(x) = c exp(-k x^2)`, see [`Gauss`]), rounded about once.
    pub fn gauss_backward_f64(x: &[f64], g: &[f64], kind: Gauss, out: &mut [f64]) {
        // one loop per kind, so that each has its constants (and vectorises)
        let (c, cl) = match kind {
            Gauss::Erf => FRAC_2_SQRT_PI_DD,
            Gauss::Erfc => (-FRAC_2_SQRT_PI_DD.0, -FRAC_2_SQRT_PI_DD.1),
            Gauss::Ndtr => FRAC_1_SQRT_2PI_DD,
        };
        if kind == Gauss::Ndtr {
            for ((o, &v), &gv) in out.iter_mut().zip(x).zip(g) {
                *o = gauss_times_v(v, gv, c, cl, true);
            }
        } else {
            for ((o, &v), &gv) in out.iter_mut().zip(x).zip(g) {
                *o = gauss_times_v(v, gv, c, cl, false);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// float64 log, log1p, expm1, vectorised
// ---------------------------------------------------------------------------
//
// fdlibm's algorithms (log and log1p: `k ln2 + log(1 + f)` with
// `s = f / (2 + f)` and its minimax polynomial, plus log1p's rounding
// correction `c`; expm1: `2^n expm1(r) + (2^n - 1)` with `|r| <= ln2/2` and
// `expm1(r)` by its Taylor series) written without branches. Lanes outside
// the vector domain (non-positive, subnormal, infinite or NaN arguments of
// log; <= -1, tiny, infinite or NaN of log1p; outside [-40, 700] or tiny of
// expm1) are re-evaluated by the standard library's scalar functions.

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;
const LG: [f64; 7] = [
    6.666_666_666_666_735_130e-01,
    3.999_999_999_940_941_908e-01,
    2.857_142_874_366_239_149e-01,
    2.222_219_843_214_978_396e-01,
    1.818_357_216_161_805_012e-01,
    1.531_383_769_920_937_332e-01,
    1.479_819_860_511_658_591e-01,
];

/// `k ln2 + log(1 + f) + c` (fdlibm's final step, `|f| < sqrt2 - 1`).
#[inline(always)]
fn log_kernel(k: f64, f: f64, c: f64) -> f64 {
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG[1] + w * (LG[3] + w * LG[5]));
    let t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])));
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + (k * LN2_LO + c))) - f)
}

/// `(k, m)` with `u = m 2^k`, `m` in `[sqrt2/2, sqrt2)`, for a positive normal finite `u`.
#[inline(always)]
fn split_sqrt2(u: f64) -> (f64, f64) {
    let bits = u.to_bits();
    // the biased exponent as a float without an integer-to-float conversion
    // (AVX2 has none for 64-bit lanes): 2^52 + e is exact
    let e0 = f64::from_bits(0x4330_0000_0000_0000 | ((bits >> 52) & 0x7ff)) - (4_503_599_627_370_496.0 + 1023.0);
    let m0 = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m0 >= std::f64::consts::SQRT_2;
    let m = if big { m0 * 0.5 } else { m0 };
    let e = if big { e0 + 1.0 } else { e0 };
    (e, m)
}

#[inline(always)]
fn log_v(x: f64) -> f64 {
    let (k, m) = split_sqrt2(x);
    log_kernel(k, m - 1.0, 0.0)
}

#[inline(always)]
fn log1p_v(x: f64) -> f64 {
    let u = 1.0 + x;
    let (k, m) = split_sqrt2(u);
    let c = if k > 0.0 { 1.0 - (u - x) } else { x - (u - 1.0) } / u;
    let small = k == 0.0;
    log_kernel(k, if small { x } else { m - 1.0 }, if small { 0.0 } else { c })
}

#[inline(always)]
fn expm1_v(x: f64) -> f64 {
    let xc = x.clamp(-40.0, 700.0);
    let n = (xc * std::f64::consts::LOG2_E).round_ties_even();
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    // expm1(r) = r + r^2 (1/2! + r/3! + ... + r^12/14!)
    let mut q: f64 = 1.0 / 87_178_291_200.0;
    for c in [
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
    ] {
        q = q.mul_add(r, c);
    }
    let p = (r * r).mul_add(q, r);
    // n is in [-58, 1010] after the clamp: 2^n is a normal float64
    let two_n = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    two_n.mul_add(p, two_n - 1.0)
}

macro_rules! log_like_slices {
    ($($(#[$m:meta])* $raw:ident, $name:ident, $v:ident, $ok:expr, $scalar:expr;)*) => {$(
        multiversion! {
            $(#[$m])*
            pub fn $raw(x: &[f64], out: &mut [f64]) {
                map_padded!(x, out, $v);
            }
        }
        $(#[$m])*
        pub fn $name(x: &[f64], out: &mut [f64]) {
            $raw(x, out);
            let ok: fn(f64) -> bool = $ok;
            fix_lanes(x, out, |v| !ok(v), $scalar);
        }
    )*};
}

log_like_slices! {
    /// out[i] = ln(x[i]) (fdlibm's algorithm, vectorised)
    log_raw_f64, log_slice_f64, log_v, |v| (f64::MIN_POSITIVE..f64::INFINITY).contains(&v), f64::ln;
    /// out[i] = ln(1 + x[i]) (fdlibm's algorithm, vectorised)
    log1p_raw_f64, log1p_slice_f64, log1p_v, |v| v > -1.0 && v < f64::INFINITY && v.abs() >= 1e-300, f64::ln_1p;
    /// out[i] = exp(x[i]) - 1 (vectorised)
    expm1_raw_f64, expm1_slice_f64, expm1_v, |v| (-40.0..=700.0).contains(&v) && v.abs() >= 1e-300, f64::exp_m1;
}

#[cfg(test)]
mod log_tests {
    use super::*;

    fn ulps(a: f64, b: f64) -> f64 {
        if a == b {
            return 0.0;
        }
        let ulp = f64::from_bits(b.abs().to_bits() + 1) - b.abs();
        (a - b).abs() / ulp
    }

    /// Against the standard library (glibc, under 1 ulp) on dense grids and
    /// special values: at most 2 ulp, special values exactly.
    #[test]
    fn log_log1p_expm1_match_the_scalar_functions() {
        let mut x: Vec<f64> = (0..200_001).map(|i| -50.0 + i as f64 * 5e-4).collect();
        x.extend((0..4000).map(|i| 10f64.powf(-320.0 + i as f64 * 0.16)));
        x.extend((0..4000).map(|i| -(10f64.powf(-320.0 + i as f64 * 0.08))));
        x.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.0,
            0.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            700.0,
            709.0,
            710.0,
            -40.0,
            -745.0,
        ]);
        x.extend([std::f64::consts::SQRT_2, std::f64::consts::FRAC_1_SQRT_2, std::f64::consts::SQRT_2 - 1.0, -1.0 + 1e-16, -0.9999999]);
        let mut out = vec![0.0; x.len()];
        type Case = (&'static str, fn(&[f64], &mut [f64]), fn(f64) -> f64);
        let cases: [Case; 3] =
            [("log", log_slice_f64, f64::ln), ("log1p", log1p_slice_f64, f64::ln_1p), ("expm1", expm1_slice_f64, f64::exp_m1)];
        for (name, vf, sf) in cases {
            vf(&x, &mut out);
            for (&v, &o) in x.iter().zip(&out) {
                let want = sf(v);
                if want.is_nan() || !want.is_finite() || want == 0.0 {
                    assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "{name}({v:e}) = {o:e}, want {want:e}");
                } else {
                    assert!(ulps(o, want) <= 2.0, "{name}({v:e}) = {o:e}, want {want:e} ({} ulp)", ulps(o, want));
                }
            }
        }
    }
}

#[cfg(test)]
mod special_tests {
    use super::*;
    use crate::special;

    fn grid() -> Vec<f64> {
        let mut v: Vec<f64> = (0..40001).map(|i| -45.0 + i as f64 * (90.0 / 40000.0)).collect();
        v.extend([0.0, -0.0, 1e-300, -1e-300, 0.5, -0.5, 0.4999999, 27.5, 27.6, -40.0, -40.1, 1e10, -1e10, 1e200, -1e200, 1e308, -1e308]);
        v.extend([f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -1e7, -1e8, -2e8, -1e9]);
        v
    }

    /// Runs `f` at every dispatch level this CPU has (2 AVX-512, 1 AVX2+FMA, 0 baseline).
    fn at_every_level(mut f: impl FnMut(u8)) {
        let hw = if has_avx512() {
            2
        } else if has_avx2() {
            1
        } else {
            0
        };
        for level in (0..=hw).rev() {
            FORCE_LEVEL.with(|c| c.set(Some(level)));
            f(level);
        }
        FORCE_LEVEL.with(|c| c.set(None));
    }

    /// `|got - (hi + lo)|` in ulps of `hi` (the correctly rounded exact value;
    /// subnormal and zero `hi` in units of the smallest subnormal).
    fn ulp_err(got: f64, hi: f64, lo: f64) -> f64 {
        if got == hi && !hi.is_finite() {
            return 0.0;
        }
        if !got.is_finite() || !hi.is_finite() {
            return f64::INFINITY;
        }
        let ulp = f64::from_bits(hi.abs().to_bits() + 1) - hi.abs();
        ((got - hi) - lo).abs() / ulp
    }

    type Slice = fn(&[f64], &mut [f64]);

    fn ratio_via_backward(x: &[f64], out: &mut [f64]) {
        log_ndtr_backward_f64(x, &vec![1.0; x.len()], out);
    }
    fn ratio_via_pair(x: &[f64], out: &mut [f64]) {
        log_ndtr_and_ratio_f64(x, &mut vec![0.0; x.len()], out);
    }
    fn log_ndtr_via_pair(x: &[f64], out: &mut [f64]) {
        log_ndtr_and_ratio_f64(x, out, &mut vec![0.0; x.len()]);
    }
    fn erf_deriv(x: &[f64], out: &mut [f64]) {
        gauss_backward_f64(x, &vec![1.0; x.len()], Gauss::Erf, out);
    }
    fn erfc_deriv_negated(x: &[f64], out: &mut [f64]) {
        gauss_backward_f64(x, &vec![-1.0; x.len()], Gauss::Erfc, out);
    }
    fn ndtr_deriv(x: &[f64], out: &mut [f64]) {
        gauss_backward_f64(x, &vec![1.0; x.len()], Gauss::Ndtr, out);
    }

    /// Every kernel of the family (values, and derivatives as the backward
    /// computes them with an incoming gradient of 1) within 2 ulp of the
    /// exact value (mpmath, `erf_ref.rs`) over the whole range, tails and
    /// subnormal results included, at every dispatch level, and the scalar
    /// functions of `special` bit for bit equal to the kernels.
    #[test]
    fn kernels_are_within_two_ulp_of_mpmath_at_every_level() {
        use crate::erf_ref;
        type Case = (&'static str, Slice, Option<fn(f64) -> f64>, &'static [(f64, f64, f64)]);
        let cases: [Case; 11] = [
            ("erf", erf_slice_f64, Some(special::erf), &erf_ref::ERF),
            ("erfc", erfc_slice_f64, Some(special::erfc), &erf_ref::ERFC),
            ("ndtr", ndtr_slice_f64, Some(special::ndtr), &erf_ref::NDTR),
            ("log_ndtr", log_ndtr_slice_f64, Some(special::log_ndtr), &erf_ref::LOG_NDTR),
            ("log_ndtr (with ratio)", log_ndtr_via_pair, None, &erf_ref::LOG_NDTR),
            ("ndtr_ratio", ndtr_ratio_slice_f64, Some(special::ndtr_ratio), &erf_ref::NDTR_RATIO),
            ("log_ndtr backward", ratio_via_backward, None, &erf_ref::NDTR_RATIO),
            ("log_ndtr forward ratio", ratio_via_pair, None, &erf_ref::NDTR_RATIO),
            ("erf backward", erf_deriv, None, &erf_ref::ERF_DERIV),
            ("erfc backward (negated)", erfc_deriv_negated, None, &erf_ref::ERF_DERIV),
            ("ndtr backward", ndtr_deriv, None, &erf_ref::NDTR_DERIV),
        ];
        for (name, kernel, scalar, table) in cases {
            let x: Vec<f64> = table.iter().map(|r| r.0).collect();
            let mut first: Option<Vec<f64>> = None;
            at_every_level(|level| {
                let mut out = vec![0.0; x.len()];
                kernel(&x, &mut out);
                let mut worst = (0.0, 0.0);
                for (&(v, hi, lo), &o) in table.iter().zip(&out) {
                    let e = ulp_err(o, hi, lo);
                    if e > worst.0 {
                        worst = (e, v);
                    }
                    if let Some(f) = scalar {
                        assert_eq!(f(v).to_bits(), o.to_bits(), "{name}({v:e}): scalar and level {level} differ");
                    }
                }
                eprintln!("{name}, level {level}: at most {:.3} ulp (x = {:e}), {} points", worst.0, worst.1, x.len());
                assert!(worst.0 <= 2.0, "{name} at level {level}: {} ulp at x = {:e}", worst.0, worst.1);
                match &first {
                    None => first = Some(out),
                    Some(f) => assert!(f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: level {level} differs"),
                }
            });
        }
    }

    /// With a gradient other than 1 the backward is `g f'(x)` rounded about once.
    #[test]
    fn backward_with_a_gradient_is_accurate() {
        use crate::erf_ref;
        let gs = [0.7, -1.3, 3.0e-5, 2.5e7];
        for &g in &gs {
            for (kind, table, sign) in [
                (Gauss::Erf, &erf_ref::ERF_DERIV[..], 1.0),
                (Gauss::Erfc, &erf_ref::ERF_DERIV[..], -1.0),
                (Gauss::Ndtr, &erf_ref::NDTR_DERIV[..], 1.0),
            ] {
                let x: Vec<f64> = table.iter().map(|r| r.0).collect();
                let mut out = vec![0.0; x.len()];
                gauss_backward_f64(&x, &vec![g; x.len()], kind, &mut out);
                for (&(v, hi, _), &o) in table.iter().zip(&out) {
                    // the reference g f'(x) in double-double from the table's (hi, lo) to ~2^-104
                    let want = sign * g * hi;
                    if want.abs() < 1e-290 || want.abs() > 1e300 {
                        continue;
                    }
                    let rel = (o - want).abs() / want.abs();
                    assert!(rel <= 2.5 * f64::EPSILON, "{kind:?} backward g = {g} at {v:e}: {o:e} vs {want:e}");
                }
            }
        }
    }

    /// Signed zeros, infinities, NaN, subnormal arguments, and the arguments
    /// beyond the ranges the formulas cover.
    #[test]
    fn special_values() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let tiny = f64::from_bits(1);
        type Case = (&'static str, Slice, [(f64, f64); 9]);
        let sq = std::f64::consts::FRAC_2_SQRT_PI;
        let cases: [Case; 5] = [
            (
                "erf",
                erf_slice_f64,
                [
                    (0.0, 0.0),
                    (-0.0, -0.0),
                    (inf, 1.0),
                    (-inf, -1.0),
                    (1e300, 1.0),
                    (-1e300, -1.0),
                    (tiny, tiny),
                    (-1e-310, -1e-310 * sq),
                    (6.0, 1.0),
                ],
            ),
            (
                "erfc",
                erfc_slice_f64,
                [(0.0, 1.0), (-0.0, 1.0), (inf, 0.0), (-inf, 2.0), (1e300, 0.0), (-1e300, 2.0), (tiny, 1.0), (27.3, 0.0), (-6.0, 2.0)],
            ),
            (
                "ndtr",
                ndtr_slice_f64,
                [(0.0, 0.5), (-0.0, 0.5), (inf, 1.0), (-inf, 0.0), (1e300, 1.0), (-1e300, 0.0), (tiny, 0.5), (-38.7, 0.0), (9.0, 1.0)],
            ),
            (
                "log_ndtr",
                log_ndtr_slice_f64,
                [
                    (0.0, -std::f64::consts::LN_2),
                    (-0.0, -std::f64::consts::LN_2),
                    (inf, 0.0),
                    (-inf, -inf),
                    (1e300, 0.0),
                    (-1e300, -inf),
                    (tiny, -std::f64::consts::LN_2),
                    (40.0, 0.0),
                    (-1e154, -5e307),
                ],
            ),
            (
                "ndtr_ratio",
                ndtr_ratio_slice_f64,
                [
                    (0.0, 0.7978845608028654),
                    (-0.0, 0.7978845608028654),
                    (inf, 0.0),
                    (-inf, inf),
                    (1e300, 0.0),
                    (-1e300, 1e300),
                    (tiny, 0.7978845608028654),
                    (38.7, 0.0),
                    (-1e9, 1e9),
                ],
            ),
        ];
        for (name, kernel, pairs) in cases {
            at_every_level(|level| {
                let x: Vec<f64> = pairs.iter().map(|p| p.0).chain([nan]).collect();
                let mut out = vec![0.0; x.len()];
                kernel(&x, &mut out);
                for (&(v, want), &o) in pairs.iter().zip(&out) {
                    let ok =
                        o == want && o.is_sign_negative() == want.is_sign_negative() || (want != 0.0 && ((o - want) / want).abs() < 4e-16);
                    assert!(ok || (want == 0.0 && o == 0.0 && name != "erf"), "{name}({v:e}) = {o:e}, want {want:e} (level {level})");
                }
                assert!(out[pairs.len()].is_nan(), "{name}(NaN) at level {level}");
            });
        }
        // NaN arguments give NaN derivatives
        let mut o = [0.0];
        gauss_backward_f64(&[nan], &[1.0], Gauss::Ndtr, &mut o);
        assert!(o[0].is_nan());
        log_ndtr_backward_f64(&[nan], &[1.0], &mut o);
        assert!(o[0].is_nan());
    }

    /// The three builds of every kernel give the same bits on a dense grid.
    #[test]
    fn dispatch_levels_are_bit_identical() {
        let x = grid();
        let kernels: [(&str, Slice); 8] = [
            ("erf", erf_slice_f64),
            ("erfc", erfc_slice_f64),
            ("ndtr", ndtr_slice_f64),
            ("log_ndtr", log_ndtr_slice_f64),
            ("ndtr_ratio", ndtr_ratio_slice_f64),
            ("erf'", erf_deriv),
            ("ndtr'", ndtr_deriv),
            ("log_ndtr'", ratio_via_backward),
        ];
        for (name, k) in kernels {
            let mut first: Option<Vec<u64>> = None;
            at_every_level(|level| {
                let mut out = vec![0.0; x.len()];
                k(&x, &mut out);
                let bits: Vec<u64> = out.iter().map(|v| if v.is_nan() { 0 } else { v.to_bits() }).collect();
                match &first {
                    None => first = Some(bits),
                    Some(f) => assert!(*f == bits, "{name}: level {level} differs"),
                }
            });
        }
    }

    #[test]
    fn log_ndtr_and_ratio_in_one_pass_equal_the_separate_kernels() {
        let x = grid();
        let (mut y, mut r) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut y1, mut r1) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        log_ndtr_and_ratio_f64(&x, &mut y, &mut r);
        log_ndtr_slice_f64(&x, &mut y1);
        ndtr_ratio_slice_f64(&x, &mut r1);
        for i in 0..x.len() {
            assert!(y[i].to_bits() == y1[i].to_bits() || (y[i].is_nan() && y1[i].is_nan()), "log_ndtr({})", x[i]);
            assert!(r[i].to_bits() == r1[i].to_bits() || (r[i].is_nan() && r1[i].is_nan()), "ratio({})", x[i]);
        }
    }

    /// Chunks of 8 arguments all within |x| < LOG_NDTR_R0 take the region-0
    /// variant of log Phi and its ratio; it must give the bits of the general
    /// variant (the same values in chunks that also hold a far argument, and
    /// the per-element scalar functions), at every dispatch level.
    #[test]
    fn log_ndtr_region0_chunks_have_the_general_bits() {
        // 4001 values across (-R0, R0), the edges included, and a 5-element tail
        let n = 4005;
        let near: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 / (n - 1) as f64;
                let v = (2.0 * t - 1.0) * LOG_NDTR_R0;
                if v.abs() < LOG_NDTR_R0 {
                    v
                } else {
                    v.signum() * (LOG_NDTR_R0 - 1e-12)
                }
            })
            .collect();
        // the same values, one lane of every chunk replaced by a far argument
        let mixed: Vec<f64> = near.iter().enumerate().map(|(i, &v)| if i % 8 == 3 { 5.0 } else { v }).collect();
        at_every_level(|level| {
            let (mut y0, mut r0, mut l0) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let (mut y1, mut r1, mut l1) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            log_ndtr_and_ratio_f64(&near, &mut y0, &mut r0);
            log_ndtr_and_ratio_f64(&mixed, &mut y1, &mut r1);
            log_ndtr_slice_f64(&near, &mut l0);
            log_ndtr_slice_f64(&mixed, &mut l1);
            for i in (0..n).filter(|i| i % 8 != 3) {
                let x = near[i];
                assert_eq!(y0[i].to_bits(), y1[i].to_bits(), "log_ndtr({x}) at level {level}");
                assert_eq!(r0[i].to_bits(), r1[i].to_bits(), "ratio({x}) at level {level}");
                assert_eq!(l0[i].to_bits(), l1[i].to_bits(), "log_ndtr slice({x}) at level {level}");
                assert_eq!(y0[i].to_bits(), log_ndtr_v(x).to_bits(), "log_ndtr({x}) scalar at level {level}");
                assert_eq!(r0[i].to_bits(), ndtr_ratio_v(x).to_bits(), "ratio({x}) scalar at level {level}");
            }
        });
    }

    #[test]
    fn float32_slices_round_the_float64_result() {
        let x: Vec<f32> = (0..2001).map(|i| -30.0 + i as f32 * 0.03).collect();
        let mut o = vec![0f32; x.len()];
        log_ndtr_slice_f32(&x, &mut o);
        for (&v, &r) in x.iter().zip(&o) {
            let w = special::log_ndtr(v as f64) as f32;
            assert_eq!(r.to_bits(), w.to_bits(), "{v}: {r} vs {w}");
        }
    }
}

multiversion! {
    /// out[i] = ln(x[i]) for x[i] >= 1 (finite), e.g. the sum of a log-sum-exp
    /// whose terms are shifted by their maximum; NaN stays NaN.
    pub fn ln_ge1_slice_f64(x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = ln_ge1(v);
        }
    }
}
