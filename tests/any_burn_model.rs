//! Pruning, IMP, LMP, the mask analyses, training and attacks on models this library did not
//! write: a small CNN and a residual network made only of Burn's own `nn` layers (`Conv2d`,
//! `BatchNorm`, `Linear`), used through the facade alone (`dwlth::burn`).

use dwlth::adv::{
    evaluate, Attack, AttackMode, Classifier, InMemory, LrSchedule, Regime, Schedule, TrainConfig,
    Trainer,
};
use dwlth::burn::module::Module;
use dwlth::burn::nn::conv::{Conv2d, Conv2dConfig};
use dwlth::burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use dwlth::burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use dwlth::burn::tensor::activation::relu;
use dwlth::burn::tensor::{Device, Tensor};
use dwlth::models::io::{load_module, save_module};
use dwlth::models::mode::independent_copy;
use dwlth::prune::analysis::MaskReport;
use dwlth::prune::{
    apply_masks, learn_mask, masked_weights, param_masks, pruned_nonzero, Imp, ImpConfig,
    LmpConfig, MaskSet, Prunable, PruneMethod, Scope, WeightKind,
};

/// A small CNN: two convolutions, BatchNorm, a linear head.
#[derive(Module, Debug)]
struct SmallCnn {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl SmallCnn {
    fn new(classes: usize, device: &Device) -> Self {
        let same = || PaddingConfig2d::Explicit(1, 1, 1, 1);
        Self {
            conv1: Conv2dConfig::new([3, 8], [3, 3])
                .with_padding(same())
                .init(device),
            bn1: BatchNormConfig::new(8).init(device),
            conv2: Conv2dConfig::new([8, 16], [3, 3])
                .with_stride([2, 2])
                .with_padding(same())
                .init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(16, classes).init(device),
        }
    }
}

impl Classifier for SmallCnn {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(images)));
        let x = relu(self.conv2.forward(x));
        self.fc.forward(self.pool.forward(x).flatten(1, 3))
    }
}

/// A residual block of Burn layers.
#[derive(Module, Debug)]
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
}

/// A small residual network: a stem, two residual blocks, a linear head.
#[derive(Module, Debug)]
struct ResNetLike {
    stem: Conv2d,
    blocks: Vec<Block>,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl ResNetLike {
    fn new(classes: usize, device: &Device) -> Self {
        let conv = |cin, cout| {
            Conv2dConfig::new([cin, cout], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        let block = || Block {
            conv1: conv(6, 6),
            bn1: BatchNormConfig::new(6).init(device),
            conv2: conv(6, 6),
            bn2: BatchNormConfig::new(6).init(device),
        };
        Self {
            stem: conv(3, 6),
            blocks: vec![block(), block()],
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(6, classes).init(device),
        }
    }
}

impl Classifier for ResNetLike {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.stem.forward(images));
        for b in &self.blocks {
            let y = relu(b.bn1.forward(b.conv1.forward(x.clone())));
            x = relu(b.bn2.forward(b.conv2.forward(y)) + x);
        }
        self.fc.forward(self.pool.forward(x).flatten(1, 3))
    }
}

/// Two classes: dark and bright 8×8 images with a little texture.
fn toy(n: usize, seed: u64, device: &Device) -> InMemory {
    let mut images = Vec::with_capacity(n * 3 * 64);
    let mut state = seed;
    let labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
    for class in &labels {
        for p in 0..3 * 64 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.3;
            let base = if *class == 1 { 0.7 } else { 0.3 };
            images.push((base + noise + 0.02 * ((p % 8) as f32 - 4.0) / 4.0).clamp(0.0, 1.0));
        }
    }
    InMemory::new(images, labels, [3, 8, 8], 8, seed, device)
}

fn trainer(epochs: usize) -> Trainer {
    let config = TrainConfig {
        epochs,
        lr: LrSchedule {
            base: 0.05,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
        },
        momentum: 0.9,
        weight_decay: 5e-4,
        regime: Regime::Standard,
        eval_attack: None,
        ra_from_epoch: 0,
        overfit_guard: None,
        seed: 5,
        snapshots: false,
        validate_every: 1,
    };
    let mut t = Trainer::new(config, None).unwrap();
    t.progress = false;
    t
}

/// Pruned positions whose stored weight is not exactly zero.
fn revived(model: &impl Module, masks: &MaskSet) -> usize {
    pruned_nonzero(model, masks).unwrap()
}

#[test]
fn a_plain_burn_cnn_is_pruned_trained_attacked_saved_and_reloaded() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let model = SmallCnn::new(2, &device);

    // Burn's layers are found, named by their PyTorch keys, the Linear in PyTorch's layout.
    let layers = masked_weights(&model);
    let found: Vec<_> = layers
        .iter()
        .map(|l| (l.name.as_str(), l.shape.clone(), l.kind))
        .collect();
    assert_eq!(
        found,
        [
            ("conv1.weight", vec![8, 3, 3, 3], WeightKind::BurnConv2d),
            ("conv2.weight", vec![16, 8, 3, 3], WeightKind::BurnConv2d),
            ("fc.weight", vec![2, 16], WeightKind::BurnLinear),
        ]
    );
    let burn_fc: Vec<f32> = model
        .fc
        .weight
        .val()
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap();
    assert_eq!(
        layers[2].weight[16 + 3],
        burn_fc[3 * 2 + 1],
        "fc[1][3] = burn[3][1]"
    );

    // Global magnitude pruning to 80 % of every weight, head included.
    let masks = PruneMethod::global_magnitude()
        .prune(&layers, &Prunable::all(), 0.8)
        .unwrap();
    assert!((masks.sparsity() - 0.8).abs() < 0.01);
    let pruned = apply_masks(model, &masks).unwrap();
    // The zeros are where the masks say, read back through Burn's own layout.
    assert_eq!(MaskSet::from_model(&pruned, &Prunable::all()), {
        let mut read = masks.clone();
        read.metadata.clear();
        read
    });
    assert_eq!(revived(&pruned, &masks), 0);
    let fc_zeros = pruned
        .fc
        .weight
        .val()
        .equal_elem(0.0)
        .int()
        .sum()
        .into_scalar::<i64>() as usize;
    let fc_mask = masks.get("fc.weight").unwrap();
    assert_eq!(fc_zeros, fc_mask.keep.iter().filter(|k| !**k).count());

    // Training with the masks on the gradients keeps every pruned weight at exactly zero …
    let mut train = toy(32, 1, &device);
    let val = toy(16, 2, &device).batches();
    let keep = param_masks(&pruned, &masks).unwrap();
    let outcome = trainer(3)
        .with_param_masks(keep)
        .fit(pruned.clone(), &mut train, &val, 2)
        .unwrap();
    assert_eq!(revived(&outcome.model, &masks), 0);
    assert!(outcome.history.last().unwrap().train_acc > 0.6);
    // … and without them Burn's layers would let the pruned weights move (the masks matter).
    let unmasked = trainer(1).fit(pruned, &mut train, &val, 2).unwrap();
    assert!(revived(&unmasked.model, &masks) > 0);

    // Attacks on the user's model, through an evaluation-mode view.
    let trained = outcome.model;
    let view = AttackMode::Eval.view(&trained);
    let report = evaluate(
        &view,
        val.clone(),
        Some(&Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 3)),
        None,
        2,
    )
    .unwrap();
    assert!(report.ra.unwrap() <= report.sa);

    // Masks and weights saved, reloaded into a fresh model: the same logits.
    let dir = tempfile::tempdir().unwrap();
    masks.save(dir.path().join("masks.safetensors")).unwrap();
    save_module(&trained, &dir.path().join("weights.safetensors")).unwrap();
    let reloaded_masks = MaskSet::load(dir.path().join("masks.safetensors")).unwrap();
    let mut fresh = apply_masks(SmallCnn::new(2, &device), &reloaded_masks).unwrap();
    load_module(&mut fresh, &dir.path().join("weights.safetensors")).unwrap();
    let (x, _) = val[0].clone();
    let a = AttackMode::Eval.view(&trained).logits(x.clone());
    let b = AttackMode::Eval.view(&fresh).logits(x);
    assert_eq!(a.into_data(), b.into_data());
    assert_eq!(revived(&fresh, &reloaded_masks), 0);
}

#[test]
fn a_residual_burn_network_goes_through_imp_lmp_and_the_analyses() {
    let device = Device::flex().autodiff();
    device.seed(12);
    let theta_p = ResNetLike::new(2, &device);
    let names: Vec<String> = masked_weights(&theta_p)
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(
        names,
        [
            "stem.weight",
            "blocks.0.conv1.weight",
            "blocks.0.conv2.weight",
            "blocks.1.conv1.weight",
            "blocks.1.conv2.weight",
            "fc.weight"
        ]
    );

    // IMP with rewinding, two rounds, each re-training with the round's masks on the gradients.
    let dir = tempfile::tempdir().unwrap();
    let imp = Imp::new(
        ImpConfig {
            rate: 0.2,
            rounds: 2,
            ..ImpConfig::default()
        },
        Prunable::convolutions(),
        dir.path(),
    )
    .unwrap();
    let mut train = toy(16, 3, &device);
    let val = toy(8, 4, &device).batches();
    let (trained, masks, rounds) = imp
        .run(&theta_p, |model: ResNetLike, context| {
            let keep = param_masks(&model, &context.masks)?;
            let outcome = trainer(1)
                .with_param_masks(keep)
                .fit(model, &mut train, &val, 2)?;
            assert_eq!(revived(&outcome.model, &context.masks), 0);
            Ok::<_, Box<dyn std::error::Error>>((outcome.model, serde_json::json!({})))
        })
        .unwrap();
    assert_eq!(rounds.len(), 2);
    assert!(
        (masks.sparsity() - 0.36).abs() < 0.01,
        "{}",
        masks.sparsity()
    );
    assert_eq!(revived(&trained, &masks), 0);
    let first = MaskSet::load(imp.masks_path(1)).unwrap();
    for (name, mask) in masks.iter() {
        let earlier = &first.get(name).unwrap().keep;
        assert!(mask
            .keep
            .iter()
            .zip(earlier)
            .all(|(now, then)| !now || *then));
    }

    // The analyses read the masks of a model they did not build.
    let report = MaskReport::of(&masks);
    assert!(report.table().contains("blocks.1.conv2.weight"));

    // LMP learns a mask of Burn's layers too.
    let batches = toy(8, 5, &device).batches();
    let (learned, losses) = learn_mask(
        &theta_p,
        &Prunable::all(),
        &LmpConfig {
            sparsity: 0.5,
            scope: Scope::Global,
            lr: 0.01,
            epochs: 2,
        },
        &batches,
        |m: &ResNetLike, x| m.logits(x),
    )
    .unwrap();
    assert_eq!(losses.len(), 2);
    assert!((learned.sparsity() - 0.5).abs() < 0.01);
    assert!(learned.get("fc.weight").is_some());
    let ticket = apply_masks(independent_copy(&theta_p), &learned).unwrap();
    assert_eq!(revived(&ticket, &learned), 0);
}
