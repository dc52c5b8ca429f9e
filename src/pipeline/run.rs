//! Running a whole experiment: pre-training, ticket search, transfer, evaluation, verdict,
//! report — resumable and shardable.
//!
//! Layout of the results folder:
//!
//! ```text
//! config.toml                      the experiment, as run
//! pretrain/<p>/theta.safetensors   θ_p (and pretrain/<p>/train/ while it trains)
//! tickets/<p>/s<sparsity>.safetensors
//! runs/<id>.json                   one finished transfer run (id = hash of its settings)
//! runs/<id>/                       checkpoints of a transfer run in progress
//! report/                          results.json, curves.csv, double_win.md, *.svg
//! ```
//!
//! Every file is written atomically; a killed run restarts where it stopped, finished runs are
//! never redone, and `--shard i/n` runs every n-th transfer run so that machines can share a
//! sweep (each shard repeats the cheap, deterministic pre-training and ticket stages).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use dwlth_adv::{OverfitGuard, Regime, Trainer};
use dwlth_models::io::{atomic_write, load_resnet, save_resnet};
use dwlth_models::mode::independent_copy;
use dwlth_models::{DeviceSpec, ResNet, ResNetConfig};
use dwlth_prune::{
    apply_masks, learn_mask, masked_weights, Imp, ImpConfig, LmpConfig, MaskSet, Prunable,
    PruneMethod, Scope,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::config::{ExperimentConfig, PretrainSpec, TicketSpec};
use super::data::{batches, eval_set, training, Splits};
use super::results::RunResult;
use super::transfer::{Downstream, Run};
use super::verdict::Verdict;
use crate::error::{DwlthError, Result};
use crate::report::write_report;

/// How to run an experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Results folder.
    pub out: PathBuf,
    /// Compute device.
    pub device: DeviceSpec,
    /// Run only the transfer runs `i, i + n, i + 2n, …` (0-based `i`).
    pub shard: Option<(usize, usize)>,
    /// Progress bars and per-run lines.
    pub verbose: bool,
}

/// What an experiment produced.
#[derive(Debug, Clone)]
pub struct ExperimentSummary {
    /// Every finished transfer run of the experiment found in the results folder.
    pub results: Vec<RunResult>,
    /// The double-win verdicts.
    pub verdicts: Vec<Verdict>,
    /// The report's files.
    pub report_files: Vec<PathBuf>,
    /// Transfer runs this invocation trained (the rest were already done or in other shards).
    pub trained: usize,
    /// Transfer runs of the whole experiment.
    pub planned: usize,
}

/// One transfer run to do.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Planned {
    pub(super) pretrain: String,
    pub(super) sparsity: f64,
    pub(super) fraction: f64,
    pub(super) regime: String,
    pub(super) seed: u64,
}

/// FNV-1a over `bytes`: stable names for runs.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    crate::hash::fnv1a(bytes.iter().copied())
}

pub(super) fn say(verbose: bool, line: String) {
    if verbose {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| DwlthError::InvalidArgument(format!("cannot write JSON: {e}")))?;
    Ok(atomic_write(path, &bytes)?)
}

/// Runs (or resumes) `config`.
pub fn run_experiment(
    config: &ExperimentConfig,
    options: &RunOptions,
) -> Result<ExperimentSummary> {
    config.validate()?;
    if let Some((i, n)) = options.shard {
        if n == 0 || i >= n {
            return Err(DwlthError::InvalidArgument(format!(
                "invalid shard {i}/{n}"
            )));
        }
    }
    let device = options.device.device()?.autodiff();
    let out = &options.out;
    atomic_write(&out.join("config.toml"), config.to_toml().as_bytes())?;
    let verbose = options.verbose;
    say(
        verbose,
        format!(
            "loading {} and {}",
            config.source.dataset, config.target.dataset
        ),
    );
    // The source task is needed only to pre-train here or to run IMP.
    let needs_source = config.pretrain.iter().any(|p| p.weights.is_none())
        || matches!(
            config.tickets,
            TicketSpec::Imp {
                downstream: false,
                ..
            }
        )
        || config.transfer.ood;
    let source = needs_source
        .then(|| Splits::load(&config.source))
        .transpose()?;
    let target = Splits::load(&config.target)?;
    if let Some(source) = &source {
        if source.train.shape()[0] != target.train.shape()[0] {
            return Err(DwlthError::InvalidArgument(format!(
                "{} has {} channel(s) but {} has {}",
                source.name,
                source.train.shape()[0],
                target.name,
                target.train.shape()[0]
            )));
        }
        say(
            verbose,
            format!(
                "source {}: {} train / {} validation",
                source.name,
                source.train.len(),
                source.validation.len()
            ),
        );
    }
    say(
        verbose,
        format!(
            "target {}: {} train / {} validation / {} test",
            target.name,
            target.train.len(),
            target.validation.len(),
            target.test.len()
        ),
    );

    // 1. Pre-trained weights θ_p.
    let mut thetas = BTreeMap::new();
    for spec in &config.pretrain {
        let theta = pretrain(config, spec, source.as_ref(), out, &device, verbose)?;
        thetas.insert(spec.name.clone(), theta);
    }

    // 2. Tickets on the source task.
    let mut tickets: BTreeMap<String, Vec<(f64, MaskSet)>> = BTreeMap::new();
    for spec in &config.pretrain {
        let theta = &thetas[&spec.name];
        let found = find_tickets(
            config,
            &spec.name,
            theta,
            (source.as_ref(), &target),
            out,
            &device,
            verbose,
        )?;
        tickets.insert(spec.name.clone(), found);
    }

    // 3–4. Transfer runs and their evaluation.
    let mut plan = Vec::new();
    for spec in &config.pretrain {
        for (sparsity, _) in &tickets[&spec.name] {
            for &f in &config.transfer.fractions {
                for (regime, _) in &config.transfer.regimes {
                    for &seed in &config.transfer.seeds {
                        plan.push(Planned {
                            pretrain: spec.name.clone(),
                            sparsity: *sparsity,
                            fraction: f,
                            regime: regime.clone(),
                            seed,
                        });
                    }
                }
            }
        }
    }
    let shared = serde_json::json!({
        "model": config.model, "source": config.source, "target": config.target,
        "pretrain": config.pretrain, "pretrain_train": config.pretrain_train,
        "tickets": config.tickets, "train": config.transfer.train,
        "regimes": config.transfer.regimes, "stratified": config.transfer.stratified,
        "linear": config.transfer.linear, "test_attack": config.transfer.test_attack,
        "batch_size": config.transfer.batch_size,
    });
    // Only experiments with the optional measurements name them, so older runs keep their ids.
    let mut shared = shared;
    for (name, on) in [
        ("transfer_attack", config.transfer.transfer_attack),
        ("ood", config.transfer.ood),
    ] {
        if on {
            shared[name] = true.into();
        }
    }
    let run_id = |p: &Planned| {
        let key = serde_json::json!({ "shared": shared, "run": p });
        format!("{:016x}", fnv(key.to_string().as_bytes()))
    };
    let runs_dir = out.join("runs");
    let bs = config.transfer.batch_size;
    let mut downstream = Downstream {
        config,
        target: &target,
        stats: target.stats(),
        validation: eval_set(&target.validation, &config.target, bs, &device)?,
        test: eval_set(&target.test, &config.target, bs, &device)?,
        classes: target.train.num_classes(),
        device: &device,
        crafted: None,
        // Out-of-distribution images: the source dataset's test split, shaped as the target's.
        ood: match (config.transfer.ood, &source) {
            (true, Some(source)) => Some(eval_set(&source.test, &config.target, bs, &device)?),
            _ => None,
        },
    };
    let todo: Vec<&Planned> = plan
        .iter()
        .enumerate()
        .filter(|(k, p)| {
            let mine = options.shard.is_none_or(|(i, n)| k % n == i);
            mine && !runs_dir.join(format!("{}.json", run_id(p))).exists()
        })
        .map(|(_, p)| p)
        .collect();
    // Crafted only when a run needs it: a finished experiment reruns in seconds.
    if config.transfer.transfer_attack && !todo.is_empty() {
        downstream.crafted = Some(downstream.transfer_attack_set(&thetas, out, verbose)?);
    }
    say(
        verbose,
        format!(
            "{} transfer runs planned, {} to train here",
            plan.len(),
            todo.len()
        ),
    );
    // One bar for the sweep, the trainer's epoch bars below it, finished runs printed above.
    let group = MultiProgress::with_draw_target(if verbose {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let sweep = group.add(ProgressBar::new(todo.len() as u64));
    sweep.set_style(
        ProgressStyle::with_template(
            "sweep [{bar:30}] {pos}/{len} runs {elapsed_precise}<{eta_precise} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    for (k, p) in todo.iter().enumerate() {
        let id = run_id(p);
        let what = format!(
            "θ_{} sparsity {:.2}% {} {}% data seed {}",
            p.pretrain.to_uppercase(),
            100.0 * p.sparsity,
            p.regime.to_uppercase(),
            100.0 * p.fraction,
            p.seed
        );
        sweep.set_message(what.clone());
        let masks = &tickets[&p.pretrain]
            .iter()
            .find(|(s, _)| *s == p.sparsity)
            .expect("planned from the tickets")
            .1;
        let regime = &config
            .transfer
            .regimes
            .iter()
            .find(|(n, _)| *n == p.regime)
            .expect("planned from the regimes")
            .1;
        let t0 = Instant::now();
        let run = Run {
            p,
            theta: &thetas[&p.pretrain],
            masks,
            regime,
        };
        let result = downstream.transfer(&run, &runs_dir.join(&id), verbose.then_some(&group))?;
        write_json(&runs_dir.join(format!("{id}.json")), &result)?;
        let _ = std::fs::remove_dir_all(runs_dir.join(&id));
        sweep.inc(1);
        if verbose {
            let _ = group.println(format!(
                "[{}/{}] {what}: SA {:.2}%{} ({:.1} s)",
                k + 1,
                todo.len(),
                100.0 * result.sa,
                result
                    .ra
                    .map_or(String::new(), |r| format!(" RA {:.2}%", 100.0 * r)),
                t0.elapsed().as_secs_f64(),
            ));
        }
    }
    sweep.finish_and_clear();

    // 5–6. Verdict and report over every finished run of this experiment.
    let mut results = Vec::new();
    for p in &plan {
        let path = runs_dir.join(format!("{}.json", run_id(p)));
        if path.exists() {
            results.push(RunResult::read(&path)?);
        }
    }
    let (verdicts, written) = write_report(&results, &out.join("report"))?;
    Ok(ExperimentSummary {
        results,
        verdicts,
        report_files: written.files,
        trained: todo.len(),
        planned: plan.len(),
    })
}

fn missing_source(config: &ExperimentConfig) -> DwlthError {
    DwlthError::InvalidArgument(format!(
        "the source dataset {} is needed but was not loaded",
        config.source.dataset
    ))
}

fn pretrain(
    config: &ExperimentConfig,
    spec: &PretrainSpec,
    source: Option<&Splits>,
    out: &Path,
    device: &Device,
    verbose: bool,
) -> Result<ResNet> {
    let dir = out.join("pretrain").join(&spec.name);
    let theta_path = dir.join("theta.safetensors");
    if theta_path.exists() {
        say(
            verbose,
            format!("θ_{}: {}", spec.name.to_uppercase(), theta_path.display()),
        );
        return Ok(load_resnet(&theta_path, Some(config.model.arch), device)?.0);
    }
    if let Some(weights) = &spec.weights {
        say(
            verbose,
            format!(
                "θ_{}: importing {}",
                spec.name.to_uppercase(),
                weights.display()
            ),
        );
        return Ok(load_resnet(weights, Some(config.model.arch), device)?.0);
    }
    let source = source.ok_or_else(|| missing_source(config))?;
    let [c, _, _] = source.train.shape();
    device.seed(fnv(spec.name.as_bytes()));
    let model = ResNetConfig::new(config.model.arch)
        .with_width(config.model.width)
        .with_stem(config.model.stem)
        .with_in_channels(c)
        .with_num_classes(source.train.num_classes())
        .with_normalize(source.stats())
        .try_init(device)?;
    let mut train_config = config.pretrain_train.clone();
    train_config.regime = spec.regime.clone();
    if matches!(spec.regime, Regime::FastAdversarial { .. }) && train_config.overfit_guard.is_none()
    {
        train_config.overfit_guard = Some(OverfitGuard::default());
    }
    say(
        verbose,
        format!(
            "θ_{}: pre-training on {} ({} epochs, regime {})",
            spec.name.to_uppercase(),
            source.name,
            train_config.epochs,
            spec.regime.short_name()
        ),
    );
    let mut trainer = Trainer::new(train_config, Some(dir.join("train")))?;
    trainer.progress = verbose;
    let mut data = training(
        &source.train,
        &config.source,
        config.source_batch_size,
        0,
        device,
    )?;
    let validation = eval_set(
        &source.validation,
        &config.source,
        config.source_batch_size,
        device,
    )?;
    let outcome = trainer.fit(
        model,
        data.as_mut(),
        validation.as_ref(),
        source.train.num_classes(),
    )?;
    if let Some(why) = &outcome.stopped {
        say(verbose, format!("θ_{}: {why}", spec.name.to_uppercase()));
    }
    if let Some(last) = outcome.history.last() {
        say(
            verbose,
            format!(
                "θ_{}: validation SA {:.2}% after {} epochs",
                spec.name.to_uppercase(),
                100.0 * last.val_sa.unwrap_or(0.0),
                outcome.history.len()
            ),
        );
    }
    save_resnet(&outcome.model, &theta_path)?;
    Ok(outcome.model)
}

fn find_tickets(
    config: &ExperimentConfig,
    name: &str,
    theta: &ResNet,
    (source, target): (Option<&Splits>, &Splits),
    out: &Path,
    device: &Device,
    verbose: bool,
) -> Result<Vec<(f64, MaskSet)>> {
    let dir = out.join("tickets").join(name);
    let prunable = Prunable::convolutions();
    let dense = MaskSet::from_model(theta, &prunable);
    let mut found = vec![(0.0, dense)];
    match &config.tickets {
        TicketSpec::Omp { sparsities }
        | TicketSpec::Random { sparsities, .. }
        | TicketSpec::Structured { sparsities, .. } => {
            let method = match &config.tickets {
                TicketSpec::Random { seed, .. } => PruneMethod::Random {
                    scope: Scope::Global,
                    seed: *seed,
                },
                TicketSpec::Structured {
                    granularity, scope, ..
                } => PruneMethod::Structured {
                    granularity: *granularity,
                    norm: dwlth_prune::Norm::L1,
                    scope: *scope,
                },
                _ => PruneMethod::global_magnitude(),
            };
            let layers = masked_weights(theta);
            for &s in sparsities {
                let path = dir.join(format!("s{:.4}.safetensors", s));
                let masks = if path.exists() {
                    MaskSet::load(&path)?
                } else {
                    let mut m = method.prune(&layers, &prunable, s)?;
                    m.metadata.insert("pretrain".into(), name.into());
                    m.save(&path)?;
                    m
                };
                found.push((s, masks));
            }
        }
        TicketSpec::Files { files } => {
            let given = files.get(name).ok_or_else(|| {
                DwlthError::InvalidArgument(format!(
                    "`tickets.files` names no mask files for pre-training `{name}`"
                ))
            })?;
            let mut levels: BTreeMap<u64, &PathBuf> = BTreeMap::new();
            for file in given {
                let mut masks = MaskSet::load(file)?;
                masks.check_fits(theta, &prunable)?;
                let conv =
                    MaskSet::from_model(&apply_masks(independent_copy(theta), &masks)?, &prunable);
                let s = (conv.sparsity() * 1e4).round() / 1e4;
                // A level names the runs and the ticket file: two files at one level (or a
                // dense one, the level of θ_p itself) cannot both be transferred.
                if s == 0.0 {
                    return Err(DwlthError::InvalidArgument(format!(
                        "`{}` prunes none of θ_{name}'s convolutions; the dense model is always transferred",
                        file.display()
                    )));
                }
                if let Some(other) = levels.insert((s * 1e4).round() as u64, file) {
                    return Err(DwlthError::InvalidArgument(format!(
                        "`{}` and `{}` are both at sparsity {:.2} %; give one file per level",
                        other.display(),
                        file.display(),
                        100.0 * s
                    )));
                }
                masks.metadata.insert("pretrain".into(), name.into());
                masks
                    .metadata
                    .insert("source".into(), file.display().to_string());
                masks.save(dir.join(format!("s{:.4}.safetensors", s)))?;
                found.push((s, masks));
            }
        }
        TicketSpec::Lmp {
            sparsities,
            lr,
            epochs,
        } => {
            let source = source.ok_or_else(|| missing_source(config))?;
            let data = batches(&source.train, config.source_batch_size, device);
            for &s in sparsities {
                let path = dir.join(format!("lmp{:.4}.safetensors", s));
                let masks = if path.exists() {
                    MaskSet::load(&path)?
                } else {
                    let lmp = LmpConfig {
                        sparsity: s,
                        scope: Scope::Global,
                        lr: *lr,
                        epochs: *epochs,
                    };
                    let (mut m, history) =
                        learn_mask(theta, &prunable, &lmp, &data, |m: &ResNet, x| m.forward(x))?;
                    say(
                        verbose,
                        format!(
                            "θ_{}: LMP at {:.2}%: source loss {history:.3?}",
                            name.to_uppercase(),
                            100.0 * s
                        ),
                    );
                    m.metadata.insert("pretrain".into(), name.into());
                    m.save(&path)?;
                    m
                };
                found.push((s, masks));
            }
        }
        TicketSpec::Imp {
            rounds,
            retrain,
            downstream,
        } => {
            let imp = Imp::new(
                ImpConfig {
                    rounds: *rounds,
                    ..ImpConfig::default()
                },
                prunable,
                // Each task its own rounds: switching `downstream` never resumes the other's.
                dir.join(if *downstream { "imp-ds" } else { "imp" }),
            )?;
            // Upstream: θ_p on the source task. Downstream: θ_p with a target head (and the
            // target's normalisation), on the target task.
            let (task, spec, batch_size, start) = if *downstream {
                let mut start =
                    independent_copy(theta).with_head(target.train.num_classes(), device)?;
                start.normalize = start.normalize.with_config(&target.stats())?;
                (target, &config.target, config.transfer.batch_size, start)
            } else {
                let source = source.ok_or_else(|| missing_source(config))?;
                (
                    source,
                    &config.source,
                    config.source_batch_size,
                    independent_copy(theta),
                )
            };
            let mut data = training(&task.train, spec, batch_size, 0, device)?;
            let validation = eval_set(&task.validation, spec, batch_size, device)?;
            let classes = task.train.num_classes();
            let mut trainer = Trainer::new(retrain.clone(), None)?;
            trainer.progress = verbose;
            say(
                verbose,
                format!(
                    "θ_{}: {}IMP on {}, {rounds} rounds",
                    name.to_uppercase(),
                    if *downstream { "DS-" } else { "" },
                    task.name
                ),
            );
            let (_, _, records) = imp.run(&start, |model: ResNet, ctx| {
                let outcome = trainer
                    .fit(model, data.as_mut(), validation.as_ref(), classes)
                    .map_err(|e| e.to_string())?;
                let sa = outcome.history.last().and_then(|r| r.val_sa);
                say(
                    verbose,
                    format!(
                        "  round {}: sparsity {:.2}%, validation SA {:.2}%",
                        ctx.round,
                        100.0 * ctx.sparsity,
                        100.0 * sa.unwrap_or(0.0)
                    ),
                );
                Ok::<_, String>((outcome.model, serde_json::json!({ "val_sa": sa })))
            })?;
            for r in records {
                found.push((r.sparsity, MaskSet::load(imp.masks_path(r.round))?));
            }
        }
    }
    Ok(found)
}
