//! # dwlth-prune
//!
//! Masks and pruning for any model built from `dwlth-models`' masked layers: one-shot and
//! iterative magnitude pruning with rewinding, random and structured pruning, learnable masks,
//! and mask analyses.

pub mod error;

pub use error::{PruneError, Result};
