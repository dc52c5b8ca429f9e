//! Horizontal flip with probability `p` (0.5 in every recipe of the papers).

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::rng::Rng;
use crate::transforms::{Shape, Transform};

/// Mirrors the image left–right.
pub fn hflip(mut image: Image<f32>) -> Image<f32> {
    let w = image.width();
    if w > 0 {
        for row in image.data_mut().chunks_exact_mut(w) {
            row.reverse();
        }
    }
    image
}

/// torchvision's `RandomHorizontalFlip(p)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomHorizontalFlip {
    p: f64,
}

impl RandomHorizontalFlip {
    /// Flips with probability `p` in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(DataError::invalid(format!(
                "flip probability {p} is not in [0, 1]"
            )));
        }
        Ok(Self { p })
    }
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        Self { p: 0.5 }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, image: Image<f32>, rng: &mut Rng) -> Image<f32> {
        if rng.chance(self.p) {
            hflip(image)
        } else {
            image
        }
    }

    fn output_shape(&self, channels: usize, size: Option<(usize, usize)>) -> Shape {
        (channels, size)
    }
}
