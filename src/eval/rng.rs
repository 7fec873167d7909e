//! SplitMix64, the eval module's only source of randomness.
//!
//! Kept private to `eval` so the public API does not grow a second RNG type;
//! it is the same generator (and the same stream derivation) as the tests'
//! helper, so a crate-wide RNG can replace it without changing any draw.

/// SplitMix64 (Steele, Lea, Flood 2014): one `u64` of state, passes BigCrush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator from a raw seed.
    pub(crate) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Stream `stream` of `seed`: independent sequences for independent uses
    /// (initialisation, shuffling, dropout), so changing how many numbers one
    /// use draws never shifts another.
    pub(crate) fn derive(seed: u64, stream: u64) -> Self {
        let mut r = Self::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's multiply-shift
    /// with rejection); 0 for `n <= 1`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle of `v` in place.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            // i + 1 <= len, which fits u64; the draw is < i + 1, so it fits usize.
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}
