//! Iterative magnitude pruning (IMP) with rewinding to the pre-trained weights.
//!
//! Each round prunes `rate` of the remaining prunable weights by global magnitude (of the
//! weights the previous round trained), rewinds the survivors to θ_p — the *whole* pre-trained
//! state, BatchNorm statistics and head included — and re-trains with the caller's step. With
//! standard training this is IMP; with adversarial training, A-IMP. The re-training is a
//! closure, so this crate needs nothing of the training code; the closure must build a fresh
//! optimiser on every call (rewinding resets the optimiser too).
//!
//! Every finished round is published as one folder `dir/round-KK/` (masks, weights, metrics),
//! whole or not at all. Running again with the same directory resumes after the last published
//! round and ends with the same masks; `dir/settings.json` binds the directory to the IMP
//! settings and θ_p, and resuming with others is refused, naming the differing setting.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use burn::module::Module;
use dwlth_models::io::{fingerprint_module, load_module, save_module};
use dwlth_models::mode::independent_copy;
use dwlth_store::{check_settings, publish_dir, remove_stale_temporaries, temp_path, write_file};
use serde::{Deserialize, Serialize};

use crate::apply::apply_masks;
use crate::criteria::PruneMethod;
use crate::error::{check_fraction, PruneError, Result};
use crate::layers::masked_weights;
use crate::mask_set::MaskSet;
use crate::selection::Prunable;

/// Settings of an IMP run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpConfig {
    /// Fraction of the remaining weights pruned per round (papers: 0.2).
    pub rate: f64,
    /// Number of pruning rounds (papers: 19, down to 98.56 % sparsity).
    pub rounds: usize,
    /// Prune θ_p before the first re-training, as the reference code does (round 1 trains an
    /// already 20 %-sparse network). If false, round 0 trains the dense network first and
    /// round 1 prunes its result (the original lottery-ticket procedure).
    pub prune_first: bool,
    /// The criterion of each round (papers: global magnitude).
    pub method: PruneMethod,
    /// A schedule of sparsities instead of a constant rate: round `k` prunes to
    /// `sparsities[k − 1]` of the prunable weights (so `rounds` must be its length). Lets a few
    /// rounds reach the levels one-shot tickets are taken at (50, 80, 95 %), for comparing the
    /// two at equal sparsity. Empty: `rate` every round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sparsities: Vec<f64>,
}

impl Default for ImpConfig {
    fn default() -> Self {
        Self {
            rate: 0.2,
            rounds: 19,
            prune_first: true,
            method: PruneMethod::global_magnitude(),
            sparsities: Vec::new(),
        }
    }
}

impl ImpConfig {
    /// The sparsity after round `k`: `1 − (1 − rate)^k`, or the schedule's `k`-th sparsity
    /// (before rounding to whole weights).
    pub fn sparsity_after(&self, round: usize) -> f64 {
        match round.checked_sub(1).and_then(|k| self.sparsities.get(k)) {
            Some(s) => *s,
            None => 1.0 - (1.0 - self.rate).powi(round as i32),
        }
    }

    /// The fraction of the still-kept weights that round `round` prunes when the masks have
    /// sparsity `current`.
    fn amount(&self, round: usize, current: f64) -> f64 {
        if self.sparsities.is_empty() {
            return self.rate;
        }
        let target = self.sparsity_after(round);
        (1.0 - (1.0 - target) / (1.0 - current).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
    }

    /// Checks the rate and the schedule (increasing sparsities in (0, 1), one per round).
    fn validate(&self) -> Result<()> {
        check_fraction("IMP pruning rate", self.rate)?;
        if self.sparsities.is_empty() {
            return Ok(());
        }
        if self.sparsities.len() != self.rounds {
            return Err(PruneError::ImpSchedule(format!(
                "{} sparsities for {} rounds; give one per round",
                self.sparsities.len(),
                self.rounds
            )));
        }
        let mut previous = 0.0;
        for s in &self.sparsities {
            if !(s.is_finite() && *s > previous && *s < 1.0) {
                return Err(PruneError::ImpSchedule(format!(
                    "{:?} must increase strictly within (0, 1); {s} does not",
                    self.sparsities
                )));
            }
            previous = *s;
        }
        Ok(())
    }
}

/// What the re-training closure learns about the round it trains.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundContext {
    /// The round (0 = the dense network when `prune_first` is false).
    pub round: usize,
    /// Sparsity of the prunable weights in this round.
    pub sparsity: f64,
    /// The round's masks. A model of plain Burn `Conv2d` / `Linear` layers must keep its pruned
    /// weights at zero while it trains: mask its gradients with
    /// [`param_masks`](crate::param_masks)`(&model, &context.masks)` (or train with
    /// `dwlth_adv::Trainer::with_param_masks`).
    pub masks: MaskSet,
}

/// The record of one finished round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpRound {
    /// The round.
    pub round: usize,
    /// Sparsity of the prunable weights.
    pub sparsity: f64,
    /// Kept prunable weights.
    pub kept: usize,
    /// All prunable weights.
    pub total: usize,
    /// Whatever the re-training step reported (accuracies, losses).
    pub metrics: serde_json::Value,
}

impl ImpRound {
    /// Reads round `round`'s record and checks it: its number, `kept ≤ total`, and a sparsity
    /// of `1 − kept / total`.
    pub fn parse(bytes: &[u8], path: &Path, round: usize) -> Result<Self> {
        let bad = |reason: String| PruneError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let record: Self = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if record.round != round {
            return Err(bad(format!(
                "is round {}'s record, expected round {round}",
                record.round
            )));
        }
        let expected = match record.total {
            0 => 0.0,
            t => 1.0 - record.kept as f64 / t as f64,
        };
        if record.kept > record.total || (record.sparsity - expected).abs() > 1e-9 {
            return Err(bad(format!(
                "keeps {} of {} weights but records sparsity {}",
                record.kept, record.total, record.sparsity
            )));
        }
        Ok(record)
    }
}

/// An IMP run writing its rounds under `dir`.
#[derive(Debug, Clone)]
pub struct Imp {
    /// Settings.
    pub config: ImpConfig,
    /// Which tensors are pruned.
    pub prunable: Prunable,
    /// Where rounds are saved.
    pub dir: PathBuf,
    /// What else the rounds depend on — the re-training's settings and data, which this crate
    /// cannot see — stored with the rounds so a resume with others is refused.
    pub inputs: serde_json::Value,
}

impl Imp {
    /// An IMP run with the given settings.
    pub fn new(config: ImpConfig, prunable: Prunable, dir: impl Into<PathBuf>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            prunable,
            dir: dir.into(),
            inputs: serde_json::Value::Null,
        })
    }

    /// Names what the re-training depends on (see [`Imp::inputs`]).
    pub fn with_inputs(mut self, inputs: serde_json::Value) -> Self {
        self.inputs = inputs;
        self
    }

    fn round_dir(&self, round: usize) -> PathBuf {
        self.dir.join(format!("round-{round:02}"))
    }

    /// The round's mask file.
    pub fn masks_path(&self, round: usize) -> PathBuf {
        self.round_dir(round).join("masks.safetensors")
    }

    /// The round's trained weights.
    pub fn weights_path(&self, round: usize) -> PathBuf {
        self.round_dir(round).join("weights.safetensors")
    }

    fn metrics_path(&self, round: usize) -> PathBuf {
        self.round_dir(round).join("metrics.json")
    }

    /// Binds the directory to these settings and θ_p (refusing others and an earlier layout)
    /// and removes the temporaries of killed runs.
    fn open<M: Module>(&self, theta_p: &M) -> Result<()> {
        let settings = self.dir.join("settings.json");
        let first = usize::from(self.config.prune_first);
        if !settings.exists() && self.metrics_path(first).exists() {
            return Err(dwlth_store::StoreError::OldLayout {
                path: self.dir.clone(),
                reason: "holds IMP rounds of an earlier layout, not bound to their settings; \
                         delete it or use another folder"
                    .into(),
            }
            .into());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| PruneError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        remove_stale_temporaries(&self.dir)?;
        let identity = serde_json::json!({
            "imp": self.config,
            "prunable": self.prunable,
            "theta_p": fingerprint_module(theta_p)?,
            "inputs": self.inputs,
        });
        check_settings(&settings, "an IMP run", &identity)?;
        Ok(())
    }

    /// Rounds already complete on disk.
    pub fn finished_rounds(&self) -> Result<Vec<ImpRound>> {
        let first = usize::from(self.config.prune_first);
        let mut done = Vec::new();
        for round in first..=self.config.rounds {
            let path = self.metrics_path(round);
            if !path.exists() {
                break;
            }
            let bytes = std::fs::read(&path).map_err(|e| PruneError::Io {
                path: path.clone(),
                source: e,
            })?;
            done.push(ImpRound::parse(&bytes, &path, round)?);
        }
        Ok(done)
    }

    /// Runs (or resumes) IMP from the pre-trained `theta_p`, calling `retrain` once per round
    /// with the rewound, masked network. Returns the last trained model, its masks, and every
    /// round's record.
    ///
    /// ```
    /// use burn::module::Module;
    /// use burn::nn::conv::{Conv2d, Conv2dConfig};
    /// use burn::tensor::Device;
    /// use dwlth_prune::{Imp, ImpConfig, Prunable, RoundContext};
    ///
    /// #[derive(Module, Debug)]
    /// struct Net {
    ///     conv: Conv2d,
    /// }
    ///
    /// let device = Device::flex();
    /// let theta_p = Net { conv: Conv2dConfig::new([3, 8], [3, 3]).init(&device) };
    /// let dir = tempfile::tempdir().unwrap();
    /// let config = ImpConfig { rounds: 2, ..ImpConfig::default() };
    /// let imp = Imp::new(config, Prunable::convolutions(), dir.path())?;
    /// let (_, masks, rounds) = imp.run(&theta_p, |model: Net, round: &RoundContext| {
    ///     // Re-train `model` here, keeping `round.masks` (see `param_masks`).
    ///     Ok::<_, String>((model, serde_json::json!({ "round": round.round })))
    /// })?;
    /// assert_eq!(rounds.len(), 2);
    /// assert!((masks.sparsity() - 0.36).abs() < 0.01); // 1 − 0.8²
    /// # Ok::<(), dwlth_prune::PruneError>(())
    /// ```
    pub fn run<M, F, E>(&self, theta_p: &M, mut retrain: F) -> Result<(M, MaskSet, Vec<ImpRound>)>
    where
        M: Module,
        F: FnMut(M, &RoundContext) -> std::result::Result<(M, serde_json::Value), E>,
        E: Display,
    {
        self.open(theta_p)?;
        let mut records = self.finished_rounds()?;
        let first = usize::from(self.config.prune_first);
        // The state to continue from: the last finished round's trained weights and masks.
        let (mut trained, mut masks) = match records.last() {
            Some(last) => {
                let masks = MaskSet::load(self.masks_path(last.round))?;
                let mut model = independent_copy(theta_p);
                model = apply_masks(model, &masks)?;
                load_weights(&mut model, &self.weights_path(last.round))?;
                (model, masks)
            }
            None => (
                independent_copy(theta_p),
                MaskSet::from_model(theta_p, &self.prunable),
            ),
        };
        let start = first + records.len();
        for round in start..=self.config.rounds {
            if round > 0 {
                // A plain layer's mask reads as its non-zero weights: a weight the round's
                // training moved off zero stays pruned.
                let mut layers = masked_weights(&trained);
                for layer in &mut layers {
                    if let Some(current) = masks.get(&layer.name) {
                        for (m, keep) in layer.mask.iter_mut().zip(&current.keep) {
                            *m &= *keep;
                        }
                    }
                }
                let amount = self.config.amount(round, masks.sparsity());
                masks = self.config.method.prune(&layers, &self.prunable, amount)?;
            }
            // Rewind: the whole pre-trained state, with the round's masks.
            let rewound = apply_masks(independent_copy(theta_p), &masks)?;
            let context = RoundContext {
                round,
                sparsity: masks.sparsity(),
                masks: masks.clone(),
            };
            let (model, metrics) = retrain(rewound, &context).map_err(|e| PruneError::Retrain {
                round,
                message: e.to_string(),
            })?;
            let record = ImpRound {
                round,
                sparsity: masks.sparsity(),
                kept: masks.kept(),
                total: masks.total(),
                metrics,
            };
            self.save_round(&model, &masks, &record)?;
            records.push(record);
            trained = model;
        }
        Ok((trained, masks, records))
    }

    /// Publishes the round's masks, weights and metrics as one folder.
    fn save_round<M: Module>(&self, model: &M, masks: &MaskSet, record: &ImpRound) -> Result<()> {
        let mut masks = masks.clone();
        masks.metadata.insert("method".into(), "imp".into());
        masks
            .metadata
            .insert("round".into(), record.round.to_string());
        masks
            .metadata
            .insert("rate".into(), self.config.rate.to_string());
        let dest = self.round_dir(record.round);
        let tmp = temp_path(&dest);
        let names = |name: &str| tmp.join(name);
        let write = || -> Result<()> {
            masks.save(names("masks.safetensors"))?;
            save_weights(model, &names("weights.safetensors"))?;
            let json = serde_json::to_vec_pretty(record).map_err(|e| PruneError::Format {
                path: self.metrics_path(record.round),
                reason: e.to_string(),
            })?;
            write_file(&names("metrics.json"), &json)?;
            publish_dir(&tmp, &dest)?;
            Ok(())
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })
    }
}

/// Saves every tensor of `model` (running statistics synchronised), atomically.
pub fn save_weights<M: Module>(model: &M, path: &Path) -> Result<()> {
    Ok(save_module(model, path)?)
}

/// Loads weights saved by [`save_weights`] into `model`; every tensor must match.
pub fn load_weights<M: Module>(model: &mut M, path: &Path) -> Result<()> {
    Ok(load_module(model, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(round: usize, sparsity: f64, kept: usize, total: usize) -> Vec<u8> {
        serde_json::to_vec(&ImpRound {
            round,
            sparsity,
            kept,
            total,
            metrics: serde_json::json!({"sa": 0.5}),
        })
        .unwrap()
    }

    #[test]
    fn a_round_record_must_be_its_round_and_agree_with_its_counts() {
        let path = Path::new("imp/round-02/round.json");
        let ok = ImpRound::parse(&bytes(2, 0.2, 8, 10), path, 2).unwrap();
        assert_eq!((ok.round, ok.kept, ok.total), (2, 8, 10));
        assert!(ImpRound::parse(&bytes(0, 0.0, 0, 0), path, 0).is_ok());
        for (b, expected) in [
            (bytes(3, 0.2, 8, 10), "round 3's record, expected round 2"),
            (
                bytes(2, 0.5, 8, 10),
                "keeps 8 of 10 weights but records sparsity 0.5",
            ),
            (bytes(2, 0.0, 11, 10), "keeps 11 of 10"),
            (b"[".to_vec(), "round.json"),
        ] {
            let message = ImpRound::parse(&b, path, 2).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("round-02"), "{message}");
        }
    }
}
