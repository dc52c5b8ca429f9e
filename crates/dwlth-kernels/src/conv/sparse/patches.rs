//! The sparse forward pass over an im2col patch matrix, for small maps.
//!
//! On a grid ([`Layout`](super::layout::Layout)) an 8×8 map with its padding is 10×10
//! positions and a 4×4 map 6×6: the kernel would compute 1.6–2.3× the outputs it keeps. The
//! patch matrix (one row per input channel and kernel tap, one column per output position of
//! a chunk of images) has no such waste, every tap is a whole row (so every load is aligned),
//! and at the channel counts of small maps (256–512) each of its values is read by dozens of
//! nonzero weights, which pays for writing it.

use std::mem::MaybeUninit;

use super::super::blocks::Geometry;
use super::super::kernel::im2col;
use super::layout::rows_into;
use super::taps::{Split, Taps};
use super::{for_each_chunk, gather, CHUNK_BYTES, PATCH_WINDOW_BYTES};

/// Whether the patch matrix beats the grid for `g`: the grid would compute more than 30 %
/// more positions than the output has, or hold more values than the patch matrix (strided
/// kernels smaller than their stride, such as ResNet's 1×1 stride-2 shortcuts, whose grid
/// keeps every phase of the input and whose patch matrix only the read one).
pub(super) fn preferred(g: &Geometry, grid_positions: usize) -> bool {
    10 * grid_positions > 13 * g.oh * g.ow || g.kh * g.kw < g.stride[0] * g.stride[1]
}

/// `y = conv(x, w)` over `w`'s nonzero values through the patch matrix, or `false` (nothing
/// written) when a chunk's matrix is too large for the kernel's 32-bit offsets
/// ([`Taps::build`]).
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) -> bool {
    let tile = gather::tile();
    let (k, p) = (g.k(), g.p());
    // Enough images for whole tiles, fewer while the matrix outgrows the cache budget, and at
    // least two chunks per thread while the batch allows it.
    let balance = g.batch.div_ceil(2 * rayon::current_num_threads()).max(1);
    let whole_tiles = tile.div_ceil(p).max(1);
    let mut images = balance;
    while images > whole_tiles && 4 * k * images * p > 2 * CHUNK_BYTES {
        images = images.div_ceil(2);
    }
    let ld = (images * p).next_multiple_of(tile);
    let split = Split {
        channels: k,
        channel_len: ld,
        window: tile,
        budget: PATCH_WINDOW_BYTES,
    };
    let taps = Taps::build(g.c_out, split, |o, taps| {
        for (t, &v) in w[o * k..][..k].iter().enumerate() {
            if v != 0.0 {
                taps.push((t * ld, v));
            }
        }
    });
    let Some(taps) = taps else {
        return false;
    };
    let (col_len, out_len) = (k * ld, g.c_out * ld);
    let (input, output) = ((x, g.input_len()), (y, g.output_len()));
    for_each_chunk(
        input,
        output,
        images,
        (col_len, out_len),
        |x, y, col, out| {
            let n = x.len() / g.input_len();
            let mut plane = vec![0.0; g.padded_len()];
            for (i, image) in x.chunks_exact(g.input_len()).enumerate() {
                im2col(g, image, col, ld, i * p, &mut plane);
            }
            gather::gather(&taps, col, n * p, out, ld);
            for (i, image) in y.chunks_exact_mut(g.output_len()).enumerate() {
                rows_into(&out[i * p..], ld, image, p, [g.c_out, p], |d, v| {
                    d.write(v);
                });
            }
        },
    );
    true
}
