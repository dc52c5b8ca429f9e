//! The transfer stage: fine-tuning one (θ_p, ticket) on the target task and measuring it — SA,
//! RA, the transfer attack and out-of-distribution detection.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use burn::tensor::Device;
use dwlth_adv::{evaluate, AttackMode, Batch, EvalSet, Regime, TrainOutcome, Trainer};
use dwlth_models::io::{load_resnet, save_resnet};
use dwlth_models::mode::independent_copy;
use dwlth_models::{NormalizeConfig, ResNet};
use dwlth_prune::{apply_masks, MaskSet};
use dwlth_store::{Stage, Store};
use indicatif::MultiProgress;

use super::config::ExperimentConfig;
use super::data::{fraction, training, HostBatches, Splits};
use super::records::{fnv, say, Planned, Theta};
use super::results::RunResult;
use crate::analysis::{max_softmax_probability, roc_auc};
use crate::error::{DwlthError, Result};

/// How `transfer.min_steps` enters the keys of the stages trained through `fine_tune`: the
/// step budget and that stretched runs validate as often as unstretched ones
/// (`TrainConfig::validate_every`). `None` when unset.
pub(super) fn min_steps_key(config: &ExperimentConfig) -> Option<serde_json::Value> {
    config
        .transfer
        .min_steps
        .map(|steps| serde_json::json!({ "steps": steps, "validations": "as many as unstretched" }))
}

/// Seed of the transfer attack's source model: no transfer run uses it.
const TRANSFER_SOURCE_SEED: u64 = 1_000_003;

/// What every transfer run of an experiment shares.
pub(super) struct Downstream<'a> {
    pub config: &'a ExperimentConfig,
    pub target: &'a Splits,
    /// Normalisation statistics of the target's training set.
    pub stats: NormalizeConfig,
    pub validation: Box<dyn EvalSet>,
    pub test: Box<dyn EvalSet>,
    pub classes: usize,
    pub device: &'a Device,
    /// Devices each training batch is split across (empty: `device` alone).
    pub replicas: &'a [Device],
    /// The transfer attack's adversarial test set, when the experiment measures it.
    pub crafted: Option<Box<dyn EvalSet>>,
    /// Out-of-distribution images, when the experiment measures detection.
    pub ood: Option<Box<dyn EvalSet>>,
}

/// One run's own inputs.
pub(super) struct Run<'a> {
    pub p: &'a Planned,
    pub theta: &'a ResNet,
    pub masks: &'a MaskSet,
    pub regime: &'a Regime,
}

impl Downstream<'_> {
    /// Fine-tunes θ_p with the run's masks on the target task; returns the training outcome.
    fn fine_tune(
        &self,
        run: &Run,
        dir: &Path,
        bars: Option<&MultiProgress>,
    ) -> Result<TrainOutcome<ResNet>> {
        let (config, p, device) = (self.config, run.p, self.device);
        dwlth_models::random::seed(
            device,
            p.seed
                .wrapping_mul(0x9E37_79B9)
                .wrapping_add(fnv(p.pretrain.as_bytes())),
        );
        let model = independent_copy(run.theta).with_head(self.classes, device)?;
        let mut model = apply_masks(model, run.masks)?;
        model.normalize = model.normalize.with_config(&self.stats)?;
        if config.transfer.linear {
            model = model.freeze_backbone();
        }
        let mut train_config = config.transfer.train.clone();
        train_config.regime = run.regime.clone();
        train_config.seed = p.seed;
        if p.regime != "at" {
            // Standard-training runs report SA only (as the papers); no robust validation.
            train_config.eval_attack = None;
        }
        let subset = fraction(
            &self.target.train,
            p.fraction,
            config.transfer.stratified,
            p.seed,
        )?;
        let mut data = training(
            &subset,
            &config.target,
            config.transfer.batch_size,
            p.seed,
            device,
        )?;
        if let Some(min_steps) = config.transfer.min_steps {
            // A data-limited run trains as many steps as the budget asks, not a handful.
            train_config = train_config.stretched_to_steps(data.steps_per_epoch(), min_steps);
        }
        let mut trainer = Trainer::new(train_config, Some(dir.to_path_buf()))?
            .with_replicas(self.replicas.to_vec());
        trainer.progress = bars.is_some();
        trainer.bars = bars.cloned();
        Ok(trainer.fit(model, data.as_mut(), self.validation.as_ref(), self.classes)?)
    }

    /// Which pre-training the transfer attack's source model starts from: θ_AT if the
    /// experiment has one, else the first.
    fn source_pretrain(&self, thetas: &BTreeMap<String, Theta>) -> String {
        if thetas.contains_key("at") {
            "at".to_string()
        } else {
            self.config.pretrain[0].name.clone()
        }
    }

    /// The stage of the transfer attack's source model: keyed by the θ_p it starts from, the
    /// target data and everything its training depends on.
    pub fn transfer_source_stage(
        &self,
        store: &Store,
        thetas: &BTreeMap<String, Theta>,
        target: &serde_json::Value,
    ) -> Result<Stage> {
        let config = self.config;
        let from = self.source_pretrain(thetas);
        let regime = self.at_regime()?;
        let mut settings = serde_json::json!({
            "model": config.model, "from": from, "train": config.transfer.train,
            "regime": regime, "linear": config.transfer.linear,
            "batch_size": config.transfer.batch_size, "target": target,
            "seed": TRANSFER_SOURCE_SEED,
        });
        // Trained through `fine_tune`, so stretched like the runs: keyed like them (only when
        // set, so experiments without it keep their key).
        if let (Some(stretch), Some(map)) = (min_steps_key(config), settings.as_object_mut()) {
            map.insert("min_steps".into(), stretch);
        }
        Ok(store.stage("transfer_source", &settings, &[&thetas[&from].key])?)
    }

    fn at_regime(&self) -> Result<&Regime> {
        self.config
            .transfer
            .regimes
            .iter()
            .find(|(n, _)| n == "at")
            .map(|(_, r)| r)
            .ok_or_else(|| {
                DwlthError::InvalidArgument("the transfer attack needs an `at` regime".into())
            })
    }

    /// The transfer attack's test set (paper A Table A2): the test images attacked with the
    /// test attack on a separately trained robust model — the dense θ_AT (or the first
    /// pre-training) adversarially fine-tuned on all target data with a seed of its own. The
    /// source model is a stage of its own, so reruns and other shards reuse it.
    pub fn transfer_attack_set(
        &self,
        stage: &Stage,
        thetas: &BTreeMap<String, Theta>,
        verbose: bool,
    ) -> Result<Box<dyn EvalSet>> {
        let (config, device) = (self.config, self.device);
        let pretrain = self.source_pretrain(thetas);
        let compute = |work: &Path| -> Result<ResNet> {
            say(
                verbose,
                format!(
                    "training the transfer attack's source: dense θ_{} with AT",
                    pretrain.to_uppercase()
                ),
            );
            let p = Planned {
                pretrain: pretrain.clone(),
                sparsity: 0.0,
                ticket: None,
                fraction: 1.0,
                regime: "at".into(),
                seed: TRANSFER_SOURCE_SEED,
            };
            let run = Run {
                p: &p,
                theta: &thetas[&pretrain].model,
                masks: &MaskSet::new(),
                regime: self.at_regime()?,
            };
            let bars = verbose.then(MultiProgress::new);
            let outcome = self.fine_tune(&run, &work.join("train"), bars.as_ref())?;
            Ok(outcome.best_ra.map_or(outcome.model, |(_, m)| m))
        };
        let model = stage.load_or_compute(
            |dir| Ok(load_resnet(dir.join("model.safetensors"), None, device)?.0),
            compute,
            |model, dir| Ok(save_resnet(model, dir.join("model.safetensors"))?),
        )?;
        dwlth_models::random::seed(device, TRANSFER_SOURCE_SEED);
        let view = AttackMode::Eval.view(&model);
        let mut crafted = self.test.batches().map(|batch| {
            let (x, y) = batch?;
            let xa = config.transfer.test_attack.perturb(&view, x, y.clone())?;
            Ok::<Batch, DwlthError>((xa, y))
        });
        // Upsampled images go to host memory batch by batch (10,000 at 224 pixels take 6 GB,
        // too much for a GPU); native-size ones stay on the device.
        Ok(match config.target.resize {
            Some(_) => Box::new(HostBatches::try_of(&mut crafted, device)?),
            None => Box::new(crafted.collect::<Result<Vec<Batch>>>()?),
        })
    }

    /// Fine-tunes and measures one run.
    pub fn transfer(
        &self,
        run: &Run,
        dir: &Path,
        bars: Option<&MultiProgress>,
    ) -> Result<RunResult> {
        let started = Instant::now();
        let (p, classes) = (run.p, self.classes);
        let outcome = self.fine_tune(run, dir, bars)?;
        // The test attack's random starts from the run's own seed: a run resumed after its
        // last epoch measures the same adversarial images as an uninterrupted one.
        dwlth_models::random::seed(
            self.device,
            p.seed.wrapping_mul(0x9E37_79B9).wrapping_add(0x7E57),
        );
        let attack = (p.regime == "at").then_some(&self.config.transfer.test_attack);
        let (sa, ra) = outcome.test(self.test.as_ref(), attack, classes)?;
        // The checkpoint RA is reported for (AT runs), or SA (ST runs), faces the transfer
        // attack.
        let transfer_ra = match &self.crafted {
            Some(crafted) => {
                let best = if p.regime == "at" {
                    outcome.best_ra.as_ref()
                } else {
                    outcome.best_sa.as_ref()
                };
                let model = best.map_or(&outcome.model, |(_, m)| m);
                let view = AttackMode::Eval.view(model);
                Some(evaluate(&view, crafted.batches(), None, None, classes)?.sa)
            }
            None => None,
        };
        let ood_auroc = match &self.ood {
            Some(ood) => {
                let model = outcome.best_sa.as_ref().map_or(&outcome.model, |(_, m)| m);
                let view = AttackMode::Eval.view(model);
                let msp = |set: &dyn EvalSet| -> Result<Vec<f32>> {
                    let mut out = Vec::new();
                    for batch in set.batches() {
                        out.extend(max_softmax_probability(view.forward(batch?.0)));
                    }
                    Ok(out)
                };
                roc_auc(&msp(self.test.as_ref())?, &msp(ood.as_ref())?)
            }
            None => None,
        };
        Ok(RunResult {
            pretrain: p.pretrain.clone(),
            dataset: self.target.name.clone(),
            fraction: p.fraction,
            regime: p.regime.clone(),
            sparsity: p.sparsity,
            ticket: p.ticket.clone(),
            seed: p.seed,
            sa,
            ra,
            transfer_ra,
            ood_auroc,
            seconds: started.elapsed().as_secs_f64(),
            val_sa: outcome.history.iter().filter_map(|e| e.val_sa).collect(),
        })
    }
}
