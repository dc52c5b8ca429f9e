//! # dwlth-adv
//!
//! Adversarial attacks in `[0, 1]` pixel space (FGSM, FGSM-RS, PGD), the training regimes of
//! the papers (ST, PGD-AT, fast AT, random smoothing) and SA/RA evaluation, on the models of
//! `dwlth-models`.

pub mod error;

pub use error::{AdvError, Result};
