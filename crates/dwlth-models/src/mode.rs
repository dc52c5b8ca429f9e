//! Explicit train / evaluation modes.
//!
//! Burn runs BatchNorm in training mode (batch statistics, running statistics updated) iff the
//! input lives on an autodiff device *and* the layer's training flag is on. Attacks need the
//! third combination PyTorch users write as `model.eval()` plus `x.requires_grad_()`:
//! running statistics, no parameter gradients, and a gradient with respect to the input.
//! [`attack_view`] gives exactly that.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor};
//! use burn::nn::loss::CrossEntropyLossConfig;
//! use dwlth_models::{mode::attack_view, Arch, ResNetConfig, Stem};
//!
//! let device = Device::flex().autodiff();
//! let model = ResNetConfig::new(Arch::ResNet18).with_width(2).with_stem(Stem::Cifar)
//!     .with_num_classes(3).init(&device);
//! let frozen = attack_view(&model);
//! let x = Tensor::<4>::ones([1, 3, 8, 8], &device).require_grad();
//! let y = Tensor::<1, Int>::from_ints([1], &device);
//! let loss = CrossEntropyLossConfig::new().init(&device).forward(frozen.forward(x.clone()), y);
//! let grads = loss.backward();
//! let input_gradient = x.grad(&grads).expect("inputs get a gradient");
//! assert_eq!(input_gradient.dims(), [1, 3, 8, 8]);
//! ```

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

struct Materializer;

impl ModuleVisitor for Materializer {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Initialises every lazy parameter of `module`.
///
/// Lazy parameters share their gradient setting between clones; freezing a clone of a
/// never-run model would otherwise freeze the original as well.
pub fn materialize<M: Module>(module: &M) {
    module.visit(&mut Materializer);
}

/// A copy of `model` for attacks and evaluation with input gradients: BatchNorm uses (and
/// never changes) its running statistics, parameters require no gradient, and an input
/// created with `.require_grad()` on an autodiff device receives one. The original model is
/// left trainable.
pub fn attack_view<M: Module>(model: &M) -> M {
    materialize(model);
    model.clone().freeze()
}

/// A copy of `model` whose parameters require no gradient but whose BatchNorm layers stay in
/// training mode (batch statistics, running statistics updated), as the reference code does
/// when it crafts adversarial examples during adversarial training.
pub fn train_mode_attack_view<M: Module>(model: &M) -> M {
    materialize(model);
    model.clone().no_grad()
}

/// A copy of `module` that shares nothing mutable with it.
///
/// `clone()` on a Burn module shares the BatchNorm running statistics between the copies (they
/// live behind an `Arc`), so training a clone also moves the original's statistics. Rewinding
/// to pre-trained weights (IMP) or fine-tuning several copies of one model needs copies that
/// do not: this one re-creates every running state. It keeps the module's device, autodiff
/// included.
pub fn independent_copy<M: Module>(module: &M) -> M {
    materialize(module);
    let autodiff = module.devices().iter().any(|d| d.is_autodiff());
    if autodiff {
        module.clone().train()
    } else {
        module.valid()
    }
}
