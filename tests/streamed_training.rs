//! Training on data streamed from tar shards: reproducible whatever the number of workers, and
//! a damaged image ends training with an error naming it. Alone in its test binary: Burn's
//! generator is one per process.

use std::path::Path;

use burn::tensor::Device;
use dwlth::adv::{Attack, LrSchedule, Regime, Schedule, TrainConfig, Trainer};
use dwlth::data::formats::shards::{ShardWriter, TarShards};
use dwlth::data::stream::{Stream, StreamConfig};
use dwlth::data::transforms::crop_flip;
use dwlth::data::Augmented;
use dwlth::models::io::resnet_tensors;
use dwlth::models::{Arch, NormalizeConfig, ResNetConfig, Stem};
use dwlth::pipeline::data::StreamBatches;

fn write_shard(path: &Path, first: usize, n: usize, damaged: Option<usize>) {
    let mut shard = ShardWriter::create(path).unwrap();
    for k in first..first + n {
        let class = k % 2;
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let v = if class == 1 { 180 } else { 70 } + ((x * 3 + y * 5 + k as u32) % 40) as u8;
            image::Rgb([v, v, v])
        });
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let png = if damaged == Some(k) {
            b"damaged".to_vec()
        } else {
            png.into_inner()
        };
        shard.add(&format!("{k:04}"), "png", &png, class).unwrap();
    }
    shard.finish().unwrap();
}

fn train(dir: &Path, workers: usize) -> dwlth::adv::Result<Vec<f32>> {
    let device = Device::flex().autodiff();
    dwlth::models::random::seed(&device, 5);
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(2)
        .with_normalize(NormalizeConfig::identity(3))
        .init(&device);
    let data = Augmented::new(
        TarShards::open_dir(dir).unwrap(),
        crop_flip(16, 2).unwrap(),
        7,
    )
    .unwrap();
    let config = StreamConfig {
        batch_size: 8,
        shuffle: Some(11),
        workers,
        prefetch: 2,
    };
    let mut source = StreamBatches::new(Stream::new(data, config).unwrap(), &device);
    let train = TrainConfig {
        epochs: 2,
        lr: LrSchedule {
            base: 0.05,
            schedule: Schedule::MultiStep {
                milestones: vec![],
                gamma: 0.1,
            },
            warmup_epochs: 0,
        },
        momentum: 0.9,
        weight_decay: 5e-4,
        regime: Regime::Standard,
        eval_attack: None::<Attack>,
        ra_from_epoch: 0,
        overfit_guard: None,
        seed: 3,
        snapshots: false,
        validate_every: 1,
    };
    let mut trainer = Trainer::new(train, None)?;
    trainer.progress = false;
    let no_validation: Vec<dwlth::adv::Batch> = Vec::new();
    let outcome = trainer.fit(model, &mut source, &no_validation, 2)?;
    assert_eq!(outcome.history.len(), 2);
    Ok(resnet_tensors(&outcome.model)
        .into_iter()
        .flat_map(|(_, _, v)| v)
        .collect())
}

#[test]
fn streamed_training_is_reproducible_and_stops_on_a_damaged_image() {
    let dir = tempfile::tempdir().unwrap();
    write_shard(&dir.path().join("train-0.tar"), 0, 20, None);
    write_shard(&dir.path().join("train-1.tar"), 20, 20, None);
    let one = train(dir.path(), 1).unwrap();
    let three = train(dir.path(), 3).unwrap();
    assert_eq!(one, three, "the worker count changed the trained weights");

    let bad = tempfile::tempdir().unwrap();
    write_shard(&bad.path().join("train-0.tar"), 0, 20, Some(13));
    let message = train(bad.path(), 2).unwrap_err().to_string();
    assert!(
        message.contains("train-0.tar") && message.contains("sample 13"),
        "{message}"
    );
}
