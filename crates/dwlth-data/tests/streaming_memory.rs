//! Streaming keeps memory bounded by the batches in flight, not by the dataset: a pass over
//! tar shards through random-resized-crop 224 peaks far below what the decoded dataset would
//! take. Alone in its test binary, because it measures the process's peak resident memory.
//! (`examples/stream_memory.rs` measures 50,000 images; docs/data.md has the numbers.)

use dwlth_data::formats::shards::{ShardWriter, TarShards};
use dwlth_data::stream::{Stream, StreamConfig};
use dwlth_data::transforms::resized_crop_flip;
use dwlth_data::Augmented;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[test]
fn a_pass_over_shards_holds_batches_not_the_dataset() {
    let images = 1_000;
    let dir = tempfile::tempdir().unwrap();
    for s in 0..2 {
        let path = dir.path().join(format!("train-{s:03}.tar"));
        let mut shard = ShardWriter::create(&path).unwrap();
        for k in (s * images / 2)..((s + 1) * images / 2) {
            let img = image::RgbImage::from_fn(64, 48, |x, y| {
                let v = (x as usize * 7 + y as usize * 13 + k * 31) % 256;
                image::Rgb([v as u8, (v / 3) as u8, (255 - v) as u8])
            });
            let mut png = std::io::Cursor::new(Vec::new());
            img.write_to(&mut png, image::ImageFormat::Png).unwrap();
            shard
                .add(&format!("{k:05}"), "png", &png.into_inner(), k % 10)
                .unwrap();
        }
        shard.finish().unwrap();
    }
    let data = TarShards::open_dir(dir.path()).unwrap();
    assert_eq!((data.len(), data.num_classes()), (images, 10));
    let data = Augmented::new(data, resized_crop_flip(224).unwrap(), 0).unwrap();
    let config = StreamConfig {
        batch_size: 32,
        shuffle: Some(3),
        workers: 2,
        prefetch: 2,
    };
    // Only the pass counts: reset the peak (Linux; elsewhere the check is skipped).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let mut seen = vec![0usize; 10];
    for batch in Stream::new(data, config).unwrap().epoch(0) {
        let batch = batch.unwrap();
        assert_eq!(batch.shape[1..], [3, 224, 224]);
        for l in batch.labels {
            seen[l as usize] += 1;
        }
    }
    assert_eq!(
        seen,
        vec![images / 10; 10],
        "every image once, with its class"
    );
    let decoded_mib = images as f64 * 3.0 * 224.0 * 224.0 * 4.0 / (1024.0 * 1024.0);
    if let (true, Some(peak)) = (reset, peak_rss_mib()) {
        assert!(
            peak < 0.4 * decoded_mib,
            "peak resident memory {peak:.0} MiB during the pass; the decoded dataset is {decoded_mib:.0} MiB"
        );
    }
}
