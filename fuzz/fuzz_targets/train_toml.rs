//! A `dwlth train` run file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::train_toml(data);
});
