//! Benchmark: the global magnitude threshold over ResNet-50's 23.5 M convolution weights.
//!
//! ```sh
//! cargo run --release -p dwlth-prune --example bench_threshold
//! ```
//!
//! Prints JSON: `threshold_ms` (selecting the 20 % smallest |w| among all conv weights, the
//! step of global OMP / IMP: scores in, mask flags out), `prune_ms` (the whole
//! `PruneMethod::prune` call: scores, selection, masks), `host_copy_ms` (copying the weights
//! out of the model), each the median of `--repeats` runs with min and max.

use std::time::Instant;

use burn::tensor::Device;
use dwlth_models::{Arch, ResNetConfig};
use dwlth_prune::select::{count_to_prune, lowest_k};
use dwlth_prune::{masked_weights, Prunable, PruneMethod};

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(|a, b| a.total_cmp(b));
    serde_json::json!({ "min": v[0], "median": v[v.len() / 2], "max": v[v.len() - 1] })
}

fn main() {
    let repeats: usize = std::env::args()
        .skip_while(|a| a != "--repeats")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let device = Device::flex();
    device.seed(0);
    let model = ResNetConfig::new(Arch::ResNet50).init(&device);
    let mut copy = Vec::new();
    let mut layers = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        layers = masked_weights(&model);
        copy.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let prunable = Prunable::convolutions();
    let scores: Vec<f32> = layers
        .iter()
        .filter(|l| prunable.selects(&l.name, &l.shape))
        .flat_map(|l| l.weight.iter().map(|w| w.abs()))
        .collect();
    let k = count_to_prune(0.2, scores.len());
    let mut threshold = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let picked = lowest_k(&scores, k);
        threshold.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(picked.iter().filter(|p| **p).count(), k);
    }
    let mut prune = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let masks = PruneMethod::global_magnitude()
            .prune(&layers, &prunable, 0.2)
            .expect("prune");
        prune.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(masks.total() - masks.kept(), k);
    }
    let out = serde_json::json!({
        "conv_weights": scores.len(),
        "pruned": k,
        "threshold_ms": stats(threshold),
        "prune_ms": stats(prune),
        "host_copy_ms": stats(copy),
        "repeats": repeats,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
