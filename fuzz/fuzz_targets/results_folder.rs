//! A results folder — experiment index, run results, ticket indexes and mask files — read by
//! `dwlth report` (tables, verdicts, plots, the mask report).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::results_folder(data);
});
