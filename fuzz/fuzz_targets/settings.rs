//! A folder's stored settings (`settings.json`, `store.json`, a stage's `manifest.json`),
//! checked against the settings of a run.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::settings(data);
});
