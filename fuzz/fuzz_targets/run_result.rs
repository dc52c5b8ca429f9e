//! A transfer run's `result.json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::run_result(data);
});
