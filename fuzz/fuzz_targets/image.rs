//! One encoded image (PNG, JPEG), decoded as RGB and grey, and checked as `data info` does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::image(data);
});
