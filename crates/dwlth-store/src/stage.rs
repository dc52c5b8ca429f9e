//! The content-addressed stage store of an experiment (after open_lth's runs): every artefact
//! lives in `root/<kind>/<key>/`, where the key fingerprints the settings that produced it and
//! the keys of its inputs. A changed setting gives a new key, so a stale result is never reused;
//! a stage's folder appears only once complete (one rename), with its `manifest.json`.
//!
//! ```text
//! root/store.json                 marks the folder as a store of this layout
//! root/<kind>/<key>/manifest.json the stage's settings and inputs; the stage is done
//! root/<kind>/<key>/…             its artefacts
//! root/<kind>/<key>.work/         checkpoints while it runs (removed once it is done)
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use crate::atomic::{publish_dir, write_file};
use crate::error::{Result, StoreError};
use crate::hash::{canonical, key_of};
use crate::settings::check_settings;
use crate::temp::{remove_stale_temporaries, temp_path};

/// The file marking a folder as a stage store, with its layout version.
pub const STORE_MARKER: &str = "store.json";
const LAYOUT: u64 = 1;

/// A stage store rooted at a folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The identity of a stage: its kind and key (`tickets/3f0c…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct StageKey {
    /// The kind of stage (`pretrain`, `tickets`, `runs`, …).
    pub kind: String,
    /// The fingerprint of its settings and inputs.
    pub key: String,
}

impl fmt::Display for StageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.key)
    }
}

impl Store {
    /// Opens the store at `root`, creating it if needed. A folder written by another layout of
    /// the store is refused.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let marker = root.join(STORE_MARKER);
        let given = json!({ "layout": LAYOUT });
        check_settings(&marker, "a stage store", &given)?;
        Ok(Self { root })
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The stage of `kind` made by `settings` from `inputs`. Only settings that change the
    /// result belong in `settings` (never output paths, worker counts or verbosity).
    pub fn stage(
        &self,
        kind: &str,
        settings: &impl Serialize,
        inputs: &[&StageKey],
    ) -> Result<Stage> {
        if kind.is_empty() || kind.contains(['/', '\\', '.']) {
            return Err(StoreError::Format {
                path: self.root.clone(),
                what: "stage kind",
                reason: format!("`{kind}` cannot name a folder"),
            });
        }
        let settings = serde_json::to_value(settings).map_err(|e| StoreError::Format {
            path: self.root.join(kind),
            what: "stage settings",
            reason: e.to_string(),
        })?;
        let inputs: Vec<String> = inputs.iter().map(|k| k.to_string()).collect();
        let manifest = json!({ "kind": kind, "settings": settings, "inputs": inputs });
        let key = StageKey {
            kind: kind.to_string(),
            key: key_of(&manifest),
        };
        Ok(Stage {
            dir: self.root.join(kind).join(&key.key),
            key,
            manifest,
        })
    }
}

/// One stage of an experiment: done (its folder exists) or to be computed.
#[derive(Debug, Clone)]
pub struct Stage {
    key: StageKey,
    dir: PathBuf,
    manifest: Value,
}

impl Stage {
    /// The stage's key, the input of the stages built on it.
    pub fn key(&self) -> &StageKey {
        &self.key
    }

    /// The stage's settings and inputs.
    pub fn manifest(&self) -> &Value {
        &self.manifest
    }

    /// The stage's folder once it is done.
    pub fn done(&self) -> Option<&Path> {
        self.dir
            .join("manifest.json")
            .is_file()
            .then_some(&*self.dir)
    }

    /// Where the stage keeps its checkpoints while it runs (created, with the manifest checked;
    /// stale temporaries removed).
    pub fn work_dir(&self) -> Result<PathBuf> {
        let work = self.dir.with_extension("work");
        fs::create_dir_all(&work).map_err(|e| StoreError::io(&work, e))?;
        remove_stale_temporaries(&work)?;
        check_settings(&work.join("manifest.json"), "a stage", &self.manifest)?;
        Ok(work)
    }

    /// Publishes the stage: `write` fills a temporary folder with the artefacts, the manifest is
    /// added, and one rename makes it done. The work folder is removed afterwards.
    pub fn publish<E: From<StoreError>>(
        &self,
        write: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<&Path, E> {
        if let Some(parent) = self.dir.parent() {
            remove_stale_temporaries(parent)?;
        }
        let tmp = temp_path(&self.dir);
        fs::create_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        let written = write(&tmp).and_then(|()| {
            let manifest = canonical(&self.manifest);
            Ok(write_file(&tmp.join("manifest.json"), manifest.as_bytes())?)
        });
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        publish_dir(&tmp, &self.dir)?;
        self.remove_work()?;
        Ok(&self.dir)
    }

    /// The stage's value if it is done (`None` otherwise), removing a work folder that a process
    /// killed between publishing and cleaning up left behind.
    pub fn load_done<T, E: From<StoreError>>(
        &self,
        load: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<Option<T>, E> {
        let Some(dir) = self.done() else {
            return Ok(None);
        };
        self.remove_work()?;
        load(dir).map(Some)
    }

    /// Removes the work folder of a published stage (its checkpoints are not needed any more).
    fn remove_work(&self) -> Result<()> {
        let work = self.dir.with_extension("work");
        match fs::remove_dir_all(&work) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(&work, e)),
        }
    }

    /// The stage's value: loaded if the stage is done, else computed (with the work folder for
    /// checkpoints), published with `save`, and loaded back — so a resumed experiment and an
    /// uninterrupted one continue from the same bits.
    pub fn load_or_compute<T, E: From<StoreError>>(
        &self,
        load: impl FnOnce(&Path) -> Result<T, E>,
        compute: impl FnOnce(&Path) -> Result<T, E>,
        save: impl FnOnce(&T, &Path) -> Result<(), E>,
    ) -> Result<T, E> {
        if let Some(dir) = self.done() {
            // A process killed between publishing and cleaning up left the work folder.
            self.remove_work()?;
            return load(dir);
        }
        let value = compute(&self.work_dir()?)?;
        let dir = self.publish(|tmp| save(&value, tmp))?;
        drop(value);
        load(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_settings_and_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.stage("pretrain", &json!({"epochs": 2}), &[]).unwrap();
        let b = store.stage("pretrain", &json!({"epochs": 3}), &[]).unwrap();
        assert_ne!(a.key(), b.key());
        let t1 = store
            .stage("tickets", &json!({"s": 0.5}), &[a.key()])
            .unwrap();
        let t2 = store
            .stage("tickets", &json!({"s": 0.5}), &[b.key()])
            .unwrap();
        assert_ne!(t1.key(), t2.key(), "a new input gives a new key");
        let again = store.stage("pretrain", &json!({"epochs": 2}), &[]).unwrap();
        assert_eq!(a.key(), again.key());
    }

    #[test]
    fn computes_once_then_loads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stage = store.stage("x", &json!({"v": 7}), &[]).unwrap();
        let mut computed = 0;
        for _ in 0..2 {
            let v = stage
                .load_or_compute(
                    |d| Ok::<_, StoreError>(fs::read(d.join("v")).unwrap()[0]),
                    |work| {
                        assert!(work.join("manifest.json").exists());
                        computed += 1;
                        Ok(7u8)
                    },
                    |v, d| write_file(&d.join("v"), &[*v]),
                )
                .unwrap();
            assert_eq!(v, 7);
        }
        assert_eq!(computed, 1);
        assert!(!dir
            .path()
            .join("x")
            .join(format!("{}.work", stage.key().key))
            .exists());
    }

    #[test]
    fn another_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STORE_MARKER), br#"{"layout": 0}"#).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("`layout` was 0, now 1"), "{err}");
    }
}
