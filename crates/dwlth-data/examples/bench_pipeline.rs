//! Throughput of the input pipeline, printed as JSON: images per second through the stream
//! (augmentation on worker threads, batches of `[0, 1]` pixels on the host) for
//!
//! - `crop_flip_32`: random crop 32 with padding 4 + flip on CIFAR-sized images (native size);
//! - `resized_crop_flip_224`: random-resized-crop to 224 + flip (the papers' upsampled recipe);
//! - `resize_center_crop_224`: resize 256 + centre crop 224 (its test pipeline).
//!
//! Compare with a training step: ResNet-18 (CIFAR stem) trains at about 16 images/s on two
//! CPU cores with the flex backend. Run optimised (only this crate is rebuilt):
//!
//! ```sh
//! cargo run -p dwlth-data --example bench_pipeline \
//!     --config 'profile.dev.package.dwlth-data.opt-level=3' -- [images] [workers]
//! ```

use std::time::Instant;

use dwlth_data::stream::{Stream, StreamConfig};
use dwlth_data::transforms::{crop_flip, resize_center_crop, resized_crop_flip, Pipeline};
use dwlth_data::Augmented;
use dwlth_data::ImageDataset;

fn synthetic(n: usize) -> ImageDataset {
    let pixels = (0..n * 3072)
        .map(|i| ((i * 31 + i / 97) % 256) as u8)
        .collect();
    let labels = (0..n as u32).map(|i| i % 10).collect();
    let classes = (0..10).map(|i| i.to_string()).collect();
    ImageDataset::new(pixels, labels, [3, 32, 32], classes).expect("valid synthetic data")
}

fn run(name: &str, pipeline: Pipeline, images: usize, workers: usize, batch: usize) -> String {
    let data = Augmented::new(synthetic(images), pipeline, 0).expect("fixed-size pipeline");
    let [c, h, w] = data.shape();
    let config = StreamConfig {
        batch_size: batch,
        shuffle: Some(0),
        workers,
        prefetch: 2,
    };
    let stream = Stream::new(data, config).expect("a valid stream");
    let start = Instant::now();
    let mut seen = 0usize;
    let mut checksum = 0f64;
    for b in stream.epoch(0) {
        let b = b.expect("batch");
        seen += b.shape[0];
        checksum += f64::from(b.images[0]);
    }
    let secs = start.elapsed().as_secs_f64();
    format!(
        "{{\"pipeline\": \"{name}\", \"output\": [{c}, {h}, {w}], \"images\": {seen}, \
         \"batch_size\": {batch}, \"workers\": {workers}, \"seconds\": {secs:.3}, \
         \"images_per_second\": {:.1}, \"speedup_vs_resnet18_train_16_img_s\": {:.0}, \
         \"checksum\": {checksum:.3}}}",
        seen as f64 / secs,
        seen as f64 / secs / 16.0
    )
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let images = args.first().copied().unwrap_or(4096);
    let workers = args.get(1).copied().unwrap_or(2);
    let results = [
        run(
            "crop_flip_32",
            crop_flip(32, 4).expect("valid"),
            images,
            workers,
            128,
        ),
        run(
            "resized_crop_flip_224",
            resized_crop_flip(224).expect("valid"),
            images / 4,
            workers,
            32,
        ),
        run(
            "resize_center_crop_224",
            resize_center_crop(256, 224).expect("valid"),
            images / 4,
            workers,
            32,
        ),
    ];
    println!("{{\"results\": [\n  {}\n]}}", results.join(",\n  "));
}
