//! IDX arrays, raw or gzipped: any input gives an array whose size matches its dimensions,
//! or a typed error.
#![no_main]

use std::path::Path;

use dwlth_data::formats::idx::parse_idx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_idx(data, Path::new("fuzz-input-idx")) {
        assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
    }
});
