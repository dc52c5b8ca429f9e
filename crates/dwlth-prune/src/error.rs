//! The one error type of `dwlth-prune`.

/// Everything pruning can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// From the model crate (bad mask, file, shape).
    #[error(transparent)]
    Model(#[from] dwlth_models::ModelError),
    /// A sparsity outside `[0, 1)`.
    #[error("sparsity {0} is outside [0, 1)")]
    InvalidSparsity(f64),
}

/// Result alias of this crate.
pub type Result<T, E = PruneError> = std::result::Result<T, E>;
