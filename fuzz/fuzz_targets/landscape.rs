//! A loss landscape (`landscape.json`), read as a resumed grid is and drawn as the CLI does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::landscape(data);
});
