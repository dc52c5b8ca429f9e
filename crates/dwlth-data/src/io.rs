//! File helpers shared by the readers and the cache: reads that name the file on failure,
//! transparent gzip, and atomic writes (a crash or a full disk never leaves half a file under
//! the final name, so a later run never mistakes it for a good one).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The two magic bytes that start every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Whether `bytes` start like a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Decompresses a gzip stream (all members); `name` and `format` only label errors.
pub fn gunzip(bytes: &[u8], name: &Path, format: &'static str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| {
            DataError::format(
                name,
                format,
                0,
                format!("gzip stream is corrupt or truncated ({e})"),
            )
        })?;
    Ok(out)
}

/// The bytes of `bytes`, decompressed first if they are gzip.
pub fn maybe_gunzip<'a>(
    bytes: &'a [u8],
    name: &Path,
    format: &'static str,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    if is_gzip(bytes) {
        gunzip(bytes, name, format).map(std::borrow::Cow::Owned)
    } else {
        Ok(std::borrow::Cow::Borrowed(bytes))
    }
}

/// A temporary name beside `path` (same folder, so the final rename stays on one file system).
pub fn temp_path(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let dir = parent_dir(path);
    dir.join(format!(".{name}.{tag}-{}", std::process::id()))
}

/// The folder of `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically, through the project's one atomic writer.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(dwlth_store::atomic_write(path, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_detected_and_decoded() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello idx").unwrap();
        let gz = enc.finish().unwrap();
        assert!(is_gzip(&gz));
        let out = maybe_gunzip(&gz, Path::new("x.gz"), "IDX").unwrap();
        assert_eq!(&*out, b"hello idx");
        let plain = maybe_gunzip(b"plain", Path::new("x"), "IDX").unwrap();
        assert_eq!(&*plain, b"plain");
        let cut = gunzip(&gz[..gz.len() - 6], Path::new("x.gz"), "IDX").unwrap_err();
        assert!(cut.to_string().contains("x.gz"), "{cut}");
    }

    #[test]
    fn atomic_write_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        atomic_write(&path, b"[1]").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[1]");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
