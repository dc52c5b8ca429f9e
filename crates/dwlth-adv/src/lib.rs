//! # dwlth-adv
//!
//! Adversarial attacks in `[0, 1]` pixel space and robust evaluation, for any model that
//! implements [`Classifier`] (the ResNets of `dwlth-models` do):
//!
//! - [`Attack`]: FGSM, FGSM with random start, ℓ∞ / ℓ2 PGD with restarts (worst case per
//!   example kept), untargeted and targeted; BatchNorm in eval mode by default
//!   ([`AttackMode`]).
//! - [`evaluate`]: standard accuracy (SA), robust accuracy (RA, PGD-20 by default in the
//!   papers), per class, and transfer (black-box) attacks.
//! - [`sanity_checks`]: flags gradient masking.
//! - [`Trainer`]: the training loop for every [`Regime`] (ST, PGD-AT, fast AT with the
//!   catastrophic-overfitting guard, random smoothing), with schedules, best-SA/RA selection,
//!   atomic checkpoints and resume.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Int, Tensor};
//! use dwlth_adv::{Attack, AttackMode};
//! use dwlth_models::{Arch, ResNetConfig, Stem};
//!
//! let device = Device::flex().autodiff();
//! let model = ResNetConfig::new(Arch::ResNet18).with_width(2).with_stem(Stem::Cifar)
//!     .with_num_classes(10).init(&device);
//! let frozen = AttackMode::Eval.view(&model);
//! let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
//! let y = Tensor::<1, Int>::from_ints([3, 7], &device);
//! let x_adv = Attack::pgd(8.0 / 255.0, 2.0 / 255.0, 3).perturb(&frozen, x.clone(), y).unwrap();
//! let linf = (x_adv - x.without_autodiff()).abs().max().into_scalar::<f32>();
//! assert!(linf <= 8.0 / 255.0 + 1e-6);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attack;
mod checks;
pub mod classifier;
pub mod error;
pub mod eval;
pub mod fraction;
pub mod sanity;
pub mod train;

pub use attack::{Attack, AttackMode, Norm};
pub use checks::check_labels;
pub use classifier::Classifier;
pub use error::{AdvError, Result};
pub use eval::{evaluate, predict, EvalReport, Tally};
pub use fraction::parse_fraction;
/// The progress-bar crate of [`Trainer::bars`], re-exported so versions match.
pub use indicatif;
pub use sanity::{sanity_checks, Check, SanityReport};
pub use train::{
    Batch, EpochBatches, EpochRecord, EvalSet, InMemory, IntoBatch, LrSchedule, OverfitGuard,
    Regime, Schedule, TrainConfig, TrainOutcome, Trainer,
};
