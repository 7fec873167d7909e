//! Proof of zero allocation: a counting global allocator (this binary's
//! own) sees no allocation on this thread from parsing the file bytes to
//! the encoded output, taps included.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use infomax::dim::{Dim, DimConfig};
use infomax::infer::{Plan, Tap, Taps, Weights};
use infomax::io::{ExportDtype, to_bytes};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measured thread counts (libtest's own threads allocate).
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if ARMED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; the
// counter touches no allocator state.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count<R>(f: impl FnOnce() -> R) -> (R, usize) {
    ALLOCS.store(0, Ordering::SeqCst);
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCS.load(Ordering::SeqCst))
}

#[test]
fn no_allocation_from_bytes_to_output() {
    // The counter works: a Vec allocates.
    let (_, n) = count(|| std::hint::black_box(vec![1u8; 10]));
    assert_eq!(n, 1);

    for (preset, batch) in [("edge", 1), ("conv28", 2), ("conv32", 1)] {
        let model = Dim::new(DimConfig::new(preset).mi_units(8)).unwrap();
        for dtype in [ExportDtype::F32, ExportDtype::F16, ExportDtype::BF16] {
            let bytes = to_bytes(&model, dtype, true, &[]).unwrap();
            // Caller memory, sized by a plan made beforehand.
            let sizes = {
                let w = Weights::<32>::parse(&bytes).unwrap();
                Plan::from_weights(&w, batch).unwrap()
            };
            let mut scratch = vec![0f32; sizes.scratch_len()];
            let input = vec![0.5f32; sizes.input_len()];
            let mut y = vec![0f32; sizes.output_len()];
            let mut local = vec![0f32; sizes.tap_len(Tap::Local).unwrap()];
            let mut fc = vec![0f32; sizes.tap_len(Tap::Fc).unwrap()];

            let (result, allocs) = count(|| {
                let w = Weights::<32>::parse(&bytes)?;
                let plan = Plan::from_weights(&w, batch)?;
                let taps = Taps { local: Some(&mut local), fc: Some(&mut fc), conv: None };
                plan.encode_with_taps(&w, &input, &mut scratch, &mut y, taps)
            });
            result.unwrap();
            assert_eq!(allocs, 0, "{preset} {}: {allocs} allocations", dtype.name());
            assert!(y.iter().all(|v| v.is_finite()) && y.iter().any(|&v| v != 0.0));
            println!("{preset} {} batch {batch}: 0 allocations", dtype.name());
        }
    }
}
