//! BatchNorm with PyTorch's exact running-variance update.
//!
//! Burn's `BatchNorm` folds the *biased* batch variance into its running variance; PyTorch
//! (and so every checkpoint this library imports) folds the *unbiased* one, `n / (n - 1)`
//! times larger, with `n = batch · height · width`. The difference is small for large
//! batches and feature maps but grows where maps are small (2× at 1×1 with two images), and a
//! library that fine-tunes imported models should evolve their statistics as PyTorch would.
//! Everything else (training flag, `freeze`, `valid`, saving) behaves as Burn's `BatchNorm`,
//! and the field names (`gamma`, `beta`, `running_mean`, `running_var`) are the same.

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::Initializer;
use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, Result};

/// Configuration of a [`BatchNorm2d`].
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Channels.
    pub num_features: usize,
    /// Added to the variance before the square root (PyTorch: 1e-5).
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the new batch statistic in the running average (PyTorch: 0.1).
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl BatchNorm2dConfig {
    /// Builds the layer: `gamma` 1, `beta` 0, running mean 0 and variance 1, training on.
    pub fn try_init(&self, device: &Device) -> Result<BatchNorm2d> {
        let valid = self.num_features > 0
            && self.epsilon.is_finite()
            && self.epsilon > 0.0
            && (0.0..=1.0).contains(&self.momentum);
        if !valid {
            return Err(ModelError::InvalidConfig(format!(
                "invalid BatchNorm: {self:?}"
            )));
        }
        let n = self.num_features;
        Ok(BatchNorm2d {
            gamma: Initializer::Ones.init([n], device),
            beta: Initializer::Zeros.init([n], device),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([n], device)),
            running_var: RunningState::new(Tensor::ones([n], device)),
            momentum: self.momentum,
            epsilon: self.epsilon,
        })
    }
}

/// Batch normalisation over `[N, C, H, W]` with PyTorch's semantics.
///
/// Training behaviour (batch statistics, running statistics updated) happens iff the input is
/// on an autodiff device and the training flag is on — as for Burn's own `BatchNorm`, so
/// `freeze()` and `valid()` switch it off.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale (PyTorch `weight`).
    pub gamma: Param<Tensor<1>>,
    /// Shift (PyTorch `bias`).
    pub beta: Param<Tensor<1>>,
    /// Whether the layer trains when its input is on an autodiff device.
    pub training: Param<Flag>,
    /// Running mean.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance.
    pub running_var: RunningState<Tensor<1>>,
    /// Running-average momentum.
    pub momentum: f64,
    /// Variance epsilon.
    pub epsilon: f64,
}

impl BatchNorm2d {
    /// Normalises `input`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let device = input.device();
        if !(device.is_autodiff() && self.training.is_enabled()) {
            return batch_norm(
                input,
                self.gamma.val(),
                self.beta.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            );
        }
        let [n, _, h, w] = input.dims();
        let count = (n * h * w) as f64;
        let out = batch_norm_train(input, self.gamma.val(), self.beta.val(), self.epsilon);
        let unbiased = if count > 1.0 {
            out.variance.detach().mul_scalar(count / (count - 1.0))
        } else {
            out.variance.detach()
        };
        let m = self.momentum;
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        self.running_mean
            .update((mean.mul_scalar(1.0 - m) + out.mean.detach().mul_scalar(m)).detach());
        self.running_var
            .update((var.mul_scalar(1.0 - m) + unbiased.mul_scalar(m)).detach());
        out.output
    }
}
