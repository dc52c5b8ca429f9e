//! A GPU backend against the CPU's: the same weights give the same logits, the same seed the
//! same initial weights, attacks the same adversarial accuracy, a training step the same
//! parameters, pruning exact zeros, and the `smoke` experiment the same results.
//!
//! Built only with a GPU backend: `cargo test --features wgpu --test gpu` runs on whatever wgpu
//! adapter the machine has — in CI, Mesa's lavapipe, a Vulkan device in software
//! (`tools/setup-lavapipe.sh`); `tools/gpu-check.sh` runs the same tests on CUDA
//! (`DWLTH_TEST_GPU=cuda`).
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use burn::tensor::{Device, Tensor};
use dwlth::models::io::{load_resnet, save_resnet};
use dwlth::models::{Arch, DeviceSpec, ResNetConfig, Stem};

/// The GPU under test: `$DWLTH_TEST_GPU` (`wgpu`, `cuda`, `cuda:1`), by default wgpu.
fn gpu_spec() -> DeviceSpec {
    std::env::var("DWLTH_TEST_GPU")
        .unwrap_or_else(|_| "wgpu".into())
        .parse()
        .expect("DWLTH_TEST_GPU names a device")
}

fn gpu() -> Device {
    // Without a runtime folder, every Vulkan call of Mesa's loader prints an error.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    gpu_spec().device().expect("the GPU backend under test")
}

/// The host generator is one per process: tests that draw from it take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn weights_saved_on_the_cpu_give_the_same_logits_on_the_gpu() {
    let _serial = serial();
    let cpu = Device::flex();
    cpu.seed(11);
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(4)
        .with_stem(Stem::Cifar)
        .with_num_classes(10)
        .init(&cpu);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save_resnet(&model, &path).unwrap();
    let gpu = gpu();
    let (on_gpu, _) = load_resnet(&path, None, &gpu).unwrap();
    let values: Vec<f32> = (0..2 * 3 * 16 * 16)
        .map(|i| (i % 97) as f32 / 97.0)
        .collect();
    let input = |device: &Device| {
        Tensor::<1>::from_floats(values.as_slice(), device).reshape([2, 3, 16, 16])
    };
    let a = model
        .forward(input(&cpu))
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap();
    let b = on_gpu
        .forward(input(&gpu))
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-4, "logits differ by {diff}");
}

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::Int;
use dwlth::adv::{evaluate, Attack, AttackMode, Classifier, Regime};
use dwlth::models::io::resnet_tensors;
use dwlth::models::ResNet;
use dwlth::prune::{apply_masks, masked_weights, Prunable, PruneMethod};

/// A width-4 CIFAR ResNet-18 drawn from `seed` on `device`.
fn fresh(seed: u64, device: &Device) -> ResNet {
    dwlth::models::random::seed(device, seed);
    ResNetConfig::new(Arch::ResNet18)
        .with_width(4)
        .with_stem(Stem::Cifar)
        .with_num_classes(10)
        .init(device)
}

/// Sixteen 3×16×16 images and labels, the same on every device.
fn batch(device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let pixels: Vec<f32> = (0..16 * 3 * 16 * 16)
        .map(|i| ((i * 37) % 101) as f32 / 100.0)
        .collect();
    let images = Tensor::<1>::from_floats(pixels.as_slice(), device).reshape([16, 3, 16, 16]);
    let labels: Vec<i64> = (0..16).map(|i| (i * 7) % 10).collect();
    (
        images,
        Tensor::<1, Int>::from_ints(labels.as_slice(), device),
    )
}

fn flat(model: &ResNet) -> Vec<f32> {
    resnet_tensors(model)
        .into_iter()
        .flat_map(|(_, _, v)| v)
        .collect()
}

#[test]
fn one_seed_gives_the_same_initial_weights_on_every_device() {
    let _serial = serial();
    let (cpu, gpu) = (Device::flex(), gpu());
    let a = flat(&fresh(5, &cpu));
    let b = flat(&fresh(5, &gpu));
    assert_eq!(a.len(), b.len());
    if let Some(k) = (0..a.len()).find(|&k| a[k] != b[k]) {
        panic!(
            "initial weights drawn from seed 5 differ between the CPU and the GPU: value {k} is {} and {}",
            a[k], b[k]
        );
    }
    assert_ne!(a, flat(&fresh(6, &gpu)));
}

#[test]
fn attacks_give_the_cpu_adversarial_accuracy() {
    let _serial = serial();
    let (cpu, gpu) = (Device::flex().autodiff(), gpu().autodiff());
    let models = [fresh(3, &cpu), fresh(3, &gpu)];
    for attack in [
        Attack::fgsm(8.0 / 255.0),
        Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 5),
    ] {
        let reports: Vec<_> = models
            .iter()
            .zip([&cpu, &gpu])
            .map(|(m, device)| {
                dwlth::models::random::seed(device, 9);
                let view = AttackMode::Eval.view(m);
                evaluate(&view, [batch(device)], Some(&attack), None, 10).unwrap()
            })
            .collect();
        assert_eq!(reports[0].sa, reports[1].sa, "{attack:?}");
        // A pixel whose loss gradient is ~0 may take the other sign on another device.
        let (a, b) = (reports[0].ra.unwrap(), reports[1].ra.unwrap());
        assert!(
            (a - b).abs() <= 1.0 / 16.0 + 1e-9,
            "{attack:?}: RA {a} on the CPU, {b} on the GPU"
        );
    }
}

/// One SGD step (momentum 0.9, weight decay 5e-4 as the papers) under `regime`.
fn step(model: ResNet, regime: &Regime, device: &Device) -> ResNet {
    dwlth::models::random::seed(device, 4);
    let (images, labels) = batch(device);
    let inputs = regime.inputs(&model, images, labels.clone()).unwrap();
    let logits = model.logits(inputs);
    let loss = CrossEntropyLossConfig::new()
        .init(device)
        .forward(logits, labels);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
        .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(5e-4)))
        .init();
    optim.step(0.1, model, grads)
}

/// The adversarial images `attack` crafts against the seed-8 model in `mode`, on `device`.
fn crafted(attack: &Attack, mode: AttackMode, device: &Device) -> Vec<f32> {
    let model = fresh(8, device);
    dwlth::models::random::seed(device, 4);
    let (x, y) = batch(device);
    let xa = attack.perturb(&mode.view(&model), x, y).unwrap();
    xa.into_data().try_to_vec_as::<f32>().unwrap()
}

fn differing(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| (*x - *y).abs() > 1e-4)
        .count()
}

#[test]
fn attacks_craft_the_cpu_images_on_the_gpu() {
    let _serial = serial();
    let (cpu, gpu) = (Device::flex().autodiff(), gpu().autodiff());
    // BatchNorm in evaluation mode (how RA is measured): every pixel agrees, random starts
    // included — they are drawn on the host.
    for attack in [
        Attack::fgsm(8.0 / 255.0),
        Attack::fgsm_rs(8.0 / 255.0, 10.0 / 255.0),
        Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 10),
    ] {
        let (a, b) = (
            crafted(&attack, AttackMode::Eval, &cpu),
            crafted(&attack, AttackMode::Eval, &gpu),
        );
        assert_eq!(differing(&a, &b), 0, "{attack:?}");
    }
    // BatchNorm in training mode (the papers' adversarial training): the input gradient flows
    // through the batch statistics, where the two backends' summation orders leave components
    // of ~1e-9 whose sign differs. One FGSM step agrees on all but a few pixels (14 of 12,288
    // measured on lavapipe); ten PGD steps, each moving the batch statistics of every image,
    // spread such flips to most pixels, so multi-step train-mode attacks agree in distribution
    // (the smoke experiment below), not pixel by pixel.
    let attack = Attack::fgsm(8.0 / 255.0);
    let (a, b) = (
        crafted(&attack, AttackMode::Train, &cpu),
        crafted(&attack, AttackMode::Train, &gpu),
    );
    let n = differing(&a, &b);
    assert!(
        n * 200 <= a.len(),
        "train-mode FGSM: {n} of {} pixels differ",
        a.len()
    );
}

#[test]
fn a_standard_and_an_adversarial_training_step_match_the_cpu() {
    let _serial = serial();
    let (cpu, gpu) = (Device::flex().autodiff(), gpu().autodiff());
    // PGD-10 with BatchNorm in evaluation mode crafts the same images on both devices (see
    // above); the step itself then agrees as closely as a standard one.
    let adversarial = Regime::Adversarial {
        attack: Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 10),
        mode: AttackMode::Eval,
    };
    for regime in [Regime::Standard, adversarial] {
        let a = flat(&step(fresh(8, &cpu), &regime, &cpu));
        let b = flat(&step(fresh(8, &gpu), &regime, &gpu));
        let diff = max_abs_diff(&a, &b);
        // Summation order differs between the backends' kernels (f32): 1e-4 after one step of
        // rate 0.1 on weights of magnitude ~0.1-1.
        assert!(diff < 1e-4, "{regime:?}: parameters differ by {diff}");
    }
}

#[test]
fn pruned_weights_are_exactly_zero_on_the_gpu() {
    let _serial = serial();
    let gpu = gpu().autodiff();
    let model = fresh(2, &gpu);
    let masks = PruneMethod::global_magnitude()
        .prune(&masked_weights(&model), &Prunable::convolutions(), 0.8)
        .unwrap();
    assert!((masks.sparsity() - 0.8).abs() < 1e-3);
    let ticket = apply_masks(model, &masks).unwrap();
    let ticket = step(ticket, &Regime::Standard, &gpu);
    let mut pruned = 0;
    for w in masked_weights(&ticket) {
        for (value, keep) in w.weight.iter().zip(&w.mask) {
            if !keep {
                assert_eq!(*value, 0.0, "{}: a pruned weight is {value}", w.name);
                pruned += 1;
            }
        }
    }
    assert!(pruned > masks.total() / 2, "{pruned} pruned weights");
}

#[test]
fn the_smoke_experiment_gives_the_cpu_results_on_the_gpu() {
    let _serial = serial();
    use dwlth::pipeline::{run_experiment, ExperimentConfig, RunOptions};
    let data = dwlth::commands::run::DemoData::locate();
    assert!(
        data.mnist.join("digits/9.json").exists(),
        "real test data missing: run tools/setup-test-data.sh"
    );
    let config = ExperimentConfig::smoke(data.fashion, data.mnist);
    let dir = tempfile::tempdir().unwrap();
    let mut summaries = Vec::new();
    for (name, device) in [("cpu", DeviceSpec::Cpu), ("gpu", gpu_spec())] {
        if device != DeviceSpec::Cpu {
            let _ = gpu();
        }
        let options = RunOptions {
            out: dir.path().join(name),
            device,
            replicas: Vec::new(),
            shard: None,
            verbose: false,
            prepare_only: false,
        };
        summaries.push(run_experiment(&config, &options).unwrap());
    }
    let (cpu, gpu) = (&summaries[0], &summaries[1]);
    assert_eq!(cpu.results.len(), gpu.results.len());
    let mut worst: f64 = 0.0;
    for (a, b) in cpu.results.iter().zip(&gpu.results) {
        assert_eq!(
            (&a.pretrain, a.sparsity, &a.regime, a.seed),
            (&b.pretrain, b.sparsity, &b.regime, b.seed)
        );
        for (x, y) in [
            (Some(a.sa), Some(b.sa)),
            (a.ra, b.ra),
            (a.transfer_ra, b.transfer_ra),
        ] {
            assert_eq!(x.is_some(), y.is_some());
            if let (Some(x), Some(y)) = (x, y) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    eprintln!("largest accuracy difference between the CPU and the GPU: {worst}");
    assert!(
        worst <= SMOKE_TOLERANCE,
        "accuracies differ by up to {worst}"
    );
}

/// How far the smoke experiment's accuracies may drift between two backends: the backends sum
/// in other orders, and over a few hundred SGD steps those last-bit differences move a few of
/// the 32 test images across a decision boundary.
const SMOKE_TOLERANCE: f64 = 4.0 / 32.0;

/// Without BatchNorm: a masked convolution, ReLU and a masked head on the flattened maps, so
/// a training step does not depend on how its batch is split.
#[derive(burn::module::Module, Debug)]
struct ConvHead {
    conv: dwlth::models::layers::MaskedConv2d,
    head: dwlth::models::layers::MaskedLinear,
}

impl dwlth::adv::Classifier for ConvHead {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        let maps = burn::tensor::activation::relu(self.conv.forward(images));
        let [n, c, h, w] = maps.dims();
        self.head.forward(maps.reshape([n, c * h * w]))
    }
}

#[test]
fn a_batch_split_between_the_gpu_and_the_cpu_trains_as_on_the_gpu_alone() {
    use dwlth::adv::{InMemory, LrSchedule, Schedule, TrainConfig, Trainer};
    use dwlth::models::layers::{MaskedConv2dConfig, MaskedLinearConfig};
    let _serial = serial();
    let (gpu, cpu) = (gpu().autodiff(), Device::flex().autodiff());
    dwlth::models::random::seed(&gpu, 12);
    let start = ConvHead {
        conv: MaskedConv2dConfig::new([3, 4], [3, 3])
            .with_padding([1, 1])
            .init(&gpu),
        head: MaskedLinearConfig::new(4 * 16 * 16, 10).init(&gpu),
    };
    let config = TrainConfig {
        epochs: 1,
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
        seed: 1,
        snapshots: false,
        validate_every: 1,
    };
    let fit = |replicas: Vec<Device>| {
        let (images, labels) = batch(&Device::flex());
        let images = images.into_data().try_to_vec_as::<f32>().unwrap();
        let labels = labels.into_data().try_to_vec_as::<i64>().unwrap();
        let mut data = InMemory::new(images, labels, [3, 16, 16], 8, 2, &gpu);
        let mut trainer = Trainer::new(config.clone(), None).unwrap();
        trainer.progress = false;
        let outcome = trainer
            .with_replicas(replicas)
            .fit(
                dwlth::models::mode::independent_copy(&start),
                &mut data,
                &Vec::new(),
                10,
            )
            .unwrap();
        resnet_tensors(&outcome.model)
            .into_iter()
            .flat_map(|(_, _, v)| v)
            .collect::<Vec<f32>>()
    };
    // Two steps of 8 images; with two devices, 4 on the GPU and 4 on the CPU each step.
    let alone = fit(Vec::new());
    let split = fit(vec![gpu.clone(), cpu]);
    let diff = max_abs_diff(&alone, &split);
    assert!(diff < 1e-4, "weights differ by {diff}");
}

/// Plain Burn layers, as a library user's model: pruned weights have no mask in `forward`.
#[derive(burn::module::Module, Debug)]
struct PlainNet {
    conv: burn::nn::conv::Conv2d,
    fc: burn::nn::Linear,
}

impl PlainNet {
    fn new(device: &Device) -> Self {
        device.seed(5);
        Self {
            conv: burn::nn::conv::Conv2dConfig::new([3, 4], [3, 3]).init(device),
            fc: burn::nn::LinearConfig::new(4 * 6 * 6, 3).init(device),
        }
    }

    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        let maps = burn::tensor::activation::relu(self.conv.forward(x));
        let [n, c, h, w] = maps.dims();
        self.fc.forward(maps.reshape([n, c * h * w]))
    }
}

#[test]
fn masked_gradients_keep_a_plain_models_pruned_weights_at_zero_on_every_device() {
    use burn::optim::{GradientsParams, Optimizer, SgdConfig};
    let _serial = serial();
    // One set of masks, used on the CPU and then on the GPU: the masks cached on the first
    // device are replaced, not applied to the second device's gradients.
    let cpu = Device::flex().autodiff();
    let model = PlainNet::new(&cpu);
    let masks = PruneMethod::global_magnitude()
        .prune(&masked_weights(&model), &Prunable::all(), 0.7)
        .unwrap();
    let param_masks = dwlth::prune::param_masks(&model, &masks).unwrap();
    for device in [cpu, gpu().autodiff()] {
        let mut model = param_masks.mask_weights(PlainNet::new(&device)).unwrap();
        let mut optim = SgdConfig::new().init();
        for step in 0..3 {
            let x = Tensor::<4>::ones([2, 3, 8, 8], &device).mul_scalar(0.1 * (step + 1) as f64);
            let loss = model.logits(x).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let grads = param_masks.mask_gradients(&model, grads).unwrap();
            model = optim.step(0.5, model, grads);
        }
        let revived = dwlth::prune::pruned_nonzero(&model, &masks).unwrap();
        assert_eq!(revived, 0, "{device:?}: {revived} pruned weights moved");
    }
}
