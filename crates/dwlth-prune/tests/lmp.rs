//! Learnable mask pruning: exact sparsity, frozen weights, and a learned mask that fits the
//! data better than the one-shot magnitude mask it starts from.

use burn::tensor::{Device, Int, Tensor, TensorData};
use dwlth_models::io::resnet_tensors;
use dwlth_models::{Arch, NormalizeConfig, ResNet, ResNetConfig, Stem};
use dwlth_prune::{
    learn_mask, masked_weights, LmpConfig, Prunable, PruneError, PruneMethod, Scope,
};

/// Four classes told apart by which quadrant of an 8×8 image is bright.
fn batches(device: &Device) -> Vec<(Tensor<4>, Tensor<1, Int>)> {
    (0..4)
        .map(|b| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..16 {
                let class = (i + b) % 4;
                for _c in 0..3 {
                    for r in 0..8 {
                        for col in 0..8 {
                            let q = (r / 4) * 2 + col / 4;
                            let noise = (((i * 31 + r * 7 + col * 3 + b) % 11) as f32) / 50.0;
                            x.push(if q == class { 0.8 } else { 0.2 } + noise);
                        }
                    }
                }
                y.push(class as i64);
            }
            (
                Tensor::from_data(TensorData::new(x, [16, 3, 8, 8]), device),
                Tensor::from_data(TensorData::new(y, [16]), device),
            )
        })
        .collect()
}

fn model(device: &Device) -> ResNet {
    device.seed(5);
    ResNetConfig::new(Arch::ResNet18)
        .with_width(4)
        .with_stem(Stem::Cifar)
        .with_num_classes(4)
        .with_normalize(NormalizeConfig::identity(3))
        .init(device)
}

#[test]
fn lmp_learns_an_exact_sparse_mask_with_frozen_weights() {
    let device = Device::flex().autodiff();
    let theta = model(&device);
    let before = resnet_tensors(&theta);
    let data = batches(&device);
    let forward = |m: &ResNet, x: Tensor<4>| m.forward(x);
    for scope in [Scope::Global, Scope::Layer] {
        let config = LmpConfig {
            sparsity: 0.8,
            scope,
            lr: 0.5,
            epochs: 15,
        };
        let (masks, history) =
            learn_mask(&theta, &Prunable::convolutions(), &config, &data, forward).unwrap();
        let total = masks.total();
        match scope {
            Scope::Global => assert_eq!(
                total - masks.kept(),
                (0.8 * total as f64).round_ties_even() as usize
            ),
            Scope::Layer => {
                for (_, m) in masks.iter() {
                    assert_eq!(
                        m.total() - m.kept(),
                        (0.8 * m.total() as f64).round_ties_even() as usize
                    );
                }
            }
        }
        assert_eq!(masks.metadata["method"], "lmp");
        assert!(
            history.last().unwrap() < &(history[0] - 0.05),
            "{scope:?}: the learned masks did not lower the loss: {history:?}"
        );
        // The first epoch's masks are the one-shot magnitude masks; the learned ones differ.
        let omp = match scope {
            Scope::Global => PruneMethod::global_magnitude(),
            Scope::Layer => PruneMethod::Magnitude {
                scope: Scope::Layer,
            },
        }
        .prune(&masked_weights(&theta), &Prunable::convolutions(), 0.8)
        .unwrap();
        assert_ne!(omp, {
            let mut m = masks.clone();
            m.metadata.clear();
            m
        });
    }
    assert_eq!(resnet_tensors(&theta), before, "LMP changed θ_p");
    lmp_refuses_bad_settings(&device);
}

/// Part of the single test below: tests in one binary run in parallel threads and would draw
/// from the device's shared generator in between each other's seeding and initialisation.
fn lmp_refuses_bad_settings(device: &Device) {
    let device = device.clone();
    let theta = model(&device);
    let data = batches(&device);
    let forward = |m: &ResNet, x: Tensor<4>| m.forward(x);
    for config in [
        LmpConfig {
            sparsity: 1.0,
            scope: Scope::Global,
            lr: 0.1,
            epochs: 1,
        },
        LmpConfig {
            sparsity: 0.5,
            scope: Scope::Global,
            lr: -1.0,
            epochs: 1,
        },
        LmpConfig {
            sparsity: 0.5,
            scope: Scope::Global,
            lr: 0.1,
            epochs: 0,
        },
    ] {
        let err =
            learn_mask(&theta, &Prunable::convolutions(), &config, &data, forward).unwrap_err();
        assert!(matches!(err, PruneError::InvalidFraction { .. }), "{err}");
    }
    let plain = model(&Device::flex());
    let config = LmpConfig {
        sparsity: 0.5,
        scope: Scope::Global,
        lr: 0.1,
        epochs: 1,
    };
    assert!(learn_mask(&plain, &Prunable::convolutions(), &config, &data, forward).is_err());
}
