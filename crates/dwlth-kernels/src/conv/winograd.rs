//! 3×3 stride-1 convolutions by Winograd's minimal filtering, F(2×2, 3×3).
//!
//! Each 2×2 block of outputs ("tile") of one channel is `Aᵀ [Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B)] A`,
//! with `d` the 4×4 input patch under the tile and `g` the 3×3 kernel: 16 multiplications
//! per tile and input channel instead of the 36 of the direct form. Written as 16 matrix
//! products (one per position `e` of the 4×4 transformed tile), each
//! `M_e [tiles × c_out] = V_e [tiles × c_in] · U_e [c_in × c_out]`, the convolution costs
//! 2.25× fewer multiply-adds than im2col's single product, and its transformed input is 4×
//! the input where im2col's patch matrix is 9×.
//!
//! The transforms use only ±1 and ½ (exact in binary), so the results differ from the direct
//! form by a few `f32` roundings of the sums (Lavin and Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016: F(2×2, 3×3) is the accurate one of the family).
//!
//! Everything runs channels-last, so that both transforms are vector operations over whole
//! channel rows (a tile row of a small map is only 2–16 tiles wide): each image is first
//! transposed into a zero-padded `[y][x][c_in]` plane, `V_e` is stored `[tiles][c_in]`, and
//! the products compute `M_eᵀ = U_eᵀ · V_eᵀ` into `[tiles][c_out]` (`U_e` stored
//! `[c_in][c_out]`: `gemm`'s fastest layout, both operands and the destination contiguous
//! along their long side), transformed into channels-last outputs and transposed back.

use std::cell::Cell;
use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use super::blocks::{
    as_slots, matmul, sum_over_chunks, transpose, transpose_strided, with_scratch, Geometry, Store,
    View,
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

/// Output positions per map from which [`applies`] takes this path. At batch 128 and 512
/// channels, 4×4 maps take 24 ms this way against 34 ms through im2col (forward; input
/// gradient 28 against 38, weight gradient 23 against 42); 8×8 maps at 256 channels: 20
/// against 36 ms; 16×16 at 128: 24 against 35; 32×32 at 64: 31 against 49.
pub const MIN_POSITIONS: usize = 16;

/// Tiles per chunk of images: the width of the 16 products.
const TILES_PER_CHUNK: usize = 512;

/// Positions of a transformed tile.
const E: usize = 16;

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
        with_scratch(E * c_in * t, E * c_out * t, |v, m| {
            let layout = Layout::input(g, &tiles);
            for (j, image) in xc.chunks_exact(in_len).enumerate() {
                with_plane(&layout, image, |plane| {
                    transform_input(g, &tiles, plane, v, t, j * tiles.per_image)
                });
            }
            for e in 0..E {
                matmul(
                    (c_out, t, c_in),
                    (&mut m[e * c_out * t..][..c_out * t], Store::Columns),
                    false,
                    View::transposed(&u[e * c_in * c_out..][..c_in * c_out], c_out),
                    View::transposed(&v[e * c_in * t..][..c_in * t], c_in),
                    parallelism,
                );
            }
            let mut channels_last = vec![0.0f32; out_len];
            for (j, out) in yc.chunks_exact_mut(out_len).enumerate() {
                transform_output(g, &tiles, m, t, j * tiles.per_image, &mut channels_last);
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
/// The adjoint of [`forward`]'s algorithm: with `Ŷ = A gy Aᵀ` per 2×2 tile of `gy` (4×4,
/// `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`) and `V = Bᵀ d B` as in the forward pass,
/// `∂L/∂g = Gᵀ (Σ_tiles Ŷ ⊙ V) G`: 16 products `[c_out × tiles] · [tiles × c_in]`, 2.25×
/// fewer multiply-adds than im2col's product. Tiles overhanging the map read zeros of `gy`.
pub(crate) fn backward_weight(g: &Geometry, x: &[f32], gy: &[f32], gw: &mut [MaybeUninit<f32>]) {
    debug_assert!(applies(g));
    let (c_in, c_out) = (g.c_in, g.c_out);
    let tiles = Tiles::new(g);
    let plan = Plan::new(g, &tiles);
    let (in_len, out_len) = (g.input_len(), g.output_len());
    let chunks = g.batch.div_ceil(plan.images);
    // Σ Ŷ ⊙ V over the chunks, `[e][c_in][c_out]`.
    let m = sum_over_chunks(
        chunks,
        plan.chunks_in_parallel,
        E * c_in * c_out,
        |chunk, acc, accumulate| {
            let start = chunk * plan.images;
            let images = plan.images.min(g.batch - start);
            let t = images * tiles.per_image;
            let xc = &x[start * in_len..][..images * in_len];
            let gyc = &gy[start * out_len..][..images * out_len];
            with_scratch(E * c_in * t, E * c_out * t, |v, yhat| {
                let input = Layout::input(g, &tiles);
                let gradient = Layout::gradient(g, &tiles);
                for j in 0..images {
                    let at = j * tiles.per_image;
                    with_plane(&input, &xc[j * in_len..][..in_len], |plane| {
                        transform_input(g, &tiles, plane, v, t, at)
                    });
                    with_plane(&gradient, &gyc[j * out_len..][..out_len], |plane| {
                        transform_gradient(g, &tiles, plane, yhat, t, at)
                    });
                }
                for e in 0..E {
                    matmul(
                        (c_out, c_in, t),
                        (&mut acc[e * c_in * c_out..][..c_in * c_out], Store::Columns),
                        accumulate,
                        View::transposed(&yhat[e * c_out * t..][..c_out * t], c_out),
                        View::rows(&v[e * c_in * t..][..c_in * t], c_in),
                        plan.parallelism,
                    );
                }
            });
        },
    );
    // gw = Gᵀ M G per (c_out, c_in): rows of Gᵀ are (1, ½, ½, 0), (0, ½, −½, 0), (0, ½, ½, 1).
    let gt = |v: [f32; 4]| {
        [
            v[0] + 0.5 * (v[1] + v[2]),
            0.5 * (v[1] - v[2]),
            0.5 * (v[1] + v[2]) + v[3],
        ]
    };
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
                    row[..channels]
                        .copy_from_slice(&m[(e * c_in + ci) * c_out + first..][..channels]);
                }
                for co in 0..channels {
                    let kernel = &mut gw_block[(co * c_in + ci) * 9..][..9];
                    let at = |e: usize| at[e][co];
                    // Gᵀ M: three rows of four, column by column; then each row through
                    // Gᵀ again.
                    let columns: [[f32; 3]; 4] =
                        std::array::from_fn(|c| gt([at(c), at(4 + c), at(8 + c), at(12 + c)]));
                    let gm: [[f32; 4]; 3] =
                        std::array::from_fn(|r| std::array::from_fn(|c| columns[c][r]));
                    for (ky, row) in gm.iter().enumerate() {
                        for (kx, v) in gt(*row).into_iter().enumerate() {
                            kernel[ky * 3 + kx].write(v);
                        }
                    }
                }
            }
        });
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
    /// Tile rows and columns (the last ones may overhang the output by one).
    rows: usize,
    cols: usize,
    per_image: usize,
}

impl Tiles {
    fn new(g: &Geometry) -> Self {
        let (rows, cols) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        Self {
            rows,
            cols,
            per_image: rows * cols,
        }
    }

    /// Rows and columns of the padded plane the tiles read: a border of one, and one more
    /// row or column of zeros where the last tile overhangs.
    fn plane(&self) -> (usize, usize) {
        (2 * self.rows + 2, 2 * self.cols + 2)
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
    /// The input as the tiles read it: a border of 1, and one more row or column of zeros
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
            rows: 2 * tiles.rows,
            cols: 2 * tiles.cols,
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

/// `U_e = (G g Gᵀ)_e` for every kernel, stored `[e][c_in][c_out]`, with
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
///
/// Blocks of `CHANNEL_BLOCK` input channels run in parallel, each first transposing its
/// kernels to output channels contiguous, then transforming 16 output channels at a time as
/// vectors, each result one contiguous run of `U_e`'s row (kernel by kernel, input channel
/// outermost, it read 9 values 18 KiB apart at 512 channels: 8 ms per call, a fifth of a
/// 4×4-map layer's forward pass; 16 channels gathered from their kernels: 3.7 ms).
pub fn transformed_weight(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let len = E * c_in * c_out;
    // Written in full below, not zeroed first (a `memset` of 16 MB at 512 channels).
    let mut u: Vec<f32> = Vec::with_capacity(len);
    // Each block's 16 row ranges, one per `e`: `[ci_local][co]` of `U_e`.
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
                        for (d, v) in dst.iter_mut().zip(v) {
                            d.write(*v);
                        }
                    }
                }
            }
        });
    // SAFETY: the blocks cover all `len` slots (16 row ranges each, one per `e`, of whole
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

/// `G g Gᵀ` of [`LANES`] kernels (`k[tap][lane]`, taps row by row), as `[e][lane]`.
#[inline(always)]
fn transform_kernels(k: &[[f32; LANES]; 9]) -> [[f32; LANES]; E] {
    let lanes = |f: &dyn Fn(usize) -> f32| -> [f32; LANES] { std::array::from_fn(f) };
    // G a for a column `a` of three taps: (a0, (a0 + a1 + a2) / 2, (a0 − a1 + a2) / 2, a2).
    let g_rows = |a: [&[f32; LANES]; 3]| -> [[f32; LANES]; 4] {
        [
            *a[0],
            lanes(&|l| (a[0][l] + a[1][l] + a[2][l]) * 0.5),
            lanes(&|l| (a[0][l] - a[1][l] + a[2][l]) * 0.5),
            *a[2],
        ]
    };
    // G g: 4 rows of 3, column by column.
    let columns: [[[f32; LANES]; 4]; 3] =
        std::array::from_fn(|c| g_rows([&k[c], &k[3 + c], &k[6 + c]]));
    let mut u = [[0.0f32; LANES]; E];
    // (G g) Gᵀ: each row through G.
    for r in 0..4 {
        let row = g_rows([&columns[0][r], &columns[1][r], &columns[2][r]]);
        for (c, v) in row.into_iter().enumerate() {
            u[r * 4 + c] = v;
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
    t: usize,
    first: usize
));

/// Writes `V_e = (Bᵀ d B)_e` of every tile of one image into `v` (`[e][t][c_in]`, this
/// image's tiles from `first`), `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0],
/// [0, 1, 0, −1]]`, each value a vector over the input channels.
#[inline(always)]
fn transform_input_any(
    g: &Geometry,
    tiles: &Tiles,
    plane: &[f32],
    v: &mut [f32],
    t: usize,
    first: usize,
) {
    let c = g.c_in;
    let (_, pw) = tiles.plane();
    let mut rows = vec![0.0f32; 4 * 4 * c];
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            // Bᵀ d: row i of the 4×4 patch (each entry a channel vector) into rows[i][..].
            let d = |r: usize| &plane[((2 * ty + r) * pw + 2 * tx) * c..][..4 * c];
            let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
            let (r0, rest) = rows.split_at_mut(4 * c);
            let (r1, rest) = rest.split_at_mut(4 * c);
            let (r2, r3) = rest.split_at_mut(4 * c);
            for ((((o0, o1), (o2, o3)), (a, b)), (cc, dd)) in r0
                .iter_mut()
                .zip(r1.iter_mut())
                .zip(r2.iter_mut().zip(r3.iter_mut()))
                .zip(d0.iter().zip(d1))
                .zip(d2.iter().zip(d3))
            {
                *o0 = a - cc;
                *o1 = b + cc;
                *o2 = cc - b;
                *o3 = b - dd;
            }
            // (Bᵀ d) B: the same combination of each row's four entries.
            let tile = first + ty * tiles.cols + tx;
            for (i, row) in rows.chunks_exact(4 * c).enumerate() {
                let (p, rest) = row.split_at(c);
                let (q, rest) = rest.split_at(c);
                let (r, s) = rest.split_at(c);
                // V_{4i}, …, V_{4i + 3} of this tile: `t · c` apart.
                let at = |jj: usize| ((i * 4 + jj) * t + tile) * c;
                let (v0, rest) = v[at(0)..at(3) + c].split_at_mut(t * c);
                let (v1, rest) = rest.split_at_mut(t * c);
                let (v2, v3) = rest.split_at_mut(t * c);
                let lanes = v0[..c]
                    .iter_mut()
                    .zip(&mut v1[..c])
                    .zip(v2[..c].iter_mut().zip(&mut v3[..c]));
                for (((o0, o1), (o2, o3)), (((p, q), r), s)) in
                    lanes.zip(p.iter().zip(q).zip(r).zip(s))
                {
                    *o0 = p - r;
                    *o1 = q + r;
                    *o2 = r - q;
                    *o3 = q - s;
                }
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
    t: usize,
    first: usize
));

/// Writes `Ŷ_e = (A gy Aᵀ)_e` of every 2×2 tile of one image's output gradient (channels-last
/// `plane` of [`Layout::gradient`]) into `yhat` (`[e][t][c_out]`, this image's tiles from
/// `first`), `A = [[1, 0], [1, 1], [1, −1], [0, −1]]`.
#[inline(always)]
fn transform_gradient_any(
    g: &Geometry,
    tiles: &Tiles,
    plane: &[f32],
    yhat: &mut [f32],
    t: usize,
    first: usize,
) {
    let c = g.c_out;
    let pw = 2 * tiles.cols;
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let px = |dy: usize, dx: usize| &plane[((2 * ty + dy) * pw + 2 * tx + dx) * c..][..c];
            let (a, b, cc, d) = (px(0, 0), px(0, 1), px(1, 0), px(1, 1));
            let tile = first + ty * tiles.cols + tx;
            // A gy: rows (a, b), (a + c, b + d), (a − c, b − d), (−c, −d); each row (p, q)
            // then through Aᵀ: (p, p + q, p − q, −q).
            for i in 0..4 {
                let at = |j: usize| ((i * 4 + j) * t + tile) * c;
                let (y0, rest) = yhat[at(0)..at(3) + c].split_at_mut(t * c);
                let (y1, rest) = rest.split_at_mut(t * c);
                let (y2, y3) = rest.split_at_mut(t * c);
                let lanes = y0[..c]
                    .iter_mut()
                    .zip(&mut y1[..c])
                    .zip(y2[..c].iter_mut().zip(&mut y3[..c]));
                for ((((o0, o1), (o2, o3)), (a, b)), (cc, d)) in
                    lanes.zip(a.iter().zip(b)).zip(cc.iter().zip(d))
                {
                    let (p, q) = match i {
                        0 => (*a, *b),
                        1 => (a + cc, b + d),
                        2 => (a - cc, b - d),
                        _ => (-cc, -d),
                    };
                    *o0 = p;
                    *o1 = p + q;
                    *o2 = p - q;
                    *o3 = -q;
                }
            }
        }
    }
}

// In the widest instructions this CPU has:
widest!(transform_output => transform_output_any(
    g: &Geometry,
    tiles: &Tiles,
    m: &[f32],
    t: usize,
    first: usize,
    out: &mut [f32]
));

/// Writes one image's outputs, channels-last (`[oy][ox][c_out]`), from the products `m`
/// (`[e][t][c_out]`, this image's tiles from `first`): `Y = Aᵀ M A` per tile,
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`, cropped to the map.
#[inline(always)]
fn transform_output_any(
    g: &Geometry,
    tiles: &Tiles,
    m: &[f32],
    t: usize,
    first: usize,
    out: &mut [f32],
) {
    let c = g.c_out;
    // Aᵀ M: s[i][j] = (m_0j + m_1j + m_2j, m_1j − m_2j − m_3j)[i], m_ij = M_{4i + j}.
    let mut s = vec![0.0f32; 8 * c];
    for ty in 0..tiles.rows {
        for tx in 0..tiles.cols {
            let tile = first + ty * tiles.cols + tx;
            let me = |e: usize| &m[(e * t + tile) * c..][..c];
            for j in 0..4 {
                let (a, b, cc, d) = (me(j), me(4 + j), me(8 + j), me(12 + j));
                let (s0, s1) = s[2 * j * c..][..2 * c].split_at_mut(c);
                for ((o0, o1), (((a, b), cc), d)) in s0
                    .iter_mut()
                    .zip(s1.iter_mut())
                    .zip(a.iter().zip(b).zip(cc).zip(d))
                {
                    *o0 = a + b + cc;
                    *o1 = b - cc - d;
                }
            }
            // · A along j: y[i][0] = s_i0 + s_i1 + s_i2, y[i][1] = s_i1 − s_i2 − s_i3.
            for i in 0..2 {
                let oy = 2 * ty + i;
                if oy >= g.oh {
                    break;
                }
                let sj = |j: usize| &s[(2 * j + i) * c..][..c];
                let (s0, s1, s2, s3) = (sj(0), sj(1), sj(2), sj(3));
                let ox = 2 * tx;
                let (left, right) = out[(oy * g.ow + ox) * c..].split_at_mut(c);
                for (o, ((a, b), cc)) in left.iter_mut().zip(s0.iter().zip(s1).zip(s2)) {
                    *o = a + b + cc;
                }
                if ox + 1 < g.ow {
                    for (o, ((b, cc), d)) in right[..c].iter_mut().zip(s1.iter().zip(s2).zip(s3)) {
                        *o = b - cc - d;
                    }
                }
            }
        }
    }
}
