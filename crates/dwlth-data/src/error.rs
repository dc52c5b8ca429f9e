//! The one error type of `dwlth-data`.
//!
//! Every variant that concerns a file names it, and the byte offset where the problem starts
//! when the format has one, so a user can find and fix the culprit without a debugger.

use std::path::{Path, PathBuf};

/// Everything reading or preparing a dataset can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// From the store (atomic writes, checkpoints, settings checks).
    #[error(transparent)]
    Store(#[from] dwlth_store::StoreError),

    /// A file could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A file is not in the format its name promises.
    #[error("`{path}` is not a valid {format} file at byte {offset}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The expected format.
        format: &'static str,
        /// Where the problem starts (in the decompressed stream for compressed files).
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A value of a text format that stores an array of values (MNIST JSON) is unusable:
    /// not a number, out of range, or the start of an incomplete image at the end. Such
    /// formats have no meaningful byte offset; the element index locates the culprit.
    #[error("`{path}` is not a valid {format} file at element {index}: {reason}")]
    Element {
        /// The file.
        path: PathBuf,
        /// The expected format.
        format: &'static str,
        /// The position of the value in its array, from 0.
        index: usize,
        /// What is wrong.
        reason: String,
    },

    /// A label is not below the dataset's number of classes.
    #[error(
        "`{path}` has label {label} at byte {offset}, but the dataset has {num_classes} classes"
    )]
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Where the label is stored.
        offset: u64,
        /// The label read.
        label: i64,
        /// The number of classes of the dataset.
        num_classes: usize,
    },

    /// An image file could not be decoded.
    #[error("cannot decode image `{path}`: {reason}")]
    Decode {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },

    /// A folder holds no images (or no class folders) where some were expected.
    #[error("`{path}` holds no {what}")]
    Empty {
        /// The folder or file.
        path: PathBuf,
        /// What was looked for, e.g. "class folders" or "JPEG or PNG images".
        what: String,
    },

    /// Images of one dataset do not share a shape.
    #[error("`{path}` has shape {found:?} (channels, height, width); expected {expected:?}")]
    Shape {
        /// The image (file, or `dataset[index]` for in-memory data).
        path: PathBuf,
        /// The shape every image must have.
        expected: [usize; 3],
        /// The shape found.
        found: [usize; 3],
    },

    /// A downloaded or cached file does not have its published checksum. Nothing is kept
    /// under the final name when a download fails this check.
    #[error(
        "`{path}`{}: {algorithm} is {actual}, expected {expected} (corrupt or incomplete)",
        url.as_ref().map(|u| format!(" (downloaded from {u})")).unwrap_or_default()
    )]
    Checksum {
        /// The file checked, or where the download was to go.
        path: PathBuf,
        /// The address the bytes came from, for a download.
        url: Option<String>,
        /// `MD5` or `SHA-256`.
        algorithm: &'static str,
        /// The published digest (hex).
        expected: String,
        /// The digest of the bytes (hex).
        actual: String,
    },

    /// A download failed (offline, refused, HTTP error, cut short, wrong checksum). Names where
    /// the file should go so that it can be fetched by other means.
    #[error(
        "cannot download {url}: {reason}. Without network, fetch it by other means and put it \
         at `{dest}` ({checksum})"
    )]
    Download {
        /// The address tried last.
        url: String,
        /// Where the file is expected.
        dest: PathBuf,
        /// The published checksum, e.g. `MD5 c32a…`.
        checksum: String,
        /// What went wrong.
        reason: String,
    },

    /// A dataset's files are not where they are looked for.
    #[error("{dataset}: `{path}` not found; {hint}")]
    Missing {
        /// The dataset.
        dataset: String,
        /// The file or folder looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },

    /// An argument (dataset name, fraction, size, index) is unusable.
    #[error("{0}")]
    InvalidArgument(String),

    /// A JSON file (index list, MNIST JSON digits) could not be written or read, or does not
    /// have the expected structure; the message gives the line and column.
    #[error("bad JSON in `{path}`: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A format error in `path` at `offset`.
    pub fn format(
        path: impl AsRef<Path>,
        format: &'static str,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Format {
            path: path.as_ref().to_path_buf(),
            format,
            offset,
            reason: reason.into(),
        }
    }

    /// An unusable argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
