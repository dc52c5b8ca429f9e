//! A training checkpoint's `state.json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::train_state(data);
});
