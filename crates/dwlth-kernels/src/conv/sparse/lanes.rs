//! The sparse forward pass with 16 images in the vector lanes, for training batches.
//!
//! On a grid of image planes ([`Layout`](super::layout::Layout)) a tap's offset is rarely a
//! multiple of 16 values, so most of the kernel's loads straddle two cache lines and cost
//! two; and padding makes it compute positions it discards. Here every grid position holds
//! the same pixel of 16 images, one cache line: every tap's offset is a whole number of
//! lines, every load aligned, and tiles cover output positions only (a tile is consecutive
//! positions of one output row). Strided convolutions split each channel by stride phase, as
//! on the grid, so that a tile's positions read consecutive positions of one phase.
//!
//! The price is a transposition of the input into lanes and of the output back, one pass over
//! each; a batch's last group of fewer than 16 images leaves lanes empty.

use std::mem::MaybeUninit;

use super::super::blocks::{as_slots, transpose4, Geometry};
use super::taps::{Split, Taps};
use super::{for_each_chunk, gather, WINDOW_BYTES};

/// Images per group: the lanes of an AVX-512 register.
pub(super) const LANES: usize = 16;

/// Output positions per tile of [`gather::tile`] values.
fn positions_per_tile() -> usize {
    (gather::tile() / LANES).max(1)
}

/// Whether the lanes take `g`: stride 1, a batch of at least one full group, and output rows
/// whose tiles compute at most 30 % more positions than they keep (4×4 maps in 8-position
/// tiles would compute twice theirs; the patch matrix takes them). Strided layers stay on
/// the grid, whose phases need no transposition.
pub(super) fn applies(g: &Geometry) -> bool {
    let per_row = g.ow.next_multiple_of(positions_per_tile());
    g.stride == [1, 1] && g.batch >= LANES && 10 * per_row <= 13 * g.ow
}

/// Where one group's values sit: per channel and stride phase, an `hq × wq` plane of
/// positions of [`LANES`] values each.
struct Planes {
    s: [usize; 2],
    pad: [usize; 2],
    wq: usize,
    /// Values per channel and phase.
    channel_len: usize,
}

impl Planes {
    fn new(g: &Geometry, positions: usize) -> Self {
        let [s0, s1] = g.stride;
        let hp = (g.h + g.pad[0]).max((g.oh - 1) * s0 + g.kh);
        let wp = (g.w + g.pad[1]).max((g.ow - 1) * s1 + g.kw);
        let hq = hp.div_ceil(s0).max(g.oh + (g.kh - 1) / s0);
        // Room for the last tile of a row, which may reach past the output's width.
        let wq = wp
            .div_ceil(s1)
            .max(g.ow.next_multiple_of(positions) + (g.kw - 1) / s1);
        Planes {
            s: g.stride,
            pad: g.pad,
            wq,
            channel_len: hq * wq * LANES,
        }
    }

    fn phases(&self) -> usize {
        self.s[0] * self.s[1]
    }

    /// The channel (with phase) and value index of padded position `(y, x)` of input
    /// channel `ci`, lane 0.
    fn place(&self, ci: usize, y: usize, x: usize) -> usize {
        let [s0, s1] = self.s;
        let chan = ci * self.phases() + (y % s0) * s1 + x % s1;
        chan * self.channel_len + ((y / s0) * self.wq + x / s1) * LANES
    }
}

/// `y = conv(x, w)` over `w`'s nonzero values with images in lanes, or `false` (nothing
/// written) when a group's planes are too large for the kernel's 32-bit offsets
/// ([`Taps::build`]).
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) -> bool {
    let (tile, positions) = (gather::tile(), positions_per_tile());
    let planes = Planes::new(g, positions);
    let [s0, s1] = g.stride;
    let phases = planes.phases();
    let src_len = g.c_in * phases * planes.channel_len;
    // A tile reads `⌈kh / s⌉` rows of `positions + ⌊(kw − 1) / s⌋` positions per channel.
    let split = Split {
        channels: g.c_in * phases,
        channel_len: planes.channel_len,
        window: ((g.kh - 1) / s0 + 1) * (positions + (g.kw - 1) / s1) * LANES,
        budget: WINDOW_BYTES,
    };
    let taps = Taps::build(g.c_out, split, |o, taps| {
        for (t, &v) in w[o * g.k()..][..g.k()].iter().enumerate() {
            if v != 0.0 {
                let (ci, ki, kj) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
                let chan = ci * phases + (ki % s0) * s1 + kj % s1;
                let at = (ki / s0 * planes.wq + kj / s1) * LANES;
                taps.push((chan * planes.channel_len + at, v));
            }
        }
    });
    let Some(taps) = taps else {
        return false;
    };
    let starts: Vec<usize> = (0..g.oh)
        .flat_map(|oy| {
            let wq = planes.wq;
            (0..g.ow)
                .step_by(positions)
                .map(move |ox| (oy * wq + ox) * LANES)
        })
        .collect();
    let out_stride = starts.len() * tile;
    let out_len = g.c_out * out_stride;
    let (input, output) = ((x, g.input_len()), (y, g.output_len()));
    for_each_chunk(
        input,
        output,
        LANES,
        (src_len, out_len),
        |x, y, src, out| {
            place(g, &planes, x, src);
            gather::gather_tiles(&taps, src, &starts, out, out_stride);
            take(g, positions, out, out_stride, y);
        },
    );
    true
}

/// Writes up to [`LANES`] images `x` (`[n, c_in, h, w]`) into lanes of `src` (stride 1),
/// zero everywhere else.
///
/// Four images' four pixels at a time are transposed in registers
/// ([`transpose4`]): one pixel of 16 images is a cache line to fill, and a copy value by
/// value cost more than the kernel at 10 % density.
fn place(g: &Geometry, planes: &Planes, x: &[f32], src: &mut [f32]) {
    let n = x.len() / g.input_len();
    let (hw, wq) = (g.h * g.w, planes.wq);
    let [pt, pl] = planes.pad;
    // Zero what the images do not cover: every value when lanes stay empty, else the border.
    if n < LANES {
        src.fill(0.0);
    } else {
        for plane in src.chunks_exact_mut(planes.channel_len) {
            for (r, row) in plane.chunks_exact_mut(wq * LANES).enumerate() {
                if r < pt || r >= pt + g.h {
                    row.fill(0.0);
                } else {
                    row[..pl * LANES].fill(0.0);
                    row[(pl + g.w) * LANES..].fill(0.0);
                }
            }
        }
    }
    let (full_lanes, full_cols) = (n / 4 * 4, g.w / 4 * 4);
    let slots = as_slots(src);
    for ci in 0..g.c_in {
        for iy in 0..g.h {
            let from = ci * hw + iy * g.w;
            let to = planes.place(ci, iy + pt, pl);
            for l0 in (0..full_lanes).step_by(4) {
                for ix in (0..full_cols).step_by(4) {
                    transpose4(
                        &x[l0 * g.input_len() + from + ix..],
                        g.input_len(),
                        &mut slots[to + ix * LANES + l0..],
                        LANES,
                    );
                }
            }
            for l in 0..n {
                let first_col = if l < full_lanes { full_cols } else { 0 };
                for ix in first_col..g.w {
                    slots[to + ix * LANES + l].write(x[l * g.input_len() + from + ix]);
                }
            }
        }
    }
}

/// Copies the outputs at real positions from `out` (`c_out` rows of tiles, each tile
/// `positions` positions of [`LANES`] values; a row's tiles are consecutive) into `y`
/// (`[n, c_out, oh, ow]`), transposed four by four as in [`place`].
fn take(
    g: &Geometry,
    positions: usize,
    out: &[f32],
    out_stride: usize,
    y: &mut [MaybeUninit<f32>],
) {
    let n = y.len() / g.output_len();
    let row_len = g.ow.next_multiple_of(positions) * LANES;
    let (full_lanes, full_cols) = (n / 4 * 4, g.ow / 4 * 4);
    let image = g.output_len();
    for o in 0..g.c_out {
        for oy in 0..g.oh {
            let seg = &out[o * out_stride + oy * row_len..][..row_len];
            let to = (o * g.oh + oy) * g.ow;
            for l0 in (0..full_lanes).step_by(4) {
                for ox in (0..full_cols).step_by(4) {
                    transpose4(
                        &seg[ox * LANES + l0..],
                        LANES,
                        &mut y[l0 * image + to + ox..],
                        image,
                    );
                }
            }
            for l in 0..n {
                let first_col = if l < full_lanes { full_cols } else { 0 };
                for ox in first_col..g.ow {
                    y[l * image + to + ox].write(seg[ox * LANES + l]);
                }
            }
        }
    }
}
