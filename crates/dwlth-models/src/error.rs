//! The one error type of `dwlth-models`.

use std::path::PathBuf;

/// Everything that can go wrong when building, loading or saving a model.
///
/// Every variant names its culprit (file, key, layer or value) so that a user can fix the input
/// without reading the library's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// From the store (atomic writes, checkpoints, settings checks).
    #[error(transparent)]
    Store(#[from] dwlth_store::StoreError),

    /// A configuration value is out of range or inconsistent.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),

    /// A name that should denote an architecture, stem, format or device does not.
    #[error("unknown {what} `{value}`; expected one of: {expected}")]
    UnknownName {
        /// What kind of name was expected (`architecture`, `stem`, ...).
        what: &'static str,
        /// The value that was given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },

    /// A device was asked for whose backend is not compiled into this binary.
    #[error(
        "device `{device}` needs the `{feature}` feature; rebuild with `--features {feature}`"
    )]
    DeviceNotCompiled {
        /// The requested device.
        device: String,
        /// The cargo feature that enables it.
        feature: &'static str,
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

    /// A file exists but is not in the expected format.
    #[error("`{path}` is not a valid {format} file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format that was expected (`PyTorch checkpoint`, `safetensors`).
        format: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor's data type does not fit its use: integer or boolean values where float
    /// weights are expected. Values are never cast silently.
    #[error("tensor `{key}` of `{path}` has data type {dtype}; {expected}")]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// Its data type (`int64`, `bool`, ...).
        dtype: String,
        /// What was expected instead.
        expected: &'static str,
    },

    /// A tensor holds NaN or an infinity where finite numbers are needed (weights, images).
    #[error(
        "tensor `{key}` of `{path}` holds {value} at element {index}; its values must be finite"
    )]
    NonFinite {
        /// The file (or a description of the in-memory source).
        path: PathBuf,
        /// The tensor's key (or parameter path).
        key: String,
        /// The first offending element, row-major.
        index: usize,
        /// Its value.
        value: f32,
    },

    /// The checkpoint lacks tensors that the model needs.
    #[error("checkpoint `{path}` lacks {} tensor(s) the model needs, first `{}`{}", keys.len(), first(keys), hint_more(keys))]
    MissingKeys {
        /// The file.
        path: PathBuf,
        /// Every missing key, sorted.
        keys: Vec<String>,
    },

    /// The checkpoint holds tensors the model has no place for.
    #[error("checkpoint `{path}` holds {} tensor(s) the model has no place for, first `{}`{}; is the architecture right?", keys.len(), first(keys), hint_more(keys))]
    UnexpectedKeys {
        /// The file.
        path: PathBuf,
        /// Every unexpected key, sorted.
        keys: Vec<String>,
    },

    /// A tensor's shape differs from the model's parameter.
    #[error("tensor `{key}` has shape {found:?} but the model expects {expected:?}")]
    ShapeMismatch {
        /// The tensor's key.
        key: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The file's shape.
        found: Vec<usize>,
    },

    /// A mask is not binary, has the wrong shape, or names no layer.
    #[error("invalid mask for `{layer}`: {reason}")]
    InvalidMask {
        /// The layer the mask was meant for.
        layer: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor's values are unusable (NaN, non-positive standard deviation, ...).
    #[error("invalid value in `{key}`: {reason}")]
    InvalidValue {
        /// The tensor or setting.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An input buffer does not match the shape it is said to have.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

fn first(keys: &[String]) -> &str {
    keys.first().map_or("<none>", String::as_str)
}

fn hint_more(keys: &[String]) -> String {
    match keys.len() {
        0 | 1 => String::new(),
        n => format!(
            " (and {} more: {})",
            n - 1,
            keys[1..n.min(6)].join(", ") + if n > 6 { ", ..." } else { "" }
        ),
    }
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
