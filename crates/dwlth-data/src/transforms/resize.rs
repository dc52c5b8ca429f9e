//! Bilinear resizing with PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`
//! semantics (no antialiasing): output pixel `d` samples the input at
//! `(d + 0.5) * in / out - 0.5`, clamped below at 0, between its two neighbours.

use crate::error::{DataError, Result};
use crate::image::Image;
use crate::rng::Rng;
use crate::transforms::{Shape, Transform};

/// Source index and weights for each output coordinate along one axis.
fn axis_weights(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|d| {
            let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Resizes to `height × width` (both at least 1; an empty input is returned as is).
pub fn resize_bilinear(image: &Image<f32>, height: usize, width: usize) -> Image<f32> {
    let [c, h, w] = image.shape();
    if h == 0 || w == 0 || height == 0 || width == 0 {
        return Image::from_parts(Vec::new(), c, 0, 0);
    }
    if (h, w) == (height, width) {
        return image.clone();
    }
    let ys = axis_weights(h, height);
    let xs = axis_weights(w, width);
    let mut out = Vec::with_capacity(c * height * width);
    for ch in 0..c {
        let plane = image.plane(ch);
        for &(y0, y1, ly) in &ys {
            let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
            let hy = 1.0 - ly;
            for &(x0, x1, lx) in &xs {
                let hx = 1.0 - lx;
                out.push(hy * (hx * r0[x0] + lx * r0[x1]) + ly * (hx * r1[x0] + lx * r1[x1]));
            }
        }
    }
    Image::from_parts(out, c, height, width)
}

/// Target size of [`Resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeTo {
    /// Exactly `(height, width)`.
    Exact(usize, usize),
    /// The shorter side becomes this, keeping the aspect ratio (torchvision's `Resize(int)`:
    /// the longer side is `int(size * long / short)`).
    Shorter(usize),
}

/// Deterministic bilinear resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    to: ResizeTo,
}

impl Resize {
    /// A resize; sizes must be positive.
    pub fn new(to: ResizeTo) -> Result<Self> {
        let ok = match to {
            ResizeTo::Exact(h, w) => h > 0 && w > 0,
            ResizeTo::Shorter(s) => s > 0,
        };
        if !ok {
            return Err(DataError::invalid(format!(
                "resize target {to:?} must be positive"
            )));
        }
        Ok(Self { to })
    }

    fn target(&self, h: usize, w: usize) -> (usize, usize) {
        match self.to {
            ResizeTo::Exact(th, tw) => (th, tw),
            ResizeTo::Shorter(s) if h <= w => (s, (s * w / h.max(1)).max(1)),
            ResizeTo::Shorter(s) => ((s * h / w.max(1)).max(1), s),
        }
    }
}

impl Transform for Resize {
    fn apply(&self, image: Image<f32>, _rng: &mut Rng) -> Image<f32> {
        let (h, w) = self.target(image.height(), image.width());
        resize_bilinear(&image, h, w)
    }

    fn output_shape(&self, channels: usize, size: Option<(usize, usize)>) -> Shape {
        match (self.to, size) {
            (ResizeTo::Exact(h, w), _) => (channels, Some((h, w))),
            (_, Some((h, w))) => (channels, Some(self.target(h, w))),
            (_, None) => (channels, None),
        }
    }
}
