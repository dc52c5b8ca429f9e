//! Mask analyses: sparsity tables, similarity of two tickets, zero kernels per stage, and the
//! kernel-wise heat map of paper A's Fig. 7.

use std::collections::BTreeMap;
use std::path::Path;

use dwlth_models::io::atomic_write;
use serde::Serialize;

use crate::error::{PruneError, Result};
use crate::mask_set::MaskSet;

/// Kept and total weights of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    /// Layer name (weight key).
    pub name: String,
    /// Weights in the layer.
    pub total: usize,
    /// Weights kept.
    pub kept: usize,
}

/// Per-layer and global sparsity of a mask set (`dwlth masks report --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskReport {
    /// Layers in model order.
    pub layers: Vec<LayerReport>,
    /// All prunable weights.
    pub total: usize,
    /// Kept weights.
    pub kept: usize,
    /// Pruned fraction.
    pub sparsity: f64,
}

impl MaskReport {
    /// The report of `masks`.
    pub fn of(masks: &MaskSet) -> Self {
        Self {
            layers: masks
                .iter()
                .map(|(name, m)| LayerReport {
                    name: name.clone(),
                    total: m.total(),
                    kept: m.kept(),
                })
                .collect(),
            total: masks.total(),
            kept: masks.kept(),
            sparsity: masks.sparsity(),
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let width = self
            .layers
            .iter()
            .map(|l| l.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!(
            "{:width$}  {:>10}  {:>10}  {:>8}\n",
            "layer", "kept", "total", "sparsity"
        );
        for l in &self.layers {
            let s = 1.0 - l.kept as f64 / l.total.max(1) as f64;
            out += &format!(
                "{:width$}  {:>10}  {:>10}  {:>7.2}%\n",
                l.name,
                l.kept,
                l.total,
                100.0 * s
            );
        }
        out += &format!(
            "{:width$}  {:>10}  {:>10}  {:>7.2}%\n",
            "all",
            self.kept,
            self.total,
            100.0 * self.sparsity
        );
        out
    }
}

/// Relative similarity `|a ∩ b| / |a ∪ b|` of the kept weights of two mask sets over the same
/// layers (paper A, Fig. A8). Two empty masks are identical (1).
pub fn similarity(a: &MaskSet, b: &MaskSet) -> Result<f64> {
    let (mut inter, mut union) = (0usize, 0usize);
    for (name, ma) in a.iter() {
        ma.validate(name).map_err(|e| a.in_file(e))?;
        let mb = b.get(name).ok_or_else(|| {
            b.in_file(PruneError::MissingLayer {
                layer: name.clone(),
            })
        })?;
        mb.validate(name).map_err(|e| b.in_file(e))?;
        if ma.shape != mb.shape {
            return Err(b.in_file(PruneError::ShapeMismatch {
                layer: name.clone(),
                expected: ma.shape.clone(),
                found: mb.shape.clone(),
            }));
        }
        for (x, y) in ma.keep.iter().zip(&mb.keep) {
            inter += usize::from(*x && *y);
            union += usize::from(*x || *y);
        }
    }
    if let Some((name, _)) = b.iter().find(|(n, _)| a.get(n).is_none()) {
        return Err(a.in_file(PruneError::MissingLayer {
            layer: name.clone(),
        }));
    }
    Ok(if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    })
}

/// Fully pruned k×k kernels of one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageKernels {
    /// Kernels whose every weight is pruned.
    pub zero: usize,
    /// All kernels.
    pub total: usize,
}

/// The stage of a layer: `layer1`..`layer4` for residual stages, `stem` for the rest of the
/// backbone before them.
pub fn stage_of(name: &str) -> String {
    let first = name.split('.').next().unwrap_or(name);
    if first.starts_with("layer") {
        first.to_string()
    } else {
        "stem".to_string()
    }
}

/// Number of completely pruned kernels (`w[o, i, :, :]` all pruned) per stage, over the
/// rank-4 layers of `masks` (paper A, Fig. 7 and A8). Masks that fail
/// [`LayerMask::validate`](crate::LayerMask::validate) (a zero-size dimension, values that do
/// not fill the shape) hold no kernel and are left out.
pub fn zero_kernels(masks: &MaskSet) -> BTreeMap<String, StageKernels> {
    let mut out: BTreeMap<String, StageKernels> = BTreeMap::new();
    for (name, m) in masks.iter() {
        if m.shape.len() != 4 || m.validate(name).is_err() {
            continue;
        }
        let k = m.shape[2] * m.shape[3];
        let entry = out
            .entry(stage_of(name))
            .or_insert(StageKernels { zero: 0, total: 0 });
        for kernel in m.keep.chunks(k) {
            entry.total += 1;
            entry.zero += usize::from(kernel.iter().all(|x| !x));
        }
    }
    out
}

/// Largest `max_width` of [`heatmap_png`]: wider bands would not show more on a screen.
pub const MAX_HEATMAP_WIDTH: usize = 4096;

/// Largest picture [`heatmap_png`] draws, in pixels (a 4096 × 8192 image): beyond, the
/// masks are not a ResNet's and drawing them would only exhaust memory.
pub const MAX_HEATMAP_PIXELS: usize = 1 << 25;

/// Draws the kernel-wise heat map of the rank-4 layers of `masks` as a PNG: one band per
/// layer, stacked top to bottom in model order, each cell one k×k kernel (rows: output
/// channels, columns: input channels, averaged down to at most `max_width` cells per row).
/// Bright cells are fully pruned kernels, dark cells kernels with at least one weight left.
///
/// The work is bounded by the values the masks actually hold (every mask is validated first)
/// and the picture by `max_width` ≤ [`MAX_HEATMAP_WIDTH`] and [`MAX_HEATMAP_PIXELS`].
pub fn heatmap_png(masks: &MaskSet, path: impl AsRef<Path>, max_width: usize) -> Result<()> {
    let path = path.as_ref();
    if max_width > MAX_HEATMAP_WIDTH {
        return Err(PruneError::Picture {
            path: path.to_path_buf(),
            reason: format!(
                "a maximum width of {max_width} cells exceeds the limit of {MAX_HEATMAP_WIDTH}"
            ),
        });
    }
    let max_width = max_width.max(8);
    let mut layers = Vec::new();
    for (name, m) in masks.iter() {
        if m.shape.len() != 4 {
            continue;
        }
        m.validate(name).map_err(|e| masks.in_file(e))?;
        layers.push(m);
    }
    if layers.is_empty() {
        return Err(masks.in_file(PruneError::NothingPrunable(
            "no convolution masks to draw".into(),
        )));
    }
    // The picture's size is known before anything is drawn: refuse it first.
    let gap = 2;
    let sizes: Vec<(usize, usize, usize)> =
        layers.iter().map(|m| band_size(m, max_width)).collect();
    let width = sizes.iter().map(|s| s.2).max().unwrap_or(1);
    let height: usize = sizes.iter().map(|s| s.1 + gap).sum();
    if width.saturating_mul(height) > MAX_HEATMAP_PIXELS {
        return Err(PruneError::Picture {
            path: path.to_path_buf(),
            reason: format!(
                "{} layers make a {width} × {height} picture, more than {MAX_HEATMAP_PIXELS} \
                 pixels; lower --max-width",
                layers.len()
            ),
        });
    }
    let bands: Vec<(usize, usize, Vec<f32>)> = layers
        .iter()
        .zip(&sizes)
        .map(|(m, size)| band(m, *size))
        .collect();
    let pixels = paint(&bands, width, height, gap);
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let fail = |e: png::EncodingError| PruneError::Picture {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&pixels).map_err(fail)?;
    }
    atomic_write(path, &bytes)?;
    Ok(())
}

/// The cell step, rows and columns of a validated rank-4 mask's band: its kernels averaged
/// down to at most `max_width` cells per side.
fn band_size(m: &crate::mask_set::LayerMask, max_width: usize) -> (usize, usize, usize) {
    let (out_c, in_c) = (m.shape[0], m.shape[1]);
    let step = in_c
        .div_ceil(max_width)
        .max(out_c.div_ceil(max_width))
        .max(1);
    (step, out_c.div_ceil(step), in_c.div_ceil(step))
}

/// One layer's band: rows, columns and the zero-kernel fraction of each cell.
fn band(
    m: &crate::mask_set::LayerMask,
    (step, rows, cols): (usize, usize, usize),
) -> (usize, usize, Vec<f32>) {
    let (in_c, k) = (m.shape[1], m.shape[2] * m.shape[3]);
    let mut sum = vec![0f32; rows * cols];
    let mut count = vec![0f32; rows * cols];
    for (kernel, values) in m.keep.chunks_exact(k).enumerate() {
        let (o, i) = (kernel / in_c, kernel % in_c);
        let cell = (o / step) * cols + i / step;
        sum[cell] += f32::from(u8::from(values.iter().all(|x| !x)));
        count[cell] += 1.0;
    }
    let frac = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| s / c.max(1.0))
        .collect();
    (rows, cols, frac)
}

/// The RGB pixels of `bands` stacked top to bottom on a white background.
fn paint(bands: &[(usize, usize, Vec<f32>)], width: usize, height: usize, gap: usize) -> Vec<u8> {
    let background = [255u8, 255, 255];
    let mut pixels = vec![0u8; width * height * 3];
    for px in pixels.chunks_mut(3) {
        px.copy_from_slice(&background);
    }
    let mut y0 = 0;
    for (rows, cols, frac) in bands {
        for r in 0..*rows {
            for c in 0..*cols {
                let color = blend(frac[r * cols + c]);
                let at = ((y0 + r) * width + c) * 3;
                pixels[at..at + 3].copy_from_slice(&color);
            }
        }
        y0 += rows + gap;
    }
    pixels
}

/// Dark purple (kernel alive) to bright yellow (kernel fully pruned).
fn blend(t: f32) -> [u8; 3] {
    let dark = [48.0, 18.0, 59.0];
    let bright = [250.0, 230.0, 35.0];
    let mix = |a: f32, b: f32| (a + (b - a) * t.clamp(0.0, 1.0)).round() as u8;
    [
        mix(dark[0], bright[0]),
        mix(dark[1], bright[1]),
        mix(dark[2], bright[2]),
    ]
}
