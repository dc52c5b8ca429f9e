//! Merging the results folders of shards run apart — on several machines, each into a folder of
//! its own — into one folder that `dwlth report` reads as if the experiment had run there.
//!
//! Stages are content-addressed, so a finished stage of a shard is copied in whole under the
//! same key (files hard-linked where the file system allows, published with one rename); a key
//! already present is left as it is. Shards are first shown to be of one experiment: their
//! `experiment.json` files (the keys of every planned run and ticket stage, which follow from
//! every setting) must agree, and the first difference is named otherwise.

use std::path::{Path, PathBuf};

use dwlth_store::{
    atomic_write, first_difference, link_or_copy, publish_copy, Store, STORE_MARKER,
};

use super::records::{json_bytes, ExperimentIndex};
use crate::error::{DwlthError, Result};

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Shard folders read.
    pub shards: usize,
    /// Finished stages copied in.
    pub copied: usize,
    /// Finished stages the destination already had.
    pub present: usize,
}

/// Copies the finished run and ticket stages of every folder in `shards` into `into` (created
/// if needed) and writes its `experiment.json`. Shards of different experiments, or of another
/// experiment than the one already in `into`, are refused before anything is copied.
pub fn merge_shards(into: &Path, shards: &[PathBuf]) -> Result<MergeSummary> {
    let mut indexes = Vec::new();
    let existing = into.join("experiment.json");
    if existing.is_file() {
        indexes.push((existing.clone(), ExperimentIndex::read(&existing)?));
    }
    for shard in shards {
        if !shard.join(STORE_MARKER).is_file() {
            return Err(DwlthError::InvalidArgument(format!(
                "`{}` is not a results folder of this version (no {STORE_MARKER})",
                shard.display()
            )));
        }
        let path = shard.join("experiment.json");
        if !path.is_file() {
            return Err(DwlthError::InvalidArgument(format!(
                "`{}` holds no experiment.json: its shard has not finished planning; rerun it",
                shard.display()
            )));
        }
        indexes.push((path.clone(), ExperimentIndex::read(&path)?));
    }
    let Some((first_path, first)) = indexes.first() else {
        return Err(DwlthError::InvalidArgument(
            "nothing to merge: name the shard folders".into(),
        ));
    };
    let reference = serde_json::to_value(first).map_err(json_error)?;
    for (path, index) in &indexes[1..] {
        let value = serde_json::to_value(index).map_err(json_error)?;
        if let Some(d) = first_difference(&reference, &value) {
            return Err(DwlthError::InvalidArgument(format!(
                "`{}` and `{}` are shards of different experiments: `{}` is {} in one and {} in the other",
                first_path.display(),
                path.display(),
                d.setting,
                d.stored,
                d.given
            )));
        }
    }
    Store::open(into)?;
    let mut summary = MergeSummary {
        shards: shards.len(),
        ..Default::default()
    };
    for shard in shards {
        if same_folder(shard, into) {
            continue;
        }
        let stages = first
            .runs
            .iter()
            .map(|k| ("runs", k))
            .chain(first.tickets.values().map(|k| ("tickets", k)));
        for (kind, key) in stages {
            let from = shard.join(kind).join(key);
            if !from.join("manifest.json").is_file() {
                continue;
            }
            let to = into.join(kind).join(key);
            if to.exists() {
                summary.present += 1;
                continue;
            }
            publish_copy(&from, &to)?;
            summary.copied += 1;
        }
    }
    atomic_write(&into.join("experiment.json"), &json_bytes(first)?)?;
    let config = into.join("config.toml");
    if !config.exists() {
        if let Some(from) = shards
            .iter()
            .map(|s| s.join("config.toml"))
            .find(|p| p.is_file())
        {
            link_or_copy(&from, &config)?;
        }
    }
    Ok(summary)
}

fn json_error(e: serde_json::Error) -> DwlthError {
    DwlthError::InvalidArgument(format!("experiment index: {e}"))
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
