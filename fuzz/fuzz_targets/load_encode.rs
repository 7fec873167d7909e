//! Load and encode on arbitrary bytes and arbitrary inputs: the first byte
//! picks the input (zeros, NaN, ±huge, or values from the tail of the data),
//! the rest is the weight file. Parse, plan and encode must return (a typed
//! error or an output), never panic or read out of bounds.
#![no_main]

use infomax::infer::{Plan, Tap, Taps, Weights};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else { return };
    let Ok(w) = Weights::<32>::parse(file) else { return };
    let Ok(plan) = Plan::from_weights(&w, 1 + usize::from(mode >> 7)) else { return };
    // Keep each execution cheap: skip plans that would need large buffers.
    if plan.scratch_len() > 1 << 20 || plan.input_len() > 1 << 16 {
        return;
    }
    let x: Vec<f32> = (0..plan.input_len())
        .map(|i| match mode & 3 {
            0 => 0.0,
            1 => f32::NAN,
            2 => if i % 2 == 0 { 3e38 } else { -3e38 },
            _ => f32::from(data[i % data.len()]) / 127.5 - 1.0,
        })
        .collect();
    let mut scratch = vec![0f32; plan.scratch_len()];
    let mut y = vec![0f32; plan.output_len()];
    if mode & 4 == 0 {
        let _ = plan.encode(&w, &x, &mut scratch, &mut y);
    } else {
        let mut local = vec![0f32; plan.tap_len(Tap::Local).unwrap_or(0)];
        let taps = Taps { local: Some(&mut local), conv: None, fc: None };
        let _ = plan.encode_with_taps(&w, &x, &mut scratch, &mut y, taps);
    }
    // Wrong sizes are errors, not panics.
    assert!(plan.encode(&w, &x[..x.len().saturating_sub(1)], &mut scratch, &mut y).is_err() || x.is_empty());
    if !scratch.is_empty() {
        let short = scratch.len() - 1;
        assert!(plan.encode(&w, &x, &mut scratch[..short], &mut y).is_err());
    }
});
