//! One SGD training step (momentum 0.9) of a tiny ResNet-18 — width 8, CIFAR stem, 10 classes —
//! on 16 32×32 images through Burn's autodiff: forward in training mode, cross-entropy,
//! backward, update. Throughput is in images.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dwlth::models::{Arch, ResNetConfig, Stem};

mod common;

const BATCH: usize = 16;

fn sgd_step(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let mut model = ResNetConfig::new(Arch::ResNet18)
        .with_width(8)
        .with_stem(Stem::Cifar)
        .with_num_classes(10)
        .init(&device);
    let x = Tensor::<4>::random([BATCH, 3, 32, 32], Distribution::Uniform(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [BATCH]), &device);
    let loss = CrossEntropyLossConfig::new().init(&device);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .init();
    let mut group = c.benchmark_group("train_step_resnet18_w8_b16");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("sgd", |b| {
        b.iter(|| {
            let value = loss.forward(model.forward(x.clone()), y.clone());
            let grads = GradientsParams::from_grads(value.backward(), &model);
            model = optim.step(0.01, model.clone(), grads);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = sgd_step
}
criterion_main!(benches);
