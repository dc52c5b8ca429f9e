//! The command line's value parsers, each given the same text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::cli_values(data);
});
