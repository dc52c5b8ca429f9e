//! What a results folder records and the units of work the stages pass each other: the
//! planned transfer runs, a pre-trained θ_p with its key, the `experiment.json` and
//! `tickets.json` indexes (read back with every key checked), and small helpers for JSON and
//! progress lines.

use std::collections::BTreeMap;
use std::path::Path;

use dwlth_models::ResNet;
use dwlth_store::{StageKey, StoreError};
use serde::{Deserialize, Serialize};

use crate::error::{DwlthError, Result};

/// One transfer run to do.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Planned {
    pub(super) pretrain: String,
    pub(super) sparsity: f64,
    /// The ticket method, only when an experiment compares several (so the run keys of
    /// single-method experiments stay what they were); `None` for dense runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ticket: Option<String>,
    pub(super) fraction: f64,
    pub(super) regime: String,
    pub(super) seed: u64,
}

/// A pre-trained θ_p and the key its descendants are derived from.
pub(super) struct Theta {
    pub(super) key: StageKey,
    pub(super) model: ResNet,
}

/// `tickets.json` of a tickets stage: every level's sparsity and mask file.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TicketIndex {
    pub(crate) levels: Vec<(f64, String)>,
}

/// The experiment last run in a folder (`experiment.json`): its run keys and each
/// pre-training's tickets stage, for `dwlth report` and the mask report.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExperimentIndex {
    pub(crate) name: String,
    pub(crate) runs: Vec<String>,
    /// The ticket method of each run, when the experiment compares several (a run found by
    /// two methods appears once per method); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) run_tickets: Vec<Option<String>>,
    pub(crate) tickets: BTreeMap<String, String>,
}

impl TicketIndex {
    /// Reads a tickets stage's `tickets.json`: sparsities in [0, 1], files inside the stage.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let index: Self = read_json(path, "ticket index")?;
        for (sparsity, file) in &index.levels {
            if !(0.0..=1.0).contains(sparsity) || !is_plain_name(file) {
                return Err(bad_index(
                    path,
                    "ticket index",
                    format!(
                        "level ({sparsity}, `{file}`) is not a sparsity and a file of its folder"
                    ),
                ));
            }
        }
        Ok(index)
    }
}

impl ExperimentIndex {
    /// Reads an `experiment.json`: every key names a folder of the store, never a path
    /// outside it.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let index: Self = read_json(path, "experiment index")?;
        if !index.run_tickets.is_empty() && index.run_tickets.len() != index.runs.len() {
            return Err(bad_index(
                path,
                "experiment index",
                format!(
                    "{} run methods for {} runs",
                    index.run_tickets.len(),
                    index.runs.len()
                ),
            ));
        }
        if let Some(key) = index
            .runs
            .iter()
            .chain(index.tickets.values())
            .find(|k| !is_plain_name(k))
        {
            return Err(bad_index(
                path,
                "experiment index",
                format!("`{key}` is not a stage key"),
            ));
        }
        Ok(index)
    }
}

/// A single file or folder name: not empty, no separator, not `.` or `..`.
pub(super) fn is_plain_name(name: &str) -> bool {
    let mut parts = Path::new(name).components();
    matches!(parts.next(), Some(std::path::Component::Normal(_)))
        && parts.next().is_none()
        && !name.contains(['/', '\\'])
}

pub(super) fn bad_index(path: &Path, what: &'static str, reason: String) -> DwlthError {
    StoreError::Format {
        path: path.to_path_buf(),
        what,
        reason,
    }
    .into()
}

/// FNV-1a over `bytes`: stable seeds derived from names.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    dwlth_store::fnv1a(bytes.iter().copied())
}

pub(super) fn say(verbose: bool, line: String) {
    if verbose {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

pub(super) fn json_bytes(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value)
        .map_err(|e| DwlthError::InvalidArgument(format!("cannot write JSON: {e}")))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| DwlthError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        StoreError::Format {
            path: path.to_path_buf(),
            what,
            reason: e.to_string(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn indexes_name_folders_of_the_store_never_paths_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("experiment.json");
        let write = |runs: &[&str], tickets: &str| {
            let index = json!({"name": "x", "runs": runs, "tickets": {"std": tickets}});
            std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
        };
        write(&["a1b2", "c3d4"], "e5f6");
        assert_eq!(ExperimentIndex::read(&path).unwrap().runs, ["a1b2", "c3d4"]);
        for (runs, tickets) in [
            (vec!["../../etc"], "e5f6"),
            (vec!["a1b2"], "/tmp/x"),
            (vec![""], "e5f6"),
            (vec!["a/b"], "e5f6"),
            (vec!["a1b2"], ".."),
        ] {
            write(&runs, tickets);
            let message = ExperimentIndex::read(&path).unwrap_err().to_string();
            assert!(message.contains("is not a stage key"), "{message}");
        }
        let tickets = dir.path().join("tickets.json");
        for (levels, ok) in [
            (json!([[0.5, "s0.5000.safetensors"]]), true),
            (json!([[1.5, "s0.5000.safetensors"]]), false),
            (json!([[0.5, "../../weights.safetensors"]]), false),
        ] {
            std::fs::write(
                &tickets,
                serde_json::to_vec(&json!({ "levels": levels })).unwrap(),
            )
            .unwrap();
            assert_eq!(TicketIndex::read(&tickets).is_ok(), ok, "{levels}");
        }
    }
}
