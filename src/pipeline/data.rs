//! The pipeline's data: train / validation / test sets of a dataset — decoded in memory or
//! streamed from disk (image folders, tar shards) — the data-limited subsets of the transfer
//! stage, and the one way batches are made for training and evaluation alike: dwlth-data's
//! [`Stream`] (order and augmentation drawn on the host from the seed, images decoded on
//! worker threads, a bounded number of batches ahead).

use burn::tensor::{Device, Int, Tensor, TensorData};
use dwlth_adv::{Batch, EpochBatches, EvalSet};
use dwlth_data::stream::{HostBatch, Stream, StreamConfig};
use dwlth_data::transforms::Pipeline;
use dwlth_data::{subset, Augmented, DatasetKind, ImageSource, Images, Rng, Split};
use dwlth_models::NormalizeConfig;

use super::config::DataSpec;
use crate::error::{DwlthError, Result};

/// A dataset split three ways.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Name.
    pub name: String,
    /// Training set.
    pub train: Images,
    /// Validation set (for best-SA / best-RA selection).
    pub validation: Images,
    /// Test set.
    pub test: Images,
}

fn limit(data: Images, n: Option<usize>) -> Result<Images> {
    match n {
        Some(n) if n < data.len() => Ok(data.subset(&subset::first_n(data.len(), n)?)?),
        _ => Ok(data),
    }
}

/// How many training images the normalisation statistics of a dataset streamed from disk
/// are estimated from (spread evenly over the set); data in memory uses every image.
pub const STATS_SAMPLE: usize = 10_000;

impl Splits {
    /// Loads `spec`: validation carved from the end of the training set (after a seeded
    /// shuffle when the dataset is ordered by class, as single-split sets are). Folders and
    /// shards are indexed, not decoded.
    pub fn load(spec: &DataSpec) -> Result<Self> {
        let kind: DatasetKind = spec.dataset.parse()?;
        let (train, test) = match spec.train_share {
            None => (
                kind.open(&spec.root, Split::Train)?,
                kind.open(&spec.root, Split::Test)?,
            ),
            Some(share) => {
                let all = kind
                    .open(&spec.root, Split::Train)
                    .or_else(|_| kind.open(&spec.root, Split::Test))
                    .or_else(|_| kind.open(&spec.root, Split::All))?;
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
    /// fingerprints of the three splits (content for data in memory; names, sizes and labels
    /// for files on disk — not where the files lie).
    pub fn fingerprint(&self) -> Result<serde_json::Value> {
        Ok(serde_json::json!({
            "dataset": self.name,
            "train": self.train.fingerprint()?,
            "validation": self.validation.fingerprint()?,
            "test": self.test.fingerprint()?,
        }))
    }

    /// What results depend on of this data: the `settings` that shaped it (a data table such
    /// as [`DataSpec`]; its `root` is left out, as where the files lie changes nothing) and the
    /// splits' content.
    pub fn identity(&self, settings: &impl serde::Serialize) -> Result<serde_json::Value> {
        let mut settings = serde_json::to_value(settings).unwrap_or_default();
        if let Some(map) = settings.as_object_mut() {
            map.remove("root");
        }
        Ok(serde_json::json!({ "settings": settings, "content": self.fingerprint()? }))
    }

    /// Channels of the images.
    pub fn channels(&self) -> usize {
        self.train.channels()
    }

    /// Per-channel mean and std of the training images (the in-model normalisation): every
    /// image for data in memory, [`STATS_SAMPLE`] of them for data streamed from disk.
    pub fn stats(&self) -> Result<NormalizeConfig> {
        let sample = match self.train.in_memory() {
            Some(_) => usize::MAX,
            None => STATS_SAMPLE,
        };
        let (mean, std) = self.train.channel_stats(sample)?;
        Ok(NormalizeConfig::new(mean, std))
    }
}

/// Threads decoding images for a stream: one suffices for images already in memory (the
/// stream's producer runs beside the training step anyway); files on disk get every core.
fn workers(data: &Images) -> usize {
    match data.in_memory() {
        Some(_) => 1,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    }
}

/// `data` through `pipeline` in batches of `batch_size`, reshuffled per epoch from `shuffle`
/// (in order with `None`), augmentation drawn from `seed`; a zero `batch_size` is an error.
pub fn stream(
    data: &Images,
    pipeline: Pipeline,
    batch_size: usize,
    shuffle: Option<u64>,
    seed: u64,
) -> Result<Stream<Images>> {
    let config = StreamConfig {
        batch_size,
        shuffle,
        workers: workers(data),
        prefetch: 2,
    };
    Ok(Stream::new(
        Augmented::new(data.clone(), pipeline, seed)?,
        config,
    )?)
}

/// A host batch as tensors on `device`.
fn on_device(batch: HostBatch, device: &Device) -> Batch {
    let n = batch.labels.len();
    (
        Tensor::from_data(TensorData::new(batch.images, batch.shape), device),
        Tensor::from_data(TensorData::new(batch.labels, [n]), device),
    )
}

fn stream_error(what: &str, e: dwlth_data::DataError) -> dwlth_adv::AdvError {
    dwlth_adv::AdvError::InvalidInput(format!("{what}: {e}"))
}

/// The training batches of `data` for `spec`, shuffled per epoch from `seed`: with
/// `spec.resize`, random-resized crops of that size and flips (the papers' upsampled
/// transform); otherwise random crops of the images' own size with 4 pixels of padding and
/// flips when `spec.augment`;
/// otherwise the images as they are.
pub fn training(
    data: &Images,
    spec: &DataSpec,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Box<dyn EpochBatches>> {
    let pipeline = match (spec.resize, spec.augment) {
        (Some(size), _) => dwlth_data::transforms::resized_crop_flip(size)?,
        (None, true) => Pipeline::new()
            .then(dwlth_data::transforms::RandomShift::new(4))
            .then(dwlth_data::transforms::RandomHorizontalFlip::default()),
        (None, false) => Pipeline::new(),
    };
    let stream = stream(data, pipeline, batch_size, Some(seed), seed)?;
    Ok(Box::new(StreamBatches::new(stream, device)))
}

/// The evaluation transform of `spec`: with `spec.resize`, the papers' upsampled test
/// transform (resize the shorter side to `size · 8/7`, 256 for 224, centre-crop `size`);
/// otherwise none.
fn eval_pipeline(spec: &DataSpec) -> Result<Pipeline> {
    Ok(match spec.resize {
        Some(size) => dwlth_data::transforms::resize_center_crop((size * 8).div_ceil(7), size)?,
        None => Pipeline::new(),
    })
}

/// Validation or test batches of `data` for `spec`, in order, made on each pass (memory stays
/// at the batches in flight whatever the set's size).
pub fn eval_set(
    data: &Images,
    spec: &DataSpec,
    batch_size: usize,
    device: &Device,
) -> Result<Box<dyn EvalSet>> {
    Ok(Box::new(in_order(
        data,
        eval_pipeline(spec)?,
        batch_size,
        device,
    )?))
}

/// `data` through the fixed transform `pipeline`, in order, as an evaluation set on `device`.
pub fn in_order(
    data: &Images,
    pipeline: Pipeline,
    batch_size: usize,
    device: &Device,
) -> Result<StreamEval<Images>> {
    Ok(StreamEval {
        stream: stream(data, pipeline, batch_size, None, 0)?,
        device: device.clone(),
    })
}

/// Every batch of `data`, in order, as the images are (for analyses that walk the same
/// batches many times, on sets that fit in memory).
pub fn batches(data: &Images, batch_size: usize, device: &Device) -> Result<Vec<Batch>> {
    stream(data, Pipeline::new(), batch_size, None, 0)?
        .epoch(0)
        .map(|b| Ok(on_device(b?, device)))
        .collect()
}

/// An evaluation set over a [`Stream`]: epoch 0 in order, each pass read again.
pub struct StreamEval<D> {
    stream: Stream<D>,
    device: Device,
}

impl<D: ImageSource + Send + Sync + 'static> StreamEval<D> {
    /// `[C, H, W]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.stream.shape()
    }
}

impl<D: ImageSource + Send + Sync + 'static> EvalSet for StreamEval<D> {
    fn batches(&self) -> Box<dyn Iterator<Item = dwlth_adv::Result<Batch>> + '_> {
        Box::new(self.stream.epoch(0).map(|batch| {
            batch
                .map(|b| on_device(b, &self.device))
                .map_err(|e| stream_error("evaluation data", e))
        }))
    }

    fn len(&self) -> usize {
        self.stream.batches_per_epoch()
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
    fn batches(&self) -> Box<dyn Iterator<Item = dwlth_adv::Result<Batch>> + '_> {
        Box::new(self.batches.iter().map(|(x, y)| {
            Ok((
                Tensor::<4>::from_data(x.clone(), &self.device),
                Tensor::<1, Int>::from_data(y.clone(), &self.device),
            ))
        }))
    }

    fn len(&self) -> usize {
        self.batches.len()
    }
}

/// The data-limited subset of `data`: a fraction, class-stratified from `seed` or the first
/// N as the reference code does.
pub fn fraction(data: &Images, fraction: f64, stratified: bool, seed: u64) -> Result<Images> {
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

/// Training batches through a [`Stream`], as tensors on `device`: images are read, decoded
/// and augmented while the model trains, in an order drawn from the stream's seed, so a run is
/// reproducible whatever the worker count. A sample that cannot be read ends training with an
/// error naming it.
pub struct StreamBatches<D> {
    stream: Stream<D>,
    device: Device,
}

impl<D> StreamBatches<D> {
    /// Batches of `stream` on `device`.
    pub fn new(stream: Stream<D>, device: &Device) -> Self {
        Self {
            stream,
            device: device.clone(),
        }
    }
}

impl<D: ImageSource + Send + Sync + 'static> EpochBatches for StreamBatches<D> {
    fn epoch(
        &mut self,
        epoch: usize,
    ) -> Box<dyn Iterator<Item = dwlth_adv::Result<dwlth_adv::Batch>> + '_> {
        let epoch = u32::try_from(epoch).unwrap_or(u32::MAX);
        Box::new(self.stream.epoch(epoch).map(|batch| {
            batch
                .map(|b| on_device(b, &self.device))
                .map_err(|e| stream_error("training data", e))
        }))
    }

    fn steps_per_epoch(&self) -> usize {
        self.stream.batches_per_epoch()
    }
}
