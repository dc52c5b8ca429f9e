//! Batching through Burn's data loader: augmented samples become
//! `{images: [N, C, H, W] in [0, 1], labels: [N]}` tensors.
//!
//! Augmentation runs inside [`Augmented::get`], i.e. on the loader's worker threads, with a
//! generator derived from (seed, item index, how many times the item was drawn). The loader
//! draws every item once per pass, so pass `e` of item `i` always sees the same crop and
//! flip, whatever the number of workers or the order in which they run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::folder::ImageFolder;
use crate::image::Sample;
use crate::rng::Rng;
use crate::transforms::Pipeline;

/// A batch of images in `[0, 1]` and their labels.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// `[N, C, H, W]`.
    pub images: Tensor<4>,
    /// `[N]`, class indices.
    pub labels: Tensor<1, Int>,
}

/// Stacks samples of one shape into an [`ImageBatch`] (shapes are guaranteed by
/// [`Augmented`], which refuses to build a pipeline with varying output sizes).
#[derive(Clone, Copy, Debug, Default)]
pub struct ImageBatcher;

fn stack(shape: [usize; 3], items: Vec<(Vec<f32>, usize)>, device: &Device) -> ImageBatch {
    let n = items.len();
    let per = shape.iter().product::<usize>();
    let mut values = Vec::with_capacity(n * per);
    let mut labels = Vec::with_capacity(n);
    for (v, l) in items {
        // Equal shapes are checked upstream; pad or cut defensively rather than misalign.
        values.extend(v.iter().copied().chain(std::iter::repeat(0.0)).take(per));
        labels.push(l as i64);
    }
    let [c, h, w] = shape;
    ImageBatch {
        images: Tensor::from_data(TensorData::new(values, [n, c, h, w]), device),
        labels: Tensor::from_data(TensorData::new(labels, [n]), device),
    }
}

impl Batcher<Sample<f32>, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<Sample<f32>>, device: &Device) -> ImageBatch {
        let shape = items.first().map_or([0, 0, 0], |s| s.image.shape());
        let items = items
            .into_iter()
            .map(|s| (s.image.into_data(), s.label))
            .collect();
        stack(shape, items, device)
    }
}

impl Batcher<Sample<u8>, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<Sample<u8>>, device: &Device) -> ImageBatch {
        let shape = items.first().map_or([0, 0, 0], |s| s.image.shape());
        let items = items
            .into_iter()
            .map(|s| (s.image.to_f32().into_data(), s.label))
            .collect();
        stack(shape, items, device)
    }
}

/// Something that hands out `u8` samples and knows their channels and, if fixed, size.
pub trait ImageSource: Dataset<Sample<u8>> {
    /// Channels of every image, and `(height, width)` when all images share it.
    fn image_shape(&self) -> (usize, Option<(usize, usize)>);
}

impl ImageSource for ImageDataset {
    fn image_shape(&self) -> (usize, Option<(usize, usize)>) {
        let [c, h, w] = self.shape();
        (c, Some((h, w)))
    }
}

impl ImageSource for ImageFolder {
    fn image_shape(&self) -> (usize, Option<(usize, usize)>) {
        let c = self.decode_channels();
        (c, None)
    }
}

impl ImageSource for crate::formats::shards::TarShards {
    fn image_shape(&self) -> (usize, Option<(usize, usize)>) {
        (self.decode_channels(), None)
    }
}

/// A dataset whose samples pass through a transform pipeline, reproducibly.
pub struct Augmented<D> {
    inner: D,
    pipeline: Pipeline,
    seed: u64,
    draws: Vec<AtomicU32>,
    shape: [usize; 3],
}

impl<D: ImageSource> Augmented<D> {
    /// Wraps `inner`. Fails if the pipeline's output size is not fixed (e.g. a folder of
    /// images of different sizes without a crop or exact resize at the end).
    pub fn new(inner: D, pipeline: Pipeline, seed: u64) -> Result<Self> {
        let (c, size) = inner.image_shape();
        let (oc, osize) = pipeline.output_shape(c, size);
        let (h, w) = osize.ok_or_else(|| {
            DataError::invalid(
                "the images vary in size and the pipeline does not make them equal: end it \
                 with a crop or an exact resize",
            )
        })?;
        let draws = (0..inner.len()).map(|_| AtomicU32::new(0)).collect();
        Ok(Self {
            inner,
            pipeline,
            seed,
            draws,
            shape: [oc, h, w],
        })
    }

    /// `[C, H, W]` of every output sample.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Makes the next draw of every item its `epoch`-th (0-based), e.g. to resume a run.
    pub fn set_epoch(&self, epoch: u32) {
        for d in &self.draws {
            d.store(epoch, Ordering::Relaxed);
        }
    }

    /// The sample `index` as drawn the `draw`-th time, without touching the draw counter.
    pub fn sample(&self, index: usize, draw: u32) -> Result<Sample<f32>, DatasetError> {
        let s = self.inner.get(index)?;
        let mut rng = Rng::derived(&[self.seed, index as u64, u64::from(draw)]);
        let image = self.pipeline.apply(s.image.to_f32(), &mut rng);
        if image.shape() != self.shape {
            return Err(DatasetError::new(DataError::Shape {
                path: format!("item {index}").into(),
                expected: self.shape,
                found: image.shape(),
            }));
        }
        Ok(Sample {
            image,
            label: s.label,
        })
    }
}

impl<D: ImageSource> Dataset<Sample<f32>> for Augmented<D> {
    fn get(&self, index: usize) -> Result<Sample<f32>, DatasetError> {
        let draw = self
            .draws
            .get(index)
            .map(|d| d.fetch_add(1, Ordering::Relaxed))
            .ok_or_else(|| {
                DatasetError::new(DataError::invalid(format!(
                    "index {index} is out of range for a dataset of {} images",
                    self.draws.len()
                )))
            })?;
        self.sample(index, draw)
    }

    fn len(&self) -> usize {
        self.draws.len()
    }
}

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle every pass with this seed; `None` keeps the dataset order.
    pub shuffle: Option<u64>,
    /// Worker threads (0: load on the calling thread).
    pub num_workers: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            shuffle: None,
            num_workers: 0,
        }
    }
}

/// A Burn data loader over augmented samples, batches on `device`.
pub fn loader<D: ImageSource + 'static>(
    dataset: Augmented<D>,
    config: &LoaderConfig,
    device: &Device,
) -> Arc<dyn DataLoader<ImageBatch>> {
    let mut builder = DataLoaderBuilder::new(ImageBatcher)
        .batch_size(config.batch_size.max(1))
        .num_workers(config.num_workers)
        .set_device(device.clone());
    if let Some(seed) = config.shuffle {
        builder = builder.shuffle(seed);
    }
    builder.build(dataset)
}
