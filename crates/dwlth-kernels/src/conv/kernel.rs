//! f32 convolution as matrix products over an im2col matrix, for contiguous NCHW slices.
//!
//! Every pass is one well-shaped product per chunk of images, on a `K × columns` patch
//! matrix (`K = c_in · kh · kw`, `columns = images · oh · ow`):
//!
//! - forward: `y[c_out, cols] = w[c_out, K] · col[K, cols]`;
//! - input gradient: `col_grad[K, cols] = wᵀ · gy[c_out, cols]`, scattered back by col2im;
//! - weight gradient: `gw[c_out, K] += gy[c_out, cols] · col[K, cols]ᵀ`, summed over chunks
//!   (accumulated transposed, see [`backward_weight`]).
//!
//! Chunks hold several images when a feature map is small, so that even ResNet's last stage
//! (4×4 maps on CIFAR) multiplies matrices hundreds of columns wide. Chunks run in parallel,
//! one single-threaded product each; when there are fewer chunks than threads (batch 1
//! inference) they run one after another and each product uses every thread instead.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::blocks::*;
use super::winograd;

/// Writes the patch matrix of one image into columns `[offset, offset + p)` of `col`
/// (row stride `ld`), through `plane`: a zeroed [`Geometry::padded_len`] buffer that keeps
/// its zero border between calls (only the interior is ever written).
///
/// Each input channel is first copied into the padded plane; then every patch row is `oh`
/// plain row reads of it, with no bounds to check and nothing to zero. Where the output
/// width and stride are ResNet's, the whole loop is compiled for them, so each row is a
/// few vector moves: a `memcpy` call per row of 4–32 values costs more than the copy (deep
/// layers' 4×4 and 8×8 maps made an earlier version's per-row calls a fifth of their time).
pub(super) fn im2col(
    g: &Geometry,
    image: &[f32],
    col: &mut [f32],
    ld: usize,
    offset: usize,
    plane: &mut [f32],
) {
    let rows: fn(&Geometry, &[f32], &mut [f32], usize, usize) = match (g.ow, g.stride[1]) {
        (4, 1) => patch_rows::<4, 1>,
        (7, 1) => patch_rows::<7, 1>,
        (8, 1) => patch_rows::<8, 1>,
        (14, 1) => patch_rows::<14, 1>,
        (16, 1) => patch_rows::<16, 1>,
        (28, 1) => patch_rows::<28, 1>,
        (32, 1) => patch_rows::<32, 1>,
        (56, 1) => patch_rows::<56, 1>,
        (4, 2) => patch_rows::<4, 2>,
        (8, 2) => patch_rows::<8, 2>,
        (16, 2) => patch_rows::<16, 2>,
        (28, 2) => patch_rows::<28, 2>,
        _ => patch_rows::<0, 0>,
    };
    let (hw, wp, [pt, pl]) = (g.h * g.w, g.padded_width(), g.pad);
    let taps = g.kh * g.kw;
    for ci in 0..g.c_in {
        let src = &image[ci * hw..][..hw];
        for (y, row) in src.chunks_exact(g.w).enumerate() {
            plane[(y + pt) * wp + pl..][..g.w].copy_from_slice(row);
        }
        rows(g, plane, col, ld, offset + ci * taps * ld);
    }
}

/// The `kh · kw` patch rows of one channel (the first at `col[start..]`, row stride `ld`)
/// from its padded plane, for output width `N` and column stride `S` known at compile time,
/// or any (`N = 0`).
fn patch_rows<const N: usize, const S: usize>(
    g: &Geometry,
    plane: &[f32],
    col: &mut [f32],
    ld: usize,
    start: usize,
) {
    let (ow, sw) = if N == 0 { (g.ow, g.stride[1]) } else { (N, S) };
    let (p, wp, [sh, _], [dh, dw]) = (g.p(), g.padded_width(), g.stride, g.dilation);
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let dst = &mut col[start + (ki * g.kw + kj) * ld..][..p];
            for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
                let src = &plane[(oy * sh + ki * dh) * wp + kj * dw..][..(ow - 1) * sw + 1];
                if sw == 1 {
                    d.copy_from_slice(src);
                } else {
                    for (t, v) in d.iter_mut().enumerate() {
                        *v = src[t * sw];
                    }
                }
            }
        }
    }
}

/// Adds columns `[offset, offset + p)` of the patch-gradient matrix `col` back onto one
/// image's input gradient (the adjoint of [`im2col`]).
fn col2im(g: &Geometry, col: &[f32], ld: usize, offset: usize, image: &mut [f32]) {
    let (p, ow, plane) = (g.p(), g.ow, g.h * g.w);
    let (sw, dw, pw) = (g.stride[1], g.dilation[1], g.pad[1]);
    for ci in 0..g.c_in {
        let dst_plane = &mut image[ci * plane..][..plane];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = (ci * g.kh + ki) * g.kw + kj;
                let src = &col[row * ld + offset..][..p];
                let (lo, hi) = g.valid_columns(kj);
                if lo == hi {
                    continue;
                }
                let x0 = lo * sw + kj * dw - pw;
                for oy in 0..g.oh {
                    let Some(iy) = g.input_row(oy, ki) else {
                        continue;
                    };
                    let s = &src[oy * ow + lo..oy * ow + hi];
                    let d = &mut dst_plane[iy * g.w..][..g.w];
                    if sw == 1 {
                        for (a, b) in d[x0..x0 + hi - lo].iter_mut().zip(s) {
                            *a += *b;
                        }
                    } else if sw == 2 {
                        // Every other value, without an index check per value (the
                        // downsampling layers' input gradients).
                        let run = &mut d[x0..x0 + 2 * (hi - lo) - 1];
                        for (pair, b) in run.chunks_mut(2).zip(s) {
                            pair[0] += *b;
                        }
                    } else {
                        for (t, b) in s.iter().enumerate() {
                            d[x0 + t * sw] += *b;
                        }
                    }
                }
            }
        }
    }
}

/// Copies `images` planes `[c, p]` (consecutive in `src`) into one `[c, images · p]` matrix.
fn gather_channels(src: &[f32], c: usize, p: usize, images: usize, dst: &mut [f32]) {
    let cols = images * p;
    for j in 0..images {
        for ch in 0..c {
            dst[ch * cols + j * p..][..p].copy_from_slice(&src[(j * c + ch) * p..][..p]);
        }
    }
}

/// The inverse of [`gather_channels`].
fn scatter_channels(src: &[f32], c: usize, p: usize, images: usize, dst: &mut [MaybeUninit<f32>]) {
    let cols = images * p;
    for j in 0..images {
        for ch in 0..c {
            let src = &src[ch * cols + j * p..][..p];
            for (d, s) in dst[(j * c + ch) * p..][..p].iter_mut().zip(src) {
                d.write(*s);
            }
        }
    }
}

/// How a pass splits the batch: images per chunk, and the product's own parallelism.
struct Plan {
    images: usize,
    chunks_in_parallel: bool,
    parallelism: Parallelism,
}

impl Plan {
    fn new(g: &Geometry) -> Self {
        let threads = rayon::current_num_threads();
        let images = g.images_per_chunk(threads);
        let chunks = g.batch.div_ceil(images);
        if chunks >= threads || threads == 1 {
            Self {
                images,
                chunks_in_parallel: true,
                parallelism: Parallelism::None,
            }
        } else {
            Self {
                images,
                chunks_in_parallel: false,
                parallelism: Parallelism::Rayon(threads),
            }
        }
    }
}

/// Runs `f(chunk index, a-chunk, b-chunk)` over matching chunks of two slices, in parallel
/// when the plan says so.
fn for_each_chunk<A: Sync, B: Send>(
    plan: &Plan,
    a: &[A],
    a_len: usize,
    b: &mut [B],
    b_len: usize,
    f: impl Fn(&[A], &mut [B]) + Sync + Send,
) {
    if plan.chunks_in_parallel {
        a.par_chunks(a_len)
            .zip(b.par_chunks_mut(b_len))
            .for_each(|(a, b)| f(a, b));
    } else {
        a.chunks(a_len)
            .zip(b.chunks_mut(b_len))
            .for_each(|(a, b)| f(a, b));
    }
}

/// `y = conv(x, w)` without bias. `x`: `[batch, c_in, h, w]`, `w`: `[c_out, c_in, kh, kw]`,
/// `y`: `[batch, c_out, oh, ow]`, all contiguous.
pub(crate) fn forward(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) {
    if winograd::applies(g) {
        winograd::forward(g, x, w, y);
    } else if g.c_in >= CHANNELS_LAST_FROM && g.kh * g.kw > 1 && g.p() >= 64 {
        forward_channels_last(g, x, w, y);
    } else {
        forward_im2col(g, x, w, y);
    }
}

/// Input channels from which [`forward`] builds the patch matrix of a spatial kernel
/// channels-last, for output maps of 64 positions or more (measured at batch 128: 4×4 maps
/// at 512 channels were slower that way, 45 against 37 ms; a 1×1 kernel's patch rows are the
/// input's own rows, strided or not).
const CHANNELS_LAST_FROM: usize = 16;

/// [`forward`] over the patch matrix of [`im2col`].
fn forward_im2col(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) {
    let plan = Plan::new(g);
    let (k, p, in_len, out_len) = (g.k(), g.p(), g.input_len(), g.output_len());
    let par = plan.parallelism;
    for_each_chunk(
        &plan,
        x,
        plan.images * in_len,
        y,
        plan.images * out_len,
        |xc, yc| {
            let images = yc.len() / out_len;
            let cols = images * p;
            let direct_rhs = g.is_pointwise() && images == 1;
            let patches = if direct_rhs { 0 } else { k * cols };
            let product = if images == 1 { 0 } else { g.c_out * cols };
            with_scratch(patches, product, |col, prod| {
                let rhs = if direct_rhs {
                    View::rows(xc, p)
                } else {
                    let mut plane = vec![0.0; g.padded_len()];
                    for j in 0..images {
                        let image = &xc[j * in_len..][..in_len];
                        im2col(g, image, col, cols, j * p, &mut plane);
                    }
                    View::rows(col, cols)
                };
                let lhs = View::rows(w, k);
                if images == 1 {
                    matmul_into((g.c_out, cols, k), (yc, Store::Rows), lhs, rhs, par);
                } else {
                    matmul(
                        (g.c_out, cols, k),
                        (prod, Store::Rows),
                        false,
                        lhs,
                        rhs,
                        par,
                    );
                    scatter_channels(prod, g.c_out, p, images, yc);
                }
            });
        },
    );
}

/// [`forward`] with the patch matrix channels-last: one row of `K` values per output
/// position, ordered (kernel row, kernel column, channel), each kernel row's taps one
/// contiguous copy out of a zero-padded channels-last copy of the image. The product then
/// has the layout `gemm` runs fastest (the weight with its output channels contiguous, the
/// patches with `K` contiguous): 1.1–1.3× the rate of the [`im2col`] layout at ResNet's
/// 64–256 channels, where `gemm` otherwise repacks the patch matrix with a strided read.
/// The product comes out channels-last too and is transposed into the output.
fn forward_channels_last(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) {
    let plan = Plan::new(g);
    let (k, p, in_len, out_len) = (g.k(), g.p(), g.input_len(), g.output_len());
    let (taps, c_in, c_out) = (g.kh * g.kw, g.c_in, g.c_out);
    // The weight as `[kh][kw][c_in][c_out]`: taps before channels per output channel, then
    // one tiled transpose (scattered single writes took as long as the product at 512
    // channels).
    let mut w_taps = vec![0.0f32; w.len()];
    for (src, dst) in w.chunks_exact(k).zip(w_taps.chunks_exact_mut(k)) {
        for ci in 0..c_in {
            for t in 0..taps {
                dst[t * c_in + ci] = src[ci * taps + t];
            }
        }
    }
    let mut w_t = vec![0.0f32; w.len()];
    transpose(&w_taps, c_out, k, as_slots(&mut w_t));
    let wp = g.padded_width();
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let par = plan.parallelism;
    for_each_chunk(
        &plan,
        x,
        plan.images * in_len,
        y,
        plan.images * out_len,
        |xc, yc| {
            let images = yc.len() / out_len;
            let cols = images * p;
            with_scratch(k * cols, c_out * cols, |patches, prod| {
                with_padded_plane(g, |plane| {
                    for j in 0..images {
                        let image = &xc[j * in_len..][..in_len];
                        // Row by row, channels-last, straight into the padded plane.
                        for iy in 0..g.h {
                            let row = ((iy + g.pad[0]) * wp + g.pad[1]) * c_in;
                            transpose_strided(
                                &image[iy * g.w..],
                                g.h * g.w,
                                (c_in, g.w),
                                as_slots(&mut plane[row..]),
                            );
                        }
                        for oy in 0..g.oh {
                            for ox in 0..g.ow {
                                let q = j * p + oy * g.ow + ox;
                                let dst = &mut patches[q * k..][..k];
                                for ki in 0..g.kh {
                                    let at = ((oy * sh + ki * dh) * wp + ox * sw) * c_in;
                                    let dst = &mut dst[ki * g.kw * c_in..][..g.kw * c_in];
                                    if dw == 1 {
                                        dst.copy_from_slice(&plane[at..at + g.kw * c_in]);
                                    } else {
                                        for (kj, d) in dst.chunks_exact_mut(c_in).enumerate() {
                                            let at = at + kj * dw * c_in;
                                            d.copy_from_slice(&plane[at..at + c_in]);
                                        }
                                    }
                                }
                            }
                        }
                    }
                });
                matmul(
                    (c_out, cols, k),
                    (prod, Store::Columns),
                    false,
                    View::transposed(&w_t, c_out),
                    View::transposed(patches, k),
                    par,
                );
                for (t, yj) in prod.chunks_exact(out_len).zip(yc.chunks_exact_mut(out_len)) {
                    transpose(t, p, c_out, yj);
                }
            });
        },
    );
}

/// Input channels from which [`backward_input`] of a spatial kernel runs the flipped forward
/// pass rather than a product and a scatter (Winograd's minimum: below it the flipped pass is
/// a product with few rows over a patch matrix of all the output channels). Below it the
/// flipped pass still runs where the input has at least as many channels as the output, and
/// for 1×1 kernels.
const FLIPPED_FROM: usize = winograd::MIN_CHANNELS;

/// Input channels per parallel block of [`as_flipped_forward`]'s flipped weight.
const FLIP_BLOCK: usize = 16;

/// The input gradient of a stride-1 convolution as a forward convolution: `gy` convolved
/// with the weight flipped in space and with input and output channels swapped, padded so
/// that its output has the input's size. `None` where that padding would be negative.
pub(super) fn as_flipped_forward(g: &Geometry, w: &[f32]) -> Option<(Geometry, Vec<f32>)> {
    let reach = [g.dilation[0] * (g.kh - 1), g.dilation[1] * (g.kw - 1)];
    if g.stride != [1, 1] || g.pad[0] > reach[0] || g.pad[1] > reach[1] {
        return None;
    }
    let flipped_geometry = Geometry {
        c_in: g.c_out,
        h: g.oh,
        w: g.ow,
        c_out: g.c_in,
        pad: [reach[0] - g.pad[0], reach[1] - g.pad[1]],
        oh: g.h,
        ow: g.w,
        ..*g
    };
    let taps = g.kh * g.kw;
    let (c_in, c_out) = (g.c_in, g.c_out);
    // Written in full below, not zeroed first (9.4 MB at 512 channels, on every input
    // gradient of an attack's iterations).
    let mut flipped: Vec<f32> = Vec::with_capacity(w.len());
    // Blocks of input channels in parallel, each reading one contiguous run of kernels per
    // output channel and writing its rows front to back (kernel by kernel, the writes went
    // `c_out` kernels apart: 2 ms at 512 channels, single-threaded).
    flipped.spare_capacity_mut()[..w.len()]
        .par_chunks_mut(FLIP_BLOCK * c_out * taps)
        .enumerate()
        .for_each(|(b, rows)| {
            let first = b * FLIP_BLOCK;
            let channels = rows.len() / (c_out * taps);
            for co in 0..c_out {
                let kernels = &w[(co * c_in + first) * taps..][..channels * taps];
                for (ci, src) in kernels.chunks_exact(taps).enumerate() {
                    let dst = &mut rows[(ci * c_out + co) * taps..][..taps];
                    for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                        d.write(*s);
                    }
                }
            }
        });
    // SAFETY: the blocks cover all `c_in · c_out · taps` slots, and each wrote every kernel
    // `(ci, co)` of its input channels, all `taps` values of it.
    unsafe { flipped.set_len(w.len()) };
    Some((flipped_geometry, flipped))
}

/// The gradient with respect to the input, `gx`, from the output gradient `gy`.
///
/// Stride-1 convolutions (all of ResNet's but the downsampling ones, 1×1 included) take it as a forward
/// convolution of `gy` ([`as_flipped_forward`]): one product as wide as the forward pass's
/// instead of a `K × columns` product followed by a scatter of all its values. Except where
/// the input has few channels (a stem's 3): the flipped forward pass's patch matrix has
/// `c_out · kh · kw` rows for `c_in` outputs, the scatter's `c_in · kh · kw` (at ResNet-18-CIFAR's
/// stem, 576 rows of patches for 3 channels of results against 27 rows scattered).
pub(crate) fn backward_input(g: &Geometry, w: &[f32], gy: &[f32], gx: &mut [MaybeUninit<f32>]) {
    let scatter_is_smaller = g.kh * g.kw > 1 && g.c_in < FLIPPED_FROM && g.c_in < g.c_out;
    if !scatter_is_smaller {
        if let Some((flipped_geometry, flipped)) = as_flipped_forward(g, w) {
            forward(&flipped_geometry, gy, &flipped, gx);
            return;
        }
    }
    let plan = Plan::new(g);
    let (k, p, in_len, out_len) = (g.k(), g.p(), g.input_len(), g.output_len());
    let par = plan.parallelism;
    for_each_chunk(
        &plan,
        gy,
        plan.images * out_len,
        gx,
        plan.images * in_len,
        |gyc, gxc| {
            let images = gyc.len() / out_len;
            let cols = images * p;
            let lhs = View::transposed(w, k);
            let gathered = if images == 1 { 0 } else { g.c_out * cols };
            with_scratch(k * cols, gathered, |col, gy_cols| {
                let rhs = if images == 1 {
                    View::rows(gyc, p)
                } else {
                    gather_channels(gyc, g.c_out, p, images, gy_cols);
                    View::rows(gy_cols, cols)
                };
                matmul((k, cols, g.c_out), (col, Store::Rows), false, lhs, rhs, par);
                for v in gxc.iter_mut() {
                    v.write(0.0);
                }
                // SAFETY: every value was just written.
                let gxc = unsafe { assume_written(gxc) };
                for j in 0..images {
                    col2im(g, col, cols, j * p, &mut gxc[j * in_len..][..in_len]);
                }
            });
        },
    );
}

/// The gradient with respect to the weight, `gw` (`[c_out, c_in, kh, kw]`), from the input
/// `x` and the output gradient `gy`, summed over the batch.
///
/// The product contracts over output positions, the contiguous axis of both the patch
/// matrix and `gy`; `gemm` then packs one of them with a strided gather (half its rate at
/// 64 channels). So `gy` is transposed first (positions × channels, a tenth of the patch
/// matrix's size at 3×3 kernels) and the product is accumulated as `gwᵀ`, transposed once
/// at the end: 1.2–2× faster products at ResNet-18's shapes.
pub(crate) fn backward_weight(g: &Geometry, x: &[f32], gy: &[f32], gw: &mut [MaybeUninit<f32>]) {
    if winograd::applies(g) {
        winograd::backward_weight(g, x, gy, gw);
        return;
    }
    let plan = Plan::new(g);
    let (k, p, in_len, out_len) = (g.k(), g.p(), g.input_len(), g.output_len());
    let par = plan.parallelism;
    let chunks = g.batch.div_ceil(plan.images);
    // `gwᵀ` (`[k][c_out]`) summed over the chunks.
    let sum = sum_over_chunks(
        chunks,
        plan.chunks_in_parallel,
        k * g.c_out,
        |chunk, acc, accumulate| {
            let start = chunk * plan.images;
            let images = plan.images.min(g.batch - start);
            let cols = images * p;
            let xc = &x[start * in_len..][..images * in_len];
            let gyc = &gy[start * out_len..][..images * out_len];
            let direct_rhs = g.is_pointwise() && images == 1;
            let patches = if direct_rhs { 0 } else { k * cols };
            with_scratch(patches, g.c_out * cols, |col, gy_t| {
                let rhs = if direct_rhs {
                    View::transposed(xc, p)
                } else {
                    let mut plane = vec![0.0; g.padded_len()];
                    for j in 0..images {
                        let image = &xc[j * in_len..][..in_len];
                        im2col(g, image, col, cols, j * p, &mut plane);
                    }
                    View::transposed(col, cols)
                };
                for (image, t) in gyc
                    .chunks_exact(out_len)
                    .zip(gy_t.chunks_exact_mut(out_len))
                {
                    transpose(image, g.c_out, p, as_slots(t));
                }
                let lhs = View::transposed(gy_t, g.c_out);
                matmul(
                    (g.c_out, k, cols),
                    (acc, Store::Columns),
                    accumulate,
                    lhs,
                    rhs,
                    par,
                );
            });
        },
    );
    transpose(&sum, k, g.c_out, gw);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, loop by loop.
    fn naive_forward(g: &Geometry, x: &[f32], w: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; g.batch * g.output_len()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for oy in 0..g.oh {
                    for ox in 0..g.ow {
                        let mut s = 0.0f64;
                        for ci in 0..g.c_in {
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let iy = (oy * g.stride[0] + ki * g.dilation[0]) as isize
                                        - g.pad[0] as isize;
                                    let ix = (ox * g.stride[1] + kj * g.dilation[1]) as isize
                                        - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = w[((co * g.c_in + ci) * g.kh + ki) * g.kw + kj];
                                    s += f64::from(xv) * f64::from(wv);
                                }
                            }
                        }
                        y[((b * g.c_out + co) * g.oh + oy) * g.ow + ox] = s as f32;
                    }
                }
            }
        }
        y
    }

    use super::super::test_values as values;

    fn geometry(
        batch: usize,
        c: [usize; 2],
        hw: [usize; 2],
        k: [usize; 2],
        s: usize,
        p: usize,
    ) -> Geometry {
        let (h, w) = (hw[0], hw[1]);
        Geometry {
            batch,
            c_in: c[0],
            h,
            w,
            c_out: c[1],
            kh: k[0],
            kw: k[1],
            stride: [s, s],
            pad: [p, p],
            dilation: [1, 1],
            oh: (h + 2 * p - k[0]) / s + 1,
            ow: (w + 2 * p - k[1]) / s + 1,
        }
    }

    /// The largest relative difference; infinite where `a` holds a NaN (a value the kernel
    /// never wrote: outputs start as NaN).
    fn close(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .map(|d| if d.is_nan() { f32::INFINITY } else { d })
            .fold(0.0, f32::max)
    }

    #[test]
    fn forward_matches_the_definition() {
        for g in [
            geometry(3, [4, 5], [7, 6], [3, 3], 1, 1),
            geometry(5, [3, 8], [9, 9], [3, 3], 2, 1),
            geometry(2, [6, 4], [5, 5], [1, 1], 1, 0),
            geometry(4, [6, 4], [6, 6], [1, 1], 2, 0),
            geometry(2, [3, 4], [11, 10], [7, 7], 2, 3),
            geometry(64, [2, 3], [2, 2], [3, 3], 1, 1),
            // Channels-last patches (16 input channels or more, 64 positions or more).
            geometry(3, [16, 5], [9, 8], [3, 3], 1, 1),
            geometry(2, [17, 4], [17, 17], [3, 3], 2, 1),
            geometry(2, [16, 3], [19, 18], [7, 7], 2, 3),
            geometry(40, [16, 3], [8, 8], [3, 3], 1, 1),
            // Winograd (3×3, stride 1, 16 channels or more on both sides, 16 positions or
            // more): odd and even sizes, chunks of many images, maps of 4×4 and 3×6 (tiles
            // overhanging the map by one to three rows or columns), weights of several
            // channel blocks.
            geometry(3, [16, 17], [9, 8], [3, 3], 1, 1),
            geometry(2, [18, 20], [7, 11], [3, 3], 1, 1),
            geometry(2, [16, 16], [8, 9], [3, 3], 1, 1),
            geometry(40, [16, 16], [8, 8], [3, 3], 1, 1),
            geometry(5, [36, 33], [4, 4], [3, 3], 1, 1),
            geometry(3, [16, 16], [3, 6], [3, 3], 1, 1),
            Geometry {
                dilation: [2, 3],
                oh: 10,
                ow: 8,
                ..geometry(2, [16, 3], [10, 10], [3, 3], 1, 2)
            },
        ] {
            let x = values(g.batch * g.input_len(), 1);
            let w = values(g.c_out * g.k(), 2);
            let mut y = vec![f32::NAN; g.batch * g.output_len()];
            forward(&g, &x, &w, as_slots(&mut y));
            let d = close(&y, &naive_forward(&g, &x, &w));
            // Winograd's F(4×4, 3×3) rounds a few times more than a direct sum (its module
            // docs): 1–2e-5 of the scale here, where a wrong tap or transform is off by O(1).
            let tolerance = if winograd::applies(&g) { 5e-5 } else { 1e-5 };
            assert!(d < tolerance, "{g:?}: {d}");
        }
    }

    /// The patch matrix by its definition: row `(ci, ki, kj)`, column `(oy, ox)` holds the
    /// input value under that kernel tap, or zero in the padding.
    fn naive_patches(g: &Geometry, image: &[f32]) -> Vec<f32> {
        let mut col = vec![0.0; g.k() * g.p()];
        for ci in 0..g.c_in {
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let r = (ci * g.kh + ki) * g.kw + kj;
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let iy = (oy * g.stride[0] + ki * g.dilation[0]) as isize
                                - g.pad[0] as isize;
                            let ix = (ox * g.stride[1] + kj * g.dilation[1]) as isize
                                - g.pad[1] as isize;
                            if (0..g.h as isize).contains(&iy) && (0..g.w as isize).contains(&ix) {
                                col[r * g.p() + oy * g.ow + ox] =
                                    image[(ci * g.h + iy as usize) * g.w + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn transposes_match_the_definition() {
        // Whole 4×4 blocks, ragged edges on either side, a strided source.
        for (rows, cols, stride) in [(4, 4, 4), (8, 12, 12), (5, 7, 7), (3, 9, 11), (13, 2, 5)] {
            let src = values(rows * stride, 6);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose_strided(&src, stride, (rows, cols), as_slots(&mut dst));
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * stride + c],
                        "{rows}×{cols} at {r},{c}"
                    );
                }
            }
        }
    }

    #[test]
    fn patches_match_the_definition() {
        // The fixed-width copies (ResNet's widths at strides 1 and 2) and the general loops
        // (other widths, stride 3), with padding, trailing padding, dilation and kernels
        // larger than the image.
        let mut cases = vec![
            geometry(1, [2, 1], [4, 4], [3, 3], 1, 1),
            geometry(1, [2, 1], [8, 8], [3, 3], 2, 1),
            geometry(1, [2, 1], [7, 7], [3, 3], 1, 1),
            geometry(1, [2, 1], [32, 32], [3, 3], 2, 1),
            geometry(1, [2, 1], [56, 56], [1, 1], 2, 0),
            geometry(1, [3, 1], [11, 10], [7, 7], 2, 3),
            geometry(1, [2, 1], [10, 9], [3, 3], 3, 1),
            geometry(1, [2, 1], [5, 6], [1, 1], 1, 0),
            geometry(1, [1, 1], [2, 2], [5, 3], 1, 4),
        ];
        cases.push(Geometry {
            pad: [2, 0],
            dilation: [1, 2],
            ow: 4,
            ..geometry(1, [2, 1], [6, 8], [3, 3], 1, 0)
        });
        for g in cases {
            let image = values(g.input_len(), 9);
            // Two images' columns side by side: the second lands at its offset and leaves
            // the first's columns alone.
            let (p, ld) = (g.p(), 2 * g.p() + 1);
            let mut col = vec![f32::NAN; g.k() * ld];
            let mut plane = vec![0.0; g.padded_len()];
            im2col(&g, &image, &mut col, ld, p + 1, &mut plane);
            im2col(&g, &image, &mut col, ld, 0, &mut plane);
            let expected = naive_patches(&g, &image);
            for r in 0..g.k() {
                let row = &col[r * ld..][..ld];
                let want = &expected[r * p..][..p];
                assert_eq!(&row[..p], want, "{g:?}: row {r}");
                assert!(row[p].is_nan(), "{g:?}: row {r} spilled");
                assert_eq!(&row[p + 1..], want, "{g:?}: row {r} at its offset");
            }
        }
    }

    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass() {
        // <conv(x, w), gy> = <x, gx> = <w, gw> for every x, w, gy: the defining identity of
        // both gradients of a bilinear map.
        for g in [
            geometry(3, [4, 5], [7, 6], [3, 3], 1, 1),
            geometry(5, [3, 8], [9, 9], [3, 3], 2, 1),
            geometry(2, [6, 4], [5, 5], [1, 1], 1, 0),
            geometry(4, [6, 4], [6, 6], [1, 1], 2, 0),
            geometry(40, [2, 3], [3, 3], [3, 3], 1, 1),
            geometry(2, [3, 2], [6, 5], [3, 3], 1, 3),
            geometry(2, [3, 2], [6, 5], [5, 3], 1, 0),
            // Channels-last forward passes, for the input gradient's too.
            geometry(3, [16, 18], [9, 8], [3, 3], 1, 1),
            geometry(2, [18, 16], [17, 17], [3, 3], 2, 1),
            // Winograd forward passes (the input gradient's too), on maps down to 4×4 and
            // with several blocks of input and output channels.
            geometry(40, [16, 16], [8, 8], [3, 3], 1, 1),
            geometry(2, [17, 20], [7, 11], [3, 3], 1, 1),
            geometry(5, [36, 33], [4, 4], [3, 3], 1, 1),
            geometry(3, [20, 40], [3, 6], [3, 3], 1, 1),
            // Tiles overhanging by three rows and columns.
            geometry(2, [16, 18], [9, 9], [3, 3], 1, 1),
        ] {
            let x = values(g.batch * g.input_len(), 3);
            let w = values(g.c_out * g.k(), 4);
            let gy = values(g.batch * g.output_len(), 5);
            let y = naive_forward(&g, &x, &w);
            let mut gx = vec![f32::NAN; x.len()];
            let mut gw = vec![f32::NAN; w.len()];
            backward_input(&g, &w, &gy, as_slots(&mut gx));
            backward_weight(&g, &x, &gy, as_slots(&mut gw));
            let dot = |a: &[f32], b: &[f32]| -> f64 {
                a.iter()
                    .zip(b)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum()
            };
            let reference = dot(&y, &gy);
            let scale = 1.0 + reference.abs();
            assert!(
                (dot(&x, &gx) - reference).abs() / scale < 1e-4,
                "{g:?}: input"
            );
            assert!(
                (dot(&w, &gw) - reference).abs() / scale < 1e-4,
                "{g:?}: weight"
            );
        }
    }
}
