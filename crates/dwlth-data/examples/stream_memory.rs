//! Peak memory of a pass over a dataset far larger than its batches: generates `images` JPEG
//! files (128×96, ten classes) as an image folder or as tar shards, then streams one shuffled
//! pass through the papers' training pipeline (random-resized-crop 224 + flip) on stream worker
//! threads, and prints JSON: images, seconds, images per second, and the process's peak
//! resident memory during the pass (`VmHWM`, reset before it through `/proc/self/clear_refs`).
//!
//! Decoded at 224×224 in f32, 50,000 images would take 30 GB; streamed, only the index, the
//! batches in flight and the workers' buffers are resident.
//!
//! ```sh
//! cargo run --release -p dwlth-data --example stream_memory -- [folder|shards] [images] [workers] [batch]
//! ```

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use dwlth_data::formats::folder::ImageFolder;
use dwlth_data::formats::shards::{ShardWriter, TarShards};
use dwlth_data::stream::{Stream, StreamConfig};
use dwlth_data::transforms::resized_crop_flip;
use dwlth_data::{Augmented, Images};

const CLASSES: usize = 10;
const PER_SHARD: usize = 5_000;

fn jpeg(k: usize) -> Vec<u8> {
    let img = image::RgbImage::from_fn(128, 96, |x, y| {
        let v = (x as usize * 7 + y as usize * 13 + k * 31) % 256;
        image::Rgb([v as u8, (v / 2) as u8, (255 - v) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("JPEG encoding");
    out.into_inner()
}

fn write_folder(dir: &Path, images: usize) {
    for c in 0..CLASSES {
        std::fs::create_dir_all(dir.join(format!("class{c}"))).expect("class folder");
    }
    for k in 0..images {
        let path = dir.join(format!("class{}/{k:06}.jpg", k % CLASSES));
        File::create(path)
            .and_then(|mut f| f.write_all(&jpeg(k)))
            .expect("image file");
    }
}

fn write_shards(dir: &Path, images: usize) {
    for (s, first) in (0..images).step_by(PER_SHARD).enumerate() {
        let path = dir.join(format!("train-{s:06}.tar"));
        let mut shard = ShardWriter::create(&path).expect("shard file");
        for k in first..(first + PER_SHARD).min(images) {
            shard
                .add(&format!("{k:06}"), "jpg", &jpeg(k), k % CLASSES)
                .expect("sample");
        }
        shard.finish().expect("shard");
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let layout = args.first().map_or("folder", String::as_str).to_string();
    let number = |k: usize, default: usize| {
        args.get(k)
            .map(|a| a.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let (images, workers, batch) = (number(1, 50_000), number(2, 2), number(3, 64));
    let dir = tempfile::tempdir().expect("a scratch folder");
    let start = Instant::now();
    match layout.as_str() {
        "folder" => write_folder(dir.path(), images),
        "shards" => write_shards(dir.path(), images),
        other => panic!("layout `{other}`: expected folder or shards"),
    }
    let generated = start.elapsed().as_secs_f64();
    let pipeline = resized_crop_flip(224).expect("pipeline");
    let config = StreamConfig {
        batch_size: batch,
        shuffle: Some(1),
        workers,
        prefetch: 2,
    };
    // Reset the peak: only the pass is measured.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_mib();
    let start = Instant::now();
    let mut seen = 0usize;
    let mut check = 0f64;
    let data: Images = match layout.as_str() {
        "folder" => ImageFolder::scan(dir.path()).expect("folder").into(),
        _ => TarShards::open_dir(dir.path()).expect("shards").into(),
    };
    let data = Augmented::new(data, pipeline, 0).expect("augmented");
    for b in Stream::new(data, config).expect("stream").epoch(0) {
        let b = b.expect("batch");
        seen += b.shape[0];
        check += f64::from(b.images[0]);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"layout\": \"{layout}\", \"images\": {seen}, \"generated_seconds\": {generated:.1}, \
         \"workers\": {workers}, \"batch_size\": {batch}, \"seconds\": {secs:.1}, \
         \"images_per_second\": {:.1}, \"rss_mib_before_pass\": {before:.0}, \
         \"peak_rss_mib_during_pass\": {:.0}, \"in_memory_f32_gib\": {:.1}, \"check\": {check:.3}}}",
        seen as f64 / secs,
        peak_rss_mib(),
        images as f64 * 3.0 * 224.0 * 224.0 * 4.0 / f64::powi(1024.0, 3)
    );
}
