//! This machine's f32 FMA peak at this moment, the peer of BENCHMARKS.md's
//! "GEMM-bound phases vs the FMA peak" row: every thread runs 12 independent
//! chains of 256-bit FMAs (AVX2 + FMA), enough to cover the FMA latency on
//! two FMA pipes, with nothing else in the loop; then, where the CPU has
//! AVX-512 F, the same with 512-bit FMAs. The peak is the higher of the two:
//! Zen 4 runs a 512-bit FMA as two 256-bit halves (the same peak), Zen 5
//! and Intel server parts have full-width 512-bit units (twice the peak).
//!
//! `cargo run --release --example fma_peak -- [--threads N] [--reps R]`
//! (defaults 1 and 11). Prints one JSON line on stdout, which
//! `scripts/compare.py` reads, and a summary on stderr:
//! `{"lib":"fma-peak","threads":1,"what":"ymm-fma","gflops_median":…,"gflops_min":…,"gflops_max":…,"reps":11}`,
//! and a second line with `"what":"zmm-fma"` where AVX-512 F exists.
//! GFLOP/s count 2 FLOP per lane per FMA, summed over the threads. One
//! untimed run warms up first. On a CPU without AVX2 + FMA (or not x86-64)
//! it prints nothing on stdout and exits with an error.

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;
/// Loop trips per run: 12 × 20 M FMAs of 8 lanes, about 40 ms per core.
const ITERS: u64 = 20_000_000;
/// f32 lanes of a 256-bit register.
const LANES: usize = 8;

/// Register width of one probe.
#[derive(Clone, Copy, PartialEq)]
enum Width {
    /// 256-bit (AVX2 + FMA).
    Ymm,
    /// 512-bit (AVX-512 F).
    Zmm,
}

impl Width {
    fn name(self) -> &'static str {
        match self {
            Width::Ymm => "ymm",
            Width::Zmm => "zmm",
        }
    }
    fn lanes(self) -> usize {
        match self {
            Width::Ymm => LANES,
            Width::Zmm => 2 * LANES,
        }
    }
    fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Width::Ymm => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                Width::Zmm => is_x86_feature_detected!("avx512f"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::{
        _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps, _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps,
        _mm256_fmadd_ps, _mm256_set1_ps, _mm256_setzero_ps,
    };
    use std::hint::black_box;
    // acc ← acc·a + b with a just below 1 and a tiny b: the values stay
    // finite and normal however long it runs.
    let a = _mm256_set1_ps(black_box(0.999_999_9));
    let b = _mm256_set1_ps(black_box(1e-7));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for (k, x) in acc.iter_mut().enumerate() {
        *x = _mm256_set1_ps(seed + k as f32 * 1e-3);
    }
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let s = acc.iter().fold(_mm256_setzero_ps(), |s, x| _mm256_add_ps(s, *x));
    let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let h = _mm_hadd_ps(h, h);
    _mm_cvtss_f32(_mm_hadd_ps(h, h))
}

/// [`fma_chains`] on 512-bit registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains_zmm(iters: u64, seed: f32) -> f32 {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps};
    use std::hint::black_box;
    let a = _mm512_set1_ps(black_box(0.999_999_9));
    let b = _mm512_set1_ps(black_box(1e-7));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for (k, x) in acc.iter_mut().enumerate() {
        *x = _mm512_set1_ps(seed + k as f32 * 1e-3);
    }
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, x| _mm512_add_ps(s, *x)))
}

/// One run on `threads` threads; `None` where the CPU lacks `width`.
fn run(threads: usize, width: Width) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::hint::black_box;
        use std::time::Instant;
        if !width.available() {
            return None;
        }
        let t = Instant::now();
        let sum: f32 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|i| {
                    s.spawn(move || match width {
                        // SAFETY: `fma_chains` needs AVX2 and FMA, which
                        // `width.available()` detected on this CPU above.
                        Width::Ymm => unsafe { fma_chains(ITERS, 1.0 + i as f32) },
                        // SAFETY: `fma_chains_zmm` needs AVX-512 F, which
                        // `width.available()` detected on this CPU above.
                        Width::Zmm => unsafe { fma_chains_zmm(ITERS, 1.0 + i as f32) },
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("FMA thread panicked")).sum()
        });
        black_box(sum);
        Some(t.elapsed().as_secs_f64())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (threads, width);
        None
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Result<Option<usize>, Box<dyn std::error::Error>> {
        match args.iter().position(|a| a == name) {
            None => Ok(None),
            Some(i) => Ok(Some(args.get(i + 1).ok_or(format!("{name} needs a value"))?.parse()?)),
        }
    };
    let threads = flag("--threads")?.unwrap_or(1).max(1);
    let reps = flag("--reps")?.unwrap_or(11).max(1);
    if let Some(a) = args.iter().find(|a| a.starts_with("--") && *a != "--threads" && *a != "--reps") {
        return Err(format!("unknown option {a} (--threads N, --reps R)").into());
    }
    if !Width::Ymm.available() {
        return Err("this CPU has no AVX2 + FMA (or is not x86-64)".into());
    }
    for width in [Width::Ymm, Width::Zmm] {
        if run(threads, width).is_none() {
            eprintln!("fma-peak {}: skipped, this CPU has no AVX-512 F", width.name());
            continue;
        }
        let flop = (ITERS * (CHAINS * width.lanes() * 2) as u64 * threads as u64) as f64;
        let mut gflops: Vec<f64> = (0..reps).filter_map(|_| run(threads, width)).map(|s| flop / s / 1e9).collect();
        gflops.sort_by(f64::total_cmp);
        let (min, max) = (gflops[0], gflops[gflops.len() - 1]);
        let med = if reps % 2 == 1 { gflops[reps / 2] } else { 0.5 * (gflops[reps / 2 - 1] + gflops[reps / 2]) };
        let w = width.name();
        eprintln!("fma-peak {w} t={threads}: {med:.1} GFLOP/s (min {min:.1}, max {max:.1}, {reps} runs)");
        println!(
            "{{\"lib\":\"fma-peak\",\"threads\":{threads},\"what\":\"{w}-fma\",\"gflops_median\":{med:.3},\
             \"gflops_min\":{min:.3},\"gflops_max\":{max:.3},\"reps\":{reps}}}"
        );
    }
    Ok(())
}
