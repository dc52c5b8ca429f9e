//! Unpacking `.tar.gz` archives into the cache, all or nothing: entries are extracted into a
//! temporary folder (the `tar` crate refuses paths that leave it), then the top-level entries
//! are renamed into place.

use std::fs::{self, File};
use std::path::Path;

use crate::error::{DataError, Result};
use crate::io::temp_path;

/// Unpacks the gzipped tar `archive` into `dest`.
pub fn unpack_tar_gz(archive: &Path, dest: &Path) -> Result<()> {
    let staging = temp_path(&dest.join("archive"), "unpack");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
    let result = extract(archive, &staging).and_then(|()| move_into(&staging, dest));
    let _ = fs::remove_dir_all(&staging);
    result
}

fn extract(archive: &Path, staging: &Path) -> Result<()> {
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = tar.entries().map_err(|e| bad(archive, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(archive, e))?;
        entry.unpack_in(staging).map_err(|e| bad(archive, e))?;
    }
    Ok(())
}

fn bad(archive: &Path, e: std::io::Error) -> DataError {
    DataError::format(archive, "tar.gz", 0, format!("cannot unpack: {e}"))
}

/// Renames each top-level entry of `staging` into `dest`, replacing an older copy.
fn move_into(staging: &Path, dest: &Path) -> Result<()> {
    for entry in fs::read_dir(staging).map_err(|e| DataError::io(staging, e))? {
        let entry = entry.map_err(|e| DataError::io(staging, e))?;
        let target = dest.join(entry.file_name());
        if target.is_dir() {
            fs::remove_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
        } else if target.exists() {
            fs::remove_file(&target).map_err(|e| DataError::io(&target, e))?;
        }
        fs::rename(entry.path(), &target).map_err(|e| DataError::io(&target, e))?;
    }
    Ok(())
}
