//! Speed of the operations a ticket search repeats, as JSON.
//!
//! ```sh
//! cargo run --release --example bench -- --json [--device cpu] [--batch 128] [--threads N]
//!     [--conv native|burn]
//! cargo run --release --example bench -- --help
//! ```
//!
//! Measures (images/s unless named otherwise): (a) a ResNet-18-CIFAR standard training step,
//! (b) a PGD-10 adversarial training step, (c) PGD-20 evaluation, (d) ResNet-50 224×224
//! inference, (e) the global magnitude threshold over ResNet-50's 23.5 M conv weights (ms),
//! the peak resident memory, and the GFLOP/s of (a) as a fraction of a dense 2048² matrix
//! product measured here, and (f) sparse inference of ResNet-50 tickets: global magnitude
//! masks over the convolutions at 50–98 % sparsity (and the unpruned model, 0 %), layer-wise
//! 90 % and half of every layer's output channels, run by `SparseResNet` at the batch of (d),
//! with the speed-up over the dense Burn model of (d), and (g) PGD-10 training steps of
//! ResNet-18-CIFAR tickets (global magnitude at `--sparsities`, 90 % layer-wise too) with the
//! sparse convolution passes, the 90 % tickets also with them off, and how far one step's
//! parameters move from the dense path's (and, for scale, Burn's convolution's from dwlth's).
//! `tools/bench_torch.py` runs the same in PyTorch; compare them in one session on a quiet
//! machine (docs/performance.md). `--export DIR` also writes the input and every timed ticket
//! (torchvision names, masks) with dwlth's logits, for `tools/bench_anchors.py` to time the
//! same networks in ONNX Runtime, OpenVINO and DeepSparse. Each figure is the median of `--repeats` timed runs after
//! one warm-up (the matrix product: the fastest of ten, the machine's peak). `--only sparse`
//! runs (d) and (f) alone, `--only train` the matrix product, (a), (b) and (c), `--only
//! tickets` (g) (`tools/bench_torch.py --only pgd10` is its reference). `--conv burn`
//! runs Burn's own CPU convolution instead of `dwlth_kernels::conv`'s (for comparison).
//!
//! `--preset quick|paper` measures instead what that preset of `examples/double_win_cifar10`
//! runs — its model at its input size: a training step of every regime it uses, clean
//! evaluation and its test attack — and prints the cost estimate of
//! `dwlth::pipeline::cost`: seconds and runs per hour of each kind of transfer run, and the
//! whole experiment's hours on this device (docs/scaling.md). `--batch` defaults to the
//! preset's batch size there.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Distribution, Int, Tensor};
use dwlth::adv::{Attack, AttackMode, Regime};
use dwlth::kernels::conv::{set_conv_impl, ConvImpl};
use dwlth::models::{Arch, DeviceSpec, ResNetConfig, Stem};
use dwlth::pipeline::cost::{estimate, Speeds};
use dwlth::pipeline::{Cifar10Preset, ExperimentConfig};
use dwlth::prune::select::{count_to_prune, lowest_k};
use dwlth::prune::{apply_masks, masked_weights, Prunable, PruneMethod};
use dwlth::sparse::SparseResNet;

/// Speed of the operations a ticket search repeats, printed as JSON: ResNet-18-CIFAR standard
/// and PGD-10 training steps, PGD-20 evaluation, ResNet-50 224×224 inference, the global
/// magnitude threshold over ResNet-50's convolutions, peak memory, and sparse inference of
/// ResNet-50 tickets (docs/performance.md).
#[derive(Debug, clap::Parser)]
#[command(name = "bench")]
struct Args {
    /// Print JSON (the only output; accepted so that scripts may ask for it).
    #[arg(long = "json")]
    _json: bool,
    /// Device to measure: `cpu`, `cuda`, `cuda:N` or `wgpu`.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Batch of the training steps and the PGD-20 evaluation [default: 128, or the preset's
    /// batch with --preset].
    #[arg(long)]
    batch: Option<NonZeroUsize>,
    /// Timed runs per figure (each figure is their median, after one warm-up run).
    #[arg(long, default_value = "1")]
    repeats: NonZeroUsize,
    /// Run only part of the measurements: `train` (the matrix product, training steps and
    /// PGD-20), `sparse` (ResNet-50 inference, dense and sparse) or `tickets` (PGD-10
    /// training steps of ResNet-18-CIFAR tickets, sparse passes against the dense path).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Sparsities of the ResNet-18 tickets `--only tickets` trains (0.9 adds the comparison
    /// with the dense path).
    #[arg(long, value_delimiter = ',', default_value = "0,0.5,0.8,0.9,0.95,0.98")]
    sparsities: Vec<f64>,
    /// CPU threads (sets RAYON_NUM_THREADS) [default: every logical CPU].
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// CPU convolution: dwlth's (`native`) or Burn's own (`burn`, for comparison).
    #[arg(long, value_enum, default_value = "native")]
    conv: Conv,
    /// Measure instead what this preset of `examples/double_win_cifar10` runs, and print its
    /// cost estimate (docs/scaling.md): `smoke`, `quick` or `paper`.
    #[arg(long)]
    preset: Option<Cifar10Preset>,
    /// Also write the input and every timed ticket with dwlth's logits into this folder, for
    /// `tools/bench_anchors.py`.
    #[arg(long, value_name = "DIR")]
    export: Option<PathBuf>,
}

/// The part `--only` runs.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Only {
    Train,
    Sparse,
    Tickets,
}

/// The CPU convolution `--conv` selects.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Conv {
    Native,
    Burn,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time<F: FnMut()>(repeats: usize, mut f: F) -> f64 {
    f();
    median(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = <Args as clap::Parser>::parse();
    // Reuse freed activations instead of mapping fresh pages every step.
    dwlth::models::device::keep_freed_memory();
    if let Some(t) = args.threads {
        // flex parallelises with rayon.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    let device = args.device.device()?;
    let repeats = args.repeats.get();
    let (train_part, other_parts, tickets_part) = match args.only {
        None => (true, true, true),
        Some(Only::Train) => (true, false, false),
        Some(Only::Sparse) => (false, true, false),
        Some(Only::Tickets) => (false, false, true),
    };
    let conv = match args.conv {
        Conv::Native => ConvImpl::Native,
        Conv::Burn => ConvImpl::Burn,
    };
    set_conv_impl(conv);
    if let Some(preset) = args.preset {
        let batch = args.batch.map(NonZeroUsize::get);
        return preset_cost(preset, &device, batch, repeats);
    }
    let batch = args.batch.map_or(128, NonZeroUsize::get);
    let ad = device.clone().autodiff();
    let mut out = serde_json::Map::new();
    out.insert(
        "conv_impl".into(),
        format!("{conv:?}").to_lowercase().into(),
    );

    if tickets_part {
        let batch = args.batch.map_or(128, NonZeroUsize::get);
        let sparsities = &args.sparsities;
        ticket_training(
            &device.clone().autodiff(),
            batch,
            sparsities,
            repeats,
            &mut out,
        )?;
        if !train_part && !other_parts {
            return finish(out);
        }
    }

    if train_part {
        // Dense matrix-product rate: the fastest of ten products after a warm-up, the
        // machine's peak (medians of three moved between 160 and 300 GFLOP/s from run to run,
        // and with them (a)'s fraction).
        let a = Tensor::<2>::random([2048, 2048], Distribution::Uniform(-1.0, 1.0), &device);
        let b = Tensor::<2>::random([2048, 2048], Distribution::Uniform(-1.0, 1.0), &device);
        let product = || {
            let _ = a.clone().matmul(b.clone()).into_data();
        };
        product();
        let secs = (0..10)
            .map(|_| {
                let t = Instant::now();
                product();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let matmul_gflops = 2.0 * 2048f64.powi(3) / secs / 1e9;
        out.insert("matmul_2048_gflop_s".into(), matmul_gflops.into());

        // (a) and (b): ResNet-18-CIFAR training steps.
        ad.seed(0);
        let r18 = ResNetConfig::new(Arch::ResNet18)
            .with_stem(Stem::Cifar)
            .with_num_classes(10)
            .init(&ad);
        let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Uniform(0.0, 1.0), &ad);
        let y = Tensor::<1, Int>::from_data(
            burn::tensor::TensorData::new(
                (0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(),
                [batch],
            ),
            &ad,
        );
        for (key, regime) in [
            ("r18_train_b{b}_img_s", Regime::Standard),
            ("r18_pgd10_train_b{b}_img_s", Regime::pgd10()),
        ] {
            let rate = train_rate(&r18, &regime, (&x, &y), repeats);
            out.insert(key.replace("{b}", &batch.to_string()), rate.into());
            if matches!(regime, Regime::Standard) {
                // ≈ 3.3 GFLOP per image for a ResNet-18-CIFAR training step (forward + backward).
                let gflops = 3.3 * rate;
                out.insert("r18_train_gflop_s".into(), gflops.into());
                out.insert(
                    "r18_train_fraction_of_matmul".into(),
                    (gflops / matmul_gflops).into(),
                );
            }
        }

        // (c) PGD-20 evaluation (eval-mode BatchNorm, examples crafted then classified).
        let view = AttackMode::Eval.view(&r18);
        let attack = Attack::pgd20();
        let secs = time(repeats, || {
            let xa = attack.perturb(&view, x.clone(), y.clone()).expect("attack");
            let _ = view.forward(xa.autodiff()).into_data();
        });
        out.insert(
            format!("r18_pgd20_eval_b{batch}_img_s"),
            (batch as f64 / secs).into(),
        );
    }

    if !other_parts {
        return finish(out);
    }
    let only_sparse = !train_part;

    // (d) ResNet-50 224×224 inference, BatchNorm statistics calibrated on the input.
    let n50 = 8;
    // Seeded: every run (and every round of tools/bench_anchors.py) times the same network.
    dwlth::models::random::seed(&device, 50);
    let x50 = Tensor::<4>::random([n50, 3, 224, 224], Distribution::Uniform(0.0, 1.0), &device);
    let r50 = calibrated(ResNetConfig::new(Arch::ResNet50).init(&device), &x50);
    let export = args.export;
    if let Some(dir) = &export {
        std::fs::create_dir_all(dir)?;
        write_tensor(&dir.join("input.safetensors"), "x", &x50)?;
    }
    let dense_secs = time(repeats, || {
        let _ = r50.forward(x50.clone()).into_data();
    });
    out.insert(
        "r50_infer_224_b8_img_s".into(),
        (n50 as f64 / dense_secs).into(),
    );

    if !only_sparse {
        // (e) The global magnitude threshold over ResNet-50's conv weights.
        let scores: Vec<f32> = masked_weights(&r50)
            .into_iter()
            .filter(|l| Prunable::convolutions().selects(&l.name, &l.shape))
            .flat_map(|l| l.weight.into_iter().map(f32::abs))
            .collect();
        let k = count_to_prune(0.2, scores.len());
        let secs = time(repeats.max(3), || {
            let _ = lowest_k(&scores, k);
        });
        out.insert("r50_global_threshold_ms".into(), (secs * 1e3).into());
        out.insert("r50_conv_weights".into(), scores.len().into());
    }

    // (f) Sparse inference of ResNet-50 tickets at the batch of (d). Global magnitude masks
    // over the convolutions (the papers' criterion; the head stays dense) of the random
    // weights of (d); every ticket's logits are checked against the dense model's once.
    let dense_rate = n50 as f64 / dense_secs;
    let input: Vec<f32> = x50.clone().into_data().try_to_vec_as::<f32>()?;
    let layers = masked_weights(&r50);
    let mut speedups = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    let mut gmacs = serde_json::Map::new();
    // 0 %: the unpruned model, every layer a dense product (the engine as a dense
    // inference path).
    for sparsity in [0.0, 0.5, 0.8, 0.9, 0.95, 0.98] {
        let pct = (sparsity * 100.0f64).round() as usize;
        let ticket = if sparsity > 0.0 {
            let prune = PruneMethod::global_magnitude();
            let masks = prune.prune(&layers, &Prunable::convolutions(), sparsity)?;
            calibrated(apply_masks(r50.clone(), &masks)?, &x50)
        } else {
            r50.clone()
        };
        let engine = SparseResNet::from_resnet(&ticket)?;
        let dense_logits = ticket
            .forward(x50.clone())
            .into_data()
            .try_to_vec_as::<f32>()?;
        let logits = engine.forward(&input, n50, 224, 224)?;
        if let Some(dir) = &export {
            export_ticket(dir, &format!("r50_s{pct}"), &ticket, &dense_logits, n50)?;
        }
        let scale = dense_logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = dense_logits
            .iter()
            .zip(&logits)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale.max(f32::MIN_POSITIVE);
        let secs = time(repeats, || {
            let _ = engine
                .forward(&input, n50, 224, 224)
                .expect("sparse forward");
        });
        let rate = n50 as f64 / secs;
        out.insert(format!("r50_sparse{pct}_infer_img_s"), rate.into());
        speedups.insert(pct.to_string(), (rate / dense_rate).into());
        errors.insert(pct.to_string(), f64::from(err).into());
        gmacs.insert(pct.to_string(), (engine.macs(224, 224) as f64 / 1e9).into());
    }
    // Two more ticket shapes, each exported and timed alike. The same 90 % with every layer
    // pruned alike (layer-wise magnitude): global masks of random weights leave the early
    // layers dense, layer-wise ones cut every layer's work. Channel-structured: half of every
    // convolution's output channels (smallest ℓ1 norm, per layer) — whole rows of each weight
    // matrix are zero, the structure dense engines can use.
    let layerwise = PruneMethod::Magnitude {
        scope: dwlth::prune::Scope::Layer,
    }
    .prune(&layers, &Prunable::convolutions(), 0.9)?;
    let channel = PruneMethod::Structured {
        granularity: dwlth::prune::Granularity::Channel,
        norm: dwlth::prune::Norm::L1,
        scope: dwlth::prune::Scope::Layer,
    }
    .prune(&layers, &Prunable::convolutions(), 0.5)?;
    for (masks, export_name, key) in [
        (&layerwise, "r50_s90_layerwise", "r50_sparse90_layerwise"),
        (&channel, "r50_c50_channel", "r50_channel50"),
    ] {
        let ticket = calibrated(apply_masks(r50.clone(), masks)?, &x50);
        if let Some(dir) = &export {
            let logits = ticket
                .forward(x50.clone())
                .into_data()
                .try_to_vec_as::<f32>()?;
            export_ticket(dir, export_name, &ticket, &logits, n50)?;
        }
        let engine = SparseResNet::from_resnet(&ticket)?;
        let secs = time(repeats, || {
            let _ = engine
                .forward(&input, n50, 224, 224)
                .expect("sparse forward");
        });
        out.insert(format!("{key}_infer_img_s"), (n50 as f64 / secs).into());
        out.insert(
            format!("{key}_gmac_per_img"),
            (engine.macs(224, 224) as f64 / 1e9).into(),
        );
    }
    out.insert("r50_sparse_speedup_vs_dense".into(), speedups.into());
    out.insert("r50_sparse_max_rel_logit_err".into(), errors.into());
    out.insert("r50_sparse_gmac_per_img".into(), gmacs.into());
    finish(out)
}

/// `model` with every BatchNorm's running statistics set to those of `x` (one training-mode
/// pass with momentum 1), so that activations stay O(1) through a random-weight ResNet: with
/// the initial statistics (mean 0, variance 1) they shrink towards denormal numbers deep in the
/// network, which distorts every engine's timing.
fn calibrated(mut model: dwlth::models::ResNet, x: &Tensor<4>) -> dwlth::models::ResNet {
    fn momentum(model: &mut dwlth::models::ResNet, value: f64) {
        model.bn1.momentum = value;
        for layer in [
            &mut model.layer1,
            &mut model.layer2,
            &mut model.layer3,
            &mut model.layer4,
        ] {
            for block in layer.iter_mut() {
                block.bn1.momentum = value;
                block.bn2.momentum = value;
                if let Some(bn) = &mut block.bn3 {
                    bn.momentum = value;
                }
                if let Some((_, bn)) = &mut block.downsample {
                    bn.momentum = value;
                }
            }
        }
    }
    let device = x.device();
    momentum(&mut model, 1.0);
    let training = model.fork(&device.clone().autodiff());
    let _ = training.forward(x.clone().autodiff()).into_data();
    let mut model = dwlth::models::mode::independent_copy(&training).valid();
    momentum(&mut model, 0.1);
    model
}

/// Writes one f32 tensor as a safetensors file (the reference engines read it).
fn write_tensor<const D: usize>(
    path: &std::path::Path,
    name: &str,
    tensor: &Tensor<D>,
) -> Result<(), Box<dyn std::error::Error>> {
    let values = tensor.clone().into_data().try_to_vec_as::<f32>()?;
    write_values(path, name, &tensor.dims(), &values)
}

fn write_values(
    path: &std::path::Path,
    name: &str,
    shape: &[usize],
    values: &[f32],
) -> Result<(), Box<dyn std::error::Error>> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)?;
    let file = safetensors::serialize([(name, view)], None)?;
    dwlth::store::atomic_write(path, &file)?;
    Ok(())
}

/// A ticket for the reference engines (`tools/bench_anchors.py`): its weights with
/// torchvision's names and masks, and the logits dwlth's dense path gives on the input.
fn export_ticket(
    dir: &std::path::Path,
    name: &str,
    ticket: &dwlth::models::ResNet,
    logits: &[f32],
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    dwlth::models::io::save_resnet(ticket, dir.join(format!("{name}.safetensors")))?;
    let classes = logits.len() / batch;
    write_values(
        &dir.join(format!("{name}.logits.safetensors")),
        "logits",
        &[batch, classes],
        logits,
    )
}

/// Images per second of SGD training steps (momentum 0.9) of `model` under `regime`.
fn train_rate(
    model: &dwlth::models::ResNet,
    regime: &Regime,
    (x, y): (&Tensor<4>, &Tensor<1, Int>),
    repeats: usize,
) -> f64 {
    let ce = CrossEntropyLossConfig::new().init(&x.device());
    let mut model = model.clone();
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .init();
    let secs = time(repeats, || {
        let inputs = regime.inputs(&model, x.clone(), y.clone()).expect("inputs");
        let loss = ce.forward(model.forward(inputs.autodiff()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model.clone(), grads);
    });
    x.dims()[0] as f64 / secs
}

/// Measures what `preset` runs and prints its cost estimate (see the module documentation).
fn preset_cost(
    preset: Cifar10Preset,
    device: &burn::tensor::Device,
    batch: Option<usize>,
    repeats: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = ExperimentConfig::cifar10(preset, "cifar10".into(), "cifar100".into(), &[]);
    let batch = batch.unwrap_or(config.transfer.batch_size);
    let size = config.target.resize.unwrap_or(32);
    let ad = device.clone().autodiff();
    ad.seed(0);
    let model = ResNetConfig::new(config.model.arch)
        .with_width(config.model.width)
        .with_stem(config.model.stem)
        .with_num_classes(10)
        .try_init(&ad)?;
    let x = Tensor::<4>::random([batch, 3, size, size], Distribution::Uniform(0.0, 1.0), &ad);
    let y = Tensor::<1, Int>::from_data(
        burn::tensor::TensorData::new(
            (0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(),
            [batch],
        ),
        &ad,
    );
    let mut train = std::collections::BTreeMap::new();
    for regime in Speeds::regimes(&config) {
        let rate = train_rate(&model, &regime, (&x, &y), repeats);
        train.insert(Speeds::key(&regime), rate);
    }
    let view = AttackMode::Eval.view(&model);
    let clean = batch as f64
        / time(repeats, || {
            let _ = view.forward(x.clone()).into_data();
        });
    let attack = &config.transfer.test_attack;
    let attacked = batch as f64
        / time(repeats, || {
            let xa = attack.perturb(&view, x.clone(), y.clone()).expect("attack");
            let _ = view.forward(xa.autodiff()).into_data();
        });
    let speeds = Speeds {
        train,
        clean,
        attack: attacked,
        attack_steps: attack.steps,
    };
    let cost = estimate(&config, &speeds)?;
    let mut out = serde_json::Map::new();
    out.insert("preset".into(), format!("{preset:?}").to_lowercase().into());
    out.insert("device".into(), format!("{device:?}").into());
    out.insert("batch".into(), batch.into());
    out.insert("input".into(), size.into());
    out.insert("speeds_img_s".into(), serde_json::to_value(&speeds)?);
    out.insert("cost".into(), serde_json::to_value(&cost)?);
    finish(out)
}

/// Adds the peak memory and prints the measurements.
fn finish(
    mut out: serde_json::Map<String, serde_json::Value>,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(m) = peak_rss_mib() {
        out.insert("peak_rss_mib".into(), m.into());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(out))?
    );
    Ok(())
}

/// (g) PGD-10 adversarial training steps of ResNet-18-CIFAR tickets (global magnitude masks
/// over the convolutions at 0–98 % sparsity) with the sparse passes of
/// `dwlth::kernels::conv::sparse`, the 90 % ticket also on the dense path (sparse passes off);
/// and how far the parameters after one step of both paths from the same start differ
/// (largest difference relative to each tensor's largest value).
fn ticket_training(
    ad: &burn::tensor::Device,
    batch: usize,
    sparsities: &[f64],
    repeats: usize,
    out: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), Box<dyn std::error::Error>> {
    use dwlth::kernels::conv::sparse::{set_sparse_limit, sparse_limit, SparseLimit};
    ad.seed(0);
    let r18 = ResNetConfig::new(Arch::ResNet18)
        .with_stem(Stem::Cifar)
        .with_num_classes(10)
        .init(ad);
    let x = Tensor::<4>::random([batch, 3, 32, 32], Distribution::Uniform(0.0, 1.0), ad);
    let y = Tensor::<1, Int>::from_data(
        burn::tensor::TensorData::new(
            (0..batch as i64).map(|i| i % 10).collect::<Vec<_>>(),
            [batch],
        ),
        ad,
    );
    let layers = masked_weights(&r18);
    let limit = sparse_limit();
    let regime = Regime::pgd10();
    for &sparsity in sparsities {
        let pct = (sparsity * 100.0f64).round() as usize;
        let ticket = if sparsity > 0.0 {
            let masks = PruneMethod::global_magnitude().prune(
                &layers,
                &Prunable::convolutions(),
                sparsity,
            )?;
            apply_masks(r18.clone(), &masks)?
        } else {
            r18.clone()
        };
        let rate = train_rate(&ticket, &regime, (&x, &y), repeats);
        out.insert(format!("r18_pgd10_ticket{pct}_b{batch}_img_s"), rate.into());
        if pct == 90 {
            set_sparse_limit(SparseLimit::Density(0.0));
            let dense_path = train_rate(&ticket, &regime, (&x, &y), repeats);
            let dense_examples = adversarial_examples(&ticket, &regime, (&x, &y));
            let dense_after = one_step(&ticket, &dense_examples, &y);
            set_sparse_limit(limit);
            // Two dense implementations of the same step (Burn's own convolution against
            // dwlth's): how far a step moves when only the order of its sums changes.
            let conv = dwlth::kernels::conv::conv_impl();
            set_conv_impl(ConvImpl::Burn);
            set_sparse_limit(SparseLimit::Density(0.0));
            let burn_after = one_step(&ticket, &dense_examples, &y);
            set_conv_impl(conv);
            set_sparse_limit(limit);
            let sparse_examples = adversarial_examples(&ticket, &regime, (&x, &y));
            let same_examples = one_step(&ticket, &dense_examples, &y);
            let sparse_after = one_step(&ticket, &sparse_examples, &y);
            let differing = dense_examples
                .not_equal(sparse_examples)
                .float()
                .mean()
                .into_scalar::<f32>();
            out.insert(
                format!("r18_pgd10_ticket90_dense_path_b{batch}_img_s"),
                dense_path.into(),
            );

            for (key, a, b) in [
                ("sparse_vs_dense", &same_examples, &dense_after),
                ("burn_vs_dense", &burn_after, &dense_after),
            ] {
                out.insert(
                    format!("r18_pgd10_ticket90_{key}_max_rel_weight_diff"),
                    f64::from(max_relative_weight_difference(a, b)).into(),
                );
                out.insert(
                    format!("r18_pgd10_ticket90_{key}_max_rel_param_diff"),
                    f64::from(max_relative_difference(a, b)).into(),
                );
            }
            // The whole step: PGD's sign(∇) turns rounding differences of gradients near
            // zero into pixels moved the other way.
            out.insert(
                "r18_pgd10_ticket90_adv_pixels_differing".into(),
                f64::from(differing).into(),
            );
            out.insert(
                "r18_pgd10_ticket90_max_rel_param_diff".into(),
                f64::from(max_relative_difference(&sparse_after, &dense_after)).into(),
            );
        }
    }
    // The same 90 % with every convolution pruned alike (layer-wise magnitude): global masks
    // of random weights keep half of the first stage's weights and 5 % of the last's.
    if sparsities.contains(&0.9) {
        let masks = PruneMethod::Magnitude {
            scope: dwlth::prune::Scope::Layer,
        }
        .prune(&layers, &Prunable::convolutions(), 0.9)?;
        let ticket = apply_masks(r18.clone(), &masks)?;
        let rate = train_rate(&ticket, &regime, (&x, &y), repeats);
        set_sparse_limit(SparseLimit::Density(0.0));
        let dense_path = train_rate(&ticket, &regime, (&x, &y), repeats);
        set_sparse_limit(limit);
        out.insert(
            format!("r18_pgd10_ticket90_layerwise_b{batch}_img_s"),
            rate.into(),
        );
        out.insert(
            format!("r18_pgd10_ticket90_layerwise_dense_path_b{batch}_img_s"),
            dense_path.into(),
        );
    }
    out.insert(
        "sparse_limit".into(),
        format!("{:?}", sparse_limit()).to_lowercase().into(),
    );
    Ok(())
}

/// `regime`'s training inputs for `model`, seeded (PGD starts from a random point).
fn adversarial_examples(
    model: &dwlth::models::ResNet,
    regime: &Regime,
    (x, y): (&Tensor<4>, &Tensor<1, Int>),
) -> Tensor<4> {
    x.device().seed(7);
    let model = dwlth::models::mode::independent_copy(model);
    regime.inputs(&model, x.clone(), y.clone()).expect("inputs")
}

/// Every float parameter of `model` after one SGD step (momentum 0.9, rate 0.1) on `inputs`.
fn one_step(
    model: &dwlth::models::ResNet,
    inputs: &Tensor<4>,
    y: &Tensor<1, Int>,
) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let values = param
                .val()
                .into_data()
                .try_to_vec_as::<f32>()
                .unwrap_or_default();
            self.0.push(values);
        }
    }
    let model = dwlth::models::mode::independent_copy(model);
    let ce = CrossEntropyLossConfig::new().init(&y.device());
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
        ))
        .init();
    let loss = ce.forward(model.forward(inputs.clone().autodiff()), y.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = optim.step(0.1, model, grads);
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// [`max_relative_difference`] over the convolutions' and the head's weights (tensors of
/// 1,024 values or more), leaving out BatchNorm's shifts: they start at zero, so after one
/// step their largest value is the step itself.
fn max_relative_weight_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let (a, b): (Vec<_>, Vec<_>) = a
        .iter()
        .zip(b)
        .filter(|(a, _)| a.len() >= 1024)
        .map(|(a, b)| (a.clone(), b.clone()))
        .unzip();
    max_relative_difference(&a, &b)
}

/// The largest over tensors of `max |a − b| / max |b|`.
fn max_relative_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(b)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            if scale > 0.0 {
                diff / scale
            } else {
                diff
            }
        })
        .fold(0.0, f32::max)
}
