//! A tar shard of encoded images (WebDataset layout): indexed, every sample read and decoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::tar_shards(data);
});
