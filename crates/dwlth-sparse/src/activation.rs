//! Activation buffers and the input layouts convolutions read from.
//!
//! Every feature map between layers is stored NCHW with a one-pixel zero border around each
//! channel plane ([`Act`]). With that border, a stride-1 convolution with padding ≤ 1 (every
//! 3×3 and 1×1 convolution of a ResNet but the downsampling ones) reads its input in place: the
//! output position `q = oy · (w + 2) + ox` reads input position `q + offset(tap)`, one constant
//! offset per nonzero weight, so the kernel walks contiguous memory with no border tests.
//!
//! Strided convolutions (the stem, the first block of stages 2–4 and their shortcuts) would
//! read every second element. Their input is first split into `stride²` phase planes
//! ([`phase_split`]): phase `(a, b)` holds the input rows `≡ a` and columns `≡ b` (mod stride),
//! zero-padded, and then a strided convolution is again "read `q + offset(tap)`" on a grid of
//! the phase planes' width. The split costs one pass over the input.
//!
//! Every buffer starts on a cache line, every plane (bordered or phase) takes a whole number of
//! lines ([`plane_len`]), and a bordered plane starts [`plane_origin`] values into its lines so
//! that its first real value starts a line. A tile of a 1×1 convolution then reads and writes
//! whole lines only.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::filter::SparseConv;
use crate::error::{Result, SparseError};

/// Output positions per tile: 4 AVX-512 or 8 AVX2 registers of accumulators.
pub(crate) const TILE: usize = 64;

/// Output positions per wide tile (AVX-512 only, 8 registers): half the per-weight work
/// (offset, broadcast, loop) per multiply-add of [`TILE`], for maps where it computes no more
/// positions than [`TILE`] (−10–15 % on ResNet-50's 28×28 sparse 1×1 layers; a 7×7 map would
/// compute twice its positions).
pub(crate) const WIDE_TILE: usize = 128;

/// Extra values after the last image of every buffer, so that a full tile of outputs
/// may read past the last real output position without a bounds-shortened tail loop. The
/// outputs of those extra positions are never stored.
pub(crate) const SLACK: usize = WIDE_TILE;

/// `f32` values per 64-byte cache line (and per AVX-512 register).
pub(crate) const LANES: usize = 16;

/// One cache line of values.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LANES]);

/// A buffer of `f32` whose first value starts a cache line.
///
/// Loads that straddle two lines cost twice the cache bandwidth of aligned ones; with every
/// plane a whole number of lines from an aligned start, the sparse kernel's 1×1 layers read
/// only aligned vectors (−25–30 % time on ResNet-50's 14×14 sparse 1×1 layers).
pub(crate) struct Buffer(Vec<Line>);

impl Buffer {
    /// At least `len` zeros.
    fn zeros(len: usize) -> Self {
        Self(vec![Line([0.0; LANES]); len.div_ceil(LANES)])
    }
}

impl Deref for Buffer {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is `repr(C)` over `[f32; LANES]`, 64 bytes without padding, so the
        // vector's lines are `LANES · len` contiguous initialised `f32` values.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * LANES) }
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, through the unique borrow of the vector.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * LANES) }
    }
}

/// Distance between bordered `height × width` planes: the plane after its [`plane_origin`],
/// rounded up to an odd number of cache lines ([`padded`]).
pub(crate) fn plane_len(height: usize, width: usize) -> usize {
    padded(plane_origin(width) + (height + 2) * (width + 2))
}

/// Unused values before a bordered plane of width `width`, so that its first real value (row
/// 1, column 1, `width + 3` values in) starts a cache line.
///
/// Every tap of a stride-1 1×1 convolution reads `channel · plane_len + origin + width + 3`
/// ahead of the output position, a multiple of [`LANES`]; the kernel's tiles start at
/// multiples of [`LANES`] too, so all their loads and stores are whole lines (loads that
/// straddle two lines cost twice the cache bandwidth: −25–30 % on ResNet-50's 14×14 sparse
/// 1×1 layers).
pub(crate) fn plane_origin(width: usize) -> usize {
    (LANES - (width + 3) % LANES) % LANES
}

/// `len` rounded up to an odd number of whole cache lines.
///
/// Kernels read the same positions of many planes at once. With planes an even number of
/// lines apart, those lines fall into a fraction of L1's sets (a 14×14 map's 256-value planes
/// put every channel's tile into the same 16 of 64 sets, a quarter of the cache), and evict
/// each other long before the cache is full; an odd number of lines spreads them over all
/// sets.
pub(crate) fn padded(len: usize) -> usize {
    let lines = len.div_ceil(LANES);
    (lines | 1) * LANES
}

/// Recycled activation buffers.
///
/// A ResNet-50 forward pass at batch 8 writes about a gigabyte of activations. Fresh zeroed
/// allocations of that size come from the kernel page by page, and the page faults alone cost
/// as much as the sparse convolutions; reusing a handful of buffers avoids them. Recycled
/// buffers hold stale values, so every writer sets all the values it promises (interior and
/// zero border).
#[derive(Default)]
pub(crate) struct Pool(Mutex<Vec<Buffer>>);

impl Pool {
    /// A buffer of at least `len` values with unspecified contents.
    ///
    /// Buffers keep their full length between uses: truncating one for a small map and
    /// growing it again for a large one would zero the difference, megabytes per layer.
    pub fn take(&self, len: usize) -> Buffer {
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest free buffer that is long enough.
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= len)
            .min_by_key(|(_, v)| v.len())
            .map(|(i, _)| i);
        match best {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                Buffer::zeros(len)
            }
        }
    }

    /// Returns a buffer for reuse.
    pub fn put(&self, v: Buffer) {
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        free.push(v);
    }
}

/// Sets the one-pixel border of every `(height + 2) × (width + 2)` plane in `planes`
/// ([`plane_len`] apart, each from its [`plane_origin`]) to zero.
pub(crate) fn zero_borders(planes: &mut [f32], height: usize, width: usize) {
    let row = width + 2;
    let (stride, origin) = (plane_len(height, width), plane_origin(width));
    debug_assert_eq!(planes.len() % stride, 0, "whole planes");
    for plane in planes.chunks_exact_mut(stride) {
        let plane = &mut plane[origin..origin + (height + 2) * row];
        plane[..row].fill(0.0);
        plane[(height + 1) * row..].fill(0.0);
        for y in 1..=height {
            plane[y * row] = 0.0;
            plane[y * row + width + 1] = 0.0;
        }
    }
}

/// A batch of feature maps, NCHW, each plane surrounded by one row/column of zeros, starting
/// at [`plane_origin`] in a slot of [`plane_len`] values.
pub(crate) struct Act {
    /// `batch · channels · plane_len(height, width)` values, then at least [`SLACK`] more.
    pub data: Buffer,
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Height without the border.
    pub height: usize,
    /// Width without the border.
    pub width: usize,
}

impl Act {
    /// A map from `pool` whose values are unspecified: its writer sets the interior and the
    /// borders ([`zero_borders`]).
    pub fn uninit(pool: &Pool, batch: usize, channels: usize, height: usize, width: usize) -> Self {
        let len = batch * channels * plane_len(height, width) + SLACK;
        Self {
            data: pool.take(len),
            batch,
            channels,
            height,
            width,
        }
    }

    /// Row length including the border.
    pub fn row(&self) -> usize {
        self.width + 2
    }

    /// Distance between planes: the bordered plane padded to whole cache lines.
    pub fn plane(&self) -> usize {
        plane_len(self.height, self.width)
    }

    /// Where each plane's border starts in its slot.
    pub fn origin(&self) -> usize {
        plane_origin(self.width)
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.plane()
    }
}

impl ConvInput<'_> {
    /// Returns an owned (phase-split) buffer to `pool`.
    pub fn recycle(self, pool: &Pool) {
        if let Values::Owned(v) = self.data {
            pool.put(v);
        }
    }
}

/// A convolution's input values: the previous layer's maps, or a phase-split copy.
pub(crate) enum Values<'a> {
    Borrowed(&'a [f32]),
    Owned(Buffer),
}

impl Deref for Values<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match self {
            Values::Borrowed(v) => v,
            Values::Owned(v) => v,
        }
    }
}

/// A convolution's input as the kernel sees it: a buffer, one offset per tap, and the grid
/// width that maps output position `(oy, ox)` to `q = oy · grid + ox`.
pub(crate) struct ConvInput<'a> {
    /// Every image's input, `image_len` apart, followed by at least [`SLACK`] readable values.
    pub data: Values<'a>,
    /// Distance between images in `data`.
    pub image_len: usize,
    /// Input offset of each tap relative to the output position, parallel to `conv.taps`
    /// (empty for a layer run as a dense product).
    pub offsets: Arc<[u32]>,
    /// Input offset of tap `(channel 0, ky, kx)` at `ky · kw + kx`, stored or not.
    pub origins: Vec<usize>,
    /// Distance between the values one tap position reads in consecutive input channels:
    /// tap `(c, ky, kx)` reads `c · channel_stride` after tap `(0, ky, kx)`.
    pub channel_stride: usize,
    /// Grid width (≥ `out_w`; the extra columns are computed and discarded).
    pub grid: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
}

/// Output size of one dimension, or an error naming the layer when the input is too small.
fn out_size(layer: &str, size: usize, k: usize, s: usize, p: usize) -> Result<usize> {
    if size + 2 * p < k {
        return Err(SparseError::InvalidInput(format!(
            "a feature map of size {size} is too small for `{layer}` (kernel {k}, padding {p})"
        )));
    }
    Ok((size + 2 * p - k) / s + 1)
}

/// Phase geometry of one dimension of a strided convolution.
#[derive(Clone, Copy, Debug)]
struct Phases {
    stride: usize,
    /// Rows (or columns) of zeros before phase index 0.
    pad: usize,
    /// Phase-plane extent.
    extent: usize,
}

impl Phases {
    fn new(k: usize, s: usize, p: usize, out: usize) -> Self {
        let d = |kk: usize| (kk as isize - p as isize).div_euclid(s as isize);
        let pad = (-d(0)) as usize;
        let extent = (out as isize + d(k - 1) + pad as isize) as usize;
        Self {
            stride: s,
            pad,
            extent,
        }
    }

    /// (phase, position shift) of kernel index `kk`.
    fn split(&self, kk: usize, p: usize) -> (usize, usize) {
        let t = kk as isize - p as isize;
        let s = self.stride as isize;
        (
            t.rem_euclid(s) as usize,
            (t.div_euclid(s) + self.pad as isize) as usize,
        )
    }

    /// The input index that phase `a`, position `i` holds, if inside `0..size`.
    fn source(&self, a: usize, i: usize, size: usize) -> Option<usize> {
        let v = self.stride as isize * (i as isize - self.pad as isize) + a as isize;
        (0..size as isize).contains(&v).then_some(v as usize)
    }
}

/// `(ky, kx)` over a kernel, row by row.
fn kernel_positions([kh, kw]: [usize; 2]) -> impl Iterator<Item = (usize, usize)> {
    (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ky, kx)))
}

fn to_u32(v: usize, layer: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        SparseError::InvalidInput(format!(
            "the feature maps of `{layer}` are too large (more than 2³² values per image)"
        ))
    })
}

/// Splits `channels` planes of size `height × width` per image into the phase planes of `conv`.
///
/// `row(image, channel, y)` is input row `y` (`width` values); `map(channel, v)` is applied to
/// every value copied (normalisation for the stem). Only the phases some kernel position
/// reads are built: a 1×1 stride-2 shortcut reads one phase of four, so it copies a quarter
/// of its input instead of all of it.
fn phase_split<'a, 'b>(
    pool: &Pool,
    conv: &SparseConv,
    batch: usize,
    [height, width]: [usize; 2],
    row: impl Fn(usize, usize, usize) -> &'b [f32] + Sync,
    map: impl Fn(usize, f32) -> f32 + Sync,
) -> Result<ConvInput<'a>> {
    let s = &conv.shape;
    let out_h = out_size(&conv.name, height, s.kernel[0], s.stride[0], s.padding[0])?;
    let out_w = out_size(&conv.name, width, s.kernel[1], s.stride[1], s.padding[1])?;
    let py = Phases::new(s.kernel[0], s.stride[0], s.padding[0], out_h);
    let px = Phases::new(s.kernel[1], s.stride[1], s.padding[1], out_w);
    // Phase rows as long as the output's bordered rows where they fit (every strided layer of
    // a ResNet but the stem): the grid then matches the output plane, so a dense product is
    // written there directly and the sparse kernel stores whole tiles (stride-2 3×3 layers
    // 3–10 % faster than on the shortest rows, despite computing a column or two more per
    // row). The extra columns are zeros that only discarded positions read.
    let grid = if px.extent <= out_w + 2 {
        out_w + 2
    } else {
        px.extent
    };
    let plane = padded(py.extent * grid);
    // slot[a · stride_x + b]: the place of phase (a, b) among the built ones, if any reads it.
    let mut slot = vec![usize::MAX; s.stride[0] * s.stride[1]];
    let mut built: Vec<Span> = Vec::new();
    for (ky, kx) in kernel_positions(s.kernel) {
        let (a, b) = (py.split(ky, s.padding[0]).0, px.split(kx, s.padding[1]).0);
        let phase = a * s.stride[1] + b;
        if slot[phase] == usize::MAX {
            slot[phase] = built.len();
            built.push(Span::new(&px, a, b, width));
        }
    }
    let per_channel = built.len() * plane;
    let image_len = s.in_channels * per_channel;
    to_u32(image_len, &conv.name)?;
    let step = s.stride[1];
    let mut data = pool.take(batch * image_len + SLACK);
    data[..batch * image_len]
        .par_chunks_mut(per_channel)
        .enumerate()
        .for_each(|(nc, out)| {
            let (n, c) = (nc / s.in_channels, nc % s.in_channels);
            for (phase, span) in out.chunks_exact_mut(plane).zip(&built) {
                for (i, dst) in phase.chunks_exact_mut(grid).enumerate() {
                    let Some(y) = py.source(span.a, i, height) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &row(n, c, y)[span.x0..];
                    let (before, rest) = dst.split_at_mut(span.j0);
                    let (inside, after) = rest.split_at_mut(span.j1 - span.j0);
                    before.fill(0.0);
                    after.fill(0.0);
                    copy_every(step, src, inside, |v| map(c, v));
                }
            }
        });
    let offset = |channel: usize, ky: usize, kx: usize| {
        let (a, dy) = py.split(ky, s.padding[0]);
        let (b, dx) = px.split(kx, s.padding[1]);
        let phase = channel * built.len() + slot[a * s.stride[1] + b];
        phase * plane + dy * grid + dx
    };
    Ok(ConvInput {
        data: Values::Owned(data),
        image_len,
        offsets: tap_offsets(conv, [height, width], offset),
        origins: kernel_positions(s.kernel)
            .map(|(ky, kx)| offset(0, ky, kx))
            .collect(),
        channel_stride: per_channel,
        grid,
        out_h,
        out_w,
    })
}

/// `dst[i] = f(src[step · i])` for every `i` of `dst`.
///
/// Stride 2 (every strided layer of a ResNet but none) walks `src` in pairs, a form the
/// compiler turns into vector loads and shuffles; the general strided walk reads one value
/// at a time.
#[inline(always)]
fn copy_every(step: usize, src: &[f32], dst: &mut [f32], f: impl Fn(f32) -> f32) {
    if step == 2 {
        let pairs = src.chunks_exact(2);
        let n = pairs.len().min(dst.len());
        for (d, pair) in dst[..n].iter_mut().zip(pairs) {
            *d = f(pair[0]);
        }
        // An odd-length row's last value has no pair.
        for (i, d) in dst.iter_mut().enumerate().skip(n) {
            *d = f(src[2 * i]);
        }
        return;
    }
    for (d, &v) in dst.iter_mut().zip(src.iter().step_by(step)) {
        *d = f(v);
    }
}

/// The columns of one phase plane that hold input values: phase row `(a, b)` has the input
/// columns `x0, x0 + stride, …` at `j0..j1`, and zeros elsewhere.
struct Span {
    a: usize,
    j0: usize,
    j1: usize,
    x0: usize,
}

impl Span {
    fn new(px: &Phases, a: usize, b: usize, width: usize) -> Self {
        let inside = |j: &usize| px.source(b, *j, width).is_some();
        let j0 = (0..px.extent).find(inside).unwrap_or(px.extent);
        let j1 = (0..px.extent).rfind(inside).map_or(j0, |j| j + 1);
        Self {
            a,
            j0,
            j1,
            x0: px.source(b, j0, width).unwrap_or(0),
        }
    }
}

/// The input offset of every stored tap of `conv` for an input of `size`, for the sparse
/// kernel (cached per size); none for a layer run as a dense product, which reads its input
/// by kernel position (`origins`) instead (a 90 % ResNet-50 ticket stores 2.3 M taps, most
/// of them in dense layers).
fn tap_offsets(
    conv: &SparseConv,
    size: [usize; 2],
    offset: impl Fn(usize, usize, usize) -> usize,
) -> Arc<[u32]> {
    if conv.dense.is_some() {
        return Arc::new([]);
    }
    conv.offsets.get_or(size, || {
        conv.taps
            .iter()
            .map(|t| offset(t.channel as usize, t.ky as usize, t.kx as usize) as u32)
            .collect()
    })
}

/// The input of `conv` applied to `x`: in place for stride 1 and padding ≤ 1, phase-split
/// otherwise.
pub(crate) fn conv_input<'a>(pool: &Pool, conv: &SparseConv, x: &'a Act) -> Result<ConvInput<'a>> {
    let s = &conv.shape;
    if x.channels != s.in_channels {
        return Err(SparseError::InvalidInput(format!(
            "`{}` expects {} input channels, got {}",
            conv.name, s.in_channels, x.channels
        )));
    }
    if s.stride == [1, 1] && s.padding[0] <= 1 && s.padding[1] <= 1 {
        return in_place(
            conv,
            [x.channels, x.height, x.width],
            Values::Borrowed(&x.data),
        );
    }
    if s.kernel == [1, 1] && s.padding == [0, 0] {
        return subsampled(pool, conv, x);
    }
    let (row, plane, image_len, origin) = (x.row(), x.plane(), x.image_len(), x.origin());
    let data = &x.data;
    phase_split(
        pool,
        conv,
        x.batch,
        [x.height, x.width],
        |n, c, y| &data[n * image_len + c * plane + origin + (y + 1) * row + 1..][..x.width],
        |_, v| v,
    )
}

/// A stride-1 convolution's input read in place from `data`, maps of `[channels, height,
/// width]` in [`Act`]'s layout.
fn in_place<'a>(
    conv: &SparseConv,
    [channels, height, width]: [usize; 3],
    data: Values<'a>,
) -> Result<ConvInput<'a>> {
    let s = &conv.shape;
    let out_h = out_size(&conv.name, height, s.kernel[0], 1, s.padding[0])?;
    let out_w = out_size(&conv.name, width, s.kernel[1], 1, s.padding[1])?;
    let (row, plane, origin) = (width + 2, plane_len(height, width), plane_origin(width));
    let image_len = channels * plane;
    to_u32(image_len, &conv.name)?;
    let offset = |channel: usize, ky: usize, kx: usize| {
        origin + channel * plane + (ky + 1 - s.padding[0]) * row + kx + 1 - s.padding[1]
    };
    Ok(ConvInput {
        data,
        image_len,
        offsets: tap_offsets(conv, [height, width], offset),
        origins: kernel_positions(s.kernel)
            .map(|(ky, kx)| offset(0, ky, kx))
            .collect(),
        channel_stride: plane,
        grid: row,
        out_h,
        out_w,
    })
}

/// The input of a strided, unpadded 1×1 convolution (a ResNet's downsampling shortcut): the
/// positions it reads, every `stride`-th row and column, copied into maps of the output's
/// size, which it then reads as a stride-1 1×1 convolution. Unlike a phase grid, the copy
/// has the output's rows, so the kernel stores whole aligned tiles straight into the output
/// planes.
fn subsampled<'a>(pool: &Pool, conv: &SparseConv, x: &Act) -> Result<ConvInput<'a>> {
    let [sy, sx] = conv.shape.stride;
    let out_h = out_size(&conv.name, x.height, 1, sy, 0)?;
    let out_w = out_size(&conv.name, x.width, 1, sx, 0)?;
    let mut sub = Act::uninit(pool, x.batch, x.channels, out_h, out_w);
    let (plane, first, row) = (sub.plane(), sub.origin() + sub.row() + 1, sub.row());
    let (src_plane, src_first, src_row) = (x.plane(), x.origin() + x.row() + 1, x.row());
    let planes = x.batch * x.channels;
    sub.data[..planes * plane]
        .par_chunks_mut(plane)
        .zip(x.data[..planes * src_plane].par_chunks(src_plane))
        .for_each(|(dst, src)| {
            for oy in 0..out_h {
                let from = &src[src_first + sy * oy * src_row..][..x.width];
                copy_every(sx, from, &mut dst[first + oy * row..][..out_w], |v| v);
            }
            zero_borders(dst, out_h, out_w);
        });
    in_place(conv, [x.channels, out_h, out_w], Values::Owned(sub.data))
}

/// The input of the stem convolution: raw NCHW images, normalised per channel on the way
/// (`(x − mean) / std`, as the model's `Normalize` layer), then phase-split. Normalising
/// here rather than folding it into the weights keeps the zero padding in normalised space,
/// as in the dense model.
pub(crate) fn stem_input<'a>(
    pool: &Pool,
    conv: &SparseConv,
    images: &[f32],
    [batch, height, width]: [usize; 3],
    (mean, std): (&[f32], &[f32]),
) -> Result<ConvInput<'a>> {
    let channels = conv.shape.in_channels;
    phase_split(
        pool,
        conv,
        batch,
        [height, width],
        |n, c, y| &images[((n * channels + c) * height + y) * width..][..width],
        |c, v| (v - mean[c]) / std[c],
    )
}

#[cfg(test)]
mod tests {
    use super::super::read::{ConvShape, FoldedConv};
    use super::*;

    #[test]
    fn buffers_and_planes_start_on_cache_lines() {
        let pool = Pool::default();
        for len in [1, 17, 1000, 4099] {
            let b = pool.take(len);
            assert!(b.len() >= len);
            assert_eq!(b.as_ptr() as usize % 64, 0, "buffer of {len} values");
            pool.put(b);
        }
        for (h, w) in [(1, 1), (7, 7), (14, 14), (28, 28), (56, 55)] {
            let (p, origin) = (plane_len(h, w), plane_origin(w));
            assert_eq!(p % (2 * LANES), LANES, "an odd number of lines");
            let used = origin + (h + 2) * (w + 2);
            assert!(p >= used && p < used + 2 * LANES, "{h}×{w}");
            assert_eq!((origin + w + 3) % LANES, 0, "first real value of {h}×{w}");
        }
    }

    /// A 1×1 layer's taps read whole lines: every offset, and every image's start, is a
    /// multiple of [`LANES`] (and tiles start at multiples of it).
    #[test]
    fn one_by_one_taps_read_whole_lines() {
        let pool = Pool::default();
        for (size, stride) in [(7, 1), (14, 1), (28, 1), (56, 1), (13, 2), (28, 2)] {
            let (ic, oc) = (8, 4);
            // Every fifth weight: sparse enough for the sparse kernel.
            let weight = (0..oc * ic)
                .map(|i| if i % 5 == 0 { 1.0 + i as f32 } else { 0.0 })
                .collect();
            let shape = ConvShape {
                out_channels: oc,
                in_channels: ic,
                kernel: [1, 1],
                stride: [stride, stride],
                padding: [0, 0],
            };
            let bias = vec![0.0; oc];
            let conv = SparseConv::compress(
                "c",
                FoldedConv {
                    shape,
                    weight,
                    bias,
                },
            );
            assert!(conv.dense.is_none());
            let x = Act::uninit(&pool, 2, ic, size, size);
            let input = conv_input(&pool, &conv, &x).expect("valid input");
            assert!(!input.offsets.is_empty());
            for &o in input.offsets.iter() {
                assert_eq!(o as usize % LANES, 0, "{size}×{size} stride {stride}: {o}");
            }
            assert_eq!(input.image_len % LANES, 0);
            assert_eq!(input.data.as_ptr() as usize % 64, 0);
            input.recycle(&pool);
        }
    }
}
