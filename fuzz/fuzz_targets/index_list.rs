//! A subset's index list (`indices.json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::index_list(data);
});
