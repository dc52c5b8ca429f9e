//! Explicit evaluation: an attack view runs BatchNorm on running statistics, gives input
//! gradients, no parameter gradients, and leaves the trainable original alone.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Distribution, Int, Tensor};
use dwlth_models::io::resnet_tensors;
use dwlth_models::mode::attack_view;
use dwlth_models::{Arch, ResNet, ResNetConfig, Stem};

fn running_stats(model: &ResNet) -> Vec<(String, Vec<f32>)> {
    resnet_tensors(&model.valid())
        .into_iter()
        .filter(|(k, _, _)| k.contains("running_"))
        .map(|(k, _, v)| (k, v))
        .collect()
}

#[test]
fn attack_view_keeps_running_stats_and_gives_input_gradients() {
    let device = Device::flex().autodiff();
    for arch in [Arch::ResNet18, Arch::ResNet50] {
        device.seed(3);
        // Never run before: parameters are still lazy, the case that once leaked `freeze`.
        let model = ResNetConfig::new(arch)
            .with_width(2)
            .with_stem(Stem::Cifar)
            .with_num_classes(4)
            .init(&device);
        let stats_before = running_stats(&model);
        let frozen = attack_view(&model);
        let ce = CrossEntropyLossConfig::new().init(&device);
        let x = Tensor::<4>::random([3, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &device)
            .require_grad();
        let y = Tensor::<1, Int>::from_ints([0, 1, 3], &device);
        let loss = ce.forward(frozen.forward(x.clone()), y.clone());
        let grads = loss.backward();
        let g = x.grad(&grads).expect("input gradient");
        assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
        assert!(
            frozen.conv1.weight.grad(&grads).is_none(),
            "frozen params got a gradient"
        );
        assert_eq!(
            running_stats(&model),
            stats_before,
            "{arch}: original stats changed"
        );
        assert_eq!(
            running_stats(&frozen),
            stats_before,
            "{arch}: view stats changed"
        );

        // The original still trains: its parameters get gradients and its BatchNorm updates.
        let x = Tensor::<4>::random([3, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
        let loss = ce.forward(model.forward(x), y);
        let grads = loss.backward();
        assert!(
            model.conv1.weight.grad(&grads).is_some(),
            "{arch}: original was frozen"
        );
        assert_ne!(
            running_stats(&model),
            stats_before,
            "{arch}: train mode did not update"
        );
    }
}

#[test]
fn eval_forward_is_deterministic_and_batch_independent() {
    let device = Device::flex();
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_num_classes(5)
        .init(&device);
    let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Uniform(0.0, 1.0), &device);
    let all = model.forward(x.clone());
    let first = model.forward(x.narrow(0, 0, 1));
    let diff = (all.narrow(0, 0, 1) - first)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff < 1e-5, "eval output depends on the batch: {diff}");
}

#[test]
fn independent_copies_do_not_share_running_stats() {
    for device in [Device::flex().autodiff(), Device::flex()] {
        let model = ResNetConfig::new(Arch::ResNet18)
            .with_width(2)
            .with_stem(Stem::Cifar)
            .with_num_classes(3)
            .init(&device);
        let before = running_stats(&model);
        let copy = dwlth_models::mode::independent_copy(&model);
        let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
        let _ = copy.forward(x.clone());
        assert_eq!(running_stats(&model), before, "the original moved");
        if device.is_autodiff() {
            assert_ne!(running_stats(&copy), before, "the copy did not train");
            // A plain clone, by contrast, shares its statistics with the original.
            let _ = model.clone().forward(x);
            assert_ne!(running_stats(&model), before);
        }
    }
}

#[test]
fn a_frozen_backbone_trains_only_the_head() {
    let device = Device::flex().autodiff();
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(3)
        .init(&device)
        .freeze_backbone();
    let stats = running_stats(&model);
    let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_ints([0, 2], &device);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(x), y);
    let grads = loss.backward();
    assert!(model.fc.weight.grad(&grads).is_some());
    assert!(model.conv1.weight.grad(&grads).is_none());
    assert!(model.layer4[1].conv2.weight.grad(&grads).is_none());
    assert_eq!(
        running_stats(&model),
        stats,
        "a frozen backbone's BatchNorm moved"
    );
}
