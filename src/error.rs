//! The error type of the facade and its command-line tool.

use std::path::PathBuf;

/// Anything a pipeline or command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DwlthError {
    /// From the store (atomic writes, checkpoints, settings checks).
    #[error(transparent)]
    Store(#[from] dwlth_store::StoreError),

    /// From the model crate (configuration, checkpoints, masks, devices).
    #[error(transparent)]
    Model(#[from] dwlth_models::ModelError),

    /// From the data crate (formats, downloads, subsets).
    #[error(transparent)]
    Data(#[from] dwlth_data::DataError),

    /// From the attack and training crate.
    #[error(transparent)]
    Adv(#[from] dwlth_adv::AdvError),

    /// From the pruning crate (masks, criteria, IMP).
    #[error(transparent)]
    Prune(#[from] dwlth_prune::PruneError),

    /// From the sparse inference engine.
    #[error(transparent)]
    Sparse(#[from] dwlth_sparse::SparseError),

    /// A command-line argument or input tensor is unusable.
    #[error("{0}")]
    InvalidArgument(String),

    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of the facade.
pub type Result<T, E = DwlthError> = std::result::Result<T, E>;
