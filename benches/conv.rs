//! A dense 3×3 convolution forward pass on a CIFAR-sized activation — ResNet-18-CIFAR's first
//! stage, 16 images × 64 channels × 32 × 32 — through `dwlth_kernels::conv::conv2d` (Winograd
//! on the CPU for this shape) and, for comparison, Burn's own CPU convolution. Throughput is in
//! images.

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dwlth::kernels::conv::{conv2d, set_conv_impl, ConvImpl};

mod common;

const BATCH: usize = 16;
const CHANNELS: usize = 64;
const SIZE: usize = 32;

fn conv3x3(c: &mut Criterion) {
    let device = Device::flex();
    let x = Tensor::<4>::random(
        [BATCH, CHANNELS, SIZE, SIZE],
        Distribution::Default,
        &device,
    );
    let w = Tensor::<4>::random([CHANNELS, CHANNELS, 3, 3], Distribution::Default, &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let mut group = c.benchmark_group("conv3x3_b16_64ch_32px");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, choice) in [("dwlth", ConvImpl::Native), ("burn", ConvImpl::Burn)] {
        set_conv_impl(choice);
        group.bench_function(name, |b| {
            // Reading the output back waits for the whole pass.
            b.iter(|| conv2d(x.clone(), w.clone(), None, options.clone()).into_data())
        });
    }
    set_conv_impl(ConvImpl::Native);
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = conv3x3
}
criterion_main!(benches);
