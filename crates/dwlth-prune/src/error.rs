//! The one error type of `dwlth-prune`.

use std::path::PathBuf;

/// Everything pruning can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// From the store (atomic writes, checkpoints, settings checks).
    #[error(transparent)]
    Store(#[from] dwlth_store::StoreError),

    /// From the model crate (bad weights file, device, ...).
    #[error(transparent)]
    Model(#[from] dwlth_models::ModelError),

    /// A sparsity or pruning rate outside `[0, 1)` (or not finite).
    #[error("{what} {value} is outside [0, 1)")]
    InvalidFraction {
        /// Which setting (`sparsity`, `pruning rate`).
        what: &'static str,
        /// The value given.
        value: f64,
    },

    /// A mask names a layer the model does not have.
    #[error("the model has no prunable layer `{layer}` (it has: {known})")]
    UnknownLayer {
        /// The mask's layer name.
        layer: String,
        /// A few of the model's layer names.
        known: String,
    },

    /// A mask's shape differs from its layer's weight.
    #[error("mask for `{layer}` has shape {found:?}, the layer's weight {expected:?}")]
    ShapeMismatch {
        /// The layer.
        layer: String,
        /// The weight's shape.
        expected: Vec<usize>,
        /// The mask's shape.
        found: Vec<usize>,
    },

    /// A mask whose values do not fill its shape, or whose shape is empty.
    #[error("invalid mask for `{layer}`: {reason}")]
    InvalidMask {
        /// The layer.
        layer: String,
        /// What is wrong.
        reason: String,
    },

    /// A model layer that the mask set must cover is missing from it.
    #[error("the mask set has no mask for layer `{layer}`")]
    MissingLayer {
        /// The layer.
        layer: String,
    },

    /// The selection of prunable tensors is empty.
    #[error("no prunable tensor selected ({0})")]
    NothingPrunable(String),

    /// A granularity does not apply to a layer (row-wise pruning of a linear layer, ...).
    #[error("granularity `{granularity}` does not apply to `{layer}` of shape {shape:?}")]
    Granularity {
        /// The granularity.
        granularity: &'static str,
        /// The layer.
        layer: String,
        /// Its weight's shape.
        shape: Vec<usize>,
    },

    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A mask file is malformed.
    #[error("`{path}` is not a valid mask file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An error about the masks read from a file, naming the file.
    #[error("mask file `{path}`: {error}")]
    InFile {
        /// The mask file.
        path: PathBuf,
        /// What is wrong with its masks.
        #[source]
        error: Box<PruneError>,
    },

    /// A picture of masks could not be written.
    #[error("cannot write the picture `{path}`: {reason}")]
    Picture {
        /// The picture file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A name (method, granularity, scope) is not known.
    #[error("unknown {what} `{value}`; expected one of: {expected}")]
    UnknownName {
        /// What kind of name.
        what: &'static str,
        /// The value given.
        value: String,
        /// Accepted values.
        expected: &'static str,
    },

    /// The re-training step supplied to IMP failed.
    #[error("re-training in IMP round {round} failed: {message}")]
    Retrain {
        /// The round.
        round: usize,
        /// The caller's error message.
        message: String,
    },

    /// IMP's sparsity schedule does not fit its rounds or does not increase.
    #[error("invalid IMP schedule: {0}")]
    ImpSchedule(String),
}

/// Result alias of this crate.
pub type Result<T, E = PruneError> = std::result::Result<T, E>;

/// Checks that `value` is a fraction in `[0, 1)`.
pub(crate) fn check_fraction(what: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(PruneError::InvalidFraction { what, value })
    }
}
