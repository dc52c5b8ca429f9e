//! Checks of a batch every attack and evaluation runs before Burn sees it: Burn panics on a
//! label outside the classes and on an empty dimension.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use dwlth_models::io::PathStack;

use crate::error::{AdvError, Result};

/// The path of the first parameter of `model` that requires a gradient, if any: a model that
/// has one is the trainable model itself, not one of the views attacks are meant to run on.
pub(crate) fn trainable_parameter<M: Module>(model: &M) -> Option<String> {
    struct Finder(PathStack, Option<String>);
    impl ModuleVisitor for Finder {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.0.enter(name);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.1.is_none() && param.val().is_require_grad() {
                self.1 = Some(self.0.dotted());
            }
        }
    }
    let mut finder = Finder(PathStack::default(), None);
    model.visit(&mut finder);
    finder.1
}

/// Checks labels against the number of classes, naming the first bad one.
pub fn check_labels(labels: &[i64], classes: usize) -> Result<()> {
    if let Some((i, y)) = labels
        .iter()
        .enumerate()
        .find(|(_, y)| **y < 0 || **y as usize >= classes)
    {
        return Err(AdvError::InvalidInput(format!(
            "label {y} of example {i} is outside 0..{classes}"
        )));
    }
    Ok(())
}

/// One label per image and no empty dimension: Burn panics on a 0×0 convolution. (An empty
/// batch is left to the caller: an evaluation may skip it, an attack refuses it.)
pub(crate) fn check_batch_shape(dims: &[usize; 4], labels: usize) -> Result<()> {
    if dims[0] != labels {
        return Err(AdvError::InvalidInput(format!(
            "{} images but {labels} labels",
            dims[0]
        )));
    }
    if dims[1..].contains(&0) {
        return Err(AdvError::InvalidInput(format!(
            "images of shape {dims:?}: channels, height and width must be at least 1"
        )));
    }
    Ok(())
}
