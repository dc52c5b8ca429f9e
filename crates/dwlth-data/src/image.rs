//! One image as a plain buffer in `[C, H, W]` order, and one labelled sample.
//!
//! Datasets hand out `u8` images (what the files hold, four times smaller than `f32`);
//! transforms work on `f32` images in `[0, 1]`, the pixel space in which attacks and their ε
//! are expressed.

use crate::error::{DataError, Result};

/// An image in channel-major `[C, H, W]` layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Image<T = f32> {
    data: Vec<T>,
    channels: usize,
    height: usize,
    width: usize,
}

impl<T> Image<T> {
    /// An image from its pixels in `[C, H, W]` order; the length must be `C * H * W`.
    pub fn new(data: Vec<T>, channels: usize, height: usize, width: usize) -> Result<Self> {
        let expected = channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .ok_or_else(|| DataError::invalid("image shape overflows"))?;
        if data.len() != expected {
            return Err(DataError::invalid(format!(
                "an image of shape [{channels}, {height}, {width}] needs {expected} values, got {}",
                data.len()
            )));
        }
        Ok(Self {
            data,
            channels,
            height,
            width,
        })
    }

    /// Builds an image whose length the caller has already checked.
    pub(crate) fn from_parts(data: Vec<T>, channels: usize, height: usize, width: usize) -> Self {
        debug_assert_eq!(data.len(), channels * height * width);
        Self {
            data,
            channels,
            height,
            width,
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// The pixels, `[C, H, W]` order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The pixels, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The pixel buffer.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// One channel plane, `[H, W]` row-major.
    pub fn plane(&self, channel: usize) -> &[T] {
        let n = self.height * self.width;
        &self.data[channel * n..(channel + 1) * n]
    }
}

impl Image<u8> {
    /// Pixels scaled to `[0, 1]` (`v / 255`), as `torchvision.transforms.ToTensor` does.
    pub fn to_f32(&self) -> Image<f32> {
        Image::from_parts(
            self.data.iter().map(|&v| f32::from(v) / 255.0).collect(),
            self.channels,
            self.height,
            self.width,
        )
    }
}

impl Image<f32> {
    /// Pixels back to bytes, rounded and clamped.
    pub fn to_u8(&self) -> Image<u8> {
        Image::from_parts(
            self.data
                .iter()
                .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect(),
            self.channels,
            self.height,
            self.width,
        )
    }
}

/// An image with its class label.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<T = u8> {
    /// The image.
    pub image: Image<T>,
    /// The class, below the dataset's number of classes.
    pub label: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_length() {
        assert!(Image::new(vec![0u8; 12], 3, 2, 2).is_ok());
        assert!(Image::new(vec![0u8; 11], 3, 2, 2).is_err());
        assert!(Image::new(vec![0u8; 0], usize::MAX, 2, 2).is_err());
    }

    #[test]
    fn byte_float_round_trip() {
        let img = Image::new((0..=255u8).collect(), 1, 16, 16).unwrap();
        let f = img.to_f32();
        assert_eq!(f.data()[255], 1.0);
        assert_eq!(f.to_u8(), img);
        assert_eq!(img.plane(0).len(), 256);
    }
}
