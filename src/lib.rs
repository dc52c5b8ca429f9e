//! # dwlth — double-win lottery tickets on Burn
//!
//! Sparse subnetworks of pre-trained ResNets that keep the dense model's accuracy *and*
//! adversarial robustness, under standard and adversarial fine-tuning, even with little data.
//!
//! This crate is the facade: it re-exports the member crates and holds the command-line tool.
//!
//! - [`models`]: torchvision-exact ResNets with masked layers, in-model normalisation,
//!   checkpoint import (torchvision, robustness, fast_adversarial, Double-Win-LTH) and export.
//! - [`data`], [`adv`], [`prune`]: datasets, attacks and training, pruning.
//! - [`kernels`]: the CPU convolution and fused BatchNorm the layers run; [`sparse`]: the
//!   sparse inference engine that turns a ticket's sparsity into speed.
//! - [`store`]: the one atomic writer, crash-consistent checkpoints and the content-addressed
//!   stage store every result is kept in.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analysis;
pub mod commands;
pub mod error;
pub mod pipeline;
pub mod report;
mod toml_keys;

/// The Burn this crate is built with (one feature set for every member crate): depend on
/// `dwlth` alone and write `dwlth::burn::…`, so no second Burn is built.
pub use burn;
pub use dwlth_adv as adv;
pub use dwlth_data as data;
pub use dwlth_kernels as kernels;
pub use dwlth_models as models;
pub use dwlth_prune as prune;
pub use dwlth_sparse as sparse;
pub use dwlth_store as store;
pub use error::{DwlthError, Result};
