//! What every masked layer shares: a binary mask stored as a parameter that is saved with the
//! module, never receives a gradient, and is applied in `forward`.
//!
//! Why the mask lives in a `Param` with gradients switched off rather than in a plain field:
//! Burn saves `Param`s and `RunningState`s with the record, but not plain tensors, `Ignored<T>`
//! or `#[module(skip)]` fields. Why it is applied in `forward` rather than after each optimiser
//! step: re-masking after the step lets momentum carry pruned weights away from zero. With the
//! mask applied in `forward`, the gradient at a pruned position is exactly zero; with the weight
//! itself zero there too, coupled weight decay and momentum add nothing, so pruned weights stay
//! exactly zero through SGD. Every forward also detaches the mask, so even a user's
//! `unfreeze()` cannot make the optimiser train it.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use crate::error::{ModelError, Result};

/// Kept and total counts of one mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaskStats {
    /// Number of weights the mask keeps (ones).
    pub kept: usize,
    /// Number of weights the mask covers.
    pub total: usize,
}

impl MaskStats {
    /// Fraction of pruned weights, in `[0, 1]`.
    pub fn sparsity(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            1.0 - self.kept as f64 / self.total as f64
        }
    }
}

/// A layer whose weight is multiplied by a binary mask in `forward`.
///
/// Pruning code works through this trait, so it does not need to know the layer type.
pub trait Masked {
    /// Shape of the weight (and of the mask).
    fn weight_shape(&self) -> Vec<usize>;

    /// The current mask as a float tensor of zeros and ones.
    fn mask_data(&self) -> TensorData;

    /// Kept and total counts of the mask.
    fn mask_stats(&self) -> MaskStats {
        let data = self.mask_data();
        let values = data.iter::<f32>();
        let (kept, total) = values.fold((0, 0), |(k, t), v| (k + usize::from(v != 0.0), t + 1));
        MaskStats { kept, total }
    }
}

/// Checks that `data` is a binary mask of `shape`, naming `layer` otherwise.
pub(crate) fn validate_mask(layer: &str, shape: &[usize], data: &TensorData) -> Result<()> {
    if data.shape().as_slice() != shape {
        return Err(ModelError::InvalidMask {
            layer: layer.to_string(),
            reason: format!(
                "shape {:?} differs from the weight's {:?}",
                data.shape(),
                shape
            ),
        });
    }
    let values = data
        .try_to_vec_as::<f32>()
        .map_err(|e| ModelError::InvalidMask {
            layer: layer.to_string(),
            reason: format!("cannot read values: {e:?}"),
        })?;
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| **v != 0.0 && **v != 1.0)
    {
        return Err(ModelError::InvalidMask {
            layer: layer.to_string(),
            reason: format!("value {v} at flat index {i} is neither 0 nor 1"),
        });
    }
    Ok(())
}

/// Replaces the value of `param` by a fresh leaf tensor, keeping its id and its gradient setting.
///
/// `Param::map` with an arithmetic closure on an autodiff device would store a non-leaf tensor
/// (no gradient, then "graph tape already consumed"); detaching first makes a proper leaf.
pub(crate) fn replace_value<const D: usize>(
    param: Param<Tensor<D>>,
    value: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Param<Tensor<D>> {
    param.map(|old| {
        let require_grad = old.is_require_grad();
        let new = value(old).detach();
        if require_grad {
            new.require_grad()
        } else {
            new
        }
    })
}

/// A parameter that never requires a gradient (masks, normalisation statistics).
pub(crate) fn frozen_param<const D: usize>(value: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(value).set_require_grad(false)
}
