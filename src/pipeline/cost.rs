//! What an experiment costs on a device: from the measured speed of its operations (images per
//! second of a training step per regime, of clean evaluation and of an attack), the seconds of
//! each stage and run, runs per hour, and the whole experiment's hours.
//!
//! The model counts the images every stage pushes through the network, as the pipeline runs
//! it: each epoch trains on the run's share of the training set and validates (SA, and RA under
//! the evaluation attack from `ra_from_epoch` on, for adversarial runs only); each run ends with
//! SA on the test set and, for adversarial runs, RA under the test attack. An attack of `k`
//! steps is taken to cost one clean forward pass plus `k` times the per-step cost measured on
//! the bench's attack (its cost is linear in the steps). Data loading, checkpoints and reports
//! are left out: they are orders of magnitude cheaper here (docs/data.md).
//! `cargo run --release --example bench -- --preset quick|paper --device …` measures the speeds
//! and prints this estimate.

use std::collections::BTreeMap;

use dwlth_adv::{Attack, Regime};
use serde::Serialize;

use super::config::{DataSpec, ExperimentConfig};
use super::tickets::TicketSpec;
use crate::error::{DwlthError, Result};

/// Measured speeds on one device, in images per second, for the experiment's model at its
/// input size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Speeds {
    /// A training step per regime, by [`Speeds::key`] (`st`, `at-pgd10`, `fat`, `rs`).
    pub train: BTreeMap<String, f64>,
    /// Clean evaluation (evaluation-mode forward pass).
    pub clean: f64,
    /// Evaluation under an attack of `attack_steps` steps (examples crafted, then classified).
    pub attack: f64,
    /// Steps of the measured attack.
    pub attack_steps: usize,
}

impl Speeds {
    /// What a regime's training speed is filed under: its short name, with the attack's steps
    /// for adversarial training (their number sets the cost).
    pub fn key(regime: &Regime) -> String {
        match regime {
            Regime::Adversarial { attack, .. } => format!("at-pgd{}", attack.steps),
            other => other.short_name().to_string(),
        }
    }

    /// Every distinct regime whose training speed `config` needs.
    pub fn regimes(config: &ExperimentConfig) -> Vec<Regime> {
        let mut all: Vec<Regime> = config
            .pretrain
            .iter()
            .filter(|p| p.weights.is_none())
            .map(|p| p.regime.clone())
            .chain(config.transfer.regimes.iter().map(|(_, r)| r.clone()))
            .collect();
        for method in &config.tickets {
            match method {
                TicketSpec::Imp { retrain, .. } => all.push(retrain.regime.clone()),
                TicketSpec::Lmp { .. } => all.push(Regime::Standard),
                _ => {}
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        all.retain(|r| seen.insert(Self::key(r)));
        all
    }

    fn train(&self, regime: &Regime) -> Result<f64> {
        let key = Self::key(regime);
        self.train
            .get(&key)
            .copied()
            .filter(|r| *r > 0.0)
            .ok_or_else(|| {
                DwlthError::InvalidArgument(format!(
                    "no measured training speed for regime `{key}`"
                ))
            })
    }

    /// Seconds per image of evaluation under `attack`.
    fn attacked(&self, attack: &Attack) -> f64 {
        let clean = 1.0 / self.clean;
        let per_step = (1.0 / self.attack - clean).max(0.0) / self.attack_steps.max(1) as f64;
        clean + per_step * attack.steps as f64
    }
}

/// Sizes of the splits a data table makes: (training, validation, test) images.
pub fn split_sizes(spec: &DataSpec) -> Result<(usize, usize, usize)> {
    let kind: dwlth_data::DatasetKind = spec.dataset.parse()?;
    let (train, test) = kind.published_sizes().ok_or_else(|| {
        DwlthError::InvalidArgument(format!(
            "`{}` has no published size: give `train_limit` and `test_limit`",
            spec.dataset
        ))
    })?;
    let (train, test) = match spec.train_share {
        Some(share) => {
            let all = train + test;
            let t = (all as f64 * share).round() as usize;
            (t, all - t)
        }
        None => (train, test),
    };
    let fit = train.saturating_sub(spec.validation);
    Ok((
        spec.train_limit.map_or(fit, |l| l.min(fit)),
        spec.validation.min(train),
        spec.test_limit.map_or(test, |l| l.min(test)),
    ))
}

/// Seconds of one training run: `epochs` of `train` images under `regime`, validated on
/// `validation` images each epoch (RA under `eval_attack` from `ra_from_epoch` on).
fn training_secs(
    speeds: &Speeds,
    train_config: &dwlth_adv::TrainConfig,
    regime: &Regime,
    (train, validation): (usize, usize),
) -> Result<f64> {
    let epochs = train_config.epochs as f64;
    let mut secs = epochs * train as f64 / speeds.train(regime)?;
    // Validated epochs: every `validate_every`-th and the last.
    let every = train_config.validate_every.max(1);
    let validated = |from: usize| {
        (from..train_config.epochs)
            .filter(|e| (e + 1) % every == 0 || e + 1 == train_config.epochs)
            .count() as f64
    };
    secs += validated(0) * validation as f64 / speeds.clean;
    if let Some(attack) = &train_config.eval_attack {
        let robust_epochs = validated(train_config.ra_from_epoch);
        secs += robust_epochs * validation as f64 * speeds.attacked(attack);
    }
    Ok(secs)
}

/// The cost of one kind of transfer run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunCost {
    /// Downstream regime (`st`, `at`).
    pub regime: String,
    /// Share of the target's training set.
    pub fraction: f64,
    /// Seconds of one run.
    pub seconds: f64,
    /// Runs of this kind a device finishes per hour.
    pub runs_per_hour: f64,
    /// Runs of this kind in the experiment.
    pub count: usize,
}

/// An experiment's cost on one device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CostEstimate {
    /// Pre-training θ_p here (imported weights cost nothing), seconds.
    pub pretrain_seconds: f64,
    /// The ticket search (IMP's re-training rounds; one-shot pruning costs nothing), seconds.
    pub tickets_seconds: f64,
    /// Every kind of transfer run.
    pub runs: Vec<RunCost>,
    /// All transfer runs, seconds.
    pub transfer_seconds: f64,
    /// The whole experiment on one device, hours.
    pub total_hours: f64,
}

/// The cost of `config` at `speeds` (see the module documentation).
pub fn estimate(config: &ExperimentConfig, speeds: &Speeds) -> Result<CostEstimate> {
    let (source_train, source_val, _) = split_sizes(&config.source)?;
    let (target_train, target_val, target_test) = split_sizes(&config.target)?;
    let mut pretrain_seconds = 0.0;
    for p in config.pretrain.iter().filter(|p| p.weights.is_none()) {
        pretrain_seconds += training_secs(
            speeds,
            &config.pretrain_train,
            &p.regime,
            (source_train, source_val),
        )?;
    }
    let (mut levels, mut tickets_seconds) = (0, 0.0);
    for method in &config.tickets {
        let (n, seconds) = match method {
            TicketSpec::Omp { sparsities }
            | TicketSpec::Random { sparsities, .. }
            | TicketSpec::Structured { sparsities, .. } => (sparsities.len(), 0.0),
            TicketSpec::Lmp {
                sparsities, epochs, ..
            } => {
                // Score training: a standard step's cost per image and epoch.
                let per = *epochs as f64 * source_train as f64 / speeds.train(&Regime::Standard)?;
                (sparsities.len(), per * sparsities.len() as f64)
            }
            TicketSpec::Files { files } => (files.values().map(Vec::len).max().unwrap_or(0), 0.0),
            TicketSpec::Imp {
                rounds,
                sparsities,
                retrain,
                downstream,
            } => {
                let data = if *downstream {
                    (target_train, target_val)
                } else {
                    (source_train, source_val)
                };
                let round = training_secs(speeds, retrain, &retrain.regime, data)?;
                let rounds = TicketSpec::imp_rounds(*rounds, sparsities);
                (rounds, round * rounds as f64)
            }
        };
        levels += n;
        tickets_seconds += seconds;
    }
    let tickets_seconds = tickets_seconds * config.pretrain.len() as f64;
    // Every θ_p is transferred dense (once, whatever the methods) and at each method's levels
    // (a ticket two methods share is transferred once, but counted here for each).
    let per_kind = config.pretrain.len() * (levels + 1) * config.transfer.seeds.len();
    let mut runs = Vec::new();
    let mut transfer_seconds = 0.0;
    for (name, regime) in &config.transfer.regimes {
        let mut train_config = config.transfer.train.clone();
        if name != "at" {
            train_config.eval_attack = None;
        }
        for &fraction in &config.transfer.fractions {
            let train = ((target_train as f64 * fraction).round() as usize).max(1);
            let run_config = match config.transfer.min_steps {
                Some(min_steps) => train_config.stretched_to_steps(
                    train.div_ceil(config.transfer.batch_size.max(1)),
                    min_steps,
                ),
                None => train_config.clone(),
            };
            let mut seconds = training_secs(speeds, &run_config, regime, (train, target_val))?;
            seconds += target_test as f64 / speeds.clean;
            if name == "at" {
                seconds += target_test as f64 * speeds.attacked(&config.transfer.test_attack);
            }
            transfer_seconds += seconds * per_kind as f64;
            runs.push(RunCost {
                regime: name.clone(),
                fraction,
                seconds,
                runs_per_hour: 3600.0 / seconds,
                count: per_kind,
            });
        }
    }
    Ok(CostEstimate {
        pretrain_seconds,
        tickets_seconds,
        runs,
        transfer_seconds,
        total_hours: (pretrain_seconds + tickets_seconds + transfer_seconds) / 3600.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Cifar10Preset;

    #[test]
    fn costs_count_the_images_each_stage_pushes_through() {
        let config = ExperimentConfig::cifar10(Cifar10Preset::Paper, "a".into(), "b".into(), &[]);
        let mut speeds = Speeds {
            train: [("st".to_string(), 100.0), ("at-pgd10".to_string(), 10.0)].into(),
            clean: 1000.0,
            attack: 1000.0 / 21.0,
            attack_steps: 20,
        };
        let keys: Vec<String> = Speeds::regimes(&config).iter().map(Speeds::key).collect();
        assert_eq!(keys, ["st", "fat", "at-pgd10"]);
        // θ_p are pre-trained here (std, fat, at): without a FAT speed there is no estimate.
        let e = estimate(&config, &speeds).unwrap_err().to_string();
        assert!(e.contains("`fat`"), "{e}");
        speeds.train.insert("fat".into(), 50.0);
        let cost = estimate(&config, &speeds).unwrap();
        // CIFAR-10: 45,000 training images after 5,000 for validation, 10,000 test images.
        let st_full = &cost.runs[0];
        assert_eq!((st_full.regime.as_str(), st_full.fraction), ("st", 1.0));
        let expected = 100.0 * 45_000.0 / 100.0 + 100.0 * 5_000.0 / 1000.0 + 10_000.0 / 1000.0;
        assert!((st_full.seconds - expected).abs() < 1e-6, "{st_full:?}");
        assert!((st_full.runs_per_hour - 3600.0 / expected).abs() < 1e-9);
        // AT, 1 %: 450 images per epoch, RA under PGD-20 (21 passes) on validation for the
        // 55 epochs from 45 on, and on the test set.
        let at_one = cost
            .runs
            .iter()
            .find(|r| r.regime == "at" && r.fraction == 0.01)
            .unwrap();
        let expected = 100.0 * 450.0 / 10.0
            + 100.0 * 5_000.0 / 1000.0
            + 55.0 * 5_000.0 * 21.0 / 1000.0
            + 10_000.0 / 1000.0
            + 10_000.0 * 21.0 / 1000.0;
        assert!((at_one.seconds - expected).abs() < 1e-6, "{at_one:?}");
        // 3 θ_p × (19 levels + dense) × 3 seeds of each kind; 2 regimes × 3 fractions.
        assert_eq!(cost.runs.len(), 6);
        assert!(cost.runs.iter().all(|r| r.count == 180));
        // Pre-training on CIFAR-100 (45,000 + 5,000 validation), 100 epochs each; the AT
        // pre-training has no robust validation (its `eval_attack` is off in this preset).
        let per = |rate: f64| 100.0 * 45_000.0 / rate + 100.0 * 5_000.0 / 1000.0;
        let expected = per(100.0) + per(50.0) + per(10.0);
        assert!((cost.pretrain_seconds - expected).abs() < 1e-6);
        let total = cost.pretrain_seconds + cost.transfer_seconds;
        assert!((cost.total_hours - total / 3600.0).abs() < 1e-9);
    }
}
