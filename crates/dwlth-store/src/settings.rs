//! Stored settings and the first difference between two of them, so that resuming with other
//! settings is refused with the setting that differs named.

use std::path::Path;

use serde_json::Value;

use crate::atomic::atomic_write;
use crate::error::{Result, StoreError};

/// Where two settings first differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Dotted path of the setting (`train.lr.milestones[1]`; empty for the whole value).
    pub setting: String,
    /// Its value on the left (JSON; `(absent)` when missing).
    pub stored: String,
    /// Its value on the right.
    pub given: String,
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The first setting (in sorted key order, depth first) whose values differ, if any.
pub fn first_difference(stored: &Value, given: &Value) -> Option<Difference> {
    diff_at("", Some(stored), Some(given))
}

fn diff_at(path: &str, a: Option<&Value>, b: Option<&Value>) -> Option<Difference> {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .find_map(|k| diff_at(&join(path, k), x.get(k), y.get(k)))
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| diff_at(&format!("{path}[{i}]"), Some(u), Some(v))),
        (a, b) if a == b => None,
        (a, b) => Some(Difference {
            setting: if path.is_empty() {
                "(all)".into()
            } else {
                path.into()
            },
            stored: show(a),
            given: show(b),
        }),
    }
}

/// Checks `given` against the settings stored in `file` (writing them if there are none yet).
/// `what` names the folder's content in the error.
pub fn check_settings(file: &Path, what: &str, given: &Value) -> Result<()> {
    let folder = crate::temp::parent(file).to_path_buf();
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let json = serde_json::to_vec_pretty(given).map_err(|e| StoreError::Format {
                path: file.to_path_buf(),
                what: "settings file",
                reason: e.to_string(),
            })?;
            return atomic_write(file, &json);
        }
        Err(e) => return Err(StoreError::io(file, e)),
    };
    let stored: Value = serde_json::from_slice(&bytes).map_err(|e| StoreError::Format {
        path: file.to_path_buf(),
        what: "settings file",
        reason: e.to_string(),
    })?;
    match first_difference(&stored, given) {
        None => Ok(()),
        Some(d) => Err(crate::SettingsChanged::error(folder, what, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_first_differing_setting() {
        let a = json!({"lr": {"base": 0.1, "milestones": [50, 75]}, "seed": 0});
        let b = json!({"lr": {"base": 0.1, "milestones": [50, 80]}, "seed": 0});
        let d = first_difference(&a, &b).unwrap();
        assert_eq!(d.setting, "lr.milestones[1]");
        assert_eq!((d.stored.as_str(), d.given.as_str()), ("75", "80"));
        let c = json!({"lr": {"base": 0.1, "milestones": [50, 75]}, "seed": 0, "x": true});
        assert_eq!(first_difference(&a, &c).unwrap().stored, "(absent)");
        assert_eq!(first_difference(&a, &a), None);
        let short = json!({"lr": {"base": 0.1, "milestones": [50]}, "seed": 0});
        assert_eq!(
            first_difference(&a, &short).unwrap().setting,
            "lr.milestones"
        );
    }

    #[test]
    fn a_folder_refuses_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("settings.json");
        check_settings(&file, "a training run", &json!({"data": "mnist"})).unwrap();
        check_settings(&file, "a training run", &json!({"data": "mnist"})).unwrap();
        let err = check_settings(&file, "a training run", &json!({"data": "fashion"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`data` was \"mnist\", now \"fashion\""),
            "{err}"
        );
    }
}
