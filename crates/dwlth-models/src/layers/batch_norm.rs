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
use burn::tensor::module::batch_norm_train;
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
            return self.forward_eval(input);
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

    /// Evaluation mode as one per-channel affine map, `x · scale + shift` with
    /// `scale = γ / √(var + ε)` and `shift = β − mean · scale` computed on the channels:
    /// two passes over the activations (and one back) instead of the four of
    /// `(x − mean) / √(var + ε) · γ + β`; it is also how PyTorch's CPU kernel evaluates it.
    /// Gradients reach γ and β through `scale` and `shift` when they are trained.
    fn forward_eval(&self, input: Tensor<4>) -> Tensor<4> {
        let device = input.device();
        let channels = self.gamma.dims()[0];
        let mean = self.running_mean.value().to_device(&device);
        let var = self.running_var.value().to_device(&device);
        let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val() - mean * scale.clone();
        input * scale.reshape([1, channels, 1, 1]) + shift.reshape([1, channels, 1, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::batch_norm;
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn evaluation_mode_equals_burns_batch_norm_with_gradients() {
        // Running statistics, trainable γ and β, training flag off: frozen statistics with
        // trained affine parameters, as when fine-tuning a robust model's head and BN shifts.
        let device = Device::flex().autodiff();
        device.seed(11);
        let c = 5;
        let random = |lo: f64, hi: f64| {
            Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device).without_autodiff()
        };
        let mut bn = BatchNorm2dConfig::new(c).try_init(&device).expect("layer");
        bn.gamma = Param::from_tensor(random(0.5, 2.0).autodiff());
        bn.beta = Param::from_tensor(random(-1.0, 1.0).autodiff());
        bn.running_mean = RunningState::new(random(-3.0, 3.0));
        bn.running_var = RunningState::new(random(0.1, 4.0));
        bn.training = Param::from_bool(false);
        let x = Tensor::<4>::random([3, c, 4, 6], Distribution::Normal(0.0, 2.0), &device);
        let gy = Tensor::<4>::random([3, c, 4, 6], Distribution::Default, &device);

        let x_ours = x.clone().require_grad();
        let y = bn.forward(x_ours.clone());
        let grads = (y.clone() * gy.clone()).sum().backward();

        let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
        let x_ref = x.require_grad();
        let y_ref = batch_norm(
            x_ref.clone(),
            gamma.clone(),
            beta.clone(),
            bn.running_mean.value().to_device(&device),
            bn.running_var.value().to_device(&device),
            bn.epsilon,
        );
        let grads_ref = (y_ref.clone() * gy).sum().backward();

        assert!(max_diff(y.without_autodiff(), y_ref.without_autodiff()) < 1e-5);
        let g = |t: &Tensor<4>, g| t.grad(g).expect("input gradient");
        assert!(max_diff(g(&x_ours, &grads), g(&x_ref, &grads_ref)) < 1e-5);
        for (name, p) in [("gamma", &gamma), ("beta", &beta)] {
            let ours = p.grad(&grads).expect("parameter gradient");
            let reference = p.grad(&grads_ref).expect("parameter gradient");
            assert!(max_diff(ours, reference) < 1e-4, "{name}");
        }
    }
}
