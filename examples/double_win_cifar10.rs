//! Paper A's CIFAR-10 experiment: pre-trained θ_STD, θ_FAT, θ_AT; tickets; transfer to
//! CIFAR-10 with standard and adversarial training; the double-win verdict, tables and plots.
//!
//! ```sh
//! cargo run --release --example double_win_cifar10 -- --preset quick
//! cargo run --release --features cuda --example double_win_cifar10 -- --preset paper \
//!     --device cuda --std r50_std.safetensors --fat r50_fat.safetensors --at r50_at.safetensors
//! ```
//!
//! Presets: `smoke` (seconds, for tests), `quick` (a small CPU run: width-16 ResNet-18,
//! CIFAR-100 → CIFAR-10 subsets), `paper` (ResNet-50 on 224-pixel upsamplings and the paper's transfer settings, for a
//! GPU; give ImageNet-pre-trained weights converted with `dwlth import`, else θ_p are
//! pre-trained on CIFAR-100). CIFAR-10 and CIFAR-100 are downloaded into `--data-dir` (default
//! `$DWLTH_DATA`, else the user cache) when missing; offline, the error says which archive to
//! place where. The run resumes after a crash; `--shard i/n` splits it over machines.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use dwlth::data::download::{fetch, FetchOptions};
use dwlth::data::DatasetKind;
use dwlth::models::DeviceSpec;
use dwlth::pipeline::{run_experiment, Cifar10Preset, ExperimentConfig, RunOptions};

/// Paper A's CIFAR-10 double-win experiment.
#[derive(Parser)]
struct Args {
    /// smoke, quick or paper.
    #[arg(long, default_value = "quick")]
    preset: String,
    /// Where datasets are (or are downloaded to).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Results folder (default: results/cifar10-<preset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Imported θ_STD (the project's safetensors, e.g. from `dwlth import --format torchvision`).
    #[arg(long)]
    std: Option<PathBuf>,
    /// Imported θ_FAT (`dwlth import --format fast-adversarial`).
    #[arg(long)]
    fat: Option<PathBuf>,
    /// Imported θ_AT (`dwlth import --format robustness`).
    #[arg(long)]
    at: Option<PathBuf>,
    /// Compute device: cpu, cuda[:N], wgpu.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Run only shard i of n.
    #[arg(long)]
    shard: Option<String>,
    /// Print the experiment as TOML (for `dwlth run --config`) and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> ExitCode {
    // Reuse freed activations instead of mapping fresh pages every step.
    dwlth::models::device::keep_freed_memory();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> dwlth::Result<()> {
    let preset: Cifar10Preset = args.preset.parse()?;
    let device: DeviceSpec = args.device.parse()?;
    let weights: Vec<(String, PathBuf)> =
        [("std", &args.std), ("fat", &args.fat), ("at", &args.at)]
            .into_iter()
            .filter_map(|(n, w)| w.clone().map(|w| (n.to_string(), w)))
            .collect();
    let options = FetchOptions::default();
    let cifar10 = fetch(DatasetKind::Cifar10, args.data_dir.as_deref(), &options)?;
    // CIFAR-100 is needed to pre-train θ_p here and, with imported θ_p, as the
    // out-of-distribution images the preset scores detection on.
    let ood = ExperimentConfig::cifar10(preset, PathBuf::new(), PathBuf::new(), &weights)
        .transfer
        .ood;
    let cifar100 = if weights.len() == 3 && !ood {
        PathBuf::new()
    } else {
        fetch(DatasetKind::Cifar100, args.data_dir.as_deref(), &options)?
    };
    let config = ExperimentConfig::cifar10(preset, cifar10, cifar100, &weights);
    if args.print_config {
        println!("{}", config.to_toml());
        return Ok(());
    }
    let shard = args
        .shard
        .as_deref()
        .map(dwlth::commands::run::parse_shard)
        .transpose()?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&config.name));
    let summary = run_experiment(
        &config,
        &RunOptions {
            out: out.clone(),
            device,
            replicas: Vec::new(),
            shard,
            verbose: true,
            prepare_only: false,
        },
    )?;
    println!("{}", dwlth::commands::run::summary_text(&summary, &out));
    Ok(())
}
