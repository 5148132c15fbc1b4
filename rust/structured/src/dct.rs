//! The orthonormal DCT-II used by the residual (spec section 6).
//!
//! `D[u, i] = s_u cos(pi (2i + 1) u / (2n))` with `s_0 = sqrt(1/n)` and
//! `s_u = sqrt(2/n)`: `D D^T = I`, so the 2-D transform of a block `R` is
//! `C = D_r R D_c^T` and its inverse `R = D_r^T C D_c`.
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

/// The `n x n` orthonormal DCT-II matrix, row-major (row `u` is basis vector `u`).
pub fn dct_matrix(n: usize) -> Vec<f64> {
    let mut d = vec![0.0; n * n];
    let nf = n as f64;
    for u in 0..n {
        let s = if u == 0 { (1.0 / nf).sqrt() } else { (2.0 / nf).sqrt() };
        for i in 0..n {
            // (2i+1)u mod 4n keeps the argument small and exact
            let m = ((2 * i + 1) * u) % (4 * n);
            d[u * n + i] = s * (std::f64::consts::PI * m as f64 / (2.0 * nf)).cos();
        }
    }
    d
}

/// Cached DCT matrices (blocks reuse a handful of sizes).
pub fn dct_cached(n: usize) -> Arc<Vec<f64>> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<Vec<f64>>>>> = OnceLock::new();
    let m = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    m.lock().entry(n).or_insert_with(|| Arc::new(dct_matrix(n))).clone()
}

/// `C = D_r R D_c^T` of a row-major `br x bc` block.
pub fn dct2(block: &[f64], br: usize, bc: usize) -> Vec<f64> {
    let (dr, dc) = (dct_cached(br), dct_cached(bc));
    // T = R D_c^T  (br x bc), then C = D_r T
    let mut t = vec![0.0; br * bc];
    for i in 0..br {
        for v in 0..bc {
            t[i * bc + v] = (0..bc).map(|j| block[i * bc + j] * dc[v * bc + j]).sum();
        }
    }
    let mut c = vec![0.0; br * bc];
    for u in 0..br {
        for v in 0..bc {
            c[u * bc + v] = (0..br).map(|i| dr[u * br + i] * t[i * bc + v]).sum();
        }
    }
    c
}

/// `R = D_r^T C D_c`, the inverse of [`dct2`].
pub fn idct2(coef: &[f64], br: usize, bc: usize) -> Vec<f64> {
    let (dr, dc) = (dct_cached(br), dct_cached(bc));
    let mut t = vec![0.0; br * bc];
    for u in 0..br {
        for j in 0..bc {
            t[u * bc + j] = (0..bc).map(|v| coef[u * bc + v] * dc[v * bc + j]).sum();
        }
    }
    let mut r = vec![0.0; br * bc];
    for i in 0..br {
        for j in 0..bc {
            r[i * bc + j] = (0..br).map(|u| dr[u * br + i] * t[u * bc + j]).sum();
        }
    }
    r
}

/// Indices of the `k` largest coefficients in magnitude (ties: lower index
/// first), in increasing index order.
pub fn top_k(coef: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..coef.len()).collect();
    idx.sort_by(|&a, &b| coef[b].abs().total_cmp(&coef[a].abs()).then(a.cmp(&b)));
    idx.truncate(k.min(coef.len()));
    idx.sort_unstable();
    idx
}
