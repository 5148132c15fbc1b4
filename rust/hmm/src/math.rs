//! Scalar math the HMM kernels inline into their loops: `exp` and `ln`
//! written without branches (selects only) so that LLVM vectorises the loops
//! they sit in, under whatever target features the calling kernel was
//! compiled for (see [`crate::kernels`]'s ISA dispatch).
//!
//! `exp` is the core's (`rbe_core::ext::simd::exp_f32/exp_f64`, the same
//! function its slice kernels use): Cody-Waite range reduction `x = n ln2 + r`, `|r| <= ln2/2`, and a
//! Taylor polynomial (degree 7 for f32, 13 for f64), the scaling by `2^n`
//! done on the exponent bits in two halves so that subnormal results stay
//! exact. `ln`: `x = 2^e m` with `m` in `[sqrt(1/2), sqrt(2))`, then
//! `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`, by its odd series (`|s| <=
//! 0.172`). Both are within two ulps of the correctly rounded result (tested
//! below against the standard library over the whole range).
use rbe_core::ext::Real;

/// The element types of the kernels (f32, f64): [`Real`] plus the inlined
/// vectorisable `exp`/`ln` and the threshold below which a sum of shifted
/// exponentials is recomputed exactly in log space.
pub trait HmmReal: Real {
    /// `e^x` (0 for `x = -inf`, NaN for NaN).
    fn vexp(self) -> Self;
    /// `ln x` (`-inf` at 0, NaN below 0 and for NaN, `+inf` at `+inf`).
    fn vln(self) -> Self;
    /// A sum `q = sum_i p_i a_i` of products of numbers in `[0, 1]` (each
    /// a shifted exponential) is trusted when `q >= TINY`: the terms lost to
    /// underflow are each below the smallest normal number, so their share of
    /// `q` is at most `K * MIN_POSITIVE / TINY` (below 1e-9 for `K <= 10^4`).
    /// Below it the sum is recomputed as an exact log-sum-exp.
    const TINY: Self;
    /// `self` widened to f64 (exact).
    fn wide(self) -> f64;
    /// `self * a + b` rounded once (one FMA instruction under the kernels'
    /// AVX2/AVX-512 target features; the same bits on every path).
    fn fma(self, a: Self, b: Self) -> Self;
}

impl HmmReal for f32 {
    #[inline(always)]
    fn vexp(self) -> f32 {
        exp_f32(self)
    }
    #[inline(always)]
    fn vln(self) -> f32 {
        ln_f32(self)
    }
    const TINY: f32 = 1e-25;
    #[inline(always)]
    fn wide(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fma(self, a: f32, b: f32) -> f32 {
        self.mul_add(a, b)
    }
}

impl HmmReal for f64 {
    #[inline(always)]
    fn vexp(self) -> f64 {
        exp_f64(self)
    }
    #[inline(always)]
    fn vln(self) -> f64 {
        ln_f64(self)
    }
    const TINY: f64 = 1e-250;
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn fma(self, a: f64, b: f64) -> f64 {
        self.mul_add(a, b)
    }
}

/// `e^x` in f32: the core's inlined branch-free exp.
pub use rbe_core::ext::simd::exp_f32;
/// `e^x` in f64: the core's inlined branch-free exp.
pub use rbe_core::ext::simd::exp_f64;

/// `ln x` in f32.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    // subnormals: scale into the normal range first
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * 16_777_216.0 } else { x }; // 2^24
    let bits = xs.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i32;
    e -= if sub { 24 } else { 0 };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    // 2 atanh(s) = 2 s (1 + s^2/3 + s^4/5 + ...), |s| <= 0.1716
    let mut p: f32 = 1.0 / 13.0;
    for c in [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0] {
        p = p.mul_add(s2, c);
    }
    let lnm = (2.0 * s).mul_add(s2 * p, 2.0 * s);
    let ef = e as f32;
    let y = ef.mul_add(0.693_145_75, ef.mul_add(1.428_606_8e-6, lnm));
    let y = if x == 0.0 { f32::NEG_INFINITY } else { y };
    let y = if x == f32::INFINITY { f32::INFINITY } else { y };
    if x < 0.0 || x.is_nan() {
        f32::NAN
    } else {
        y
    }
}

/// `ln x` in f64.
#[inline(always)]
pub fn ln_f64(x: f64) -> f64 {
    let sub = x < f64::MIN_POSITIVE;
    let xs = if sub { x * 18_014_398_509_481_984.0 } else { x }; // 2^54
    let bits = xs.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m > std::f64::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e += big as i64;
    e -= if sub { 54 } else { 0 };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let mut p: f64 = 1.0 / 25.0;
    for c in
        [1.0 / 23.0, 1.0 / 21.0, 1.0 / 19.0, 1.0 / 17.0, 1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0]
    {
        p = p.mul_add(s2, c);
    }
    // ln m = 2s + 2s s^2 p, with 2s exact; f - s f = 2s - ... keeps the low bits
    let lnm = (2.0 * s).mul_add(s2 * p, 2.0 * s);
    let ef = e as f64;
    let y = ef.mul_add(6.931_471_803_691_238e-1, ef.mul_add(1.908_214_929_270_587_7e-10, lnm));
    let y = if x == 0.0 { f64::NEG_INFINITY } else { y };
    let y = if x == f64::INFINITY { f64::INFINITY } else { y };
    if x < 0.0 || x.is_nan() {
        f64::NAN
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps64(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }
    fn ulps32(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i32 - b.to_bits() as i32).unsigned_abs()
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn ln_within_two_ulps() {
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut worst = 0;
        for _ in 0..2_000_000 {
            // random positive doubles over the whole exponent range, subnormals included
            let x = f64::from_bits(xorshift(&mut s) >> 1);
            if !x.is_finite() || x == 0.0 {
                continue;
            }
            worst = worst.max(ulps64(ln_f64(x), x.ln()));
        }
        for i in 0..100_000 {
            let x = 0.5 + i as f64 * 1e-5; // near 1, where ln is small
            worst = worst.max(ulps64(ln_f64(x), x.ln()));
        }
        assert!(worst <= 2, "ln f64: {worst} ulps");
        let mut w32 = 0;
        for _ in 0..2_000_000 {
            let x = f32::from_bits((xorshift(&mut s) >> 33) as u32);
            if !x.is_finite() || x == 0.0 {
                continue;
            }
            w32 = w32.max(ulps32(ln_f32(x), x.ln()));
        }
        for i in 0..100_000 {
            let x = 0.5f32 + i as f32 * 1e-5;
            w32 = w32.max(ulps32(ln_f32(x), x.ln()));
        }
        assert!(w32 <= 2, "ln f32: {w32} ulps");
    }

    #[test]
    fn ln_special_values() {
        assert_eq!(ln_f64(0.0), f64::NEG_INFINITY);
        assert_eq!(ln_f64(f64::INFINITY), f64::INFINITY);
        assert!(ln_f64(-1.0).is_nan() && ln_f64(f64::NAN).is_nan());
        assert_eq!(ln_f64(1.0), 0.0);
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_f32(-1.0).is_nan() && ln_f32(f32::NAN).is_nan());
        assert_eq!(ln_f32(1.0), 0.0);
        assert_eq!(ln_f64(f64::from_bits(1)), (f64::from_bits(1)).ln());
    }

    #[test]
    fn exp_within_two_ulps() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut worst = 0;
        for _ in 0..2_000_000 {
            let u = (xorshift(&mut s) >> 11) as f64 / (1u64 << 53) as f64;
            let x = -745.0 + u * (709.0 + 745.0);
            let (a, b) = (exp_f64(x), x.exp());
            if b > f64::MIN_POSITIVE {
                worst = worst.max(ulps64(a, b));
            } else {
                assert!((a - b).abs() <= f64::from_bits(2), "{x}: {a} vs {b}");
            }
        }
        assert!(worst <= 2, "exp f64: {worst} ulps");
        let mut w32 = 0;
        for _ in 0..2_000_000 {
            let u = (xorshift(&mut s) >> 40) as f32 / (1u64 << 24) as f32;
            let x = -103.0 + u * (88.0 + 103.0);
            let (a, b) = (exp_f32(x), x.exp());
            if b > f32::MIN_POSITIVE {
                w32 = w32.max(ulps32(a, b));
            } else {
                assert!((a - b).abs() <= f32::from_bits(2), "{x}: {a} vs {b}");
            }
        }
        assert!(w32 <= 2, "exp f32: {w32} ulps");
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f64(f64::INFINITY), f64::INFINITY);
        assert!(exp_f64(f64::NAN).is_nan());
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f32(0.0), 1.0);
    }
}
