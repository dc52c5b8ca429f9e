//! Building blocks a downstream crate can put into its own model: masked convolution and linear
//! layers, PyTorch-exact BatchNorm, and the in-model input normalisation.

mod batch_norm;
mod mask;
mod masked_conv2d;
mod masked_linear;
mod normalize;
mod param_masks;

pub use batch_norm::{BatchNorm2d, BatchNorm2dConfig};
pub use mask::{MaskStats, Masked};
pub use masked_conv2d::{MaskedConv2d, MaskedConv2dConfig};
pub use masked_linear::{MaskedLinear, MaskedLinearConfig};
pub use normalize::{Normalize, NormalizeConfig};
pub use param_masks::ParamMasks;
