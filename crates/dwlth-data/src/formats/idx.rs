//! The IDX format of MNIST and Fashion-MNIST, raw or gzipped: a 4-byte magic (two zero bytes,
//! a type code, the number of dimensions), one big-endian `u32` per dimension, then the
//! values in row-major order. Only unsigned bytes (type `0x08`) occur in these datasets.

use std::path::{Path, PathBuf};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::names::{DIGITS, FASHION_MNIST_CLASSES};
use crate::formats::Split;
use crate::io::{maybe_gunzip, read_file};

const FORMAT: &str = "IDX";

/// A decoded IDX array of bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (`[N, 28, 28]` for images, `[N]` for labels).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

/// Parses an IDX file of unsigned bytes, gzipped or not (detected from the content, not the
/// name). Offsets in errors of gzipped files count bytes of the decompressed stream.
pub fn parse_idx(bytes: &[u8], name: &Path) -> Result<IdxArray> {
    let bytes = maybe_gunzip(bytes, name, FORMAT)?;
    let bytes = &*bytes;
    if bytes.len() < 4 {
        return Err(DataError::format(
            name,
            FORMAT,
            bytes.len() as u64,
            "shorter than the 4-byte magic number",
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::format(
            name,
            FORMAT,
            0,
            format!(
                "wrong magic number {:02x}{:02x}{:02x}{:02x} (expected 0000 08 nn)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::format(
            name,
            FORMAT,
            2,
            format!(
                "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(DataError::format(name, FORMAT, 3, "zero dimensions"));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::format(
            name,
            FORMAT,
            bytes.len() as u64,
            format!("the header of {ndims} dimensions is cut short"),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            DataError::format(name, FORMAT, 4, format!("dimensions {dims:?} overflow"))
        })?;
    let body = bytes.len() - header;
    if body != count {
        return Err(DataError::format(
            name,
            FORMAT,
            (header + count.min(body)) as u64,
            format!(
                "dimensions {dims:?} need {count} bytes of data, the file has {body} \
                 ({})",
                if body < count {
                    "truncated"
                } else {
                    "trailing bytes"
                }
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Builds a dataset from an IDX image array `[N, H, W]` and a label array `[N]`.
/// `num_classes` bounds the labels; errors name `labels_name`, with the byte offset.
pub fn idx_dataset(
    images: IdxArray,
    labels: IdxArray,
    images_name: &Path,
    labels_name: &Path,
    classes: Vec<String>,
) -> Result<ImageDataset> {
    if images.dims.len() != 3 {
        return Err(DataError::format(
            images_name,
            FORMAT,
            3,
            format!(
                "images must have 3 dimensions [N, H, W], found {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(DataError::format(
            labels_name,
            FORMAT,
            3,
            format!("labels must have 1 dimension [N], found {:?}", labels.dims),
        ));
    }
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        return Err(DataError::format(
            labels_name,
            FORMAT,
            4,
            format!(
                "{} labels for {n} images in `{}`",
                labels.dims[0],
                images_name.display()
            ),
        ));
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(DataError::Empty {
            path: images_name.to_path_buf(),
            what: "images".into(),
        });
    }
    if let Some(i) = labels
        .data
        .iter()
        .position(|&l| l as usize >= classes.len())
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_name.to_path_buf(),
            offset: (8 + i) as u64,
            label: i64::from(labels.data[i]),
            num_classes: classes.len(),
        });
    }
    let labels = labels.data.into_iter().map(u32::from).collect();
    ImageDataset::new(images.data, labels, [1, h, w], classes)
}

/// Which member of the IDX family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxDataset {
    /// Handwritten digits.
    Mnist,
    /// Zalando's clothing images.
    FashionMnist,
}

impl IdxDataset {
    fn display(self) -> &'static str {
        match self {
            Self::Mnist => "MNIST",
            Self::FashionMnist => "Fashion-MNIST",
        }
    }

    /// torchvision's folder name under its root (`<root>/<name>/raw`).
    fn torchvision_dir(self) -> &'static str {
        match self {
            Self::Mnist => "MNIST",
            Self::FashionMnist => "FashionMNIST",
        }
    }

    fn classes(self) -> Vec<String> {
        let names: &[&str] = match self {
            Self::Mnist => &DIGITS,
            Self::FashionMnist => &FASHION_MNIST_CLASSES,
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// Finds `stem` or `stem.gz` in `root`, `root/raw` or torchvision's `root/<Name>/raw`.
fn find(root: &Path, stem: &str, which: IdxDataset) -> Result<PathBuf> {
    let dirs = [
        root.to_path_buf(),
        root.join("raw"),
        root.join(which.torchvision_dir()).join("raw"),
    ];
    for dir in &dirs {
        for name in [format!("{stem}.gz"), stem.to_string()] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(DataError::Missing {
        dataset: which.display().into(),
        path: root.join(format!("{stem}.gz")),
        hint: format!(
            "put the four IDX files (raw or .gz) there (or run `dwlth data fetch --dataset {}`)",
            match which {
                IdxDataset::Mnist => "mnist",
                IdxDataset::FashionMnist => "fashion-mnist",
            }
        ),
    })
}

/// Loads MNIST or Fashion-MNIST from `root`: `train-images-idx3-ubyte[.gz]` with
/// `train-labels-idx1-ubyte[.gz]` (60,000) or the `t10k-*` files (10,000).
pub fn load_idx(which: IdxDataset, root: &Path, split: Split) -> Result<ImageDataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
        other => {
            return Err(DataError::invalid(format!(
                "{} has splits train and test, not {other}",
                which.display()
            )))
        }
    };
    let images_path = find(root, &format!("{prefix}-images-idx3-ubyte"), which)?;
    let labels_path = find(root, &format!("{prefix}-labels-idx1-ubyte"), which)?;
    let images = parse_idx(&read_file(&images_path)?, &images_path)?;
    let labels = parse_idx(&read_file(&labels_path)?, &labels_path)?;
    idx_dataset(images, labels, &images_path, &labels_path, which.classes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    }

    #[test]
    fn parses_and_rejects() {
        let p = Path::new("x");
        let a = parse_idx(&idx(&[2, 1, 2], &[1, 2, 3, 4]), p).unwrap();
        assert_eq!(a.dims, vec![2, 1, 2]);
        assert_eq!(a.data, vec![1, 2, 3, 4]);
        // truncated
        let e = parse_idx(&idx(&[2, 1, 2], &[1, 2, 3]), p).unwrap_err();
        assert!(matches!(e, DataError::Format { offset: 19, .. }), "{e}");
        // wrong magic, wrong type, short header, overflow
        assert!(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 0], p).is_err());
        assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 0], p).is_err());
        assert!(parse_idx(&[0, 0, 8, 3, 0, 0], p).is_err());
        assert!(parse_idx(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), p).is_err());
        assert!(parse_idx(&[0, 0], p).is_err());
    }

    #[test]
    fn labels_are_bounded() {
        let images = parse_idx(&idx(&[2, 1, 1], &[5, 6]), Path::new("i")).unwrap();
        let labels = parse_idx(&idx(&[2], &[3, 10]), Path::new("l")).unwrap();
        let e = idx_dataset(
            images,
            labels,
            Path::new("i"),
            Path::new("l"),
            IdxDataset::Mnist.classes(),
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                DataError::LabelOutOfRange {
                    offset: 9,
                    label: 10,
                    ..
                }
            ),
            "{e}"
        );
    }
}
