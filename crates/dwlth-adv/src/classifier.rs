//! What an attack needs of a model: logits of images in `[0, 1]`.

use burn::module::Module;
use dwlth_models::ResNet;

use burn::tensor::Tensor;

/// A classifier of `[N, C, H, W]` images in `[0, 1]` (normalisation inside).
///
/// Implement it for your own model to attack it. For white-box attacks the model must live on
/// an autodiff device; which BatchNorm mode it runs in is the caller's choice of view (see
/// [`AttackMode`](crate::AttackMode)).
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::{Device, Distribution, Int, Tensor};
/// use dwlth_adv::{evaluate, Attack, AttackMode, Classifier};
///
/// /// A model of your own: a linear classifier of 4×4 RGB images.
/// #[derive(Module, Debug)]
/// struct Linear4x4 {
///     fc: Linear,
/// }
///
/// impl Classifier for Linear4x4 {
///     fn logits(&self, images: Tensor<4>) -> Tensor<2> {
///         self.fc.forward(images.flatten(1, 3))
///     }
/// }
///
/// let device = Device::flex().autodiff();
/// let model = Linear4x4 { fc: LinearConfig::new(48, 3).init(&device) };
/// let x = Tensor::<4>::random([4, 3, 4, 4], Distribution::Uniform(0.0, 1.0), &device);
/// let y = Tensor::<1, Int>::from_ints([0, 1, 2, 0], &device);
/// // Attacks run on a view whose BatchNorm mode you chose, never on the trainable model.
/// let view = AttackMode::Eval.view(&model);
/// let x_adv = Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 5).perturb(&view, x.clone(), y.clone())?;
/// assert_eq!(x_adv.dims(), [4, 3, 4, 4]);
/// let report = evaluate(&view, [(x, y)], Some(&Attack::fgsm(8.0 / 255.0)), None, 3)?;
/// assert!(report.ra.unwrap() <= 1.0);
/// # Ok::<(), dwlth_adv::AdvError>(())
/// ```
pub trait Classifier: Module {
    /// Logits `[N, classes]`.
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;
}

impl Classifier for ResNet {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}
