//! The `dwlth` command-line tool.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dwlth::commands::run as experiment;
use dwlth::commands::{analyze, cluster, data, demo, eval, import, predict, prune, train};
use dwlth::models::device::DeviceList;
use dwlth::models::io::{CheckpointFormat, ImportOptions};
use dwlth::models::{Arch, DeviceSpec, NormalizeConfig};

/// Double-win lottery tickets: sparse, robust, transferable subnetworks of pre-trained ResNets.
#[derive(Parser)]
#[command(name = "dwlth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a PyTorch / safetensors checkpoint into the project's safetensors file.
    Import {
        /// Layout of the input: torchvision, robustness, fast-adversarial, double-win.
        #[arg(long, value_parser = parse::<CheckpointFormat>)]
        format: CheckpointFormat,
        /// Architecture: resnet18, resnet34, resnet50, resnet101.
        #[arg(long, value_parser = parse::<Arch>)]
        arch: Arch,
        /// Input normalisation for formats whose file holds none: imagenet (default), cifar10,
        /// cifar100, svhn, none, or MEAN,MEAN,MEAN/STD,STD,STD.
        #[arg(long)]
        normalize: Option<String>,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
        /// The checkpoint to read (.pth, .pt, .ckpt, .safetensors).
        input: PathBuf,
        /// The safetensors file to write.
        output: PathBuf,
    },
    /// Eval-mode logits of a model on images in [0, 1], written as tensor `logits`.
    Predict {
        /// Architecture (checked against the weights file).
        #[arg(long, value_parser = parse::<Arch>)]
        arch: Option<Arch>,
        /// Expected number of classes (checked against the head).
        #[arg(long, allow_negative_numbers = true)]
        num_classes: Option<usize>,
        /// Weights written by `dwlth import` or by the library.
        #[arg(long)]
        weights: PathBuf,
        /// A safetensors file with images [N, C, H, W] in [0, 1].
        #[arg(long)]
        input: PathBuf,
        /// Tensor name in the input file (default: `input`, or its only tensor).
        #[arg(long)]
        tensor: Option<String>,
        /// The safetensors file to write.
        #[arg(long)]
        output: PathBuf,
        /// Images per forward pass.
        #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
        batch_size: usize,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
        /// Use the CPU sparse engine: a ticket runs faster the sparser it is (same logits).
        #[arg(long)]
        sparse: bool,
        /// With --sparse: print every layer's time, share and multiply-add rate.
        #[arg(long)]
        profile: bool,
    },
    /// Standard and robust accuracy (SA / RA) of saved weights on labelled images.
    Eval {
        #[command(flatten)]
        args: eval::EvalArgs,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
    },
    /// Prune saved weights once (magnitude, random or structured) and write a mask file.
    Prune {
        #[command(flatten)]
        args: prune::PruneArgs,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
    },
    /// Inspect mask files: report, compare, heatmap.
    Masks {
        #[command(subcommand)]
        command: prune::MasksCommand,
    },
    /// Analyses: out-of-distribution detection (ood), domain gap (domain-gap).
    Analyze {
        #[command(subcommand)]
        command: analyze::AnalyzeCommand,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
    },
    /// Inspect and download datasets.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Run a double-win experiment from a TOML file (or a preset), resumable and shardable.
    Run {
        /// Experiment file (see `dwlth run --print-preset offline-demo`).
        #[arg(long, conflicts_with = "preset")]
        config: Option<PathBuf>,
        /// A built-in experiment: offline-demo, smoke.
        #[arg(long)]
        preset: Option<String>,
        /// Print the preset's TOML and exit.
        #[arg(long)]
        print_preset: Option<String>,
        /// Results folder (default: results/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Run only shard i of n (0-based), e.g. 3/8; `auto` takes both from a Slurm job
        /// array, `auto/n` the index from a Kubernetes Indexed Job (or a Slurm array).
        #[arg(long)]
        shard: Option<String>,
        /// Print a job array for a cluster instead of running: slurm or kubernetes (with
        /// --config and --shards; each shard writes <out>/shards/<i>).
        #[arg(long, value_parser = parse_scheduler)]
        emit: Option<cluster::Scheduler>,
        /// Number of shards of the emitted job array.
        #[arg(long, requires = "emit", allow_negative_numbers = true)]
        shards: Option<usize>,
        /// Train the transfer runs on this many worker processes of this machine, each a shard
        /// of the same results folder computing with its share of the cores. Small networks
        /// leave cores idle, so one worker per core is fastest for them.
        #[arg(long, default_value_t = 1, conflicts_with_all = ["shard", "emit"])]
        jobs: usize,
        /// Compute device: cpu, cuda[:N], wgpu; several, comma-separated (cuda:0,cuda:1),
        /// split every training batch across them (data parallelism).
        #[arg(long, alias = "devices", default_value = "cpu", value_parser = parse::<DeviceList>)]
        device: DeviceList,
    },
    /// Train one model (any regime) from a TOML file; resumes a killed run.
    Train {
        /// The run file (see --print-example).
        #[arg(long, required_unless_present = "print_example")]
        config: Option<PathBuf>,
        /// Print an example file and exit.
        #[arg(long)]
        print_example: bool,
        /// Compute device: cpu, cuda[:N], wgpu; several, comma-separated (cuda:0,cuda:1),
        /// split every training batch across them (data parallelism). Default: the file's
        /// `devices`, else cpu.
        #[arg(long, alias = "devices", value_parser = parse::<DeviceList>)]
        device: Option<DeviceList>,
    },
    /// Rebuild tables and plots of a results folder.
    Report {
        /// The results folder.
        dir: PathBuf,
        /// First copy in the finished runs of these shard folders (run apart, e.g. on other
        /// machines); shards of another experiment are refused.
        #[arg(long, num_args = 1..)]
        merge: Vec<PathBuf>,
    },
    /// The offline double-win experiment: Fashion-MNIST → MNIST with a tiny ResNet (under 20
    /// minutes on two cores); fetches its data with tools/setup-test-data.sh when absent.
    Demo {
        /// Results folder.
        #[arg(long, default_value = "results/offline-demo")]
        out: PathBuf,
        /// Worker processes for the transfer runs (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
    },
    /// Import a PyTorch checkpoint shipped with the repository, compare with PyTorch, predict.
    CheckImport {
        /// Architecture of the full-size part.
        #[arg(long, default_value = "resnet50", value_parser = parse::<Arch>)]
        arch: Arch,
        /// Images to predict.
        #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
        images: usize,
        /// Where to write the exported weights.
        #[arg(long, default_value = "target/dwlth-demo")]
        out: PathBuf,
        /// Compute device: cpu, cuda[:N], wgpu.
        #[arg(long, default_value = "cpu", value_parser = parse::<DeviceSpec>)]
        device: DeviceSpec,
    },
}

/// Prints a line; a closed stdout (`dwlth ... | head`) ends the output quietly instead of
/// panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn parse_scheduler(s: &str) -> Result<cluster::Scheduler, String> {
    s.parse().map_err(|e: dwlth::DwlthError| e.to_string())
}

fn parse<T: std::str::FromStr<Err = dwlth::models::ModelError>>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|e: dwlth::models::ModelError| e.to_string())
}

fn run(cli: Cli) -> dwlth::Result<()> {
    match cli.command {
        Command::Import {
            format,
            arch,
            normalize,
            device,
            input,
            output,
        } => {
            let normalize = normalize
                .as_deref()
                .map(NormalizeConfig::parse)
                .transpose()?;
            let options = ImportOptions {
                arch,
                format,
                normalize,
            };
            let report = import::run(&input, &output, &options, device)?;
            say!("{}", import::summary(&report));
            say!("wrote {}", output.display());
        }
        Command::Predict {
            arch,
            num_classes,
            weights,
            input,
            tensor,
            output,
            batch_size,
            device,
            sparse,
            profile,
        } => {
            let options = predict::PredictOptions {
                arch,
                num_classes,
                tensor,
                batch_size,
                device,
                sparse,
                profile,
            };
            let prediction = predict::run(&weights, &input, &output, &options)?;
            say!(
                "wrote logits {:?} to {}",
                prediction.shape,
                output.display()
            );
            if let Some(times) = &prediction.profile {
                say!("{}", predict::profile_table(times));
            }
        }
        Command::Eval { args, device } => {
            let report = eval::run(&args, device)?;
            if args.json {
                let value = serde_json::json!({
                    "sa": report.sa,
                    "ra": report.ra,
                    "n": report.n,
                    "per_class_sa": report.clean.per_class(),
                    "per_class_ra": report.adversarial.as_ref().map(|t| t.per_class()),
                });
                say!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                say!("n = {}", report.n);
                say!("SA = {:.2}%", 100.0 * report.sa);
                if let Some(ra) = report.ra {
                    say!("RA = {:.2}%", 100.0 * ra);
                }
            }
        }
        Command::Prune { args, device } => {
            let report = prune::prune(&args, device)?;
            if args.json {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                say!("{}", report.table());
                say!("wrote {}", args.output.display());
            }
        }
        Command::Masks { command } => say!("{}", prune::masks(&command, DeviceSpec::Cpu)?),
        Command::Data(cmd) => data::run(cmd)?,
        Command::Analyze { command, device } => say!(
            "{}",
            serde_json::to_string_pretty(&analyze::run(&command, device)?).unwrap_or_default()
        ),
        Command::Run {
            config,
            preset,
            print_preset,
            out,
            shard,
            emit,
            shards,
            jobs,
            device,
        } => {
            let data = experiment::DemoData::locate();
            let preset_config = |name: &str| -> dwlth::Result<dwlth::pipeline::ExperimentConfig> {
                match name {
                    "offline-demo" => Ok(dwlth::pipeline::ExperimentConfig::offline_demo(
                        data.fashion.clone(),
                        data.mnist.clone(),
                    )),
                    "smoke" => Ok(dwlth::pipeline::ExperimentConfig::smoke(
                        data.fashion.clone(),
                        data.mnist.clone(),
                    )),
                    other => Err(dwlth::DwlthError::InvalidArgument(format!(
                        "unknown preset `{other}`; expected offline-demo or smoke"
                    ))),
                }
            };
            if let Some(name) = print_preset {
                say!("{}", preset_config(&name)?.to_toml());
                return Ok(());
            }
            if let Some(scheduler) = emit {
                let (Some(path), Some(shards)) = (&config, shards) else {
                    return Err(dwlth::DwlthError::InvalidArgument(
                        "--emit needs --config FILE (write a preset to a file with --print-preset) and --shards N".into(),
                    ));
                };
                let experiment = experiment::load_config(path)?;
                let absolute = |p: &std::path::Path| {
                    std::path::absolute(p).map_err(|e| dwlth::DwlthError::Io {
                        path: p.to_path_buf(),
                        source: e,
                    })
                };
                let out = out.unwrap_or_else(|| PathBuf::from("results").join(&experiment.name));
                let job = cluster::JobArray {
                    name: experiment.name.clone(),
                    config: absolute(path)?,
                    out: absolute(&out)?,
                    shards,
                    // Inside a job, a task's GPUs are numbered from 0.
                    device: match (device.main(), device.replicas().len()) {
                        (DeviceSpec::Cuda(_), 0 | 1) => "cuda".into(),
                        (DeviceSpec::Cuda(_), n) => (0..n)
                            .map(|i| format!("cuda:{i}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        _ => device.to_string(),
                    },
                };
                let text = match scheduler {
                    cluster::Scheduler::Slurm => job.slurm()?,
                    cluster::Scheduler::Kubernetes => job.kubernetes()?,
                };
                use std::io::Write;
                let _ = write!(std::io::stdout(), "{text}");
                return Ok(());
            }
            let experiment = match (config, preset) {
                (Some(path), _) => experiment::load_config(&path)?,
                (None, Some(name)) => preset_config(&name)?,
                (None, None) => {
                    return Err(dwlth::DwlthError::InvalidArgument(
                        "give --config FILE or --preset NAME".into(),
                    ))
                }
            };
            dwlth::commands::jobs::exit_with_coordinator();
            let shard = shard.as_deref().map(experiment::parse_shard).transpose()?;
            let out = out.unwrap_or_else(|| PathBuf::from("results").join(&experiment.name));
            if jobs != 1 {
                say!(
                    "{}",
                    dwlth::commands::jobs::run_with_jobs(&experiment, &out, &device, jobs)?
                );
            } else {
                say!("{}", experiment::run(&experiment, &out, &device, shard)?);
            }
        }
        Command::Train {
            config,
            print_example,
            device,
        } => {
            if print_example {
                say!(
                    "{}",
                    toml::to_string_pretty(&train::TrainFile::example()).unwrap_or_default()
                );
            } else if let Some(path) = config {
                say!("{}", train::run(&path, device.as_ref())?);
            }
        }
        Command::Report { dir, merge } => {
            if !merge.is_empty() {
                say!("{}", experiment::merge(&dir, &merge)?);
            }
            say!("{}", experiment::report(&dir)?)
        }
        Command::Demo { out, jobs, device } => {
            let data = experiment::DemoData::locate();
            data.ensure()?;
            let experiment =
                dwlth::pipeline::ExperimentConfig::offline_demo(data.fashion, data.mnist);
            let jobs = jobs.unwrap_or_else(dwlth::commands::jobs::default_jobs);
            say!(
                "{}",
                dwlth::commands::jobs::run_with_jobs(&experiment, &out, &device.into(), jobs)?
            );
        }
        Command::CheckImport {
            arch,
            images,
            out,
            device,
        } => demo::run(arch, images, device, &out)?,
    }
    Ok(())
}

fn main() -> ExitCode {
    // Reuse freed activations instead of mapping fresh pages every step.
    dwlth::models::device::keep_freed_memory();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
