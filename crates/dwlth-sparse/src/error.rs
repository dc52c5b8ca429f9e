//! The crate's one error type.

use dwlth_models::ModelError;

/// Why a model cannot be compiled into the engine, or an input cannot be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SparseError {
    /// From the model crate (reading a layer's tensors).
    #[error(transparent)]
    Model(#[from] ModelError),

    /// A tensor's shape differs from what the layer needs.
    #[error("tensor `{key}` has shape {found:?} but the engine expects {expected:?}")]
    ShapeMismatch {
        /// The tensor's key.
        key: String,
        /// The shape needed.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },

    /// A tensor's values are unusable (NaN, non-positive variance, ...).
    #[error("invalid value in `{key}`: {reason}")]
    InvalidValue {
        /// The tensor or setting.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A layer cannot be compiled into the engine.
    #[error("layer `{layer}` is not supported by sparse inference: {reason}")]
    UnsupportedLayer {
        /// The layer's torchvision path.
        layer: String,
        /// What is not supported.
        reason: String,
    },

    /// An input buffer does not match the shape it is said to have.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// `Result` with [`SparseError`].
pub type Result<T, E = SparseError> = std::result::Result<T, E>;
