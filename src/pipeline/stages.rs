//! The stages an experiment's runs share: θ_p (imported, or pre-trained on the source task) and
//! each θ_p's tickets of each method (one-shot, IMP's rounds, LMP, files), each a stage of the
//! store keyed by its settings and its inputs' keys ([`super::run`] plans and runs the rest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use dwlth_adv::{OverfitGuard, Regime, Trainer};
use dwlth_models::io::{fingerprint_module, load_resnet, save_resnet};
use dwlth_models::mode::independent_copy;
use dwlth_models::{ResNet, ResNetConfig};
use dwlth_prune::{
    apply_masks, learn_mask, masked_weights, Imp, ImpConfig, LmpConfig, MaskSet, Prunable,
    PruneMethod, Scope,
};
use dwlth_store::{StageKey, Store};
use serde_json::json;

use super::config::{ExperimentConfig, PretrainSpec};
use super::data::{batches, eval_set, training, Splits};
use super::records::{fnv, json_bytes, say, Theta, TicketIndex};
use super::tickets::TicketSpec;
use crate::error::{DwlthError, Result};

/// One θ_p's tickets of one method: the stage's key and `(sparsity, masks)` per level, the
/// dense one first.
pub(super) struct Found {
    pub(super) key: StageKey,
    pub(super) levels: Vec<(f64, MaskSet)>,
}

/// What the results depend on of the source and target data (settings and content).
pub(super) struct DataIds {
    pub(super) source: Option<serde_json::Value>,
    pub(super) target: serde_json::Value,
}

fn missing_source(config: &ExperimentConfig) -> DwlthError {
    DwlthError::InvalidArgument(format!(
        "the source dataset {} is needed but was not loaded",
        config.source.dataset
    ))
}

/// θ_p: imported (keyed by its weights' fingerprint) or pre-trained on the source task (a stage
/// keyed by the model, the regime, the training settings and the source data).
pub(super) fn pretrain(
    store: &Store,
    config: &ExperimentConfig,
    spec: &PretrainSpec,
    (source, ids): (Option<&Splits>, &DataIds),
    (device, replicas): (&Device, &[Device]),
    verbose: bool,
) -> Result<Theta> {
    let name = spec.name.to_uppercase();
    if let Some(weights) = &spec.weights {
        say(
            verbose,
            format!("θ_{name}: importing {}", weights.display()),
        );
        let model = load_resnet(weights, Some(config.model.arch), device)?.0;
        let key = StageKey {
            kind: "weights".into(),
            key: fingerprint_module(&model)?,
        };
        return Ok(Theta { key, model });
    }
    let mut train_config = config.pretrain_train.clone();
    train_config.regime = spec.regime.clone();
    if matches!(spec.regime, Regime::FastAdversarial { .. }) && train_config.overfit_guard.is_none()
    {
        train_config.overfit_guard = Some(OverfitGuard::default());
    }
    let stage = store.stage(
        "pretrain",
        &json!({
            // The name seeds the initialisation.
            "name": spec.name, "model": config.model, "train": train_config,
            "batch_size": config.source_batch_size, "source": ids.source,
        }),
        &[],
    )?;
    let load = |dir: &Path| -> Result<ResNet> {
        let path = dir.join("theta.safetensors");
        say(verbose, format!("θ_{name}: {}", path.display()));
        Ok(load_resnet(&path, Some(config.model.arch), device)?.0)
    };
    let compute = |work: &Path| -> Result<ResNet> {
        let source = source.ok_or_else(|| missing_source(config))?;
        let c = source.channels();
        dwlth_models::random::seed(device, fnv(spec.name.as_bytes()));
        let model = ResNetConfig::new(config.model.arch)
            .with_width(config.model.width)
            .with_stem(config.model.stem)
            .with_in_channels(c)
            .with_num_classes(source.train.num_classes())
            .with_normalize(source.stats()?)
            .try_init(device)?;
        say(
            verbose,
            format!(
                "θ_{name}: pre-training on {} ({} epochs, regime {})",
                source.name,
                train_config.epochs,
                spec.regime.short_name()
            ),
        );
        let mut trainer = Trainer::new(train_config.clone(), Some(work.join("train")))?
            .with_replicas(replicas.to_vec());
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
            say(verbose, format!("θ_{name}: {why}"));
        }
        if let Some(last) = outcome.history.last() {
            say(
                verbose,
                format!(
                    "θ_{name}: validation SA {:.2}% after {} epochs",
                    100.0 * last.val_sa.unwrap_or(0.0),
                    outcome.history.len()
                ),
            );
        }
        Ok(outcome.model)
    };
    let model = stage.load_or_compute(load, compute, |model, dir| {
        Ok(save_resnet(model, dir.join("theta.safetensors"))?)
    })?;
    Ok(Theta {
        key: stage.key().clone(),
        model,
    })
}

/// The method and its settings as stage settings; mask files by content.
fn ticket_settings(
    config: &ExperimentConfig,
    method: &TicketSpec,
    ids: &DataIds,
) -> Result<serde_json::Value> {
    Ok(match method {
        TicketSpec::Files { files } => {
            let mut content = BTreeMap::new();
            for (name, paths) in files {
                let mut keys = Vec::new();
                for path in paths {
                    let bytes = std::fs::read(path).map_err(|e| DwlthError::Io {
                        path: path.clone(),
                        source: e,
                    })?;
                    let mut f = dwlth_store::Fingerprint::new();
                    f.update(&bytes);
                    keys.push(f.finish());
                }
                content.insert(name.clone(), keys);
            }
            json!({ "method": "files", "files": content })
        }
        TicketSpec::Imp { downstream, .. } => json!({
            "spec": method,
            "data": if *downstream { Some(&ids.target) } else { ids.source.as_ref() },
            "batch_size": if *downstream { config.transfer.batch_size } else { config.source_batch_size },
        }),
        TicketSpec::Lmp { .. } => json!({
            "spec": method, "data": ids.source, "batch_size": config.source_batch_size,
        }),
        other => json!({ "spec": other }),
    })
}

/// One θ_p's tickets of one method (a stage keyed by θ_p's key and the method's settings), the
/// dense level first.
pub(super) fn find_tickets(
    store: &Store,
    (config, method): (&ExperimentConfig, &TicketSpec),
    name: &str,
    theta: &Theta,
    (source, target, ids): (Option<&Splits>, &Splits, &DataIds),
    (device, replicas): (&Device, &[Device]),
    verbose: bool,
) -> Result<Found> {
    let stage = store.stage(
        "tickets",
        &json!({ "tickets": ticket_settings(config, method, ids)?, "prunable": Prunable::convolutions() }),
        &[&theta.key],
    )?;
    let load = |dir: &Path| -> Result<Vec<(f64, MaskSet)>> {
        let index = TicketIndex::read(&dir.join("tickets.json"))?;
        index
            .levels
            .iter()
            .map(|(s, file)| Ok((*s, MaskSet::load(dir.join(file))?)))
            .collect()
    };
    let compute = |work: &Path| {
        search_tickets(
            (config, method),
            name,
            &theta.model,
            (source, target),
            work,
            (device, replicas),
            verbose,
        )
    };
    let save = |levels: &Vec<(f64, MaskSet)>, dir: &Path| -> Result<()> {
        let mut index = TicketIndex { levels: Vec::new() };
        for (s, masks) in levels {
            let file = format!("s{s:.4}.safetensors");
            masks.save(dir.join(&file))?;
            index.levels.push((*s, file));
        }
        Ok(dwlth_store::write_file(
            &dir.join("tickets.json"),
            &json_bytes(&index)?,
        )?)
    };
    let mut levels = stage.load_or_compute(load, compute, save)?;
    let dense = MaskSet::from_model(&theta.model, &Prunable::convolutions());
    levels.insert(0, (0.0, dense));
    Ok(Found {
        key: stage.key().clone(),
        levels,
    })
}

/// Searches one θ_p's tickets with one method (`work` holds IMP's rounds and LMP's masks while
/// it runs).
fn search_tickets(
    (config, method): (&ExperimentConfig, &TicketSpec),
    name: &str,
    theta: &ResNet,
    (source, target): (Option<&Splits>, &Splits),
    work: &Path,
    (device, replicas): (&Device, &[Device]),
    verbose: bool,
) -> Result<Vec<(f64, MaskSet)>> {
    let prunable = Prunable::convolutions();
    let mut found = Vec::new();
    match method {
        TicketSpec::Omp { sparsities }
        | TicketSpec::Random { sparsities, .. }
        | TicketSpec::Structured { sparsities, .. } => {
            let criterion = match method {
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
                let mut m = criterion.prune(&layers, &prunable, s)?;
                m.metadata.insert("pretrain".into(), name.into());
                found.push((s, m));
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
                found.push((s, masks));
            }
        }
        TicketSpec::Lmp {
            sparsities,
            lr,
            epochs,
        } => {
            let source = source.ok_or_else(|| missing_source(config))?;
            let data = batches(&source.train, config.source_batch_size, device)?;
            for &s in sparsities {
                // Each level is a whole result: kept in the work folder so a killed search
                // resumes at the next level.
                let path = work.join(format!("lmp{s:.4}.safetensors"));
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
                    MaskSet::load(&path)?
                };
                found.push((s, masks));
            }
        }
        TicketSpec::Imp {
            rounds,
            sparsities,
            retrain,
            downstream,
        } => {
            let rounds = TicketSpec::imp_rounds(*rounds, sparsities);
            let imp = Imp::new(
                ImpConfig {
                    rounds,
                    sparsities: sparsities.clone(),
                    ..ImpConfig::default()
                },
                prunable,
                work.join("imp"),
            )?;
            // Upstream: θ_p on the source task. Downstream: θ_p with a target head (and the
            // target's normalisation), on the target task.
            let (task, spec, batch_size, start) = if *downstream {
                let mut start =
                    independent_copy(theta).with_head(target.train.num_classes(), device)?;
                start.normalize = start.normalize.with_config(&target.stats()?)?;
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
            let mut trainer = Trainer::new(retrain.clone(), None)?.with_replicas(replicas.to_vec());
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
                // A schedule's round is named by its level, as one-shot tickets are, so equal
                // levels of two methods are one column and an identical ticket one run.
                let level = if sparsities.is_empty() {
                    r.sparsity
                } else {
                    imp.config.sparsity_after(r.round)
                };
                found.push((level, MaskSet::load(imp.masks_path(r.round))?));
            }
        }
    }
    Ok(found)
}
