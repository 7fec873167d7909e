//! CPU features, detected once per process and kept in one atomic word.
//!
//! Every dispatching kernel asks here instead of probing the CPU itself, so
//! there is one place that decides which micro-kernels may run. Without
//! `std` (or off x86_64) the answer is what the build enables at compile
//! time, which is all a `no_std` target can know.
//!
//! [`KERNEL_ENV`] (`INFOMAX_KERNEL`) caps what is reported, so that one
//! machine can run the AVX2 or the portable kernels for an A/B benchmark or
//! a test that compares whole runs across kernels.

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
    /// AVX-512 Foundation (the 8 × 32 f32 micro-kernel).
    pub avx512f: bool,
}

/// The environment variable that caps the kernels: `avx512` (no cap),
/// `avx2-fma` (no AVX-512) or `portable` (no SIMD intrinsics at all). Read
/// once, with the features.
pub const KERNEL_ENV: &str = "INFOMAX_KERNEL";

/// The most a run may use, as [`KERNEL_ENV`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// Everything the CPU has.
    Avx512,
    /// No AVX-512: what an AVX2-only CPU (Zen 3) runs.
    Avx2Fma,
    /// No x86 SIMD intrinsics: what a non-x86 target runs.
    Portable,
}

impl Cap {
    /// The values [`KERNEL_ENV`] takes.
    pub const NAMES: &'static str = "avx512, avx2-fma or portable";

    /// `avx512`, `avx2-fma` or `portable`.
    pub fn parse(s: &str) -> Option<Cap> {
        match s {
            "avx512" => Some(Cap::Avx512),
            "avx2-fma" => Some(Cap::Avx2Fma),
            "portable" => Some(Cap::Portable),
            _ => None,
        }
    }

    /// The features left under this cap.
    pub fn apply(self, f: Features) -> Features {
        match self {
            Cap::Avx512 => f,
            Cap::Avx2Fma => Features { avx512f: false, ..f },
            Cap::Portable => Features::default(),
        }
    }
}

/// The cap [`KERNEL_ENV`] asks for: `Ok(None)` when it is unset, `Err` with
/// the value when it names no cap (the CLI refuses to start then; the
/// library runs uncapped).
#[cfg(feature = "std")]
pub fn env_cap() -> Result<Option<Cap>, String> {
    match std::env::var(KERNEL_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(v.to_string_lossy().into_owned()),
        Ok(v) => Cap::parse(&v).map(Some).ok_or(v),
    }
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

    /// What the CPU has, under [`KERNEL_ENV`]'s cap.
    fn detect() -> Self {
        let f = Self::detect_cpu();
        #[cfg(feature = "std")]
        if let Ok(Some(cap)) = env_cap() {
            return cap.apply(f);
        }
        f
    }

    fn detect_cpu() -> Self {
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
    fn caps_remove_what_they_name() {
        let all = Features { avx: true, avx2: true, fma: true, f16c: true, avx512f: true };
        assert_eq!(Cap::Avx512.apply(all), all);
        assert_eq!(Cap::Avx2Fma.apply(all), Features { avx512f: false, ..all });
        assert_eq!(Cap::Portable.apply(all), Features::default());
        assert_eq!(Cap::parse("avx2-fma"), Some(Cap::Avx2Fma));
        assert_eq!(Cap::parse("AVX2"), None);
    }

    #[test]
    fn cached_equals_detected() {
        assert_eq!(features(), Features::detect());
        assert_eq!(features(), Features::detect());
    }
}
