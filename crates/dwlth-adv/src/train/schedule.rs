//! Learning-rate schedules, evaluated per iteration so that warm-up and cosine are smooth.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};

/// How the learning rate evolves over training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    /// The base rate throughout (IMP re-training in the papers: 5e-4).
    Constant,
    /// Multiplied by `gamma` at each milestone epoch (CIFAR: ×0.1 at 50 and 75).
    MultiStep {
        /// Epochs at which the rate drops.
        milestones: Vec<usize>,
        /// Factor per milestone.
        gamma: f64,
    },
    /// Half a cosine from the base rate to zero over all epochs (SVHN in the papers).
    Cosine,
}

/// A schedule with its base rate and an optional linear warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Base learning rate.
    pub base: f64,
    /// Shape after warm-up.
    pub schedule: Schedule,
    /// Epochs of linear warm-up from 0 to `base` (0: none).
    #[serde(default)]
    pub warmup_epochs: usize,
}

impl LrSchedule {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.base.is_finite() && self.base > 0.0) {
            return Err(invalid("lr", self.base, "must be positive and finite"));
        }
        if let Schedule::MultiStep { gamma, .. } = &self.schedule {
            if !(gamma.is_finite() && *gamma > 0.0) {
                return Err(invalid("gamma", gamma, "must be positive and finite"));
            }
        }
        Ok(())
    }

    /// The rate at `epoch` (0-based), iteration `step` of `steps` in that epoch, out of
    /// `epochs` epochs.
    pub fn lr(&self, epoch: usize, step: usize, steps: usize, epochs: usize) -> f64 {
        let progress = epoch as f64 + step as f64 / steps.max(1) as f64;
        if (epoch as f64) < self.warmup_epochs as f64 {
            return self.base
                * (progress + 1.0 / steps.max(1) as f64).min(self.warmup_epochs as f64)
                / self.warmup_epochs as f64;
        }
        match &self.schedule {
            Schedule::Constant => self.base,
            Schedule::MultiStep { milestones, gamma } => {
                let passed = milestones.iter().filter(|m| epoch >= **m).count();
                self.base * gamma.powi(passed as i32)
            }
            Schedule::Cosine => {
                let total = epochs.max(1) as f64;
                0.5 * self.base * (1.0 + (std::f64::consts::PI * progress / total).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_cosine_and_warmup() {
        let s = LrSchedule {
            base: 0.1,
            schedule: Schedule::MultiStep {
                milestones: vec![50, 75],
                gamma: 0.1,
            },
            warmup_epochs: 0,
        };
        assert_eq!(s.lr(0, 0, 10, 100), 0.1);
        assert!((s.lr(50, 0, 10, 100) - 0.01).abs() < 1e-12);
        assert!((s.lr(99, 9, 10, 100) - 0.001).abs() < 1e-12);
        let c = LrSchedule {
            base: 0.01,
            schedule: Schedule::Cosine,
            warmup_epochs: 0,
        };
        assert_eq!(c.lr(0, 0, 10, 80), 0.01);
        assert!((c.lr(40, 0, 10, 80) - 0.005).abs() < 1e-12);
        let w = LrSchedule {
            base: 0.1,
            schedule: Schedule::Constant,
            warmup_epochs: 2,
        };
        assert!((w.lr(0, 0, 10, 10) - 0.005).abs() < 1e-12);
        assert!((w.lr(1, 9, 10, 10) - 0.1).abs() < 1e-12);
        assert_eq!(w.lr(2, 0, 10, 10), 0.1);
    }
}
