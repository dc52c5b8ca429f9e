//! Masked layers: pruned weights stay exactly zero through SGD with momentum and weight decay,
//! masks never train (not even after `unfreeze`), are validated, and are saved with the model.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use dwlth_models::io::{load_resnet, save_resnet};
use dwlth_models::{Arch, Masked, ModelError, ResNet, ResNetConfig, Stem};

fn tiny(device: &Device) -> ResNet {
    device.seed(7);
    ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(3)
        .init(device)
}

/// A checkerboard-ish mask keeping roughly half the weights.
fn half_mask(shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i * 7 + 3) % 2) as f32).collect();
    TensorData::new(values, shape.to_vec())
}

fn prune_half(model: ResNet) -> ResNet {
    let shape = model.conv1.weight_shape();
    let conv1 = model.conv1.with_mask("conv1", half_mask(&shape)).unwrap();
    let shape = model.fc.weight_shape();
    let fc = model.fc.with_mask("fc", half_mask(&shape)).unwrap();
    ResNet { conv1, fc, ..model }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap()
}

fn train_steps(mut model: ResNet, device: &Device, steps: usize) -> ResNet {
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .init();
    let ce = CrossEntropyLossConfig::new().init(device);
    for _ in 0..steps {
        let x = Tensor::<4>::random([4, 3, 8, 8], Distribution::Uniform(0.0, 1.0), device);
        let y = Tensor::<1, Int>::from_ints([0, 1, 2, 1], device);
        let loss = ce.forward(model.forward(x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    model
}

#[test]
fn pruned_weights_stay_exactly_zero_through_sgd() {
    let device = Device::flex().autodiff();
    let model = prune_half(tiny(&device));
    let before_conv = values(model.conv1.weight.val());
    let before_fc = values(model.fc.weight.val());
    let model = train_steps(model, &device, 5);
    let mask = values(model.conv1.mask.val());
    let after = values(model.conv1.weight.val());
    let mut moved = 0;
    for ((m, w), w0) in mask.iter().zip(&after).zip(&before_conv) {
        if *m == 0.0 {
            assert_eq!(*w, 0.0, "a pruned conv weight moved");
        } else if w != w0 {
            moved += 1;
        }
    }
    assert!(moved > 0, "kept weights should train");
    let mask = values(model.fc.mask.val());
    let after = values(model.fc.weight.val());
    for ((m, w), w0) in mask.iter().zip(&after).zip(&before_fc) {
        if *m == 0.0 {
            assert_eq!(*w, 0.0, "a pruned fc weight moved");
        } else {
            assert_ne!(w, w0, "kept fc weights should train");
        }
    }
}

#[test]
fn masks_never_train_even_after_unfreeze() {
    let device = Device::flex().autodiff();
    let model = prune_half(tiny(&device)).unfreeze();
    let mask_before = values(model.conv1.mask.val());
    let mean_before = values(model.normalize.mean.val());
    let model = train_steps(model, &device, 2);
    assert_eq!(values(model.conv1.mask.val()), mask_before);
    assert_eq!(values(model.normalize.mean.val()), mean_before);
}

#[test]
fn masks_are_validated() {
    let device = Device::flex();
    let model = tiny(&device);
    let shape = model.conv1.weight_shape();
    let mut bad = half_mask(&shape).try_to_vec_as::<f32>().unwrap();
    bad[5] = 0.5;
    let err = model
        .conv1
        .clone()
        .with_mask("conv1", TensorData::new(bad, shape.clone()))
        .unwrap_err();
    assert!(
        matches!(err, ModelError::InvalidMask { ref layer, .. } if layer == "conv1"),
        "{err}"
    );
    let err = model
        .conv1
        .with_mask("conv1", half_mask(&[1, 2, 3]))
        .unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");
}

#[test]
fn masks_are_saved_and_restored() {
    let device = Device::flex();
    let model = prune_half(tiny(&device));
    let stats = model.conv1.mask_stats();
    assert!(stats.kept > 0 && stats.kept < stats.total);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ticket.safetensors");
    save_resnet(&model, &path).unwrap();
    let (restored, report) = load_resnet(&path, None, &device).unwrap();
    assert!(report.loaded.contains(&"conv1.weight_mask".to_string()));
    assert_eq!(restored.conv1.mask_stats(), stats);
    assert_eq!(values(restored.fc.mask.val()), values(model.fc.mask.val()));
    let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &device);
    assert_eq!(
        values(restored.forward(x.clone())),
        values(model.forward(x))
    );
}
