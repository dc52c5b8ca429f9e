//! CIFAR-10 and CIFAR-100 in their binary version (`cifar-10-binary.tar.gz`,
//! `cifar-100-binary.tar.gz`): fixed-size records of label byte(s) followed by 3,072 pixel
//! bytes, 1,024 per channel (R, G, B), each plane row-major: already `[C, H, W]`.

use std::path::{Path, PathBuf};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::names::{CIFAR100_COARSE, CIFAR100_FINE, CIFAR10_CLASSES};
use crate::formats::Split;
use crate::io::read_file;

/// Pixel bytes per CIFAR image (3 × 32 × 32).
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Shape of a CIFAR image.
pub const CIFAR_SHAPE: [usize; 3] = [3, 32, 32];

/// Which of CIFAR-100's two labels to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cifar100Label {
    /// The 20 superclasses.
    Coarse,
    /// The 100 classes (the usual one).
    #[default]
    Fine,
}

/// Pixels (`N × 3072` bytes) and labels read from one binary file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CifarRecords {
    /// `[N, 3, 32, 32]` bytes.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u32>,
}

/// Parses a CIFAR-10 binary file (`data_batch_k.bin`, `test_batch.bin`): records of one label
/// byte (0–9) and 3,072 pixel bytes. `name` only labels errors.
pub fn parse_cifar10(bytes: &[u8], name: &Path) -> Result<CifarRecords> {
    parse_records(bytes, name, "CIFAR-10 binary", &[10], 0)
}

/// Parses a CIFAR-100 binary file (`train.bin`, `test.bin`): records of a coarse label byte
/// (0–19), a fine label byte (0–99) and 3,072 pixel bytes. Both labels are checked.
pub fn parse_cifar100(bytes: &[u8], name: &Path, label: Cifar100Label) -> Result<CifarRecords> {
    let pick = match label {
        Cifar100Label::Coarse => 0,
        Cifar100Label::Fine => 1,
    };
    parse_records(bytes, name, "CIFAR-100 binary", &[20, 100], pick)
}

fn parse_records(
    bytes: &[u8],
    name: &Path,
    format: &'static str,
    num_classes: &[usize],
    pick: usize,
) -> Result<CifarRecords> {
    let record = num_classes.len() + CIFAR_IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(DataError::format(name, format, 0, "the file is empty"));
    }
    if bytes.len() % record != 0 {
        let whole = bytes.len() / record;
        return Err(DataError::format(
            name,
            format,
            (whole * record) as u64,
            format!(
                "{} bytes is not a whole number of {record}-byte records: record {whole} is cut \
                 short (truncated download?)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut pixels = Vec::with_capacity(n * CIFAR_IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for (k, &classes) in num_classes.iter().enumerate() {
            if rec[k] as usize >= classes {
                return Err(DataError::LabelOutOfRange {
                    path: name.to_path_buf(),
                    offset: (i * record + k) as u64,
                    label: i64::from(rec[k]),
                    num_classes: classes,
                });
            }
        }
        labels.push(u32::from(rec[pick]));
        pixels.extend_from_slice(&rec[num_classes.len()..]);
    }
    Ok(CifarRecords { pixels, labels })
}

/// The folder holding the binary files: `root` itself or its canonical sub-folder.
fn locate(root: &Path, sub: &str, probe: &str, dataset: &str, archive: &str) -> Result<PathBuf> {
    for dir in [root.to_path_buf(), root.join(sub)] {
        if dir.join(probe).is_file() {
            return Ok(dir);
        }
    }
    Err(DataError::Missing {
        dataset: dataset.into(),
        path: root.join(sub).join(probe),
        hint: format!(
            "unpack {archive} there (or run `dwlth data fetch --dataset {}`)",
            dataset.to_lowercase().replace('-', "")
        ),
    })
}

/// Class names from a `*.txt` beside the data (one per line) when it has the right count.
fn names_from(dir: &Path, file: &str, fallback: &[&str]) -> Vec<String> {
    let read = std::fs::read_to_string(dir.join(file)).ok().map(|text| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect::<Vec<_>>()
    });
    match read {
        Some(names) if names.len() == fallback.len() => names,
        _ => fallback.iter().map(|s| s.to_string()).collect(),
    }
}

/// Loads CIFAR-10 from `root` (the `cifar-10-batches-bin` folder or its parent). Train is
/// `data_batch_1.bin` … `data_batch_5.bin` in order (50,000 images), test `test_batch.bin`.
pub fn load_cifar10(root: &Path, split: Split) -> Result<ImageDataset> {
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|k| format!("data_batch_{k}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
        other => {
            return Err(DataError::invalid(format!(
                "CIFAR-10 has splits train and test, not {other}"
            )))
        }
    };
    let dir = locate(
        root,
        "cifar-10-batches-bin",
        &files[0],
        "CIFAR-10",
        "cifar-10-binary.tar.gz",
    )?;
    let mut all = CifarRecords {
        pixels: Vec::new(),
        labels: Vec::new(),
    };
    for f in &files {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(DataError::Missing {
                dataset: "CIFAR-10".into(),
                path,
                hint: "the folder is incomplete: unpack cifar-10-binary.tar.gz again".into(),
            });
        }
        let rec = parse_cifar10(&read_file(&path)?, &path)?;
        all.pixels.extend(rec.pixels);
        all.labels.extend(rec.labels);
    }
    let classes = names_from(&dir, "batches.meta.txt", &CIFAR10_CLASSES);
    ImageDataset::new(all.pixels, all.labels, CIFAR_SHAPE, classes)
}

/// Loads CIFAR-100 from `root` (the `cifar-100-binary` folder or its parent): `train.bin`
/// (50,000 images) or `test.bin` (10,000), with fine or coarse labels.
pub fn load_cifar100(root: &Path, split: Split, label: Cifar100Label) -> Result<ImageDataset> {
    let file = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
        other => {
            return Err(DataError::invalid(format!(
                "CIFAR-100 has splits train and test, not {other}"
            )))
        }
    };
    let dir = locate(
        root,
        "cifar-100-binary",
        file,
        "CIFAR-100",
        "cifar-100-binary.tar.gz",
    )?;
    let path = dir.join(file);
    let rec = parse_cifar100(&read_file(&path)?, &path, label)?;
    let classes = match label {
        Cifar100Label::Fine => names_from(&dir, "fine_label_names.txt", &CIFAR100_FINE),
        Cifar100Label::Coarse => names_from(&dir, "coarse_label_names.txt", &CIFAR100_COARSE),
    };
    ImageDataset::new(rec.pixels, rec.labels, CIFAR_SHAPE, classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record10(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, CIFAR_IMAGE_BYTES));
        r
    }

    #[test]
    fn parses_records_in_order() {
        let mut bytes = record10(3, 7);
        bytes.extend(record10(9, 8));
        let rec = parse_cifar10(&bytes, Path::new("b.bin")).unwrap();
        assert_eq!(rec.labels, vec![3, 9]);
        assert_eq!(rec.pixels.len(), 2 * CIFAR_IMAGE_BYTES);
        assert_eq!(rec.pixels[CIFAR_IMAGE_BYTES], 8);
    }

    #[test]
    fn truncated_file_names_offset() {
        let mut bytes = record10(1, 0);
        bytes.extend(&record10(2, 0)[..100]);
        let err = parse_cifar10(&bytes, Path::new("data_batch_1.bin")).unwrap_err();
        match &err {
            DataError::Format { offset, path, .. } => {
                assert_eq!(*offset, 3073);
                assert_eq!(path, Path::new("data_batch_1.bin"));
            }
            e => panic!("{e}"),
        }
        assert!(parse_cifar10(&[], Path::new("e.bin")).is_err());
    }

    #[test]
    fn bad_label_names_offset() {
        let mut bytes = record10(1, 0);
        bytes.extend(record10(10, 0));
        match parse_cifar10(&bytes, Path::new("t.bin")).unwrap_err() {
            DataError::LabelOutOfRange { offset, label, .. } => {
                assert_eq!((offset, label), (3073, 10));
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn cifar100_picks_label_and_checks_both() {
        let mut rec = vec![19u8, 99];
        rec.extend(vec![0u8; CIFAR_IMAGE_BYTES]);
        let p = Path::new("train.bin");
        assert_eq!(
            parse_cifar100(&rec, p, Cifar100Label::Fine).unwrap().labels,
            [99]
        );
        assert_eq!(
            parse_cifar100(&rec, p, Cifar100Label::Coarse)
                .unwrap()
                .labels,
            [19]
        );
        rec[0] = 20;
        match parse_cifar100(&rec, p, Cifar100Label::Fine).unwrap_err() {
            DataError::LabelOutOfRange { offset, .. } => assert_eq!(offset, 0),
            e => panic!("{e}"),
        }
    }
}
