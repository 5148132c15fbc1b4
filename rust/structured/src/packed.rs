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
use rbe_core::ext::{value_err, Result};
use std::f64::consts::TAU;

/// Width of the phase register in bits.
pub const PHASE_BITS: u32 = 20;
/// A quarter turn (pi/2) in phase-register units: `sin(a + pi/2) = cos(a)`.
pub const QUARTER_TURN: u32 = 1 << 18;
/// Largest f32 strictly below pi: the bound on a stored `theta`. (The f32
/// nearest to pi lies above pi and would decode across the branch cut.)
pub const THETA_MAX: f32 = f32::from_bits(std::f32::consts::PI.to_bits() - 1);

/// Mask of the phase register (20 bits).
pub const PHASE_MASK: u32 = (1 << PHASE_BITS) - 1;
/// `2^20`: phase-register units per turn.
pub const PHASE_SCALE: f64 = (1u32 << PHASE_BITS) as f64;
/// Bit offsets of the fields of `hi` (see the module docs).
pub const TRACK_SHIFT: u32 = 62;
pub const PHASE_SHIFT: u32 = 42;
pub const AMP_SHIFT: u32 = 26;
pub const SIGN_SHIFT: u32 = 25;
pub const CHART_SHIFT: u32 = 24;
/// The reserved bits `23:0` of `hi`.
pub const RESERVED_MASK: u64 = (1 << CHART_SHIFT) - 1;

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
        // the top code is 2^(32767/2048) ~ 65514: an amplitude far beyond it
        // would be stored as something else entirely, so it is refused, not clamped
        if (2048.0 * atom.amp.abs().log2()).round() + 32768.0 > 65535.0 {
            return Err(value_err!(
                "Packed128::pack: amplitude {} exceeds the largest storable magnitude {} (16-bit log code)",
                atom.amp,
                amp_of_code(65535, false)
            ));
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
