//! The scalar trait the kernels are generic over.
//!
//! Kernels run in `f32` for training and inference and in `f64` for the
//! finite-difference tests, so the same code is both shipped and proven.
//! Transcendentals come from `std` when it is there (the platform libm is
//! faster) and from the `libm` crate in `no_std` builds.

use core::fmt::Debug;
use core::iter::Sum;
use core::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// A real scalar: `f32` or `f64`.
pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// −∞.
    const NEG_INFINITY: Self;
    /// ln 2.
    const LN_2: Self;
    /// Nearest representable value.
    fn from_f64(v: f64) -> Self;
    /// Widening (or identity) conversion.
    fn to_f64(self) -> f64;
    /// Nearest representable value of an integer count.
    fn from_usize(v: usize) -> Self {
        Self::from_f64(v as f64)
    }
    /// e^self.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// ln(1 + self), accurate near 0.
    fn ln_1p(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// |self|.
    fn abs(self) -> Self;
    /// Larger of the two (NaN-ignoring like `f32::max`).
    fn max(self, other: Self) -> Self;
    /// Smaller of the two.
    fn min(self, other: Self) -> Self;
    /// Neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// Not a number.
    fn is_nan(self) -> bool;
    /// self * a + b with one rounding. Only fast where FMA is enabled;
    /// portable code uses `*` and `+`.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The slice as `f32`, when `Self` is `f32`: lets generic code hand f32
    /// work to f32-only kernels (the packed training GEMM) without a cast.
    #[inline(always)]
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        let _ = s;
        None
    }
    /// [`Float::as_f32`] for a mutable slice.
    #[inline(always)]
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        let _ = s;
        None
    }
}

/// A method that calls `<$t>::$name` with `std` (the platform's, faster)
/// and the `libm` function `$libm` without it.
macro_rules! std_or_libm {
    ($t:ty, $name:ident($($arg:ident),*), $libm:path) => {
        #[inline(always)]
        fn $name(self $(, $arg: Self)*) -> Self {
            #[cfg(feature = "std")]
            {
                <$t>::$name(self $(, $arg)*)
            }
            #[cfg(not(feature = "std"))]
            {
                $libm(self $(, $arg)*)
            }
        }
    };
}

/// Methods that `core` has for both types: each calls `<$t>::$name`.
macro_rules! from_core {
    ($t:ty, $($name:ident($($arg:ident),*) -> $ret:ty),* $(,)?) => {
        $(
            #[inline(always)]
            fn $name(self $(, $arg: Self)*) -> $ret {
                <$t>::$name(self $(, $arg)*)
            }
        )*
    };
}

macro_rules! impl_float {
    ($t:ty, $exp:path, $ln:path, $ln1p:path, $sqrt:path, $fma:path { $($extra:tt)* }) => {
        impl Float for $t {
            $($extra)*
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const LN_2: Self = core::f64::consts::LN_2 as $t;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            std_or_libm!($t, exp(), $exp);
            std_or_libm!($t, ln(), $ln);
            std_or_libm!($t, ln_1p(), $ln1p);
            std_or_libm!($t, sqrt(), $sqrt);
            std_or_libm!($t, mul_add(a, b), $fma);
            from_core!($t, abs() -> Self, max(other) -> Self, min(other) -> Self, is_finite() -> bool, is_nan() -> bool);
        }
    };
}

impl_float!(f32, libm::expf, libm::logf, libm::log1pf, libm::sqrtf, libm::fmaf {
    #[inline(always)]
    fn as_f32(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    #[inline(always)]
    fn as_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
});
impl_float!(f64, libm::exp, libm::log, libm::log1p, libm::sqrt, libm::fma {});
