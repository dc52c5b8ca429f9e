//! Temporary files and folders, named after the host and process that made them, so that
//! leftovers of a killed process are recognised and removed — and those of a live process on a
//! shared folder (another shard of a sweep) are not.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};

/// The folder of `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Marks temporary names: `.{name}.tmp~{host}~{pid}~{n}`.
const TAG: &str = ".tmp~";

/// Leftovers of other hosts are removed only once this old (their process cannot be checked).
const FOREIGN_AGE: Duration = Duration::from_secs(24 * 3600);

/// This machine's name, read once: it goes into every temporary name and every staleness check.
fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let name = fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "host".into());
        name.trim().replace(['~', '/'], "_")
    })
}

/// A fresh temporary path beside `dest` (same folder, so a rename publishes it).
pub fn temp_path(dest: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = parent(dest);
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}{TAG}{}~{}~{n}", host(), std::process::id()))
}

/// Whether the temporary `name` belongs to a process that is gone.
fn is_stale(name: &str, path: &Path) -> bool {
    let Some((_, owner)) = name.split_once(TAG) else {
        return false;
    };
    let mut parts = owner.split('~');
    let (Some(h), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    if h == host() {
        let Ok(pid) = pid.parse::<u32>() else {
            return true;
        };
        if pid == std::process::id() {
            return false;
        }
        if Path::new("/proc/self").exists() {
            return !Path::new(&format!("/proc/{pid}")).exists();
        }
    }
    let age = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    age.is_some_and(|a| a > FOREIGN_AGE)
}

/// Removes, best-effort, the temporaries a dead process left for the file `dest` (a killed
/// `dwlth import` leaves a whole model's worth): the next write of the same file cleans up.
pub(crate) fn remove_stale_of(dest: &Path) {
    let Some(name) = dest.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}{TAG}");
    let Ok(entries) = fs::read_dir(parent(dest)) else {
        return;
    };
    for entry in entries.flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name.starts_with(&prefix) && is_stale(&entry_name, &entry.path()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes the temporaries of dead processes directly inside `dir` (files and folders); returns
/// how many. A missing `dir` has none.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !is_stale(&name, &path) {
            continue;
        }
        let gone = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed += 1,
            // Another process cleaned it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_dead_processes_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_path(&dir.path().join("a.safetensors"));
        fs::write(&mine, b"x").unwrap();
        // pid 0 is never a user process: its leftovers are stale.
        let dead = dir.path().join(format!(".b.json{TAG}{}~0~0", host()));
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("inner"), b"y").unwrap();
        let foreign = dir.path().join(format!(".c{TAG}elsewhere~1~0"));
        fs::write(&foreign, b"z").unwrap();
        let plain = dir.path().join("keep.json");
        fs::write(&plain, b"{}").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(mine.exists() && foreign.exists() && plain.exists());
        assert!(!dead.exists());
        assert_eq!(
            remove_stale_temporaries(&dir.path().join("none")).unwrap(),
            0
        );
    }
}
