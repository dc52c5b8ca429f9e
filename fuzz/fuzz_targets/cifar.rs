//! CIFAR-10 and CIFAR-100 binary records.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::cifar(data);
});
