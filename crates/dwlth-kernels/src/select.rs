//! The two full passes of magnitude pruning's threshold selection over a chunk of scores:
//! counting the scores below a bracket while collecting those inside it, and marking the scores
//! below the threshold. SSE2 compares on x86-64 (part of its baseline, so no run-time
//! detection), plain loops elsewhere. Float compares leave NaN out of every count by themselves.

#[cfg(target_arch = "x86_64")]
pub use sse2::{count_and_bracket, mark_below};

#[cfg(not(target_arch = "x86_64"))]
pub use scalar::{count_and_bracket, mark_below};

/// Plain loops: the reference, the tails of the SIMD passes, and other targets.
pub mod scalar {
    /// `(#scores < lo, the scores in [lo, hi])`.
    pub fn count_and_bracket(chunk: &[f32], lo: f32, hi: f32) -> (usize, Vec<f32>) {
        let below = chunk.iter().filter(|s| **s < lo).count();
        let inside = chunk
            .iter()
            .copied()
            .filter(|s| *s >= lo && *s <= hi)
            .collect();
        (below, inside)
    }

    /// Sets `out[i] = chunk[i] < threshold`; returns how many it set and the indices
    /// (plus `offset`) of the scores equal to `threshold`.
    pub fn mark_below(
        chunk: &[f32],
        out: &mut [bool],
        threshold: f32,
        offset: usize,
    ) -> (usize, Vec<usize>) {
        let (mut below, mut equal) = (0, Vec::new());
        for (i, (s, p)) in chunk.iter().zip(out.iter_mut()).enumerate() {
            *p = *s < threshold;
            below += *p as usize;
            if *s == threshold {
                equal.push(offset + i);
            }
        }
        (below, equal)
    }
}

/// Blocks of 16 scores as four SSE registers. LLVM vectorises the plain loops poorly here
/// (it gathers across blocks), at 2–3× the time of these.
#[cfg(target_arch = "x86_64")]
pub mod sse2 {
    use std::arch::x86_64::*;

    /// Four registers from 16 scores.
    #[inline(always)]
    fn load(block: &[f32]) -> [__m128; 4] {
        assert_eq!(block.len(), 16);
        // SAFETY: SSE2 is part of x86-64's baseline; the four unaligned loads read
        // block[0..16], in bounds by the assertion.
        unsafe {
            let p = block.as_ptr();
            [
                _mm_loadu_ps(p),
                _mm_loadu_ps(p.add(4)),
                _mm_loadu_ps(p.add(8)),
                _mm_loadu_ps(p.add(12)),
            ]
        }
    }

    /// `(#scores < lo, the scores in [lo, hi])`.
    pub fn count_and_bracket(chunk: &[f32], lo: f32, hi: f32) -> (usize, Vec<f32>) {
        let mut blocks = chunk.chunks_exact(16);
        let mut inside = Vec::new();
        // SAFETY: SSE2 is part of x86-64's baseline; the intrinsics touch registers only.
        let below = unsafe {
            let (lo_v, hi_v) = (_mm_set1_ps(lo), _mm_set1_ps(hi));
            // Per-lane counts, decremented by the all-ones masks of "below" lanes; a chunk
            // never holds 2³² scores here.
            let mut counts = _mm_setzero_si128();
            for block in &mut blocks {
                let mut bracketed = 0u32;
                for (j, x) in load(block).into_iter().enumerate() {
                    counts = _mm_sub_epi32(counts, _mm_castps_si128(_mm_cmplt_ps(x, lo_v)));
                    let within = _mm_and_ps(_mm_cmpge_ps(x, lo_v), _mm_cmple_ps(x, hi_v));
                    bracketed |= (_mm_movemask_ps(within) as u32) << (4 * j);
                }
                while bracketed != 0 {
                    inside.push(block[bracketed.trailing_zeros() as usize]);
                    bracketed &= bracketed - 1;
                }
            }
            let mut lanes = [0u32; 4];
            _mm_storeu_si128(lanes.as_mut_ptr().cast(), counts);
            lanes.iter().map(|c| *c as usize).sum::<usize>()
        };
        let (tail_below, tail_inside) =
            super::scalar::count_and_bracket(blocks.remainder(), lo, hi);
        inside.extend(tail_inside);
        (below + tail_below, inside)
    }

    /// Sets `out[i] = chunk[i] < threshold`; returns how many it set and the indices (plus
    /// `offset`) of the scores equal to `threshold`.
    pub fn mark_below(
        chunk: &[f32],
        out: &mut [bool],
        threshold: f32,
        offset: usize,
    ) -> (usize, Vec<usize>) {
        assert_eq!(chunk.len(), out.len());
        let (mut below, mut equal) = (0, Vec::new());
        let blocks = chunk.len() / 16;
        for (b, (block, flags)) in chunk
            .chunks_exact(16)
            .zip(out.chunks_exact_mut(16))
            .enumerate()
        {
            let x = load(block);
            // SAFETY: SSE2 is part of x86-64's baseline; the one store writes
            // flags[0..16] (16 bytes, in bounds), each byte 0 or 1, valid `bool`s.
            let ties = unsafe {
                let t = _mm_set1_ps(threshold);
                let lt = x.map(|x| _mm_castps_si128(_mm_cmplt_ps(x, t)));
                // Four all-ones/zero i32 masks per register, packed to 16 bytes of -1 / 0.
                let bytes =
                    _mm_packs_epi16(_mm_packs_epi32(lt[0], lt[1]), _mm_packs_epi32(lt[2], lt[3]));
                _mm_storeu_si128(
                    flags.as_mut_ptr().cast(),
                    _mm_and_si128(bytes, _mm_set1_epi8(1)),
                );
                below += _mm_movemask_epi8(bytes).count_ones() as usize;
                let eq = x.map(|x| _mm_cmpeq_ps(x, t));
                _mm_movemask_ps(_mm_or_ps(_mm_or_ps(eq[0], eq[1]), _mm_or_ps(eq[2], eq[3])))
            };
            if ties != 0 {
                let first = offset + 16 * b;
                equal.extend(
                    (0..16)
                        .filter(|j| block[*j] == threshold)
                        .map(|j| first + j),
                );
            }
        }
        let done = 16 * blocks;
        let (tail_below, tail_equal) =
            super::scalar::mark_below(&chunk[done..], &mut out[done..], threshold, offset + done);
        equal.extend(tail_equal);
        (below + tail_below, equal)
    }
}
