//! A training checkpoint's optimiser state (`optimizer.bpk`), loaded into SGD with momentum
//! for a small model and used for one step, as a resumed run does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::optimizer(data);
});
