//! The sparse convolution kernel: direct convolution over nonzero weights only.
//!
//! For one output channel and one tile of `T` consecutive output positions `q0..q0 + T`
//! ([`TILE`] or [`WIDE_TILE`]; positions on the input's grid, see [`super::activation`]), the
//! kernel runs over the channel's nonzero weights `w` with input offset `off` and adds
//! `w · x[q0 + off ..]` to `T` accumulators. The accumulators stay in vector registers for the
//! whole channel (a fixed-size array that LLVM keeps in registers and vectorises), so each
//! nonzero weight costs `T / lanes` vector loads and as many fused multiply-adds, and the
//! output is written once, with bias, residual and ReLU fused into that store.
//!
//! Work is split over (image, block of output channels) with rayon; inside a task the tile
//! loop is outermost so that one tile's input window stays in cache while every channel of the
//! block reads it.

use rayon::prelude::*;

use super::activation::{
    plane_len, plane_origin, zero_borders, Act, ConvInput, Pool, TILE, WIDE_TILE,
};
use super::filter::SparseConv;
use super::pool::{max_pool_plane, pooled_size};
use crate::error::{Result, SparseError};
use dwlth_kernels::conv::blocks::with_scratch;
pub(super) use dwlth_kernels::conv::blocks::{isa, Isa};

/// Everything a task needs, shared by all tasks of one convolution.
pub(super) struct Job<'a> {
    offsets: &'a [u32],
    values: &'a [f32],
    /// Input-channel chunks per output channel.
    chunks: usize,
    /// `split[o · (chunks + 1) + k]..split[o · (chunks + 1) + k + 1]` indexes the weights of
    /// output channel `o` that read input-channel chunk `k`.
    split: &'a [usize],
    bias: &'a [f32],
    pub(super) grid: usize,
    pub(super) out_h: usize,
    pub(super) out_w: usize,
    /// Where each output plane's border starts in its slot ([`plane_origin`]).
    pub(super) dst_origin: usize,
    /// Output positions on the grid, from 0 to the last real one.
    pub(super) len: usize,
    pub(super) dst_row: usize,
    pub(super) dst_plane: usize,
    pub(super) relu: bool,
    /// The destination already holds the shortcut, to be added (the sum is formed in place,
    /// see [`output`]).
    pub(super) residual: bool,
}

/// Adds `Σ w · x[q0 + off ..][..T]` over some of one output channel's nonzero weights to
/// `acc`.
///
/// Weights are taken in pairs with two sets of accumulators: a multiply-add waits for the
/// previous one into the same register (4 cycles), so one set of `T / lanes` registers
/// would leave half the FMA throughput unused.
#[inline(always)]
fn accumulate<const FMA: bool, const T: usize>(
    acc: &mut [f32; T],
    x: &[f32],
    q0: usize,
    offsets: &[u32],
    values: &[f32],
) {
    #[inline(always)]
    fn madd<const FMA: bool, const T: usize>(acc: &mut [f32; T], w: f32, x: &[f32], start: usize) {
        debug_assert!(start + T <= x.len());
        // SAFETY: `start + T ≤ x.len()` for every tile and tap, checked once per convolution
        // by `check_reads` (every buffer has `SLACK ≥ T` readable values after the last real
        // input position); `[f32; T]` has `f32`'s alignment. Unchecked, the loop spends no
        // compare-and-branch pair per weight on bounds.
        let src: &[f32; T] = unsafe { &*x.as_ptr().add(start).cast::<[f32; T]>() };
        for (a, &v) in acc.iter_mut().zip(src) {
            *a = if FMA { w.mul_add(v, *a) } else { *a + w * v };
        }
    }
    let mut even = *acc;
    let mut odd = [0.0f32; T];
    let pairs = offsets.len() / 2;
    for (o, w) in offsets[..2 * pairs]
        .chunks_exact(2)
        .zip(values[..2 * pairs].chunks_exact(2))
    {
        madd::<FMA, T>(&mut even, w[0], x, q0 + o[0] as usize);
        madd::<FMA, T>(&mut odd, w[1], x, q0 + o[1] as usize);
    }
    if let (Some(&o), Some(&w)) = (offsets.get(2 * pairs), values.get(2 * pairs)) {
        madd::<FMA, T>(&mut even, w, x, q0 + o as usize);
    }
    for ((a, e), o) in acc.iter_mut().zip(even).zip(odd) {
        *a = e + o;
    }
}

/// Writes the real positions of the tile starting at grid position `q0` into an output plane
/// (with its zero border), as `act(acc + bias [+ the shortcut the plane holds])`.
#[inline(always)]
pub(super) fn store<const T: usize>(
    job: &Job,
    acc: &[f32; T],
    q0: usize,
    bias: f32,
    plane: &mut [f32],
) {
    #[inline(always)]
    fn put(job: &Job, out: &mut [f32], acc: &[f32], bias: f32) {
        if job.residual {
            for (o, &a) in out.iter_mut().zip(acc) {
                let v = a + bias + *o;
                *o = if job.relu { v.max(0.0) } else { v };
            }
        } else {
            for (o, &a) in out.iter_mut().zip(acc) {
                let v = a + bias;
                *o = if job.relu { v.max(0.0) } else { v };
            }
        }
    }
    let d = job.dst_origin + q0 + job.dst_row + 1;
    if job.grid == job.dst_row {
        // Stride 1: the grid is the output plane shifted by one row and column, so the tile
        // is stored with whole vectors. Its grid columns past the output width, and its
        // positions past the last one, land on the border, zeroed again right after while
        // in cache (a pass over every plane's border after the last tile missed it on every
        // row). Only a last tile may reach past the plane; its real positions do not.
        if d + T <= plane.len() {
            let out: &mut [f32; T] = (&mut plane[d..d + T]).try_into().expect("T values");
            put(job, out, acc, bias);
        } else {
            let n = plane.len() - d;
            put(job, &mut plane[d..], &acc[..n], bias);
        }
        clear_border(job, plane, q0, (q0 + T).min(job.len));
        return;
    }
    let end = (q0 + T).min(job.len);
    let mut q = q0;
    while q < end {
        let (oy, ox) = (q / job.grid, q % job.grid);
        if ox >= job.out_w {
            // Grid columns past the output width: computed, discarded.
            q = (oy + 1) * job.grid;
            continue;
        }
        let n = (job.out_w - ox).min(end - q);
        let d = job.dst_origin + (oy + 1) * job.dst_row + ox + 1;
        put(job, &mut plane[d..d + n], &acc[q - q0..q - q0 + n], bias);
        q += n;
    }
}

/// Zeroes the border of a stride-1 output plane (grid = plane rows) around grid positions
/// `q0..end`: the grid columns past the output width, the border before the first position
/// when `q0 == 0`, and everything after the last when `end == len`.
#[inline(always)]
pub(super) fn clear_border(job: &Job, plane: &mut [f32], q0: usize, end: usize) {
    let base = job.dst_origin + job.dst_row + 1;
    if q0 == 0 {
        plane[job.dst_origin..base].fill(0.0);
    }
    if end == job.len {
        let bottom = job.dst_origin + (job.out_h + 2) * job.dst_row;
        plane[base + end..bottom].fill(0.0);
    }
    let mut row = q0 / job.grid * job.grid;
    while row + job.out_w < end {
        let from = (row + job.out_w).max(q0);
        let to = (row + job.grid).min(end);
        plane[base + from..base + to].fill(0.0);
        row += job.grid;
    }
}

/// Asks for the lines [`store`] will write for the tile at `q0` of `plane`.
///
/// A group's stores reach 32 planes a plane apart, a pattern the hardware prefetchers miss,
/// and each line first has to be read (the shortcut it holds, or ownership of a fresh line).
/// Asked for before the group's multiply-adds, the lines arrive while they run: −10–15 % on
/// ResNet-50's sparse 3×3 layers.
#[inline(always)]
fn prefetch_tile<const T: usize>(job: &Job, q0: usize, plane: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // The plane positions of the tile's first and last grid positions (see `store`).
        let at = |q: usize| {
            let q = q.min(job.len.max(1) - 1);
            job.dst_origin + (q / job.grid + 1) * job.dst_row + q % job.grid + 1
        };
        let (first, last) = (at(q0), at(q0 + T - 1));
        for k in (first..=last).step_by(16) {
            if let Some(v) = plane.get(k) {
                // SAFETY: a prefetch is a hint that never faults; the address is in bounds.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(v).cast()) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (job, q0, plane);
}

/// Output channels whose partial sums a task keeps at once (8 or 16 KiB of accumulators).
const GROUP: usize = 32;

/// One task: output channels `first..` (as many as `dst` holds planes) of one image.
///
/// Loops, outermost first: output tile, group of [`GROUP`] output channels, chunk of input
/// channels, output channel, nonzero weight. A chunk's input window for one tile fits in L1, so
/// the weights of a whole group read it from there rather than from L2 or memory.
///
/// `then` runs on `dst` at the end, in the same instruction-set build.
#[inline(always)]
fn run_block<const FMA: bool, const T: usize>(
    job: &Job,
    x: &[f32],
    first: usize,
    dst: &mut [f32],
    then: impl FnOnce(&mut [f32]),
) {
    let planes = dst.len() / job.dst_plane;
    let mut partial = [[0.0f32; T]; GROUP];
    let stride = job.chunks + 1;
    let mut q0 = 0;
    while q0 < job.len {
        for g0 in (0..planes).step_by(GROUP) {
            let g = (planes - g0).min(GROUP);
            for p in &mut partial[..g] {
                *p = [0.0; T];
            }
            for p in g0..g0 + g {
                prefetch_tile::<T>(job, q0, &dst[p * job.dst_plane..(p + 1) * job.dst_plane]);
            }
            for k in 0..job.chunks {
                for (i, acc) in partial[..g].iter_mut().enumerate() {
                    let s = (first + g0 + i) * stride + k;
                    let (lo, hi) = (job.split[s], job.split[s + 1]);
                    // An output channel without weights is its bias (plus residual)
                    // everywhere: no multiply at all.
                    if lo < hi {
                        let (offsets, values) = (&job.offsets[lo..hi], &job.values[lo..hi]);
                        accumulate::<FMA, T>(acc, x, q0, offsets, values);
                    }
                }
            }
            for (i, acc) in partial[..g].iter().enumerate() {
                let p = g0 + i;
                let plane = &mut dst[p * job.dst_plane..(p + 1) * job.dst_plane];
                store(job, acc, q0, job.bias[first + p], plane);
            }
        }
        q0 += T;
    }
    if job.grid != job.dst_row {
        // Strided layers store real positions only ([`store`]).
        zero_borders(dst, job.out_h, job.out_w);
    }
    then(dst);
}

/// Input channels per chunk: a tile's input window of one chunk (`kh` rows of
/// `tile + kw` values per channel) in about 32 KiB, L1's share for the input — unless that
/// would leave an output channel fewer than [`MIN_TAPS_PER_CHUNK`] weights per chunk on
/// average, where the per-chunk work (loading and storing the accumulators) would cost more
/// than the L1 misses it saves.
fn chunk_channels(conv: &SparseConv, tile: usize) -> usize {
    let [kh, kw] = conv.shape.kernel;
    let per_channel = kh * (tile + kw) * std::mem::size_of::<f32>();
    let for_l1 = (32 * 1024 / per_channel).max(4);
    let taps_per_channel = conv.nnz() / conv.shape.out_channels.max(1);
    let chunks = (taps_per_channel / MIN_TAPS_PER_CHUNK).max(1);
    for_l1.max(conv.shape.in_channels.div_ceil(chunks))
}

/// See [`chunk_channels`].
const MIN_TAPS_PER_CHUNK: usize = 16;

/// For every output channel, where its weights (sorted by input channel) cross each chunk
/// boundary.
fn split_by_chunk(conv: &SparseConv, chunk: usize) -> (usize, Vec<usize>) {
    let chunks = conv.shape.in_channels.div_ceil(chunk);
    let mut split = Vec::with_capacity(conv.shape.out_channels * (chunks + 1));
    for o in 0..conv.shape.out_channels {
        let (lo, hi) = (conv.row[o], conv.row[o + 1]);
        let mut j = lo;
        split.push(lo);
        for k in 1..chunks {
            let limit = (k * chunk) as u32;
            while j < hi && conv.taps[j].channel < limit {
                j += 1;
            }
            split.push(j);
        }
        split.push(hi);
    }
    (chunks, split)
}

/// AVX-512 build of [`run_block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn run_block_avx512<const T: usize>(
    job: &Job,
    x: &[f32],
    first: usize,
    dst: &mut [f32],
    then: impl FnOnce(&mut [f32]),
) {
    run_block::<true, T>(job, x, first, dst, then)
}

/// AVX2 + FMA build of [`run_block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_block_avx2(
    job: &Job,
    x: &[f32],
    first: usize,
    dst: &mut [f32],
    then: impl FnOnce(&mut [f32]),
) {
    run_block::<true, TILE>(job, x, first, dst, then)
}

fn dispatch(
    isa: Isa,
    wide: bool,
    job: &Job,
    x: &[f32],
    first: usize,
    dst: &mut [f32],
    then: impl FnOnce(&mut [f32]),
) {
    match isa {
        // SAFETY: `isa()` returned `Avx512` only after detecting AVX-512F, AVX2 and FMA on this
        // CPU, which is all `run_block_avx512` assumes; its body is safe Rust.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if wide => unsafe { run_block_avx512::<WIDE_TILE>(job, x, first, dst, then) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { run_block_avx512::<TILE>(job, x, first, dst, then) },
        // SAFETY: as above, with AVX2 and FMA detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { run_block_avx2(job, x, first, dst, then) },
        _ => run_block::<false, TILE>(job, x, first, dst, then),
    }
}

/// Whether the kernel runs [`WIDE_TILE`]s for `len` grid positions: on AVX-512 (where 16 of
/// its 32 vector registers hold them), when they compute at most 3 % more positions than
/// [`TILE`]s.
fn wide_tiles(isa: Isa, len: usize) -> bool {
    isa == Isa::Avx512 && 100 * len.next_multiple_of(WIDE_TILE) <= 103 * len.next_multiple_of(TILE)
}

/// Panics unless every read of the kernel (`x[q0 + off..][..T]` for every tile start `q0` and
/// tap offset `off`) lies inside each image's input, the invariant `accumulate` relies on.
///
/// Bounded from the geometry, without a pass over the offsets: tap `(c, ky, kx)` reads
/// `origins[ky · kw + kx] + c · channel_stride` ahead, so no offset exceeds the largest origin
/// plus `in_channels − 1` channel strides (the dense products' bound too).
fn check_reads(job: &Job, input: &ConvInput, in_channels: usize, batch: usize, wide: bool) {
    let tile = if wide { WIDE_TILE } else { TILE };
    let last_tile = job.len.saturating_sub(1) / tile * tile;
    let max_origin = input.origins.iter().max().copied().unwrap_or(0);
    let max_offset = max_origin + in_channels.saturating_sub(1) * input.channel_stride;
    let last_image = batch.saturating_sub(1) * input.image_len;
    assert!(
        last_image + last_tile + max_offset + tile <= input.data.len(),
        "sparse kernel: reads past the input"
    );
}

/// Whether `conv` runs [`wide_tiles`] over `len` grid positions, and its weights' chunks
/// ([`split_by_chunk`]) for that tile width.
fn plan(isa: Isa, conv: &SparseConv, len: usize) -> (bool, usize, Vec<usize>) {
    let wide = wide_tiles(isa, len);
    let tile = if wide { WIDE_TILE } else { TILE };
    let (chunks, split) = split_by_chunk(conv, chunk_channels(conv, tile));
    (wide, chunks, split)
}

/// Output channels per task: enough tasks to keep every thread busy and balanced, as few as
/// that allows so that each task reuses its input tiles over many channels.
fn channels_per_task(batch: usize, out_channels: usize) -> usize {
    let wanted = 4 * rayon::current_num_threads();
    let blocks = wanted.div_ceil(batch).clamp(1, out_channels);
    out_channels.div_ceil(blocks)
}

impl<'a> Job<'a> {
    /// What [`store`] needs: `conv`'s bias, the geometry of `input` and `out`, and whether
    /// `out` holds a shortcut to add (no weights).
    pub(super) fn epilogue(
        conv: &'a SparseConv,
        input: &ConvInput,
        out: &Act,
        relu: bool,
        residual: bool,
    ) -> Self {
        Job {
            offsets: &[],
            values: &[],
            chunks: 0,
            split: &[],
            bias: &conv.bias,
            grid: input.grid,
            out_h: input.out_h,
            out_w: input.out_w,
            len: (input.out_h - 1) * input.grid + input.out_w,
            dst_row: out.row(),
            dst_plane: out.plane(),
            dst_origin: out.origin(),
            relu,
            residual,
        }
    }
}

/// The output maps of `conv` on `input`: the shortcut's own maps when there is one (after
/// checking their shape), which the kernels then add to and overwrite in place, otherwise
/// uninitialised maps from `pool`.
///
/// Summing into the shortcut's buffer rather than a fresh one saves a third of an epilogue's
/// memory traffic: a store to a line not in cache first reads it, so a fresh output costs a
/// read of the shortcut, a read of the output and a write; in place, one read and one write.
pub(super) fn output(
    pool: &Pool,
    conv: &SparseConv,
    input: &ConvInput,
    batch: usize,
    residual: Option<Act>,
) -> Result<Act> {
    let (channels, height, width) = (conv.shape.out_channels, input.out_h, input.out_w);
    match residual {
        None => Ok(Act::uninit(pool, batch, channels, height, width)),
        Some(r) if (r.batch, r.channels, r.height, r.width) == (batch, channels, height, width) => {
            Ok(r)
        }
        Some(r) => {
            let err = SparseError::InvalidInput(format!(
                "`{}` gives {channels}×{height}×{width} maps but its shortcut gives {}×{}×{}",
                conv.name, r.channels, r.height, r.width
            ));
            pool.put(r.data);
            Err(err)
        }
    }
}

/// Runs `conv` on `input` for `batch` images: `act(conv(x) + bias [+ residual])`, the sum
/// formed in `residual`'s buffer.
pub(crate) fn convolve(
    pool: &Pool,
    conv: &SparseConv,
    input: &ConvInput,
    batch: usize,
    residual: Option<Act>,
    relu: bool,
) -> Result<Act> {
    let oc = conv.shape.out_channels;
    let add = residual.is_some();
    let mut out = output(pool, conv, input, batch, residual)?;
    let epilogue = Job::epilogue(conv, input, &out, relu, add);
    let isa = isa();
    let (wide, chunks, split) = plan(isa, conv, epilogue.len);
    let job = Job {
        offsets: &input.offsets,
        values: &conv.values,
        chunks,
        split: &split,
        ..epilogue
    };
    check_reads(&job, input, conv.shape.in_channels, batch, wide);
    let out_image = out.image_len();
    let per_task = channels_per_task(batch, oc);
    let data: &[f32] = &input.data;
    out.data[..batch * out_image]
        .par_chunks_mut(out_image)
        .enumerate()
        .for_each(|(n, image)| {
            let x = &data[n * input.image_len..];
            image
                .par_chunks_mut(per_task * job.dst_plane)
                .enumerate()
                .for_each(|(b, dst)| dispatch(isa, wide, &job, x, b * per_task, dst, |_| {}));
        });
    Ok(out)
}

/// `max_pool_3x3_s2(relu(conv(x) + bias))` (the stem and its max-pool) without writing the
/// convolution's maps: each task convolves one channel of one image into a per-thread plane
/// and pools it while it is in cache. The unfused pair wrote and read back a map four times
/// the size of the pooled one (26 MB for eight 224×224 images).
pub(crate) fn convolve_max_pooled(
    pool: &Pool,
    conv: &SparseConv,
    input: &ConvInput,
    batch: usize,
) -> Result<Act> {
    let oc = conv.shape.out_channels;
    let (height, width) = (input.out_h, input.out_w);
    let [out_h, out_w] = pooled_size(height, width)?;
    let mut out = Act::uninit(pool, batch, oc, out_h, out_w);
    let epilogue = Job::epilogue(conv, input, &out, true, false);
    let isa = isa();
    let (wide, chunks, split) = plan(isa, conv, epilogue.len);
    let plane = plane_len(height, width);
    let job = Job {
        offsets: &input.offsets,
        values: &conv.values,
        chunks,
        split: &split,
        dst_row: width + 2,
        dst_plane: plane,
        dst_origin: plane_origin(width),
        ..epilogue
    };
    check_reads(&job, input, conv.shape.in_channels, batch, wide);
    let out_plane = out.plane();
    out.data[..batch * oc * out_plane]
        .par_chunks_mut(out_plane)
        .enumerate()
        .for_each(|(nc, dst)| {
            let (n, o) = (nc / oc, nc % oc);
            if let Some(v) = conv.constant_output(o) {
                // No weights: the pool of a constant plane (≥ 0, zero border) is constant.
                dst.fill(v);
                zero_borders(dst, out_h, out_w);
                return;
            }
            let x = &input.data[n * input.image_len..];
            with_scratch(plane, 0, |maps, _| {
                dispatch(isa, wide, &job, x, o, maps, |maps| {
                    max_pool_plane(maps, [height, width], dst)
                });
            });
        });
    Ok(out)
}
