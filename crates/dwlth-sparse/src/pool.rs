//! The cheap layers around the convolutions: the stem's max-pool, the global average pool and
//! the (sparse) classification head.

use rayon::prelude::*;

use super::activation::{plane_origin, zero_borders, Act, Pool};
use crate::error::{Result, SparseError};

/// torchvision's stem max-pool, 3×3, stride 2, padding 1.
///
/// The input comes out of a ReLU, so every value is ≥ 0 and the zero border of [`Act`] acts
/// exactly as the −∞ padding of PyTorch's max-pool: each window holds at least one real value,
/// which is never below the border's zeros.
pub(crate) fn max_pool_3x3_s2(pool: &Pool, x: &Act) -> Result<Act> {
    let [out_h, out_w] = pooled_size(x.height, x.width)?;
    let mut out = Act::uninit(pool, x.batch, x.channels, out_h, out_w);
    let (src_plane, dst_plane) = (x.plane(), out.plane());
    let planes = x.batch * x.channels;
    out.data[..planes * dst_plane]
        .par_chunks_mut(dst_plane)
        .zip(x.data[..planes * src_plane].par_chunks(src_plane))
        .for_each(|(dst, src)| max_pool_plane(src, [x.height, x.width], dst));
    Ok(out)
}

/// The size of [`max_pool_3x3_s2`]'s output for a `height × width` map.
pub(crate) fn pooled_size(height: usize, width: usize) -> Result<[usize; 2]> {
    if height == 0 || width == 0 {
        return Err(SparseError::InvalidInput(
            "the stem's output is empty; the input is too small".into(),
        ));
    }
    Ok([(height - 1) / 2 + 1, (width - 1) / 2 + 1])
}

/// [`max_pool_3x3_s2`] of one bordered `height × width` plane of values ≥ 0 into `dst`, a
/// bordered plane of the pooled size (border included).
///
/// Row by row: the maximum of three padded input rows, then of three neighbouring columns
/// at every second one, both in forms the compiler vectorises (the window-by-window loop it
/// replaced took half of the stem's time).
#[inline(always)]
pub(crate) fn max_pool_plane(src: &[f32], [height, width]: [usize; 2], dst: &mut [f32]) {
    let [out_h, out_w] = [(height - 1) / 2 + 1, (width - 1) / 2 + 1];
    let (src_row, dst_row) = (width + 2, out_w + 2);
    let src = &src[plane_origin(width)..];
    let first = plane_origin(out_w) + dst_row + 1;
    // One more than a padded row, so that the column pairs below cover an odd width's last
    // window.
    let mut column = vec![0.0f32; src_row + 1];
    for oy in 0..out_h {
        // Padded rows 2·oy .. 2·oy + 2 hold input rows 2·oy − 1 .. 2·oy + 1.
        let rows = &src[2 * oy * src_row..][..3 * src_row];
        let (r0, rest) = rows.split_at(src_row);
        let (r1, r2) = rest.split_at(src_row);
        for (((m, &a), &b), &c) in column.iter_mut().zip(r0).zip(r1).zip(r2) {
            *m = a.max(b).max(c);
        }
        // Output column ox: padded columns 2·ox, 2·ox + 1 and 2·ox + 2.
        let d = &mut dst[first + oy * dst_row..][..out_w];
        let pairs = column.chunks_exact(2);
        let next = column[2..].chunks_exact(2);
        for ((o, p), q) in d.iter_mut().zip(pairs).zip(next) {
            *o = p[0].max(p[1]).max(q[0]);
        }
    }
    zero_borders(dst, out_h, out_w);
}

/// Mean of every channel, `[batch · channels]`.
pub(crate) fn global_average(x: &Act) -> Vec<f32> {
    let (row, plane, origin) = (x.row(), x.plane(), x.origin());
    let area = (x.height * x.width) as f32;
    x.data[..x.batch * x.channels * plane]
        .par_chunks(plane)
        .map(|p| {
            let sum: f32 = (1..=x.height)
                .map(|y| p[origin + y * row + 1..][..x.width].iter().sum::<f32>())
                .sum();
            sum / area
        })
        .collect()
}

/// `Σ a·b`, in 16 independent lanes so that the loop vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut lanes = [0.0f32; 16];
    for (x, y) in a16.zip(b16) {
        for ((l, &x), &y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Density from which the head runs as dense dot products rather than sparse rows.
pub(crate) const HEAD_DENSE_FROM: f64 = 0.25;

/// The classification head, `y = W x + b`, with only W's nonzero weights stored (a masked head
/// is sparse too; a dense one costs the same as a dense product).
pub(crate) struct SparseLinear {
    /// Output features.
    pub out_features: usize,
    /// Input features.
    pub in_features: usize,
    /// `row[o]..row[o + 1]` indexes output `o`'s weights.
    pub row: Vec<usize>,
    /// Input index of each nonzero weight.
    pub cols: Vec<u32>,
    /// Nonzero weights.
    pub values: Vec<f32>,
    /// Bias.
    pub bias: Vec<f32>,
    /// The weight as a dense row-major `[out, in]` matrix when it keeps at least
    /// [`HEAD_DENSE_FROM`] of its weights: dense dot products then beat the gathers of the
    /// sparse rows (an unpruned ImageNet head at batch 8: 8 ms → see docs/performance.md).
    pub dense: Option<Vec<f32>>,
}

impl SparseLinear {
    /// Compresses a dense `[out, in]` weight.
    pub fn compress(
        out_features: usize,
        in_features: usize,
        weight: &[f32],
        bias: Vec<f32>,
    ) -> Self {
        let mut row = vec![0];
        let (mut cols, mut values) = (Vec::new(), Vec::new());
        for w in weight.chunks_exact(in_features) {
            for (c, &v) in w.iter().enumerate() {
                if v != 0.0 {
                    cols.push(c as u32);
                    values.push(v);
                }
            }
            row.push(values.len());
        }
        let dense_enough = values.len() as f64 >= HEAD_DENSE_FROM * weight.len() as f64;
        Self {
            out_features,
            in_features,
            row,
            cols,
            values,
            bias,
            dense: (dense_enough && !weight.is_empty()).then(|| weight.to_vec()),
        }
    }

    /// Logits `[batch · out]` of features `[batch · in]`.
    pub fn forward(&self, features: &[f32]) -> Vec<f32> {
        let batch = features.len() / self.in_features.max(1);
        if let Some(weight) = &self.dense {
            // Rows of the weight in parallel, each read once from memory for every image (a
            // head's weight is megabytes, its products a few flops per weight: packing it for
            // a matrix product cost more than the product).
            let inputs = self.in_features;
            let by_class: Vec<f32> = weight
                .par_chunks(inputs)
                .zip(&self.bias)
                .flat_map_iter(|(w, &b)| features.chunks_exact(inputs).map(move |f| b + dot(w, f)))
                .collect();
            let mut logits = vec![0.0; batch * self.out_features];
            for (o, class) in by_class.chunks_exact(batch.max(1)).enumerate() {
                for (n, &v) in class.iter().enumerate() {
                    logits[n * self.out_features + o] = v;
                }
            }
            return logits;
        }
        features
            .par_chunks(self.in_features)
            .flat_map_iter(|f| {
                (0..self.out_features).map(move |o| {
                    let (lo, hi) = (self.row[o], self.row[o + 1]);
                    let dot: f32 = self.cols[lo..hi]
                        .iter()
                        .zip(&self.values[lo..hi])
                        .map(|(&c, &w)| w * f[c as usize])
                        .sum();
                    self.bias[o] + dot
                })
            })
            .collect()
    }
}
