//! ℓ∞ and ℓ2 attacks in `[0, 1]` pixel space: FGSM, FGSM with random start, PGD with restarts,
//! untargeted and targeted.
//!
//! One update rule covers them all (Madry et al. 2018; Wong et al. 2020):
//!
//! ```text
//! x₀ = x                      (or x + U(−ε, ε), clamped to [0, 1], with a random start)
//! ℓ∞: x ← x ± α · sign(∇ₓ L);  x ← min(max(x, x_nat − ε), x_nat + ε);  x ← clamp(x, 0, 1)
//! ℓ2: x ← x ± α · ∇ₓL / ‖∇ₓL‖; δ ← δ · min(1, ε / ‖δ‖);                x ← clamp(x_nat + δ, 0, 1)
//! ```
//!
//! with `+` for untargeted attacks (raise the loss of the true label) and `−` for targeted ones
//! (lower the loss of the target). `L` is the mean cross-entropy, as in PyTorch code; norms are
//! per example. FGSM is one step of size ε without random start; FGSM-RS one step of size α
//! from a random start.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::classifier::Classifier;
use crate::error::{invalid, AdvError, Result};

/// The threat model's norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// ℓ∞: every pixel moves by at most ε.
    Linf,
    /// ℓ2: the perturbation's Euclidean norm is at most ε.
    L2,
}

impl std::str::FromStr for Norm {
    type Err = AdvError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linf" | "l_inf" | "inf" => Ok(Norm::Linf),
            "l2" => Ok(Norm::L2),
            _ => Err(invalid("norm", s, "expected linf or l2")),
        }
    }
}

/// An iterative gradient attack; FGSM and FGSM-RS are one-step special cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attack {
    /// Threat model.
    pub norm: Norm,
    /// Radius of the perturbation ball, in `[0, 1]` pixel units.
    pub eps: f64,
    /// Step size.
    pub alpha: f64,
    /// Gradient steps (≥ 1).
    pub steps: usize,
    /// Independent runs per example; the worst case of each example is kept (≥ 1).
    pub restarts: usize,
    /// Start from a uniformly random point of the ball (ℓ∞) or a random direction and radius
    /// (ℓ2) instead of the clean image.
    pub random_start: bool,
}

impl Attack {
    /// FGSM (Goodfellow et al.): one ℓ∞ step of size ε from the clean image.
    pub fn fgsm(eps: f64) -> Self {
        Self {
            norm: Norm::Linf,
            eps,
            alpha: eps,
            steps: 1,
            restarts: 1,
            random_start: false,
        }
    }

    /// FGSM with random start (Wong et al. 2020, "fast adversarial training"): one ℓ∞ step of
    /// size `alpha` (they use 1.25 ε) from a uniform random point of the ball.
    pub fn fgsm_rs(eps: f64, alpha: f64) -> Self {
        Self {
            alpha,
            random_start: true,
            ..Self::fgsm(eps)
        }
    }

    /// ℓ∞ PGD with random start (Madry et al.): the papers' PGD-k with ε 8/255, α 2/255.
    pub fn pgd(eps: f64, alpha: f64, steps: usize) -> Self {
        Self {
            norm: Norm::Linf,
            eps,
            alpha,
            steps,
            restarts: 1,
            random_start: true,
        }
    }

    /// The papers' evaluation attack: PGD-20, ε 8/255, α 2/255.
    pub fn pgd20() -> Self {
        Self::pgd(8.0 / 255.0, 2.0 / 255.0, 20)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(invalid("eps", self.eps, "must be finite and non-negative"));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(invalid(
                "alpha",
                self.alpha,
                "must be finite and non-negative",
            ));
        }
        if self.steps == 0 {
            return Err(invalid("steps", 0, "an attack needs at least one step"));
        }
        if self.restarts == 0 {
            return Err(invalid("restarts", 0, "an attack needs at least one run"));
        }
        Ok(())
    }

    /// Untargeted adversarial examples for `images` with true `labels`.
    ///
    /// `model` must be on an autodiff device; give it the view whose BatchNorm mode you want
    /// (usually [`AttackMode::Eval`]). Returns images on the input's device without autodiff.
    pub fn perturb<C: Classifier>(
        &self,
        model: &C,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
    ) -> Result<Tensor<4>> {
        self.run(model, images, labels, false)
    }

    /// Targeted adversarial examples pushing `images` towards the classes `targets`.
    pub fn perturb_targeted<C: Classifier>(
        &self,
        model: &C,
        images: Tensor<4>,
        targets: Tensor<1, Int>,
    ) -> Result<Tensor<4>> {
        self.run(model, images, targets, true)
    }

    fn run<C: Classifier>(
        &self,
        model: &C,
        images: Tensor<4>,
        labels: Tensor<1, Int>,
        targeted: bool,
    ) -> Result<Tensor<4>> {
        self.validate()?;
        check_inputs(model, &images, &labels)?;
        let host_labels = labels_on_host(&labels)?;
        let x = images.without_autodiff();
        let y = labels;
        let mut best = self.run_once(model, &x, (&y, &host_labels), targeted)?;
        if self.restarts > 1 {
            let mut best_score = score(model, &best, &y, targeted);
            for _ in 1..self.restarts {
                let candidate = self.run_once(model, &x, (&y, &host_labels), targeted)?;
                let s = score(model, &candidate, &y, targeted);
                let better = s.clone().greater(best_score.clone());
                let [n, c, h, w] = candidate.dims();
                let mask = better.clone().reshape([n, 1, 1, 1]).expand([n, c, h, w]);
                best = best.mask_where(mask, candidate);
                best_score = best_score.mask_where(better, s);
            }
        }
        Ok(best)
    }

    /// One run of the attack; `host_labels` are `y` on the host, checked against the number
    /// of classes of the first logits (Burn panics on a label outside them).
    fn run_once<C: Classifier>(
        &self,
        model: &C,
        x: &Tensor<4>,
        (y, host_labels): (&Tensor<1, Int>, &[i64]),
        targeted: bool,
    ) -> Result<Tensor<4>> {
        let (eps, alpha) = (self.eps as f32, self.alpha as f32);
        let mut xa = if self.random_start {
            random_start(x, self.norm, eps)
        } else {
            x.clone()
        };
        let ce = CrossEntropyLossConfig::new().init(&x.device());
        for step in 0..self.steps {
            let xg = xa.clone().autodiff().require_grad();
            let logits = model.logits(xg.clone());
            if step == 0 {
                crate::checks::check_labels(host_labels, logits.dims()[1])?;
            }
            let loss = ce.forward(logits, y.clone());
            let grads = loss.backward();
            let g = xg
                .grad(&grads)
                .ok_or_else(|| AdvError::InvalidInput("the input received no gradient".into()))?
                .without_autodiff();
            let step = match self.norm {
                Norm::Linf => g.sign().mul_scalar(alpha),
                Norm::L2 => {
                    let norm = per_example_norm(g.clone()).clamp_min(1e-12);
                    g.div(norm).mul_scalar(alpha)
                }
            };
            xa = if targeted { xa - step } else { xa + step };
            xa = project(xa, x, self.norm, eps);
        }
        Ok(xa)
    }
}

/// Per-example ℓ2 norm, shaped `[N, 1, 1, 1]` for broadcasting.
fn per_example_norm(t: Tensor<4>) -> Tensor<4> {
    let [n, _, _, _] = t.dims();
    t.square()
        .reshape([n as i32, -1])
        .sum_dim(1)
        .sqrt()
        .reshape([n, 1, 1, 1])
}

/// Projects `xa` onto the ε-ball around `x` and then onto `[0, 1]`.
fn project(xa: Tensor<4>, x: &Tensor<4>, norm: Norm, eps: f32) -> Tensor<4> {
    match norm {
        Norm::Linf => xa
            .max_pair(x.clone().sub_scalar(eps))
            .min_pair(x.clone().add_scalar(eps))
            .clamp(0.0, 1.0),
        Norm::L2 => {
            let delta = xa - x.clone();
            let n = per_example_norm(delta.clone()).clamp_min(1e-12);
            let factor = n.recip().mul_scalar(eps).clamp_max(1.0);
            (x.clone() + delta * factor).clamp(0.0, 1.0)
        }
    }
}

/// A random start in the ε-ball, drawn on the host so that a seed gives the same starts on
/// every device ([`dwlth_models::random`]).
fn random_start(x: &Tensor<4>, norm: Norm, eps: f32) -> Tensor<4> {
    use dwlth_models::random::random;
    let device = x.device();
    let shape = x.shape();
    let delta = match norm {
        Norm::Linf => random(
            shape.dims::<4>(),
            Distribution::Uniform(-(eps as f64), eps as f64),
            &device,
        ),
        Norm::L2 => {
            // A uniformly random direction, scaled to a uniform radius in [0, ε].
            let [n, _, _, _] = x.dims();
            let d = random(shape.dims::<4>(), Distribution::Normal(0.0, 1.0), &device);
            let unit = d.clone().div(per_example_norm(d).clamp_min(1e-12));
            let r = random([n, 1, 1, 1], Distribution::Uniform(0.0, 1.0), &device);
            unit * r.mul_scalar(eps)
        }
    };
    (x.clone() + delta).clamp(0.0, 1.0)
}

/// Per-example attack success score: higher is worse for the model. Misclassification (or
/// reaching the target) dominates; the loss breaks ties.
fn score<C: Classifier>(
    model: &C,
    xa: &Tensor<4>,
    y: &Tensor<1, Int>,
    targeted: bool,
) -> Tensor<1> {
    let logits = model.logits(xa.clone().autodiff()).without_autodiff();
    let [n, _] = logits.dims();
    let logp = log_softmax(logits.clone(), 1);
    let nll = logp.gather(1, y.clone().reshape([n, 1])).reshape([n]).neg();
    let hit = logits.argmax(1).reshape([n]).equal(y.clone()).float();
    if targeted {
        hit.mul_scalar(1e6) - nll
    } else {
        hit.neg().add_scalar(1.0).mul_scalar(1e6) + nll
    }
}

/// How far outside `[0, 1]` a pixel may lie before it is refused: resampling in `f32` can
/// overshoot by a rounding error.
const PIXEL_SLACK: f32 = 1e-3;

fn check_inputs<C: Classifier>(
    model: &C,
    images: &Tensor<4>,
    labels: &Tensor<1, Int>,
) -> Result<()> {
    if !model.devices().iter().any(|d| d.is_autodiff()) {
        return Err(AdvError::InvalidInput(
            "white-box attacks need the model on an autodiff device (`Device::flex().autodiff()`)"
                .into(),
        ));
    }
    if let Some(name) = crate::checks::trainable_parameter(model) {
        return Err(AdvError::InvalidInput(format!(
            "the model is trainable (parameter `{name}` requires a gradient): attack a view of it, \
             `AttackMode::Eval.view(&model)` (BatchNorm on running statistics, as `model.eval()`) \
             or `AttackMode::Train.view(&model)` (batch statistics, as the reference code crafts \
             during adversarial training), so that the attack neither computes parameter \
             gradients nor changes statistics you did not choose to change"
        )));
    }
    let dims = images.dims();
    let [m] = labels.dims();
    crate::checks::check_batch_shape(&dims, m)?;
    if dims[0] == 0 {
        return Err(AdvError::InvalidInput(
            "an empty batch has nothing to attack".into(),
        ));
    }
    check_pixels(images)
}

/// Attacks move pixels inside `[0, 1]`: NaN, infinities or other ranges (0–255 bytes, already
/// normalised images) would make the ε-ball meaningless. One reduction, read back once.
fn check_pixels(images: &Tensor<4>) -> Result<()> {
    let x = images.clone().without_autodiff();
    let bad = x
        .clone()
        .is_nan()
        .bool_or(x.clone().lower_elem(-PIXEL_SLACK))
        .bool_or(x.greater_elem(1.0 + PIXEL_SLACK));
    if bad.any().int().into_scalar::<i64>() == 0 {
        return Ok(());
    }
    let values = images
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec_as::<f32>()
        .unwrap_or_default();
    let found = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(-PIXEL_SLACK..=1.0 + PIXEL_SLACK).contains(*v));
    Err(AdvError::InvalidInput(match found {
        Some((i, v)) => format!("pixel {i} of the images is {v}; attacks need values in [0, 1]"),
        None => "the images hold values outside [0, 1]; attacks need values in [0, 1]".into(),
    }))
}

/// The labels on the host, to check them before Burn indexes with them.
fn labels_on_host(labels: &Tensor<1, Int>) -> Result<Vec<i64>> {
    labels
        .clone()
        .into_data()
        .convert::<i64>()
        .try_to_vec_as::<i64>()
        .map_err(|e| AdvError::InvalidInput(format!("cannot read the labels: {e:?}")))
}

/// Which BatchNorm mode the attacked model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackMode {
    /// Running statistics, untouched (the default, and always at evaluation).
    #[default]
    Eval,
    /// Batch statistics, with running statistics updated, as the reference code does while
    /// crafting training examples.
    Train,
}

impl AttackMode {
    /// The view of `model` to attack in this mode (parameters never get gradients).
    pub fn view<M: Module>(self, model: &M) -> M {
        match self {
            AttackMode::Eval => dwlth_models::mode::attack_view(model),
            AttackMode::Train => dwlth_models::mode::train_mode_attack_view(model),
        }
    }
}
