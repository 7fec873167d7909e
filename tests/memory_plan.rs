//! The memory plan's activation bounds against the bytes really allocated:
//! a counting allocator measures `Dim::workspace(n)` (training) and
//! `Encoder::alloc(n, false)` (evaluation) for every preset and DIM variant.
//! The bound must never be under, and at most 2.5× over (measured
//! 1.13–1.76× when written). One test, so no
//! other test allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use infomax::dim::{Dim, DimConfig, HeadKind, MultiGlobal};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn measured<T>(f: impl FnOnce() -> T) -> (T, u128) {
    let before = LIVE.load(Ordering::Relaxed);
    let v = f();
    (v, LIVE.load(Ordering::Relaxed).saturating_sub(before) as u128)
}

#[test]
fn activation_bounds_cover_the_real_allocations_within_2_5x() {
    let mut cases: Vec<(String, DimConfig)> = ["conv28", "conv32", "alex64", "edge", "fold28", "resnet32"]
        .iter()
        .map(|p| (p.to_string(), DimConfig::new(p).mi_units(64)))
        .collect();
    let base = || DimConfig::new("conv28").mi_units(64);
    cases.push(("concat".into(), base().head(HeadKind::Concat)));
    cases.push(("multi".into(), DimConfig { globals: Some(MultiGlobal { channels: None, samples: None }), ..base() }));
    cases.push(("occlusion".into(), base().occlusion(14)));
    cases.push(("global".into(), DimConfig { alpha: 0.5, ..base() }));
    cases.push(("global-only".into(), DimConfig { alpha: 1.0, beta: 0.0, ..base() }));
    cases.push(("prior".into(), DimConfig { gamma: 0.1, ..base() }));
    let mut worst = (f64::INFINITY, 0f64);
    for (name, cfg) in &cases {
        let model = Dim::new(cfg.clone()).unwrap();
        let enc = cfg.validate().unwrap();
        for n in [2usize, 8, 32] {
            let (ws, used) = measured(|| model.workspace(n).unwrap());
            drop(ws);
            let plan = cfg.workspace_floats(n).unwrap() * 4;
            let (acts, used_eval) = measured(|| model.encoder.alloc(n, false).unwrap());
            drop(acts);
            let plan_eval = enc.activation_floats(n, false).unwrap() * 4;
            for (what, used, plan) in [("train", used, plan), ("eval", used_eval, plan_eval)] {
                let r = plan as f64 / used as f64;
                eprintln!("{name} n={n} {what}: allocated {used} B, planned {plan} B ({r:.2}×)");
                worst = (worst.0.min(r), worst.1.max(r));
                assert!(plan >= used, "{name} n={n} {what}: plan {plan} under the {used} allocated");
                assert!(r <= 2.5, "{name} n={n} {what}: plan {plan} is {r:.2}× the {used} allocated");
            }
        }
    }
    eprintln!("planned/allocated from {:.2}× to {:.2}×", worst.0, worst.1);
}
