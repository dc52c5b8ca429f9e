//! # dwlth-data
//!
//! Datasets and the input pipeline of the double-win experiments: CIFAR-10/100, SVHN, the IDX
//! family and image folders, the papers' transforms and data-limited subsets. Knows nothing
//! of models.

pub mod error;

pub use error::{DataError, Result};
