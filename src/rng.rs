//! SplitMix64 (Steele, Lea and Flood, 2014): a small, fast RNG whose whole
//! state is one `u64`, so a trainer checkpoints it as a number
//! ([`Rng::state`], [`Rng::from_state`]). Deterministic on every platform.
//!
//! Also [`derive_seed`], which gives independent streams from one base seed
//! (one per epoch for shuffling, one per batch for augmentation), so resuming
//! at epoch `e`, batch `b` needs nothing but `(seed, e, b)`.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective 64-bit mixer.
#[inline]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for stream `stream`, element `index`, derived from `seed`.
/// Different `(stream, index)` pairs give unrelated seeds.
#[inline]
pub const fn derive_seed(seed: u64, stream: u64, index: u64) -> u64 {
    let s = mix64(seed ^ mix64(stream.wrapping_add(GOLDEN)));
    mix64(s.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// The SplitMix64 generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "train", derive(serde::Serialize, serde::Deserialize))]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded with `seed` (any value, 0 included).
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// Restores a generator from [`Rng::state`]; it continues exactly where
    /// the saved one stopped.
    pub const fn from_state(state: u64) -> Self {
        Rng { state }
    }

    /// The whole state, for checkpoints.
    pub const fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in `0..n`, without modulo bias (Lemire's multiply-shift with
    /// rejection). Returns 0 for `n == 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform in `0..n` as `usize`. Returns 0 for `n == 0`.
    #[inline]
    pub fn below_usize(&mut self, n: usize) -> usize {
        // usize fits in u64 on every supported target, and the result is < n.
        self.below(n as u64) as usize
    }

    /// A fair coin.
    #[inline]
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Fisher–Yates (Durstenfeld) shuffle of `xs` in place: for `i` from the
    /// last index down to 1, swap `xs[i]` with `xs[j]`, `j` uniform in `0..=i`.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below_usize(i + 1);
            xs.swap(i, j);
        }
    }

    /// A generator for stream `stream` of `seed` (independent sequences for
    /// independent uses: initialisation, prior samples, ...).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = Self::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(core::f64::consts::TAU * u2)
    }
}
