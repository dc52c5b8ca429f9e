//! The training loop: SGD with PyTorch semantics, schedules, a regime per step, validation with
//! best-SA / best-RA selection, the overfitting guard, atomic checkpoints and resume.
//!
//! One epoch:
//!
//! 1. for each batch: the regime crafts the inputs (clean, PGD, FGSM-RS, noisy) on the current
//!    model; a forward pass in training mode, mean cross-entropy, backward, one SGD step at the
//!    schedule's rate for this iteration;
//! 2. validation: SA, and RA under the evaluation attack from `ra_from_epoch` on, with the model
//!    in evaluation mode; the best-SA and best-RA weights are kept;
//! 3. the overfitting guard (if set) probes robust accuracy on the first validation batch and
//!    stops training, keeping the previous epoch's weights, when it collapses;
//! 4. with a run directory: the epoch's checkpoint — `model.safetensors`, the optimiser state,
//!    `best_sa.safetensors`, `best_ra.safetensors` and `state.json` — is published as one
//!    folder `step-NNNNNN/` ([`Checkpoints`]), so a run killed at any moment resumes from a
//!    whole epoch, with its optimiser state, and ends with the same bits as an uninterrupted
//!    one. `metrics.jsonl` beside it is a copy for people, never read back.
//!
//! The run directory's `settings.json` holds the training settings, a fingerprint of the
//! starting weights and whatever the caller names as its inputs ([`Trainer::inputs`], e.g. the
//! data); resuming with any of them changed is refused with the differing setting named.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use dwlth_models::io::{
    atomic_write, fingerprint_module, load_module, param_ids, param_shapes, restore_param_ids,
    save_module,
};
use dwlth_models::mode::independent_copy;
use dwlth_models::ParamMasks;
use dwlth_store::{link_or_copy, write_file, Checkpoints, StoreError};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::config::TrainConfig;
use super::data::{EpochBatches, EvalSet};
use super::parallel::{self, Step};
use super::resume::{parse_optimizer, Best, CheckpointState, EpochRecord};
use crate::attack::AttackMode;
use crate::classifier::Classifier;
use crate::error::{AdvError, Result};
use crate::eval::evaluate;

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome<M> {
    /// The final model (the last good one if the guard stopped training).
    pub model: M,
    /// Weights with the best validation SA, and when.
    pub best_sa: Option<(Best, M)>,
    /// Weights with the best validation RA, and when.
    pub best_ra: Option<(Best, M)>,
    /// Every epoch.
    pub history: Vec<EpochRecord>,
    /// Why training stopped early, if it did.
    pub stopped: Option<String>,
}

impl<M: Classifier> TrainOutcome<M> {
    /// The papers' test report: SA of the best-SA weights and, under `attack`, RA of the
    /// best-RA weights (the last weights stand in where no validation picked any), both with
    /// BatchNorm in evaluation mode.
    pub fn test<E: EvalSet + ?Sized>(
        &self,
        batches: &E,
        attack: Option<&crate::attack::Attack>,
        classes: usize,
    ) -> Result<(f64, Option<f64>)> {
        let best_sa = self.best_sa.as_ref().map_or(&self.model, |(_, m)| m);
        let view = AttackMode::Eval.view(best_sa);
        let sa = evaluate(&view, batches.batches(), None, None, classes)?.sa;
        let ra = match attack {
            Some(a) => {
                let best_ra = self.best_ra.as_ref().map_or(&self.model, |(_, m)| m);
                let view = AttackMode::Eval.view(best_ra);
                evaluate(&view, batches.batches(), Some(a), None, classes)?.ra
            }
            None => None,
        };
        Ok((sa, ra))
    }
}

/// A training run.
#[derive(Debug, Clone)]
pub struct Trainer {
    /// Settings.
    pub config: TrainConfig,
    /// Where checkpoints go (`None`: in memory only, no resume).
    pub dir: Option<PathBuf>,
    /// Draw progress bars on a terminal.
    pub progress: bool,
    /// Draw the epoch bars inside this group (under a sweep's own bar) instead of alone.
    pub bars: Option<MultiProgress>,
    /// What else the run depends on (the data, a ticket, …), stored with its checkpoints: a
    /// resume with other inputs is refused. `Null` when the caller names none.
    pub inputs: serde_json::Value,
    /// Devices to split each batch across (data parallelism, see [`with_replicas`]); empty or
    /// one: the model's own device.
    ///
    /// [`with_replicas`]: Trainer::with_replicas
    pub replicas: Vec<Device>,
    /// Masks whose pruned positions get zero gradients every step (see [`with_param_masks`]).
    ///
    /// [`with_param_masks`]: Trainer::with_param_masks
    pub param_masks: Option<ParamMasks>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> AdvError {
    AdvError::Format {
        path: path.to_path_buf(),
        what: "training checkpoint",
        reason: e.to_string(),
    }
}

impl Trainer {
    /// A run with `config`, checkpointing into `dir` when given.
    pub fn new(config: TrainConfig, dir: Option<PathBuf>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            dir,
            progress: true,
            bars: None,
            inputs: serde_json::Value::Null,
            replicas: Vec::new(),
            param_masks: None,
        })
    }

    /// Zeroes the gradients at the positions `masks` prunes before every optimiser step.
    ///
    /// A model of `dwlth-models`' masked layers needs none of this (its masks already give
    /// pruned weights zero gradients); a model of Burn's own `Conv2d` / `Linear` does, or its
    /// pruned weights come back to life on the first step. Build the masks with
    /// `dwlth_prune::param_masks(&model, &mask_set)`. They are part of the settings a run
    /// directory is bound to.
    pub fn with_param_masks(mut self, masks: ParamMasks) -> Self {
        self.param_masks = Some(masks);
        self
    }

    /// Splits every batch across `devices` (data parallelism): the first must be the model's
    /// device; each other one gets a copy of the weights every step, its share of the batch
    /// and of the regime's attack, and sends its gradients back for one optimiser step (the
    /// `train::parallel` module has the details, BatchNorm included). Which devices train
    /// changes neither the settings a run is bound to nor, beyond floating-point rounding,
    /// its results; a run may resume on other devices.
    pub fn with_replicas(mut self, devices: Vec<Device>) -> Self {
        self.replicas = devices.into_iter().map(|d| d.autodiff()).collect();
        self
    }

    /// Names what else the run depends on (see [`Trainer::inputs`]).
    pub fn with_inputs(mut self, inputs: serde_json::Value) -> Self {
        self.inputs = inputs;
        self
    }

    fn optimizer(&self) -> ModuleOptimizer {
        let momentum = (self.config.momentum > 0.0).then(|| {
            MomentumConfig::new()
                .with_momentum(self.config.momentum)
                .with_dampening(0.0)
        });
        let decay = (self.config.weight_decay > 0.0)
            .then(|| WeightDecayConfig::new(self.config.weight_decay as f32));
        SgdConfig::new()
            .with_momentum(momentum)
            .with_weight_decay(decay)
            .init()
    }

    /// The settings a run directory is bound to: every training setting but the ones that
    /// change no result (`snapshots`), the starting weights and the caller's inputs.
    fn identity<M: Classifier>(&self, start: &M) -> Result<serde_json::Value> {
        let mut train = serde_json::to_value(&self.config).map_err(|e| {
            AdvError::InvalidInput(format!("training settings cannot be stored: {e}"))
        })?;
        if let Some(map) = train.as_object_mut() {
            map.remove("snapshots");
        }
        let mut identity = serde_json::json!({
            "train": train,
            "start_weights": fingerprint_module(start)?,
            "inputs": self.inputs,
        });
        // Only when set, so runs without masks keep the identity they always had.
        if let (Some(masks), Some(map)) = (&self.param_masks, identity.as_object_mut()) {
            map.insert("param_masks".into(), masks.fingerprint().into());
        }
        Ok(identity)
    }

    /// Opens the run directory (if any): refuses an earlier layout and other settings.
    fn open_checkpoints<M: Classifier>(&self, start: &M) -> Result<Option<Checkpoints>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        if dir.join("state.json").exists() && !dir.join("settings.json").exists() {
            return Err(StoreError::OldLayout {
                path: dir.clone(),
                reason: "holds a training run of an earlier layout, whose files were written one \
                         by one (a killed run could mix two epochs); delete it or use another folder"
                    .into(),
            }
            .into());
        }
        let identity = self.identity(start)?;
        Ok(Some(Checkpoints::open(dir, "a training run", &identity)?))
    }

    /// Trains `model` on `train`, validating on `validation` (an eval-mode view is taken each
    /// epoch), for `classes` classes. `model` must live on an autodiff device.
    ///
    /// Any [`Classifier`] trains, a model of your own included:
    ///
    /// ```
    /// use burn::module::Module;
    /// use burn::nn::{Linear, LinearConfig};
    /// use burn::tensor::{Device, Tensor};
    /// use dwlth_adv::{Classifier, InMemory, LrSchedule, Regime, Schedule, TrainConfig, Trainer};
    ///
    /// #[derive(Module, Debug)]
    /// struct Net {
    ///     fc: Linear,
    /// }
    ///
    /// impl Classifier for Net {
    ///     fn logits(&self, images: Tensor<4>) -> Tensor<2> {
    ///         self.fc.forward(images.flatten(1, 3))
    ///     }
    /// }
    ///
    /// let device = Device::flex().autodiff();
    /// // Eight 2×2 grey images: dark ones are class 0, bright ones class 1.
    /// let images: Vec<f32> = (0..8).flat_map(|i| [0.2 + 0.6 * (i % 2) as f32; 4]).collect();
    /// let labels: Vec<i64> = (0..8).map(|i| i % 2).collect();
    /// let mut train = InMemory::new(images, labels, [1, 2, 2], 4, 0, &device);
    /// let validation = train.batches();
    /// let config = TrainConfig {
    ///     epochs: 2,
    ///     lr: LrSchedule { base: 0.1, schedule: Schedule::Constant, warmup_epochs: 0 },
    ///     momentum: 0.9,
    ///     weight_decay: 5e-4,
    ///     regime: Regime::Standard,
    ///     eval_attack: None,
    ///     ra_from_epoch: 0,
    ///     overfit_guard: None,
    ///     seed: 0,
    ///     snapshots: false,
    ///     validate_every: 1,
    /// };
    /// let mut trainer = Trainer::new(config, None)?;
    /// trainer.progress = false;
    /// let outcome = trainer.fit(Net { fc: LinearConfig::new(4, 2).init(&device) },
    ///     &mut train, &validation, 2)?;
    /// assert_eq!(outcome.history.len(), 2);
    /// # Ok::<(), dwlth_adv::AdvError>(())
    /// ```
    pub fn fit<M: Classifier, V: EvalSet + ?Sized>(
        &self,
        model: M,
        train: &mut dyn EpochBatches,
        validation: &V,
        classes: usize,
    ) -> Result<TrainOutcome<M>> {
        self.config.validate()?;
        if let Some(first) = self.replicas.first() {
            if !model.devices().contains(first) {
                return Err(AdvError::InvalidInput(format!(
                    "the first of the replica devices ({first:?}) must be the model's device ({:?})",
                    model.devices()
                )));
            }
        }
        if !model.devices().iter().any(|d| d.is_autodiff()) {
            return Err(AdvError::InvalidInput(
                "training needs the model on an autodiff device (`Device::flex().autodiff()`)"
                    .into(),
            ));
        }
        // Parameter ids from the parameters' paths: the optimiser's state is keyed by them, so a
        // run's checkpoints are the same bits in every process (Burn draws them at random).
        let stable: std::collections::BTreeMap<String, u64> = param_ids(&model)
            .into_keys()
            .map(|path| {
                let id = dwlth_store::fnv1a(path.bytes());
                (path, id)
            })
            .collect();
        let mut model = restore_param_ids(model, &stable);
        let mut optim = self.optimizer();
        let mut state = CheckpointState {
            epochs_done: 0,
            history: Vec::new(),
            best_sa: None,
            best_ra: None,
            best_guard: None,
            stopped: None,
        };
        let mut best_sa_model = None;
        let mut best_ra_model = None;
        let checkpoints = self.open_checkpoints(&model)?;
        if let Some((_, folder)) = checkpoints
            .as_ref()
            .map(|c| c.latest())
            .transpose()?
            .flatten()
        {
            // Resume from the latest whole checkpoint: weights, optimiser (keyed by the parameter
            // ids, which follow from the paths), the best weights so far.
            let state_path = folder.join("state.json");
            let bytes = std::fs::read(&state_path).map_err(|e| AdvError::Io {
                path: state_path.clone(),
                source: e,
            })?;
            let saved = CheckpointState::parse(&bytes, &state_path)?;
            load_module(&mut model, &folder.join("model.safetensors"))?;
            let opt_path = folder.join("optimizer.bpk");
            if opt_path.exists() {
                let bytes = std::fs::read(&opt_path).map_err(|e| AdvError::Io {
                    path: opt_path.clone(),
                    source: e,
                })?;
                let record = parse_optimizer(bytes, &opt_path, &param_shapes(&model))?;
                optim = optim.load_record(record);
            }
            for (best, name, slot) in [
                (saved.best_sa, BEST_SA, &mut best_sa_model),
                (saved.best_ra, BEST_RA, &mut best_ra_model),
            ] {
                if let Some(b) = best {
                    let mut copy = independent_copy(&model);
                    load_module(&mut copy, &folder.join(name))?;
                    *slot = Some((b, copy));
                }
            }
            state = saved;
            // A run killed right after publishing may have left the copy for people behind.
            if let Some(checkpoints) = &checkpoints {
                write_metrics(checkpoints, &state)?;
            }
        }
        let steps = train.steps_per_epoch().max(1);
        let epochs = self.config.epochs;
        let seed_device = model.devices()[0].clone();
        while state.epochs_done < epochs && state.stopped.is_none() {
            let epoch = state.epochs_done;
            dwlth_models::random::seed(&seed_device, self.config.seed.wrapping_add(epoch as u64));
            let start = Instant::now();
            let previous = self
                .config
                .overfit_guard
                .as_ref()
                .map(|_| independent_copy(&model));
            let bar = self.bar(steps, epoch);
            // Whether this epoch's weights became the best-SA / best-RA ones.
            let mut improved = (false, false);
            let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0usize, 0usize, 0.0);
            for (step, batch) in train.epoch(epoch).enumerate() {
                let (images, labels) = batch?;
                lr = self.config.lr.lr(epoch, step, steps, epochs);
                let Step { grads, chunks } =
                    parallel::step(&model, &self.replicas, &self.config.regime, images, labels)?;
                let (loss_value, n, right) = Step::totals(chunks);
                if !loss_value.is_finite() {
                    return Err(AdvError::InvalidInput(format!(
                        "the training loss became {loss_value} at epoch {epoch}, step {step}; lower the learning rate"
                    )));
                }
                let grads = match &self.param_masks {
                    Some(masks) => masks.mask_gradients(&model, grads)?,
                    None => grads,
                };
                model = optim.step(lr, model, grads);
                loss_sum += loss_value * n as f64;
                correct += right;
                seen += n;
                bar.inc(1);
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}%",
                    loss_sum / seen.max(1) as f64,
                    100.0 * correct as f64 / seen.max(1) as f64
                ));
            }
            bar.finish_and_clear();
            let mut record = EpochRecord {
                epoch,
                lr,
                train_loss: loss_sum / seen.max(1) as f64,
                train_acc: correct as f64 / seen.max(1) as f64,
                val_sa: None,
                val_ra: None,
                guard_ra: None,
                seconds: 0.0,
            };
            let every = self.config.validate_every.max(1);
            let validates = (epoch + 1) % every == 0 || epoch + 1 == self.config.epochs;
            if validates && !validation.is_empty() {
                let view = AttackMode::Eval.view(&model);
                let attack = self
                    .config
                    .eval_attack
                    .as_ref()
                    .filter(|_| epoch >= self.config.ra_from_epoch);
                let report = evaluate(&view, validation.batches(), attack, None, classes)?;
                record.val_sa = Some(report.sa);
                record.val_ra = report.ra;
                if state.best_sa.is_none_or(|b| report.sa > b.value) {
                    state.best_sa = Some(Best {
                        epoch,
                        value: report.sa,
                    });
                    best_sa_model = Some((state.best_sa.expect("set"), independent_copy(&model)));
                    improved.0 = true;
                }
                if let Some(ra) = report.ra {
                    if state.best_ra.is_none_or(|b| ra > b.value) {
                        state.best_ra = Some(Best { epoch, value: ra });
                        best_ra_model =
                            Some((state.best_ra.expect("set"), independent_copy(&model)));
                        improved.1 = true;
                    }
                }
            }
            // The guard probes after every epoch, validated or not: it restores the previous
            // epoch's weights, which must be the last good ones.
            if !validation.is_empty() {
                let first = match &self.config.overfit_guard {
                    Some(_) => validation.batches().next().transpose()?,
                    None => None,
                };
                if let (Some(guard), Some(first)) = (&self.config.overfit_guard, first) {
                    let view = AttackMode::Eval.view(&model);
                    let probe = evaluate(&view, [first], Some(&guard.attack), None, classes)?
                        .ra
                        .unwrap_or(0.0);
                    record.guard_ra = Some(probe);
                    let best = state.best_guard.unwrap_or(probe).max(probe);
                    state.best_guard = Some(best);
                    if guard.tripped(best, probe) {
                        state.stopped = Some(format!(
                            "catastrophic overfitting at epoch {epoch}: held-out robust accuracy fell from {best:.3} to {probe:.3}; kept the weights of the previous epoch"
                        ));
                        if let Some(prev) = previous {
                            model = prev;
                        }
                    }
                }
            }
            record.seconds = start.elapsed().as_secs_f64();
            state.history.push(record);
            state.epochs_done += 1;
            if let Some(checkpoints) = &checkpoints {
                if self.config.snapshots {
                    // Before the checkpoint: a redone epoch rewrites the same bits.
                    let name = format!("epoch_{:03}.safetensors", state.epochs_done);
                    save_module(&model, &checkpoints.dir().join(name))?;
                }
                let bests = Bests {
                    sa: (improved.0, best_sa_model.as_ref().map(|(_, m)| m)),
                    ra: (improved.1, best_ra_model.as_ref().map(|(_, m)| m)),
                };
                self.checkpoint(checkpoints, &model, &optim, &state, bests)?;
            }
        }
        Ok(TrainOutcome {
            model,
            best_sa: best_sa_model,
            best_ra: best_ra_model,
            history: state.history,
            stopped: state.stopped,
        })
    }

    fn bar(&self, steps: usize, epoch: usize) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix:>3} [{bar:30}] {pos}/{len} {elapsed_precise}<{eta_precise} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        match &self.bars {
            Some(group) => group.add(bar),
            None => bar,
        }
    }

    /// Publishes the epoch's checkpoint as one folder; best weights that did not change this
    /// epoch are linked from the previous checkpoint instead of written again.
    fn checkpoint<M: Classifier>(
        &self,
        checkpoints: &Checkpoints,
        model: &M,
        optim: &ModuleOptimizer,
        state: &CheckpointState,
        bests: Bests<'_, M>,
    ) -> Result<()> {
        let previous = checkpoints.latest()?.map(|(_, folder)| folder);
        let step = state.epochs_done as u64;
        checkpoints.publish(step, |folder| -> Result<()> {
            save_module(model, &folder.join("model.safetensors"))?;
            let opt_path = folder.join("optimizer.bpk");
            let bytes = optimizer_bytes(optim).map_err(|e| io_err(&opt_path, e))?;
            write_file(&opt_path, &bytes)?;
            for ((fresh, best), name) in [(bests.sa, BEST_SA), (bests.ra, BEST_RA)] {
                match (best, &previous) {
                    (Some(m), _) if fresh => save_module(m, &folder.join(name))?,
                    (Some(_), Some(prev)) => link_or_copy(&prev.join(name), &folder.join(name))?,
                    (Some(m), None) => save_module(m, &folder.join(name))?,
                    (None, _) => {}
                }
            }
            let json = serde_json::to_vec_pretty(state).map_err(|e| io_err(folder, e))?;
            write_file(&folder.join("state.json"), &json)?;
            Ok(())
        })?;
        write_metrics(checkpoints, state)
    }
}

/// For people: every epoch's record, one JSON line each, beside the checkpoints (derived from
/// the latest checkpoint, never read back).
fn write_metrics(checkpoints: &Checkpoints, state: &CheckpointState) -> Result<()> {
    let lines: String = state
        .history
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
        .collect();
    atomic_write(&checkpoints.dir().join("metrics.jsonl"), lines.as_bytes())?;
    Ok(())
}

/// The optimiser's state as a burnpack file with its tensors in name order (Burn writes them in
/// hash-map order, which differs from process to process).
fn optimizer_bytes(optim: &ModuleOptimizer) -> std::result::Result<Vec<u8>, String> {
    let bytes = optim.to_record().into_bytes().map_err(|e| e.to_string())?;
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| e.to_string())?;
    let scalars = reader.scalars().clone();
    let metadata = reader.metadata().clone();
    let mut tensors = reader.into_tensors().map_err(|e| e.to_string())?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (key, value) in &scalars {
        writer = writer.with_scalar(key, *value);
    }
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    let bytes = writer.into_bytes().map_err(|e| e.to_string())?;
    Ok(bytes.to_vec())
}

/// The best-SA and best-RA weights at a checkpoint, each with whether this epoch made them.
struct Bests<'a, M> {
    sa: (bool, Option<&'a M>),
    ra: (bool, Option<&'a M>),
}

const BEST_SA: &str = "best_sa.safetensors";
const BEST_RA: &str = "best_ra.safetensors";
