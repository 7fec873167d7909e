//! The gzip path of the IDX reader. The first byte picks the mode: even,
//! the rest is taken as a (usually malformed) gzip stream; odd, the rest is
//! gzipped here first, so the parser sees a valid stream with an arbitrary
//! payload. A 1 MiB decompression limit keeps gzip bombs a typed error.
#![no_main]

use std::io::Write;
use std::path::Path;

use flate2::{Compression, write::GzEncoder};
use infomax::data::decode_bytes;
use infomax::data::idx::{parse_idx_images, parse_idx_labels};
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode % 2 == 0 {
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(rest);
        gz
    } else {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(rest).expect("in-memory write");
        enc.finish().expect("in-memory write")
    };
    let path = Path::new("fuzz.idx.gz");
    let Ok(decoded) = decode_bytes(path, bytes, LIMIT) else {
        assert!(mode % 2 == 0 || rest.len() as u64 > LIMIT, "a valid gzip stream under the limit must decode");
        return;
    };
    assert!(decoded.len() as u64 <= LIMIT);
    if mode % 2 == 1 {
        assert_eq!(decoded, rest);
    }
    let _ = parse_idx_images(path, decoded.clone());
    let _ = parse_idx_labels(path, decoded);
});
