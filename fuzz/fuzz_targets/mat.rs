//! MATLAB level-5 MAT-files and the SVHN dataset on top.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::mat(data);
});
