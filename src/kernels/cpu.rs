//! CPU features, detected once per process and kept in one atomic word.
//!
//! Every dispatching kernel asks here instead of probing the CPU itself, so
//! there is one place that decides which micro-kernels may run. Without
//! `std` (or off x86_64) the answer is what the build enables at compile
//! time, which is all a `no_std` target can know.

use core::sync::atomic::{AtomicU32, Ordering};

/// The features the dispatching kernels use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// AVX (256-bit float vectors).
    pub avx: bool,
    /// AVX2 (256-bit integer vectors, gathers, permutes).
    pub avx2: bool,
    /// Fused multiply-add on 256-bit vectors.
    pub fma: bool,
    /// Half-precision conversions (`vcvtph2ps`).
    pub f16c: bool,
    /// AVX-512 Foundation (not used by a kernel yet; reported for benches).
    pub avx512f: bool,
}

impl Features {
    /// AVX2 and FMA: what the 6×16 f32 micro-kernel needs.
    #[inline]
    pub fn avx2_fma(self) -> bool {
        self.avx2 && self.fma
    }

    fn to_bits(self) -> u32 {
        u32::from(self.avx)
            | u32::from(self.avx2) << 1
            | u32::from(self.fma) << 2
            | u32::from(self.f16c) << 3
            | u32::from(self.avx512f) << 4
    }

    fn from_bits(b: u32) -> Self {
        Self { avx: b & 1 != 0, avx2: b & 2 != 0, fma: b & 4 != 0, f16c: b & 8 != 0, avx512f: b & 16 != 0 }
    }

    fn detect() -> Self {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        {
            // (Under Miri this reports only the features the build enables,
            // so a plain Miri run takes the portable kernels.)
            Self {
                avx: std::is_x86_feature_detected!("avx"),
                avx2: std::is_x86_feature_detected!("avx2"),
                fma: std::is_x86_feature_detected!("fma"),
                f16c: std::is_x86_feature_detected!("f16c"),
                avx512f: std::is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        {
            Self {
                avx: cfg!(target_feature = "avx"),
                avx2: cfg!(target_feature = "avx2"),
                fma: cfg!(target_feature = "fma"),
                f16c: cfg!(target_feature = "f16c"),
                avx512f: cfg!(target_feature = "avx512f"),
            }
        }
    }
}

/// Set once detection has run: the low bits then hold [`Features`].
const DETECTED: u32 = 1 << 31;

static FEATURES: AtomicU32 = AtomicU32::new(0);

/// The running CPU's features (detected on the first call).
#[inline]
pub fn features() -> Features {
    let bits = FEATURES.load(Ordering::Relaxed);
    if bits & DETECTED != 0 {
        return Features::from_bits(bits);
    }
    let f = Features::detect();
    // Racing first calls store the same value.
    FEATURES.store(f.to_bits() | DETECTED, Ordering::Relaxed);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        for b in 0..32 {
            assert_eq!(Features::from_bits(b).to_bits(), b);
        }
    }

    #[test]
    fn cached_equals_detected() {
        assert_eq!(features(), Features::detect());
        assert_eq!(features(), Features::detect());
    }
}
