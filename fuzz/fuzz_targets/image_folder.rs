//! A class-per-folder image tree: each section is `<class>/<file>` (any bytes, as a file name
//! may be), a zero byte, and the file's content.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    dwlth_fuzz::image_folder(data);
});
