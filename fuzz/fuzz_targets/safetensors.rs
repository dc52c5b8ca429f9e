//! A safetensors weights file: read, every tensor converted, and — when it describes a small
//! ResNet — loaded as `dwlth predict` and `dwlth import` would.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::safetensors(data);
});
