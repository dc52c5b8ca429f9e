//! Grey images to three channels, so MNIST-like data can feed an RGB network.

use crate::image::Image;
use crate::rng::Rng;
use crate::transforms::{Shape, Transform};

/// Repeats a single channel three times; other images pass unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrayToRgb;

impl Transform for GrayToRgb {
    fn apply(&self, image: Image<f32>, _rng: &mut Rng) -> Image<f32> {
        if image.channels() != 1 {
            return image;
        }
        let (h, w) = (image.height(), image.width());
        let plane = image.into_data();
        let mut out = Vec::with_capacity(3 * plane.len());
        for _ in 0..3 {
            out.extend_from_slice(&plane);
        }
        Image::from_parts(out, 3, h, w)
    }

    fn output_shape(&self, channels: usize, size: Option<(usize, usize)>) -> Shape {
        (if channels == 1 { 3 } else { channels }, size)
    }
}
