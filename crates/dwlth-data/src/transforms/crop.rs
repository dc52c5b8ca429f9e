//! Crops: the CIFAR recipe's random crop with zero padding, and the centre crop of the test
//! pipelines, both with torchvision's arithmetic.

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::rng::Rng;
use crate::transforms::{Shape, Transform};

/// The `height × width` window at (`top`, `left`) of the image padded by zeros; the window may
/// reach outside the image (negative `top`/`left` or beyond the far edge): those pixels are 0.
pub fn crop_padded(
    image: &Image<f32>,
    top: isize,
    left: isize,
    height: usize,
    width: usize,
) -> Image<f32> {
    let [c, h, w] = image.shape();
    let mut out = vec![0.0f32; c * height * width];
    // Columns of the window that fall inside the image.
    let x_start = (-left).clamp(0, width as isize) as usize;
    let x_end = (w as isize - left).clamp(0, width as isize) as usize;
    for ch in 0..c {
        let plane = image.plane(ch);
        for y in 0..height {
            let sy = top + y as isize;
            if sy < 0 || sy >= h as isize || x_start >= x_end {
                continue;
            }
            let row = &plane[sy as usize * w..(sy as usize + 1) * w];
            let dst = &mut out[(ch * height + y) * width..(ch * height + y + 1) * width];
            let sx0 = (left + x_start as isize) as usize;
            dst[x_start..x_end].copy_from_slice(&row[sx0..sx0 + (x_end - x_start)]);
        }
    }
    Image::from_parts(out, c, height, width)
}

/// torchvision's `RandomCrop(size, padding)`: pad every side by `padding` zeros, then take a
/// uniformly placed `size` window (`pad_if_needed` behaviour when the image is too small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomCrop {
    height: usize,
    width: usize,
    padding: usize,
}

impl RandomCrop {
    /// A random `height × width` crop after `padding` zeros on each side (CIFAR: 32, 32, 4).
    pub fn new(height: usize, width: usize, padding: usize) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(DataError::invalid("crop size must be positive"));
        }
        Ok(Self {
            height,
            width,
            padding,
        })
    }
}

impl Transform for RandomCrop {
    fn apply(&self, image: Image<f32>, rng: &mut Rng) -> Image<f32> {
        let p = self.padding as isize;
        let (ph, pw) = (
            image.height() + 2 * self.padding,
            image.width() + 2 * self.padding,
        );
        // torch.randint(0, h - th + 1): uniform over all window positions.
        let top = rng.index(ph.saturating_sub(self.height) + 1) as isize;
        let left = rng.index(pw.saturating_sub(self.width) + 1) as isize;
        crop_padded(&image, top - p, left - p, self.height, self.width)
    }

    fn output_shape(&self, channels: usize, _size: Option<(usize, usize)>) -> Shape {
        (channels, Some((self.height, self.width)))
    }
}

/// The CIFAR recipe's random crop for images of any size: pad every side by `padding` zeros and
/// take a uniformly placed window of the image's own size (for a `h × w` image, exactly
/// `RandomCrop::new(h, w, padding)`, the same draws included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomShift {
    padding: usize,
}

impl RandomShift {
    /// A random shift by up to `padding` pixels, zeros filling in.
    pub fn new(padding: usize) -> Self {
        Self { padding }
    }
}

impl Transform for RandomShift {
    fn apply(&self, image: Image<f32>, rng: &mut Rng) -> Image<f32> {
        let [_, h, w] = image.shape();
        match RandomCrop::new(h, w, self.padding) {
            Ok(crop) => crop.apply(image, rng),
            // An image without pixels has nothing to shift.
            Err(_) => image,
        }
    }

    fn output_shape(&self, channels: usize, size: Option<(usize, usize)>) -> Shape {
        (channels, size)
    }
}

/// Python's `round` (half to even), as torchvision's `center_crop` uses.
fn round_half_even(x: f64) -> isize {
    x.round_ties_even() as isize
}

/// torchvision's `CenterCrop(size)`: window at `round((h - th) / 2)`, zero padding when the
/// image is smaller than the crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CenterCrop {
    height: usize,
    width: usize,
}

impl CenterCrop {
    /// A centre crop of `height × width`.
    pub fn new(height: usize, width: usize) -> Result<Self> {
        if height == 0 || width == 0 {
            return Err(DataError::invalid("crop size must be positive"));
        }
        Ok(Self { height, width })
    }
}

/// Top-left corner of torchvision's centre crop of `crop` out of `size` (may be negative).
pub(crate) fn center_offset(size: usize, crop: usize) -> isize {
    if crop > size {
        // torchvision pads (crop - size) // 2 before, then crops at 0.
        -(((crop - size) / 2) as isize)
    } else {
        round_half_even((size - crop) as f64 / 2.0)
    }
}

impl Transform for CenterCrop {
    fn apply(&self, image: Image<f32>, _rng: &mut Rng) -> Image<f32> {
        let top = center_offset(image.height(), self.height);
        let left = center_offset(image.width(), self.width);
        crop_padded(&image, top, left, self.height, self.width)
    }

    fn output_shape(&self, channels: usize, _size: Option<(usize, usize)>) -> Shape {
        (channels, Some((self.height, self.width)))
    }
}

#[cfg(test)]
mod shift_tests {
    use super::*;

    #[test]
    fn a_shift_is_the_random_crop_of_the_image_size() {
        let image = Image::from_parts((0..2 * 5 * 7).map(|v| v as f32).collect(), 2, 5, 7);
        for seed in 0..20 {
            let (mut a, mut b) = (Rng::new(seed), Rng::new(seed));
            let shifted = RandomShift::new(3).apply(image.clone(), &mut a);
            let cropped = RandomCrop::new(5, 7, 3)
                .unwrap()
                .apply(image.clone(), &mut b);
            assert_eq!(shifted, cropped);
        }
        assert_eq!(RandomShift::new(3).output_shape(2, None), (2, None));
        assert_eq!(
            RandomShift::new(3).output_shape(2, Some((5, 7))),
            (2, Some((5, 7)))
        );
    }
}
