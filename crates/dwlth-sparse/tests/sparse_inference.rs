//! The sparse inference engine gives the masked dense model's eval-mode logits: ResNet-18 and
//! ResNet-50 topologies, CIFAR and ImageNet stems, random BatchNorm statistics, random masks
//! from 0 % to 98 % sparsity and channel masks that empty whole output channels.

use burn::module::{Module, Param, RunningState};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use dwlth_models::{Arch, BatchNorm2d, MaskedConv2d, ResNet, ResNetConfig, Stem};
use dwlth_sparse::SparseError;
use dwlth_sparse::SparseResNet;

/// xorshift64*: reproducible masks and statistics without another dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
}

#[derive(Clone, Copy, Debug)]
enum Masking {
    /// Each weight pruned with this probability.
    Random(f32),
    /// Each output channel entirely pruned with probability one half, the rest kept.
    Channels,
    /// 1×1 convolutions pruned at random with probability 0.4 (dense enough for a dense
    /// product), the others with probability 0.9 (left to the sparse kernel).
    Mixed,
}

fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Random affine parameters and running statistics, β of both signs so that empty channels
/// become both zero and positive constants after ReLU.
fn random_bn(bn: BatchNorm2d, rng: &mut Rng) -> BatchNorm2d {
    let n = bn.gamma.shape().dims::<1>()[0];
    let device = bn.gamma.device();
    let mut draw = |lo, hi| vector((0..n).map(|_| rng.range(lo, hi)).collect(), &device);
    BatchNorm2d {
        gamma: Param::from_tensor(draw(0.5, 1.5)),
        beta: Param::from_tensor(draw(-0.5, 0.5)),
        running_mean: RunningState::new(draw(-0.3, 0.3)),
        running_var: RunningState::new(draw(0.5, 2.0)),
        ..bn
    }
}

fn conv_mask(name: &str, conv: MaskedConv2d, masking: Masking, rng: &mut Rng) -> MaskedConv2d {
    let shape = conv.weight.shape().dims::<4>();
    let per_channel = shape[1] * shape[2] * shape[3];
    let mut mask = Vec::with_capacity(shape[0] * per_channel);
    for _ in 0..shape[0] {
        let masking = match masking {
            Masking::Mixed if shape[2] * shape[3] == 1 => Masking::Random(0.4),
            Masking::Mixed => Masking::Random(0.9),
            other => other,
        };
        match masking {
            Masking::Random(p) => {
                mask.extend((0..per_channel).map(|_| f32::from(u8::from(rng.uniform() >= p))))
            }
            Masking::Mixed => unreachable!("resolved per layer above"),
            Masking::Channels => {
                let keep = f32::from(u8::from(rng.uniform() >= 0.5));
                mask.extend(std::iter::repeat_n(keep, per_channel));
            }
        }
    }
    conv.with_mask(name, TensorData::new(mask, shape))
        .expect("a valid mask")
}

/// `model` with random BatchNorm statistics and every convolution (and, for random masks, the
/// head) masked.
fn ticket(mut model: ResNet, masking: Masking, seed: u64) -> ResNet {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let rng = &mut rng;
    model.conv1 = conv_mask("conv1", model.conv1.clone(), masking, rng);
    model.bn1 = random_bn(model.bn1.clone(), rng);
    for block in model
        .layer1
        .iter_mut()
        .chain(&mut model.layer2)
        .chain(&mut model.layer3)
        .chain(&mut model.layer4)
    {
        block.conv1 = conv_mask("conv1", block.conv1.clone(), masking, rng);
        block.bn1 = random_bn(block.bn1.clone(), rng);
        block.conv2 = conv_mask("conv2", block.conv2.clone(), masking, rng);
        block.bn2 = random_bn(block.bn2.clone(), rng);
        if let (Some(conv3), Some(bn3)) = (block.conv3.take(), block.bn3.take()) {
            block.conv3 = Some(conv_mask("conv3", conv3, masking, rng));
            block.bn3 = Some(random_bn(bn3, rng));
        }
        if let Some((conv, bn)) = block.downsample.take() {
            block.downsample = Some((
                conv_mask("downsample", conv, masking, rng),
                random_bn(bn, rng),
            ));
        }
    }
    if let Masking::Random(p) = masking {
        let shape = model.fc.weight.shape().dims::<2>();
        let mask: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| f32::from(u8::from(rng.uniform() >= p)))
            .collect();
        model.fc = model
            .fc
            .clone()
            .with_mask("fc", TensorData::new(mask, shape))
            .expect("a valid mask");
    }
    model
}

fn tiny(arch: Arch, stem: Stem, device: &Device) -> ResNet {
    ResNetConfig::new(arch)
        .with_width(4)
        .with_stem(stem)
        .with_num_classes(5)
        .try_init(device)
        .expect("a valid configuration")
}

/// Odd, non-square inputs so that every stride-2 layer meets an odd size and every border.
fn input_size(stem: Stem) -> [usize; 2] {
    match stem {
        Stem::Cifar => [11, 9],
        Stem::ImageNet => [37, 29],
    }
}

/// Largest difference between the engine's and the dense model's logits over the dense
/// logits' largest magnitude, and that magnitude.
fn compare(model: &ResNet, engine: &SparseResNet, x: Tensor<4>) -> (f32, f32) {
    let dense = model
        .forward(x.clone())
        .into_data()
        .try_to_vec_as::<f32>()
        .expect("dense logits");
    let sparse = engine
        .forward_tensor(x)
        .expect("sparse forward")
        .into_data()
        .try_to_vec_as::<f32>()
        .expect("sparse logits");
    assert_eq!(dense.len(), sparse.len(), "logit counts differ");
    let scale = dense.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.0 && scale.is_finite(),
        "degenerate logits {dense:?}"
    );
    let diff = dense
        .iter()
        .zip(&sparse)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    (diff / scale, scale)
}

const TOLERANCE: f32 = 1e-4;

fn check_all_topologies(masking: Masking) -> Vec<SparseResNet> {
    let device = Device::flex();
    let mut engines = Vec::new();
    for (i, arch) in [Arch::ResNet18, Arch::ResNet50].into_iter().enumerate() {
        for (j, stem) in [Stem::Cifar, Stem::ImageNet].into_iter().enumerate() {
            device.seed(10 + (2 * i + j) as u64);
            let model = ticket(tiny(arch, stem, &device), masking, (2 * i + j) as u64 + 1);
            let engine = SparseResNet::from_resnet(&model).expect("compiles");
            let [h, w] = input_size(stem);
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Uniform(0.0, 1.0), &device);
            let (rel, scale) = compare(&model, &engine, x);
            assert!(
                rel <= TOLERANCE,
                "{arch} {stem} {masking:?}: relative logit error {rel:e} (max |logit| {scale})"
            );
            // Again at another size and batch: the engine reuses its buffers, stale values
            // and all, so a second call must not depend on the first.
            let x = Tensor::<4>::random(
                [3, 3, h + 3, w - 2],
                Distribution::Uniform(0.0, 1.0),
                &device,
            );
            let (rel, scale) = compare(&model, &engine, x);
            assert!(
                rel <= TOLERANCE,
                "{arch} {stem} {masking:?}, second call: relative logit error {rel:e} (max |logit| {scale})"
            );
            engines.push(engine);
        }
    }
    engines
}

#[test]
fn dense_masks_match() {
    check_all_topologies(Masking::Random(0.0));
}

#[test]
fn half_sparse_masks_match() {
    check_all_topologies(Masking::Random(0.5));
}

#[test]
fn ninety_percent_sparse_masks_match() {
    check_all_topologies(Masking::Random(0.9));
}

#[test]
fn ninety_eight_percent_sparse_masks_match() {
    check_all_topologies(Masking::Random(0.98));
}

#[test]
fn dense_3x3_layers_on_large_maps_match() {
    // 16 channels or more on maps of 16 positions or more: dense 3×3 layers run Winograd's F(4×4, 3×3)
    // (unpruned and half-pruned masks), sparse ones the kernel (90 %).
    let device = Device::flex();
    for (seed, masking) in [
        Masking::Random(0.0),
        Masking::Random(0.5),
        Masking::Random(0.9),
    ]
    .into_iter()
    .enumerate()
    {
        device.seed(40 + seed as u64);
        let model = ResNetConfig::new(Arch::ResNet18)
            .with_width(16)
            .with_stem(Stem::Cifar)
            .with_num_classes(5)
            .try_init(&device)
            .expect("a valid configuration");
        let model = ticket(model, masking, 50 + seed as u64);
        let engine = SparseResNet::from_resnet(&model).expect("compiles");
        let x = Tensor::<4>::random([3, 3, 18, 17], Distribution::Uniform(0.0, 1.0), &device);
        let (rel, scale) = compare(&model, &engine, x);
        assert!(
            rel <= TOLERANCE,
            "{masking:?}: relative logit error {rel:e} (max |logit| {scale})"
        );
    }
}

#[test]
fn tiny_and_odd_inputs_match() {
    // Maps down to 1×1 at every stage: single-tile planes, tiles overhanging every plane,
    // shortcuts subsampling 1- and 2-pixel maps, Winograd's minimum (16 positions) crossed.
    let device = Device::flex();
    for (i, (arch, stem)) in [
        (Arch::ResNet18, Stem::Cifar),
        (Arch::ResNet50, Stem::Cifar),
        (Arch::ResNet50, Stem::ImageNet),
    ]
    .into_iter()
    .enumerate()
    {
        for masking in [Masking::Random(0.0), Masking::Random(0.9)] {
            device.seed(60 + i as u64);
            let model = ResNetConfig::new(arch)
                .with_width(16)
                .with_stem(stem)
                .with_num_classes(3)
                .try_init(&device)
                .expect("a valid configuration");
            let model = ticket(model, masking, 70 + i as u64);
            let engine = SparseResNet::from_resnet(&model).expect("compiles");
            for [h, w] in [[1, 1], [2, 3], [5, 4], [8, 8], [9, 16]] {
                let x = Tensor::<4>::random([2, 3, h, w], Distribution::Uniform(0.0, 1.0), &device);
                let (rel, scale) = compare(&model, &engine, x);
                assert!(
                    rel <= TOLERANCE,
                    "{arch} {stem} {masking:?} {h}×{w}: relative logit error {rel:e} (max |logit| {scale})"
                );
            }
        }
    }
}

#[test]
fn dense_products_and_the_sparse_kernel_mix_and_match() {
    // Every 1×1 layer of the bottleneck nets (and the half-pruned head) runs as a dense
    // product, every larger one on the sparse kernel (dense_masks_match runs them all as products, patches gathered from
    // padded and phase-split inputs); a single image runs each product on all threads,
    // several run images in parallel (check_all_topologies' batches and this batch of 1).
    let engines = check_all_topologies(Masking::Mixed);
    let device = Device::flex();
    device.seed(3);
    let model = ticket(
        tiny(Arch::ResNet50, Stem::ImageNet, &device),
        Masking::Mixed,
        4,
    );
    let engine = SparseResNet::from_resnet(&model).expect("compiles");
    let x = Tensor::<4>::random([1, 3, 40, 33], Distribution::Uniform(0.0, 1.0), &device);
    let (rel, scale) = compare(&model, &engine, x);
    assert!(rel <= TOLERANCE, "batch 1: {rel:e} (max |logit| {scale})");
    for engine in engines.iter().chain([&engine]) {
        let layers = engine.layers();
        let bottleneck = layers.iter().any(|l| l.name.ends_with("conv3"));
        for layer in &layers {
            // A quarter of the weights for the head, a third for convolutions.
            let dense_enough = if layer.name == "fc" {
                4 * layer.stored_nnz >= layer.dense
            } else {
                100 * layer.stored_nnz >= 33 * layer.dense
            };
            let expected = dense_enough && layer.stored_nnz > 0;
            assert_eq!(layer.dense_product, expected, "{}", layer.name);
        }
        assert!(!bottleneck || layers.iter().any(|l| l.dense_product));
    }
}

#[test]
fn empty_output_channels_are_constants_and_match() {
    let engines = check_all_topologies(Masking::Channels);
    for engine in &engines {
        let layers = engine.layers();
        let empty: usize = layers.iter().map(|l| l.empty_channels).sum();
        assert!(empty > 0, "no empty channel in a channel-masked model");
        // Weights reading an empty channel of the previous layer are folded away.
        let folded: usize = layers.iter().map(|l| l.masked_nnz - l.stored_nnz).sum();
        assert!(
            folded > 0,
            "no weight reading a constant channel was folded"
        );
        assert!(engine.nnz() < layers.iter().map(|l| l.masked_nnz).sum::<usize>());
    }
}

#[test]
fn summaries_count_the_mask() {
    let device = Device::flex();
    device.seed(5);
    let model = ticket(
        tiny(Arch::ResNet50, Stem::Cifar, &device),
        Masking::Random(0.9),
        9,
    );
    let engine = SparseResNet::from_resnet(&model).expect("compiles");
    let mut nonzero = 0usize;
    let mut total = 0usize;
    for (_, conv) in model.convolutions() {
        let w = conv
            .effective_weight()
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        nonzero += w.iter().filter(|v| **v != 0.0).count();
        total += w.len();
    }
    let fc = model
        .fc
        .effective_weight()
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap();
    nonzero += fc.iter().filter(|v| **v != 0.0).count();
    total += fc.len();
    let layers = engine.layers();
    assert_eq!(layers.len(), model.convolutions().len() + 1);
    assert_eq!(layers.iter().map(|l| l.dense).sum::<usize>(), total);
    assert_eq!(layers.iter().map(|l| l.masked_nnz).sum::<usize>(), nonzero);
    let density = engine.density();
    assert!((density - nonzero as f64 / total as f64).abs() < 1e-12);
    assert!(density > 0.05 && density < 0.15, "density {density}");
    assert!(engine.nnz() <= nonzero);
    assert!(engine.macs(32, 32) > 0);
}

#[test]
fn running_statistics_of_a_training_model_are_used() {
    // Train-mode forwards on an autodiff device update BatchNorm's running statistics lazily;
    // the engine must see the updated values, as eval mode does.
    let device = Device::flex().autodiff();
    device.seed(7);
    let model = ticket(
        tiny(Arch::ResNet18, Stem::Cifar, &device),
        Masking::Random(0.5),
        4,
    );
    let before = SparseResNet::from_resnet(&model).expect("compiles");
    for _ in 0..2 {
        let x = Tensor::<4>::random([4, 3, 9, 9], Distribution::Normal(0.5, 1.0), &device);
        let _ = model.forward(x);
    }
    let engine = SparseResNet::from_resnet(&model).expect("compiles");
    let eval = model.valid();
    let inner = Device::flex();
    let x = Tensor::<4>::random([2, 3, 9, 9], Distribution::Uniform(0.0, 1.0), &inner);
    let (rel, _) = compare(&eval, &engine, x.clone());
    assert!(rel <= TOLERANCE, "relative logit error {rel:e}");
    let (stale, _) = compare(&eval, &before, x);
    assert!(
        stale > 1e-3,
        "the training forwards did not move the statistics"
    );
}

#[test]
fn bad_inputs_are_errors() {
    let device = Device::flex();
    let model = tiny(Arch::ResNet18, Stem::ImageNet, &device);
    let engine = SparseResNet::from_resnet(&model).expect("compiles");
    assert_eq!(engine.in_channels(), 3);
    assert_eq!(engine.num_classes(), 5);
    for (len, batch, h, w) in [(3 * 8 * 8 - 1, 1, 8, 8), (0, 0, 8, 8), (0, 1, 0, 8)] {
        let err = engine.forward(&vec![0.5; len], batch, h, w);
        assert!(
            matches!(err, Err(SparseError::InvalidInput(_))),
            "{len} values for {batch}×3×{h}×{w}: {err:?}"
        );
    }
    let x = Tensor::<4>::zeros([1, 2, 8, 8], &device);
    assert!(matches!(
        engine.forward_tensor(x),
        Err(SparseError::InvalidInput(_))
    ));
    let ok = engine
        .forward(&[0.5; 3 * 8 * 8], 1, 8, 8)
        .expect("a valid input");
    assert_eq!(ok.len(), 5);
    assert!(ok.iter().all(|v| v.is_finite()));
}

#[test]
fn grouped_convolutions_are_refused() {
    let device = Device::flex();
    let mut model = tiny(Arch::ResNet18, Stem::Cifar, &device);
    model.layer1[0].conv2 = dwlth_models::MaskedConv2dConfig::new([4, 4], [3, 3])
        .with_padding([1, 1])
        .with_groups(2)
        .init(&device);
    assert!(matches!(
        SparseResNet::from_resnet(&model),
        Err(SparseError::UnsupportedLayer { .. })
    ));
}

#[test]
fn a_profiled_pass_gives_the_same_logits_and_times_every_layer() {
    let device = Device::flex();
    // Sparse stems (mixed masks) run fused with the max-pool, a dense one apart.
    let mut stems = Vec::new();
    for (masking, seed) in [(Masking::Mixed, 22), (Masking::Random(0.0), 23)] {
        device.seed(seed);
        let model = ticket(tiny(Arch::ResNet50, Stem::ImageNet, &device), masking, seed);
        let engine = SparseResNet::from_resnet(&model).expect("compiles");
        let [h, w] = input_size(Stem::ImageNet);
        let batch = 2;
        let x = Tensor::<4>::random([batch, 3, h, w], Distribution::Uniform(0.0, 1.0), &device);
        let input = x.into_data().try_to_vec_as::<f32>().expect("input");
        let logits = engine.forward(&input, batch, h, w).expect("forward");
        let (profiled, times) = engine.profile(&input, batch, h, w).expect("profile");
        assert_eq!(profiled, logits);
        // One entry per layer of the summary and per pool, in forward order (a block's shortcut
        // runs before its first convolution).
        let layers = engine.layers();
        let stem_is_dense = layers[0].dense_product;
        let mut expected: Vec<String> = layers.into_iter().map(|l| l.name).collect();
        expected.push("avgpool".into());
        let mut names: Vec<String> = times.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names[0], "conv1");
        let pool = usize::from(stem_is_dense);
        if stem_is_dense {
            assert_eq!(names[1], "maxpool");
            expected.push("maxpool".into());
        }
        assert_eq!(
            names[1 + pool..3 + pool],
            ["layer1.0.downsample.0", "layer1.0.conv1"]
        );
        assert_eq!(names[names.len() - 2..], ["avgpool", "fc"]);
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
        assert!(times
            .iter()
            .all(|t| t.seconds >= 0.0 && t.seconds.is_finite()));
        let macs: usize = times.iter().map(|t| t.macs).sum();
        assert_eq!(macs, batch * engine.macs(h, w));
        assert!(engine.profile(&input[1..], batch, h, w).is_err());
        stems.push(stem_is_dense);
    }
    assert_eq!(stems, [false, true]);
}
