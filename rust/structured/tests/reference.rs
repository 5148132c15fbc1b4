//! The reference generator and VJPs of one block (layout.rs) and the DCT
//! (dct.rs), moved from the unit tests of `rbe_core::rbe`.
use rbe_structured::dct::{dct2, dct_matrix, idct2, top_k};
use rbe_structured::layout::*;

fn lcg(s: &mut u64) -> f64 {
    *s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    ((*s >> 11) as f64) / (1u64 << 53) as f64
}

/// Loss L = sum(g * W); central differences of every field against the VJP.
#[test]
fn vjp_matches_central_differences_both_charts() {
    let lay = Layout::new(7, 5, 7, 5, None).unwrap();
    let mut s = 7u64;
    let g: Vec<f64> = (0..35).map(|_| lcg(&mut s) * 2.0 - 1.0).collect();
    for &r in &[1e-3, 0.3, 0.95, 0.999] {
        for &alpha in &[0.0, 1.0] {
            let theta = lcg(&mut s) * 6.0 - 3.0;
            let (px, py) = tangent_of_polar(r, theta);
            let w = Wave { amp: 0.7, phase: 0.4, px, py, alpha };
            let loss = |w: &Wave| -> f64 { block_reference(&lay, &[*w], &[]).iter().zip(&g).map(|(a, b)| a * b).sum() };
            let (d, _) = block_vjp_reference(&lay, &[w], &[], &g);
            let d = d[0];
            let h = 1e-6;
            let fd = |f: &dyn Fn(f64) -> Wave| (loss(&f(h)) - loss(&f(-h))) / (2.0 * h);
            let checks = [
                (d.amp, fd(&|e| Wave { amp: w.amp + e, ..w })),
                (d.phase, fd(&|e| Wave { phase: w.phase + e, ..w })),
                (d.px, fd(&|e| Wave { px: w.px + e, ..w })),
                (d.py, fd(&|e| Wave { py: w.py + e, ..w })),
                (d.alpha, fd(&|e| Wave { alpha: w.alpha + e, ..w })),
            ];
            for (k, (a, b)) in checks.iter().enumerate() {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "r={r} alpha={alpha} field {k}: {a} vs {b}");
            }
            // polar chart: perturb (r, theta) and go through the chart map
            let via = |r: f64, t: f64| {
                let (px, py) = tangent_of_polar(r, t);
                loss(&Wave { px, py, ..w })
            };
            let (dr, dt) = polar_grads(r, theta, lay.kappa, d.kx, d.ky);
            let hr = h * (1.0 - r) * 0.5;
            let fdr = (via(r + hr, theta) - via(r - hr, theta)) / (2.0 * hr);
            let fdt = (via(r, theta + h) - via(r, theta - h)) / (2.0 * h);
            assert!((dr - fdr).abs() <= 1e-5 * (1.0 + fdr.abs()), "r={r}: dr {dr} vs {fdr}");
            // at tiny r the theta-gradient is a cancellation of two O(r) terms
            assert!((dt - fdt).abs() <= 1e-6 * (1.0 + fdt.abs()) + 1e-8, "r={r}: dtheta {dt} vs {fdt}");
        }
    }
}

#[test]
fn orthonormal_and_round_trip() {
    for &n in &[1usize, 2, 5, 8, 64] {
        let d = dct_matrix(n);
        for a in 0..n {
            for b in 0..n {
                let s: f64 = (0..n).map(|i| d[a * n + i] * d[b * n + i]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-13, "n={n} rows {a},{b}: {s}");
            }
        }
    }
    let (br, bc) = (6, 9);
    let x: Vec<f64> = (0..br * bc).map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0).collect();
    let y = idct2(&dct2(&x, br, bc), br, bc);
    for (a, b) in x.iter().zip(&y) {
        assert!((a - b).abs() < 1e-13);
    }
    // energy is preserved (Parseval)
    let e1: f64 = x.iter().map(|v| v * v).sum();
    let e2: f64 = dct2(&x, br, bc).iter().map(|v| v * v).sum();
    assert!((e1 - e2).abs() < 1e-12 * e1);
}

#[test]
fn top_k_picks_largest() {
    let c = [0.1, -3.0, 2.0, 0.0, -2.0];
    assert_eq!(top_k(&c, 2), vec![1, 2]);
    assert_eq!(top_k(&c, 3), vec![1, 2, 4]);
    assert_eq!(top_k(&c, 10).len(), 5);
}
