//! The pipeline's data: train / validation / test sets of a dataset, in memory, with the
//! data-limited subsets of the transfer stage.

use burn::tensor::{Device, Int, Tensor};
use dwlth_adv::{EpochBatches, InMemory};
use dwlth_data::{subset, DatasetKind, ImageDataset, Rng, Split};
use dwlth_models::NormalizeConfig;

use super::config::DataSpec;
use crate::error::{DwlthError, Result};

/// A dataset split three ways, as `[0, 1]` pixels on the host.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Name.
    pub name: String,
    /// Training set.
    pub train: ImageDataset,
    /// Validation set (for best-SA / best-RA selection).
    pub validation: ImageDataset,
    /// Test set.
    pub test: ImageDataset,
}

fn limit(data: ImageDataset, n: Option<usize>) -> Result<ImageDataset> {
    match n {
        Some(n) if n < data.len() => Ok(data.subset(&subset::first_n(data.len(), n)?)?),
        _ => Ok(data),
    }
}

impl Splits {
    /// Loads `spec`: validation carved from the end of the training set (after a seeded
    /// shuffle when the dataset is ordered by class, as single-split sets are).
    pub fn load(spec: &DataSpec) -> Result<Self> {
        let kind: DatasetKind = spec.dataset.parse()?;
        let (train, test) = match spec.train_share {
            None => (
                kind.load(&spec.root, Split::Train)?,
                kind.load(&spec.root, Split::Test)?,
            ),
            Some(share) => {
                let all = kind
                    .load(&spec.root, Split::Train)
                    .or_else(|_| kind.load(&spec.root, Split::Test))
                    .or_else(|_| kind.load(&spec.root, Split::All))?;
                let train_idx = subset::stratified(&all.labels(), share, 0)?;
                let mut in_train = vec![false; all.len()];
                for &i in &train_idx {
                    in_train[i] = true;
                }
                let mut test_idx: Vec<usize> = (0..all.len()).filter(|i| !in_train[*i]).collect();
                // Single-split sets come ordered by class: shuffle (seeded) so that the
                // validation tail and any limit see every class.
                let mut train_idx = train_idx;
                Rng::derived(&[0x0053_504c_4954, 1]).shuffle(&mut train_idx);
                Rng::derived(&[0x0053_504c_4954, 2]).shuffle(&mut test_idx);
                (all.subset(&train_idx)?, all.subset(&test_idx)?)
            }
        };
        let (fit, val) = subset::split_last(train.len(), spec.validation)?;
        let fit = limit(train.subset(&fit)?, spec.train_limit)?;
        Ok(Self {
            name: spec.dataset.clone(),
            train: fit,
            validation: train.subset(&val)?,
            test: limit(test, spec.test_limit)?,
        })
    }

    /// Per-channel mean and std of the training images (the in-model normalisation).
    pub fn stats(&self) -> NormalizeConfig {
        let [c, h, w] = self.train.shape();
        let per = h * w;
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        let mut n = 0usize;
        for i in 0..self.train.len() {
            if let Some(p) = self.train.pixels(i) {
                for ch in 0..c {
                    for &v in &p[ch * per..(ch + 1) * per] {
                        let v = v as f64 / 255.0;
                        sum[ch] += v;
                        sq[ch] += v * v;
                    }
                }
                n += per;
            }
        }
        let n = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std: Vec<f32> = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - (*m as f64).powi(2)).max(1e-6)).sqrt() as f32)
            .collect();
        NormalizeConfig::new(mean, std)
    }
}

/// `[0, 1]` pixels and labels of `data` for the training loop, in batches of `batch_size`,
/// shuffled per epoch from `seed`.
pub fn in_memory(data: &ImageDataset, batch_size: usize, seed: u64, device: &Device) -> InMemory {
    let mut images = Vec::with_capacity(data.len() * data.shape().iter().product::<usize>());
    for i in 0..data.len() {
        if let Some(p) = data.pixels(i) {
            images.extend(p.iter().map(|&v| f32::from(v) / 255.0));
        }
    }
    let labels = data.labels().into_iter().map(|l| l as i64).collect();
    InMemory::new(images, labels, data.shape(), batch_size, seed, device)
}

/// Training batches with the papers' augmentation applied per batch (random crop with padding
/// and horizontal flip), drawn from a seed per epoch and step, so a resumed run sees the same
/// images.
pub struct Augmented {
    inner: InMemory,
    pipeline: dwlth_data::transforms::Pipeline,
    seed: u64,
}

impl Augmented {
    /// Random crop (`padding` pixels) and flip over `data`.
    pub fn crop_flip(inner: InMemory, size: usize, padding: usize, seed: u64) -> Result<Self> {
        Ok(Self {
            inner,
            pipeline: dwlth_data::transforms::crop_flip(size, padding)?,
            seed,
        })
    }
}

impl EpochBatches for Augmented {
    fn epoch(
        &mut self,
        epoch: usize,
    ) -> Box<dyn Iterator<Item = (Tensor<4>, Tensor<1, Int>)> + '_> {
        let seed = self.seed;
        let pipeline = &self.pipeline;
        Box::new(
            self.inner
                .epoch(epoch)
                .enumerate()
                .map(move |(step, (x, y))| {
                    let s = seed ^ ((epoch as u64) << 32) ^ step as u64;
                    // Crop and flip keep the shape, so this cannot fail on a batch of one shape.
                    let out = pipeline.apply_batch(x.clone(), s).unwrap_or(x);
                    (out, y)
                }),
        )
    }

    fn steps_per_epoch(&self) -> usize {
        self.inner.steps_per_epoch()
    }
}

/// The training batches of `data` for `spec`: augmented when `spec.augment`.
pub fn training(
    data: &ImageDataset,
    spec: &DataSpec,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn EpochBatches>> {
    let plain = in_memory(data, batch_size, seed, device);
    if spec.augment {
        let [_, h, _] = data.shape();
        Ok(Box::new(Augmented::crop_flip(plain, h, 4, seed)?))
    } else {
        Ok(Box::new(plain))
    }
}

/// Batches of `data` in order (validation and test).
pub fn batches(
    data: &ImageDataset,
    batch_size: usize,
    device: &Device,
) -> Vec<(Tensor<4>, Tensor<1, Int>)> {
    in_memory(data, batch_size, 0, device).batches()
}

/// The data-limited subset of `data`: a fraction, class-stratified from `seed` or the first
/// N as the reference code does.
pub fn fraction(
    data: &ImageDataset,
    fraction: f64,
    stratified: bool,
    seed: u64,
) -> Result<ImageDataset> {
    if fraction >= 1.0 {
        return Ok(data.clone());
    }
    let idx = if stratified {
        subset::stratified(&data.labels(), fraction, seed)?
    } else {
        subset::first_fraction(data.len(), fraction)?
    };
    if idx.is_empty() {
        return Err(DwlthError::InvalidArgument(format!(
            "{}% of {} images leaves none",
            100.0 * fraction,
            data.len()
        )));
    }
    Ok(data.subset(&idx)?)
}
