//! Topology facts of torchvision's ResNets (key counts and parameter totals torchvision
//! reports), configuration errors, and head replacement.

use burn::tensor::{Device, Distribution, Tensor};
use dwlth_models::io::resnet_tensors;
use dwlth_models::{Arch, ModelError, NormalizeConfig, ResNetConfig, Stem};

fn conv_weights(arch: Arch) -> (usize, usize, usize) {
    let device = Device::flex();
    let model = ResNetConfig::new(arch).init(&device);
    let convs = model.convolutions();
    let total = convs
        .iter()
        .map(|(_, c)| c.weight.shape().num_elements())
        .sum();
    let keys = resnet_tensors(&model)
        .into_iter()
        .filter(|(k, _, _)| !k.starts_with("normalize."))
        .count();
    (convs.len(), total, keys)
}

#[test]
fn full_size_resnets_have_torchvision_counts() {
    // torchvision: resnet18 has 11,689,512 parameters, of which fc 513,000 and BatchNorm
    // 9,600, leaving 11,166,912 in its 20 convolutions; resnet50's 53 convolutions hold
    // 23,454,912 weights and its state_dict has 267 tensors besides num_batches_tracked (resnet18: 102).
    assert_eq!(conv_weights(Arch::ResNet18), (20, 11_166_912, 102));
    assert_eq!(conv_weights(Arch::ResNet50), (53, 23_454_912, 267));
}

#[test]
fn widths_stems_channels_and_classes() {
    let device = Device::flex();
    for arch in Arch::ALL {
        for stem in [Stem::ImageNet, Stem::Cifar] {
            let model = ResNetConfig::new(arch)
                .with_width(2)
                .with_stem(stem)
                .with_in_channels(1)
                .with_normalize(NormalizeConfig::identity(1))
                .with_num_classes(7)
                .init(&device);
            let x = Tensor::<4>::random([2, 1, 32, 32], Distribution::Uniform(0.0, 1.0), &device);
            assert_eq!(model.forward(x.clone()).dims(), [2, 7], "{arch} {stem}");
            assert_eq!(model.features(x).dims(), [2, model.config().feature_dim()]);
            assert_eq!(model.config().stem, stem);
        }
    }
}

#[test]
fn head_replacement_keeps_the_backbone() {
    let device = Device::flex();
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_num_classes(10)
        .init(&device);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Uniform(0.0, 1.0), &device);
    let features = model.features(x.clone());
    let model = model.with_head(3, &device).unwrap();
    assert_eq!(model.forward(x.clone()).dims(), [2, 3]);
    let diff = (model.features(x) - features)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert_eq!(diff, 0.0);
}

#[test]
fn bad_configurations_are_errors() {
    let device = Device::flex();
    let err = ResNetConfig::new(Arch::ResNet18)
        .with_num_classes(0)
        .try_init(&device)
        .unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig(_)), "{err}");
    let err = ResNetConfig::new(Arch::ResNet18)
        .with_in_channels(1)
        .try_init(&device)
        .unwrap_err();
    assert!(err.to_string().contains("channel"), "{err}");
    let err = NormalizeConfig::parse("0.5,0.5/0.2,0").unwrap_err();
    assert!(err.to_string().contains("normalize.std"), "{err}");
    assert!("resnet19".parse::<Arch>().is_err());
    assert_eq!("ResNet-50".parse::<Arch>().unwrap(), Arch::ResNet50);
    assert_eq!(
        NormalizeConfig::parse("0.5/0.25").unwrap(),
        NormalizeConfig::new(vec![0.5], vec![0.25])
    );
}
