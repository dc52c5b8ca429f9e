//! Sparse convolution passes for training and attacking pruned networks on the CPU.
//!
//! A pruned network's convolutions multiply mostly zeros: at 90 % sparsity nine of ten
//! products of a dense pass are wasted. When a weight's density (its share of nonzero values)
//! is low enough ([`SparseLimit`]), [`conv2d`](super::conv2d) runs its forward pass and its
//! input gradient over the nonzero weights only:
//!
//! - forward: `y[o] = Σ w[o, ci, ki, kj] · x[ci] shifted by (ki, kj)`, a sum over the nonzero
//!   taps of output channel `o`;
//! - input gradient: the transposed convolution, `gx[ci] = Σ w[o, ci, ki, kj] · gy[o] shifted
//!   back by (ki, kj)`. At stride 1 it is the forward pass of `gy` with the flipped weight (as
//!   in the dense passes); strided, one stride-1 sum per stride phase.
//!
//! Both are one kernel, `out[r][q] = Σ v · src[off + q]` over the nonzero taps `(off, v)` of
//! each output row, on layouts where every tap is a constant offset:
//!
//! - *lanes*: one pixel of 16 images per cache line, for stride-1 layers of training batches
//!   (16 images or more) whose output rows fill their tiles to at least 1/1.3 (8 positions
//!   per tile on AVX-512: widths 7–8, 13–16 and 19 or more; 4 on AVX2): every load aligned, nothing
//!   computed but a row's last tile's overhang and a short group's empty lanes; the price is
//!   a transposition in and out;
//! - a *grid*: the padded planes of a chunk of images one after another, split by stride
//!   phase (strided layers, small batches);
//! - the *patch matrix* (im2col), where the grid's padding would compute 30 % more positions
//!   than it keeps (small maps the lanes do not take, such as 4×4 on AVX-512) and for 1×1
//!   stride-2 shortcuts.
//!
//! An adversarial attack's passes are exactly these two (its parameters take no gradient), so
//! a PGD step of a sparse ticket costs its kept weights' products. The weight gradient stays
//! the dense product: one pass in a PGD-10 training step's 23, and its values at pruned
//! positions are masked away by the layer anyway.
//!
//! By default ([`SparseLimit::Measured`]) each layout runs where it beat the dense passes on
//! ResNet-18-CIFAR's shapes at batch 128 (measured on a 2-core AVX-512 machine, this crate's
//! `examples/sparse_conv_speed`, against the dense passes' Winograd F(4×4, 3×3)): lanes up to
//! density 0.3 on maps of 16×16 or more (at 0.1 they take 45–50 % of the dense time, at 0.2
//! 70–95 %; level at 0.3 on 16×16, at 0.35 on 32×32) and up to 0.2 on smaller ones (8×8: 65 %
//! at 0.1, level at 0.2), the grid up to 0.25, the patch matrix up to 0.15 (at 0.1, 70 %; at
//! 0.2 it loses). Where the dense passes are not Winograd's (1×1 kernels, fewer than 16
//! channels) the lanes keep the limits measured against im2col's product: 0.38 on maps of
//! 16×16 or more, 0.3 below. [`sparse_passes`] counts the passes that ran sparse.
//!
//! Results equal the dense passes up to the order of the sums (the tests compare every value:
//! odd sizes, strides 2 and 3, 1×1 and 7×7 kernels, empty channels, partial groups of lanes,
//! a pruned ResNet-18's logits, input gradient and parameters after a step). One difference
//! is by design: a pruned weight's zero never multiplies its input, so an infinite or NaN
//! input value reaches only the outputs of the weights that read it (the dense pass's
//! `0 · ∞` would spread a NaN further).

mod gather;
mod lanes;
mod layout;
mod patches;
mod taps;

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rayon::prelude::*;

use super::blocks::{with_scratch, Geometry};
use super::winograd;
use layout::Layout;
use taps::Split;

/// When a CPU convolution runs its sparse passes.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum SparseLimit {
    /// Up to the density at which the layout the convolution would use beat the dense passes
    /// (the module documentation lists them): the default.
    #[default]
    Measured,
    /// Up to this share of nonzero weights, whatever the layout (0: never; 1: always).
    Density(f32),
}

/// `NaN` stands for [`SparseLimit::Measured`].
static DENSITY_LIMIT: AtomicU32 = AtomicU32::new(0x7fc0_0000);

/// Sets, for the whole process, when a CPU convolution runs its sparse passes.
pub fn set_sparse_limit(limit: SparseLimit) {
    let bits = match limit {
        SparseLimit::Measured => f32::NAN.to_bits(),
        SparseLimit::Density(d) if d.is_nan() => 0.0f32.to_bits(),
        SparseLimit::Density(d) => d.clamp(0.0, 1.0).to_bits(),
    };
    DENSITY_LIMIT.store(bits, Ordering::Relaxed);
}

/// When a CPU convolution runs its sparse passes.
pub fn sparse_limit() -> SparseLimit {
    let limit = f32::from_bits(DENSITY_LIMIT.load(Ordering::Relaxed));
    if limit.is_nan() {
        SparseLimit::Measured
    } else {
        SparseLimit::Density(limit)
    }
}

/// Densities up to which each layout beat the dense passes (module documentation): the
/// lanes on maps of 256 positions or more, and on smaller ones, against dense passes by
/// Winograd's F(4×4, 3×3), and against the patch matrix's products where Winograd does not
/// apply (1×1 kernels, fewer than 16 channels).
const LANES_WIDE_LIMIT: f32 = 0.3;
const LANES_LIMIT: f32 = 0.2;
const LANES_WIDE_LIMIT_IM2COL: f32 = 0.38;
const LANES_LIMIT_IM2COL: f32 = 0.3;
const GRID_LIMIT: f32 = 0.25;
const PATCHES_LIMIT: f32 = 0.15;

/// The density limit for a forward pass of `g` under [`SparseLimit::Measured`]: that of the
/// layout [`forward`] picks.
fn measured_limit(g: &Geometry) -> f32 {
    let grid_positions = Layout::new(g, 1, gather::tile()).len(1);
    if lanes::applies(g) {
        match (g.oh * g.ow >= 256, winograd::applies(g)) {
            (true, true) => LANES_WIDE_LIMIT,
            (false, true) => LANES_LIMIT,
            (true, false) => LANES_WIDE_LIMIT_IM2COL,
            (false, false) => LANES_LIMIT_IM2COL,
        }
    } else if patches::preferred(g, grid_positions) {
        PATCHES_LIMIT
    } else {
        GRID_LIMIT
    }
}

static PASSES: AtomicU64 = AtomicU64::new(0);

/// Sparse passes (forward passes and input gradients) run in this process so far: how a
/// caller sees whether its convolutions were sparse enough for them.
pub fn sparse_passes() -> u64 {
    PASSES.load(Ordering::Relaxed)
}

/// Whether the sparse forward pass takes a convolution of geometry `g` with weight `w`: no
/// dilation, and `w` sparse enough ([`sparse_limit`]).
pub(crate) fn applies(g: &Geometry, w: &[f32]) -> bool {
    within_limit(g, w, || measured_limit(g))
}

/// Whether `w` is within the limit (`measured` under [`SparseLimit::Measured`]).
///
/// The count of nonzero values stops once it passes the limit: a dense weight costs a
/// few thousand values' look, not a pass over all of them, on every convolution.
fn within_limit(g: &Geometry, w: &[f32], measured: impl FnOnce() -> f32) -> bool {
    if g.dilation != [1, 1] || w.is_empty() {
        return false;
    }
    let limit = match sparse_limit() {
        SparseLimit::Density(d) => d,
        SparseLimit::Measured => measured(),
    };
    if limit <= 0.0 {
        return false;
    }
    let allowed = (f64::from(limit) * w.len() as f64) as usize;
    let mut nonzero = 0;
    for block in w.chunks(4096) {
        nonzero += block.iter().filter(|v| **v != 0.0).count();
        if nonzero > allowed {
            return false;
        }
    }
    true
}

/// Counts a pass that ran sparse (see [`sparse_passes`]).
pub(crate) fn count_pass() {
    PASSES.fetch_add(1, Ordering::Relaxed);
}

/// Whether the sparse input gradient takes a convolution: as [`applies`], but for kernels
/// smaller than their stride (ResNet's 1×1 stride-2 shortcuts), whose gradient's grid would
/// keep every phase of which only one is written, where the dense pass is faster.
pub(crate) fn applies_to_input_gradient(g: &Geometry, w: &[f32]) -> bool {
    // Stride 1 runs the forward pass of a geometry of the same sizes; strided, the grid.
    let measured = || {
        if g.stride == [1, 1] {
            measured_limit(g)
        } else {
            GRID_LIMIT
        }
    };
    g.kh * g.kw >= g.stride[0] * g.stride[1] && within_limit(g, w, measured)
}

/// Bytes of source grids and output rows a chunk of images aims at: within a core's L2
/// cache.
const CHUNK_BYTES: usize = 1 << 20;

/// Bytes of input a tile reads from one chunk of source channels: within the L1 cache.
const WINDOW_BYTES: usize = 32 << 10;

/// [`WINDOW_BYTES`] for the patch matrix, whose rows hold one tap each: an L1-sized chunk
/// of them holds so few of a row's taps at ResNet's densities that reloading the row's
/// accumulators per chunk cost more than the L2's reads (4×4 maps at 512 channels, 10 %:
/// 22 → 16 ms).
const PATCH_WINDOW_BYTES: usize = 128 << 10;

/// Images per chunk: as many as fit [`CHUNK_BYTES`], but at least two chunks per thread
/// while the batch allows it.
fn images_per_chunk(g: &Geometry, in_rows: usize, out_rows: usize) -> usize {
    let balance = g.batch.div_ceil(2 * rayon::current_num_threads());
    let mut images = balance.max(1);
    while images > 1 && Layout::footprint(g, images, in_rows, out_rows) > CHUNK_BYTES {
        images = images.div_ceil(2);
    }
    images
}

/// Values in a cache line.
const ALIGN: usize = 16;

/// `len` values of `buffer` (`len + ALIGN` long) from its first cache-line boundary: tiles
/// start at multiples of the tile, so the loads of taps whose offset is a multiple of 16 do
/// not straddle two lines (a straddling load costs two).
fn aligned(buffer: &mut [f32], len: usize) -> &mut [f32] {
    let skip = buffer.as_ptr().align_offset(64).min(ALIGN);
    &mut buffer[skip..skip + len]
}

/// Runs `pass(input, output, src, out)` on every chunk of `images` images in parallel:
/// the chunk's inputs (`input_len` values per image) and outputs (`output_len` per image),
/// and this thread's scratch, `src` (`src_len` values from a cache line's start: see
/// [`aligned`]) and `out` (`out_len` values). Every layout's pass is this loop.
fn for_each_chunk(
    (input, input_len): (&[f32], usize),
    (output, output_len): (&mut [MaybeUninit<f32>], usize),
    images: usize,
    (src_len, out_len): (usize, usize),
    pass: impl Fn(&[f32], &mut [MaybeUninit<f32>], &mut [f32], &mut [f32]) + Sync,
) {
    input
        .par_chunks(images * input_len)
        .zip(output.par_chunks_mut(images * output_len))
        .for_each(|(input, output)| {
            with_scratch(src_len + ALIGN, out_len, |src, out| {
                pass(input, output, aligned(src, src_len), out)
            });
        });
}

/// `y = conv(x, w)` over `w`'s nonzero values, or `false` (nothing written) when one image's
/// grids are too large for the kernel's 32-bit offsets. Shapes as in the dense
/// [`forward`](super::kernel::forward).
pub(crate) fn forward(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) -> bool {
    if lanes::applies(g) && lanes::forward(g, x, w, y) {
        return true;
    }
    let tile = gather::tile();
    let phases = g.stride[0] * g.stride[1];
    let images = images_per_chunk(g, g.c_in * phases, g.c_out);
    let layout = Layout::new(g, images, tile);
    if patches::preferred(g, layout.len(1)) {
        return patches::forward(g, x, w, y);
    }
    let split = Split {
        channels: g.c_in * phases,
        channel_len: layout.channel_len,
        window: tile + layout.reach(),
        budget: WINDOW_BYTES,
    };
    let Some(taps) = layout.forward_taps(g, w, split) else {
        return false;
    };
    let (src_len, out_len) = (
        g.c_in * phases * layout.channel_len,
        g.c_out * layout.out_stride,
    );
    let scratch = (src_len, out_len);
    for_each_chunk(
        (x, g.input_len()),
        (y, g.output_len()),
        images,
        scratch,
        |x, y, src, out| {
            let n = x.len() / g.input_len();
            layout.place_input(g, x, src);
            gather::gather(&taps, src, layout.len(n), out, layout.out_stride);
            layout.take_output(g, out, y);
        },
    );
    true
}

/// The input gradient of `y = conv(x, w)` for output gradient `gy`, over `w`'s nonzero
/// values, or `false` (nothing written) as [`forward`]. Shapes as in the dense
/// [`backward_input`](super::kernel::backward_input).
pub(crate) fn backward_input(
    g: &Geometry,
    w: &[f32],
    gy: &[f32],
    gx: &mut [MaybeUninit<f32>],
) -> bool {
    // Stride 1: a forward pass of `gy` with the flipped weight.
    if let Some((flipped_geometry, flipped)) = super::kernel::as_flipped_forward(g, w) {
        return forward(&flipped_geometry, gy, &flipped, gx);
    }
    let tile = gather::tile();
    let phases = g.stride[0] * g.stride[1];
    let images = images_per_chunk(g, g.c_out, g.c_in * phases);
    let layout = Layout::new(g, images, tile);
    let split = Split {
        channels: g.c_out,
        channel_len: layout.channel_len,
        window: tile + layout.reach(),
        budget: WINDOW_BYTES,
    };
    let Some(taps) = layout.input_gradient_taps(g, w, split) else {
        return false;
    };
    let (src_len, out_len) = (
        g.c_out * layout.channel_len,
        g.c_in * phases * layout.out_stride,
    );
    let scratch = (src_len, out_len);
    let (input, output) = ((gy, g.output_len()), (gx, g.input_len()));
    for_each_chunk(input, output, images, scratch, |gy, gx, src, out| {
        let n = gy.len() / g.output_len();
        layout.place_output_gradient(g, gy, src);
        gather::gather(&taps, src, layout.len(n), out, layout.out_stride);
        layout.take_input_gradient(g, out, gx);
    });
    true
}

#[cfg(test)]
mod tests;
