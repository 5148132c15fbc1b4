//! Vectorisable math kernels. The loops are plain Rust written so that LLVM
//! vectorises them; each public kernel is compiled three times (AVX-512,
//! AVX2+FMA, baseline) and picks the best the CPU has at run time.
//!
//! `exp` uses Cody-Waite range reduction (x = n ln2 + r, |r| <= ln2/2) and a
//! Taylor polynomial of degree 7 (f32) / 13 (f64), below one ulp of error
//! before the final scaling by 2^n, which is done on the exponent bits.

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
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
                    // SAFETY: the features were detected at run time.
                    return unsafe { v512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
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
// derivatives, vectorised
// ---------------------------------------------------------------------------
//
// The same formulas as the scalar functions of `crate::special` (erfcx by its
// Chebyshev expansion in t = (4 - x)/(4 + x), exp(-x^2) with x^2 split exactly
// by an FMA, erf by its Maclaurin series below 1/2), written without branches
// so that LLVM vectorises them: every lane computes every candidate and a
// select keeps the right one, with the arguments of the candidates not taken
// clamped into their domain so that no lane traps or produces a NaN that could
// be selected. Exponentials use the vectorised `exp_f64` above, logarithms
// `ln_pos` below. Lanes outside the range the vector formulas cover (NaN, and
// for `ndtr_ratio` arguments below -1e8) take the scalar functions.

use crate::special::{ERFCX_CHEB, ERF_TAYLOR};

const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// `ln(s)` for a positive normal finite `s` (the decomposition of [`ln_ge1`]
/// without its restriction to `s >= 1`).
#[inline(always)]
fn ln_pos(s: f64) -> f64 {
    let bits = s.to_bits();
    let e0 = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m0 = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m0 > std::f64::consts::SQRT_2;
    let m = if big { m0 * 0.5 } else { m0 };
    let e = if big { e0 + 1 } else { e0 };
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut p: f64 = 1.0 / 21.0;
    for c in [1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        p = p.mul_add(z2, c);
    }
    let ef = e as f64;
    ef.mul_add(6.931_471_803_691_238_164_90e-01, (2.0 * z).mul_add(p, ef * 1.908_214_929_270_587_700_02e-10))
}

/// `log1p(-q)` for `q` in `[0, 1/2]`: below 1/8 as `-2 atanh(q / (2 - q))` by
/// its series (`|z| < 0.067`, nine terms: below 1e-20 relative), above as
/// `ln(1 - q)` corrected for the rounding of `1 - q`.
#[inline(always)]
fn log1p_neg_small(q: f64) -> f64 {
    let u = 1.0 - q;
    let big = ln_pos(u) + ((1.0 - u) - q) / u;
    let z = q / (2.0 - q);
    let z2 = z * z;
    let mut p: f64 = 1.0 / 17.0;
    for c in [1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0] {
        p = p.mul_add(z2, c);
    }
    let small = -2.0 * z.mul_add(z2 * p, z);
    if q < 0.125 {
        small
    } else {
        big
    }
}

/// `erfcx(x)` for finite `x >= 0` (callers clamp).
#[inline(always)]
fn erfcx_nonneg_v(x: f64) -> f64 {
    let d = 4.0 + x;
    let u = 4.0 / d;
    let t = (4.0 - x) / d;
    let t2 = 2.0 * t;
    let mut b1 = 0.0;
    let mut b2 = 0.0;
    let mut k = ERFCX_CHEB.len() - 1;
    while k >= 1 {
        let b0 = ERFCX_CHEB[k] + t2 * b1 - b2;
        b2 = b1;
        b1 = b0;
        k -= 1;
    }
    u * (ERFCX_CHEB[0] + t * b1 - b2)
}

/// `exp(-x^2)` with `x^2 = p + e` split exactly (finite `|x| < 1e150`).
#[inline(always)]
fn exp_neg_sq_v(x: f64) -> f64 {
    let p = x * x;
    let e = x.mul_add(x, -p);
    exp_f64(-p) * (1.0 - e)
}

/// `exp(-x^2/2)`, split likewise.
#[inline(always)]
fn exp_neg_half_sq_v(x: f64) -> f64 {
    let p = x * x;
    let e = x.mul_add(x, -p);
    exp_f64(-0.5 * p) * (1.0 - 0.5 * e)
}

/// `x poly(x^2)`: erf on `|x| < 1/2` (its argument clamped there).
#[inline(always)]
fn erf_taylor_v(x: f64) -> f64 {
    let xs = x.clamp(-0.5, 0.5);
    let z = xs * xs;
    let mut acc = 0.0;
    let mut k = ERF_TAYLOR.len();
    while k > 0 {
        k -= 1;
        acc = acc * z + ERF_TAYLOR[k];
    }
    xs * acc
}

/// `erfc(a)` for `a >= 0` (any, including +inf).
#[inline(always)]
fn erfc_nonneg_v(a: f64) -> f64 {
    let ac = a.min(27.5);
    let r = exp_neg_sq_v(ac) * erfcx_nonneg_v(ac);
    if a > 27.5 {
        0.0
    } else {
        r
    }
}

/// `Phi(z)` for `z <= 0` (any, including -inf).
#[inline(always)]
fn ndtr_nonpos_v(z: f64) -> f64 {
    let zc = z.max(-40.0);
    let r = 0.5 * exp_neg_half_sq_v(zc) * erfcx_nonneg_v(-zc * FRAC_1_SQRT_2);
    if z < -40.0 {
        0.0
    } else {
        r
    }
}

#[inline(always)]
fn erf_v(x: f64) -> f64 {
    let ax = x.abs();
    let r = 1.0 - erfc_nonneg_v(ax);
    let big = if x < 0.0 { -r } else { r };
    let y = if ax < 0.5 { erf_taylor_v(x) } else { big };
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
fn erfc_v(x: f64) -> f64 {
    let ec = erfc_nonneg_v(x.abs());
    let small = 1.0 - erf_taylor_v(x);
    let y = if x >= 0.0 {
        ec
    } else if x > -0.5 {
        small
    } else {
        2.0 - ec
    };
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
fn ndtr_v(x: f64) -> f64 {
    let q = ndtr_nonpos_v(-x.abs());
    let y = if x <= 0.0 { q } else { 1.0 - q };
    if x.is_nan() {
        x
    } else {
        y
    }
}

#[inline(always)]
fn log_ndtr_v(x: f64) -> f64 {
    // both halves need erfcx(|x|/sqrt2), evaluated once:
    // right half (x > 0): log1p(-Phi(-x)), Phi(-x) = exp(-x^2/2) erfcx(x/sqrt2) / 2 (0 beyond 40);
    // left half: -x^2/2 + log(erfcx(-x/sqrt2)/2)
    let ax = x.abs();
    let e = erfcx_nonneg_v((ax * FRAC_1_SQRT_2).min(1e300));
    let q = 0.5 * exp_neg_half_sq_v(ax.min(40.0)) * e;
    let right = if ax > 40.0 { 0.0 } else { log1p_neg_small(q) };
    let left = -0.5 * (x * x) + ln_pos(0.5 * e);
    let y = if x > 0.0 { right } else { left };
    let y = if x == f64::NEG_INFINITY { f64::NEG_INFINITY } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `phi(x) / Phi(x)` for `x >= -1e8` (the caller takes the scalar below).
#[inline(always)]
fn ndtr_ratio_v(x: f64) -> f64 {
    // erfcx(|x|/sqrt2) once, as in `log_ndtr_v`
    let ax = x.abs();
    let e = erfcx_nonneg_v((ax * FRAC_1_SQRT_2).min(1e300));
    let left = SQRT_2_OVER_PI / e;
    let g = exp_neg_half_sq_v(ax.min(40.0));
    let right = FRAC_1_SQRT_2PI * g / (1.0 - 0.5 * g * e);
    let y = if x <= 0.0 { left } else { right };
    let y = if x > 40.0 { 0.0 } else { y };
    if x.is_nan() {
        x
    } else {
        y
    }
}

/// `(log Phi(x), phi(x) / Phi(x))` for `x >= -1e8` from one erfcx and one exp
/// evaluation: bit for bit the values of [`log_ndtr_v`] and [`ndtr_ratio_v`].
#[inline(always)]
fn log_ndtr_and_ratio_v(x: f64) -> (f64, f64) {
    let ax = x.abs();
    let e = erfcx_nonneg_v((ax * FRAC_1_SQRT_2).min(1e300));
    let g = exp_neg_half_sq_v(ax.min(40.0));
    let q = 0.5 * g * e;
    let right = if ax > 40.0 { 0.0 } else { log1p_neg_small(q) };
    let left = -0.5 * (x * x) + ln_pos(0.5 * e);
    let y = if x > 0.0 { right } else { left };
    let y = if x == f64::NEG_INFINITY { f64::NEG_INFINITY } else { y };
    let r = if x <= 0.0 { SQRT_2_OVER_PI / e } else { FRAC_1_SQRT_2PI * g / (1.0 - q) };
    let r = if x > 40.0 { 0.0 } else { r };
    if x.is_nan() {
        (x, x)
    } else {
        (y, r)
    }
}

/// Re-evaluates with the scalar function the lanes the vector formula does not cover.
#[inline(always)]
fn fix_lanes(x: &[f64], out: &mut [f64], bad: impl Fn(f64) -> bool, f: fn(f64) -> f64) {
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
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = $v(v);
                }
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
    /// out[i] = log Phi(x[i]), full relative precision everywhere
    log_ndtr_slice_f64, log_ndtr_slice_f32, log_ndtr_v;
}

multiversion! {
    /// out[i] = phi(x[i]) / Phi(x[i]) for x[i] >= -1e8 (use [`ndtr_ratio_slice_f64`], which fixes up the lanes below)
    pub fn ndtr_ratio_raw_f64(x: &[f64], out: &mut [f64]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = ndtr_ratio_v(v);
        }
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
        for ((yo, ro), &v) in y.iter_mut().zip(r.iter_mut()).zip(x) {
            let (a, b) = log_ndtr_and_ratio_v(v);
            *yo = a;
            *ro = b;
        }
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
    /// The backward of erf, erfc and ndtr in one pass: `out[i] = g[i] c exp(-k x[i]^2)`
    /// with `k` 1 (erf: `c = 2/sqrt(pi)`; erfc: `c = -2/sqrt(pi)`) or 1/2 (ndtr: `c = 1/sqrt(2 pi)`).
    pub fn gauss_backward_f64(x: &[f64], g: &[f64], c: f64, half: bool, out: &mut [f64]) {
        for ((o, &v), &gv) in out.iter_mut().zip(x).zip(g) {
            let a = v.abs().min(1e150);
            let e = if half { exp_neg_half_sq_v(a) } else { exp_neg_sq_v(a) };
            *o = gv * (c * e);
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
    let e0 = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m0 = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m0 >= std::f64::consts::SQRT_2;
    let m = if big { m0 * 0.5 } else { m0 };
    let e = if big { e0 + 1 } else { e0 };
    (e as f64, m)
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
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = $v(v);
                }
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

    fn ulps(a: f64, b: f64) -> f64 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0.0;
        }
        if !a.is_finite() || !b.is_finite() {
            return f64::INFINITY;
        }
        let ulp = if b == 0.0 { f64::from_bits(1) } else { (f64::from_bits(b.abs().to_bits() + 1) - b.abs()).max(f64::from_bits(1)) };
        (a - b).abs() / ulp
    }

    fn grid() -> Vec<f64> {
        let mut v: Vec<f64> = (0..40001).map(|i| -45.0 + i as f64 * (90.0 / 40000.0)).collect();
        v.extend([0.0, -0.0, 1e-300, -1e-300, 0.5, -0.5, 0.4999999, 27.5, 27.6, -40.0, -40.1, 1e10, -1e10, 1e200, -1e200, 1e308, -1e308]);
        v.extend([f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -1e7, -1e8, -2e8, -1e9]);
        v
    }

    /// The vector kernels agree with the scalar functions (which are checked
    /// against mpmath in `special.rs` and in tests/test_special.py).
    #[test]
    fn vector_kernels_match_the_scalar_functions() {
        let x = grid();
        let mut out = vec![0.0; x.len()];
        type Slice = fn(&[f64], &mut [f64]);
        type Case = (&'static str, Slice, fn(f64) -> f64, f64);
        let cases: [Case; 5] = [
            ("erf", erf_slice_f64, special::erf, 2.0),
            ("erfc", erfc_slice_f64, special::erfc, 3.0),
            ("ndtr", ndtr_slice_f64, special::ndtr, 3.0),
            ("log_ndtr", log_ndtr_slice_f64, special::log_ndtr, 3.0),
            ("ndtr_ratio", ndtr_ratio_slice_f64, special::ndtr_ratio, 3.0),
        ];
        for (name, vf, sf, tol) in cases {
            vf(&x, &mut out);
            for (&v, &o) in x.iter().zip(&out) {
                let want = sf(v);
                let subnormal = want != 0.0 && want.abs() < f64::MIN_POSITIVE;
                let ok = if subnormal { (o - want).abs() <= 4.0 * f64::from_bits(1) } else { ulps(o, want) <= tol };
                assert!(ok, "{name}({v:e}) = {o:e}, scalar {want:e} ({} ulp)", ulps(o, want));
            }
        }
        let g: Vec<f64> = x.iter().map(|v| 0.5 + v.abs().min(3.0)).collect();
        log_ndtr_backward_f64(&x, &g, &mut out);
        for ((&v, &gv), &o) in x.iter().zip(&g).zip(&out) {
            let want = gv * special::ndtr_ratio(v);
            assert!(ulps(o, want) <= 4.0 || (want.abs() < f64::MIN_POSITIVE && (o - want).abs() < 1e-320), "log_ndtr backward at {v}");
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

    #[test]
    fn float32_slices_round_the_float64_result() {
        let x: Vec<f32> = (0..2001).map(|i| -30.0 + i as f32 * 0.03).collect();
        let mut o = vec![0f32; x.len()];
        log_ndtr_slice_f32(&x, &mut o);
        for (&v, &r) in x.iter().zip(&o) {
            let w = special::log_ndtr(v as f64) as f32;
            assert!((r - w).abs() <= f32::EPSILON * w.abs().max(1e-30), "{v}: {r} vs {w}");
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
