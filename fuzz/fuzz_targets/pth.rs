//! A PyTorch checkpoint (zip, legacy pickle or tar container): read, every tensor converted,
//! canonicalised in each layout, and imported when it describes a small ResNet.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::pth(data);
});
