//! 3×3 stride-1 convolutions by Winograd's minimal filtering, F(4×4, 3×3).
//!
//! Each 4×4 block of outputs ("tile") of one channel is `Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A`,
//! with `d` the 6×6 input patch under the tile and `g` the 3×3 kernel: 36 multiplications
//! per tile and input channel instead of the 144 of the direct form. Written as 36 matrix
//! products (one per position `e` of the 6×6 transformed tile), each
//! `M_e [tiles × c_out] = V_e [tiles × c_in] · U_e [c_in × c_out]`, the convolution costs
//! 4× fewer multiply-adds than im2col's single product, and its transformed input is 2.25×
//! the input where im2col's patch matrix is 9×.
//!
//! The transforms interpolate at 0, 1, −1, 2, −½ and ∞: `Bᵀ` and `Aᵀ` hold only dyadic
//! values (exact in binary, so they round only their sums), and of the point sets tried this
//! one rounds least — the common 0, ±1, ±2 rounds about 3× more at 512 channels, and ±½ in
//! place of ±2 2× more (float32 against the float64 direct form, random ResNet-like layers).
//! Its results differ from the direct form's by about 1e-5 of the output's scale, where
//! F(2×2, 3×3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
//! differs by about 2e-6: a few roundings more, for 1.8× fewer multiplications.
//!
//! Everything runs channels-last, so that both transforms are vector operations over whole
//! channel rows (a tile row of a small map is only 1–8 tiles wide): each image is first
//! transposed into a zero-padded `[y][x][c_in]` plane, `V_e` is stored `[tiles][c_in]`, and
//! the products compute `M_eᵀ = U_eᵀ · V_eᵀ` into `[tiles][c_out]` (`U_e` stored
//! `[c_in][c_out]`: `gemm`'s fastest layout, both operands and the destination contiguous
//! along their long side), transformed into channels-last outputs and transposed back.

use std::cell::Cell;
use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::blocks::{
    as_slots, matmul, matmul_into, sum_over_chunks, transpose, transpose_strided, with_scratch,
    Geometry, Store, View,
};

/// `fn $name(args)`: runs `$body` (an `#[inline(always)]` function) compiled for AVX-512 when
/// this CPU has it, as it is otherwise.
macro_rules! widest {
    ($name:ident => $body:ident ($($arg:ident: $ty:ty),* $(,)?)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY: AVX-512F was detected on this CPU, all `wide` assumes; its body is
                // safe Rust.
                return unsafe { wide($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

/// Channels (input and output) from which [`applies`] takes this path: the products have
/// `c_in` as depth and `c_out` as height, and narrower ones run far below `gemm`'s rate.
pub const MIN_CHANNELS: usize = 16;

/// Output positions per map from which [`applies`] takes this path. Measured with F(2×2, 3×3)
/// at batch 128: 4×4 maps at 512 channels took 24 ms this way against 34 ms through im2col
/// (forward; input gradient 28 against 38, weight gradient 23 against 42); 8×8 maps at 256
/// channels: 20 against 36 ms; 16×16 at 128: 24 against 35; 32×32 at 64: 31 against 49.
/// F(4×4, 3×3) runs the larger maps faster still and 4×4 maps (one tile per image) as fast
/// forward, its weight gradient there slower (docs/performance.md, change 14).
pub const MIN_POSITIONS: usize = 16;

/// Tiles per chunk of images: the width of the 36 products.
const TILES_PER_CHUNK: usize = 512;

/// Outputs per tile side.
const M: usize = 4;

/// Inputs per tile side: a tile reads `M + 2` rows and columns.
const N: usize = M + 2;

/// Positions of a transformed tile.
const E: usize = N * N;

/// Values between the starts of consecutive planes `V_e` (or `M_e`, `Ŷ_e`) of `t` tiles of
/// `c` channels: the planes' `t · c` values and one cache line more. A transform writes (or
/// reads) a tile's `E` values one per plane; at a whole number of 4 KiB apart, as `t · c`
/// usually is, those 36 lines all fall into one cache set, which holds 12–16.
fn plane_stride(c: usize, t: usize) -> usize {
    t * c + 16
}

/// Whether [`forward`] computes `g`: a 3×3 kernel, stride 1, dilation 1, padding 1, at
/// least [`MIN_CHANNELS`] channels on both sides and [`MIN_POSITIONS`] output positions.
pub fn applies(g: &Geometry) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.pad == [1, 1]
        && g.oh == g.h
        && g.ow == g.w
        && g.c_in >= MIN_CHANNELS
        && g.c_out >= MIN_CHANNELS
        && g.oh * g.ow >= MIN_POSITIONS
}

/// `y = conv(x, w)` for a geometry [`applies`] accepts; same layouts as
/// the im2col forward pass (`kernel.rs`).
pub fn forward(g: &Geometry, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) {
    forward_transformed(g, x, &transformed_weight(w, g.c_out, g.c_in), y);
}

/// [`forward`] with the weight already transformed ([`transformed_weight`]), for callers
/// that run one weight many times.
pub fn forward_transformed(g: &Geometry, x: &[f32], u: &[f32], y: &mut [MaybeUninit<f32>]) {
    debug_assert!(applies(g));
    let (c_in, c_out) = (g.c_in, g.c_out);
    let tiles = Tiles::new(g);
    let Plan {
        images,
        chunks_in_parallel,
        parallelism,
    } = Plan::new(g, &tiles);
    let (in_len, out_len) = (g.input_len(), g.output_len());
    let chunk = |xc: &[f32], yc: &mut [MaybeUninit<f32>]| {
        let n = yc.len() / out_len;
        let t = n * tiles.per_image;
        let (vs, ms) = (plane_stride(c_in, t), plane_stride(c_out, t));
        with_scratch(E * vs, E * ms, |v, m| {
            let layout = Layout::input(g, &tiles);
            for (j, image) in xc.chunks_exact(in_len).enumerate() {
                with_plane(&layout, image, |plane| {
                    transform_input(g, &tiles, plane, v, vs, j * tiles.per_image)
                });
            }
            for e in 0..E {
                matmul(
                    (c_out, t, c_in),
                    (&mut m[e * ms..][..c_out * t], Store::Columns),
                    false,
                    View::transposed(&u[e * c_in * c_out..][..c_in * c_out], c_out),
                    View::transposed(&v[e * vs..][..c_in * t], c_in),
                    parallelism,
                );
            }
            let mut channels_last = vec![0.0f32; out_len];
            for (j, out) in yc.chunks_exact_mut(out_len).enumerate() {
                transform_output(g, &tiles, m, ms, j * tiles.per_image, &mut channels_last);
                transpose(&channels_last, g.oh * g.ow, c_out, out);
            }
        });
    };
    let x = &x[..g.batch * in_len];
    let y = &mut y[..g.batch * out_len];
    if chunks_in_parallel {
        x.par_chunks(images * in_len)
            .zip(y.par_chunks_mut(images * out_len))
            .for_each(|(xc, yc)| chunk(xc, yc));
    } else {
        x.chunks(images * in_len)
            .zip(y.chunks_mut(images * out_len))
            .for_each(|(xc, yc)| chunk(xc, yc));
    }
}

/// The weight gradient `gw` (`[c_out, c_in, 3, 3]`) of a geometry [`applies`] accepts, from
/// the input `x` and the output gradient `gy`, summed over the batch.
///
/// The adjoint of [`forward`]'s algorithm: with `Ŷ = A gy Aᵀ` per 4×4 tile of `gy` (6×6)
/// and `V = Bᵀ d B` as in the forward pass, `∂L/∂g = Gᵀ (Σ_tiles Ŷ ⊙ V) G`: 36 products
/// `[c_out × tiles] · [tiles × c_in]`, 4× fewer multiply-adds than im2col's product. Tiles
/// overhanging the map read zeros of `gy`.
pub(crate) fn backward_weight(g: &Geometry, x: &[f32], gy: &[f32], gw: &mut [MaybeUninit<f32>]) {
    debug_assert!(applies(g));
    if g.batch == 0 {
        // No images, no terms (callers route empty tensors elsewhere; the plans below
        // assume at least one image).
        for v in gw.iter_mut() {
            v.write(0.0);
        }
        return;
    }
    let (c_in, c_out) = (g.c_in, g.c_out);
    let tiles = Tiles::new(g);
    let plan = Plan::new(g, &tiles);
    let m = if products_in_parallel(g, &plan) {
        sum_by_products(g, &tiles, x, gy)
    } else {
        sum_by_chunks(g, &tiles, &plan, x, gy)
    };
    // gw = Gᵀ M G per (c_out, c_in).
    // Blocks of 16 output channels in parallel: each reads whole lines of `m` (the 16
    // channels of one `(e, ci)`), where one kernel at a time read 16 values a plane apart
    // (a third of a 4×4-map layer's weight gradient at 512 channels).
    gw.par_chunks_mut(CHANNEL_BLOCK * c_in * 9)
        .enumerate()
        .for_each(|(b, gw_block)| {
            let first = b * CHANNEL_BLOCK;
            let channels = gw_block.len() / (c_in * 9);
            for ci in 0..c_in {
                let mut at = [[0.0f32; CHANNEL_BLOCK]; E];
                for (e, row) in at.iter_mut().enumerate() {
                    let src = &m[(e * c_in + ci) * c_out + first..][..channels];
                    if channels == CHANNEL_BLOCK {
                        // A fixed-length copy: a call to `memcpy` per row otherwise.
                        row.copy_from_slice(&src[..CHANNEL_BLOCK]);
                    } else {
                        row[..channels].copy_from_slice(src);
                    }
                }
                for co in 0..channels {
                    let kernel = &mut gw_block[(co * c_in + ci) * 9..][..9];
                    let at = |e: usize| at[e][co];
                    // Gᵀ M: three rows of six, column by column; then each row through
                    // Gᵀ again.
                    let columns: [[f32; 3]; N] = std::array::from_fn(|c| {
                        weight_gradient_rows(std::array::from_fn(|r| at(r * N + c)))
                    });
                    let gm: [[f32; N]; 3] =
                        std::array::from_fn(|r| std::array::from_fn(|c| columns[c][r]));
                    for (ky, row) in gm.iter().enumerate() {
                        for (kx, v) in weight_gradient_rows(*row).into_iter().enumerate() {
                            kernel[ky * 3 + kx].write(v);
                        }
                    }
                }
            }
        });
}

/// Weights of at least this many values (`c_in · c_out`) have [`backward_weight`] sum its
/// chunks one after another, each chunk's 36 products spread over the threads, instead of
/// one accumulator per thread: at 512 channels those are 38 MB each, written, then added
/// together, for products only as deep as a thread's share of the batch.
const PRODUCTS_IN_PARALLEL_FROM: usize = 512 * 512;

/// Whether [`backward_weight`] takes [`sum_by_products`].
fn products_in_parallel(g: &Geometry, plan: &Plan) -> bool {
    plan.chunks_in_parallel
        && rayon::current_num_threads() > 1
        && g.c_in * g.c_out >= PRODUCTS_IN_PARALLEL_FROM
}

/// `V` and `Ŷ` of images `first..first + images` into `v` and `yhat` (plane strides `vs`,
/// `ys`).
#[allow(clippy::too_many_arguments)]
fn transform_chunk(
    g: &Geometry,
    tiles: &Tiles,
    (x, gy): (&[f32], &[f32]),
    (first, images): (usize, usize),
    (v, vs): (&mut [f32], usize),
    (yhat, ys): (&mut [f32], usize),
) {
    let (in_len, out_len) = (g.input_len(), g.output_len());
    let input = Layout::input(g, tiles);
    let gradient = Layout::gradient(g, tiles);
    for j in 0..images {
        let at = j * tiles.per_image;
        let image = first + j;
        with_plane(&input, &x[image * in_len..][..in_len], |plane| {
            transform_input(g, tiles, plane, v, vs, at)
        });
        with_plane(&gradient, &gy[image * out_len..][..out_len], |plane| {
            transform_gradient(g, tiles, plane, yhat, ys, at)
        });
    }
}

/// `Σ Ŷ ⊙ V` over the batch, `[e][c_in][c_out]`: chunks of images spread over the threads,
/// each thread summing its chunks' products into an accumulator of its own, the
/// accumulators added at the end.
fn sum_by_chunks(g: &Geometry, tiles: &Tiles, plan: &Plan, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (c_in, c_out) = (g.c_in, g.c_out);
    let chunks = g.batch.div_ceil(plan.images);
    sum_over_chunks(
        chunks,
        plan.chunks_in_parallel,
        E * c_in * c_out,
        |chunk, acc, accumulate| {
            let start = chunk * plan.images;
            let images = plan.images.min(g.batch - start);
            let t = images * tiles.per_image;
            let (vs, ys) = (plane_stride(c_in, t), plane_stride(c_out, t));
            with_scratch(E * vs, E * ys, |v, yhat| {
                transform_chunk(g, tiles, (x, gy), (start, images), (v, vs), (yhat, ys));
                for e in 0..E {
                    matmul(
                        (c_out, c_in, t),
                        (&mut acc[e * c_in * c_out..][..c_in * c_out], Store::Columns),
                        accumulate,
                        View::transposed(&yhat[e * ys..][..c_out * t], c_out),
                        View::rows(&v[e * vs..][..c_in * t], c_in),
                        plan.parallelism,
                    );
                }
            });
        },
    )
}

/// [`sum_by_chunks`]'s sum with the chunks in turn, each transformed by the calling thread
/// and its 36 products `M_e += Ŷ_eᵀ V_e` spread over the threads: one accumulator, written
/// in place, and products as deep as a chunk.
fn sum_by_products(g: &Geometry, tiles: &Tiles, x: &[f32], gy: &[f32]) -> Vec<f32> {
    let (c_in, c_out) = (g.c_in, g.c_out);
    // More threads than products: each product split among its share of them.
    let threads = rayon::current_num_threads();
    let inner = if threads > E {
        Parallelism::Rayon(threads.div_ceil(E))
    } else {
        Parallelism::None
    };
    let plane = c_in * c_out;
    let images = TILES_PER_CHUNK.div_ceil(tiles.per_image).clamp(1, g.batch);
    let mut m: Vec<f32> = Vec::with_capacity(E * plane);
    for (n, first) in (0..g.batch).step_by(images).enumerate() {
        let images = images.min(g.batch - first);
        let t = images * tiles.per_image;
        let (vs, ys) = (plane_stride(c_in, t), plane_stride(c_out, t));
        with_scratch(E * vs, E * ys, |v, yhat| {
            transform_chunk(g, tiles, (x, gy), (first, images), (v, vs), (yhat, ys));
            let (v, yhat) = (&*v, &*yhat);
            let lhs = |e: usize| View::transposed(&yhat[e * ys..][..c_out * t], c_out);
            let rhs = |e: usize| View::rows(&v[e * vs..][..c_in * t], c_in);
            if n == 0 {
                m.spare_capacity_mut()[..E * plane]
                    .par_chunks_mut(plane)
                    .enumerate()
                    .for_each(|(e, m_e)| {
                        let dst = (m_e, Store::Columns);
                        matmul_into((c_out, c_in, t), dst, lhs(e), rhs(e), inner);
                    });
                // SAFETY: the products wrote every value of the `E` planes.
                unsafe { m.set_len(E * plane) };
            } else {
                m.par_chunks_mut(plane).enumerate().for_each(|(e, m_e)| {
                    let dst = (m_e, Store::Columns);
                    matmul((c_out, c_in, t), dst, true, lhs(e), rhs(e), inner);
                });
            }
        });
    }
    m
}

/// Channels per parallel block of [`transformed_weight`] (input channels) and of
/// [`backward_weight`]'s final transform (output channels).
const CHANNEL_BLOCK: usize = 16;

/// Images per chunk, and whether chunks run on separate threads (each product on one) or one
/// after another (each product on all threads).
struct Plan {
    images: usize,
    chunks_in_parallel: bool,
    parallelism: Parallelism,
}

impl Plan {
    fn new(g: &Geometry, tiles: &Tiles) -> Self {
        let threads = rayon::current_num_threads();
        let by_size = TILES_PER_CHUNK.div_ceil(tiles.per_image);
        let by_balance = g.batch.div_ceil(2 * threads);
        let images = by_size.min(by_balance).clamp(1, g.batch);
        let chunks_in_parallel = g.batch.div_ceil(images) >= threads || threads == 1;
        let parallelism = if chunks_in_parallel {
            Parallelism::None
        } else {
            Parallelism::Rayon(threads)
        };
        Self {
            images,
            chunks_in_parallel,
            parallelism,
        }
    }
}

/// The tile grid of one image.
struct Tiles {
    /// Tile rows and columns (the last ones may overhang the output by up to `M − 1`).
    rows: usize,
    cols: usize,
    per_image: usize,
}

impl Tiles {
    fn new(g: &Geometry) -> Self {
        let (rows, cols) = (g.oh.div_ceil(M), g.ow.div_ceil(M));
        Self {
            rows,
            cols,
            per_image: rows * cols,
        }
    }

    /// Rows and columns of the padded plane the tiles read: a border of one, and more rows
    /// or columns of zeros where the last tile overhangs.
    fn plane(&self) -> (usize, usize) {
        (M * self.rows + 2, M * self.cols + 2)
    }
}

thread_local! {
    /// Each thread's padded channels-last plane, reused across calls (only its border is
    /// rewritten each time).
    static PLANE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A map of `channels × height × width` values (NCHW) as laid out channels-last in a
/// zero-padded plane: pixel `(y, x)` at plane position `(y + border, x + border)`.
struct Layout {
    channels: usize,
    height: usize,
    width: usize,
    border: usize,
    /// Plane rows and columns.
    rows: usize,
    cols: usize,
}

impl Layout {
    /// The input as the tiles read it: a border of 1, and more rows or columns of zeros
    /// where the last tile overhangs.
    fn input(g: &Geometry, tiles: &Tiles) -> Self {
        let (rows, cols) = tiles.plane();
        Self {
            channels: g.c_in,
            height: g.h,
            width: g.w,
            border: 1,
            rows,
            cols,
        }
    }

    /// The output gradient per tile: no border, zeros where the last tile overhangs.
    fn gradient(g: &Geometry, tiles: &Tiles) -> Self {
        Self {
            channels: g.c_out,
            height: g.oh,
            width: g.ow,
            border: 0,
            rows: M * tiles.rows,
            cols: M * tiles.cols,
        }
    }
}

/// Runs `f` on `image` laid out as `layout` says, in this thread's reused buffer (only the
/// zeros around the map are rewritten each time).
fn with_plane<R>(layout: &Layout, image: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    let Layout {
        channels: c,
        height: h,
        width: w,
        border: b,
        rows,
        cols,
    } = *layout;
    let mut plane = PLANE.take();
    plane.resize(rows * cols * c, 0.0);
    for y in 0..rows {
        let row = &mut plane[y * cols * c..][..cols * c];
        if y < b || y >= h + b {
            row.fill(0.0);
        } else {
            row[..b * c].fill(0.0);
            row[(w + b) * c..].fill(0.0);
            transpose_strided(
                &image[(y - b) * w..],
                h * w,
                (c, w),
                as_slots(&mut row[b * c..(w + b) * c]),
            );
        }
    }
    let out = f(&plane);
    PLANE.set(plane);
    out
}

/// `U_e = (G g Gᵀ)_e` for every kernel, stored `[e][c_in][c_out]` (`G`: the 6×3 kernel
/// transform at the points 0, 1, −1, 2, −½, ∞).
///
/// Blocks of `CHANNEL_BLOCK` input channels run in parallel, each first transposing its
/// kernels to output channels contiguous, then transforming 16 output channels at a time as
/// vectors, each result one contiguous run of `U_e`'s row (kernel by kernel, input channel
/// outermost, it read 9 values 18 KiB apart at 512 channels: 8 ms per call, a fifth of a
/// 4×4-map layer's forward pass; 16 channels gathered from their kernels: 3.7 ms, both with
/// F(2×2, 3×3)'s 16 positions).
pub fn transformed_weight(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let len = E * c_in * c_out;
    // Written in full below, not zeroed first (a `memset` of 38 MB at 512 channels).
    let mut u: Vec<f32> = Vec::with_capacity(len);
    // Each block's `E` row ranges, one per `e`: `[ci_local][co]` of `U_e`.
    let block_len = CHANNEL_BLOCK * c_out;
    let mut blocks: Vec<Vec<&mut [MaybeUninit<f32>]>> = (0..c_in.div_ceil(CHANNEL_BLOCK))
        .map(|_| Vec::with_capacity(E))
        .collect();
    for u_e in u.spare_capacity_mut()[..len].chunks_mut(c_in * c_out) {
        for (block, rows) in blocks.iter_mut().zip(u_e.chunks_mut(block_len)) {
            block.push(rows);
        }
    }
    blocks
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut rows)| {
            let first = b * CHANNEL_BLOCK;
            let channels = rows[0].len() / c_out;
            // This block's taps, output channels contiguous: `[ci][tap][co]`.
            let taps = block_taps(w, c_in, c_out, first, channels);
            for (ci, kernels) in taps.chunks_exact(9 * c_out).enumerate() {
                for co in (0..c_out).step_by(LANES) {
                    let lanes = LANES.min(c_out - co);
                    // Tap `j` of the 16 output channels' kernels, `k[j][lane]`.
                    let mut k = [[0.0f32; LANES]; 9];
                    for (j, tap) in k.iter_mut().enumerate() {
                        let src = &kernels[j * c_out + co..][..lanes];
                        if lanes == LANES {
                            // A fixed-length copy: a call to `memcpy` per tap otherwise.
                            tap.copy_from_slice(&src[..LANES]);
                        } else {
                            tap[..lanes].copy_from_slice(src);
                        }
                    }
                    for (e, v) in transform_kernels(&k).iter().enumerate() {
                        let dst = &mut rows[e][ci * c_out + co..][..lanes];
                        if let Ok(dst) = <&mut [MaybeUninit<f32>; LANES]>::try_from(&mut *dst) {
                            // A fixed-length store: the loop below is a `memcpy` call
                            // (590 k of them at 512 channels, a sixth of the transform).
                            for (d, v) in dst.iter_mut().zip(v) {
                                d.write(*v);
                            }
                        } else {
                            for (d, v) in dst.iter_mut().zip(v) {
                                d.write(*v);
                            }
                        }
                    }
                }
            }
        });
    // SAFETY: the blocks cover all `len` slots (`E` row ranges each, one per `e`, of whole
    // rows), and each block wrote every output channel of each of its rows above.
    unsafe { u.set_len(len) };
    u
}

/// The kernels of input channels `first..first + channels`, output channels contiguous:
/// `[ci][tap][co]` (one transpose of the block's columns of `w`, written in full).
fn block_taps(w: &[f32], c_in: usize, c_out: usize, first: usize, channels: usize) -> Vec<f32> {
    let len = channels * 9 * c_out;
    let mut taps: Vec<f32> = Vec::with_capacity(len);
    transpose_strided(
        &w[first * 9..],
        c_in * 9,
        (c_out, channels * 9),
        &mut taps.spare_capacity_mut()[..len],
    );
    // SAFETY: the transpose wrote all `c_out × channels · 9` slots.
    unsafe { taps.set_len(len) };
    taps
}

/// Output channels [`transformed_weight`] transforms at once.
const LANES: usize = 16;

/// `G a` for a column `a` of three taps: the kernel transform (`G` is 6×3; it alone holds
/// values that are not dyadic, applied once per weight).
#[inline(always)]
fn kernel_rows([a0, a1, a2]: [f32; 3]) -> [f32; N] {
    [
        a0,
        -(a0 + a1 + a2) * (1.0 / 3.0),
        (a0 - a1 + a2) * (1.0 / 3.0),
        (a0 + 2.0 * a1 + 4.0 * a2) * (1.0 / 15.0),
        -(16.0 * a0 - 8.0 * a1 + 4.0 * a2) * (1.0 / 15.0),
        a2,
    ]
}

/// `Bᵀ d` for a column `d` of six inputs: the input transform.
#[inline(always)]
fn input_rows([d0, d1, d2, d3, d4, d5]: [f32; N]) -> [f32; N] {
    [
        d0 + 1.5 * d1 - 2.0 * d2 - 1.5 * d3 + d4,
        d4 - d1 - 2.5 * d2 - 0.5 * d3,
        d4 + d1 + 0.5 * d2 - 2.5 * d3,
        d4 - 0.5 * d1 - d2 + 0.5 * d3,
        d4 + 2.0 * d1 - d2 - 2.0 * d3,
        d5 + d1 + 1.5 * d2 - 2.0 * d3 - 1.5 * d4,
    ]
}

/// `Aᵀ m` for a column `m` of six products: the output transform.
#[inline(always)]
fn output_rows([m0, m1, m2, m3, m4, m5]: [f32; N]) -> [f32; M] {
    let (sum, difference) = (m1 + m2, m1 - m2);
    [
        m0 + sum + m3 + m4,
        difference + 2.0 * m3 - 0.5 * m4,
        sum + 4.0 * m3 + 0.25 * m4,
        difference + 8.0 * m3 - 0.125 * m4 + m5,
    ]
}

/// `A y` for a column `y` of four output gradients: the transposed output transform.
#[inline(always)]
fn gradient_rows([y0, y1, y2, y3]: [f32; M]) -> [f32; N] {
    [
        y0,
        y0 + y1 + y2 + y3,
        y0 - y1 + y2 - y3,
        y0 + 2.0 * y1 + 4.0 * y2 + 8.0 * y3,
        y0 - 0.5 * y1 + 0.25 * y2 - 0.125 * y3,
        y3,
    ]
}

/// `Gᵀ m` for a column `m` of six summed products: the transposed kernel transform.
#[inline(always)]
fn weight_gradient_rows([m0, m1, m2, m3, m4, m5]: [f32; N]) -> [f32; 3] {
    const THIRD: f32 = 1.0 / 3.0;
    const FIFTEENTH: f32 = 1.0 / 15.0;
    [
        m0 + (m2 - m1) * THIRD + (m3 - 16.0 * m4) * FIFTEENTH,
        -(m1 + m2) * THIRD + (2.0 * m3 + 8.0 * m4) * FIFTEENTH,
        (m2 - m1) * THIRD + (4.0 * m3 - 4.0 * m4) * FIFTEENTH + m5,
    ]
}

/// Lanes the transforms compute at once: one AVX-512 register.
const W: usize = 16;

/// `K` channel vectors of one transform's inputs or outputs: `base + i · stride` for
/// `i < K`, each `len` values long.
#[derive(Clone, Copy)]
struct Spaced {
    base: usize,
    stride: usize,
}

impl Spaced {
    fn new(base: usize, stride: usize) -> Self {
        Self { base, stride }
    }

    /// One past the last value of the `K` vectors of `len` values (`usize::MAX` where that
    /// overflows, which no slice holds).
    fn end<const K: usize>(self, len: usize) -> usize {
        (K - 1)
            .checked_mul(self.stride)
            .and_then(|span| span.checked_add(self.base))
            .and_then(|last| last.checked_add(len))
            .unwrap_or(usize::MAX)
    }
}

/// `dst[o][k] = f([src[0][k], …, src[I − 1][k]])[o]` for `k < len`, where `src[i]` starts at
/// `from[src.base + i · src.stride]` and `dst[o]` at `to[dst.base + o · dst.stride]`: one
/// transform applied across channel vectors, [`W`] lanes at a time through fixed-size
/// arrays the compiler keeps in registers.
///
/// The `dst` vectors must not overlap each other (checked: `len ≤ dst.stride`).
#[inline(always)]
fn combine<const I: usize, const O: usize>(
    (from, src): (&[f32], Spaced),
    (to, dst): (&mut [f32], Spaced),
    len: usize,
    f: impl Fn([f32; I]) -> [f32; O],
) {
    assert!(
        src.end::<I>(len) <= from.len() && dst.end::<O>(len) <= to.len() && len <= dst.stride,
        "transform vectors out of bounds"
    );
    let (from, to) = (from.as_ptr(), to.as_mut_ptr());
    let full = len / W * W;
    let mut k = 0;
    while k < full {
        let mut a = [[0.0f32; W]; I];
        for (i, a) in a.iter_mut().enumerate() {
            // SAFETY: `src.base + i · src.stride + k + W ≤ src.end(len) ≤ from.len()`
            // (asserted above; `k + W ≤ full ≤ len`).
            *a = unsafe {
                from.add(src.base + i * src.stride + k)
                    .cast::<[f32; W]>()
                    .read_unaligned()
            };
        }
        let mut r = [[0.0f32; W]; O];
        for l in 0..W {
            let mut x = [0.0f32; I];
            for (x, a) in x.iter_mut().zip(&a) {
                *x = a[l];
            }
            for (r, v) in r.iter_mut().zip(f(x)) {
                r[l] = v;
            }
        }
        for (o, r) in r.into_iter().enumerate() {
            // SAFETY: within `to` as above (`from` is a shared borrow, so no write reaches
            // it). `len ≤ stride` keeps the `O` vectors apart: each output lands where
            // `dst[o]` says.
            unsafe {
                to.add(dst.base + o * dst.stride + k)
                    .cast::<[f32; W]>()
                    .write_unaligned(r)
            };
        }
        k += W;
    }
    for k in full..len {
        let mut x = [0.0f32; I];
        for (i, x) in x.iter_mut().enumerate() {
            // SAFETY: `k < len`, bounds as above.
            *x = unsafe { *from.add(src.base + i * src.stride + k) };
        }
        for (o, v) in f(x).into_iter().enumerate() {
            // SAFETY: as above.
            unsafe { *to.add(dst.base + o * dst.stride + k) = v };
        }
    }
}

/// `G g Gᵀ` of [`LANES`] kernels (`k[tap][lane]`, taps row by row), as `[e][lane]`.
#[inline(always)]
fn transform_kernels(k: &[[f32; LANES]; 9]) -> [[f32; LANES]; E] {
    let mut u = [[0.0f32; LANES]; E];
    for l in 0..LANES {
        // G g: six rows of three, column by column; then each row through G again.
        let columns: [[f32; N]; 3] =
            std::array::from_fn(|c| kernel_rows([k[c][l], k[3 + c][l], k[6 + c][l]]));
        for r in 0..N {
            let row = kernel_rows([columns[0][r], columns[1][r], columns[2][r]]);
            for (c, v) in row.into_iter().enumerate() {
                u[r * N + c][l] = v;
            }
        }
    }
    u
}

// In the widest instructions this CPU has:
widest!(transform_input => transform_input_any(
    g: &Geometry,
    tiles: &Tiles,
    plane: &[f32],
    v: &mut [f32],
    stride: usize,
    first: usize
));

/// Writes `V_e = (Bᵀ d B)_e` of every tile of one image into `v` (`[e][t][c_in]`, planes `stride` apart, this
/// image's tiles from `first`), each value a vector over the input channels.
#[inline(always)]
fn transform_input_any(
    g: &Geometry,
    tiles: &Tiles,
    plane: &[f32],
    v: &mut [f32],
    stride: usize,
    first: usize,
) {
    let (_, pw) = tiles.plane();
    transform_tiles::<N>(tiles, (plane, pw), g.c_in, (v, stride, first), input_rows);
}

/// The 6×6 transform of every tile of one channels-last `plane` (`width` pixels a row, `c`
/// channels a pixel) whose tiles read `I × I` pixels (the input's 6×6 patches, the output
/// gradient's 4×4 tiles), by the row transform `rows` applied down the columns, then along
/// each of the six rows: value `e` of tile `first + k` at `out[e · stride + (first + k) · c..]`.
#[inline(always)]
fn transform_tiles<const I: usize>(
    tiles: &Tiles,
    (plane, width): (&[f32], usize),
    c: usize,
    (out, stride, first): (&mut [f32], usize, usize),
    rows: impl Fn([f32; I]) -> [f32; N] + Copy,
) {
    // Down the columns: row `i` of the tile's N × I values (each a channel vector) at
    // `down[i · I · c..]`.
    let mut down = vec![0.0f32; N * I * c];
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let patch = Spaced::new((M * ty * width + M * tx) * c, width * c);
            combine(
                (plane, patch),
                (&mut down, Spaced::new(0, I * c)),
                I * c,
                rows,
            );
            // Along each row: values 6i, …, 6i + 5 of this tile (`stride` apart).
            let tile = first + ty * tiles.cols + tx;
            for i in 0..N {
                let row = Spaced::new(i * I * c, c);
                let dst = Spaced::new(i * N * stride + tile * c, stride);
                combine((&down, row), (&mut *out, dst), c, rows);
            }
        }
    }
}

// In the widest instructions this CPU has:
widest!(transform_gradient => transform_gradient_any(
    g: &Geometry,
    tiles: &Tiles,
    plane: &[f32],
    yhat: &mut [f32],
    stride: usize,
    first: usize
));

/// Writes `Ŷ_e = (A gy Aᵀ)_e` of every 4×4 tile of one image's output gradient
/// (channels-last `plane` of [`Layout::gradient`]) into `yhat` (`[e][t][c_out]`, planes `stride` apart, this
/// image's tiles from `first`).
#[inline(always)]
fn transform_gradient_any(
    g: &Geometry,
    tiles: &Tiles,
    plane: &[f32],
    yhat: &mut [f32],
    stride: usize,
    first: usize,
) {
    let width = M * tiles.cols;
    transform_tiles::<M>(
        tiles,
        (plane, width),
        g.c_out,
        (yhat, stride, first),
        gradient_rows,
    );
}

// In the widest instructions this CPU has:
widest!(transform_output => transform_output_any(
    g: &Geometry,
    tiles: &Tiles,
    m: &[f32],
    stride: usize,
    first: usize,
    out: &mut [f32]
));

/// Writes one image's outputs, channels-last (`[oy][ox][c_out]`), from the products `m`
/// (`[e][t][c_out]`, planes `stride` apart, this image's tiles from `first`): `Y = Aᵀ M A` per tile, cropped to
/// the map. (Transposing each tile row straight into the channels' planes instead was
/// slower: at 32×32 the planes are 4 KiB apart, so a tile row's stores all fall into one
/// cache set; the separate transpose writes each plane front to back.)
#[inline(always)]
fn transform_output_any(
    g: &Geometry,
    tiles: &Tiles,
    m: &[f32],
    stride: usize,
    first: usize,
    out: &mut [f32],
) {
    let c = g.c_out;
    // Aᵀ M: four rows of six channel vectors, `s[(i · N + j) · c..]`.
    let mut s = vec![0.0f32; M * N * c];
    // One output row of a tile overhanging the map on the right.
    let mut cropped = vec![0.0f32; M * c];
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let tile = first + ty * tiles.cols + tx;
            for j in 0..N {
                let column = Spaced::new(j * stride + tile * c, N * stride);
                combine(
                    (m, column),
                    (&mut s, Spaced::new(j * c, N * c)),
                    c,
                    output_rows,
                );
            }
            // · A along j, row by row of the tile.
            let (ox, columns) = (M * tx, M.min(g.ow - M * tx));
            for i in 0..M.min(g.oh - M * ty) {
                let row = (&s[..], Spaced::new(i * N * c, c));
                let at = ((M * ty + i) * g.ow + ox) * c;
                if columns == M {
                    combine(row, (&mut *out, Spaced::new(at, c)), c, output_rows);
                } else {
                    combine(row, (&mut cropped, Spaced::new(0, c)), c, output_rows);
                    out[at..][..columns * c].copy_from_slice(&cropped[..columns * c]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::test_values as values;

    #[test]
    fn both_ways_of_summing_the_weight_gradient_agree() {
        // One chunk and several (33×33 maps: 81 tiles per image, 7 images per chunk), a
        // short last chunk, 4×4 maps of one tile per image, uneven channel counts.
        for (batch, [c_in, c_out], [h, w]) in [
            (9, [16, 20], [33, 33]),
            (15, [17, 16], [33, 30]),
            (3, [16, 24], [4, 4]),
            (2, [20, 16], [9, 7]),
        ] {
            let g = Geometry {
                batch,
                c_in,
                h,
                w,
                c_out,
                kh: 3,
                kw: 3,
                stride: [1, 1],
                pad: [1, 1],
                dilation: [1, 1],
                oh: h,
                ow: w,
            };
            assert!(applies(&g));
            let tiles = Tiles::new(&g);
            let x = values(batch * g.input_len(), 7);
            let gy = values(batch * g.output_len(), 8);
            let by_products = sum_by_products(&g, &tiles, &x, &gy);
            for in_parallel in [false, true] {
                let plan = Plan {
                    images: 4,
                    chunks_in_parallel: in_parallel,
                    parallelism: Parallelism::None,
                };
                let by_chunks = sum_by_chunks(&g, &tiles, &plan, &x, &gy);
                assert_eq!(by_chunks.len(), by_products.len());
                // Sums of hundreds of terms in another order: equal to a few roundings of
                // the largest value (a chunk summed twice or left out is off by O(1)).
                let scale = 1.0 + by_products.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                for (i, (a, b)) in by_chunks.iter().zip(&by_products).enumerate() {
                    let d = (a - b).abs() / scale;
                    assert!(d < 1e-5, "{g:?}, value {i}: {a} against {b}");
                }
            }
        }
    }

    /// The row transforms as matrices: column `k` is the image of the `k`-th unit vector.
    fn matrix<const I: usize, const O: usize>(f: fn([f32; I]) -> [f32; O]) -> [[f64; I]; O] {
        let mut m = [[0.0; I]; O];
        for k in 0..I {
            let mut unit = [0.0f32; I];
            unit[k] = 1.0;
            for (row, v) in m.iter_mut().zip(f(unit)) {
                row[k] = f64::from(v);
            }
        }
        m
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // the identity's indices, as written in the comment
    fn the_transforms_compute_a_correlation_and_its_adjoints() {
        let (bt, g, at) = (matrix(input_rows), matrix(kernel_rows), matrix(output_rows));
        // Aᵀ [(G k) ⊙ (Bᵀ d)] = the correlation of d with k, for every unit d and k: the
        // trilinear identity Σ_e Aᵀ[i][e] G[e][t] Bᵀ[e][s] = [s = i + t].
        for i in 0..M {
            for t in 0..3 {
                for s in 0..N {
                    let sum: f64 = (0..N).map(|e| at[i][e] * g[e][t] * bt[e][s]).sum();
                    let want = if s == i + t { 1.0 } else { 0.0 };
                    assert!((sum - want).abs() < 1e-6, "({i}, {t}, {s}): {sum}");
                }
            }
        }
        // The gradient's transforms are the transposes of the output and kernel transforms.
        let (a, gt) = (matrix(gradient_rows), matrix(weight_gradient_rows));
        for e in 0..N {
            for i in 0..M {
                assert_eq!(a[e][i], at[i][e], "A[{e}][{i}]");
            }
            for t in 0..3 {
                assert!((gt[t][e] - g[e][t]).abs() < 1e-7, "Gᵀ[{t}][{e}]");
            }
        }
    }
}
