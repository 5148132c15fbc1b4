//! Counter-based deterministic random number generation (Philox4x32-10).
//!
//! # Design
//!
//! The generator is *counter based* (Salmon, Moraes, Dror, Shaw, "Parallel
//! random numbers: as easy as 1, 2, 3", SC'11).  A single call to the Philox
//! bijection maps a 128-bit counter and a 64-bit key to 128 random bits (one
//! *block* of four `u32` words).  Nothing is carried between blocks, so any
//! block can be computed independently of all others; this is what makes the
//! results bit-identical regardless of how work is split across threads.
//!
//! The state of a [`Generator`] is just `(seed, offset)`:
//!
//! * key     = `[seed as u32, (seed >> 32) as u32]`
//! * block `b` of the main stream uses counter `[b as u32, (b >> 32) as u32, 0, 0]`
//! * `offset` is the index of the next unused block.
//!
//! Concatenating the blocks `offset, offset + 1, ...` gives a word stream
//! `w[0], w[1], ...` (block `offset + k` supplies words `4k .. 4k + 4`, in
//! output order `x[0], x[1], x[2], x[3]`).
//!
//! Every fill starts at a block boundary, gives element `i` a fixed number of
//! words (`wpe`, words per element) starting at word `i * wpe`, and then
//! advances `offset` by `ceil(n * wpe / 4)` blocks, i.e. always a whole number
//! of blocks.  Element `i` is therefore a pure function of
//! `(seed, offset at call, i)` – a parallel implementation can hand chunk
//! `[a, b)` to a thread, which starts at block `offset + a * wpe / 4` (choose
//! `a` such that `a * wpe` is a multiple of 4) and produces identical bits.
//!
//! | method              | words / element           | blocks consumed for `n` elements |
//! |---------------------|---------------------------|----------------------------------|
//! | `fill_uniform_f64`  | 2                         | `ceil(n / 2)`                    |
//! | `fill_uniform_f32`  | 1                         | `ceil(n / 4)`                    |
//! | `fill_normal_f64`   | 4 per *pair* of elements  | `ceil(n / 2)`                    |
//! | `fill_normal_f32`   | 2 per *pair* of elements  | `ceil(n / 4)`                    |
//! | `fill_randint`      | 2 (+ side stream, below)  | `ceil(n / 2)`                    |
//! | `bernoulli_f64`     | 2                         | `ceil(n / 2)`                    |
//! | `randperm(n)`       | 2 per swap (`n - 1` swaps)| `ceil((n - 1) / 2)` (0 for n ≤ 1)|
//! | `next_u64`          | one whole block           | 1                                |
//!
//! Box–Muller normals are generated in pairs: pair `k` produces elements
//! `2k` (cosine branch) and `2k + 1` (sine branch); for odd `n` the sine branch
//! of the last pair is discarded (its words are still consumed).
//!
//! `fill_randint` / `randperm` are exactly unbiased (Lemire's multiply-shift
//! with rejection).  To keep the amount of main-stream data consumed
//! deterministic, a rejected candidate is *not* replaced by the next word of
//! the main stream.  Instead retry number `t >= 1` for the element stored in
//! lane `l` (`l = i % 2`) of main-stream block `b` takes the 64-bit lane `l`
//! of the side block with counter `[b as u32, (b >> 32) as u32, t, 1]`.  Side
//! counters have a non-zero last word and can never collide with the main
//! stream.  The result is still a pure function of `(seed, offset, i)`.
//!
//! Floating-point transcendental functions (`ln`, `sin`, `cos`, `sqrt`) come
//! from the platform `std`; results are bit-identical across thread counts
//! and runs on a given platform (the raw integer stream is identical on every
//! platform).

/// Philox4x32 multipliers and Weyl key increments (Random123 / SC'11 paper).
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9; // golden ratio
const PHILOX_W1: u32 = 0xBB67_AE85; // sqrt(3) - 1
const PHILOX_ROUNDS: usize = 10;

#[inline(always)]
fn mulhilo32(a: u32, b: u32) -> (u32, u32) {
    let p = (a as u64) * (b as u64);
    ((p >> 32) as u32, p as u32)
}

#[inline(always)]
fn philox_round(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo32(PHILOX_M0, ctr[0]);
    let (hi1, lo1) = mulhilo32(PHILOX_M1, ctr[2]);
    [hi1 ^ ctr[1] ^ key[0], lo1, hi0 ^ ctr[3] ^ key[1], lo0]
}

/// The Philox4x32-10 bijection: maps a 128-bit counter under a 64-bit key to
/// 128 pseudo-random bits.  Matches the Random123 reference implementation
/// (`philox4x32_R(10, ctr, key)`).
#[inline]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = ctr;
    let mut k = key;
    for r in 0..PHILOX_ROUNDS {
        if r > 0 {
            k[0] = k[0].wrapping_add(PHILOX_W0);
            k[1] = k[1].wrapping_add(PHILOX_W1);
        }
        c = philox_round(c, k);
    }
    c
}

#[inline(always)]
fn key_of(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// Main-stream block `b` for `seed`.
#[inline(always)]
fn main_block(seed: u64, b: u64) -> [u32; 4] {
    philox4x32_10([b as u32, (b >> 32) as u32, 0, 0], key_of(seed))
}

/// Side-stream block used for rejection retries (never overlaps the main stream).
#[inline(always)]
fn side_block(seed: u64, b: u64, attempt: u32) -> [u32; 4] {
    philox4x32_10([b as u32, (b >> 32) as u32, attempt, 1], key_of(seed))
}

#[inline(always)]
fn words_to_u64(lo: u32, hi: u32) -> u64 {
    (lo as u64) | ((hi as u64) << 32)
}

/// Number of blocks needed for `n` elements of `wpe` words each.
#[inline]
fn blocks_for(n: usize, wpe: usize) -> u64 {
    let words = (n as u128) * (wpe as u128);
    words.div_ceil(4) as u64
}

const TWO_POW_M53: f64 = 1.0 / 9_007_199_254_740_992.0; // 2^-53
const TWO_POW_M52: f64 = 1.0 / 4_503_599_627_370_496.0; // 2^-52
const TWO_POW_M24: f32 = 1.0 / 16_777_216.0; // 2^-24
const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0; // 2^-32

/// Uniform in [0, 1) with 53-bit resolution.
#[inline(always)]
fn u64_to_unit_f64(x: u64) -> f64 {
    ((x >> 11) as f64) * TWO_POW_M53
}

/// Uniform in the open interval (0, 1): values `(k + 0.5) * 2^-52`, k < 2^52 (exact).
#[inline(always)]
fn u64_to_open_unit_f64(x: u64) -> f64 {
    (((x >> 12) as f64) + 0.5) * TWO_POW_M52
}

/// Uniform in [0, 1) with 24-bit resolution.
#[inline(always)]
fn u32_to_unit_f32(x: u32) -> f32 {
    ((x >> 8) as f32) * TWO_POW_M24
}

/// Uniform in the open interval (0, 1): values `(k + 0.5) * 2^-32` (exact in f64).
#[inline(always)]
fn u32_to_open_unit_f64(x: u32) -> f64 {
    ((x as f64) + 0.5) * TWO_POW_M32
}

/// Largest f64 strictly less than `x` (x finite).
#[inline]
fn prev_f64(x: f64) -> f64 {
    if x == 0.0 {
        return -f64::from_bits(1);
    }
    let b = x.to_bits();
    if x > 0.0 {
        f64::from_bits(b - 1)
    } else {
        f64::from_bits(b + 1)
    }
}

/// Largest f32 strictly less than `x` (x finite).
#[inline]
fn prev_f32(x: f32) -> f32 {
    if x == 0.0 {
        return -f32::from_bits(1);
    }
    let b = x.to_bits();
    if x > 0.0 {
        f32::from_bits(b - 1)
    } else {
        f32::from_bits(b + 1)
    }
}

/// Unbiased value in `[0, range)` (range >= 1) by Lemire's method; candidate
/// `x0` comes from the main stream, retries from the side stream of block `b`,
/// lane `lane` (0 or 1).
#[inline]
fn bounded_u64(seed: u64, b: u64, lane: usize, x0: u64, range: u64) -> u64 {
    debug_assert!(range >= 1);
    let mut x = x0;
    let mut attempt: u32 = 0;
    loop {
        let m = (x as u128) * (range as u128);
        let l = m as u64;
        if l >= range {
            return (m >> 64) as u64;
        }
        let threshold = range.wrapping_neg() % range; // 2^64 mod range
        if l >= threshold {
            return (m >> 64) as u64;
        }
        attempt = attempt.wrapping_add(1);
        let s = side_block(seed, b, attempt);
        x = words_to_u64(s[2 * lane], s[2 * lane + 1]);
    }
}

/// Deterministic counter-based generator (Philox4x32-10).
///
/// State is `(seed, offset)` where `offset` counts consumed 128-bit blocks.
#[derive(Clone, Debug)]
pub struct Generator {
    seed: u64,
    /// Number of 128-bit Philox blocks consumed so far.
    offset: u64,
}

impl Default for Generator {
    fn default() -> Self {
        Generator::new(0)
    }
}

impl Generator {
    /// New generator with the given seed and offset 0.
    pub fn new(seed: u64) -> Self {
        Generator { seed, offset: 0 }
    }

    /// Current seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Reseed; resets the offset to 0.
    pub fn manual_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.offset = 0;
    }

    /// `(seed, offset)`; `offset` = number of blocks consumed.
    pub fn get_state(&self) -> (u64, u64) {
        (self.seed, self.offset)
    }

    /// Restore a state previously returned by [`Generator::get_state`].
    pub fn set_state(&mut self, seed: u64, offset: u64) {
        self.seed = seed;
        self.offset = offset;
    }

    /// Reserve `blocks` blocks, returning the first block index of the reservation.
    #[inline]
    fn reserve(&mut self, blocks: u64) -> u64 {
        let start = self.offset;
        self.offset = self.offset.wrapping_add(blocks);
        start
    }

    /// Fill with uniforms in `[low, high)`, 53-bit resolution (2 words per
    /// element, `ceil(n/2)` blocks).  If `low == high` every element is `low`.
    pub fn fill_uniform_f64(&mut self, out: &mut [f64], low: f64, high: f64) {
        assert!(low.is_finite() && high.is_finite(), "uniform: bounds must be finite");
        assert!(low <= high, "uniform: low must be <= high");
        let seed = self.seed;
        let start = self.reserve(blocks_for(out.len(), 2));
        let span = high - low;
        let top = if low < high { prev_f64(high) } else { low };
        for (k, chunk) in out.chunks_mut(2).enumerate() {
            let w = main_block(seed, start.wrapping_add(k as u64));
            for (j, o) in chunk.iter_mut().enumerate() {
                let u = u64_to_unit_f64(words_to_u64(w[2 * j], w[2 * j + 1]));
                let v = low + span * u;
                *o = if v < high { v } else { top };
            }
        }
    }

    /// Fill with uniforms in `[low, high)`, 24-bit resolution (1 word per
    /// element, `ceil(n/4)` blocks).  Never returns `high` (results that
    /// round up to `high` are clamped to the largest f32 below `high`).
    /// If `low == high` every element is `low`.
    pub fn fill_uniform_f32(&mut self, out: &mut [f32], low: f32, high: f32) {
        assert!(low.is_finite() && high.is_finite(), "uniform: bounds must be finite");
        assert!(low <= high, "uniform: low must be <= high");
        let seed = self.seed;
        let start = self.reserve(blocks_for(out.len(), 1));
        let span = high - low;
        let top = if low < high { prev_f32(high).max(low) } else { low };
        for (k, chunk) in out.chunks_mut(4).enumerate() {
            let w = main_block(seed, start.wrapping_add(k as u64));
            for (j, o) in chunk.iter_mut().enumerate() {
                let u = u32_to_unit_f32(w[j]);
                let v = low + span * u;
                *o = if v < high { v } else { top };
            }
        }
    }

    /// Fill with N(mean, std^2) via Box–Muller on open-interval (0,1)
    /// uniforms (52-bit, never 0 so no `ln(0)`).  One block per pair of
    /// elements: `ceil(n/2)` blocks.  Element `2k` = `r cos θ`, `2k+1` = `r sin θ`.
    pub fn fill_normal_f64(&mut self, out: &mut [f64], mean: f64, std: f64) {
        assert!(std >= 0.0, "normal: std must be >= 0");
        let seed = self.seed;
        let start = self.reserve(blocks_for(out.len(), 2));
        for (k, chunk) in out.chunks_mut(2).enumerate() {
            let w = main_block(seed, start.wrapping_add(k as u64));
            let u1 = u64_to_open_unit_f64(words_to_u64(w[0], w[1]));
            let u2 = u64_to_open_unit_f64(words_to_u64(w[2], w[3]));
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f64::consts::TAU * u2;
            let (s, c) = theta.sin_cos();
            chunk[0] = mean + std * (r * c);
            if chunk.len() > 1 {
                chunk[1] = mean + std * (r * s);
            }
        }
    }

    /// Fill with N(mean, std^2) in f32.  Box–Muller on open-interval (0,1)
    /// uniforms built from single 32-bit words, evaluated in f64 and rounded
    /// to f32.  Two pairs per block: `ceil(n/4)` blocks.
    pub fn fill_normal_f32(&mut self, out: &mut [f32], mean: f32, std: f32) {
        assert!(std >= 0.0, "normal: std must be >= 0");
        let seed = self.seed;
        let start = self.reserve(blocks_for(out.len(), 1));
        let (mean64, std64) = (mean as f64, std as f64);
        for (k, chunk) in out.chunks_mut(4).enumerate() {
            let w = main_block(seed, start.wrapping_add(k as u64));
            for (p, pair) in chunk.chunks_mut(2).enumerate() {
                let u1 = u32_to_open_unit_f64(w[2 * p]);
                let u2 = u32_to_open_unit_f64(w[2 * p + 1]);
                let r = (-2.0 * u1.ln()).sqrt();
                let theta = std::f64::consts::TAU * u2;
                let (s, c) = theta.sin_cos();
                pair[0] = (mean64 + std64 * (r * c)) as f32;
                if pair.len() > 1 {
                    pair[1] = (mean64 + std64 * (r * s)) as f32;
                }
            }
        }
    }

    /// Fill with integers uniform in `[low, high)` (requires `low < high`),
    /// exactly unbiased (Lemire + rejection through the side stream, see the
    /// module docs).  2 words per element, `ceil(n/2)` main-stream blocks.
    pub fn fill_randint(&mut self, out: &mut [i64], low: i64, high: i64) {
        assert!(low < high, "randint: low must be < high");
        let range = (high as i128 - low as i128) as u64; // in [1, 2^64 - 1]
        let seed = self.seed;
        let start = self.reserve(blocks_for(out.len(), 2));
        for (k, chunk) in out.chunks_mut(2).enumerate() {
            let b = start.wrapping_add(k as u64);
            let w = main_block(seed, b);
            for (j, o) in chunk.iter_mut().enumerate() {
                let x = words_to_u64(w[2 * j], w[2 * j + 1]);
                let v = bounded_u64(seed, b, j, x, range);
                *o = low.wrapping_add(v as i64);
            }
        }
    }

    /// Fill with Bernoulli(p) samples as 0.0 / 1.0 (`u < p`, u 53-bit uniform
    /// in [0,1)); p = 0 gives all zeros, p = 1 all ones.  `ceil(n/2)` blocks.
    pub fn bernoulli_f64(&mut self, out: &mut [f64], p: f64) {
        assert!((0.0..=1.0).contains(&p), "bernoulli: p must be in [0, 1]");
        let seed = self.seed;
        let start = self.reserve(blocks_for(out.len(), 2));
        for (k, chunk) in out.chunks_mut(2).enumerate() {
            let w = main_block(seed, start.wrapping_add(k as u64));
            for (j, o) in chunk.iter_mut().enumerate() {
                let u = u64_to_unit_f64(words_to_u64(w[2 * j], w[2 * j + 1]));
                *o = if u < p { 1.0 } else { 0.0 };
            }
        }
    }

    /// Random permutation of `0..n` (Fisher–Yates).  Swap `s` (s = 0..n-1)
    /// exchanges position `i = n-1-s` with `j` uniform in `[0, i]`, drawn
    /// exactly like element `s` of `fill_randint`.  `ceil((n-1)/2)` blocks.
    pub fn randperm(&mut self, n: usize) -> Vec<i64> {
        let mut perm = vec![0i64; n];
        self.randperm_into(&mut perm);
        perm
    }

    /// A random permutation of `0..perm.len()` written into `perm`.
    pub fn randperm_into(&mut self, perm: &mut [i64]) {
        let n = perm.len();
        for (i, p) in perm.iter_mut().enumerate() {
            *p = i as i64;
        }
        if n <= 1 {
            return;
        }
        let swaps = n - 1;
        let seed = self.seed;
        let start = self.reserve(blocks_for(swaps, 2));
        let mut w = [0u32; 4];
        for s in 0..swaps {
            let b = start.wrapping_add((s / 2) as u64);
            let lane = s % 2;
            if lane == 0 {
                w = main_block(seed, b);
            }
            let i = n - 1 - s;
            let x = words_to_u64(w[2 * lane], w[2 * lane + 1]);
            let j = bounded_u64(seed, b, lane, x, (i + 1) as u64) as usize;
            perm.swap(i, j);
        }
    }

    /// 64 uniformly random bits (words 0 and 1 of the next block; consumes 1 block).
    pub fn next_u64(&mut self) -> u64 {
        let b = self.reserve(1);
        let w = main_block(self.seed, b);
        words_to_u64(w[0], w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_kat_zero() {
        assert_eq!(philox4x32_10([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    }

    #[test]
    fn philox_kat_ones() {
        assert_eq!(philox4x32_10([0xffffffff; 4], [0xffffffff; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    }

    #[test]
    fn philox_kat_pi() {
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn same_seed_same_bits() {
        let mut a = Generator::new(1234);
        let mut b = Generator::new(1234);
        let mut x = vec![0.0f64; 1001];
        let mut y = vec![0.0f64; 1001];
        a.fill_normal_f64(&mut x, 0.0, 1.0);
        b.fill_normal_f64(&mut y, 0.0, 1.0);
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
        let mut xi = vec![0i64; 333];
        let mut yi = vec![0i64; 333];
        a.fill_randint(&mut xi, -7, 1000);
        b.fill_randint(&mut yi, -7, 1000);
        assert_eq!(xi, yi);
        assert_eq!(a.next_u64(), b.next_u64());
        assert_eq!(a.get_state(), b.get_state());
    }

    #[test]
    fn different_seeds_differ() {
        let mut a = Generator::new(1);
        let mut b = Generator::new(2);
        let mut x = vec![0.0f64; 64];
        let mut y = vec![0.0f64; 64];
        a.fill_uniform_f64(&mut x, 0.0, 1.0);
        b.fill_uniform_f64(&mut y, 0.0, 1.0);
        let same = x.iter().zip(&y).filter(|(p, q)| p == q).count();
        assert_eq!(same, 0);
        // Seeds differing only in the high half of the key also differ.
        let mut c = Generator::new(1 | (1u64 << 32));
        assert_ne!(Generator::new(1).next_u64(), c.next_u64());
    }

    #[test]
    fn state_replay_and_offsets() {
        let mut g = Generator::new(42);
        let mut tmp = vec![0.0f32; 5];
        g.fill_uniform_f32(&mut tmp, 0.0, 1.0); // ceil(5/4) = 2 blocks
        assert_eq!(g.get_state(), (42, 2));
        let (s, o) = g.get_state();
        let mut x = vec![0.0f64; 77];
        g.fill_normal_f64(&mut x, 1.0, 2.0); // ceil(77/2) = 39 blocks
        assert_eq!(g.get_state(), (42, 2 + 39));
        let after = g.next_u64();
        let mut h = Generator::new(999);
        h.set_state(s, o);
        let mut y = vec![0.0f64; 77];
        h.fill_normal_f64(&mut y, 1.0, 2.0);
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
        assert_eq!(h.next_u64(), after);
        // manual_seed resets offset
        h.manual_seed(7);
        assert_eq!(h.get_state(), (7, 0));
        assert_eq!(h.seed(), 7);
        // block accounting of the other fills
        let mut g = Generator::new(0);
        g.fill_uniform_f64(&mut [0.0; 3], 0.0, 1.0);
        assert_eq!(g.get_state().1, 2);
        g.fill_normal_f32(&mut [0.0; 5], 0.0, 1.0);
        assert_eq!(g.get_state().1, 4);
        g.fill_randint(&mut [0; 5], 0, 3);
        assert_eq!(g.get_state().1, 7);
        g.bernoulli_f64(&mut [0.0; 4], 0.5);
        assert_eq!(g.get_state().1, 9);
        g.randperm(6); // 5 swaps -> 3 blocks
        assert_eq!(g.get_state().1, 12);
        g.randperm(1);
        assert_eq!(g.get_state().1, 12);
    }

    /// Element i depends only on (seed, offset, i): filling in chunks aligned
    /// to block boundaries, each with its own generator at the right offset,
    /// reproduces the single fill bit for bit.
    #[test]
    fn chunked_fill_matches_single_fill() {
        let n = 1003;
        let mut g = Generator::new(5);
        g.set_state(5, 17);
        let mut full = vec![0.0f64; n];
        g.fill_normal_f64(&mut full, 0.0, 1.0);
        let mut pieced = vec![0.0f64; n];
        for (c, chunk) in pieced.chunks_mut(100).enumerate() {
            let mut h = Generator::new(0);
            h.set_state(5, 17 + (c as u64) * 50); // 100 elems * 2 words / 4
            h.fill_normal_f64(chunk, 0.0, 1.0);
        }
        assert!(full.iter().zip(&pieced).all(|(p, q)| p.to_bits() == q.to_bits()));

        let mut g = Generator::new(9);
        let mut full = vec![0i64; n];
        g.fill_randint(&mut full, 0, 3); // small range: rejections happen
        let mut pieced = vec![0i64; n];
        for (c, chunk) in pieced.chunks_mut(64).enumerate() {
            let mut h = Generator::new(0);
            h.set_state(9, (c as u64) * 32);
            h.fill_randint(chunk, 0, 3);
        }
        assert_eq!(full, pieced);

        let mut g = Generator::new(3);
        let mut full = vec![0.0f32; n];
        g.fill_uniform_f32(&mut full, -1.0, 1.0);
        let mut pieced = vec![0.0f32; n];
        for (c, chunk) in pieced.chunks_mut(256).enumerate() {
            let mut h = Generator::new(0);
            h.set_state(3, (c as u64) * 64);
            h.fill_uniform_f32(chunk, -1.0, 1.0);
        }
        assert!(full.iter().zip(&pieced).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    fn moments(x: &[f64]) -> (f64, f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let m4 = x.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / n;
        (mean, var, m4 / (var * var))
    }

    #[test]
    fn uniform_f64_stats() {
        let mut g = Generator::new(2024);
        let mut x = vec![0.0f64; 1_000_000];
        g.fill_uniform_f64(&mut x, 0.0, 1.0);
        assert!(x.iter().all(|&v| (0.0..1.0).contains(&v)));
        let (mean, var, _) = moments(&x);
        assert!((mean - 0.5).abs() < 0.002, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
        let mut y = vec![0.0f64; 10_000];
        g.fill_uniform_f64(&mut y, -3.0, 5.0);
        assert!(y.iter().all(|&v| (-3.0..5.0).contains(&v)));
    }

    #[test]
    fn uniform_f32_stats_and_never_high() {
        let mut g = Generator::new(77);
        let mut x = vec![0.0f32; 1_000_000];
        g.fill_uniform_f32(&mut x, 0.0, 1.0);
        assert!(x.iter().all(|&v| (0.0..1.0).contains(&v)));
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (mean, var, _) = moments(&xd);
        assert!((mean - 0.5).abs() < 0.002, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
        // Ranges where low + span*u would round up to high.
        for &(lo, hi) in &[(-1.0f32, 1.0f32), (1.0e-9, 1.0), (1000.0, 1000.5), (-1.0, -0.0)] {
            g.fill_uniform_f32(&mut x[..200_000], lo, hi);
            assert!(x[..200_000].iter().all(|&v| v >= lo && v < hi), "range {lo}..{hi}");
        }
        // Degenerate interval.
        let mut z = [0.0f32; 3];
        g.fill_uniform_f32(&mut z, 2.0, 2.0);
        assert_eq!(z, [2.0; 3]);
    }

    #[test]
    fn prev_float_helpers() {
        assert_eq!(prev_f32(1.0), 1.0 - f32::EPSILON / 2.0);
        assert!(prev_f32(0.0) < 0.0);
        assert!(prev_f32(-1.0) < -1.0);
        assert_eq!(prev_f64(1.0), 1.0 - f64::EPSILON / 2.0);
        assert!(prev_f64(-0.0) < 0.0);
        // Largest possible uniform draw rounds to 1.0 in f32 when shifted: clamped.
        let u = u32_to_unit_f32(u32::MAX);
        assert!(u < 1.0);
        // ...but the naive affine map can round up to `high`; the fill clamps it.
        assert_eq!(1000.0f32 + 0.5f32 * u, 1000.5f32);
    }

    #[test]
    fn normal_f64_stats() {
        let mut g = Generator::new(31337);
        let mut x = vec![0.0f64; 1_000_000];
        g.fill_normal_f64(&mut x, 0.0, 1.0);
        assert!(x.iter().all(|v| v.is_finite()));
        let (mean, var, kurt) = moments(&x);
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var.sqrt() - 1.0).abs() < 0.005, "std {}", var.sqrt());
        assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt}");
        g.fill_normal_f64(&mut x, 3.0, 0.5);
        let (mean, var, _) = moments(&x);
        assert!((mean - 3.0).abs() < 0.003, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.003, "std {}", var.sqrt());
    }

    #[test]
    fn normal_f32_stats() {
        let mut g = Generator::new(8);
        let mut x = vec![0.0f32; 1_000_001];
        g.fill_normal_f32(&mut x, -2.0, 3.0);
        assert!(x.iter().all(|v| v.is_finite()));
        let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let (mean, var, kurt) = moments(&xd);
        assert!((mean + 2.0).abs() < 0.015, "mean {mean}");
        assert!((var.sqrt() - 3.0).abs() < 0.015, "std {}", var.sqrt());
        assert!((kurt - 3.0).abs() < 0.05, "kurtosis {kurt}");
    }

    #[test]
    fn open_interval_uniforms() {
        assert!(u64_to_open_unit_f64(0) > 0.0);
        assert!(u64_to_open_unit_f64(u64::MAX) < 1.0);
        assert!(u32_to_open_unit_f64(0) > 0.0);
        assert!(u32_to_open_unit_f64(u32::MAX) < 1.0);
    }

    #[test]
    fn randint_range_and_chi_square() {
        let mut g = Generator::new(555);
        let n = 1_000_000;
        let mut x = vec![0i64; n];
        g.fill_randint(&mut x, 0, 10);
        let mut counts = [0usize; 10];
        for &v in &x {
            assert!((0..10).contains(&v));
            counts[v as usize] += 1;
        }
        let e = n as f64 / 10.0;
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        // df = 9: P(chi2 > 27.88) = 0.001
        assert!(chi2 < 27.88, "chi2 {chi2} counts {counts:?}");

        g.fill_randint(&mut x[..100_000], -5, 3);
        assert!(x[..100_000].iter().all(|&v| (-5..3).contains(&v)));
        assert!(x[..100_000].contains(&-5));
        assert!(x[..100_000].contains(&2));
        // Extreme ranges.
        g.fill_randint(&mut x[..1000], i64::MIN, i64::MAX);
        assert!(x[..1000].iter().all(|&v| v < i64::MAX));
        g.fill_randint(&mut x[..10], 7, 8);
        assert!(x[..10].iter().all(|&v| v == 7));
        // Range just above 2^63: rejection probability ~1/2 per draw.
        let lo = -(1i64 << 62) * 2 + 1;
        g.fill_randint(&mut x[..10_000], lo, i64::MAX);
        assert!(x[..10_000].iter().all(|&v| v >= lo && v < i64::MAX));
    }

    #[test]
    fn bernoulli_stats() {
        let mut g = Generator::new(4);
        let mut x = vec![0.0f64; 1_000_000];
        g.bernoulli_f64(&mut x, 0.3);
        assert!(x.iter().all(|&v| v == 0.0 || v == 1.0));
        let m = x.iter().sum::<f64>() / x.len() as f64;
        assert!((m - 0.3).abs() < 0.003, "mean {m}");
        g.bernoulli_f64(&mut x[..1000], 0.0);
        assert!(x[..1000].iter().all(|&v| v == 0.0));
        g.bernoulli_f64(&mut x[..1000], 1.0);
        assert!(x[..1000].iter().all(|&v| v == 1.0));
    }

    #[test]
    fn randperm_is_permutation() {
        let mut g = Generator::new(10);
        for &n in &[0usize, 1, 2, 3, 10, 1000, 4097] {
            let p = g.randperm(n);
            assert_eq!(p.len(), n);
            let mut seen = vec![false; n];
            for &v in &p {
                assert!(v >= 0 && (v as usize) < n);
                assert!(!seen[v as usize]);
                seen[v as usize] = true;
            }
        }
        // Not the identity for a reasonable size, and deterministic.
        let a = Generator::new(3).randperm(100);
        let b = Generator::new(3).randperm(100);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<i64>>());
        // Rough uniformity: position of element 0 over many perms of size 4.
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            let p = g.randperm(4);
            counts[p.iter().position(|&v| v == 0).unwrap()] += 1;
        }
        for &c in &counts {
            assert!((c as f64 - 10_000.0).abs() < 500.0, "{counts:?}");
        }
    }

    #[test]
    fn next_u64_varies() {
        let mut g = Generator::new(0);
        let a = g.next_u64();
        let b = g.next_u64();
        assert_ne!(a, b);
        assert_eq!(g.get_state(), (0, 2));
        // next_u64 at offset 0, seed 0 = low words of the zero KAT block.
        assert_eq!(a, 0xe169c58d_6627e8d5);
    }
}
