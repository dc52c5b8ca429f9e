//! Durable writes: one file, or one folder of files, appears whole or not at all.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StoreError};
use crate::fault::after_write;
use crate::temp::{parent, temp_path};

/// Flushes a folder's entries (a rename inside it) to disk. A no-op where folders cannot be
/// opened for syncing.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let handle = fs::File::open(dir).map_err(|e| StoreError::io(dir, e))?;
        handle.sync_all().map_err(|e| StoreError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes a new file inside a folder that is not published yet (a checkpoint or stage being
/// assembled): written and synced, no rename — the folder's publication makes it visible.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    write_synced(path, bytes).map_err(|e| StoreError::io(path, e))?;
    after_write(path);
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, renamed over
/// `path`, and the folder synced. A killed process leaves the old file or the new one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    crate::temp::remove_stale_of(path);
    let tmp = temp_path(path);
    let written = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(path, e));
    }
    sync_dir(dir)?;
    after_write(path);
    Ok(())
}

/// What [`publish_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The folder is now at its destination.
    Now,
    /// Another process published the destination first; the temporary folder was removed.
    Already,
}

/// Publishes the finished folder `tmp` as `dest` with one rename. Every file in `tmp` must have
/// been written with [`write_file`] (synced). If `dest` exists already — another process (a
/// shard on a shared folder) published the same content-addressed folder first — `tmp` is
/// removed and `dest` kept.
pub fn publish_dir(tmp: &Path, dest: &Path) -> Result<Published> {
    sync_dir(tmp)?;
    let dir = parent(dest);
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    if dest.exists() {
        let _ = fs::remove_dir_all(tmp);
        return Ok(Published::Already);
    }
    if let Err(e) = fs::rename(tmp, dest) {
        // A rename onto a non-empty folder fails (ENOTEMPTY / EEXIST): someone was faster.
        if dest.is_dir() {
            let _ = fs::remove_dir_all(tmp);
            return Ok(Published::Already);
        }
        return Err(StoreError::io(dest, e));
    }
    sync_dir(dir)?;
    after_write(dest);
    Ok(Published::Now)
}

/// Makes `to` the same content as `from`: a hard link where the file system allows it (published
/// files never change, so sharing them is safe), else a synced copy.
pub fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    let dir = parent(to);
    fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    if fs::hard_link(from, to).is_err() {
        let bytes = fs::read(from).map_err(|e| StoreError::io(from, e))?;
        write_synced(to, &bytes).map_err(|e| StoreError::io(to, e))?;
    }
    after_write(to);
    Ok(())
}

/// Publishes a copy of the published folder `from` as `dest` — a stage of another store, for
/// example — built in a temporary sibling of `dest` (files hard-linked where the file system
/// allows, else synced copies) and published with one rename by [`publish_dir`].
pub fn publish_copy(from: &Path, dest: &Path) -> Result<Published> {
    let tmp = crate::temp::temp_path(dest);
    copy_tree(from, &tmp)?;
    publish_dir(&tmp, dest)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| StoreError::io(to, e))?;
    for entry in fs::read_dir(from).map_err(|e| StoreError::io(from, e))? {
        let entry = entry.map_err(|e| StoreError::io(from, e))?;
        let (source, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| StoreError::io(&source, e))?;
        if kind.is_dir() {
            copy_tree(&source, &dest)?;
        } else if kind.is_file() {
            link_or_copy(&source, &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.json");
        atomic_write(&path, b"[1]").unwrap();
        atomic_write(&path, b"[1, 2]").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[1, 2]");
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_write_removes_what_a_killed_write_of_the_same_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        // A dead process's temporary (pid 0 is never a user process), and another file's.
        let host = crate::temp::temp_path(&path);
        let name = host.file_name().unwrap().to_string_lossy().into_owned();
        let (head, _) = name.rsplit_once('~').unwrap();
        let (head, _) = head.rsplit_once('~').unwrap();
        let dead = dir.path().join(format!("{head}~0~0"));
        fs::write(&dead, vec![0u8; 1024]).unwrap();
        let other = dir
            .path()
            .join(format!("{head}~0~0").replace("model", "other"));
        fs::write(&other, b"x").unwrap();
        atomic_write(&path, b"new").unwrap();
        assert!(!dead.exists(), "the leftover stayed");
        assert!(other.exists());
    }

    #[test]
    fn a_folder_is_published_once() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("stage");
        let first = temp_path(&dest);
        write_file(&first.join("x"), b"1").unwrap();
        assert_eq!(publish_dir(&first, &dest).unwrap(), Published::Now);
        let second = temp_path(&dest);
        write_file(&second.join("x"), b"2").unwrap();
        assert_eq!(publish_dir(&second, &dest).unwrap(), Published::Already);
        assert_eq!(fs::read(dest.join("x")).unwrap(), b"1");
        assert!(!second.exists());
    }

    #[test]
    fn links_share_published_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        write_file(&a, b"weights").unwrap();
        let b = dir.path().join("c/b");
        link_or_copy(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"weights");
    }

    #[test]
    fn a_published_folder_is_copied_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a/k1");
        fs::create_dir_all(from.join("train/step-000001")).unwrap();
        fs::write(from.join("result.json"), b"{}").unwrap();
        fs::write(from.join("train/step-000001/model.bin"), b"w").unwrap();
        let dest = dir.path().join("b/runs/k1");
        assert_eq!(publish_copy(&from, &dest).unwrap(), Published::Now);
        assert_eq!(fs::read(dest.join("result.json")).unwrap(), b"{}");
        assert_eq!(
            fs::read(dest.join("train/step-000001/model.bin")).unwrap(),
            b"w"
        );
        assert_eq!(publish_copy(&from, &dest).unwrap(), Published::Already);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("b/runs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("k1")]);
    }
}
