//! # dwlth-prune
//!
//! Masks and pruning for any Burn model — not only ResNets: models built from `dwlth-models`'
//! masked layers (any module with sibling `weight` and `mask` parameters) and models built from
//! Burn's own `Conv2d` and `Linear` (see [`layers`] for how the two differ, and [`apply_masks`]
//! for what keeps pruned weights at zero through training):
//!
//! - [`MaskSet`]: named binary masks, saved as compact `u8` safetensors with metadata; reads
//!   Double-Win-LTH / `torch.nn.utils.prune` masks (`X.weight_mask`).
//! - [`Prunable`]: which tensors may be pruned (default: every convolution, never the head).
//! - [`PruneMethod`]: global or layer-wise magnitude (OMP), random, and structured (row, kernel,
//!   channel) criteria, with `torch.nn.utils.prune`'s counting; [`random_like`] for random
//!   masks matched layer by layer.
//! - [`Imp`]: iterative magnitude pruning with rewinding, resumable round by round.
//! - [`learn_mask`]: learnable mask pruning (LMP) with the weights frozen at θ_p.
//! - [`param_masks`] / [`prune_optimizer_state`]: zero gradients and optimiser state at pruned
//!   positions, so that stored pruned weights stay exactly zero in every training path.
//! - [`analysis`]: sparsity tables, mask similarity, zero kernels per stage, heat maps.
//!
//! ```
//! use burn::tensor::Device;
//! use dwlth_models::{Arch, ResNetConfig, Stem};
//! use dwlth_prune::{apply_masks, masked_weights, Prunable, PruneMethod};
//!
//! let device = Device::flex();
//! let model = ResNetConfig::new(Arch::ResNet18).with_width(2).with_stem(Stem::Cifar)
//!     .with_num_classes(10).init(&device);
//! // One-shot global magnitude pruning to 50 % sparsity of the convolutions.
//! let masks = PruneMethod::global_magnitude()
//!     .prune(&masked_weights(&model), &Prunable::convolutions(), 0.5)
//!     .unwrap();
//! assert!((masks.sparsity() - 0.5).abs() < 1e-3);
//! let ticket = apply_masks(model, &masks).unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analysis;
pub mod apply;
pub mod criteria;
pub mod error;
pub mod imp;
pub mod layers;
pub mod lmp;
pub mod mask_set;
pub mod rng;
pub mod select;
pub mod selection;

pub use apply::{apply_masks, param_masks, prune_optimizer_state, pruned_nonzero};
pub use criteria::{random_like, Granularity, Norm, PruneMethod, Scope};
pub use error::{PruneError, Result};
pub use imp::{Imp, ImpConfig, ImpRound, RoundContext};
pub use layers::{masked_weights, MaskedWeight, WeightKind};
pub use lmp::{learn_mask, LmpConfig};
pub use mask_set::{LayerMask, MaskSet};
pub use selection::Prunable;
