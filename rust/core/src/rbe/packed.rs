//! `Packed128`: the 128-bit record of one RBE atom (spec section 3).
//!
//! Layout (`hi`): `63:62` track (00 SIN, 01 TANH, 10/11 reserved), `61:42`
//! phase register `q`, `41:26` log-amplitude code `a`, `25` sign of `A`,
//! `24` chart flag, `23:0` reserved (zero). `lo[63:32]` / `lo[31:0]` hold the
//! f32 bits of `(r, theta)` (polar chart) or `(px, py)` (tangent chart).
//!
//! Packing is canonical: for every record `rec` that passes
//! [`Packed128::validate`], `pack(unpack(rec), rec.chart())` returns `rec`
//! bit for bit.
use crate::{value_err, Result};
use std::f64::consts::TAU;

/// Width of the phase register in bits.
pub const PHASE_BITS: u32 = 20;
/// A quarter turn (pi/2) in phase-register units: `sin(a + pi/2) = cos(a)`.
pub const QUARTER_TURN: u32 = 1 << 18;
/// Largest f32 strictly below pi: the bound on a stored `theta`. (The f32
/// nearest to pi lies above pi and would decode across the branch cut.)
pub const THETA_MAX: f32 = f32::from_bits(std::f32::consts::PI.to_bits() - 1);

const PHASE_MASK: u32 = (1 << PHASE_BITS) - 1;
const PHASE_SCALE: f64 = (1u32 << PHASE_BITS) as f64;
const TRACK_SHIFT: u32 = 62;
const PHASE_SHIFT: u32 = 42;
const AMP_SHIFT: u32 = 26;
const SIGN_SHIFT: u32 = 25;
const CHART_SHIFT: u32 = 24;
const RESERVED_MASK: u64 = (1 << CHART_SHIFT) - 1;

/// One atom as a 128-bit record (see the module docs for the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Packed128 {
    pub hi: u64,
    pub lo: u64,
}

/// The activation of an atom: `g = sin` or `g = tanh`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Track {
    Sin = 0,
    Tanh = 1,
}

/// What `lo` holds (flag bit 24): 0 = `(r, theta)`, 1 = `(px, py)`, as f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chart {
    Polar = 0,
    Tangent = 1,
}

/// The decoded, exact values a record stands for (f64).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Atom {
    /// Signed amplitude `A`.
    pub amp: f64,
    /// Phase `phi` (decoded values lie in `[-pi, pi)`).
    pub phase: f64,
    /// Tangent-chart point `p = (px, py)`; the wave vector is `2 kappa p`.
    pub px: f64,
    pub py: f64,
    pub track: Track,
}

/// How to choose the chart when packing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChartChoice {
    Polar,
    Tangent,
    /// Polar unless `tanh|p|` rounds to 1.0 in f32, then tangent.
    Auto,
}

impl From<Chart> for ChartChoice {
    fn from(c: Chart) -> Self {
        match c {
            Chart::Polar => ChartChoice::Polar,
            Chart::Tangent => ChartChoice::Tangent,
        }
    }
}

/// `sin` and `cos` of `x = 2 pi m / 2^20` for the in-quadrant offset of `q`,
/// rotated by the quadrant exactly (sign changes and swaps only).
fn phase_sin_cos(q: u32) -> (f64, f64) {
    let q = q & PHASE_MASK;
    let m = q & (QUARTER_TURN - 1);
    let x = m as f64 * (TAU / PHASE_SCALE);
    let (s, c) = x.sin_cos();
    match q >> 18 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// `sin(2 pi q / 2^20)` by exact quadrant reduction, so that
/// `phase_sin(q + QUARTER_TURN) == phase_cos(q)` bit for bit (q taken mod 2^20).
pub fn phase_sin(q: u32) -> f64 {
    phase_sin_cos(q).0
}

/// `cos(2 pi q / 2^20)` by exact quadrant reduction (q taken mod 2^20).
pub fn phase_cos(q: u32) -> f64 {
    phase_sin_cos(q).1
}

/// The phase `2 pi s / 2^20`, `s` being `q` read as a signed 20-bit value;
/// the result lies in `[-pi, pi)`.
pub fn phase_of_register(q: u32) -> f64 {
    let q = q & PHASE_MASK;
    let s = if q >= 1 << (PHASE_BITS - 1) { q as i64 - (1 << PHASE_BITS) } else { q as i64 };
    s as f64 * (TAU / PHASE_SCALE)
}

/// `round(phi * 2^20 / 2pi) mod 2^20` (round half away from zero).
/// Errors on a non-finite phase.
pub fn register_of_phase(phi: f64) -> Result<u32> {
    if !phi.is_finite() {
        return Err(value_err!("Packed128: phase must be finite, got {phi}"));
    }
    let t = (phi / TAU) * PHASE_SCALE;
    if !t.is_finite() {
        // |phi / 2pi| > 2^1000 is an integer, hence a whole number of turns.
        return Ok(0);
    }
    Ok(t.round().rem_euclid(PHASE_SCALE) as u32)
}

/// The 16-bit log-amplitude code and sign of `a`:
/// `clamp(round(2048 log2|a|) + 32768, 1, 65535)`, and `(0, false)` for
/// `a = +-0`. Infinities saturate; NaN maps to `(0, false)` (callers that
/// need an error check finiteness first, as [`Packed128::pack`] does).
pub fn amp_code_of(a: f64) -> (u16, bool) {
    if a == 0.0 || a.is_nan() {
        return (0, false);
    }
    let c = (2048.0 * a.abs().log2()).round() + 32768.0;
    (c.clamp(1.0, 65535.0) as u16, a < 0.0)
}

/// The amplitude of a code: `+-2^((code - 32768) / 2048)`, and `0.0` for code 0.
pub fn amp_of_code(code: u16, sign: bool) -> f64 {
    if code == 0 {
        return 0.0;
    }
    let m = ((code as f64 - 32768.0) / 2048.0).exp2();
    if sign {
        -m
    } else {
        m
    }
}

/// `artanh(r) = 0.5 (ln(1 + r) - ln(1 - r))`, accurate near 0 and near 1.
fn artanh(r: f64) -> f64 {
    0.5 * (r.ln_1p() - (-r).ln_1p())
}

/// Polar coordinates `(tanh|p|, atan2(py, px))` rounded to f32, theta clamped
/// to `[-THETA_MAX, THETA_MAX]`; `(0, 0)` when r rounds to zero. r may be 1.0.
fn polar_of_point(px: f64, py: f64) -> (f32, f32) {
    let r = px.hypot(py).tanh() as f32;
    if r == 0.0 {
        return (0.0, 0.0);
    }
    let theta = (py.atan2(px) as f32).clamp(-THETA_MAX, THETA_MAX);
    (r, theta)
}

fn f32_pair(a: f32, b: f32) -> u64 {
    ((a.to_bits() as u64) << 32) | b.to_bits() as u64
}

impl Packed128 {
    /// Encode an atom. Errors on a non-finite amplitude, phase or point, on
    /// `ChartChoice::Polar` when `tanh|p|` rounds to 1.0 in f32, and on a
    /// tangent-chart coordinate that overflows f32.
    pub fn pack(atom: &Atom, chart: ChartChoice) -> Result<Packed128> {
        let q = register_of_phase(atom.phase)?;
        if !atom.amp.is_finite() {
            return Err(value_err!("Packed128::pack: amplitude must be finite, got {}", atom.amp));
        }
        if !atom.px.is_finite() || !atom.py.is_finite() {
            return Err(value_err!("Packed128::pack: point p must be finite, got (px, py) = ({}, {})", atom.px, atom.py));
        }
        let (code, sign) = amp_code_of(atom.amp);
        let polar = || polar_of_point(atom.px, atom.py);
        let (flag, lo) = match chart {
            ChartChoice::Polar => {
                let (r, theta) = polar();
                if r >= 1.0 {
                    return Err(value_err!(
                        "Packed128::pack: polar chart cannot hold |p| = {}: r = tanh|p| rounds to 1.0 in f32; use the tangent chart",
                        atom.px.hypot(atom.py)
                    ));
                }
                (Chart::Polar, f32_pair(r, theta))
            }
            ChartChoice::Auto => match polar() {
                (r, theta) if r < 1.0 => (Chart::Polar, f32_pair(r, theta)),
                _ => (Chart::Tangent, Self::tangent_lo(atom.px, atom.py)?),
            },
            ChartChoice::Tangent => (Chart::Tangent, Self::tangent_lo(atom.px, atom.py)?),
        };
        let hi = ((atom.track as u64) << TRACK_SHIFT)
            | ((q as u64) << PHASE_SHIFT)
            | ((code as u64) << AMP_SHIFT)
            | ((sign as u64) << SIGN_SHIFT)
            | ((flag as u64) << CHART_SHIFT);
        Ok(Packed128 { hi, lo })
    }

    fn tangent_lo(px: f64, py: f64) -> Result<u64> {
        let (fx, fy) = (px as f32, py as f32);
        for (name, v, f) in [("px", px, fx), ("py", py, fy)] {
            if !f.is_finite() {
                return Err(value_err!("Packed128::pack: tangent-chart {name} = {v} does not fit in f32"));
            }
        }
        Ok(f32_pair(fx, fy))
    }

    fn lo_pair(&self) -> (f32, f32) {
        (f32::from_bits((self.lo >> 32) as u32), f32::from_bits(self.lo as u32))
    }

    fn ctx(&self) -> String {
        format!("(record hi=0x{:016x}, lo=0x{:016x})", self.hi, self.lo)
    }

    /// Decode the record (after [`validate`](Self::validate)). Polar records
    /// decode `|p| = artanh(r)`, `p = |p| (cos theta, sin theta)` in f64.
    pub fn unpack(&self) -> Result<Atom> {
        self.validate()?;
        let track = self.track()?;
        let (a, b) = self.lo_pair();
        let (px, py) = match self.chart() {
            Chart::Polar => {
                let m = artanh(a as f64);
                let (s, c) = (b as f64).sin_cos();
                (m * c, m * s)
            }
            Chart::Tangent => (a as f64, b as f64),
        };
        Ok(Atom { amp: amp_of_code(self.amp_code(), self.amp_sign()), phase: phase_of_register(self.phase_register()), px, py, track })
    }

    /// Check every field: defined track, zero reserved bits, canonical zero
    /// amplitude, and a well-formed `lo` for the chart (see the module docs).
    pub fn validate(&self) -> Result<()> {
        self.track()?;
        let reserved = self.hi & RESERVED_MASK;
        if reserved != 0 {
            return Err(value_err!("Packed128: reserved bits 23:0 must be zero, got 0x{reserved:06x} {}", self.ctx()));
        }
        if self.amp_code() == 0 && self.amp_sign() {
            return Err(value_err!("Packed128: amplitude code 0 (A = 0) with sign bit 25 set is a non-canonical zero {}", self.ctx()));
        }
        let (a, b) = self.lo_pair();
        match self.chart() {
            Chart::Polar => {
                let bad = if !a.is_finite() {
                    Some(format!("r must be finite, got {a} (bits 0x{:08x})", a.to_bits()))
                } else if a.is_sign_negative() {
                    Some(format!("r must be non-negative with a clear sign bit, got {a:?} (bits 0x{:08x})", a.to_bits()))
                } else if a >= 1.0 {
                    Some(format!("r must be < 1, got {a} (saturated radii need the tangent chart)"))
                } else if !b.is_finite() || b.abs() > THETA_MAX {
                    Some(format!("theta must be finite and within [-{THETA_MAX}, {THETA_MAX}], got {b} (bits 0x{:08x})", b.to_bits()))
                } else if a == 0.0 && b.to_bits() != 0 {
                    Some(format!("r = 0 requires theta bits 0 (canonical), got theta bits 0x{:08x}", b.to_bits()))
                } else {
                    None
                };
                if let Some(msg) = bad {
                    return Err(value_err!("Packed128 (polar chart): {msg} {}", self.ctx()));
                }
            }
            Chart::Tangent => {
                for (name, v) in [("px", a), ("py", b)] {
                    if !v.is_finite() {
                        return Err(value_err!(
                            "Packed128 (tangent chart): {name} must be finite, got {v} (bits 0x{:08x}) {}",
                            v.to_bits(),
                            self.ctx()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The track (bits 63:62); errors on the reserved codes 10 and 11.
    pub fn track(&self) -> Result<Track> {
        match self.hi >> TRACK_SHIFT {
            0 => Ok(Track::Sin),
            1 => Ok(Track::Tanh),
            t => Err(value_err!("Packed128: track bits 63:62 = 0b{t:02b} are reserved (00 SIN, 01 TANH) {}", self.ctx())),
        }
    }

    /// The chart flag (bit 24).
    pub fn chart(&self) -> Chart {
        if (self.hi >> CHART_SHIFT) & 1 == 1 {
            Chart::Tangent
        } else {
            Chart::Polar
        }
    }

    /// The 20-bit phase register `q` (bits 61:42).
    pub fn phase_register(&self) -> u32 {
        ((self.hi >> PHASE_SHIFT) as u32) & PHASE_MASK
    }

    /// A copy with the phase register replaced by `q mod 2^20`.
    pub fn with_phase_register(&self, q: u32) -> Packed128 {
        let mask = (PHASE_MASK as u64) << PHASE_SHIFT;
        let hi = (self.hi & !mask) | (((q & PHASE_MASK) as u64) << PHASE_SHIFT);
        Packed128 { hi, lo: self.lo }
    }

    /// The 16-bit log-amplitude code `a` (bits 41:26).
    pub fn amp_code(&self) -> u16 {
        (self.hi >> AMP_SHIFT) as u16
    }

    /// The sign bit of `A` (bit 25); `true` means negative.
    pub fn amp_sign(&self) -> bool {
        (self.hi >> SIGN_SHIFT) & 1 == 1
    }

    /// `(r, theta)` of a valid polar-chart record; errors on an invalid
    /// record or a tangent-chart one.
    pub fn polar(&self) -> Result<(f32, f32)> {
        self.validate()?;
        match self.chart() {
            Chart::Polar => Ok(self.lo_pair()),
            Chart::Tangent => {
                Err(value_err!("Packed128::polar: record uses the tangent chart (flag bit 24 = 1), lo holds (px, py) {}", self.ctx()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// 64-bit LCG (Knuth's MMIX constants); outputs the high halves of two steps.
    struct Lcg(u64);
    impl Lcg {
        fn step(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 32) as u32
        }
        fn u64(&mut self) -> u64 {
            ((self.step() as u64) << 32) | self.step() as u64
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
        fn below(&mut self, n: u32) -> u32 {
            ((self.step() as u64 * n as u64) >> 32) as u32
        }
    }

    fn random_atom(g: &mut Lcg) -> Atom {
        let amp = match g.below(20) {
            0 => 0.0,
            1 => -0.0,
            _ => {
                let m = g.range(-20.0, 20.0).exp2();
                if g.below(2) == 0 {
                    m
                } else {
                    -m
                }
            }
        };
        let m = match g.below(10) {
            0 => 0.0,
            1 => 1e-30,
            2 => g.range(8.5, 15.0), // around and past f32 saturation of tanh
            _ => g.range(1e-3f64.ln(), 15f64.ln()).exp(),
        };
        let (px, py) = match g.below(12) {
            0 => (-m, 0.0),  // theta = pi exactly
            1 => (-m, -0.0), // theta = -pi exactly
            2 => (m, 0.0),
            3 => (0.0, m),
            4 => (0.0, -m),
            _ => {
                let d = g.range(-PI, PI);
                (m * d.cos(), m * d.sin())
            }
        };
        let track = if g.below(2) == 0 { Track::Sin } else { Track::Tanh };
        Atom { amp, phase: g.range(-4.0 * PI, 4.0 * PI), px, py, track }
    }

    fn choice(g: &mut Lcg) -> ChartChoice {
        [ChartChoice::Polar, ChartChoice::Tangent, ChartChoice::Auto][g.below(3) as usize]
    }

    fn assert_roundtrip(rec: Packed128) {
        let atom = rec.unpack().expect("valid record must unpack");
        let again = Packed128::pack(&atom, rec.chart().into()).expect("decoded atom must pack");
        assert_eq!(again, rec, "pack(unpack(rec)) != rec for {atom:?}");
    }

    fn ulp_f32(x: f32) -> f64 {
        let x = x.abs();
        f32::from_bits(x.to_bits() + 1) as f64 - x as f64
    }

    #[test]
    fn theta_max_is_largest_f32_below_pi() {
        assert!((THETA_MAX as f64) < PI);
        assert!((f32::from_bits(THETA_MAX.to_bits() + 1) as f64) > PI);
    }

    #[test]
    fn phase_quarter_turn_is_bit_exact_and_accurate_for_all_registers() {
        for q in 0..1u32 << PHASE_BITS {
            let qq = (q + QUARTER_TURN) & PHASE_MASK;
            assert_eq!(phase_sin(qq).to_bits(), phase_cos(q).to_bits(), "q = {q}");
            let x = TAU * q as f64 / PHASE_SCALE;
            assert!((phase_sin(q) - x.sin()).abs() <= 1e-15, "sin, q = {q}");
            assert!((phase_cos(q) - x.cos()).abs() <= 1e-15, "cos, q = {q}");
        }
    }

    #[test]
    fn phase_register_roundtrips_for_all_registers() {
        for q in 0..1u32 << PHASE_BITS {
            let phi = phase_of_register(q);
            assert!((-PI..PI).contains(&phi), "q = {q}, phi = {phi}");
            assert_eq!(register_of_phase(phi).unwrap(), q);
            assert_eq!(register_of_phase(phi + TAU).unwrap(), q);
        }
        assert_eq!(phase_of_register(1 << 19), -PI);
        assert_eq!(register_of_phase(PI).unwrap(), 1 << 19);
        assert_eq!(register_of_phase(1e305).unwrap(), 0);
        assert!(register_of_phase(f64::NAN).is_err());
        assert!(register_of_phase(f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn amp_code_roundtrips_for_all_codes() {
        for code in 1..=u16::MAX {
            for sign in [false, true] {
                assert_eq!(amp_code_of(amp_of_code(code, sign)), (code, sign));
            }
        }
        assert_eq!(amp_code_of(0.0), (0, false));
        assert_eq!(amp_code_of(-0.0), (0, false));
        assert_eq!(amp_code_of(1e-300), (1, false));
        assert_eq!(amp_code_of(-1e300), (65535, true));
        assert_eq!(amp_code_of(1.0), (32768, false));
    }

    #[test]
    fn random_atoms_pack_unpack_pack_is_bit_identical() {
        let mut g = Lcg(0x5eed_0001);
        let mut per_chart = [0usize; 2];
        for _ in 0..240_000 {
            let atom = random_atom(&mut g);
            let Ok(rec) = Packed128::pack(&atom, choice(&mut g)) else {
                continue;
            };
            rec.validate().expect("packed record must validate");
            per_chart[rec.chart() as usize] += 1;
            assert_roundtrip(rec);
        }
        assert!(per_chart[0] + per_chart[1] >= 200_000 && per_chart.iter().all(|&n| n > 20_000), "{per_chart:?}");
    }

    #[test]
    fn random_atoms_export_error_bounds() {
        let mut g = Lcg(0x5eed_0002);
        let amp_tol = 2f64.powf(1.0 / 4096.0) - 1.0 + 1e-15;
        for _ in 0..200_000 {
            let atom = random_atom(&mut g);
            let Ok(rec) = Packed128::pack(&atom, choice(&mut g)) else {
                continue;
            };
            let dec = rec.unpack().unwrap();
            assert_eq!(dec.track, atom.track);
            let d = (dec.phase - atom.phase).rem_euclid(TAU);
            let dphi = d.min(TAU - d);
            assert!(dphi <= PI / PHASE_SCALE + 1e-15, "phase error {dphi:e} for {atom:?}");
            let a = atom.amp.abs();
            if a == 0.0 {
                assert_eq!(dec.amp.to_bits(), 0);
            } else {
                assert_eq!(dec.amp < 0.0, atom.amp < 0.0);
                // Codes 1..=65535 cover |A| in [2^(-16 + 1/4096), 2^(16 - 1/4096)]
                // without clamping (the edges of [2^-16, 2^16] clamp).
                let edge: f64 = 16.0 - 1.0 / 4096.0;
                if ((-edge).exp2()..=edge.exp2()).contains(&a) {
                    let rel = (dec.amp.abs() / a - 1.0).abs();
                    assert!(rel <= amp_tol, "amp rel error {rel:e} for {atom:?}");
                }
            }
            let (m0, m1) = (atom.px.hypot(atom.py), dec.px.hypot(dec.py));
            match rec.chart() {
                Chart::Polar => {
                    let (r, _) = rec.polar().unwrap();
                    let rr = r as f64;
                    let tol = 2.0 * ulp_f32(r) / ((1.0 - rr) * (1.0 + rr)) + 1e-12 * m0;
                    assert!((m1 - m0).abs() <= tol, "|p| {m0} -> {m1} (r = {r}) for {atom:?}");
                    if r > 0.0 {
                        let dir = (atom.px * dec.py - atom.py * dec.px).atan2(atom.px * dec.px + atom.py * dec.py);
                        assert!(dir.abs() <= 2e-7, "direction error {dir:e} for {atom:?}");
                    }
                }
                Chart::Tangent => {
                    for (x0, x1) in [(atom.px, dec.px), (atom.py, dec.py)] {
                        assert!((x1 - x0).abs() <= 0.5 * ulp_f32(x1 as f32).max(1e-45), "{x0} -> {x1}");
                    }
                }
            }
        }
    }

    #[test]
    fn random_raw_valid_records_roundtrip_and_invalid_ones_err() {
        let mut g = Lcg(0x5eed_0003);
        let (mut valid, mut invalid) = (0usize, 0usize);
        for i in 0..400_000 {
            let (mut hi, mut lo) = (g.u64(), g.u64());
            if i % 8 != 0 {
                // Bias towards valid records: legal track, no reserved bits, and
                // for the polar chart a positive r below 2 (about half below 1).
                hi &= !RESERVED_MASK & !(1 << 63);
                if (hi >> CHART_SHIFT) & 1 == 0 {
                    lo &= !(0xC000_0000u64 << 32);
                    if g.below(16) == 0 {
                        lo &= 0xFFFF_FFFF; // r = +0: canonical only with theta = +0
                        if g.below(2) == 0 {
                            lo = 0;
                        }
                    }
                }
            }
            let rec = Packed128 { hi, lo };
            match rec.validate() {
                Ok(()) => {
                    valid += 1;
                    assert_roundtrip(rec);
                }
                Err(_) => {
                    invalid += 1;
                    assert!(rec.unpack().is_err());
                }
            }
        }
        assert!(valid >= 50_000 && invalid >= 50_000, "valid {valid}, invalid {invalid}");
    }

    #[test]
    fn validation_rejects_reserved_and_noncanonical_records() {
        let good = Packed128::pack(&Atom { amp: -1.5, phase: 0.3, px: 0.2, py: -0.4, track: Track::Tanh }, ChartChoice::Polar).unwrap();
        good.validate().unwrap();
        let tangent = Packed128 { hi: good.hi | 1 << CHART_SHIFT, lo: f32_pair(1.0, 2.0) };
        tangent.validate().unwrap();
        let set_lo = |rec: Packed128, a: f32, b: f32| Packed128 { hi: rec.hi, lo: f32_pair(a, b) };
        let mut bad = vec![
            Packed128 { hi: good.hi | 1 << 63, lo: good.lo },                // track 11
            Packed128 { hi: (good.hi & !(3 << 62)) | 2 << 62, lo: good.lo }, // track 10
            Packed128 { hi: good.hi & !(0xFFFF << AMP_SHIFT), lo: good.lo }, // code 0, sign 1
        ];
        bad.extend((0..24).map(|b| Packed128 { hi: good.hi | 1 << b, lo: good.lo }));
        for (r, t) in [
            (f32::NAN, 0.5),
            (f32::INFINITY, 0.5),
            (-0.0, 0.0),
            (-0.25, 0.5),
            (1.0, 0.5),
            (1.5, 0.5),
            (0.5, f32::NAN),
            (0.5, f32::NEG_INFINITY),
            (0.5, std::f32::consts::PI),
            (0.5, -std::f32::consts::PI),
            (0.0, 1e-3),
            (0.0, -0.0),
        ] {
            bad.push(set_lo(good, r, t));
        }
        for (x, y) in [(f32::NAN, 1.0), (1.0, f32::INFINITY), (f32::NEG_INFINITY, 0.0)] {
            bad.push(set_lo(tangent, x, y));
        }
        for rec in bad {
            let e = rec.validate().expect_err("must reject");
            assert!(e.to_string().contains("record hi=0x"), "{e}");
            assert!(rec.unpack().is_err() && rec.polar().is_err());
        }
        let msg = Packed128 { hi: 1, lo: 0 }.validate().unwrap_err().to_string();
        assert!(msg.starts_with("Packed128: reserved bits 23:0 must be zero, got 0x000001"), "{msg}");
        assert!(tangent.polar().is_err());
    }

    #[test]
    fn pack_rejects_bad_inputs_and_picks_charts() {
        let base = Atom { amp: 1.0, phase: 0.0, px: 0.5, py: 0.5, track: Track::Sin };
        for a in [
            Atom { amp: f64::NAN, ..base },
            Atom { amp: f64::INFINITY, ..base },
            Atom { phase: f64::NAN, ..base },
            Atom { px: f64::INFINITY, ..base },
            Atom { py: f64::NAN, ..base },
        ] {
            for c in [ChartChoice::Polar, ChartChoice::Tangent, ChartChoice::Auto] {
                assert!(Packed128::pack(&a, c).is_err(), "{a:?} {c:?}");
            }
        }
        let far = Atom { px: 12.0, py: 0.0, ..base };
        let e = Packed128::pack(&far, ChartChoice::Polar).unwrap_err().to_string();
        assert!(e.contains("tangent chart"), "{e}");
        assert_eq!(Packed128::pack(&far, ChartChoice::Auto).unwrap().chart(), Chart::Tangent);
        assert_eq!(Packed128::pack(&base, ChartChoice::Auto).unwrap().chart(), Chart::Polar);
        let huge = Atom { px: 1e39, ..base };
        assert!(Packed128::pack(&huge, ChartChoice::Tangent).is_err());
        assert!(Packed128::pack(&huge, ChartChoice::Auto).is_err());
        let zero = Atom { amp: -0.0, px: 0.0, py: -0.0, ..base };
        let rec = Packed128::pack(&zero, ChartChoice::Polar).unwrap();
        assert_eq!(rec, Packed128::default());
        assert_eq!(rec.polar().unwrap(), (0.0, 0.0));
    }

    #[test]
    fn accessors_and_with_phase_register() {
        let atom = Atom { amp: -2.0, phase: -PI, px: -1.0, py: 0.0, track: Track::Tanh };
        let rec = Packed128::pack(&atom, ChartChoice::Polar).unwrap();
        assert_eq!(rec.track().unwrap(), Track::Tanh);
        assert_eq!(rec.chart(), Chart::Polar);
        assert_eq!(rec.phase_register(), 1 << 19);
        assert_eq!((rec.amp_code(), rec.amp_sign()), (32768 + 2048, true));
        let (r, theta) = rec.polar().unwrap();
        assert_eq!((r, theta), (1f64.tanh() as f32, THETA_MAX));
        let moved = rec.with_phase_register((1 << 19) + QUARTER_TURN + (1 << 20));
        assert_eq!(moved.phase_register(), 3 << 18);
        assert_eq!((moved.hi ^ rec.hi) & !((PHASE_MASK as u64) << PHASE_SHIFT), 0);
        assert_eq!(moved.lo, rec.lo);
        assert_eq!(moved.unpack().unwrap().phase, -PI / 2.0);
    }
}
