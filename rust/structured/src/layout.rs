//! Block geometry of an RBE matrix, the wave-vector charts, and the reference
//! (scalar, f64) generator and vector-Jacobian products of one block
//! (spec sections 1, 2 and 4).
//!
//! The ops in [`crate::ops`] use faster kernels ([`crate::kernels`]); these
//! functions are the definitions they are tested against, and they are usable
//! on their own.
use rbe_core::ext::{value_err, Result};

/// Largest radius used to calibrate the default `kappa`: `1 - 2^-20`.
pub const R_MAX: f64 = 1.0 - 1.0 / (1u64 << 20) as f64;

/// `artanh(r)` for `0 <= r < 1`, accurate near the rim (no `1 - r^2` cancellation).
pub fn artanh(r: f64) -> f64 {
    0.5 * (r.ln_1p() - (-r).ln_1p())
}

/// How an `out x in` matrix is cut into `br x bc` blocks, and the frequency
/// scale `kappa` that maps the tangent chart `p` to the wave vector `k = 2 kappa p`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Layout {
    pub out: usize,
    pub inp: usize,
    pub br: usize,
    pub bc: usize,
    pub kappa: f64,
}

impl Layout {
    /// A layout; `kappa = None` takes the default `pi max(br, bc) / (4 artanh(R_MAX))`,
    /// for which `r = R_MAX` reaches the grid's Nyquist frequency.
    pub fn new(out: usize, inp: usize, br: usize, bc: usize, kappa: Option<f64>) -> Result<Layout> {
        if out == 0 || inp == 0 {
            return Err(value_err!("RBE layout: the matrix must have at least one row and one column, got out={out}, in={inp}"));
        }
        if br == 0 || bc == 0 || br > 65536 || bc > 65536 || br * bc > 65536 {
            return Err(value_err!(
                "RBE layout: block must be at least 1x1 and hold at most 65536 entries (the residual index is 16 bits), got {br}x{bc}"
            ));
        }
        let kappa = kappa.unwrap_or_else(|| Self::default_kappa(br, bc));
        if !(kappa.is_finite() && kappa > 0.0) {
            return Err(value_err!("RBE layout: kappa must be finite and positive, got {kappa}"));
        }
        Ok(Layout { out, inp, br, bc, kappa })
    }
    pub fn default_kappa(br: usize, bc: usize) -> f64 {
        std::f64::consts::PI * br.max(bc) as f64 / (4.0 * artanh(R_MAX))
    }
    /// Block rows and block columns of the grid.
    pub fn grid(&self) -> (usize, usize) {
        (self.out.div_ceil(self.br), self.inp.div_ceil(self.bc))
    }
    pub fn n_blocks(&self) -> usize {
        let (a, b) = self.grid();
        a * b
    }
    /// Entries of one block.
    pub fn block_len(&self) -> usize {
        self.br * self.bc
    }
    /// Local column coordinate `x_j = (2j+1)/bc - 1`.
    #[inline]
    pub fn x(&self, j: usize) -> f64 {
        (2 * j + 1) as f64 / self.bc as f64 - 1.0
    }
    /// Local row coordinate `y_i = (2i+1)/br - 1`.
    #[inline]
    pub fn y(&self, i: usize) -> f64 {
        (2 * i + 1) as f64 / self.br as f64 - 1.0
    }
    /// Rows and columns of block `b` that fall inside the matrix:
    /// `(row0, rows, col0, cols)`.
    pub fn block_extent(&self, b: usize) -> (usize, usize, usize, usize) {
        let (_, nbc) = self.grid();
        let (r, c) = (b / nbc, b % nbc);
        let (r0, c0) = (r * self.br, c * self.bc);
        (r0, self.br.min(self.out - r0), c0, self.bc.min(self.inp - c0))
    }
}

/// One atom's continuous fields in the training (tangent) chart, f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wave {
    pub amp: f64,
    pub phase: f64,
    pub px: f64,
    pub py: f64,
    /// 0 = SIN, 1 = TANH; values in between are the relaxation
    /// `(1 - alpha) sin + alpha tanh` of spec section 5.
    pub alpha: f64,
}

/// Gradients of a loss with respect to one atom's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WaveGrad {
    pub amp: f64,
    pub phase: f64,
    pub kx: f64,
    pub ky: f64,
    pub px: f64,
    pub py: f64,
    /// The bit-gradient `gamma = dL/dalpha`.
    pub alpha: f64,
}

/// Polar (disk) coordinates `(r, theta)` of a tangent-chart point:
/// `r = tanh|p|`, `theta = atan2(py, px)` (0 at the origin).
pub fn polar_of_tangent(px: f64, py: f64) -> (f64, f64) {
    let n = px.hypot(py);
    if n == 0.0 {
        (0.0, 0.0)
    } else {
        (n.tanh(), py.atan2(px))
    }
}

/// Tangent point of disk coordinates: `|p| = artanh(r)`, `p = |p| (cos, sin)(theta)`.
pub fn tangent_of_polar(r: f64, theta: f64) -> (f64, f64) {
    let n = artanh(r);
    (n * theta.cos(), n * theta.sin())
}

/// `(dL/dr, dL/dtheta)` from `(dL/dkx, dL/dky)` at the disk point `(r, theta)`
/// (spec section 4): `k = 2 kappa artanh(r) (cos theta, sin theta)`.
pub fn polar_grads(r: f64, theta: f64, kappa: f64, dkx: f64, dky: f64) -> (f64, f64) {
    let (s, c) = theta.sin_cos();
    let dr = 2.0 * kappa / ((1.0 - r) * (1.0 + r)) * (dkx * c + dky * s);
    let dtheta = 2.0 * kappa * artanh(r) * (-dkx * s + dky * c);
    (dr, dtheta)
}

#[inline]
fn g_alpha(u: f64, alpha: f64) -> (f64, f64, f64, f64) {
    let (s, c) = u.sin_cos();
    let t = u.tanh();
    let g = (1.0 - alpha) * s + alpha * t;
    let dg = (1.0 - alpha) * c + alpha * (1.0 - t * t);
    (g, dg, s, t)
}

/// The full `br x bc` block (row-major) generated by `waves` plus the residual
/// coefficients `(index, value)` (index `u * bc + v` of the orthonormal 2-D DCT-II),
/// straight from the definition of spec section 2.
pub fn block_reference(layout: &Layout, waves: &[Wave], residual: &[(usize, f64)]) -> Vec<f64> {
    let (br, bc, kappa) = (layout.br, layout.bc, layout.kappa);
    let mut w = vec![0.0; br * bc];
    for a in waves {
        let (kx, ky) = (2.0 * kappa * a.px, 2.0 * kappa * a.py);
        for i in 0..br {
            for j in 0..bc {
                let u = kx * layout.x(j) + ky * layout.y(i) + a.phase;
                w[i * bc + j] += a.amp * g_alpha(u, a.alpha).0;
            }
        }
    }
    if !residual.is_empty() {
        let dr = crate::dct::dct_matrix(br);
        let dc = crate::dct::dct_matrix(bc);
        for &(idx, v) in residual {
            let (u, q) = (idx / bc, idx % bc);
            for i in 0..br {
                for j in 0..bc {
                    w[i * bc + j] += v * dr[u * br + i] * dc[q * bc + j];
                }
            }
        }
    }
    w
}

/// Vector-Jacobian products of one block (spec sections 4-6): given
/// `g = dL/dW_blk` (row-major `br x bc`), the gradient of each wave's fields
/// and of each residual coefficient.
pub fn block_vjp_reference(layout: &Layout, waves: &[Wave], residual: &[(usize, f64)], g: &[f64]) -> (Vec<WaveGrad>, Vec<f64>) {
    let (br, bc, kappa) = (layout.br, layout.bc, layout.kappa);
    let mut out = Vec::with_capacity(waves.len());
    for a in waves {
        let (kx, ky) = (2.0 * kappa * a.px, 2.0 * kappa * a.py);
        let mut d = WaveGrad::default();
        for i in 0..br {
            let y = layout.y(i);
            for j in 0..bc {
                let x = layout.x(j);
                let gij = g[i * bc + j];
                let (gv, dg, s, t) = g_alpha(kx * x + ky * y + a.phase, a.alpha);
                let h = gij * a.amp * dg;
                d.amp += gij * gv;
                d.phase += h;
                d.kx += h * x;
                d.ky += h * y;
                d.alpha += gij * a.amp * (t - s);
            }
        }
        d.px = 2.0 * kappa * d.kx;
        d.py = 2.0 * kappa * d.ky;
        out.push(d);
    }
    let mut dres = Vec::with_capacity(residual.len());
    if !residual.is_empty() {
        let dr = crate::dct::dct_matrix(br);
        let dc = crate::dct::dct_matrix(bc);
        for &(idx, _) in residual {
            let (u, q) = (idx / bc, idx % bc);
            let mut s = 0.0;
            for i in 0..br {
                for j in 0..bc {
                    s += g[i * bc + j] * dr[u * br + i] * dc[q * bc + j];
                }
            }
            dres.push(s);
        }
    }
    (out, dres)
}
