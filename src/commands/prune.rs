//! `dwlth prune` and `dwlth masks`: one-shot pruning of saved weights, and mask reports.

use std::path::PathBuf;

use dwlth_models::io::load_resnet;
use dwlth_models::{Arch, DeviceSpec};
use dwlth_prune::analysis::{heatmap_png, similarity, zero_kernels, MaskReport};
use dwlth_prune::{masked_weights, Granularity, MaskSet, Norm, Prunable, PruneMethod, Scope};

use crate::error::{DwlthError, Result};

/// Arguments of `dwlth prune`.
#[derive(Debug, Clone, clap::Args)]
pub struct PruneArgs {
    /// Criterion: omp (magnitude), random, structured.
    #[arg(long, default_value = "omp")]
    pub method: String,
    /// What is pruned as a whole: weight, row, kernel, channel.
    #[arg(long, default_value = "weight")]
    pub granularity: String,
    /// Choose the lowest scores over all layers (global) or per layer (layer).
    #[arg(long, default_value = "global")]
    pub scope: String,
    /// Norm scoring structured units: l1, l2.
    #[arg(long, default_value = "l1")]
    pub norm: String,
    /// Fraction of the prunable weights to prune, in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    pub sparsity: f64,
    /// Seed of random pruning.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Also prune the classification head (default: convolutions only, as the papers).
    #[arg(long)]
    pub include_head: bool,
    /// Architecture (checked against the weights file).
    #[arg(long)]
    pub arch: Option<String>,
    /// Weights written by `dwlth import` or the library.
    #[arg(long)]
    pub weights: PathBuf,
    /// Mask file to write.
    #[arg(long)]
    pub output: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dwlth masks ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MasksCommand {
    /// Per-layer and global sparsity of a mask file.
    Report {
        /// The mask file (this project's, or any file with `*.weight_mask` tensors).
        masks: PathBuf,
        /// Architecture of `--weights`.
        #[arg(long)]
        arch: Option<String>,
        /// Check first that every mask fits these weights.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Print JSON: {"layers": [{"name", "total", "kept"}...], "total", "kept", "sparsity"}.
        #[arg(long)]
        json: bool,
    },
    /// Relative similarity |a ∩ b| / |a ∪ b| of two tickets, and zero kernels per stage.
    Compare {
        /// First mask file.
        a: PathBuf,
        /// Second mask file.
        b: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Kernel-wise heat map (fully pruned kernels bright) as PNG.
    Heatmap {
        /// The mask file.
        masks: PathBuf,
        /// The PNG to write.
        #[arg(long)]
        output: PathBuf,
        /// At most this many cells per row of a layer's band.
        #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
        max_width: usize,
    },
}

fn parse_arch(arch: Option<&str>) -> Result<Option<Arch>> {
    Ok(arch.map(str::parse).transpose()?)
}

/// The criterion named on the command line.
pub fn method(args: &PruneArgs) -> Result<PruneMethod> {
    let scope: Scope = args.scope.parse()?;
    let granularity: Granularity = args.granularity.parse()?;
    let method = match args.method.trim().to_ascii_lowercase().as_str() {
        "omp" | "magnitude" if granularity == Granularity::Weight => {
            PruneMethod::Magnitude { scope }
        }
        "random" if granularity == Granularity::Weight => PruneMethod::Random {
            scope,
            seed: args.seed,
        },
        "structured" | "omp" | "magnitude" => PruneMethod::Structured {
            granularity,
            norm: args.norm.parse::<Norm>()?,
            scope,
        },
        other => {
            return Err(DwlthError::InvalidArgument(format!(
                "unknown or unsupported --method `{other}` with --granularity {granularity}; \
                 expected omp, random (weight granularity) or structured"
            )))
        }
    };
    Ok(method)
}

/// Prunes the weights of `args.weights` and writes the mask file. Returns the report.
pub fn prune(args: &PruneArgs, device: DeviceSpec) -> Result<MaskReport> {
    if !(args.sparsity.is_finite() && (0.0..1.0).contains(&args.sparsity)) {
        return Err(dwlth_prune::PruneError::InvalidFraction {
            what: "--sparsity",
            value: args.sparsity,
        }
        .into());
    }
    let method = method(args)?;
    let device = device.device()?;
    let (model, _) = load_resnet(&args.weights, parse_arch(args.arch.as_deref())?, &device)?;
    let prunable = if args.include_head {
        Prunable::all()
    } else {
        Prunable::convolutions()
    };
    // The model's existing masks are the starting point: prune `sparsity` of all prunable
    // weights, counting those already pruned.
    let layers = masked_weights(&model);
    let current = MaskSet::from_model(&model, &prunable);
    let target_kept = ((1.0 - args.sparsity) * current.total() as f64).round() as usize;
    let amount = if current.kept() == 0 {
        0.0
    } else {
        (1.0 - target_kept as f64 / current.kept() as f64).clamp(0.0, 0.999_999)
    };
    let mut masks = method.prune(&layers, &prunable, amount)?;
    masks.metadata.insert(
        "method".into(),
        serde_json::to_string(&method).unwrap_or_default(),
    );
    masks
        .metadata
        .insert("source".into(), args.weights.display().to_string());
    // Which weights the masks were computed from: FNV-1a of the weights file.
    if let Ok(bytes) = std::fs::read(&args.weights) {
        let hash = dwlth_store::fnv1a(bytes);
        masks
            .metadata
            .insert("source_fnv1a64".into(), format!("{hash:016x}"));
    }
    masks.save(&args.output)?;
    Ok(MaskReport::of(&masks))
}

/// Runs a `dwlth masks` command and returns what to print.
pub fn masks(cmd: &MasksCommand, device: DeviceSpec) -> Result<String> {
    match cmd {
        MasksCommand::Report {
            masks,
            arch,
            weights,
            json,
        } => {
            let set = MaskSet::load(masks)?;
            if let Some(w) = weights {
                let (model, _) = load_resnet(w, parse_arch(arch.as_deref())?, &device.device()?)?;
                set.check_fits(&model, &Prunable::only(set.names()))?;
            }
            let report = MaskReport::of(&set);
            Ok(if *json {
                serde_json::to_string_pretty(&report).unwrap_or_default()
            } else {
                report.table()
            })
        }
        MasksCommand::Compare { a, b, json } => {
            let (ma, mb) = (MaskSet::load(a)?, MaskSet::load(b)?);
            let sim = similarity(&ma, &mb)?;
            let value = serde_json::json!({
                "similarity": sim,
                "a": {"path": a, "sparsity": ma.sparsity(), "zero_kernels": zero_kernels(&ma)},
                "b": {"path": b, "sparsity": mb.sparsity(), "zero_kernels": zero_kernels(&mb)},
            });
            Ok(if *json {
                serde_json::to_string_pretty(&value).unwrap_or_default()
            } else {
                let mut out = format!(
                    "relative similarity |a∩b|/|a∪b| = {sim:.4}\nsparsity: a {:.2}%, b {:.2}%\nzero kernels per stage (a / b):\n",
                    100.0 * ma.sparsity(),
                    100.0 * mb.sparsity()
                );
                let (za, zb) = (zero_kernels(&ma), zero_kernels(&mb));
                for (stage, ka) in &za {
                    let kb = zb.get(stage).map_or(0, |k| k.zero);
                    out += &format!("  {stage:7} {:>8} / {:>8} of {}\n", ka.zero, kb, ka.total);
                }
                out
            })
        }
        MasksCommand::Heatmap {
            masks,
            output,
            max_width,
        } => {
            let set = MaskSet::load(masks)?;
            heatmap_png(&set, output, *max_width)?;
            Ok(format!("wrote {}", output.display()))
        }
    }
}
