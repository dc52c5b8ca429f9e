//! The layers a ticket leaves dense enough that a dense matrix product beats the sparse
//! kernel.
//!
//! Global magnitude pruning leaves some layers far denser than the ticket's average (the stem,
//! the early and the 1×1 layers of a ResNet-50 keep 30–90 % of their weights at 90 % overall
//! sparsity). The sparse kernel runs one multiply-add per weight over streamed input, 35–60 G
//! multiply-adds/s on those layers; a packed matrix product (`gemm`) runs 100–135, so above a
//! density ([`prefers_dense`](super::filter::prefers_dense)) it wins even though it multiplies the zeros too.
//!
//! Dense 3×3 stride-1 layers with 16 channels or more on maps of 16 positions or more run
//! Winograd's F(4×4, 3×3) instead (`dwlth_kernels::conv::winograd`, weights transformed once at
//! compile time; with F(2×2, 3×3) the unpruned ResNet-50's stride-1 3×3 layers of stages 2
//! and 3 had gone 7.4 → 5.1 and 7.0 → 4.1 ms at batch 8).
//!
//! No input copy is laid out for it: in the engine's layouts (padded planes, or phase planes
//! for strides), the value tap `(c, ky, kx)` reads for output position `q` sits at
//! `origin(ky, kx) + c · channel_stride + q`. A 1×1 convolution's input for a block of output
//! positions is therefore a strided `[c_in × positions]` matrix read in place; a larger kernel
//! gathers its `c_in · kh · kw` rows (contiguous runs) into a per-block patch matrix. The
//! product lands in a block buffer and is stored with the sparse kernel's own epilogue (bias,
//! shortcut, ReLU, border).

use gemm::Parallelism;
use rayon::prelude::*;

use super::activation::TILE;
use super::activation::{zero_borders, Act, ConvInput, Pool};
use super::filter::SparseConv;
use super::kernel::{clear_border, isa, output, store, Isa, Job};
use crate::error::Result;
use dwlth_kernels::conv::blocks::{as_slots, matmul, with_scratch, Geometry, Store, View};
use dwlth_kernels::conv::winograd;

/// Output positions per product: `c_out × BLOCK` results stay in L2 for the epilogue.
const BLOCK: usize = 8 * TILE;

/// Finishes grid positions `q0..q0 + cols` of one output plane that a product wrote straight
/// into it: `act(value + bias)` at real positions, zero on the border columns between them,
/// and the border rows before the first and after the last position. Done block by block
/// while the block is in cache: a border pass over the whole map afterwards missed the cache
/// on two lines of every row.
#[inline(always)]
fn finish(job: &Job, plane: &mut [f32], q0: usize, cols: usize, bias: f32) {
    let offset = job.dst_origin + job.dst_row + 1;
    let end = q0 + cols;
    let mut q = q0;
    while q < end {
        let column = q % job.grid;
        let n = (job.grid - column).min(end - q);
        let real = job.out_w.saturating_sub(column).min(n);
        for v in &mut plane[q + offset..][..real] {
            let t = *v + bias;
            *v = if job.relu { t.max(0.0) } else { t };
        }
        q += n;
    }
    clear_border(job, plane, q0, end);
}

/// [`finish`] on every plane of `dst`, `bias[o]` for plane `o`.
#[inline(always)]
fn finish_planes(job: &Job, dst: &mut [f32], q0: usize, cols: usize, bias: &[f32]) {
    for (plane, &b) in dst.chunks_exact_mut(job.dst_plane).zip(bias) {
        finish(job, plane, q0, cols, b);
    }
}

/// AVX-512 build of [`finish_planes`]: the pass runs over every value the product wrote, and
/// the baseline build does it four values at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn finish_planes_avx512(job: &Job, dst: &mut [f32], q0: usize, cols: usize, bias: &[f32]) {
    finish_planes(job, dst, q0, cols, bias)
}

/// [`finish_planes`] in the widest build this CPU runs.
fn finish_block(isa: Isa, job: &Job, dst: &mut [f32], q0: usize, cols: usize, bias: &[f32]) {
    match isa {
        // SAFETY: `Isa::Avx512` is only detected on CPUs with AVX-512F, AVX2 and FMA, all
        // that `finish_planes_avx512` assumes; its body is safe Rust.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { finish_planes_avx512(job, dst, q0, cols, bias) },
        _ => finish_planes(job, dst, q0, cols, bias),
    }
}

/// The geometry of a layer with Winograd weights on `input`, when Winograd's F(4×4, 3×3)
/// applies there (a stride-1 input read in place, enough output positions).
fn winograd_geometry(conv: &SparseConv, input: &ConvInput, batch: usize) -> Option<Geometry> {
    let s = &conv.shape;
    let g = Geometry {
        batch,
        c_in: s.in_channels,
        h: input.out_h,
        w: input.out_w,
        c_out: s.out_channels,
        kh: 3,
        kw: 3,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
        oh: input.out_h,
        ow: input.out_w,
    };
    (input.grid == input.out_w + 2 && winograd::applies(&g)).then_some(g)
}

/// A dense 3×3 stride-1 layer by Winograd's F(4×4, 3×3) (`dwlth_kernels::conv::winograd`, 4×
/// fewer multiplications than a product over gathered patches): the batch's input gathered
/// into plain NCHW maps, the transformed weights `u` applied, and the outputs stored into
/// `out`'s planes with the epilogue (bias, shortcut, ReLU, border).
fn convolve_winograd(
    pool: &Pool,
    job: &Job,
    g: &Geometry,
    u: &[f32],
    input: &ConvInput,
    out: &mut Act,
    bias: &[f32],
) {
    let (h, w, row) = (g.h, g.w, input.grid);
    let area = h * w;
    // Pixel (y, x) of input channel c: the centre tap's origin, then rows `row` apart.
    let first = input.origins[4];
    let mut x = pool.take(g.batch * g.c_in * area);
    x[..g.batch * g.c_in * area]
        .par_chunks_mut(area)
        .enumerate()
        .for_each(|(nc, dst)| {
            let (n, c) = (nc / g.c_in, nc % g.c_in);
            let src = &input.data[n * input.image_len + c * input.channel_stride + first..];
            for (y, d) in dst.chunks_exact_mut(w).enumerate() {
                d.copy_from_slice(&src[y * row..][..w]);
            }
        });
    let mut y = pool.take(g.batch * g.c_out * area);
    winograd::forward_transformed(
        g,
        &x[..g.batch * g.c_in * area],
        u,
        as_slots(&mut y[..g.batch * g.c_out * area]),
    );
    let dst_first = job.dst_origin + job.dst_row + 1;
    out.data[..g.batch * g.c_out * job.dst_plane]
        .par_chunks_mut(job.dst_plane)
        .zip(y[..g.batch * g.c_out * area].par_chunks(area))
        .enumerate()
        .for_each(|(no, (plane, values))| {
            let b = bias[no % g.c_out];
            for (yy, src) in values.chunks_exact(w).enumerate() {
                let d = &mut plane[dst_first + yy * job.dst_row..][..w];
                for (o, &v) in d.iter_mut().zip(src) {
                    let t = v + b + if job.residual { *o } else { 0.0 };
                    *o = if job.relu { t.max(0.0) } else { t };
                }
            }
            zero_borders(plane, h, w);
        });
    pool.put(x);
    pool.put(y);
}

/// Runs `conv` with its dense `weight` ([`dense_matrix`](super::filter::dense_matrix)) on `input` for `batch` images:
/// `act(conv(x) + bias [+ residual])`, the same maps as the sparse kernel.
pub(crate) fn convolve_dense(
    pool: &Pool,
    conv: &SparseConv,
    weight: &[f32],
    input: &ConvInput,
    batch: usize,
    residual: Option<Act>,
    relu: bool,
) -> Result<Act> {
    let (oc, ic) = (conv.shape.out_channels, conv.shape.in_channels);
    let taps = input.origins.len();
    let k = ic * taps;
    debug_assert_eq!(weight.len(), oc * k);
    let add = residual.is_some();
    let mut out = output(pool, conv, input, batch, residual)?;
    let job = Job::epilogue(conv, input, &out, relu, add);
    if let Some(u) = &conv.winograd {
        if let Some(g) = winograd_geometry(conv, input, batch) {
            convolve_winograd(pool, &job, &g, u, input, &mut out, &conv.bias);
            return Ok(out);
        }
    }
    let isa = isa();
    let out_image = out.image_len();
    // Images in parallel when there are enough of them, otherwise each product on every thread.
    let threads = rayon::current_num_threads();
    let parallelism = if batch >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    };
    let image = |n: usize, dst: &mut [f32]| {
        let x = &input.data[n * input.image_len..];
        // Every row read below, x[origin + c · channel_stride + q] for c < ic, q < len, lies
        // inside the image's buffer and its slack.
        let last_origin = input.origins.iter().max().copied().unwrap_or(0);
        assert!(last_origin + (ic - 1) * input.channel_stride + job.len <= x.len());
        // Stride 1: grid position q is plane value q + row + 1, so the product is written
        // straight into the output planes (column j = channel j, `dst_plane` apart), adding to
        // the shortcut they hold, and finished in place while still in cache. Grid columns
        // past the width land on the border, zeroed below. Otherwise (phase grids) a block
        // product goes through `store`.
        let direct = job.grid == job.dst_row;
        // Per-thread buffers reused across layers and calls: fresh zeroed ones per image
        // would cost a memset of up to a megabyte each.
        let patches_len = if taps == 1 { 0 } else { k * BLOCK };
        let product_len = if direct { 0 } else { oc * BLOCK };
        with_scratch(patches_len, product_len, |patches, product| {
            let mut q0 = 0;
            while q0 < job.len {
                let cols = (job.len - q0).min(BLOCK);
                let patches_t = if taps == 1 {
                    View::transposed(&x[input.origins[0] + q0..], input.channel_stride)
                } else {
                    // Patch row (c, ky, kx) is the contiguous run the tap reads.
                    for (r, row) in patches.chunks_exact_mut(cols).take(k).enumerate() {
                        let (c, tap) = (r / taps, r % taps);
                        let start = input.origins[tap] + c * input.channel_stride + q0;
                        row.copy_from_slice(&x[start..start + cols]);
                    }
                    View::transposed(patches, cols)
                };
                // `[oc][cols]`, computed as its transpose `patchesᵀ · weightᵀ` stored
                // column-major: the positions as gemm's `m`, the layout its kernels run
                // fastest (4–5 % over a 90 % ticket's dense layers).
                let weight_t = View::transposed(weight, k);
                if direct {
                    let first = job.dst_origin + q0 + job.dst_row + 1;
                    matmul(
                        (cols, oc, k),
                        (&mut dst[first..], Store::ColumnsApart(job.dst_plane)),
                        job.residual,
                        patches_t,
                        weight_t,
                        parallelism,
                    );
                    finish_block(isa, &job, dst, q0, cols, &conv.bias);
                } else {
                    matmul(
                        (cols, oc, k),
                        (product, Store::Columns),
                        false,
                        patches_t,
                        weight_t,
                        parallelism,
                    );
                    for o in 0..oc {
                        let plane = &mut dst[o * job.dst_plane..(o + 1) * job.dst_plane];
                        let row = &product[o * cols..(o + 1) * cols];
                        for (t, values) in row.chunks(TILE).enumerate() {
                            let mut acc = [0.0f32; TILE];
                            acc[..values.len()].copy_from_slice(values);
                            store(&job, &acc, q0 + t * TILE, conv.bias[o], plane);
                        }
                    }
                }
                q0 += cols;
            }
        });
        if !direct {
            zero_borders(dst, job.out_h, job.out_w);
        }
    };
    let images = &mut out.data[..batch * out_image];
    if batch >= threads {
        images
            .par_chunks_mut(out_image)
            .enumerate()
            .for_each(|(n, dst)| image(n, dst));
    } else {
        images
            .chunks_mut(out_image)
            .enumerate()
            .for_each(|(n, dst)| image(n, dst));
    }
    Ok(out)
}
