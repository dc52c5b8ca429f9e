//! CIFAR-10 and CIFAR-100 binary records: any input gives records or a typed error.
#![no_main]

use std::path::Path;

use dwlth_data::formats::cifar::{parse_cifar10, parse_cifar100, Cifar100Label};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz-input.bin");
    if let Ok(r) = parse_cifar10(data, name) {
        assert_eq!(r.pixels.len(), r.labels.len() * 3072);
        assert!(r.labels.iter().all(|&l| l < 10));
    }
    for label in [Cifar100Label::Fine, Cifar100Label::Coarse] {
        if let Ok(r) = parse_cifar100(data, name, label) {
            assert_eq!(r.pixels.len(), r.labels.len() * 3072);
        }
    }
});
