//! The one error type of `dwlth-adv`.

use std::path::PathBuf;

/// Everything an attack, a training run or an evaluation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdvError {
    /// From the store (atomic writes, checkpoints, settings checks).
    #[error(transparent)]
    Store(#[from] dwlth_store::StoreError),

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

    /// Inputs or labels do not fit the model or each other.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint or metrics file is malformed.
    #[error("`{path}` is not a valid {what}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = AdvError> = std::result::Result<T, E>;

pub(crate) fn invalid(name: &'static str, value: impl ToString, reason: &str) -> AdvError {
    AdvError::InvalidSetting {
        name,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
