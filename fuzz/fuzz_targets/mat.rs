//! MATLAB level-5 MAT-files (plain and zlib-compressed elements), and the SVHN layer on top:
//! any input gives variables or a dataset, or a typed error.
#![no_main]

use std::path::Path;

use dwlth_data::formats::mat::parse_mat;
use dwlth_data::formats::svhn::svhn_dataset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz-input.mat");
    if let Ok(file) = parse_mat(data, name) {
        for a in &file.arrays {
            assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
        }
        let _ = svhn_dataset(&file, name);
    }
});
