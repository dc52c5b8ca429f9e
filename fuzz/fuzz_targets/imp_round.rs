//! An IMP round's record (`round-KK/round.json`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::imp_round(data);
});
