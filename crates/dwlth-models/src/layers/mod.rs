//! Building blocks a downstream crate can put into its own model: masked convolution and linear
//! layers, PyTorch-exact BatchNorm, and the in-model input normalisation.

mod batch_norm;
#[cfg(feature = "flex")]
mod batch_norm_cpu;
mod mask;
mod masked_conv2d;
mod masked_linear;
mod normalize;

pub use batch_norm::{BatchNorm2d, BatchNorm2dConfig};
// Crate-private: its CPU kernels take f32 4-D tensors only, which `BatchNorm2d` guarantees.
#[cfg(feature = "flex")]
pub(crate) use batch_norm_cpu::CpuBatchNormBackend;
pub use mask::{MaskStats, Masked};
pub use masked_conv2d::{MaskedConv2d, MaskedConv2dConfig};
pub use masked_linear::{MaskedLinear, MaskedLinearConfig};
pub use normalize::{Normalize, NormalizeConfig};
