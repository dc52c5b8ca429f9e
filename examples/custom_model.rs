//! Your own Burn model, pruned and attacked: a small CNN made of Burn's `Conv2d`, `BatchNorm`
//! and `Linear` — no layer of this library in it — trained, pruned to 80 % by global magnitude,
//! fine-tuned with its pruned weights held at zero, attacked with FGSM and PGD, saved and
//! reloaded.
//!
//! ```text
//! cargo run --release --example custom_model
//! ```
//!
//! The data are generated (two classes of faint, noisy stripes, 16×16), so the example runs offline
//! in seconds. Sparse *inference* speed-ups come from `dwlth::sparse::SparseResNet`, which
//! compiles torchvision-style ResNets; a model of another shape runs its pruned layers dense.

use std::error::Error;

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
use dwlth::prune::analysis::MaskReport;
use dwlth::prune::{apply_masks, masked_weights, param_masks, MaskSet, Prunable, PruneMethod};

/// The model: what any Burn user already has.
#[derive(Module, Debug)]
struct SmallCnn {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl SmallCnn {
    fn new(classes: usize, device: &Device) -> Self {
        let same = || PaddingConfig2d::Explicit(1, 1, 1, 1);
        Self {
            conv1: Conv2dConfig::new([3, 16], [3, 3])
                .with_padding(same())
                .init(device),
            bn1: BatchNormConfig::new(16).init(device),
            conv2: Conv2dConfig::new([16, 32], [3, 3])
                .with_stride([2, 2])
                .with_padding(same())
                .init(device),
            bn2: BatchNormConfig::new(32).init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(32, classes).init(device),
        }
    }
}

/// What attacks and the trainer need: logits of images in `[0, 1]`.
impl Classifier for SmallCnn {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn1.forward(self.conv1.forward(images)));
        let x = relu(self.bn2.forward(self.conv2.forward(x)));
        self.fc.forward(self.pool.forward(x).flatten(1, 3))
    }
}

/// Two classes of 16×16 images: faint horizontal or vertical stripes under strong noise.
fn stripes(n: usize, seed: u64, device: &Device) -> InMemory {
    let mut state = seed.wrapping_add(1);
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let labels: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
    let mut images = Vec::with_capacity(n * 3 * 256);
    for label in &labels {
        for _channel in 0..3 {
            for y in 0..16 {
                for x in 0..16 {
                    let along = if *label == 0 { y } else { x };
                    let stripe = if (along / 2) % 2 == 0 { 0.56 } else { 0.44 };
                    images.push((stripe + 0.4 * noise()).clamp(0.0, 1.0));
                }
            }
        }
    }
    InMemory::new(images, labels, [3, 16, 16], 32, seed, device)
}

fn trainer(epochs: usize, lr: f64) -> Result<Trainer, Box<dyn Error>> {
    let config = TrainConfig {
        epochs,
        lr: LrSchedule {
            base: lr,
            schedule: Schedule::Constant,
            warmup_epochs: 0,
        },
        momentum: 0.9,
        weight_decay: 5e-4,
        regime: Regime::Standard,
        eval_attack: None,
        ra_from_epoch: 0,
        overfit_guard: None,
        seed: 1,
        snapshots: false,
        validate_every: 1,
    };
    Ok(Trainer::new(config, None)?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let device = Device::flex().autodiff();
    device.seed(7);
    let mut train = stripes(512, 1, &device);
    let test = stripes(256, 2, &device).batches();
    let fgsm = Attack::fgsm(8.0 / 255.0);
    let pgd = Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 10);
    let report = |name: &str, model: &SmallCnn| -> Result<(), Box<dyn Error>> {
        let view = AttackMode::Eval.view(model);
        let a = evaluate(&view, test.clone(), Some(&fgsm), None, 2)?;
        let b = evaluate(&view, test.clone(), Some(&pgd), None, 2)?;
        println!(
            "{name:<22} SA {:5.1} %   FGSM RA {:5.1} %   PGD-10 RA {:5.1} %",
            100.0 * a.sa,
            100.0 * a.ra.unwrap_or(0.0),
            100.0 * b.ra.unwrap_or(0.0)
        );
        Ok(())
    };

    // 1. Dense training.
    let dense = trainer(4, 0.05)?
        .fit(SmallCnn::new(2, &device), &mut train, &test, 2)?
        .model;
    report("dense", &dense)?;

    // 2. Global magnitude pruning of the convolutions to 80 %; Burn's layers are found by
    //    their PyTorch names (`conv1.weight`, …) and their pruned weights are set to zero.
    let masks = PruneMethod::global_magnitude().prune(
        &masked_weights(&dense),
        &Prunable::convolutions(),
        0.8,
    )?;
    let ticket = apply_masks(dense, &masks)?;
    println!("\n{}", MaskReport::of(&masks).table());
    report("80 % ticket", &ticket)?;

    // 3. Fine-tuning: Burn's layers have no mask of their own, so the trainer zeroes the
    //    gradients at pruned positions every step (a fresh optimiser carries no momentum).
    let keep = param_masks(&ticket, &masks)?;
    let tuned = trainer(2, 0.01)?
        .with_param_masks(keep)
        .fit(ticket, &mut train, &test, 2)?
        .model;
    report("80 % ticket, tuned", &tuned)?;
    let still = MaskSet::from_model(&tuned, &Prunable::convolutions());
    println!(
        "sparsity after fine-tuning: {:.1} %",
        100.0 * still.sparsity()
    );

    // 4. Saved and reloaded: masks as `torch.nn.utils.prune`-style safetensors, weights with
    //    PyTorch names. (SA and FGSM repeat exactly; PGD's random start draws anew.)
    let dir = std::env::temp_dir().join("dwlth-custom-model");
    std::fs::create_dir_all(&dir)?;
    masks.save(dir.join("masks.safetensors"))?;
    save_module(&tuned, &dir.join("weights.safetensors"))?;
    let mut reloaded = apply_masks(
        SmallCnn::new(2, &device),
        &MaskSet::load(dir.join("masks.safetensors"))?,
    )?;
    load_module(&mut reloaded, &dir.join("weights.safetensors"))?;
    report("reloaded", &reloaded)?;
    println!("saved to {}", dir.display());
    Ok(())
}
