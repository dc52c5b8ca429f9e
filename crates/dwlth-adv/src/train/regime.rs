//! Training regimes: what a training step feeds the model.

use burn::tensor::{Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::attack::{Attack, AttackMode};
use crate::classifier::Classifier;
use crate::error::{invalid, Result};

/// The inputs a training step learns from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "regime", rename_all = "kebab-case")]
pub enum Regime {
    /// Standard training (ST): clean images.
    Standard,
    /// Adversarial training (AT, Madry et al.): PGD examples crafted on the current model.
    /// Papers: PGD-10, ε 8/255, α 2/255; the reference code attacks with BatchNorm in
    /// training mode.
    Adversarial {
        /// The attack (usually PGD with random start).
        attack: Attack,
        /// BatchNorm mode while crafting.
        #[serde(default)]
        mode: AttackMode,
    },
    /// Fast adversarial training (FAT, Wong et al. 2020): FGSM from a random start, step α
    /// (they use 1.25 ε). Pair it with the catastrophic-overfitting guard.
    FastAdversarial {
        /// Radius.
        eps: f64,
        /// Step.
        alpha: f64,
    },
    /// Gaussian noise augmentation (random smoothing, Cohen et al. 2019): `x + N(0, σ²)`.
    GaussianNoise {
        /// Noise standard deviation in pixel units.
        sigma: f64,
    },
}

impl Regime {
    /// The papers' PGD-10 adversarial training (ε 8/255, α 2/255, BatchNorm in train mode
    /// while crafting, as the reference code does).
    pub fn pgd10() -> Self {
        Regime::Adversarial {
            attack: Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 10),
            mode: AttackMode::Train,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        match self {
            Regime::Standard => Ok(()),
            Regime::Adversarial { attack, .. } => attack.validate(),
            Regime::FastAdversarial { eps, alpha } => Attack::fgsm_rs(*eps, *alpha).validate(),
            Regime::GaussianNoise { sigma } => {
                if sigma.is_finite() && *sigma >= 0.0 {
                    Ok(())
                } else {
                    Err(invalid("sigma", sigma, "must be finite and non-negative"))
                }
            }
        }
    }

    /// Short name for reports (`st`, `at`, `fat`, `rs`).
    pub fn short_name(&self) -> &'static str {
        match self {
            Regime::Standard => "st",
            Regime::Adversarial { .. } => "at",
            Regime::FastAdversarial { .. } => "fat",
            Regime::GaussianNoise { .. } => "rs",
        }
    }

    /// The training inputs for a clean batch, crafted on `model` (which stays trainable).
    pub fn inputs<C: Classifier>(
        &self,
        model: &C,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
    ) -> Result<Tensor<4>> {
        Ok(match self {
            Regime::Standard => images,
            Regime::Adversarial { attack, mode } => {
                attack.perturb(&mode.view(model), images, labels)?
            }
            Regime::FastAdversarial { eps, alpha } => Attack::fgsm_rs(*eps, *alpha).perturb(
                &AttackMode::Train.view(model),
                images,
                labels,
            )?,
            Regime::GaussianNoise { sigma } => {
                let noise = dwlth_models::random::random(
                    images.dims(),
                    Distribution::Normal(0.0, *sigma),
                    &images.device(),
                );
                images + noise
            }
        })
    }
}
