//! SVHN "format 2" (cropped 32×32 digits): `train_32x32.mat` (73,257), `test_32x32.mat`
//! (26,032), `extra_32x32.mat` (531,131). `X` is uint8 `[32, 32, 3, N]` in MATLAB's
//! column-major order, `y` is `[N, 1]` with labels 1–10 where 10 means the digit 0.

use std::path::{Path, PathBuf};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::mat::{parse_mat, MatData, MatFile};
use crate::formats::names::DIGITS;
use crate::formats::Split;
use crate::io::read_file;

const FORMAT: &str = "SVHN MAT";

/// Builds the dataset from a parsed SVHN MAT-file; `name` labels errors.
///
/// Pixel `X(r, c, ch, n)` (row, column, channel, image) sits at
/// `r + 32 c + 1024 ch + 3072 n` and becomes `[n, ch, r, c]`, as torchvision's
/// `np.transpose(X, (3, 2, 0, 1))`; label 10 becomes 0.
pub fn svhn_dataset(mat: &MatFile, name: &Path) -> Result<ImageDataset> {
    let x = mat
        .get("X")
        .ok_or_else(|| DataError::format(name, FORMAT, 128, "no variable `X` (the images)"))?;
    let y = mat
        .get("y")
        .ok_or_else(|| DataError::format(name, FORMAT, 128, "no variable `y` (the labels)"))?;
    let (h, w, c, n) = match x.dims.as_slice() {
        [h, w, c, n] => (*h, *w, *c, *n),
        [h, w, c] => (*h, *w, *c, 1),
        d => {
            return Err(DataError::format(
                name,
                FORMAT,
                x.offset,
                format!("`X` has dimensions {d:?}, expected [H, W, C, N]"),
            ))
        }
    };
    let pixels = match &x.data {
        MatData::U8(v) => v.as_slice(),
        MatData::F64(_) => {
            return Err(DataError::format(
                name,
                FORMAT,
                x.offset,
                "`X` is not stored as uint8",
            ))
        }
    };
    let label_count = y.dims.iter().product::<usize>();
    if y.dims.len() != 2 || !y.dims.contains(&1) || label_count != n {
        return Err(DataError::format(
            name,
            FORMAT,
            y.offset,
            format!("`y` has dimensions {:?}, expected [{n}, 1]", y.dims),
        ));
    }
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let v = y.data.get_f64(i).unwrap_or(f64::NAN);
        if v.fract() != 0.0 || !(0.0..=10.0).contains(&v) {
            return Err(DataError::LabelOutOfRange {
                path: name.to_path_buf(),
                offset: y.offset,
                label: if v.is_finite() { v as i64 } else { -1 },
                num_classes: 10,
            });
        }
        labels.push((v as u32) % 10);
    }
    let plane = h * w;
    let per_image = plane * c;
    let mut chw = vec![0u8; pixels.len()];
    for img in 0..n {
        let src = &pixels[img * per_image..(img + 1) * per_image];
        let dst = &mut chw[img * per_image..(img + 1) * per_image];
        for ch in 0..c {
            for col in 0..w {
                let s = &src[ch * plane + col * h..ch * plane + col * h + h];
                for (row, &v) in s.iter().enumerate() {
                    dst[ch * plane + row * w + col] = v;
                }
            }
        }
    }
    let classes = DIGITS.iter().map(|s| s.to_string()).collect();
    ImageDataset::new(chw, labels, [c, h, w], classes)
}

/// Parses an SVHN MAT-file held in memory.
pub fn parse_svhn(bytes: &[u8], name: &Path) -> Result<ImageDataset> {
    svhn_dataset(&parse_mat(bytes, name)?, name)
}

/// The file name of a split.
pub fn svhn_file(split: Split) -> Result<&'static str> {
    match split {
        Split::Train => Ok("train_32x32.mat"),
        Split::Test => Ok("test_32x32.mat"),
        Split::Extra => Ok("extra_32x32.mat"),
        other => Err(DataError::invalid(format!(
            "SVHN has splits train, test and extra, not {other}"
        ))),
    }
}

/// Loads SVHN from `root` (the folder holding the `*_32x32.mat` files).
pub fn load_svhn(root: &Path, split: Split) -> Result<ImageDataset> {
    let file = svhn_file(split)?;
    let path: PathBuf = [root.to_path_buf(), root.join("svhn")]
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::Missing {
            dataset: "SVHN".into(),
            path: root.join(file),
            hint: "put the format-2 file there (or run `dwlth data fetch --dataset svhn`)".into(),
        })?;
    parse_svhn(&read_file(&path)?, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::mat::tests::write_mat;

    #[test]
    fn column_major_to_chw_and_label_ten_is_zero() {
        // Two 2x3 RGB images; X(r, c, ch, n) = 100 n + 10 ch + 3 r + c (column-major storage).
        let (h, w, c, n) = (2, 3, 3, 2);
        let mut x = vec![0u8; h * w * c * n];
        for img in 0..n {
            for ch in 0..c {
                for col in 0..w {
                    for row in 0..h {
                        x[row + h * col + h * w * ch + h * w * c * img] =
                            (100 * img + 10 * ch + 3 * row + col) as u8;
                    }
                }
            }
        }
        let bytes = write_mat(
            &[
                ("X", &[h, w, c, n], MatData::U8(x)),
                ("y", &[n, 1], MatData::F64(vec![10.0, 3.0])),
            ],
            false,
        );
        let ds = parse_svhn(&bytes, Path::new("t.mat")).unwrap();
        assert_eq!(ds.shape(), [3, 2, 3]);
        assert_eq!(ds.labels(), vec![0, 3]);
        // image 1, channel 2, row 1, col 2
        let p = ds.pixels(1).unwrap();
        assert_eq!(p[2 * 6 + 3 + 2], 100 + 20 + 3 + 2);
    }

    #[test]
    fn bad_labels_and_shapes_are_errors() {
        let x = MatData::U8(vec![0; 3 * 4]);
        let bytes = write_mat(
            &[
                ("X", &[2, 2, 3, 1], x.clone()),
                ("y", &[1, 1], MatData::F64(vec![11.0])),
            ],
            false,
        );
        let e = parse_svhn(&bytes, Path::new("t.mat")).unwrap_err();
        assert!(
            matches!(e, DataError::LabelOutOfRange { label: 11, .. }),
            "{e}"
        );
        let bytes = write_mat(
            &[
                ("X", &[2, 2, 3, 1], x),
                ("y", &[2, 1], MatData::F64(vec![1.0, 2.0])),
            ],
            false,
        );
        assert!(parse_svhn(&bytes, Path::new("t.mat")).is_err());
    }
}
