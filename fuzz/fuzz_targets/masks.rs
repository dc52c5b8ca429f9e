//! A mask file: read, reported, compared, drawn, and applied to a model as `dwlth masks` and
//! `dwlth train` do.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::masks(data);
});
