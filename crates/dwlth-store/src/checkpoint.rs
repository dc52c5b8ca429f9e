//! Checkpoints of a long computation (training epochs, IMP rounds): each one a folder of files
//! published with one rename, so a resume sees a whole checkpoint or none — never the weights
//! of one epoch with the bookkeeping of another.
//!
//! ```text
//! dir/settings.json        what the run was started with; a resume with others is refused
//! dir/step-000007/         the latest published checkpoint (older ones are removed)
//! dir/.step-000008.tmp~…   one being written (removed on the next start if its process died)
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::atomic::publish_dir;
use crate::error::{Result, StoreError};
use crate::settings::check_settings;
use crate::temp::{remove_stale_temporaries, temp_path};

const PREFIX: &str = "step-";

/// The checkpoint folders of one run.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// Opens (or starts) the run in `dir`: removes temporaries of dead processes, and checks
    /// `settings` against the stored ones (`what` names the run in errors).
    pub fn open(dir: impl Into<PathBuf>, what: &str, settings: &Value) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        remove_stale_temporaries(&dir)?;
        check_settings(&dir.join("settings.json"), what, settings)?;
        let run = Self { dir };
        // A process killed between publishing a checkpoint and removing the older ones.
        if let Some((latest, _)) = run.latest()? {
            run.remove_before(latest)?;
        }
        Ok(run)
    }

    /// Removes the published checkpoints before `step`.
    fn remove_before(&self, step: u64) -> Result<()> {
        for old in self.published()?.into_iter().filter(|&s| s < step) {
            let path = self.step_dir(old);
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
        Ok(())
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn step_dir(&self, step: u64) -> PathBuf {
        self.dir.join(format!("{PREFIX}{step:06}"))
    }

    fn published(&self) -> Result<Vec<u64>> {
        let mut steps = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(step) = name.strip_prefix(PREFIX).and_then(|s| s.parse().ok()) {
                steps.push(step);
            }
        }
        steps.sort_unstable();
        Ok(steps)
    }

    /// The latest published checkpoint: its step and folder.
    pub fn latest(&self) -> Result<Option<(u64, PathBuf)>> {
        Ok(self.published()?.last().map(|&s| (s, self.step_dir(s))))
    }

    /// Publishes checkpoint `step`: `write` fills a fresh temporary folder (with
    /// [`write_file`](crate::write_file) / [`link_or_copy`](crate::link_or_copy)), which is then
    /// renamed into place; older checkpoints are removed after that. Returns the folder.
    pub fn publish<E: From<StoreError>>(
        &self,
        step: u64,
        write: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let dest = self.step_dir(step);
        let tmp = temp_path(&dest);
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        if let Err(e) = write(&tmp) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Already published by another process: the same step of the same run, the same bits.
        publish_dir(&tmp, &dest)?;
        self.remove_before(step)?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_file;
    use serde_json::json;

    #[test]
    fn resume_sees_the_latest_whole_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let settings = json!({"epochs": 3});
        let run = Checkpoints::open(dir.path(), "a run", &settings).unwrap();
        assert!(run.latest().unwrap().is_none());
        for step in 1..=3u64 {
            run.publish(step, |d| write_file(&d.join("w"), &[step as u8]))
                .unwrap();
        }
        // A checkpoint whose writing failed is not published.
        let failed = run.publish(4, |d| {
            write_file(&d.join("w"), &[4])?;
            Err(StoreError::OldLayout {
                path: d.into(),
                reason: "test".into(),
            })
        });
        assert!(failed.is_err());
        let run = Checkpoints::open(dir.path(), "a run", &settings).unwrap();
        let (step, folder) = run.latest().unwrap().unwrap();
        assert_eq!(step, 3);
        assert_eq!(fs::read(folder.join("w")).unwrap(), [3]);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "settings + one step"
        );
        let err = Checkpoints::open(dir.path(), "a run", &json!({"epochs": 4})).unwrap_err();
        assert!(err.to_string().contains("`epochs` was 3, now 4"), "{err}");
    }
}
