//! Running a whole experiment: pre-training, ticket search, transfer, evaluation, verdict,
//! report — resumable and shardable.
//!
//! The results folder is a content-addressed stage store ([`dwlth_store::Store`]): every
//! artefact lives under a key derived from the settings that produced it and the keys of its
//! inputs, and appears only once complete (one folder rename):
//!
//! ```text
//! store.json                       marks the folder (layout version)
//! config.toml                      the experiment last run here, as run
//! experiment.json                  the run keys of that experiment (read by `dwlth report`)
//! pretrain/<key>/theta.safetensors θ_p pre-trained here (`<key>.work/` while it trains)
//! tickets/<key>/tickets.json       one θ_p's tickets of one method and its settings, with
//! tickets/<key>/s<sparsity>.safetensors   their mask files (`<key>.work/`: IMP rounds, LMP)
//! transfer_source/<key>/           the transfer attack's robust source model
//! runs/<key>/result.json           one finished transfer run (`<key>.work/`: its checkpoints)
//! report/                          results.json, curves.csv, double_win.md, *.svg, *.png
//! ```
//!
//! Changing any setting that affects a result — the data's content included — gives new keys, so
//! nothing stale is reused; settings that do not (output folder, device, shards, verbosity)
//! keep them. A killed run restarts where it stopped, finished stages are never redone, and
//! `--shard i/n` runs every n-th transfer run so that machines can share a sweep (each shard
//! repeats the deterministic pre-training and ticket stages unless another published them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use dwlth_adv::Regime;
use dwlth_models::io::atomic_write;
use dwlth_models::DeviceSpec;
use dwlth_prune::MaskSet;
use dwlth_store::{Stage, StageKey, Store, StoreError, STORE_MARKER};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::config::ExperimentConfig;
use super::data::{eval_set, Splits};
use super::records::{json_bytes, say, ExperimentIndex, Planned};
use super::results::RunResult;
use super::stages::{find_tickets, pretrain, DataIds, Found};
use super::tickets::TicketSpec;
use super::transfer::{min_steps_key, Downstream, Run};
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
    /// Devices every training batch is split across (data parallelism), the first being
    /// `device`; empty: `device` alone. Results agree with a one-device run up to
    /// floating-point rounding and BatchNorm's per-device statistics (see `dwlth_adv`'s
    /// `Trainer::with_replicas`), so they are not part of any stage's key.
    pub replicas: Vec<DeviceSpec>,
    /// Run only the transfer runs `i, i + n, i + 2n, …` (0-based `i`).
    pub shard: Option<(usize, usize)>,
    /// Progress bars and per-run lines.
    pub verbose: bool,
    /// Stop once every stage the transfer runs share is published — θ_p, tickets, the
    /// transfer attack's source model — and train no transfer run: what a coordinator does
    /// before starting workers on shards (`dwlth run --jobs`), so they never compute those
    /// stages twice. The summary's `pending` lists the runs left.
    pub prepare_only: bool,
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
    /// The stage folders of the runs not finished when this invocation ended (each appears,
    /// with its `manifest.json`, once its run is done): a coordinator's progress.
    pub pending: Vec<PathBuf>,
}

/// The tickets a planned run fine-tunes: its method's, or the first method's (whose dense
/// level every method shares).
fn found_for<'a>(
    tickets: &'a BTreeMap<(String, String), Found>,
    first_method: &str,
    p: &Planned,
) -> &'a Found {
    let method = p.ticket.as_deref().unwrap_or(first_method);
    &tickets[&(p.pretrain.clone(), method.to_string())]
}

/// The masks of a planned run's ticket level.
fn masks_of<'a>(found: &'a Found, p: &Planned) -> Result<&'a MaskSet> {
    found
        .levels
        .iter()
        .find(|(s, _)| *s == p.sparsity)
        .map(|(_, m)| m)
        .ok_or_else(|| DwlthError::InvalidArgument(format!("no ticket at {}", p.sparsity)))
}

/// Refuses a results folder written before the stage store: its caches were keyed by names
/// only, so a changed setting could have reused a stale result.
fn refuse_old_layout(out: &Path) -> Result<()> {
    if out.join(STORE_MARKER).exists() {
        return Ok(());
    }
    let old_runs = std::fs::read_dir(out.join("runs")).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")))
    });
    let old_stages = ["pretrain", "tickets"].iter().any(|d| out.join(d).is_dir());
    if old_runs || old_stages {
        return Err(StoreError::OldLayout {
            path: out.to_path_buf(),
            reason: "holds an experiment of an earlier layout, whose pre-trained weights and \
                     tickets were cached by name only (a changed setting could reuse stale \
                     ones); its results cannot be resumed safely. `dwlth report` still reads \
                     its finished runs; run the experiment into a new folder"
                .into(),
        }
        .into());
    }
    Ok(())
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
    let replicas = options
        .replicas
        .iter()
        .map(|d| Ok(d.device()?.autodiff()))
        .collect::<Result<Vec<Device>>>()?;
    if replicas.first().is_some_and(|first| *first != device) {
        return Err(DwlthError::InvalidArgument(format!(
            "the first of the data-parallel devices ({}) must be the experiment's device ({})",
            options.replicas[0], options.device
        )));
    }
    let out = &options.out;
    refuse_old_layout(out)?;
    let store = Store::open(out)?;
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
        || config.tickets.iter().any(TicketSpec::needs_source)
        || config.transfer.ood;
    let source = needs_source
        .then(|| Splits::load(&config.source))
        .transpose()?;
    let target = Splits::load(&config.target)?;
    if let Some(source) = &source {
        if source.channels() != target.channels() {
            return Err(DwlthError::InvalidArgument(format!(
                "{} has {} channel(s) but {} has {}",
                source.name,
                source.channels(),
                target.name,
                target.channels()
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
    let ids = DataIds {
        source: source
            .as_ref()
            .map(|s| s.identity(&config.source))
            .transpose()?,
        target: target.identity(&config.target)?,
    };

    // 1. Pre-trained weights θ_p.
    let mut thetas = BTreeMap::new();
    for spec in &config.pretrain {
        let theta = pretrain(
            &store,
            config,
            spec,
            (source.as_ref(), &ids),
            (&device, &replicas),
            verbose,
        )?;
        thetas.insert(spec.name.clone(), theta);
    }

    // 2. Tickets on the source task, per θ_p and method.
    let mut tickets: BTreeMap<(String, String), Found> = BTreeMap::new();
    for spec in &config.pretrain {
        for method in &config.tickets {
            let found = find_tickets(
                &store,
                (config, method),
                &spec.name,
                &thetas[&spec.name],
                (source.as_ref(), &target, &ids),
                (&device, &replicas),
                verbose,
            )?;
            tickets.insert((spec.name.clone(), method.label().to_string()), found);
        }
    }
    // With several methods, runs carry their method's label, but a run is keyed by what it
    // computes — θ_p, the ticket's masks, the settings — not by the label: the dense model
    // (every method's reference) and a ticket two methods both found (IMP's first round prunes
    // θ_p itself, as one-shot pruning does) are transferred once and count for each. With one
    // method, runs are keyed as they always were.
    let several = config.tickets.len() > 1;
    let first_method = config.tickets[0].label();
    let found_for = |p: &Planned| found_for(&tickets, first_method, p);

    // 3–4. Transfer runs and their evaluation.
    let mut plan = Vec::new();
    for spec in &config.pretrain {
        for (i, method) in config.tickets.iter().enumerate() {
            let found = &tickets[&(spec.name.clone(), method.label().to_string())];
            for (sparsity, _) in &found.levels {
                let dense = *sparsity == 0.0;
                if dense && i > 0 {
                    continue;
                }
                for &f in &config.transfer.fractions {
                    for (regime, _) in &config.transfer.regimes {
                        for &seed in &config.transfer.seeds {
                            plan.push(Planned {
                                pretrain: spec.name.clone(),
                                sparsity: *sparsity,
                                ticket: (several && !dense).then(|| method.label().to_string()),
                                fraction: f,
                                regime: regime.clone(),
                                seed,
                            });
                        }
                    }
                }
            }
        }
    }
    let bs = config.transfer.batch_size;
    let mut downstream = Downstream {
        config,
        target: &target,
        stats: target.stats()?,
        validation: eval_set(&target.validation, &config.target, bs, &device)?,
        test: eval_set(&target.test, &config.target, bs, &device)?,
        classes: target.train.num_classes(),
        device: &device,
        replicas: &replicas,
        crafted: None,
        // Out-of-distribution images: the source dataset's test split, shaped as the target's.
        ood: match (config.transfer.ood, &source) {
            (true, Some(source)) => Some(eval_set(&source.test, &config.target, bs, &device)?),
            _ => None,
        },
    };
    let source_stage = config
        .transfer
        .transfer_attack
        .then(|| downstream.transfer_source_stage(&store, &thetas, &ids.target))
        .transpose()?;
    // Everything every run shares; each run adds its own settings and inputs.
    let mut shared = json!({
        "model": config.model, "train": config.transfer.train,
        "stratified": config.transfer.stratified, "linear": config.transfer.linear,
        "test_attack": config.transfer.test_attack, "batch_size": bs,
        "target": ids.target, "ood_images": config.transfer.ood.then(|| ids.source.clone()),
    });
    // Only when set, so experiments without it keep the run keys they always had.
    if let (Some(stretch), Some(map)) = (min_steps_key(config), shared.as_object_mut()) {
        map.insert("min_steps".into(), stretch);
    }
    let run_stage = |p: &Planned| -> Result<Stage> {
        let regime = regime_of(config, &p.regime)?;
        let mut inputs = vec![thetas[&p.pretrain].key.clone()];
        if !several {
            inputs.push(found_for(p).key.clone());
        } else if p.sparsity > 0.0 {
            inputs.push(StageKey {
                kind: "masks".into(),
                key: masks_of(found_for(p), p)?.fingerprint(),
            });
        }
        if let Some(stage) = &source_stage {
            inputs.push(stage.key().clone());
        }
        let unlabelled = Planned {
            ticket: None,
            ..p.clone()
        };
        Ok(store.stage(
            "runs",
            &json!({ "shared": shared, "run": unlabelled, "regime": regime }),
            &inputs.iter().collect::<Vec<_>>(),
        )?)
    };
    let stages = plan.iter().map(run_stage).collect::<Result<Vec<_>>>()?;
    // Shards take every n-th *distinct* run, so no two of them train the same one.
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<(&Planned, &Stage)> = plan
        .iter()
        .zip(&stages)
        .filter(|(_, stage)| seen.insert(stage.key().key.clone()))
        .collect();
    let todo: Vec<(&Planned, &Stage)> = distinct
        .into_iter()
        .enumerate()
        .filter(|(k, (_, stage))| {
            let mine = options.shard.is_none_or(|(i, n)| k % n == i);
            mine && stage.done().is_none()
        })
        .map(|(_, run)| run)
        .collect();
    // Crafted only when a run needs it: a finished experiment reruns in seconds.
    if let (Some(stage), false) = (&source_stage, todo.is_empty()) {
        downstream.crafted = Some(downstream.transfer_attack_set(stage, &thetas, verbose)?);
    }
    let pending = |stages: &[Stage]| -> Vec<PathBuf> {
        stages
            .iter()
            .filter(|s| s.done().is_none())
            .map(|s| out.join("runs").join(&s.key().key))
            .collect()
    };
    if options.prepare_only {
        return Ok(ExperimentSummary {
            results: Vec::new(),
            verdicts: Vec::new(),
            report_files: Vec::new(),
            trained: 0,
            planned: plan.len(),
            pending: pending(&stages),
        });
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
    for (k, (p, stage)) in todo.iter().enumerate() {
        let what = format!(
            "θ_{}{} sparsity {:.2}% {} {}% data seed {}",
            p.pretrain.to_uppercase(),
            p.ticket
                .as_ref()
                .map_or(String::new(), |t| format!(" {}", t.to_uppercase())),
            100.0 * p.sparsity,
            p.regime.to_uppercase(),
            100.0 * p.fraction,
            p.seed
        );
        sweep.set_message(what.clone());
        let masks = masks_of(found_for(p), p)?;
        let t0 = Instant::now();
        // What the run computes does not depend on the method's label (see above).
        let unlabelled = Planned {
            ticket: None,
            ..(*p).clone()
        };
        let run = Run {
            p: if several { &unlabelled } else { p },
            theta: &thetas[&p.pretrain].model,
            masks,
            regime: regime_of(config, &p.regime)?,
        };
        let result = stage.load_or_compute(
            |dir| RunResult::read(&dir.join("result.json")),
            |work| downstream.transfer(&run, &work.join("train"), verbose.then_some(&group)),
            |result, dir| {
                Ok(dwlth_store::write_file(
                    &dir.join("result.json"),
                    &json_bytes(result)?,
                )?)
            },
        )?;
        sweep.inc(1);
        if verbose {
            let line = format!(
                "[{}/{}] {what}: SA {:.2}%{} ({:.1} s)",
                k + 1,
                todo.len(),
                100.0 * result.sa,
                result
                    .ra
                    .map_or(String::new(), |r| format!(" RA {:.2}%", 100.0 * r)),
                t0.elapsed().as_secs_f64(),
            );
            // Without a terminal (a worker's log, a batch job) the bars draw nothing: plain lines.
            if group.is_hidden() {
                say(true, line);
            } else {
                let _ = group.println(line);
            }
        }
    }
    sweep.finish_and_clear();

    // 5–6. Verdict and report over every finished run of this experiment.
    let mut results = Vec::new();
    for (p, stage) in plan.iter().zip(&stages) {
        if let Some(mut result) =
            stage.load_done(|dir| RunResult::read(&dir.join("result.json")))?
        {
            result.ticket = p.ticket.clone();
            results.push(result);
        }
    }
    let index = ExperimentIndex {
        name: config.name.clone(),
        runs: stages.iter().map(|s| s.key().key.clone()).collect(),
        run_tickets: if several {
            plan.iter().map(|p| p.ticket.clone()).collect()
        } else {
            Vec::new()
        },
        // The mask report names each θ_p's tickets `<pretrain>`, or `<pretrain>-<method>`.
        tickets: tickets
            .iter()
            .map(|((name, method), t)| {
                let name = if several {
                    format!("{name}-{method}")
                } else {
                    name.clone()
                };
                (name, t.key.key.clone())
            })
            .collect(),
    };
    atomic_write(&out.join("experiment.json"), &json_bytes(&index)?)?;
    let (verdicts, written) = write_report(&results, &out.join("report"))?;
    Ok(ExperimentSummary {
        results,
        verdicts,
        report_files: written.files,
        trained: todo.len(),
        planned: plan.len(),
        pending: pending(&stages),
    })
}

fn regime_of<'a>(config: &'a ExperimentConfig, name: &str) -> Result<&'a Regime> {
    config
        .transfer
        .regimes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r)
        .ok_or_else(|| DwlthError::InvalidArgument(format!("no transfer regime `{name}`")))
}
