//! Where a chunk of images' values sit for [`gather`](super::gather::gather): one grid per
//! channel and stride phase, images one after another, so that every tap of the kernel is a
//! constant offset from the output position it contributes to.
//!
//! An image's grid is `hq × wq` positions: its zero-padded plane, split by stride phase (a
//! stride-2 convolution reads the even rows and columns with its even taps and the odd ones
//! with its odd taps, so each phase is a stride-1 grid), with at least as many rows and
//! columns as the kernel reaches past the output. Grid positions outside the image are zero,
//! so a tap that falls outside reads a zero, and outputs computed at positions outside the
//! output map are discarded.

use std::mem::MaybeUninit;

use super::super::blocks::Geometry;
use super::taps::{Split, Taps};

/// The grid of a convolution's chunks of images, for both sparse passes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// Stride (rows, columns): phases per grid dimension.
    s: [usize; 2],
    /// Leading padding (rows, columns).
    pad: [usize; 2],
    /// Rows and columns of one image's grid, per phase.
    hq: usize,
    wq: usize,
    /// How far the kernel reaches on the grid, `⌊(kh − 1)/s⌋ · wq + ⌊(kw − 1)/s⌋`: the
    /// forward pass reads this far ahead, the input gradient this far behind.
    reach: usize,
    /// Values of one channel's grids, with room for the reach and a last tile.
    pub channel_len: usize,
    /// Output row length: the chunk's grid positions rounded up to whole tiles.
    pub out_stride: usize,
}

impl Layout {
    /// The layout of `g` for chunks of `images` images and tiles of `tile` positions.
    pub fn new(g: &Geometry, images: usize, tile: usize) -> Self {
        let [s0, s1] = g.stride;
        let hp = (g.h + g.pad[0]).max((g.oh - 1) * s0 + g.kh);
        let wp = (g.w + g.pad[1]).max((g.ow - 1) * s1 + g.kw);
        let hq = hp.div_ceil(s0).max(g.oh + (g.kh - 1) / s0);
        let wq = wp.div_ceil(s1).max(g.ow + (g.kw - 1) / s1);
        let reach = (g.kh - 1) / s0 * wq + (g.kw - 1) / s1;
        let len = images * hq * wq;
        Layout {
            s: g.stride,
            pad: g.pad,
            hq,
            wq,
            reach,
            channel_len: len + reach + tile,
            out_stride: len.next_multiple_of(tile),
        }
    }

    /// How far the kernel reaches on the grid (ahead in the forward pass, behind in the
    /// input gradient).
    pub fn reach(&self) -> usize {
        self.reach
    }

    /// Values of one image's grid.
    fn image_len(&self) -> usize {
        self.hq * self.wq
    }

    /// Grid positions of a chunk of `images` images.
    pub fn len(&self, images: usize) -> usize {
        images * self.image_len()
    }

    /// Stride phases per channel.
    pub fn phases(&self) -> usize {
        self.s[0] * self.s[1]
    }

    /// The phase of padded position `(y, x)` and its place in that phase's image grid.
    fn locate(&self, y: usize, x: usize) -> (usize, usize) {
        let [s0, s1] = self.s;
        ((y % s0) * s1 + x % s1, (y / s0) * self.wq + x / s1)
    }

    /// For input row `iy` of `width` columns, per column phase: its first column (the others
    /// follow `s` apart), the phase of the row's values there and where they start in that
    /// phase's image grid (one after another from there).
    fn phase_columns(
        &self,
        iy: usize,
        width: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let (y, s1) = (iy + self.pad[0], self.s[1]);
        (0..s1).filter_map(move |c| {
            // The columns of phase `c`: `(ix + pad) mod s == c`.
            let first = (c + s1 - self.pad[1] % s1) % s1;
            let (phase, at) = self.locate(y, first + self.pad[1]);
            (first < width).then_some((first, phase, at))
        })
    }

    /// Bytes a chunk of `images` images needs in cache: `in_channels` source grids and
    /// `out_rows` output rows.
    pub fn footprint(g: &Geometry, images: usize, in_channels: usize, out_rows: usize) -> usize {
        let l = Layout::new(g, images, 64);
        4 * (in_channels * l.channel_len + out_rows * l.out_stride)
    }

    /// The forward pass's taps: row `o` holds `w[o, ci, ki, kj] ≠ 0` at the grid offset of
    /// phase `(ki mod s, kj mod s)` of channel `ci`, `⌊ki/s⌋` rows and `⌊kj/s⌋` columns ahead.
    pub fn forward_taps(&self, g: &Geometry, w: &[f32], split: Split) -> Option<Taps> {
        let [s0, s1] = self.s;
        Taps::build(g.c_out, split, |o, taps| {
            for (t, &v) in w[o * g.k()..][..g.k()].iter().enumerate() {
                if v != 0.0 {
                    let (ci, ki, kj) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
                    let chan = ci * self.phases() + (ki % s0) * s1 + kj % s1;
                    taps.push((chan * self.channel_len + ki / s0 * self.wq + kj / s1, v));
                }
            }
        })
    }

    /// The input gradient's taps: row `(ci, phase)` holds `w[o, ci, ki, kj] ≠ 0` of that phase
    /// at the offset of output channel `o`'s grid, `⌊ki/s⌋` rows and `⌊kj/s⌋` columns behind
    /// (relative to the [`reach`](Self) every placed gradient is shifted by).
    pub fn input_gradient_taps(&self, g: &Geometry, w: &[f32], split: Split) -> Option<Taps> {
        let [s0, s1] = self.s;
        let taps_per_channel = g.kh * g.kw;
        let phases = self.phases();
        Taps::build(g.c_in * phases, split, |r, taps| {
            let (ci, a, c) = (r / phases, r % phases / s1, r % s1);
            for o in 0..g.c_out {
                let filter = &w[(o * g.c_in + ci) * taps_per_channel..][..taps_per_channel];
                for (t, &v) in filter.iter().enumerate() {
                    let (ki, kj) = (t / g.kw, t % g.kw);
                    if v != 0.0 && ki % s0 == a && kj % s1 == c {
                        let back = ki / s0 * self.wq + kj / s1;
                        taps.push((o * self.channel_len + self.reach - back, v));
                    }
                }
            }
        })
    }

    /// Writes images `x` (`[n, c, h, w]`, `n ≤ images`) into `src` (`c · phases` grids, zero
    /// everywhere else) for the forward pass.
    pub fn place_input(&self, g: &Geometry, x: &[f32], src: &mut [f32]) {
        src.fill(0.0);
        let [s0, s1] = self.s;
        let (hw, phases) = (g.h * g.w, self.phases());
        for (i, image) in x.chunks_exact(g.c_in * hw).enumerate() {
            for (ci, plane) in image.chunks_exact(hw).enumerate() {
                if s0 == 1 && s1 == 1 {
                    let (_, at) = self.locate(self.pad[0], self.pad[1]);
                    let dst = &mut src[ci * self.channel_len + i * self.image_len() + at..];
                    rows_into(plane, g.w, dst, self.wq, [g.h, g.w], |d: &mut f32, v| {
                        *d = v
                    });
                    continue;
                }
                for (iy, row) in plane.chunks_exact(g.w).enumerate() {
                    for (first, phase, at) in self.phase_columns(iy, g.w) {
                        let chan = ci * phases + phase;
                        let dst = &mut src[chan * self.channel_len + i * self.image_len() + at..];
                        if s1 == 1 {
                            dst[..g.w].copy_from_slice(row);
                        } else {
                            for (d, v) in dst.iter_mut().zip(row[first..].iter().step_by(s1)) {
                                *d = *v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes output gradients `gy` (`[n, c_out, oh, ow]`) into `src` (`c_out` grids, zero
    /// everywhere else), each shifted by the reach, for the input gradient.
    pub fn place_output_gradient(&self, g: &Geometry, gy: &[f32], src: &mut [f32]) {
        src.fill(0.0);
        let p = g.oh * g.ow;
        for (i, image) in gy.chunks_exact(g.c_out * p).enumerate() {
            for (o, plane) in image.chunks_exact(p).enumerate() {
                let base = o * self.channel_len + self.reach + i * self.image_len();
                let dst = &mut src[base..];
                rows_into(plane, g.ow, dst, self.wq, [g.oh, g.ow], |d: &mut f32, v| {
                    *d = v
                });
            }
        }
    }

    /// Copies the forward pass's outputs at real output positions from `out` (`c_out` rows)
    /// into `y` (`[n, c_out, oh, ow]`).
    pub fn take_output(&self, g: &Geometry, out: &[f32], y: &mut [MaybeUninit<f32>]) {
        let p = g.oh * g.ow;
        for (i, image) in y.chunks_exact_mut(g.c_out * p).enumerate() {
            for (o, plane) in image.chunks_exact_mut(p).enumerate() {
                let base = o * self.out_stride + i * self.image_len();
                rows_into(
                    &out[base..],
                    self.wq,
                    plane,
                    g.ow,
                    [g.oh, g.ow],
                    |d: &mut MaybeUninit<f32>, v| {
                        d.write(v);
                    },
                );
            }
        }
    }

    /// Copies the input gradient at real input positions from `out` (`c_in · phases` rows)
    /// into `gx` (`[n, c_in, h, w]`).
    pub fn take_input_gradient(&self, g: &Geometry, out: &[f32], gx: &mut [MaybeUninit<f32>]) {
        let [_, s1] = self.s;
        let (hw, phases) = (g.h * g.w, self.phases());
        for (i, image) in gx.chunks_exact_mut(g.c_in * hw).enumerate() {
            for (ci, plane) in image.chunks_exact_mut(hw).enumerate() {
                if phases == 1 {
                    let (_, at) = self.locate(self.pad[0], self.pad[1]);
                    let src = &out[ci * self.out_stride + i * self.image_len() + at..];
                    rows_into(
                        src,
                        self.wq,
                        plane,
                        g.w,
                        [g.h, g.w],
                        |d: &mut MaybeUninit<f32>, v| {
                            d.write(v);
                        },
                    );
                    continue;
                }
                for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
                    for (first, phase, at) in self.phase_columns(iy, g.w) {
                        let r = ci * phases + phase;
                        let src = &out[r * self.out_stride + i * self.image_len() + at..];
                        for (d, &v) in row[first..].iter_mut().step_by(s1).zip(src) {
                            d.write(v);
                        }
                    }
                }
            }
        }
    }
}

/// Copies `rows` rows of `width` values from `src` (rows `src_stride` apart) to `dst` (rows
/// `dst_stride` apart) through `put`.
///
/// The widths of ResNet's maps are compiled as constants, so that a row is a few vector moves:
/// a `memcpy` call per row of 4–32 values cost more than the copy (a fifth of a sparse pass).
#[inline]
pub(super) fn rows_into<T>(
    src: &[f32],
    src_stride: usize,
    dst: &mut [T],
    dst_stride: usize,
    [rows, width]: [usize; 2],
    put: impl Fn(&mut T, f32),
) {
    #[inline(always)]
    fn fixed<T, const W: usize>(
        src: &[f32],
        src_stride: usize,
        dst: &mut [T],
        dst_stride: usize,
        rows: usize,
        put: impl Fn(&mut T, f32),
    ) {
        for r in 0..rows {
            let s: &[f32; W] = src[r * src_stride..][..W].try_into().expect("a row");
            let d: &mut [T; W] = (&mut dst[r * dst_stride..][..W]).try_into().expect("a row");
            for (d, &v) in d.iter_mut().zip(s) {
                put(d, v);
            }
        }
    }
    match width {
        4 => fixed::<T, 4>(src, src_stride, dst, dst_stride, rows, put),
        8 => fixed::<T, 8>(src, src_stride, dst, dst_stride, rows, put),
        16 => fixed::<T, 16>(src, src_stride, dst, dst_stride, rows, put),
        32 => fixed::<T, 32>(src, src_stride, dst, dst_stride, rows, put),
        _ => {
            for r in 0..rows {
                let s = &src[r * src_stride..][..width];
                for (d, &v) in dst[r * dst_stride..][..width].iter_mut().zip(s) {
                    put(d, v);
                }
            }
        }
    }
}
