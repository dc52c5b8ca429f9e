//! Global magnitude pruning of ResNet-18's convolutions (11.2 M weights), the papers' one-shot
//! criterion: the whole `PruneMethod::prune` to 90 % sparsity (threshold selection over every
//! weight, then the masks), and the threshold selection alone. Throughput is in weights.

use burn::tensor::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dwlth::models::{Arch, ResNetConfig};
use dwlth::prune::select::{count_to_prune, lowest_k};
use dwlth::prune::{masked_weights, Prunable, PruneMethod};

mod common;

const SPARSITY: f64 = 0.9;

fn global_magnitude(c: &mut Criterion) {
    let device = Device::flex();
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_num_classes(10)
        .init(&device);
    let layers = masked_weights(&model);
    let prunable = Prunable::convolutions();
    let scores: Vec<f32> = layers
        .iter()
        .filter(|l| prunable.selects(&l.name, &l.shape))
        .flat_map(|l| l.weight.iter().map(|w| w.abs()))
        .collect();
    let k = count_to_prune(SPARSITY, scores.len());
    let mut group = c.benchmark_group("global_magnitude_resnet18");
    group.throughput(Throughput::Elements(scores.len() as u64));
    group.bench_function("prune_to_90", |b| {
        b.iter(|| {
            PruneMethod::global_magnitude()
                .prune(&layers, &prunable, SPARSITY)
                .expect("ResNet-18's convolutions prune")
        })
    });
    group.bench_function("threshold", |b| b.iter(|| lowest_k(&scores, k)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = global_magnitude
}
criterion_main!(benches);
