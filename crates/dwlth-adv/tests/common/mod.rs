//! Helpers shared by the attack tests.
#![allow(dead_code)]

use burn::tensor::{Device, Distribution, Int, Tensor};
use dwlth_models::{Arch, ResNet, ResNetConfig, Stem};

/// A width-2 CIFAR-stem ResNet-18 with four classes, initialised from `seed`.
pub fn tiny(device: &Device, seed: u64) -> ResNet {
    device.seed(seed);
    ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(4)
        .init(device)
}

/// Six random 8×8 images and labels over the four classes.
pub fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::<4>::random([6, 3, 8, 8], Distribution::Uniform(0.0, 1.0), device);
    let y = Tensor::<1, Int>::from_ints([0, 1, 2, 3, 0, 1], device);
    (x, y)
}
