//! The fuzz targets' property, run on every `cargo test`: damaged inputs (bit flips, cuts,
//! inserted and overwritten bytes, absurd sizes) give a result or a typed error, never a
//! panic. A few thousand seeded mutations of valid files per parser, in well under a second.

mod common;

use std::io::Write;
use std::path::Path;

use dwlth_data::formats::cifar::{parse_cifar10, parse_cifar100, Cifar100Label};
use dwlth_data::formats::idx::parse_idx;
use dwlth_data::formats::mat::parse_mat;
use dwlth_data::formats::mnist_json::{parse_mnist_json, IMAGE_VALUES};
use dwlth_data::formats::svhn::svhn_dataset;
use dwlth_data::Rng;

fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.index(4) {
        if b.is_empty() {
            b.push(rng.next_u64() as u8);
            continue;
        }
        let at = rng.index(b.len());
        match rng.index(6) {
            0 => b[at] ^= 1 << rng.index(8),
            1 => b.truncate(at),
            2 => b.insert(at, rng.next_u64() as u8),
            3 => b[at] = [0x00, 0xff, 0x7f, 0x80][rng.index(4)],
            4 => {
                // an absurd 32-bit size or dimension, both byte orders
                let v = [u32::MAX, 0x8000_0000, 0x0100_0000, 3073][rng.index(4)];
                let bytes = if rng.chance(0.5) {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                for (k, x) in bytes.into_iter().enumerate() {
                    if at + k < b.len() {
                        b[at + k] = x;
                    }
                }
            }
            _ => {
                b.remove(at);
            }
        }
    }
    b
}

fn idx_file() -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
    b.extend(0..24u8);
    b
}

/// One MNIST JSON image: zeros, some three-decimal values, ones.
fn mnist_json_file() -> Vec<u8> {
    let values: Vec<&str> = (0..IMAGE_VALUES)
        .map(|i| ["0", "0.624", "1", "0.2", "0"][i % 5])
        .collect();
    format!("{{\"data\": [{}]}}", values.join(",")).into_bytes()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn parsers_never_panic_on_damaged_input() {
    let name = Path::new("mutated");
    let mut cifar = vec![3u8];
    cifar.extend(vec![7u8; 3072]);
    cifar.extend(cifar.clone());
    let mut cifar100 = vec![3u8, 42];
    cifar100.extend(vec![7u8; 3072]);
    let mat = std::fs::read(common::fixture("svhn_tiny.mat")).unwrap();
    let mat_z = std::fs::read(common::fixture("svhn_tiny_compressed.mat")).unwrap();
    let (idx, idx_gz) = (idx_file(), gz(&idx_file()));
    let mut rng = Rng::new(2024);
    let json = mnist_json_file();
    let mut ok = [0usize; 6];
    for _ in 0..4000 {
        let m = mutate(&cifar, &mut rng);
        ok[0] += usize::from(parse_cifar10(&m, name).is_ok());
        let m = mutate(&cifar100, &mut rng);
        ok[1] += usize::from(parse_cifar100(&m, name, Cifar100Label::Fine).is_ok());
        let m = mutate(if rng.chance(0.5) { &idx } else { &idx_gz }, &mut rng);
        if let Ok(a) = parse_idx(&m, name) {
            assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
            ok[2] += 1;
        }
        for (k, src) in [(3, &mat), (4, &mat_z)] {
            let m = mutate(src, &mut rng);
            if let Ok(f) = parse_mat(&m, name) {
                for a in &f.arrays {
                    assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
                }
                ok[k] += usize::from(svhn_dataset(&f, name).is_ok());
            }
        }
        let m = mutate(&json, &mut rng);
        if let Ok(px) = parse_mnist_json(&m, name) {
            assert_eq!(px.len() % IMAGE_VALUES, 0);
            ok[5] += 1;
        }
    }
    // Some mutations are harmless (a flipped pixel): both outcomes were exercised.
    assert!(ok.iter().all(|&n| n > 0 && n < 4000), "{ok:?}");
}
