//! Augmentations and test-time resizing on `[0, 1]` images, per image or on a batch tensor.
//!
//! Every random choice comes from an explicit [`Rng`]; the data pipeline derives it from
//! (seed, item index, epoch), so a run is reproducible whatever the number of worker threads.

pub mod crop;
pub mod flip;
pub mod gray;
pub mod resize;
pub mod resized_crop;
pub mod stats;

use std::fmt::Debug;
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};

pub use crop::{CenterCrop, RandomCrop, RandomShift};
pub use flip::{hflip, RandomHorizontalFlip};
pub use gray::GrayToRgb;
pub use resize::{resize_bilinear, Resize, ResizeTo};
pub use resized_crop::RandomResizedCrop;
pub use stats::{ChannelStats, CIFAR100_STATS, CIFAR10_STATS, IMAGENET_STATS, SVHN_STATS};

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::rng::Rng;

/// Output channels and, when every output has it, the `(height, width)`.
pub type Shape = (usize, Option<(usize, usize)>);

/// One image-to-image step.
pub trait Transform: Send + Sync + Debug {
    /// Applies the step, drawing any randomness from `rng`.
    fn apply(&self, image: Image<f32>, rng: &mut Rng) -> Image<f32>;

    /// The output shape for inputs of `channels` and (if fixed) `size`; lets a pipeline know
    /// before the first image whether its batches will have one shape.
    fn output_shape(&self, channels: usize, size: Option<(usize, usize)>) -> Shape;
}

/// A sequence of transforms applied in order.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    steps: Vec<Arc<dyn Transform>>,
}

impl Pipeline {
    /// The identity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a step.
    pub fn then(mut self, step: impl Transform + 'static) -> Self {
        self.steps.push(Arc::new(step));
        self
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether this is the identity.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every step.
    pub fn apply(&self, mut image: Image<f32>, rng: &mut Rng) -> Image<f32> {
        for step in &self.steps {
            image = step.apply(image, rng);
        }
        image
    }

    /// The output shape for inputs of `channels` and (if fixed) `size`.
    pub fn output_shape(&self, channels: usize, size: Option<(usize, usize)>) -> Shape {
        self.steps
            .iter()
            .fold((channels, size), |(c, s), step| step.output_shape(c, s))
    }

    /// Applies the pipeline to each image of a `[N, C, H, W]` batch (through host memory),
    /// image `i` with a generator derived from `(seed, i)`. Fails if outputs differ in shape.
    pub fn apply_batch(&self, images: Tensor<4>, seed: u64) -> Result<Tensor<4>> {
        let device = images.device();
        let [n, c, h, w] = images.dims();
        let values = images
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| DataError::invalid(format!("cannot read the batch: {e:?}")))?;
        let mut out = Vec::new();
        let mut shape = None;
        for (i, chunk) in values.chunks_exact((c * h * w).max(1)).take(n).enumerate() {
            let mut rng = Rng::derived(&[seed, i as u64]);
            let img = self.apply(Image::from_parts(chunk.to_vec(), c, h, w), &mut rng);
            match shape {
                None => shape = Some(img.shape()),
                Some(s) if s != img.shape() => {
                    return Err(DataError::Shape {
                        path: format!("batch[{i}]").into(),
                        expected: s,
                        found: img.shape(),
                    })
                }
                Some(_) => {}
            }
            out.extend_from_slice(img.data());
        }
        let [oc, oh, ow] = shape.unwrap_or([c, h, w]);
        Ok(Tensor::from_data(
            TensorData::new(out, [n, oc, oh, ow]),
            &device,
        ))
    }
}

/// CIFAR/SVHN training at native size: random crop 32 with 4 zero-padding, horizontal flip.
pub fn crop_flip(size: usize, padding: usize) -> Result<Pipeline> {
    Ok(Pipeline::new()
        .then(RandomCrop::new(size, size, padding)?)
        .then(RandomHorizontalFlip::default()))
}

/// The papers' code for upsampled training: random-resized-crop to `size` (224) and flip.
pub fn resized_crop_flip(size: usize) -> Result<Pipeline> {
    Ok(Pipeline::new()
        .then(RandomResizedCrop::new(size, size)?)
        .then(RandomHorizontalFlip::default()))
}

/// The papers' code for upsampled testing: resize the shorter side to `resize` (256), then
/// centre-crop `crop` (224).
pub fn resize_center_crop(resize: usize, crop: usize) -> Result<Pipeline> {
    Ok(Pipeline::new()
        .then(Resize::new(ResizeTo::Shorter(resize))?)
        .then(CenterCrop::new(crop, crop)?))
}
