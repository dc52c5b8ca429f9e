//! A `dwlth run` experiment file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::run_toml(data);
});
