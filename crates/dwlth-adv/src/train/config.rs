//! Typed training settings with the papers' presets.

use serde::{Deserialize, Serialize};

use super::regime::Regime;
use super::schedule::{LrSchedule, Schedule};
use crate::attack::Attack;
use crate::error::{invalid, Result};

/// Stops fast adversarial training when it overfits catastrophically (Wong et al. 2020): each
/// epoch, robust accuracy on a held-out batch under `attack`; when it falls more than
/// `max_drop` below its best, training stops and the last good weights are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverfitGuard {
    /// The probing attack (PGD, a few steps).
    pub attack: Attack,
    /// Largest tolerated fall of the held-out robust accuracy, in `[0, 1]`.
    pub max_drop: f64,
}

impl Default for OverfitGuard {
    fn default() -> Self {
        Self {
            attack: Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 5),
            max_drop: 0.2,
        }
    }
}

impl OverfitGuard {
    /// Whether a probe of `probe` after a best of `best` means catastrophic overfitting.
    pub fn tripped(&self, best: f64, probe: f64) -> bool {
        probe < best - self.max_drop
    }
}

/// Leaves `false` flags out of saved settings, so that files written before the flag existed
/// keep their meaning (and experiments their run names).
fn is_false(flag: &bool) -> bool {
    !*flag
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Everything a training run needs besides model and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Learning rate and its schedule.
    pub lr: LrSchedule,
    /// SGD momentum (dampening 0, as PyTorch).
    pub momentum: f64,
    /// Coupled L2 weight decay, as PyTorch's SGD.
    pub weight_decay: f64,
    /// What the steps learn from.
    pub regime: Regime,
    /// Attack for validation RA (papers: PGD-20, ε 8/255, α 2/255); `None`: SA only.
    pub eval_attack: Option<Attack>,
    /// First epoch (0-based) whose validation includes RA (reference code: 45 of 100).
    #[serde(default)]
    pub ra_from_epoch: usize,
    /// Catastrophic-overfitting guard (for fast adversarial training).
    #[serde(default)]
    pub overfit_guard: Option<OverfitGuard>,
    /// Seed of the random starts and noise.
    #[serde(default)]
    pub seed: u64,
    /// Keep the weights after every epoch as `epoch_NNN.safetensors` in the run directory:
    /// the training trajectory a loss-landscape plot projects (`dwlth analyze landscape
    /// --checkpoints`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub snapshots: bool,
    /// Validate after every `validate_every`-th epoch and after the last (1: every epoch). The
    /// best-SA / best-RA weights are chosen among validated epochs.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub validate_every: usize,
}

impl TrainConfig {
    /// Downstream CIFAR fine-tuning of paper A: 100 epochs, SGD lr 0.1 (×0.1 at 50 and 75),
    /// momentum 0.9, weight decay 5e-4, validation RA under PGD-20 from epoch 45.
    pub fn cifar_paper(regime: Regime) -> Self {
        Self {
            epochs: 100,
            lr: LrSchedule {
                base: 0.1,
                schedule: Schedule::MultiStep {
                    milestones: vec![50, 75],
                    gamma: 0.1,
                },
                warmup_epochs: 0,
            },
            momentum: 0.9,
            weight_decay: 5e-4,
            regime,
            eval_attack: Some(Attack::pgd20()),
            ra_from_epoch: 45,
            overfit_guard: None,
            seed: 0,
            snapshots: false,
            validate_every: 1,
        }
    }

    /// Downstream SVHN fine-tuning of paper A: 80 epochs, lr 0.01 with a cosine schedule.
    pub fn svhn_paper(regime: Regime) -> Self {
        Self {
            epochs: 80,
            lr: LrSchedule {
                base: 0.01,
                schedule: Schedule::Cosine,
                warmup_epochs: 0,
            },
            ra_from_epoch: 0,
            ..Self::cifar_paper(regime)
        }
    }

    /// IMP re-training of paper A: 30 epochs per round, fixed lr 5e-4, weight decay 1e-4;
    /// clean validation only.
    pub fn imp_retrain_paper(regime: Regime) -> Self {
        Self {
            epochs: 30,
            lr: LrSchedule {
                base: 5e-4,
                schedule: Schedule::Constant,
                warmup_epochs: 0,
            },
            weight_decay: 1e-4,
            eval_attack: None,
            ra_from_epoch: 0,
            ..Self::cifar_paper(regime)
        }
    }

    /// These settings for a training set of `steps_per_epoch` batches, trained for at least
    /// `min_steps` steps: the epochs grow (never shrink) to `⌈min_steps / steps_per_epoch⌉`,
    /// and every epoch-valued setting — the learning-rate milestones, warm-up, the first
    /// epoch with robust validation, the validation interval — stretches in proportion, so the
    /// schedule keeps its shape and its number of validations. Data-limited transfer papers scale epochs to the subset this way: 4 epochs of
    /// 100 images are a handful of steps, not a trained network.
    ///
    /// ```
    /// use dwlth_adv::{Regime, Schedule, TrainConfig};
    ///
    /// let paper = TrainConfig::cifar_paper(Regime::Standard); // 100 epochs, ×0.1 at 50 and 75
    /// let small = paper.stretched_to_steps(4, 1000);           // 4 batches per epoch
    /// assert_eq!(small.epochs, 250);
    /// assert_eq!(small.ra_from_epoch, 113);
    /// let Schedule::MultiStep { milestones, .. } = small.lr.schedule else { unreachable!() };
    /// assert_eq!(milestones, [125, 188]);
    /// assert_eq!(small.validate_every, 3); // 250 / 3: about as many validations as before
    /// assert_eq!(paper.stretched_to_steps(400, 1000).epochs, 100); // never fewer epochs
    /// ```
    pub fn stretched_to_steps(&self, steps_per_epoch: usize, min_steps: usize) -> TrainConfig {
        let wanted = min_steps.div_ceil(steps_per_epoch.max(1));
        if wanted <= self.epochs {
            return self.clone();
        }
        let factor = wanted as f64 / self.epochs as f64;
        let stretch = |epoch: usize| (epoch as f64 * factor).round() as usize;
        let mut out = self.clone();
        out.epochs = wanted;
        // As many validations as the schedule it stretches: on a small subset an epoch is a
        // few steps, and validating after each would cost more than the training.
        out.validate_every = stretch(self.validate_every.max(1)).max(1);
        out.ra_from_epoch = stretch(self.ra_from_epoch).min(wanted - 1);
        out.lr.warmup_epochs = stretch(self.lr.warmup_epochs);
        if let Schedule::MultiStep { milestones, .. } = &mut out.lr.schedule {
            for m in milestones.iter_mut() {
                *m = stretch(*m);
            }
        }
        out
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(invalid("epochs", 0, "train for at least one epoch"));
        }
        if self.validate_every == 0 {
            return Err(invalid("validate_every", 0, "must be at least 1"));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(invalid("momentum", self.momentum, "must be in [0, 1)"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "weight_decay",
                self.weight_decay,
                "must be non-negative",
            ));
        }
        self.lr.validate()?;
        self.regime.validate()?;
        if let Some(a) = &self.eval_attack {
            a.validate()?;
        }
        if let Some(g) = &self.overfit_guard {
            g.attack.validate()?;
            if !(0.0..=1.0).contains(&g.max_drop) {
                return Err(invalid("max_drop", g.max_drop, "must be in [0, 1]"));
            }
        }
        Ok(())
    }
}
