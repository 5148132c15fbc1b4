//! Shared helpers of the rbe-hmm tests: deterministic random inputs and a
//! brute-force enumeration oracle.
#![allow(dead_code)]
use rbe_core::ext::{ops, DType, Tensor};
use rbe_hmm::TransKind;

/// Deterministic values in [lo, hi).
pub fn uniform(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// Rows of log-probabilities (each row log-normalised) of `rows x k` random values.
pub fn log_rows(rows: usize, k: usize, seed: u64) -> Vec<f64> {
    let v = uniform(rows * k, seed, 0.05, 1.0);
    let mut out = Vec::with_capacity(v.len());
    for r in v.chunks(k) {
        let s: f64 = r.iter().sum();
        out.extend(r.iter().map(|x| (x / s).ln()));
    }
    out
}

/// One test problem, float64.
#[derive(Clone)]
pub struct Case {
    pub b: usize,
    pub t: usize,
    pub k: usize,
    pub kind: TransKind,
    pub pi_per_seq: bool,
    pub lens: Vec<usize>,
    pub pi: Vec<f64>,
    pub a: Vec<f64>,
    pub e: Vec<f64>,
}

impl Case {
    /// Random log-probabilities; emissions spread over `escale` nats.
    #[allow(clippy::too_many_arguments)] // a test fixture: every knob of a case
    pub fn random(b: usize, t: usize, k: usize, kind: TransKind, pi_per_seq: bool, lens: Vec<usize>, seed: u64, escale: f64) -> Case {
        let pi = log_rows(if pi_per_seq { b } else { 1 }, k, seed);
        let na = match kind {
            TransKind::Shared => 1,
            TransKind::PerSeq => b,
            TransKind::PerStep => b * t.saturating_sub(1),
        };
        let a = log_rows(na * k, k, seed + 1);
        let e = uniform(b * t * k, seed + 2, -escale, 0.0);
        Case { b, t, k, kind, pi_per_seq, lens, pi, a, e }
    }
    pub fn pi_shape(&self) -> Vec<usize> {
        if self.pi_per_seq {
            vec![self.b, self.k]
        } else {
            vec![self.k]
        }
    }
    pub fn a_shape(&self) -> Vec<usize> {
        match self.kind {
            TransKind::Shared => vec![self.k, self.k],
            TransKind::PerSeq => vec![self.b, self.k, self.k],
            TransKind::PerStep => vec![self.b, self.t - 1, self.k, self.k],
        }
    }
    pub fn tensors(&self, dt: DType) -> [Tensor; 3] {
        let f = |v: &Vec<f64>, s: &[usize]| ops::as_dtype(&Tensor::from_vec(v.clone(), s).unwrap(), dt).unwrap();
        [f(&self.pi, &self.pi_shape()), f(&self.a, &self.a_shape()), f(&self.e, &[self.b, self.t, self.k])]
    }
    pub fn lengths(&self) -> Tensor {
        Tensor::from_vec(self.lens.iter().map(|&l| l as i64).collect::<Vec<i64>>(), &[self.b]).unwrap()
    }
    pub fn pi_of(&self, b: usize, i: usize) -> f64 {
        if self.pi_per_seq {
            self.pi[b * self.k + i]
        } else {
            self.pi[i]
        }
    }
    /// log A of sequence b at step t (t -> t+1), [i][j].
    pub fn a_of(&self, b: usize, t: usize, i: usize, j: usize) -> f64 {
        let k = self.k;
        match self.kind {
            TransKind::Shared => self.a[i * k + j],
            TransKind::PerSeq => self.a[(b * k + i) * k + j],
            TransKind::PerStep => self.a[((b * (self.t - 1) + t) * k + i) * k + j],
        }
    }
    pub fn e_of(&self, b: usize, t: usize, j: usize) -> f64 {
        self.e[(b * self.t + t) * self.k + j]
    }
    /// Sets a_of(b, t, i, j) = -inf for every sequence and step where `zero(i, j)`.
    pub fn structural_zeros(&mut self, zero: impl Fn(usize, usize) -> bool) {
        let k = self.k;
        for (n, v) in self.a.iter_mut().enumerate() {
            let (i, j) = ((n / k) % k, n % k);
            if zero(i, j) {
                *v = f64::NEG_INFINITY;
            }
        }
    }
}

fn lse(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Exact answers by enumerating every state path of one sequence.
pub struct Brute {
    pub ll: f64,
    /// (L, K)
    pub gamma: Vec<f64>,
    /// (L-1, K, K)
    pub xi: Vec<f64>,
    /// the best path (lowest state indices first among exact ties) and its log-probability
    pub best: Vec<usize>,
    pub best_lp: f64,
    /// log alpha and log beta, (L, K)
    pub log_alpha: Vec<f64>,
    pub log_beta: Vec<f64>,
}

pub fn brute(c: &Case, b: usize) -> Brute {
    let (l, k) = (c.lens[b], c.k);
    if l == 0 {
        return Brute { ll: 0.0, gamma: vec![], xi: vec![], best: vec![], best_lp: 0.0, log_alpha: vec![], log_beta: vec![] };
    }
    let n = k.pow(l as u32);
    let mut lps = Vec::with_capacity(n);
    let mut paths = Vec::with_capacity(n);
    for code in 0..n {
        // path in lexicographic order, z_0 most significant
        let mut z = vec![0usize; l];
        let mut x = code;
        for tt in (0..l).rev() {
            z[tt] = x % k;
            x /= k;
        }
        let mut lp = c.pi_of(b, z[0]) + c.e_of(b, 0, z[0]);
        for tt in 1..l {
            lp += c.a_of(b, tt - 1, z[tt - 1], z[tt]) + c.e_of(b, tt, z[tt]);
        }
        lps.push(lp);
        paths.push(z);
    }
    let ll = if l == 0 { 0.0 } else { lse(&lps) };
    let mut gamma = vec![0.0; l * k];
    let mut xi = vec![0.0; l.saturating_sub(1) * k * k];
    let (mut best, mut best_lp) = (vec![0; l], f64::NEG_INFINITY);
    for (z, &lp) in paths.iter().zip(&lps) {
        if ll.is_finite() && lp > f64::NEG_INFINITY {
            let w = (lp - ll).exp();
            for tt in 0..l {
                gamma[tt * k + z[tt]] += w;
            }
            for tt in 0..l.saturating_sub(1) {
                xi[(tt * k + z[tt]) * k + z[tt + 1]] += w;
            }
        }
        if lp > best_lp {
            best_lp = lp;
            best = z.clone();
        }
    }
    // alpha / beta by their definitions (sums over prefixes / suffixes)
    let mut log_alpha = vec![f64::NEG_INFINITY; l * k];
    let mut log_beta = vec![f64::NEG_INFINITY; l * k];
    for tt in 0..l {
        for j in 0..k {
            let mut pre = Vec::new();
            let mut suf = Vec::new();
            for (z, _) in paths.iter().zip(&lps) {
                if z[tt] != j {
                    continue;
                }
                let mut p = c.pi_of(b, z[0]) + c.e_of(b, 0, z[0]);
                for s in 1..=tt {
                    p += c.a_of(b, s - 1, z[s - 1], z[s]) + c.e_of(b, s, z[s]);
                }
                pre.push(p);
                let mut q = 0.0;
                for s in tt + 1..l {
                    q += c.a_of(b, s - 1, z[s - 1], z[s]) + c.e_of(b, s, z[s]);
                }
                suf.push(q);
            }
            // each prefix is counted K^(L-1-t) times and each suffix K^t times
            let rep_pre = (k as f64).powi((l - 1 - tt) as i32).ln();
            let rep_suf = (k as f64).powi(tt as i32).ln();
            log_alpha[tt * k + j] = lse(&pre) - rep_pre;
            log_beta[tt * k + j] = if tt + 1 == l { 0.0 } else { lse(&suf) - rep_suf };
        }
    }
    Brute { ll, gamma, xi, best, best_lp, log_alpha, log_beta }
}

pub fn assert_close(what: &str, got: f64, want: f64, rtol: f64, atol: f64) {
    let ok = (got == want) || (got - want).abs() <= atol + rtol * want.abs();
    assert!(ok, "{what}: got {got}, want {want} (rtol {rtol}, atol {atol})");
}
