//! The input pipeline through the stream: shapes, coverage, seeded reproducibility with worker
//! threads, and a fresh augmentation each epoch.

use std::collections::BTreeMap;

use dwlth_data::stream::{Stream, StreamConfig};
use dwlth_data::transforms::{crop_flip, resized_crop_flip, Pipeline};
use dwlth_data::{subset, Augmented, ImageDataset, ImageSource, Images};

/// `n` CIFAR-sized images, image `i` labelled `i` (so labels identify items).
fn synthetic(n: usize) -> ImageDataset {
    let pixels = (0..n * 3072)
        .map(|i| ((i * 7 + i / 3072 * 13) % 256) as u8)
        .collect();
    let classes = (0..n).map(|i| format!("c{i}")).collect();
    ImageDataset::new(pixels, (0..n as u32).collect(), [3, 32, 32], classes).unwrap()
}

/// One epoch: item label -> its image values.
fn pass(stream: &Stream<ImageDataset>, epoch: u32) -> BTreeMap<i64, Vec<f32>> {
    let mut out = BTreeMap::new();
    for batch in stream.epoch(epoch) {
        let batch = batch.unwrap();
        let [b, c, h, w] = batch.shape;
        assert_eq!([c, h, w], [3, 32, 32]);
        let (x, y) = (batch.images, batch.labels);
        assert_eq!(y.len(), b);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        for (k, label) in y.into_iter().enumerate() {
            assert!(out
                .insert(label, x[k * 3072..(k + 1) * 3072].to_vec())
                .is_none());
        }
    }
    out
}

#[test]
fn workers_and_shuffling_are_reproducible_per_item_and_pass() {
    let make = |workers| {
        let data = Augmented::new(synthetic(64), crop_flip(32, 4).unwrap(), 42).unwrap();
        let config = StreamConfig {
            batch_size: 16,
            shuffle: Some(7),
            workers,
            prefetch: 2,
        };
        Stream::new(data, config).unwrap()
    };
    let (a, b) = (make(2), make(1));
    let a1 = pass(&a, 0);
    let b1 = pass(&b, 0);
    assert_eq!(a1.len(), 64, "every item once per epoch");
    assert_eq!(a1, b1, "same seed, same augmented items");
    let a2 = pass(&a, 1);
    assert_eq!(a2.len(), 64);
    let changed = a1.iter().filter(|(k, v)| a2[*k] != **v).count();
    assert!(
        changed > 32,
        "a new epoch draws new crops ({changed} of 64 changed)"
    );
    assert_eq!(a2, pass(&b, 1), "second epochs agree too");
}

#[test]
fn unshuffled_single_thread_keeps_order_and_identity_pipeline_is_exact() {
    let ds = synthetic(10);
    let data = Augmented::new(ds.clone(), Pipeline::new(), 0).unwrap();
    let config = StreamConfig {
        batch_size: 4,
        shuffle: None,
        workers: 1,
        prefetch: 1,
    };
    let mut labels = Vec::new();
    for batch in Stream::new(data, config).unwrap().epoch(0) {
        let batch = batch.unwrap();
        let (x, y) = (batch.images, batch.labels);
        for (k, &label) in y.iter().enumerate() {
            let want: Vec<f32> = ds
                .pixels(label as usize)
                .unwrap()
                .iter()
                .map(|&v| f32::from(v) / 255.0)
                .collect();
            assert_eq!(x[k * 3072..(k + 1) * 3072], want[..]);
        }
        labels.extend(y);
    }
    assert_eq!(labels, (0..10).collect::<Vec<i64>>());
}

#[test]
fn upsampling_pipeline_and_subset_views() {
    let ds = synthetic(20);
    let (train, val) = subset::split_last(ds.len(), 5).unwrap();
    let train = ds.subset(&train).unwrap();
    assert_eq!(
        (train.len(), ds.subset(&val).unwrap().label(0)),
        (15, Some(15))
    );
    let data = Augmented::new(
        train.subset(&[0, 3]).unwrap(),
        resized_crop_flip(224).unwrap(),
        1,
    )
    .unwrap();
    assert_eq!(data.shape(), [3, 224, 224]);
    let item = data.sample(1, 0).unwrap();
    assert_eq!((item.image.shape(), item.label), ([3, 224, 224], 3));
    assert_eq!(data.sample(1, 0).unwrap(), item, "epoch 0 is reproducible");
    assert_ne!(data.sample(1, 1).unwrap(), item, "epoch 1 differs");
    assert!(data.sample(2, 0).is_err());
}

#[test]
fn varying_sizes_need_a_fixed_size_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    for (i, w) in [5u32, 7].iter().enumerate() {
        image::RgbImage::new(*w, 4)
            .save(dir.path().join(format!("a/{i}.png")))
            .unwrap();
    }
    let folder: Images = dwlth_data::formats::folder::ImageFolder::scan(dir.path())
        .unwrap()
        .into();
    // Without a crop, every image must have the first one's size: the second is refused by
    // name when it is drawn.
    let plain = Augmented::new(folder.clone(), Pipeline::new(), 0).unwrap();
    assert_eq!(plain.shape(), [3, 4, 5]);
    let e = plain.sample(1, 0).unwrap_err().to_string();
    assert!(e.contains("1.png"), "the file is named: {e}");
    assert!(
        folder.decode_all().is_err(),
        "two sizes cannot be one tensor"
    );
    assert_eq!(folder.sample(1).unwrap().image.shape(), [3, 4, 7]);
    let data = Augmented::new(folder, crop_flip(3, 0).unwrap(), 0).unwrap();
    assert_eq!(data.sample(1, 0).unwrap().image.shape(), [3, 3, 3]);
}
