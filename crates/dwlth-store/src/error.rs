//! The error type of the store.

use std::path::{Path, PathBuf};

/// Anything writing, publishing or resuming can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or folder could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file the store wrote earlier cannot be read back.
    #[error("`{path}` is not a valid {what}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the file should be.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A folder holds work done with other settings than the ones given now.
    #[error("{0}")]
    SettingsChanged(Box<SettingsChanged>),

    /// A folder was written by an earlier layout whose results cannot be verified.
    #[error("`{path}` {reason}")]
    OldLayout {
        /// The folder.
        path: PathBuf,
        /// What it holds and how to go on.
        reason: String,
    },
}

impl StoreError {
    /// An I/O error about `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Where a folder's stored settings and the given ones first differ.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "`{folder}` holds {what} made with other settings: `{setting}` was {stored}, now {given}; \
     use another folder, or delete this one to start over"
)]
pub struct SettingsChanged {
    /// The folder (or file).
    pub folder: PathBuf,
    /// What the folder holds (a training run, an experiment stage, …).
    pub what: String,
    /// The first differing setting, as a dotted path (`lr.milestones[1]`).
    pub setting: String,
    /// Its stored value (JSON).
    pub stored: String,
    /// Its given value (JSON).
    pub given: String,
}

impl SettingsChanged {
    /// The error for `difference` in `folder`, which holds `what`.
    pub fn error(
        folder: impl Into<PathBuf>,
        what: &str,
        difference: crate::Difference,
    ) -> StoreError {
        StoreError::SettingsChanged(Box::new(Self {
            folder: folder.into(),
            what: what.to_string(),
            setting: difference.setting,
            stored: difference.stored,
            given: difference.given,
        }))
    }
}

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
