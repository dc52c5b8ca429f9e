//! # dwlth-models
//!
//! torchvision-exact ResNets built from masked layers, for finding and transferring sparse
//! subnetworks ("tickets") of pre-trained models.
//!
//! - [`ResNetConfig`] / [`ResNet`]: ResNet-18/34/50/101 with torchvision's topology and
//!   parameter names, any width, ImageNet or CIFAR stem, any input channels and classes.
//! - [`layers`]: [`MaskedConv2d`], [`MaskedLinear`] (a binary mask saved with the module,
//!   never trained, applied in `forward`) and [`Normalize`] (inputs and ε in `[0, 1]`).
//!   Downstream crates build their own masked models from them.
//! - [`mode`]: the explicit evaluation mode attacks need — eval-mode BatchNorm *with* input
//!   gradients.
//! - [`io`]: import of torchvision, `robustness`, fast_adversarial and Double-Win-LTH
//!   checkpoints; export to safetensors with torchvision names.
//!
//! The CPU kernels the layers run (convolution, fused BatchNorm) are `dwlth-kernels`; the
//! sparse inference engine for tickets is `dwlth-sparse`.
//! - [`DeviceSpec`]: `cpu`, `cuda[:N]`, `wgpu` chosen at run time.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod device;
pub mod error;
pub mod io;
pub mod layers;
pub mod mode;
pub mod random;
pub mod resnet;

pub use device::DeviceSpec;
pub use error::{ModelError, Result};
pub use layers::{
    BatchNorm2d, BatchNorm2dConfig, MaskStats, Masked, MaskedConv2d, MaskedConv2dConfig,
    MaskedLinear, MaskedLinearConfig, Normalize, NormalizeConfig, ParamMasks,
};
pub use resnet::{Arch, ResNet, ResNetConfig, ResidualBlock, Stem};
