//! The one error type of `dwlth-adv`.

/// Everything an attack, a training run or an evaluation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvError {
    /// From the model crate.
    #[error(transparent)]
    Model(#[from] dwlth_models::ModelError),
    /// A hyper-parameter is out of range (negative ε, zero steps, ...).
    #[error("invalid setting `{name}` = {value}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = AdvError> = std::result::Result<T, E>;
