//! A folded convolution in compressed sparse row form: per output channel, the nonzero taps.
//!
//! A tap is an (input channel, ky, kx) position and its weight. Taps are geometry-free; the
//! input offsets they read from depend on the feature-map size and are computed per forward
//! pass ([`SparseConv::offsets`]), which keeps one engine valid for every input resolution.

use std::sync::{Arc, Mutex};

use super::read::{ConvShape, FoldedConv};
use dwlth_kernels::conv::winograd;

/// One nonzero weight position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tap {
    /// Input channel.
    pub channel: u32,
    /// Kernel row.
    pub ky: u16,
    /// Kernel column.
    pub kx: u16,
}

/// A convolution with BatchNorm folded in and only its nonzero weights stored.
pub(crate) struct SparseConv {
    /// Torchvision path, for summaries and errors.
    pub name: String,
    /// Geometry.
    pub shape: ConvShape,
    /// `row[o]..row[o + 1]` indexes output channel `o`'s taps.
    pub row: Vec<usize>,
    /// Nonzero positions, sorted by (channel, ky, kx) within a row so reads walk forward.
    pub taps: Vec<Tap>,
    /// Nonzero values, parallel to `taps`.
    pub values: Vec<f32>,
    /// Folded bias per output channel.
    pub bias: Vec<f32>,
    /// Nonzero weights of the masked layer before any constant channel was folded away.
    pub masked_nnz: usize,
    /// The stored weights as a dense matrix when a dense product runs this layer faster than
    /// the sparse kernel ([`super::dense`]); kept in step with `taps` and `values`.
    pub dense: Option<Vec<f32>>,
    /// The taps' input offsets for the last input size seen.
    pub offsets: OffsetCache,
    /// For a dense 3×3 stride-1 layer with enough channels, its weights transformed for
    /// Winograd's F(4×4, 3×3) ([`super::dense`] runs it that way on maps large enough).
    pub winograd: Option<Vec<f32>>,
}

/// The input offsets of a convolution's taps for one input size ([`super::activation`]
/// computes them).
///
/// They depend only on the input's height and width, and a model runs batch after batch of
/// one size: recomputing the 1.7 M offsets of a 90 % ResNet-50 ticket took ~1 % of every
/// pass.
#[derive(Default)]
pub(crate) struct OffsetCache(Mutex<Option<SizedOffsets>>);

/// Offsets and the input size they are for.
type SizedOffsets = ([usize; 2], Arc<[u32]>);

impl OffsetCache {
    /// The offsets for inputs of `size`, from `compute` unless the last call had that size.
    pub fn get_or(&self, size: [usize; 2], compute: impl FnOnce() -> Vec<u32>) -> Arc<[u32]> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((s, offsets)) if *s == size => Arc::clone(offsets),
            _ => {
                let offsets: Arc<[u32]> = compute().into();
                *last = Some((size, Arc::clone(&offsets)));
                offsets
            }
        }
    }
}

impl SparseConv {
    /// Compresses a folded convolution, keeping exactly its nonzero weights.
    pub fn compress(name: &str, folded: FoldedConv) -> Self {
        let ConvShape {
            out_channels,
            in_channels,
            kernel: [kh, kw],
            ..
        } = folded.shape;
        let mut row = Vec::with_capacity(out_channels + 1);
        let mut taps = Vec::new();
        let mut values = Vec::new();
        row.push(0);
        for o in 0..out_channels {
            for c in 0..in_channels {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let w = folded.weight[((o * in_channels + c) * kh + ky) * kw + kx];
                        if w != 0.0 {
                            taps.push(Tap {
                                channel: c as u32,
                                ky: ky as u16,
                                kx: kx as u16,
                            });
                            values.push(w);
                        }
                    }
                }
            }
            row.push(taps.len());
        }
        let masked_nnz = taps.len();
        let mut conv = Self {
            name: name.to_string(),
            shape: folded.shape,
            row,
            taps,
            values,
            bias: folded.bias,
            masked_nnz,
            dense: None,
            offsets: OffsetCache::default(),
            winograd: None,
        };
        conv.choose_kernel();
        conv
    }

    /// Decides between the sparse kernel and a dense product from the stored weights.
    fn choose_kernel(&mut self) {
        self.dense = prefers_dense(self).then(|| dense_matrix(self));
        let s = &self.shape;
        let winograd_shape = s.kernel == [3, 3]
            && s.stride == [1, 1]
            && s.padding == [1, 1]
            && s.in_channels.min(s.out_channels) >= winograd::MIN_CHANNELS;
        self.winograd = match &self.dense {
            Some(w) if winograd_shape => Some(winograd::transformed_weight(
                w,
                s.out_channels,
                s.in_channels,
            )),
            _ => None,
        };
    }

    /// Multiply-adds per output position: every weight for a dense product, the stored
    /// nonzero ones for the sparse kernel.
    pub fn multiplies(&self) -> usize {
        if self.dense.is_some() {
            self.dense_len()
        } else {
            self.nnz()
        }
    }

    /// Stored nonzero weights.
    pub fn nnz(&self) -> usize {
        self.taps.len()
    }

    /// Weights of the dense layer.
    pub fn dense_len(&self) -> usize {
        let s = &self.shape;
        s.out_channels * s.in_channels * s.kernel[0] * s.kernel[1]
    }

    /// Output channels without a single nonzero weight. Their output is the constant
    /// `bias` (plus the residual, if any) everywhere; the engine never convolves them.
    pub fn empty_channels(&self) -> usize {
        self.row.windows(2).filter(|r| r[0] == r[1]).count()
    }

    /// The value every position of output channel `o` takes after ReLU when the channel has no
    /// weights and no residual is added, `None` when it has weights.
    pub fn constant_output(&self, o: usize) -> Option<f32> {
        (self.row[o] == self.row[o + 1]).then(|| self.bias[o].max(0.0))
    }

    /// Removes the taps that read input channels known to be constant.
    ///
    /// `constant[c]` is `Some(k)` when input channel `c` is `k` at every position of the
    /// unpadded map. A zero channel is removed outright: it equals the zero padding, so it
    /// contributes nothing anywhere. A nonzero constant is folded into the bias only for an
    /// unpadded convolution, where every tap reads a real (constant) position; with padding
    /// its contribution differs at the borders, so those taps stay. Returns the number of
    /// taps removed.
    pub fn fold_constant_inputs(&mut self, constant: &[Option<f32>]) -> usize {
        self.offsets = OffsetCache::default();
        let unpadded = self.shape.padding == [0, 0];
        let before = self.taps.len();
        let mut row = Vec::with_capacity(self.row.len());
        let mut taps = Vec::with_capacity(before);
        let mut values = Vec::with_capacity(before);
        row.push(0);
        for o in 0..self.shape.out_channels {
            let mut extra = 0.0f64;
            for j in self.row[o]..self.row[o + 1] {
                let tap = self.taps[j];
                match constant[tap.channel as usize] {
                    Some(0.0) => {}
                    Some(k) if unpadded => extra += self.values[j] as f64 * k as f64,
                    _ => {
                        taps.push(tap);
                        values.push(self.values[j]);
                    }
                }
            }
            self.bias[o] = (self.bias[o] as f64 + extra) as f32;
            row.push(taps.len());
        }
        self.row = row;
        self.taps = taps;
        self.values = values;
        self.choose_kernel();
        before - self.taps.len()
    }
}

/// Density from which a convolution runs as a dense product.
///
/// On the 2-core AVX-512 machine of docs/performance.md the sparse kernel reaches 35–50 G
/// multiply-adds/s on ResNet-50's 1×1 layers (aligned loads) and ~45 G on its 3×3 layers;
/// the product runs 100–135 G on the dense weights, and a 3×3 one also pays for gathering
/// its patches. Measured break-evens for 1×1 layers of every ResNet-50 map size (7×7 to
/// 56×56, random masks): sparse faster at 0.30, dense at 0.38; in a 90 % ticket, the first
/// 56×56 shortcut at 0.34 ran faster as a product. Products for the 3×3 layers were slower
/// than the sparse kernel at 26 % density and faster at the 50 % ticket's.
pub(crate) const DENSE_FROM: f64 = 0.33;

/// Whether `conv` should run as a dense product.
pub(crate) fn prefers_dense(conv: &SparseConv) -> bool {
    conv.nnz() > 0 && conv.nnz() as f64 >= DENSE_FROM * conv.dense_len() as f64
}

/// `conv`'s stored weights as a dense row-major `[c_out × (c_in · kh · kw)]` matrix, columns
/// in `(c, ky, kx)` order.
pub(crate) fn dense_matrix(conv: &SparseConv) -> Vec<f32> {
    let [kh, kw] = conv.shape.kernel;
    let k = conv.shape.in_channels * kh * kw;
    let mut weight = vec![0.0; conv.shape.out_channels * k];
    for o in 0..conv.shape.out_channels {
        for j in conv.row[o]..conv.row[o + 1] {
            let t = conv.taps[j];
            let column = (t.channel as usize * kh + t.ky as usize) * kw + t.kx as usize;
            weight[o * k + column] = conv.values[j];
        }
    }
    weight
}
