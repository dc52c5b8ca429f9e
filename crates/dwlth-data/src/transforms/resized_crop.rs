//! torchvision's `RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3/4, 4/3))`: a random
//! area fraction and log-uniform aspect ratio, ten tries, then a centre-crop fallback; the
//! crop is resized bilinearly (`align_corners=False`, no antialiasing) to `size`.
//!
//! The papers' code upsamples CIFAR/SVHN with it to 224 for an ImageNet-stem ResNet.

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::rng::Rng;
use crate::transforms::crop::crop_padded;
use crate::transforms::resize::resize_bilinear;
use crate::transforms::{Shape, Transform};

/// Python's `int(round(x))` (half to even).
fn pyround(x: f64) -> usize {
    x.round_ties_even().max(0.0) as usize
}

/// Random area/aspect crop resized to a fixed size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    height: usize,
    width: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// torchvision's defaults: scale (0.08, 1), ratio (3/4, 4/3).
    pub fn new(height: usize, width: usize) -> Result<Self> {
        Self::with_ranges(height, width, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0))
    }

    /// Explicit area-fraction and aspect-ratio ranges.
    pub fn with_ranges(
        height: usize,
        width: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
    ) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(DataError::invalid("crop size must be positive"));
        }
        let valid = scale.0 > 0.0 && scale.0 <= scale.1 && ratio.0 > 0.0 && ratio.0 <= ratio.1;
        if !valid {
            return Err(DataError::invalid(format!(
                "scale {scale:?} and ratio {ratio:?} must be positive, increasing ranges"
            )));
        }
        Ok(Self {
            height,
            width,
            scale,
            ratio,
        })
    }

    /// The crop window `(top, left, height, width)` for an `h × w` image, drawn exactly as
    /// torchvision's `get_params` draws it.
    pub fn window(&self, h: usize, w: usize, rng: &mut Rng) -> (usize, usize, usize, usize) {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * rng.uniform(self.scale.0, self.scale.1);
            let aspect = rng.uniform(lr0, lr1).exp();
            let cw = pyround((target * aspect).sqrt());
            let ch = pyround((target / aspect).sqrt());
            if 0 < cw && cw <= w && 0 < ch && ch <= h {
                let top = rng.index(h - ch + 1);
                let left = rng.index(w - cw + 1);
                return (top, left, ch, cw);
            }
        }
        // Fallback: the whole image, cut to the nearest allowed aspect ratio, centred.
        let in_ratio = w as f64 / h as f64;
        let (ch, cw) = if in_ratio < self.ratio.0 {
            (pyround(w as f64 / self.ratio.0), w)
        } else if in_ratio > self.ratio.1 {
            (h, pyround(h as f64 * self.ratio.1))
        } else {
            (h, w)
        };
        let (ch, cw) = (ch.clamp(1, h.max(1)), cw.clamp(1, w.max(1)));
        ((h - ch) / 2, (w - cw) / 2, ch, cw)
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, image: Image<f32>, rng: &mut Rng) -> Image<f32> {
        let (h, w) = (image.height(), image.width());
        if h == 0 || w == 0 {
            return Image::from_parts(
                vec![0.0; image.channels() * self.height * self.width],
                image.channels(),
                self.height,
                self.width,
            );
        }
        let (top, left, ch, cw) = self.window(h, w, rng);
        let crop = crop_padded(&image, top as isize, left as isize, ch, cw);
        resize_bilinear(&crop, self.height, self.width)
    }

    fn output_shape(&self, channels: usize, _size: Option<(usize, usize)>) -> Shape {
        (channels, Some((self.height, self.width)))
    }
}
