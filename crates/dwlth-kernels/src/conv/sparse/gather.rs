//! The one kernel of the sparse passes: `out[r][q] = Σⱼ vⱼ · src[offⱼ + q]` over the nonzero
//! taps `(offⱼ, vⱼ)` of each output row `r`, for every grid position `q` of a chunk.
//!
//! Tiles of `T` consecutive positions: the accumulators of one tile and one row stay in
//! vector registers for all of the row's taps, so each tap costs `T / lanes` loads and as many
//! fused multiply-adds. The tile loop is outermost, then chunks of source channels, so that
//! one tile's input window in a chunk (its channels' `T` positions plus the kernel's reach)
//! stays in the L1 cache while every row reads it; rows accumulate over the chunks in their
//! output tile.

use super::super::blocks::{isa, Isa};
use super::taps::Taps;

/// Grid positions per tile on AVX-512: 8 registers of accumulators.
const TILE_AVX512: usize = 128;
/// Grid positions per tile on AVX2: 8 registers of accumulators.
const TILE_AVX2: usize = 64;
/// Grid positions per tile elsewhere.
const TILE: usize = 32;

/// Positions per tile of [`gather`] on this CPU: rows of its output are this many positions
/// apart at least, and its reads reach this far past the last position.
pub(super) fn tile() -> usize {
    match isa() {
        Isa::Avx512 => TILE_AVX512,
        Isa::Avx2 => TILE_AVX2,
        Isa::Baseline => TILE,
    }
}

/// Adds `Σ vⱼ · src[q0 + offⱼ ..][..T]` to `acc`.
///
/// A tile is 8 vector registers: a multiply-add waits 4 cycles for the previous one into the
/// same register and two issue per cycle, so 8 independent sums keep both FMA units busy, and
/// each tap's offset and weight (two loads) are spent on 8 products. On one core of the
/// 2-core AVX-512 machine, 64 channels of random taps: 0.9–1.4 G 16-wide products per
/// second with 4 registers and taps in pairs, 1.5–2.0 G with 8; 2.2–3.8 G when every load
/// is aligned to a cache line (most taps' are not: a load straddling two lines costs two).
#[inline(always)]
fn accumulate<const FMA: bool, const T: usize>(
    acc: &mut [f32; T],
    src: &[f32],
    q0: usize,
    offsets: &[u32],
    values: &[f32],
) {
    for (&o, &w) in offsets.iter().zip(values) {
        let at = q0 + o as usize;
        debug_assert!(at + T <= src.len());
        // SAFETY: `at + T ≤ src.len()` for every tile and tap: `gather` checks once that the
        // largest offset plus the last tile's end lies inside `src`. `[f32; T]` has `f32`'s
        // alignment.
        let x: &[f32; T] = unsafe { &*src.as_ptr().add(at).cast::<[f32; T]>() };
        for (a, &v) in acc.iter_mut().zip(x) {
            *a = if FMA { w.mul_add(v, *a) } else { *a + w * v };
        }
    }
}

/// [`gather`] for a tile width and instruction set known at compile time.
#[inline(always)]
fn gather_with<const FMA: bool, const T: usize>(
    taps: &Taps,
    src: &[f32],
    starts: &[usize],
    out: &mut [f32],
    stride: usize,
) {
    for (j, &q0) in starts.iter().enumerate() {
        for k in 0..taps.chunks() {
            for (r, row) in out.chunks_exact_mut(stride).enumerate() {
                let (offsets, values) = taps.chunk(r, k);
                let dst: &mut [f32; T] = (&mut row[j * T..][..T]).try_into().expect("a tile");
                let mut acc = if k == 0 { [0.0f32; T] } else { *dst };
                accumulate::<FMA, T>(&mut acc, src, q0, offsets, values);
                *dst = acc;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn gather_avx512(taps: &Taps, src: &[f32], starts: &[usize], out: &mut [f32], stride: usize) {
    gather_with::<true, TILE_AVX512>(taps, src, starts, out, stride)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gather_avx2(taps: &Taps, src: &[f32], starts: &[usize], out: &mut [f32], stride: usize) {
    gather_with::<true, TILE_AVX2>(taps, src, starts, out, stride)
}

/// `out[r · stride + q] = Σ v · src[off + q]` over the taps of row `r`, for `q` in
/// `0..len.next_multiple_of(tile())` (positions past `len` are computed and written too, so
/// `stride` must leave room for them).
pub(super) fn gather(taps: &Taps, src: &[f32], len: usize, out: &mut [f32], stride: usize) {
    let starts: Vec<usize> = (0..len).step_by(tile()).collect();
    gather_tiles(taps, src, &starts, out, stride);
}

/// For every tile `j` of [`tile()`] positions: `out[r · stride + j · tile + i] = Σ v ·
/// src[starts[j] + off + i]` over the taps of row `r`.
///
/// # Panics
/// If a read or write would leave `src` or `out`: the callers size both from the same layout,
/// so this is a bug, never a user's input.
pub(super) fn gather_tiles(
    taps: &Taps,
    src: &[f32],
    starts: &[usize],
    out: &mut [f32],
    stride: usize,
) {
    let t = tile();
    let rows = taps.rows();
    assert!(
        stride >= starts.len() * t && out.len() >= rows * stride,
        "sparse convolution: output rows too short"
    );
    let last = starts.iter().max().copied().unwrap_or(0);
    assert!(
        taps.max_offset() + last + t <= src.len(),
        "sparse convolution: reads past its input"
    );
    let out = &mut out[..rows * stride];
    match isa() {
        // SAFETY: `isa()` returned `Avx512` only after detecting AVX-512F, AVX2 and FMA on this
        // CPU, all `gather_avx512` assumes; its body is safe Rust but for the reads checked
        // above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { gather_avx512(taps, src, starts, out, stride) },
        // SAFETY: as above, with AVX2 and FMA detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { gather_avx2(taps, src, starts, out, stride) },
        _ => gather_with::<false, TILE>(taps, src, starts, out, stride),
    }
}
