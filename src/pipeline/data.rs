//! The pipeline's data: train / validation / test sets of a dataset, in memory, with the
//! data-limited subsets of the transfer stage.

use burn::tensor::{Device, Int, Tensor, TensorData};
use dwlth_adv::{Batch, EpochBatches, EvalSet, InMemory};
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

    /// What results computed from these splits are keyed by: the dataset's name and the
    /// fingerprints of the three splits' content (not where the files lie).
    pub fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "dataset": self.name,
            "train": self.train.fingerprint(),
            "validation": self.validation.fingerprint(),
            "test": self.test.fingerprint(),
        })
    }

    /// What results depend on of this data: the `settings` that shaped it (a data table such
    /// as [`DataSpec`]; its `root` is left out, as where the files lie changes nothing) and the
    /// splits' content.
    pub fn identity(&self, settings: &impl serde::Serialize) -> serde_json::Value {
        let mut settings = serde_json::to_value(settings).unwrap_or_default();
        if let Some(map) = settings.as_object_mut() {
            map.remove("root");
        }
        serde_json::json!({ "settings": settings, "content": self.fingerprint() })
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
/// shuffled per epoch from `seed`; a `batch_size` of 0 is an error.
pub fn in_memory(
    data: &ImageDataset,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<InMemory> {
    let mut images = Vec::with_capacity(data.len() * data.shape().iter().product::<usize>());
    for i in 0..data.len() {
        if let Some(p) = data.pixels(i) {
            images.extend(p.iter().map(|&v| f32::from(v) / 255.0));
        }
    }
    let labels = data.labels().into_iter().map(|l| l as i64).collect();
    Ok(InMemory::try_new(
        images,
        labels,
        data.shape(),
        batch_size,
        seed,
        device,
    )?)
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
    ) -> Box<dyn Iterator<Item = dwlth_adv::Result<dwlth_adv::Batch>> + '_> {
        let seed = self.seed;
        let pipeline = &self.pipeline;
        Box::new(
            self.inner
                .epoch(epoch)
                .enumerate()
                .map(move |(step, batch)| {
                    let (x, y) = batch?;
                    let s = seed ^ ((epoch as u64) << 32) ^ step as u64;
                    // Every image of a batch leaves the pipeline with the same shape, so this
                    // cannot fail.
                    let out = pipeline.apply_batch(x.clone(), s).unwrap_or(x);
                    Ok((out, y))
                }),
        )
    }

    fn steps_per_epoch(&self) -> usize {
        self.inner.steps_per_epoch()
    }
}

/// The training batches of `data` for `spec`: with `spec.resize`, random-resized crops of
/// that size and flips (the papers' upsampled transform); otherwise augmented when
/// `spec.augment`.
pub fn training(
    data: &ImageDataset,
    spec: &DataSpec,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn EpochBatches>> {
    let plain = in_memory(data, batch_size, seed, device)?;
    if let Some(size) = spec.resize {
        Ok(Box::new(Augmented {
            inner: plain,
            pipeline: dwlth_data::transforms::resized_crop_flip(size)?,
            seed,
        }))
    } else if spec.augment {
        let [_, h, _] = data.shape();
        Ok(Box::new(Augmented::crop_flip(plain, h, 4, seed)?))
    } else {
        Ok(Box::new(plain))
    }
}

/// Batches of `data` in order (validation and test).
///
/// # Panics
/// If `batch_size` is 0; use [`try_batches`] for an error instead.
pub fn batches(
    data: &ImageDataset,
    batch_size: usize,
    device: &Device,
) -> Vec<(Tensor<4>, Tensor<1, Int>)> {
    match try_batches(data, batch_size, device) {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

/// [`batches`], with a `batch_size` of 0 an error.
pub fn try_batches(
    data: &ImageDataset,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<(Tensor<4>, Tensor<1, Int>)>> {
    Ok(in_memory(data, batch_size, 0, device)?.batches())
}

/// An evaluation set built batch by batch from the stored 8-bit images through a fixed
/// transform — for inputs upsampled to 224 pixels, which would take 6 GB per 10,000 images as
/// `f32` tensors. Each pass rebuilds the batches; memory stays at one batch.
pub struct Streamed {
    data: ImageDataset,
    pipeline: dwlth_data::transforms::Pipeline,
    batch_size: usize,
    device: Device,
}

impl Streamed {
    /// The papers' upsampled test transform: resize the shorter side to `size · 8/7` (256 for
    /// 224), centre-crop `size`.
    pub fn resized(
        data: &ImageDataset,
        size: usize,
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let resize = (size * 8).div_ceil(7);
        Ok(Self {
            data: data.clone(),
            pipeline: dwlth_data::transforms::resize_center_crop(resize, size)?,
            batch_size: batch_size.max(1),
            device: device.clone(),
        })
    }
}

impl EvalSet for Streamed {
    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        let n = self.data.len();
        let [c, h, w] = self.data.shape();
        Box::new((0..n).step_by(self.batch_size).map(move |start| {
            let end = (start + self.batch_size).min(n);
            let mut rng = dwlth_data::Rng::new(0);
            let (mut values, mut labels) = (Vec::new(), Vec::new());
            let mut shape = [c, h, w];
            for i in start..end {
                // Stored images always have the dataset's shape; anything else is skipped
                // together with its label.
                let (Some(pixels), Some(label)) = (self.data.pixels(i), self.data.label(i)) else {
                    continue;
                };
                let floats = pixels.iter().map(|&v| f32::from(v) / 255.0).collect();
                let Ok(image) = dwlth_data::Image::new(floats, c, h, w) else {
                    continue;
                };
                let out = self.pipeline.apply(image, &mut rng);
                shape = out.shape();
                values.extend_from_slice(out.data());
                labels.push(label as i64);
            }
            let [oc, oh, ow] = shape;
            let x = Tensor::<4>::from_data(
                TensorData::new(values, [labels.len(), oc, oh, ow]),
                &self.device,
            );
            let y = Tensor::<1, Int>::from_data(
                TensorData::new(labels.clone(), [labels.len()]),
                &self.device,
            );
            (x, y)
        }))
    }

    fn len(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }
}

/// Batches kept in host memory and moved to the device one at a time (adversarial test sets
/// of upsampled images).
pub struct HostBatches {
    batches: Vec<(TensorData, TensorData)>,
    device: Device,
}

impl HostBatches {
    /// Moves every batch of `set` to host memory as it comes.
    pub fn of(set: impl Iterator<Item = Batch>, device: &Device) -> Self {
        Self {
            batches: set.map(|(x, y)| (x.into_data(), y.into_data())).collect(),
            device: device.clone(),
        }
    }

    /// [`of`](Self::of) for batches that may fail to be made; stops at the first error.
    pub fn try_of<E>(
        set: &mut dyn Iterator<Item = std::result::Result<Batch, E>>,
        device: &Device,
    ) -> std::result::Result<Self, E> {
        let mut batches = Vec::new();
        for batch in set {
            let (x, y) = batch?;
            batches.push((x.into_data(), y.into_data()));
        }
        Ok(Self {
            batches,
            device: device.clone(),
        })
    }
}

impl EvalSet for HostBatches {
    fn batches(&self) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(self.batches.iter().map(|(x, y)| {
            (
                Tensor::<4>::from_data(x.clone(), &self.device),
                Tensor::<1, Int>::from_data(y.clone(), &self.device),
            )
        }))
    }

    fn len(&self) -> usize {
        self.batches.len()
    }
}

/// Validation or test batches of `data` for `spec`: in memory at native size, streamed when
/// `spec.resize` upsamples.
pub fn eval_set(
    data: &ImageDataset,
    spec: &DataSpec,
    batch_size: usize,
    device: &Device,
) -> Result<Box<dyn EvalSet>> {
    Ok(match spec.resize {
        Some(size) => Box::new(Streamed::resized(data, size, batch_size, device)?),
        None => Box::new(batches(data, batch_size, device)),
    })
}

/// The data-limited subset of `data`: a fraction, class-stratified from `seed` or the first
/// N as the reference code does.
pub fn fraction(
    data: &ImageDataset,
    fraction: f64,
    stratified: bool,
    seed: u64,
) -> Result<ImageDataset> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(DwlthError::InvalidArgument(format!(
            "fraction {fraction} of the training set: must be in (0, 1]"
        )));
    }
    if fraction == 1.0 {
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

/// Training batches streamed from disk — an image folder or tar shards through
/// [`dwlth_data::stream::Stream`] — as tensors on `device`: images are read, decoded and
/// augmented while the model trains, in an order drawn from the stream's seed, so a run is
/// reproducible whatever the worker count. A sample that cannot be read ends training with an
/// error naming it.
pub struct StreamBatches<D> {
    stream: dwlth_data::stream::Stream<D>,
    device: Device,
}

impl<D> StreamBatches<D> {
    /// Batches of `stream` on `device`.
    pub fn new(stream: dwlth_data::stream::Stream<D>, device: &Device) -> Self {
        Self {
            stream,
            device: device.clone(),
        }
    }
}

impl<D: dwlth_data::batch::ImageSource + Send + Sync + 'static> EpochBatches for StreamBatches<D> {
    fn epoch(
        &mut self,
        epoch: usize,
    ) -> Box<dyn Iterator<Item = dwlth_adv::Result<dwlth_adv::Batch>> + '_> {
        let device = self.device.clone();
        let epoch = u32::try_from(epoch).unwrap_or(u32::MAX);
        Box::new(self.stream.epoch(epoch).map(move |batch| {
            let b = batch.map_err(|e| {
                dwlth_adv::AdvError::InvalidInput(format!("streamed training data: {e}"))
            })?;
            let n = b.labels.len();
            Ok((
                Tensor::from_data(burn::tensor::TensorData::new(b.images, b.shape), &device),
                Tensor::from_data(burn::tensor::TensorData::new(b.labels, [n]), &device),
            ))
        }))
    }

    fn steps_per_epoch(&self) -> usize {
        self.stream.batches_per_epoch()
    }
}
