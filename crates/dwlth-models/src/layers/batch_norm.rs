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
use burn::tensor::{activation, Device, Tensor};

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

    /// [`try_init`](Self::try_init) for a configuration known to be valid.
    ///
    /// # Panics
    /// On an invalid configuration (no channel, ε not positive, momentum outside [0, 1]);
    /// use [`try_init`](Self::try_init) for an error instead.
    pub fn init(&self, device: &Device) -> BatchNorm2d {
        match self.try_init(device) {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
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

/// What follows the normalisation in [`BatchNorm2d::normalise`].
enum After {
    Nothing,
    Relu,
    /// A residual (of the input's shape) added, then a ReLU.
    AddRelu(Box<Tensor<4>>),
}

impl After {
    /// `y` followed by `self`, in Burn's operations.
    fn apply(self, y: Tensor<4>) -> Tensor<4> {
        match self {
            After::Nothing => y,
            After::Relu => activation::relu(y),
            After::AddRelu(residual) => activation::relu(y + *residual),
        }
    }
}

impl BatchNorm2d {
    /// Normalises `input`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.normalise(input, After::Nothing)
    }

    /// `relu(self.forward(input))`. On the CPU backend the ReLU is part of the fused
    /// BatchNorm operation: no pass of its own over the activations, forward or backward
    /// (the backward pass tests the same `f32` condition as the forward one).
    pub fn forward_relu(&self, input: Tensor<4>) -> Tensor<4> {
        self.normalise(input, After::Relu)
    }

    /// `relu(self.forward(input) + residual)`: the end of a residual block. On the CPU
    /// backend the addition and the ReLU are part of the fused BatchNorm operation: one
    /// pass forward where three separate operations took three (each reading and writing
    /// the activations), and the ReLU's gradient, which is also the residual's, one pass
    /// backward. A `residual` of another shape than `input` is broadcast by Burn's addition.
    pub fn forward_add_relu(&self, input: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
        if residual.dims() != input.dims() {
            return activation::relu(self.forward(input) + residual);
        }
        self.normalise(input, After::AddRelu(Box::new(residual)))
    }

    fn normalise(&self, input: Tensor<4>, after: After) -> Tensor<4> {
        let device = input.device();
        if !(device.is_autodiff() && self.training.is_enabled()) {
            return self.forward_eval(input, after);
        }
        let [n, _, h, w] = input.dims();
        let count = (n * h * w) as f64;
        let (output, batch_mean, batch_var) = self.train_batch(input, after);
        let unbiased = if count > 1.0 {
            batch_var.detach().mul_scalar(count / (count - 1.0))
        } else {
            batch_var.detach()
        };
        let m = self.momentum;
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        self.running_mean
            .update((mean.mul_scalar(1.0 - m) + batch_mean.detach().mul_scalar(m)).detach());
        self.running_var
            .update((var.mul_scalar(1.0 - m) + unbiased.mul_scalar(m)).detach());
        output
    }

    /// The output normalised with the batch's statistics (then `after`), and those
    /// statistics (mean, biased variance). On the CPU backend with f32 values, one fused
    /// operation (`CpuBatchNormBackend`: four passes over the activations for forward and
    /// backward together, ReLU included, a fifth for a residual's gradient); elsewhere Burn's
    /// `batch_norm_train`.
    fn train_batch(&self, input: Tensor<4>, after: After) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        #[cfg(feature = "flex")]
        if !burn_reference_forced()
            && dwlth_kernels::conv::on_flex(&input.device())
            && input.dtype() == burn::tensor::DType::F32
            && input.shape().num_elements() > 0
        {
            use burn::backend::Dispatch;
            use dwlth_kernels::batch_norm::CpuBatchNormBackend;
            let c = input.dims()[1];
            let moments =
                Tensor::<2>::from_dispatch(<Dispatch as CpuBatchNormBackend>::cpu_channel_moments(
                    input.clone().detach().into_dispatch(),
                ));
            let (x, gamma, beta) = (
                input.into_dispatch(),
                self.gamma.val().into_dispatch(),
                self.beta.val().into_dispatch(),
            );
            let statistics = moments.clone().into_dispatch();
            let output = Tensor::<4>::from_dispatch(match after {
                After::AddRelu(residual) => {
                    <Dispatch as CpuBatchNormBackend>::cpu_batch_norm_train_add_relu(
                        x,
                        gamma,
                        beta,
                        statistics,
                        residual.into_dispatch(),
                        self.epsilon,
                    )
                }
                After::Nothing | After::Relu => {
                    <Dispatch as CpuBatchNormBackend>::cpu_batch_norm_train(
                        x,
                        gamma,
                        beta,
                        statistics,
                        self.epsilon,
                        matches!(after, After::Relu),
                    )
                }
            });
            let mean = moments.clone().slice([0..1, 0..c]).reshape([c]);
            let var = moments.slice([1..2, 0..c]).reshape([c]);
            return (output, mean, var);
        }
        let out = batch_norm_train(input, self.gamma.val(), self.beta.val(), self.epsilon);
        (after.apply(out.output), out.mean, out.variance)
    }

    /// Evaluation mode as one per-channel affine map, `x · scale + shift` with
    /// `scale = γ / √(var + ε)` and `shift = β − mean · scale` computed on the channels
    /// (how PyTorch's CPU kernel evaluates it), then `after`. On the CPU backend with f32
    /// values one fused operation (`CpuBatchNormBackend::cpu_channel_affine`): one pass
    /// forward, one backward for the input gradient, ReLU included (a residual's gradient:
    /// one more); elsewhere Burn's element-wise operations. Gradients reach γ and β through
    /// `scale` and `shift` when they are trained.
    fn forward_eval(&self, input: Tensor<4>, after: After) -> Tensor<4> {
        let device = input.device();
        let channels = self.gamma.dims()[0];
        let mean = self.running_mean.value().to_device(&device);
        let var = self.running_var.value().to_device(&device);
        let scale = self.gamma.val() / var.add_scalar(self.epsilon).sqrt();
        let shift = self.beta.val() - mean * scale.clone();
        #[cfg(feature = "flex")]
        if !burn_reference_forced()
            && dwlth_kernels::conv::on_flex(&device)
            && input.dtype() == burn::tensor::DType::F32
            && input.shape().num_elements() > 0
        {
            use burn::backend::Dispatch;
            use dwlth_kernels::batch_norm::CpuBatchNormBackend;
            let (x, scale, shift) = (
                input.into_dispatch(),
                scale.into_dispatch(),
                shift.into_dispatch(),
            );
            return Tensor::<4>::from_dispatch(match after {
                After::AddRelu(residual) => {
                    <Dispatch as CpuBatchNormBackend>::cpu_channel_affine_add_relu(
                        x,
                        scale,
                        shift,
                        residual.into_dispatch(),
                    )
                }
                After::Nothing | After::Relu => {
                    <Dispatch as CpuBatchNormBackend>::cpu_channel_affine(
                        x,
                        scale,
                        shift,
                        matches!(after, After::Relu),
                    )
                }
            });
        }
        let output =
            input * scale.reshape([1, channels, 1, 1]) + shift.reshape([1, channels, 1, 1]);
        after.apply(output)
    }
}

#[cfg(test)]
thread_local! {
    /// Makes this thread's training-mode BatchNorms take Burn's `batch_norm_train` (tests).
    static BURN_REFERENCE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a test forced Burn's operations on this thread; always `false` outside tests.
fn burn_reference_forced() -> bool {
    #[cfg(test)]
    {
        BURN_REFERENCE.with(std::cell::Cell::get)
    }
    #[cfg(not(test))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::batch_norm;
    use burn::tensor::Distribution;

    /// The device's random generator is shared by every thread: tests that seed it hold this
    /// lock while they draw, or parallel tests would interleave their draws and each would
    /// see different data from run to run.
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn seeded(device: &Device, seed: u64) -> std::sync::MutexGuard<'static, ()> {
        let guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(seed);
        guard
    }
    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// What follows the BatchNorm in a test case.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Then {
        Nothing,
        Relu,
        /// A residual added (drawn by the test), then a ReLU.
        AddRelu,
    }

    /// `bn` then `then` on tracked copies of `x` (and of the residual `r`): the copies, the
    /// output, and the gradients of `Σ y · gy`.
    fn ours(
        bn: &BatchNorm2d,
        x: &Tensor<4>,
        r: &Tensor<4>,
        gy: &Tensor<4>,
        then: Then,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>, burn::tensor::Gradients) {
        let (x, r) = (x.clone().require_grad(), r.clone().require_grad());
        let y = match then {
            Then::Nothing => bn.forward(x.clone()),
            Then::Relu => bn.forward_relu(x.clone()),
            Then::AddRelu => bn.forward_add_relu(x.clone(), r.clone()),
        };
        let grads = (y.clone() * gy.clone()).sum().backward();
        (x, r, y, grads)
    }

    /// `y` then `then`, in Burn's operations.
    fn reference_then(y: Tensor<4>, r: &Tensor<4>, then: Then) -> Tensor<4> {
        match then {
            Then::Nothing => y,
            Then::Relu => activation::relu(y),
            Then::AddRelu => activation::relu(y + r.clone()),
        }
    }

    /// Both residuals' gradients agree (when the case has a residual).
    fn residual_gradients_agree(
        then: Then,
        (r, grads): (&Tensor<4>, &burn::tensor::Gradients),
        (r_ref, grads_ref): (&Tensor<4>, &burn::tensor::Gradients),
        label: &str,
    ) {
        if then != Then::AddRelu {
            return;
        }
        let ours = r.grad(grads).expect("residual gradient");
        let reference = r_ref.grad(grads_ref).expect("residual gradient");
        assert!(max_diff(ours, reference) < 1e-5, "{label}: residual");
    }

    #[test]
    fn evaluation_mode_equals_burns_batch_norm_with_gradients() {
        // Running statistics, trainable γ and β, training flag off: frozen statistics with
        // trained affine parameters, as when fine-tuning a robust model's head and BN shifts.
        // Then with the fused ReLU (`forward_relu`), and with frozen γ and β as an attack sees
        // them (the input gradient alone).
        let device = Device::flex().autodiff();
        let _rng = seeded(&device, 11);
        let c = 5;
        let random = |lo: f64, hi: f64| {
            Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device).without_autodiff()
        };
        for (then, trained) in [
            (Then::Nothing, true),
            (Then::Relu, true),
            (Then::Relu, false),
            (Then::AddRelu, true),
            (Then::AddRelu, false),
        ] {
            let relu = then != Then::Nothing;
            let mut bn = BatchNorm2dConfig::new(c).try_init(&device).expect("layer");
            bn.gamma = Param::from_tensor(random(0.5, 2.0).autodiff());
            bn.beta = Param::from_tensor(random(-1.0, 1.0).autodiff());
            bn.running_mean = RunningState::new(random(-3.0, 3.0));
            bn.running_var = RunningState::new(random(0.1, 4.0));
            bn.training = Param::from_bool(false);
            if !trained {
                bn.gamma = bn.gamma.set_require_grad(false);
                bn.beta = bn.beta.set_require_grad(false);
            }
            let x = Tensor::<4>::random([3, c, 4, 6], Distribution::Normal(0.0, 2.0), &device);
            let r = Tensor::<4>::random([3, c, 4, 6], Distribution::Normal(0.0, 1.0), &device);
            let gy = Tensor::<4>::random([3, c, 4, 6], Distribution::Default, &device);

            let (x_ours, r_ours, y, grads) = ours(&bn, &x, &r, &gy, then);

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
            let r_ref = r.require_grad();
            let y_ref = reference_then(y_ref, &r_ref, then);
            if relu {
                let cut = y_ref
                    .clone()
                    .equal_elem(0.0)
                    .int()
                    .sum()
                    .into_scalar::<i64>();
                assert!(cut > 20 && cut < 340, "{cut} of 360 cut");
            }
            let grads_ref = (y_ref.clone() * gy).sum().backward();

            let label = format!("{then:?}, trained {trained}");
            residual_gradients_agree(then, (&r_ours, &grads), (&r_ref, &grads_ref), &label);
            assert!(
                max_diff(y.without_autodiff(), y_ref.without_autodiff()) < 1e-5,
                "{label}"
            );
            let g = |t: &Tensor<4>, g| t.grad(g).expect("input gradient");
            assert!(
                max_diff(g(&x_ours, &grads), g(&x_ref, &grads_ref)) < 1e-5,
                "{label}"
            );
            for (name, p) in [("gamma", &gamma), ("beta", &beta)] {
                match (p.grad(&grads), p.grad(&grads_ref)) {
                    (Some(ours), Some(reference)) => {
                        assert!(max_diff(ours, reference) < 1e-4, "{label}: {name}")
                    }
                    (None, None) => assert!(!trained, "{label}: {name} has no gradient"),
                    _ => panic!("{label}: {name} gradient on one side only"),
                }
            }
        }
    }

    #[test]
    fn training_mode_equals_burns_batch_norm_train_with_gradients() {
        // The fused CPU path against Burn's batch_norm_train: output, batch statistics (through
        // the running-statistics update) and the gradients of x, γ and β. Activations far from
        // zero (mean 40, std 3) check the moments' shifted sums; a 1×1 map with two images
        // the smallest batch. Then the same with the fused ReLU (`forward_relu`) against
        // `relu(batch_norm_train)`, about half of whose outputs are cut.
        let device = Device::flex().autodiff();
        let _rng = seeded(&device, 12);
        let cases = [
            ([3, 5, 4, 6], 40.0, 3.0),
            ([2, 4, 1, 1], 0.5, 1.0),
            ([4, 3, 7, 5], -1.0, 0.2),
        ];
        for ((shape, mean, std), then) in [Then::Nothing, Then::Relu, Then::AddRelu]
            .into_iter()
            .flat_map(|then| cases.into_iter().map(move |c| (c, then)))
        {
            let relu = then != Then::Nothing;
            let c = shape[1];
            let random = |lo: f64, hi: f64| {
                Tensor::<1>::random([c], Distribution::Uniform(lo, hi), &device)
                    .without_autodiff()
                    .autodiff()
            };
            let mut bn = BatchNorm2dConfig::new(c).try_init(&device).expect("layer");
            bn.gamma = Param::from_tensor(random(0.5, 2.0));
            bn.beta = Param::from_tensor(random(-1.0, 1.0));
            let x = Tensor::<4>::random(shape, Distribution::Normal(mean, std), &device);
            let r = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
            let gy = Tensor::<4>::random(shape, Distribution::Default, &device);

            let (x_ours, r_ours, y, grads) = ours(&bn, &x, &r, &gy, then);

            let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
            let (x_ref, r_ref) = (x.require_grad(), r.require_grad());
            let reference = batch_norm_train(x_ref.clone(), gamma.clone(), beta.clone(), 1e-5);
            let output = reference_then(reference.output.clone(), &r_ref, then);
            let grads_ref = (output.clone() * gy).sum().backward();
            residual_gradients_agree(
                then,
                (&r_ours, &grads),
                (&r_ref, &grads_ref),
                &format!("{shape:?}"),
            );
            if relu && shape != [2, 4, 1, 1] {
                let cut = output
                    .clone()
                    .equal_elem(0.0)
                    .int()
                    .sum()
                    .into_scalar::<i64>();
                let total = output.shape().num_elements() as i64;
                assert!(
                    cut > total / 5 && cut < total * 4 / 5,
                    "{cut} of {total} cut"
                );
            }

            let scale = output.clone().abs().max().into_scalar::<f32>();
            let y_err = max_diff(y.without_autodiff(), output.without_autodiff());
            assert!(y_err <= 2e-5 * scale.max(1.0), "{shape:?}: output {y_err}");
            // Running mean after one step from 0 with momentum 0.1: 0.1 · batch mean.
            let running = bn.running_mean.value_sync().without_autodiff();
            let expected = reference.mean.without_autodiff().mul_scalar(0.1);
            let mean_err = max_diff(running, expected);
            assert!(mean_err < 1e-4, "{shape:?}: mean {mean_err}");
            let g = |t: &Tensor<4>, g| t.grad(g).expect("input gradient");
            let gx_ref = g(&x_ref, &grads_ref);
            // With two values per channel the input gradient cancels to rounding noise; the
            // tolerance is relative to at least 1 (γ/σ · |gy| is of that order here).
            let gx_scale = gx_ref.clone().abs().max().into_scalar::<f32>().max(1.0);
            let gx_err = max_diff(g(&x_ours, &grads), gx_ref);
            assert!(
                gx_err <= 1e-4 * gx_scale,
                "{shape:?}, {then:?}: input gradient {gx_err}"
            );
            for (name, p) in [("gamma", &gamma), ("beta", &beta)] {
                let ours = p.grad(&grads).expect("parameter gradient");
                let reference = p.grad(&grads_ref).expect("parameter gradient");
                let err = max_diff(ours, reference);
                assert!(err < 1e-3, "{shape:?}, {then:?}: {name} {err}");
            }
        }
    }

    #[test]
    fn a_resnet_training_step_has_burns_gradients() {
        // One training step of a small ResNet-18 (20 BatchNorms, maps down to 1×1) with the
        // fused BatchNorm and with Burn's: the input gradient, which crosses every BatchNorm's
        // backward, and the first and last layers' weight gradients.
        use crate::{Arch, ResNetConfig, Stem};
        let device = Device::flex().autodiff();
        let _rng = seeded(&device, 21);
        let model = ResNetConfig::new(Arch::ResNet18)
            .with_width(4)
            .with_stem(Stem::Cifar)
            .with_num_classes(3)
            .init(&device);
        let x = Tensor::<4>::random([4, 3, 8, 8], Distribution::Default, &device);
        let gy = Tensor::<2>::random([4, 3], Distribution::Default, &device);
        let step = |burn_reference: bool| {
            BURN_REFERENCE.with(|f| f.set(burn_reference));
            let model = crate::mode::independent_copy(&model);
            let x = x.clone().require_grad();
            let grads = (model.forward(x.clone()) * gy.clone()).sum().backward();
            BURN_REFERENCE.with(|f| f.set(false));
            let grad = |t: Tensor<4>| t.grad(&grads).expect("gradient").into_data();
            (
                grad(x),
                grad(model.conv1.weight.val()),
                model
                    .fc
                    .weight
                    .val()
                    .grad(&grads)
                    .expect("gradient")
                    .into_data(),
            )
        };
        let (fused, reference) = (step(false), step(true));
        // The paths round differently: equal bits would mean the switch did nothing.
        assert_ne!(fused.0, reference.0, "both steps took the same path");
        let close = |a: burn::tensor::TensorData, b: burn::tensor::TensorData, what: &str| {
            let (a, b) = (
                a.try_to_vec::<f32>().unwrap(),
                b.try_to_vec::<f32>().unwrap(),
            );
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(&b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                scale > 0.0 && err <= 1e-3 * scale,
                "{what}: {err} of {scale}"
            );
        };
        close(fused.0, reference.0, "input");
        close(fused.1, reference.1, "conv1.weight");
        close(fused.2, reference.2, "fc.weight");
    }
}
