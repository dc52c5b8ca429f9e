//! Checkpoint layouts and how their keys map onto torchvision's.
//!
//! Every format turns a [`StateDict`] into one whose keys are torchvision's state-dict keys,
//! plus `<layer>.weight_mask` for masks and `normalize.mean` / `normalize.std` for the input
//! normalisation. Keys a format knows to be irrelevant (optimiser state, the robustness
//! library's duplicate attacker copy, epochs) are set aside as *skipped*; keys it does not know
//! stay in, so that loading reports them as unexpected instead of silently dropping them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::state_dict::{RawTensor, StateDict};
use crate::error::{ModelError, Result};

/// A checkpoint layout the importer understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointFormat {
    /// A torchvision `state_dict` (`conv1.weight`, ..., `fc.bias`), `.pth` or `.safetensors`;
    /// a `module.` prefix (DataParallel) is removed. Holds no normalisation.
    Torchvision,
    /// The MadryLab `robustness` library: top-level `model` (older files: `state_dict`) holding
    /// `module.normalizer.new_mean|new_std` and `module.model.<torchvision key>`;
    /// `module.attacker.*` (a second copy) and `optimizer`, `schedule`, `epoch`, `amp` are
    /// skipped.
    Robustness,
    /// fast_adversarial ImageNet: `state_dict` holding `module.<torchvision key>`; `epoch`,
    /// `arch`, `best_prec1`, `optimizer` skipped. Holds no normalisation (ImageNet statistics).
    FastAdversarial,
    /// Double-Win-LTH tickets: `X.weight_orig` + `X.weight_mask` for pruned layers (what
    /// `torch.nn.utils.prune` saves), optionally wrapped as `nn.Sequential(normalizer, net)`
    /// with prefixes `0.` (normaliser) and `1.` (network).
    DoubleWin,
    /// This project's own safetensors file (written by [`save_resnet`](super::save_resnet)):
    /// torchvision keys, `X.weight_mask`, `normalize.mean|std`.
    Dwlth,
}

impl CheckpointFormat {
    /// All formats.
    pub const ALL: [CheckpointFormat; 5] = [
        CheckpointFormat::Torchvision,
        CheckpointFormat::Robustness,
        CheckpointFormat::FastAdversarial,
        CheckpointFormat::DoubleWin,
        CheckpointFormat::Dwlth,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CheckpointFormat::Torchvision => "torchvision",
            CheckpointFormat::Robustness => "robustness",
            CheckpointFormat::FastAdversarial => "fast-adversarial",
            CheckpointFormat::DoubleWin => "double-win",
            CheckpointFormat::Dwlth => "dwlth",
        }
    }

    /// Whether files of this format carry their own input normalisation.
    pub fn has_normalization(self) -> bool {
        matches!(
            self,
            CheckpointFormat::Robustness | CheckpointFormat::DoubleWin | CheckpointFormat::Dwlth
        )
    }

    /// Rewrites `dict` into torchvision keys. Returns the rewritten dict and the skipped keys.
    pub fn canonicalize(self, dict: &StateDict) -> Result<(StateDict, Vec<String>)> {
        let mut out = Canonical::default();
        match self {
            CheckpointFormat::Torchvision | CheckpointFormat::Dwlth => {
                let strip = all_start_with(dict, "module.");
                for (key, t) in dict.tensors() {
                    let key = if strip {
                        &key["module.".len()..]
                    } else {
                        key.as_str()
                    };
                    out.keep(key, t);
                }
            }
            CheckpointFormat::Robustness => {
                let root = find_root(
                    dict,
                    &["model.", "state_dict.", ""],
                    "module.model.conv1.weight",
                )
                .ok_or_else(|| {
                    missing_layout(
                        dict,
                        "`module.model.*` tensors under a top-level `model` or `state_dict` entry",
                    )
                })?;
                for (key, t) in dict.tensors() {
                    let Some(inner) = key.strip_prefix(root) else {
                        out.skip(key);
                        continue;
                    };
                    if let Some(k) = inner.strip_prefix("module.model.") {
                        out.keep(k, t);
                    } else if inner.starts_with("module.attacker.") {
                        out.skip(key);
                    } else if let Some(stat) = inner.strip_prefix("module.normalizer.") {
                        out.normalizer(dict, key, stat, t)?;
                    } else if root.is_empty() {
                        // A bare dict also holds whatever else was saved beside the model.
                        out.skip(key);
                    } else {
                        out.keep(key, t);
                    }
                }
            }
            CheckpointFormat::FastAdversarial => {
                let root = find_root(dict, &["state_dict.", ""], "module.conv1.weight")
                    .ok_or_else(|| {
                        missing_layout(
                            dict,
                            "`module.*` tensors under a top-level `state_dict` entry",
                        )
                    })?;
                for (key, t) in dict.tensors() {
                    match key
                        .strip_prefix(root)
                        .and_then(|k| k.strip_prefix("module."))
                    {
                        Some(k) => out.keep(k, t),
                        None if root.is_empty() || !key.starts_with(root) => out.skip(key),
                        None => out.keep(key, t),
                    }
                }
            }
            CheckpointFormat::DoubleWin => {
                let root = ["state_dict.", "model.", ""]
                    .into_iter()
                    .find(|r| {
                        [
                            "1.conv1.weight",
                            "1.conv1.weight_orig",
                            "conv1.weight",
                            "conv1.weight_orig",
                        ]
                        .iter()
                        .any(|k| dict.contains(&format!("{r}{k}")))
                    })
                    .ok_or_else(|| {
                        missing_layout(
                            dict,
                            "`conv1.weight` or `conv1.weight_orig`, optionally prefixed by `1.`",
                        )
                    })?;
                let wrapped = dict.contains(&format!("{root}1.conv1.weight"))
                    || dict.contains(&format!("{root}1.conv1.weight_orig"));
                for (key, t) in dict.tensors() {
                    let Some(inner) = key.strip_prefix(root) else {
                        out.skip(key);
                        continue;
                    };
                    let net = if wrapped {
                        inner.strip_prefix("1.")
                    } else {
                        Some(inner)
                    };
                    match net {
                        Some(k) => match k.strip_suffix(".weight_orig") {
                            Some(layer) => out.keep(&format!("{layer}.weight"), t),
                            None => out.keep(k, t),
                        },
                        None => match inner.strip_prefix("0.") {
                            Some(stat) => out.normalizer(dict, key, stat, t)?,
                            None => out.keep(key, t),
                        },
                    }
                }
            }
        }
        Ok((dict.with_tensors(out.tensors), out.skipped))
    }
}

#[derive(Default)]
struct Canonical {
    tensors: BTreeMap<String, RawTensor>,
    skipped: Vec<String>,
}

impl Canonical {
    fn keep(&mut self, key: &str, t: &RawTensor) {
        self.tensors.insert(key.to_string(), t.clone());
    }

    fn skip(&mut self, key: &str) {
        self.skipped.push(key.to_string());
    }

    /// A normaliser statistic: `new_mean`/`mean` → `normalize.mean`, `new_std`/`std` →
    /// `normalize.std`, reshaped from `[C, 1, 1]` to `[C]`.
    fn normalizer(&mut self, dict: &StateDict, key: &str, stat: &str, t: &RawTensor) -> Result<()> {
        let name = match stat {
            "new_mean" | "mean" => "normalize.mean",
            "new_std" | "std" => "normalize.std",
            _ => {
                self.keep(key, t);
                return Ok(());
            }
        };
        let flat = t
            .clone()
            .reshaped(vec![t.numel()])
            .ok_or_else(|| ModelError::Format {
                path: dict.path().to_path_buf(),
                format: "checkpoint",
                reason: format!("normaliser tensor `{key}` has an unusable shape"),
            })?;
        self.tensors.insert(name.to_string(), flat);
        Ok(())
    }
}

fn all_start_with(dict: &StateDict, prefix: &str) -> bool {
    !dict.tensors().is_empty() && dict.tensors().keys().all(|k| k.starts_with(prefix))
}

fn find_root<'a>(dict: &StateDict, roots: &[&'a str], probe: &str) -> Option<&'a str> {
    roots
        .iter()
        .copied()
        .find(|r| dict.contains(&format!("{r}{probe}")))
}

fn missing_layout(dict: &StateDict, what: &str) -> ModelError {
    let sample: Vec<&str> = dict.tensors().keys().take(5).map(String::as_str).collect();
    ModelError::Format {
        path: dict.path().to_path_buf(),
        format: "checkpoint of this layout",
        reason: format!("expected {what}; the file's first keys are {sample:?}"),
    }
}

impl fmt::Display for CheckpointFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CheckpointFormat {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('_', "-");
        CheckpointFormat::ALL
            .into_iter()
            .find(|f| f.name() == key)
            .ok_or_else(|| ModelError::UnknownName {
                what: "checkpoint format",
                value: s.to_string(),
                expected: "torchvision, robustness, fast-adversarial, double-win, dwlth",
            })
    }
}
