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
//! 4. with a run directory: `last.safetensors`, the optimiser state, `best_sa.safetensors`,
//!    `best_ra.safetensors`, `metrics.jsonl` and `state.json` are written atomically, so a
//!    killed run resumes at the next epoch with its optimiser state.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord, SgdConfig};
use burn::tensor::Bytes;
use dwlth_models::io::{atomic_write, load_module, param_ids, restore_param_ids, save_module};
use dwlth_models::mode::independent_copy;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use super::data::{EpochBatches, EvalSet};
use crate::attack::AttackMode;
use crate::classifier::Classifier;
use crate::error::{AdvError, Result};
use crate::eval::evaluate;

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy on the inputs the regime produced.
    pub train_acc: f64,
    /// Validation SA.
    pub val_sa: Option<f64>,
    /// Validation RA.
    pub val_ra: Option<f64>,
    /// Robust accuracy of the overfitting guard's probe.
    pub guard_ra: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The best value of a metric and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The epoch.
    pub epoch: usize,
    /// The value.
    pub value: f64,
}

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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    config: TrainConfig,
    epochs_done: usize,
    history: Vec<EpochRecord>,
    best_sa: Option<Best>,
    best_ra: Option<Best>,
    best_guard: Option<f64>,
    stopped: Option<String>,
    param_ids: std::collections::BTreeMap<String, u64>,
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
        })
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

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(name))
    }

    fn load_state(&self) -> Result<Option<RunState>> {
        let Some(path) = self.path("state.json") else {
            return Ok(None);
        };
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| AdvError::Io {
            path: path.clone(),
            source: e,
        })?;
        let state: RunState = serde_json::from_str(&text).map_err(|e| io_err(&path, e))?;
        // A run may be extended with more epochs; any other change makes it another run.
        let same = TrainConfig {
            epochs: self.config.epochs,
            ..state.config.clone()
        } == self.config;
        if !same {
            return Err(AdvError::InvalidInput(format!(
                "`{}` holds a run with other settings; use another directory or delete it",
                path.display()
            )));
        }
        Ok(Some(state))
    }

    /// Trains `model` on `train`, validating on `validation` (an eval-mode view is taken each
    /// epoch), for `classes` classes. `model` must live on an autodiff device.
    pub fn fit<M: Classifier, V: EvalSet + ?Sized>(
        &self,
        model: M,
        train: &mut dyn EpochBatches,
        validation: &V,
        classes: usize,
    ) -> Result<TrainOutcome<M>> {
        self.config.validate()?;
        if !model.devices().iter().any(|d| d.is_autodiff()) {
            return Err(AdvError::InvalidInput(
                "training needs the model on an autodiff device (`Device::flex().autodiff()`)"
                    .into(),
            ));
        }
        let mut model = model;
        let mut optim = self.optimizer();
        let mut state = RunState {
            config: self.config.clone(),
            epochs_done: 0,
            history: Vec::new(),
            best_sa: None,
            best_ra: None,
            best_guard: None,
            stopped: None,
            param_ids: param_ids(&model),
        };
        let mut best_sa_model = None;
        let mut best_ra_model = None;
        if let Some(saved) = self.load_state()? {
            // Resume: weights, parameter ids (the optimiser state is keyed by them), optimiser.
            let last = self.path("last.safetensors").expect("dir is set");
            model = restore_param_ids(model, &saved.param_ids);
            load_module(&mut model, &last)?;
            let opt_path = self.path("optimizer.bpk").expect("dir is set");
            if opt_path.exists() {
                let bytes = std::fs::read(&opt_path).map_err(|e| AdvError::Io {
                    path: opt_path.clone(),
                    source: e,
                })?;
                let record = OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes))
                    .map_err(|e| io_err(&opt_path, e))?;
                optim = optim.load_record(record);
            }
            for (best, name, slot) in [
                (saved.best_sa, "best_sa.safetensors", &mut best_sa_model),
                (saved.best_ra, "best_ra.safetensors", &mut best_ra_model),
            ] {
                if let (Some(b), Some(path)) = (best, self.path(name)) {
                    let mut copy = independent_copy(&model);
                    load_module(&mut copy, &path)?;
                    *slot = Some((b, copy));
                }
            }
            state = RunState {
                config: self.config.clone(),
                ..saved
            };
        }
        let ce = CrossEntropyLossConfig::new().init(&model.devices()[0]);
        let steps = train.steps_per_epoch().max(1);
        let epochs = self.config.epochs;
        let seed_device = model.devices()[0].clone();
        while state.epochs_done < epochs && state.stopped.is_none() {
            let epoch = state.epochs_done;
            seed_device.seed(self.config.seed.wrapping_add(epoch as u64));
            let start = Instant::now();
            let previous = self
                .config
                .overfit_guard
                .as_ref()
                .map(|_| independent_copy(&model));
            let bar = self.bar(steps, epoch);
            let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0usize, 0usize, 0.0);
            for (step, (images, labels)) in train.epoch(epoch).enumerate() {
                lr = self.config.lr.lr(epoch, step, steps, epochs);
                let inputs = self.config.regime.inputs(&model, images, labels.clone())?;
                let logits = model.logits(inputs.autodiff());
                let [n, _] = logits.dims();
                let predicted = logits.clone().argmax(1).reshape([n]);
                let loss = ce.forward(logits, labels.clone());
                let loss_value = loss.clone().into_scalar::<f32>() as f64;
                if !loss_value.is_finite() {
                    return Err(AdvError::InvalidInput(format!(
                        "the training loss became {loss_value} at epoch {epoch}, step {step}; lower the learning rate"
                    )));
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                loss_sum += loss_value * n as f64;
                correct += predicted.equal(labels).int().sum().into_scalar::<i64>() as usize;
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
            if !validation.is_empty() {
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
                    if let Some(p) = self.path("best_sa.safetensors") {
                        save_module(&model, &p)?;
                    }
                }
                if let Some(ra) = report.ra {
                    if state.best_ra.is_none_or(|b| ra > b.value) {
                        state.best_ra = Some(Best { epoch, value: ra });
                        best_ra_model =
                            Some((state.best_ra.expect("set"), independent_copy(&model)));
                        if let Some(p) = self.path("best_ra.safetensors") {
                            save_module(&model, &p)?;
                        }
                    }
                }
                let first = match &self.config.overfit_guard {
                    Some(_) => validation.batches().next(),
                    None => None,
                };
                if let (Some(guard), Some(first)) = (&self.config.overfit_guard, first) {
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
            if let (true, Some(dir)) = (self.config.snapshots, &self.dir) {
                let name = format!("epoch_{:03}.safetensors", state.epochs_done);
                save_module(&model, &dir.join(name))?;
            }
            self.checkpoint(&model, &optim, &mut state)?;
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

    fn checkpoint<M: Classifier>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        state: &mut RunState,
    ) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        state.param_ids = param_ids(model);
        save_module(model, &dir.join("last.safetensors"))?;
        let opt_path = dir.join("optimizer.bpk");
        let bytes = optim
            .to_record()
            .into_bytes()
            .map_err(|e| io_err(&opt_path, e))?;
        atomic_write(&opt_path, &bytes)?;
        let lines: String = state
            .history
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
            .collect();
        atomic_write(&dir.join("metrics.jsonl"), lines.as_bytes())?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| io_err(dir, e))?;
        // Written last: the epoch counts as done only once everything else is on disk.
        atomic_write(&dir.join("state.json"), &json)?;
        Ok(())
    }
}
