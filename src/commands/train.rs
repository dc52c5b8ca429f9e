//! `dwlth train --config train.toml`: one training run (any regime) from a typed file.
//!
//! ```toml
//! out = "runs/cifar10-at"
//!
//! [model]
//! weights = "r18.safetensors"      # start from saved weights ...
//! # arch = "resnet18"              # ... or a fresh model
//! # width = 16
//! # stem = "cifar"
//! masks = "ticket.safetensors"     # optional: train a ticket
//! linear = false                   # true: linear evaluation (frozen backbone)
//!
//! [data]                           # the pipeline's DataSpec
//! dataset = "cifar10"
//! root = "/data/cifar10"
//! validation = 5000
//! batch_size = 128
//! fraction = 1.0
//!
//! [train]                          # dwlth_adv::TrainConfig (see `dwlth train --print-example`)
//! ```

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use dwlth_adv::{Regime, TrainConfig, Trainer};
use dwlth_models::device::DeviceList;
use dwlth_models::io::{load_resnet, save_resnet};
use dwlth_models::{Arch, ResNetConfig, Stem};
use dwlth_prune::{apply_masks, MaskSet};
use serde::{Deserialize, Serialize};

use crate::error::{DwlthError, Result};
use crate::pipeline::data::{eval_set, fraction, training, Splits};
use crate::pipeline::DataSpec;

/// The model of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainModel {
    /// Start from these weights (the project's safetensors).
    #[serde(default)]
    pub weights: Option<PathBuf>,
    /// Architecture of a fresh model (or a check of the weights).
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Width of a fresh model.
    #[serde(default)]
    pub width: Option<usize>,
    /// Stem of a fresh model.
    #[serde(default)]
    pub stem: Option<Stem>,
    /// A ticket to train.
    #[serde(default)]
    pub masks: Option<PathBuf>,
    /// Linear evaluation: only the head trains.
    #[serde(default)]
    pub linear: bool,
}

/// The data of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainData {
    /// Dataset, folder, limits and validation split.
    #[serde(flatten)]
    pub spec: DataSpec,
    /// Images per batch.
    pub batch_size: usize,
    /// Fraction of the training set (stratified when `stratified`).
    #[serde(default = "one")]
    pub fraction: f64,
    /// Class-stratified subsets (else the first N).
    #[serde(default)]
    pub stratified: bool,
}

fn one() -> f64 {
    1.0
}

/// A whole `dwlth train` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainFile {
    /// Run folder: checkpoints, metrics, final weights, test report.
    pub out: PathBuf,
    /// Devices, as `--device` takes them (`cuda:0,cuda:1` splits every batch across both);
    /// `--device` on the command line wins. Not part of the run's settings: a run may resume
    /// on other devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<String>,
    /// Model.
    pub model: TrainModel,
    /// Data.
    pub data: TrainData,
    /// Training.
    pub train: TrainConfig,
}

impl TrainFile {
    /// An example file (CIFAR-10, PGD-10 adversarial training, the paper's schedule).
    pub fn example() -> Self {
        Self {
            out: "runs/cifar10-at".into(),
            devices: None,
            model: TrainModel {
                weights: None,
                arch: Some(Arch::ResNet18),
                width: Some(16),
                stem: Some(Stem::Cifar),
                masks: None,
                linear: false,
            },
            data: TrainData {
                spec: DataSpec {
                    dataset: "cifar10".into(),
                    root: "data/cifar10".into(),
                    train_limit: None,
                    validation: 5000,
                    test_limit: None,
                    train_share: None,
                    augment: true,
                    resize: None,
                },
                batch_size: 128,
                fraction: 1.0,
                stratified: false,
            },
            train: TrainConfig::cifar_paper(Regime::pgd10()),
        }
    }
}

impl TrainFile {
    /// Reads a run file. An unknown key is an error naming the nearest known one, also in
    /// `[data]`, whose keys serde reads through `flatten` without reporting strangers.
    pub fn from_toml(text: &str) -> std::result::Result<Self, String> {
        let mut full = Self::example();
        full.devices = Some("cpu".into());
        full.model.weights = Some(PathBuf::new());
        full.model.masks = Some(PathBuf::new());
        full.train.snapshots = true;
        full.train.overfit_guard = Some(Default::default());
        let examples = [full];
        let mut data_keys = crate::toml_keys::struct_fields::<DataSpec>();
        data_keys.extend(crate::toml_keys::known_keys(&examples, "data"));
        data_keys.sort();
        data_keys.dedup();
        let parsed = crate::toml_keys::from_str_strict(text, &examples);
        match &parsed {
            Err(e) if crate::toml_keys::is_unknown_key(e) => {}
            // Also when parsing failed: a misspelt `[data]` key leaves a required one missing.
            _ => crate::toml_keys::check_table_keys(text, "data", &data_keys)?,
        }
        parsed
    }

    /// Checks every setting before any data is read; errors name the key.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        self.data.spec.validate("data")?;
        let bad = |what: String| Err(DwlthError::InvalidArgument(what));
        if self.data.batch_size == 0 {
            return bad("`data.batch_size` = 0: must be at least 1".into());
        }
        let f = self.data.fraction;
        if !(f > 0.0 && f <= 1.0) {
            return bad(format!("`data.fraction` = {f}: must be in (0, 1]"));
        }
        if self.model.width == Some(0) {
            return bad("`model.width` = 0: must be at least 1".into());
        }
        if let (None, Some(arch)) = (&self.model.weights, self.model.arch) {
            crate::pipeline::ModelSpec {
                arch,
                width: self.model.width.unwrap_or(64),
                stem: self.model.stem.unwrap_or(Stem::ImageNet),
            }
            .check_memory()?;
        }
        Ok(())
    }
}

/// Runs the file at `path`; returns a printable summary.
pub fn run(path: &Path, devices: Option<&DeviceList>) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| DwlthError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let file = TrainFile::from_toml(&text)
        .map_err(|e| DwlthError::InvalidArgument(format!("`{}`: {e}", path.display())))?;
    file.validate()?;
    let devices = match (devices, &file.devices) {
        (Some(d), _) => d.clone(),
        (None, Some(text)) => text.parse()?,
        (None, None) => DeviceList::default(),
    };
    let device = devices.main().device()?.autodiff();
    let replicas = devices
        .replicas()
        .iter()
        .map(|d| Ok(d.device()?.autodiff()))
        .collect::<Result<Vec<Device>>>()?;
    let data = Splits::load(&file.data.spec)?;
    // A fresh model's initialisation and a new head are drawn from the run's seed.
    dwlth_models::random::seed(&device, file.train.seed);
    let classes = data.train.num_classes();
    let c = data.channels();
    let mut model = match (&file.model.weights, file.model.arch) {
        (Some(w), arch) => load_resnet(w, arch, &device)?.0,
        (None, Some(arch)) => ResNetConfig::new(arch)
            .with_width(file.model.width.unwrap_or(64))
            .with_stem(file.model.stem.unwrap_or(Stem::ImageNet))
            .with_in_channels(c)
            .with_num_classes(classes)
            .with_normalize(data.stats()?)
            .try_init(&device)?,
        (None, None) => {
            return Err(DwlthError::InvalidArgument(
                "[model] needs `weights` or `arch`".into(),
            ))
        }
    };
    if model.num_classes() != classes {
        model = model.with_head(classes, &device)?;
    }
    if let Some(m) = &file.model.masks {
        model = apply_masks(model, &MaskSet::load(m)?)?;
    }
    if file.model.linear {
        model = model.freeze_backbone();
    }
    let subset = fraction(
        &data.train,
        file.data.fraction,
        file.data.stratified,
        file.train.seed,
    )?;
    let mut train = training(
        &subset,
        &file.data.spec,
        file.data.batch_size,
        file.train.seed,
        &device,
    )?;
    let validation = eval_set(
        &data.validation,
        &file.data.spec,
        file.data.batch_size,
        &device,
    )?;
    // The checkpoints are bound to the data's content and the data settings too (the starting
    // weights and the training settings the trainer checks itself).
    let inputs = serde_json::json!({
        "data": data.identity(&file.data)?, "linear": file.model.linear,
    });
    let trainer = Trainer::new(file.train.clone(), Some(file.out.join("checkpoints")))?
        .with_inputs(inputs)
        .with_replicas(replicas);
    let outcome = trainer.fit(model, train.as_mut(), validation.as_ref(), classes)?;
    let test = eval_set(&data.test, &file.data.spec, file.data.batch_size, &device)?;
    let best_sa = outcome.best_sa.as_ref().map_or(&outcome.model, |(_, m)| m);
    let best_ra = outcome.best_ra.as_ref().map_or(&outcome.model, |(_, m)| m);
    save_resnet(&outcome.model, file.out.join("last.safetensors"))?;
    save_resnet(best_sa, file.out.join("best_sa.safetensors"))?;
    save_resnet(best_ra, file.out.join("best_ra.safetensors"))?;
    // The test attack's random starts from the run's seed (a resumed run measures the same).
    dwlth_models::random::seed(&device, file.train.seed ^ 0x7E57);
    let (sa, ra) = outcome.test(&test, file.train.eval_attack.as_ref(), classes)?;
    let report = serde_json::json!({
        "test_sa_of_best_sa": sa,
        "test_ra_of_best_ra": ra,
        "epochs": outcome.history.len(),
        "stopped": outcome.stopped,
        "history": outcome.history,
    });
    dwlth_models::io::atomic_write(
        &file.out.join("test.json"),
        serde_json::to_string_pretty(&report)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(format!(
        "test SA {:.2}% (best-SA checkpoint){}\nwrote {}",
        100.0 * sa,
        ra.map_or(String::new(), |r| format!(
            ", RA {:.2}% (best-RA checkpoint)",
            100.0 * r
        )),
        file.out.display()
    ))
}
