//! The binary readers on files written in the real formats: a committed scipy-written SVHN
//! MAT-file (plain and compressed), CIFAR folders laid out as the archives unpack, IDX raw and
//! gzipped, and the errors on damaged files.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use dwlth_data::formats::cifar::{Cifar100Label, CIFAR_IMAGE_BYTES};
use dwlth_data::formats::mat::{parse_mat, MatData};
use dwlth_data::formats::svhn::load_svhn;
use dwlth_data::{summarize, DataError, DatasetKind, Split};

fn svhn_pixel(r: usize, c: usize, ch: usize, n: usize) -> u8 {
    ((7 * r + 3 * c + 50 * ch + 11 * n) % 256) as u8
}

#[test]
fn scipy_written_mat_files_read_as_svhn() {
    for file in ["svhn_tiny.mat", "svhn_tiny_compressed.mat"] {
        let path = common::fixture(file);
        let mat = parse_mat(&fs::read(&path).unwrap(), &path).unwrap();
        let x = mat.get("X").unwrap();
        assert_eq!((x.class, x.dims.as_slice()), (9, &[32usize, 32, 3, 4][..]));
        assert!(matches!(x.data, MatData::U8(_)));
        assert_eq!(mat.get("y").unwrap().dims, vec![4, 1]);

        let dir = tempfile::tempdir().unwrap();
        fs::copy(&path, dir.path().join("test_32x32.mat")).unwrap();
        let ds = load_svhn(dir.path(), Split::Test).unwrap();
        assert_eq!((ds.len(), ds.shape()), (4, [3, 32, 32]));
        assert_eq!(ds.labels(), vec![0, 1, 5, 9]);
        for n in 0..4 {
            let p = ds.pixels(n).unwrap();
            for (ch, r, c) in [(0, 0, 0), (1, 5, 31), (2, 31, 2), (0, 17, 9)] {
                assert_eq!(
                    p[ch * 1024 + r * 32 + c],
                    svhn_pixel(r, c, ch, n),
                    "{file} {n}"
                );
            }
        }
    }
}

#[test]
fn damaged_svhn_files_name_file_and_offset() {
    let bytes = fs::read(common::fixture("svhn_tiny.mat")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train_32x32.mat");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    match load_svhn(dir.path(), Split::Train).unwrap_err() {
        DataError::Format {
            path: p, offset, ..
        } => {
            assert_eq!(p, path);
            assert_eq!(offset, 128, "the X element starts after the header");
        }
        e => panic!("{e}"),
    }
    let mut bad = bytes.clone();
    bad[126..128].copy_from_slice(b"XX");
    fs::write(&path, &bad).unwrap();
    let e = load_svhn(dir.path(), Split::Train).unwrap_err();
    assert!(
        e.to_string().contains("train_32x32.mat") && e.to_string().contains("byte 126"),
        "{e}"
    );
    // missing file: says where to put it
    let e = load_svhn(&dir.path().join("nowhere"), Split::Test).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }) && e.to_string().contains("test_32x32.mat"));
}

fn cifar_record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..CIFAR_IMAGE_BYTES).map(|i| (i as u8).wrapping_mul(seed)));
    r
}

/// `cifar-10-batches-bin/` as the archive unpacks: five train batches, a test batch, names.
fn write_cifar10(root: &Path, per_batch: usize) {
    let dir = root.join("cifar-10-batches-bin");
    fs::create_dir_all(&dir).unwrap();
    for k in 1..=5 {
        let bytes: Vec<u8> = (0..per_batch)
            .flat_map(|i| cifar_record(&[((i + k) % 10) as u8], k as u8))
            .collect();
        fs::write(dir.join(format!("data_batch_{k}.bin")), bytes).unwrap();
    }
    let bytes: Vec<u8> = (0..per_batch)
        .flat_map(|i| cifar_record(&[(i % 10) as u8], 9))
        .collect();
    fs::write(dir.join("test_batch.bin"), bytes).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    fs::write(dir.join("batches.meta.txt"), names).unwrap();
}

#[test]
fn cifar10_folder_loads_batches_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let train = DatasetKind::Cifar10.load(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 100);
    assert_eq!(train.label(0), Some(1)); // batch 1, record 0
    assert_eq!(train.label(20), Some(2)); // batch 2, record 0
    assert_eq!(train.pixels(20).unwrap()[3], 6); // 3 * 2
    assert_eq!(train.label_counts(), vec![10; 10]);
    assert_eq!(train.classes()[1], "automobile");
    // the inner folder works as root too
    let test = DatasetKind::Cifar10
        .load(&dir.path().join("cifar-10-batches-bin"), Split::Test)
        .unwrap();
    assert_eq!(test.len(), 20);
    let s = summarize(DatasetKind::Cifar10, dir.path()).unwrap();
    assert_eq!(
        s.splits.iter().map(|s| s.len).collect::<Vec<_>>(),
        [100, 20]
    );
    assert_eq!(s.splits[0].shape, Some([3, 32, 32]));
}

#[test]
fn damaged_cifar_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 3);
    let b3 = dir.path().join("cifar-10-batches-bin/data_batch_3.bin");
    let bytes = fs::read(&b3).unwrap();
    fs::write(&b3, &bytes[..bytes.len() - 5]).unwrap();
    let e = DatasetKind::Cifar10
        .load(dir.path(), Split::Train)
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Format { path, offset: 6146, .. } if *path == b3),
        "{e}"
    );
    let mut bad = bytes.clone();
    bad[3073] = 200;
    fs::write(&b3, &bad).unwrap();
    let e = DatasetKind::Cifar10
        .load(dir.path(), Split::Train)
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                offset: 3073,
                label: 200,
                ..
            }
        ),
        "{e}"
    );
    fs::remove_file(&b3).unwrap();
    let e = DatasetKind::Cifar10
        .load(dir.path(), Split::Train)
        .unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e}");
    let e = DatasetKind::Cifar10
        .load(&dir.path().join("x"), Split::Test)
        .unwrap_err();
    assert!(e.to_string().contains("cifar-10-binary.tar.gz"), "{e}");
}

#[test]
fn cifar100_fine_and_coarse() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("cifar-100-binary");
    fs::create_dir_all(&inner).unwrap();
    let bytes: Vec<u8> = (0..200u8)
        .flat_map(|i| cifar_record(&[i % 20, i % 100], i))
        .collect();
    fs::write(inner.join("train.bin"), &bytes).unwrap();
    fs::write(inner.join("test.bin"), &bytes[..2 * 3074]).unwrap();
    let fine = DatasetKind::Cifar100
        .load(dir.path(), Split::Train)
        .unwrap();
    assert_eq!((fine.len(), fine.num_classes()), (200, 100));
    assert_eq!(fine.label(150), Some(50));
    assert_eq!(fine.classes()[0], "apple");
    let coarse =
        dwlth_data::formats::cifar::load_cifar100(dir.path(), Split::Train, Cifar100Label::Coarse)
            .unwrap();
    assert_eq!((coarse.num_classes(), coarse.label(150)), (20, Some(10)));
    assert_eq!(coarse.label_counts(), vec![10; 20]);
    assert_eq!(
        DatasetKind::Cifar100
            .load(dir.path(), Split::Test)
            .unwrap()
            .len(),
        2
    );
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_raw_gz_and_torchvision_layout() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("MNIST/raw");
    fs::create_dir_all(&raw).unwrap();
    let images: Vec<u8> = (0..3 * 4 * 5).map(|v| v as u8).collect();
    fs::write(
        raw.join("t10k-images-idx3-ubyte"),
        idx_bytes(&[3, 4, 5], &images),
    )
    .unwrap();
    fs::write(
        raw.join("t10k-labels-idx1-ubyte.gz"),
        gz(&idx_bytes(&[3], &[7, 0, 7])),
    )
    .unwrap();
    let ds = DatasetKind::Mnist.load(dir.path(), Split::Test).unwrap();
    assert_eq!((ds.len(), ds.shape()), (3, [1, 4, 5]));
    assert_eq!(ds.labels(), vec![7, 0, 7]);
    assert_eq!(ds.pixels(2).unwrap()[0], 40);
    // a truncated gzip file names the file
    let labels = raw.join("t10k-labels-idx1-ubyte.gz");
    let g = gz(&idx_bytes(&[3], &[7, 0, 7]));
    fs::write(&labels, &g[..g.len() - 9]).unwrap();
    let e = DatasetKind::Mnist
        .load(dir.path(), Split::Test)
        .unwrap_err();
    assert!(
        matches!(&e, DataError::Format { path, .. } if *path == labels),
        "{e}"
    );
    // more labels than images
    fs::write(&labels, gz(&idx_bytes(&[4], &[1, 2, 3, 4]))).unwrap();
    assert!(DatasetKind::Mnist.load(dir.path(), Split::Test).is_err());
    // train files absent: names the expected file
    let e = DatasetKind::Mnist
        .load(dir.path(), Split::Train)
        .unwrap_err();
    assert!(e.to_string().contains("train-images-idx3-ubyte"), "{e}");
}
