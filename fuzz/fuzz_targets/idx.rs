//! IDX arrays, raw or gzipped (MNIST, Fashion-MNIST).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::idx(data);
});
