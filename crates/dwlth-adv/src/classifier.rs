//! What an attack needs of a model: logits of images in `[0, 1]`.

use burn::module::Module;
use dwlth_models::ResNet;

use burn::tensor::Tensor;

/// A classifier of `[N, C, H, W]` images in `[0, 1]` (normalisation inside).
///
/// Implement it for your own model to attack it. For white-box attacks the model must live on
/// an autodiff device; which BatchNorm mode it runs in is the caller's choice of view (see
/// [`AttackMode`](crate::AttackMode)).
pub trait Classifier: Module {
    /// Logits `[N, classes]`.
    fn logits(&self, images: Tensor<4>) -> Tensor<2>;
}

impl Classifier for ResNet {
    fn logits(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images)
    }
}
