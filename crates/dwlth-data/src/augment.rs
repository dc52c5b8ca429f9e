//! Seeded augmentation: the samples of a source through a transform pipeline, item `i` of
//! epoch `e` always drawn the same way (its generator is derived from the seed, `i` and `e`),
//! whatever the thread that draws it or the order in which items are drawn.

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::folder::ImageFolder;
use crate::formats::shards::TarShards;
use crate::image::Sample;
use crate::rng::Rng;
use crate::transforms::Pipeline;

/// Where samples come from: images kept in memory, an image folder, tar shards, or a view of
/// one of them ([`Images`](crate::Images) is all three).
pub trait ImageSource {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there is no sample.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index`, decoded; an index out of range or an image that cannot be read is an
    /// error naming it.
    fn sample(&self, index: usize) -> Result<Sample<u8>>;

    /// Channels of every image, and `(height, width)` when all images share it.
    fn image_shape(&self) -> (usize, Option<(usize, usize)>);

    /// What errors call sample `index`: its file where it has one, else `item <index>`.
    fn describe(&self, index: usize) -> std::path::PathBuf {
        format!("item {index}").into()
    }
}

fn out_of_range(index: usize, len: usize) -> DataError {
    DataError::invalid(format!(
        "item {index} is out of range for a dataset of {len} images"
    ))
}

impl ImageSource for ImageDataset {
    fn len(&self) -> usize {
        ImageDataset::len(self)
    }

    fn sample(&self, index: usize) -> Result<Sample<u8>> {
        match (self.image(index), self.label(index)) {
            (Some(image), Some(label)) => Ok(Sample { image, label }),
            _ => Err(out_of_range(index, self.len())),
        }
    }

    fn image_shape(&self) -> (usize, Option<(usize, usize)>) {
        let [c, h, w] = self.shape();
        (c, Some((h, w)))
    }
}

/// Image folders and tar shards: an index of files on disk, decoded when a sample is asked for.
macro_rules! image_source_on_disk {
    ($($t:ty),*) => {$(
        impl ImageSource for $t {
            fn len(&self) -> usize {
                <$t>::len(self)
            }

            fn sample(&self, index: usize) -> Result<Sample<u8>> {
                let label = self
                    .label(index)
                    .ok_or_else(|| out_of_range(index, self.len()))?;
                Ok(Sample {
                    image: self.decode(index)?,
                    label,
                })
            }

            fn image_shape(&self) -> (usize, Option<(usize, usize)>) {
                (self.decode_channels(), None)
            }

            fn describe(&self, index: usize) -> std::path::PathBuf {
                <$t>::describe(self, index)
            }
        }
    )*};
}

image_source_on_disk!(ImageFolder, TarShards);

/// A source whose samples pass through a transform pipeline, reproducibly.
pub struct Augmented<D> {
    inner: D,
    pipeline: Pipeline,
    seed: u64,
    shape: [usize; 3],
}

impl<D: ImageSource> Augmented<D> {
    /// Wraps `inner`. When the images' size is not known ahead (files on disk) and the
    /// pipeline does not fix it, every image must leave the pipeline with the size of the
    /// first: another size is an error naming the item when it is drawn. An empty source
    /// whose output size is unknown is an error.
    pub fn new(inner: D, pipeline: Pipeline, seed: u64) -> Result<Self> {
        let (c, size) = inner.image_shape();
        let shape = match pipeline.output_shape(c, size) {
            (oc, Some((h, w))) => [oc, h, w],
            (_, None) => {
                if inner.is_empty() {
                    return Err(DataError::invalid("no image to take the output size from"));
                }
                let first = inner.sample(0)?;
                let mut rng = Rng::derived(&[seed, 0, 0]);
                pipeline.apply(first.image.to_f32(), &mut rng).shape()
            }
        };
        Ok(Self {
            inner,
            pipeline,
            seed,
            shape,
        })
    }

    /// `[C, H, W]` of every output sample.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// The sample `index` as drawn in epoch `epoch` (the same image every time it is asked for).
    pub fn sample(&self, index: usize, epoch: u32) -> Result<Sample<f32>> {
        let s = self.inner.sample(index)?;
        let mut rng = Rng::derived(&[self.seed, index as u64, u64::from(epoch)]);
        let image = self.pipeline.apply(s.image.to_f32(), &mut rng);
        if image.shape() != self.shape {
            return Err(DataError::Shape {
                path: self.inner.describe(index),
                expected: self.shape,
                found: image.shape(),
            });
        }
        Ok(Sample {
            image,
            label: s.label,
        })
    }
}
