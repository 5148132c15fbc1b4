//! Packed128 (moved from the unit tests of `rbe_core::rbe::packed`): the codec
//! round-trips bit for bit, its error bounds, and validation of every field.
use rbe_structured::packed::*;
use std::f64::consts::{PI, TAU};

fn f32_pair(a: f32, b: f32) -> u64 {
    ((a.to_bits() as u64) << 32) | b.to_bits() as u64
}

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
