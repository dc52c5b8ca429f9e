//! The sparse inference engine on a tiny 90 %-sparse ticket: ResNet-18 at width 16 (CIFAR stem,
//! 10 classes) with global magnitude masks over its convolutions, on 16 32×32 images, beside
//! the same ticket run dense by Burn. Throughput is in images.
//!
//! The BatchNorm statistics are set from the input first: with the initial ones (mean 0,
//! variance 1) a random network's activations shrink towards denormal numbers layer by layer,
//! which would time the CPU's slow path instead of the engine.

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dwlth::models::{Arch, ResNet, ResNetConfig, Stem};
use dwlth::prune::{apply_masks, masked_weights, Prunable, PruneMethod};
use dwlth::sparse::SparseResNet;

mod common;

const BATCH: usize = 16;
const SIZE: usize = 32;

/// Every BatchNorm's momentum.
fn set_momentum(model: &mut ResNet, value: f64) {
    model.bn1.momentum = value;
    for layer in [
        &mut model.layer1,
        &mut model.layer2,
        &mut model.layer3,
        &mut model.layer4,
    ] {
        for block in layer.iter_mut() {
            block.bn1.momentum = value;
            block.bn2.momentum = value;
            if let Some(bn) = &mut block.bn3 {
                bn.momentum = value;
            }
            if let Some((_, bn)) = &mut block.downsample {
                bn.momentum = value;
            }
        }
    }
}

/// `model` in evaluation mode with the running statistics of one training-mode pass over `x`.
fn calibrated(mut model: ResNet, x: &Tensor<4>) -> ResNet {
    let device = x.device();
    set_momentum(&mut model, 1.0);
    let training = model.fork(&device.clone().autodiff());
    let _ = training.forward(x.clone().autodiff()).into_data();
    let mut model = dwlth::models::mode::independent_copy(&training).valid();
    set_momentum(&mut model, 0.1);
    model
}

fn sparse_ticket(c: &mut Criterion) {
    let device = Device::flex();
    dwlth::models::random::seed(&device, 0);
    let dense = ResNetConfig::new(Arch::ResNet18)
        .with_width(16)
        .with_stem(Stem::Cifar)
        .with_num_classes(10)
        .init(&device);
    let x = Tensor::<4>::random(
        [BATCH, 3, SIZE, SIZE],
        Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let masks = PruneMethod::global_magnitude()
        .prune(&masked_weights(&dense), &Prunable::convolutions(), 0.9)
        .expect("the tiny ResNet's convolutions prune");
    let ticket = calibrated(
        apply_masks(dense, &masks).expect("the masks fit their model"),
        &x,
    );
    let engine = SparseResNet::from_resnet(&ticket).expect("the ticket compiles");
    let input = x
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("the input is f32");
    let mut group = c.benchmark_group("ticket_resnet18_w16_s90_b16");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("sparse_engine", |b| {
        b.iter(|| {
            engine
                .forward(&input, BATCH, SIZE, SIZE)
                .expect("the engine runs its own ticket")
        })
    });
    group.bench_function("dense_burn", |b| {
        b.iter(|| ticket.forward(x.clone()).into_data())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = sparse_ticket
}
criterion_main!(benches);
