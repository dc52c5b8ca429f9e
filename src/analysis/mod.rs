//! Analyses of why robust tickets win (paper A §5–6, paper B §III): out-of-distribution
//! detection by maximum softmax probability, the Fréchet distance between datasets, and loss
//! landscapes.

pub mod frechet;
pub mod landscape;
pub mod ood;

pub use frechet::{frechet_distance, FeatureStats};
pub use ood::{max_softmax_probability, roc_auc};
