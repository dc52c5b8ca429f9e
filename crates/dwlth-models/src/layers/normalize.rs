//! Per-channel input normalisation inside the model, so that inputs, perturbations and ε all
//! live in `[0, 1]` pixel space (as in the `robustness` library).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::mask::{frozen_param, replace_value};
use crate::error::{ModelError, Result};

/// Per-channel mean and standard deviation.
#[derive(Config, Debug, PartialEq)]
pub struct NormalizeConfig {
    /// Channel means.
    pub mean: Vec<f32>,
    /// Channel standard deviations (positive).
    pub std: Vec<f32>,
}

impl NormalizeConfig {
    /// ImageNet statistics, what torchvision and fast_adversarial models expect.
    pub fn imagenet() -> Self {
        Self::new(vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    }

    /// CIFAR-10 training-set statistics used by the reference code.
    pub fn cifar10() -> Self {
        Self::new(vec![0.4914, 0.4822, 0.4465], vec![0.2470, 0.2435, 0.2616])
    }

    /// CIFAR-100 training-set statistics used by the reference code.
    pub fn cifar100() -> Self {
        Self::new(vec![0.5071, 0.4867, 0.4408], vec![0.2675, 0.2565, 0.2761])
    }

    /// SVHN training-set statistics used by the reference code.
    pub fn svhn() -> Self {
        Self::new(vec![0.4377, 0.4438, 0.4728], vec![0.1201, 0.1231, 0.1052])
    }

    /// The identity: mean 0, std 1 on `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Self::new(vec![0.0; channels], vec![1.0; channels])
    }

    /// Parses `imagenet`, `cifar10`, `cifar100`, `svhn`, `none` (identity on 3 channels), or
    /// explicit values `R,G,B/R,G,B` (any number of channels, mean before the slash).
    pub fn parse(text: &str) -> Result<Self> {
        let config = match text.trim().to_ascii_lowercase().as_str() {
            "imagenet" => Self::imagenet(),
            "cifar10" | "cifar-10" => Self::cifar10(),
            "cifar100" | "cifar-100" => Self::cifar100(),
            "svhn" => Self::svhn(),
            "none" | "identity" => Self::identity(3),
            other => {
                let bad = || ModelError::UnknownName {
                    what: "normalisation",
                    value: text.to_string(),
                    expected: "imagenet, cifar10, cifar100, svhn, none, or MEAN,../STD,.. values",
                };
                let (mean, std) = other.split_once('/').ok_or_else(bad)?;
                let numbers = |s: &str| {
                    s.split(',')
                        .map(|v| v.trim().parse::<f32>())
                        .collect::<std::result::Result<Vec<_>, _>>()
                };
                Self::new(
                    numbers(mean).map_err(|_| bad())?,
                    numbers(std).map_err(|_| bad())?,
                )
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Checks lengths and that every std is positive and finite.
    pub fn validate(&self) -> Result<()> {
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(ModelError::InvalidValue {
                key: "normalize".into(),
                reason: format!(
                    "mean has {} channel(s) and std {}; both must be equal and non-zero",
                    self.mean.len(),
                    self.std.len()
                ),
            });
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(ModelError::InvalidValue {
                key: "normalize.std".into(),
                reason: format!("{s} is not a positive finite number"),
            });
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(ModelError::InvalidValue {
                key: "normalize.mean".into(),
                reason: format!("{m} is not finite"),
            });
        }
        Ok(())
    }

    /// Builds the layer.
    pub fn try_init(&self, device: &Device) -> Result<Normalize> {
        self.validate()?;
        let vector =
            |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device);
        Ok(Normalize {
            mean: frozen_param(vector(&self.mean)),
            std: frozen_param(vector(&self.std)),
        })
    }

    /// Builds the layer.
    ///
    /// # Panics
    /// If the configuration is invalid; use [`try_init`](Self::try_init) for an error instead.
    pub fn init(&self, device: &Device) -> Normalize {
        match self.try_init(device) {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
    }
}

/// `(x - mean) / std` per channel of an `[N, C, H, W]` input. The statistics are saved with the
/// model and never trained.
#[derive(Module, Debug)]
pub struct Normalize {
    /// Channel means `[C]`.
    pub mean: Param<Tensor<1>>,
    /// Channel standard deviations `[C]`.
    pub std: Param<Tensor<1>>,
}

impl Normalize {
    /// Normalises `input`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let channels = self.mean.shape().dims::<1>()[0];
        let mean = self.mean.val().detach().reshape([1, channels, 1, 1]);
        let std = self.std.val().detach().reshape([1, channels, 1, 1]);
        (input - mean) / std
    }

    /// The statistics as a configuration.
    pub fn to_config(&self) -> NormalizeConfig {
        let read = |t: Tensor<1>| t.into_data().try_to_vec_as::<f32>().unwrap_or_default();
        NormalizeConfig::new(read(self.mean.val()), read(self.std.val()))
    }

    /// Replaces the statistics (same number of channels).
    pub fn with_config(self, config: &NormalizeConfig) -> Result<Self> {
        config.validate()?;
        let channels = self.mean.shape().dims::<1>()[0];
        if config.channels() != channels {
            return Err(ModelError::InvalidValue {
                key: "normalize".into(),
                reason: format!(
                    "{} channel(s) given for a model with {channels} input channel(s)",
                    config.channels()
                ),
            });
        }
        let device = self.mean.device();
        let vector =
            |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
        Ok(Self {
            mean: replace_value(self.mean, |_| vector(&config.mean)),
            std: replace_value(self.std, |_| vector(&config.std)),
        })
    }
}
