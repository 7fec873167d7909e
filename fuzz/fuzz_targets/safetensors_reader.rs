//! The no-alloc safetensors reader on arbitrary bytes: a typed error, or a
//! table whose every tensor lies inside the file and reads back in full.
//! Whatever it accepts, the `safetensors` crate must accept too.
#![no_main]

use infomax::infer::Weights;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(w) = Weights::<32>::parse(data) else { return };
    assert!(safetensors::SafeTensors::deserialize(data).is_ok(), "accepted a file the safetensors crate rejects");
    let mut buf = [0f32; 64];
    for t in w.tensors() {
        let count: usize = t.shape().iter().product();
        assert_eq!(t.data().len(), count * t.dtype().size());
        if t.dtype().size() > 0 && matches!(t.dtype().name(), "F32" | "F16" | "BF16") {
            let mut start = 0;
            while start < count {
                let len = buf.len().min(count - start);
                t.read_f32(start, &mut buf[..len]).expect("in-bounds read of an accepted tensor");
                start += len;
            }
        }
    }
});
