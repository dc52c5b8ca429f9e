//! Where datasets live: `--data-dir`, else `$DWLTH_DATA`, else the user's cache folder
//! (`~/.cache/dwlth` on Linux).

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// Environment variable naming the data folder.
pub const DATA_ENV: &str = "DWLTH_DATA";

/// The data folder: `explicit`, else `$DWLTH_DATA`, else `<user cache>/dwlth`.
pub fn data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::cache_dir().map(|d| d.join("dwlth")).ok_or_else(|| {
        DataError::invalid(format!(
            "no user cache folder on this system: pass --data-dir or set {DATA_ENV}"
        ))
    })
}
