//! Analyses of why robust tickets win (paper A §5–6, paper B §III): out-of-distribution
//! detection by maximum softmax probability, and the Fréchet distance between datasets.

pub mod frechet;
pub mod ood;

pub use frechet::{frechet_distance, FeatureStats};
pub use ood::{max_softmax_probability, roc_auc};
