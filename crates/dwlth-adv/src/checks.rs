//! Checks of a batch every attack and evaluation runs before Burn sees it: Burn panics on a
//! label outside the classes and on an empty dimension.

use crate::error::{AdvError, Result};

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
