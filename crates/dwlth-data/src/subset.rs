//! Subsets and splits, always as explicit index lists that can be saved and reloaded.
//!
//! Two kinds of data-limited subsets are offered because the papers disagree with their code:
//! the text describes seeded, class-stratified 10 % / 1 % subsets; the code keeps the first N
//! training images. The validation split follows the code: the last 5,000 training images.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::io::{atomic_write, read_file};
use crate::rng::Rng;

fn check_fraction(fraction: f64) -> Result<()> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(DataError::invalid(format!(
            "fraction {fraction} is not in (0, 1]"
        )));
    }
    Ok(())
}

/// A seeded, class-stratified subset: from each class, `round(fraction × count)` images (at
/// least one for a non-empty class), chosen uniformly; returned in ascending index order.
/// `labels[i]` is the class of image `i`.
pub fn stratified(labels: &[usize], fraction: f64, seed: u64) -> Result<Vec<usize>> {
    check_fraction(fraction)?;
    let num_classes = labels.iter().max().map_or(0, |&m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut out = Vec::new();
    for (class, mut members) in by_class.into_iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        let take = ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len());
        // One stream per class: a class's pick does not depend on the other classes' sizes.
        let mut rng = Rng::derived(&[seed, 0x5354_5241_5446, class as u64]);
        // Partial Fisher–Yates: the first `take` positions become a uniform sample.
        for i in 0..take {
            let j = i + rng.index(members.len() - i);
            members.swap(i, j);
        }
        out.extend_from_slice(&members[..take]);
    }
    out.sort_unstable();
    Ok(out)
}

/// The first `n` indices of a dataset of `len` (the papers' code for data-limited transfer).
pub fn first_n(len: usize, n: usize) -> Result<Vec<usize>> {
    if n == 0 || n > len {
        return Err(DataError::invalid(format!(
            "cannot keep the first {n} of {len} images"
        )));
    }
    Ok((0..n).collect())
}

/// The first `floor(fraction × len)` indices (at least one).
pub fn first_fraction(len: usize, fraction: f64) -> Result<Vec<usize>> {
    check_fraction(fraction)?;
    first_n(len, ((len as f64 * fraction).floor() as usize).max(1))
}

/// Splits `0..len` into (train, validation) with the last `val` indices as validation, as the
/// papers' code does (5,000 for CIFAR and SVHN).
pub fn split_last(len: usize, val: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    if val == 0 || val >= len {
        return Err(DataError::invalid(format!(
            "cannot hold out the last {val} of {len} images for validation"
        )));
    }
    Ok(((0..len - val).collect(), (len - val..len).collect()))
}

/// A seeded random split: `val` indices drawn uniformly as validation, the rest as train,
/// both ascending.
pub fn split_random(len: usize, val: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if val == 0 || val >= len {
        return Err(DataError::invalid(format!(
            "cannot hold out {val} of {len} images for validation"
        )));
    }
    let mut all: Vec<usize> = (0..len).collect();
    Rng::derived(&[seed, 0x0056_414C]).shuffle(&mut all);
    let mut valid = all[..val].to_vec();
    let mut train = all[val..].to_vec();
    valid.sort_unstable();
    train.sort_unstable();
    Ok((train, valid))
}

/// How a selection was made, stored with it so that it can be made again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// [`stratified`].
    Stratified {
        /// Fraction per class.
        fraction: f64,
        /// The seed.
        seed: u64,
    },
    /// [`first_n`] / [`first_fraction`].
    FirstN {
        /// How many.
        n: usize,
    },
    /// The training part of [`split_last`].
    TrainBeforeLast {
        /// Validation size.
        val: usize,
    },
    /// The validation part of [`split_last`].
    LastForValidation {
        /// Validation size.
        val: usize,
    },
    /// The training part of [`split_random`].
    RandomTrain {
        /// Validation size.
        val: usize,
        /// The seed.
        seed: u64,
    },
    /// The validation part of [`split_random`].
    RandomValidation {
        /// Validation size.
        val: usize,
        /// The seed.
        seed: u64,
    },
}

/// A saved selection: which images of which dataset split, how they were chosen, and the
/// indices themselves (so a later run needs neither the rule nor the seed to reproduce it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexList {
    /// Dataset name, e.g. `cifar10`.
    pub dataset: String,
    /// Split the indices refer to, e.g. `train`.
    pub split: String,
    /// Number of images in that split, to catch a list applied to the wrong data.
    pub source_len: usize,
    /// The rule that produced the indices.
    pub selection: Selection,
    /// Positions in the split, in order.
    pub indices: Vec<usize>,
}

impl IndexList {
    /// Writes the list as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| DataError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        atomic_write(path, &json)
    }

    /// Reads a list written by [`IndexList::save`] and checks its indices against
    /// `source_len`.
    pub fn load(path: &Path) -> Result<Self> {
        let list: Self =
            serde_json::from_slice(&read_file(path)?).map_err(|source| DataError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(&bad) = list.indices.iter().find(|&&i| i >= list.source_len) {
            return Err(DataError::invalid(format!(
                "`{}` holds index {bad}, beyond its source of {} images",
                path.display(),
                list.source_len
            )));
        }
        Ok(list)
    }

    /// Checks that this list was made for a split of `len` images.
    pub fn check_len(&self, len: usize) -> Result<()> {
        if self.source_len != len {
            return Err(DataError::invalid(format!(
                "index list for {} {} was made for {} images, this split has {len}",
                self.dataset, self.split, self.source_len
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(per_class: usize, classes: usize) -> Vec<usize> {
        (0..per_class * classes).map(|i| i % classes).collect()
    }

    #[test]
    fn stratified_is_exact_per_class_and_reproducible() {
        let l = labels(500, 10);
        let a = stratified(&l, 0.1, 3).unwrap();
        assert_eq!(a.len(), 500);
        let mut per = [0usize; 10];
        for &i in &a {
            per[l[i]] += 1;
        }
        assert_eq!(per, [50; 10]);
        assert_eq!(a, stratified(&l, 0.1, 3).unwrap());
        assert_ne!(a, stratified(&l, 0.1, 4).unwrap());
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        let one = stratified(&l, 0.01, 0).unwrap();
        assert_eq!(one.len(), 50);
        assert!(stratified(&l, 0.0, 0).is_err() && stratified(&l, 1.5, 0).is_err());
    }

    #[test]
    fn first_and_last_splits() {
        assert_eq!(first_n(10, 3).unwrap(), vec![0, 1, 2]);
        assert_eq!(first_fraction(50_000, 0.01).unwrap().len(), 500);
        let (t, v) = split_last(50_000, 5_000).unwrap();
        assert_eq!(
            (t.len(), v[0], *v.last().unwrap()),
            (45_000, 45_000, 49_999)
        );
        assert!(split_last(10, 10).is_err() && first_n(3, 4).is_err());
        let (t, v) = split_random(100, 10, 1).unwrap();
        assert_eq!((t.len(), v.len()), (90, 10));
        assert_eq!(split_random(100, 10, 1).unwrap().1, v);
    }

    #[test]
    fn index_list_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subset.json");
        let list = IndexList {
            dataset: "cifar10".into(),
            split: "train".into(),
            source_len: 10,
            selection: Selection::Stratified {
                fraction: 0.1,
                seed: 7,
            },
            indices: vec![1, 5],
        };
        list.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"kind\": \"stratified\""), "{text}");
        assert_eq!(IndexList::load(&path).unwrap(), list);
        assert!(list.check_len(11).is_err());
        let mut bad = list.clone();
        bad.indices.push(10);
        bad.save(&path).unwrap();
        assert!(IndexList::load(&path).is_err());
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            IndexList::load(&path),
            Err(DataError::Json { .. })
        ));
    }
}
