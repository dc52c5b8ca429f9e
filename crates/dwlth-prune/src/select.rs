//! Exact selection of the `k` lowest scores without a full sort.

/// How many of `n` entries a fraction `amount` prunes: `round(amount · n)` with ties to even,
/// exactly as `torch.nn.utils.prune` computes it (Python's `round`).
pub fn count_to_prune(amount: f64, n: usize) -> usize {
    let k = (amount * n as f64).round_ties_even();
    (k.max(0.0) as usize).min(n)
}

/// A `u32` whose unsigned order is the total order of the float (negative below positive).
#[inline]
fn order_key(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Work split into one contiguous chunk per core for inputs above a million elements.
fn chunk_len(n: usize) -> usize {
    let threads = if n < 1 << 20 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |p| p.get())
    };
    n.div_ceil(threads).max(1)
}

/// `f(offset, chunk)` over contiguous chunks of `scores`, one per core; results in order.
fn par_chunks<R: Send>(scores: &[f32], f: impl Fn(usize, &[f32]) -> R + Sync) -> Vec<R> {
    let len = chunk_len(scores.len());
    if len >= scores.len() {
        return vec![f(0, scores)];
    }
    std::thread::scope(|scope| {
        let f = &f;
        let parts: Vec<_> = scores
            .chunks(len)
            .enumerate()
            .map(|(i, c)| scope.spawn(move || f(i * len, c)))
            .collect();
        parts
            .into_iter()
            .map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Marks the `k` lowest `scores` (`true` = selected); NaN scores are never selected.
///
/// Runs in linear time with a radix selection, split over the cores for large inputs:
/// 1. histogram the top 16 bits of every score's order key (and count the present scores);
/// 2. find the bucket holding the `k`-th key and select exactly among that bucket's keys;
/// 3. mark every score below that key, noting the (rare) ones equal to it, and take those in
///    index order until `k` are marked — deterministic even with ties.
pub fn lowest_k(scores: &[f32], k: usize) -> Vec<bool> {
    if k == 0 {
        return vec![false; scores.len()];
    }
    // u32 counts keep each core's table in cache (a chunk never holds 2^32 scores here).
    let mut histogram = vec![0usize; 1 << 16];
    for part in par_chunks(scores, |_, chunk| {
        let mut h = vec![0u32; 1 << 16];
        for s in chunk {
            if !s.is_nan() {
                h[(order_key(*s) >> 16) as usize] += 1;
            }
        }
        h
    }) {
        histogram
            .iter_mut()
            .zip(part)
            .for_each(|(x, y)| *x += y as usize);
    }
    let present: usize = histogram.iter().sum();
    if k >= present {
        return scores.iter().map(|s| !s.is_nan()).collect();
    }
    let (mut below, mut bucket) = (0, 0u32);
    for (b, count) in histogram.iter().enumerate() {
        if below + count >= k {
            bucket = b as u32;
            break;
        }
        below += count;
    }
    let mut candidates: Vec<u32> = par_chunks(scores, |_, chunk| {
        chunk
            .iter()
            .filter(|s| !s.is_nan())
            .map(|s| order_key(*s))
            .filter(|key| key >> 16 == bucket)
            .collect::<Vec<u32>>()
    })
    .concat();
    let threshold = *candidates.select_nth_unstable(k - below - 1).1;
    // Mark in place, chunk by chunk on the cores; note the keys equal to the threshold.
    let mut picked = vec![false; scores.len()];
    let len = chunk_len(scores.len());
    let mark = |offset: usize, chunk: &[f32], out: &mut [bool]| {
        let mut equal = Vec::new();
        for (i, (s, p)) in chunk.iter().zip(out.iter_mut()).enumerate() {
            let key = order_key(*s);
            let present = !s.is_nan();
            *p = present && key < threshold;
            if present && key == threshold {
                equal.push(offset + i);
            }
        }
        equal
    };
    let equal: Vec<usize> = std::thread::scope(|scope| {
        let mark = &mark;
        let parts: Vec<_> = scores
            .chunks(len)
            .zip(picked.chunks_mut(len))
            .enumerate()
            .map(|(i, (c, o))| scope.spawn(move || mark(i * len, c, o)))
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let taken = picked.iter().filter(|p| **p).count();
    for i in equal.into_iter().take(k.saturating_sub(taken)) {
        picked[i] = true;
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_half_to_even_like_python() {
        // Python: round(0.3 * 5) == 2 (0.3 * 5 is exactly 1.5 in f64), round(0.5 * 5) == 2,
        // round(0.5 * 3) == 2, round(0.25 * 2) == 0, round(0.2 * 44172) == 8834.
        assert_eq!(count_to_prune(0.3, 5), 2);
        assert_eq!(count_to_prune(0.5, 5), 2);
        assert_eq!(count_to_prune(0.5, 3), 2);
        assert_eq!(count_to_prune(0.25, 2), 0);
        assert_eq!(count_to_prune(0.2, 44_172), 8_834);
        assert_eq!(count_to_prune(0.0, 7), 0);
    }

    #[test]
    fn lowest_k_is_exact_with_ties() {
        let scores = [3.0, 1.0, 2.0, 1.0, 5.0, 1.0];
        assert_eq!(
            lowest_k(&scores, 2),
            [false, true, false, true, false, false]
        );
        assert_eq!(lowest_k(&scores, 4), [false, true, true, true, false, true]);
        assert_eq!(lowest_k(&scores, 0), [false; 6]);
        assert_eq!(lowest_k(&scores, 9), [true; 6]);
        let with_nan = [f32::NAN, 1.0, -f32::NAN, 0.5];
        assert_eq!(lowest_k(&with_nan, 1), [false, false, false, true]);
        assert_eq!(lowest_k(&with_nan, 5), [false, true, false, true]);
    }

    #[test]
    fn the_parallel_path_agrees_with_sorting() {
        // Above a million scores the passes run on every core.
        let mut state = 11u64;
        let scores: Vec<f32> = (0..(1 << 21) + 7)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 33) % 1_000_003) as f32 / 7.0
            })
            .collect();
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let k = 419_431;
        let picked = lowest_k(&scores, k);
        assert_eq!(picked.iter().filter(|p| **p).count(), k);
        let max_picked = scores
            .iter()
            .zip(&picked)
            .filter(|(_, p)| **p)
            .map(|(s, _)| *s)
            .fold(f32::MIN, f32::max);
        assert_eq!(max_picked, sorted[k - 1]);
    }

    #[test]
    fn radix_selection_agrees_with_sorting() {
        // Pseudo-random scores with many duplicates and both signs, against a full sort.
        let mut state = 7u64;
        let scores: Vec<f32> = (0..20_000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 40) % 3000) as f32 / 100.0 - 5.0
            })
            .collect();
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        for k in [1, 2, 17, 999, 10_000, 19_999] {
            let picked = lowest_k(&scores, k);
            assert_eq!(picked.iter().filter(|p| **p).count(), k);
            let max_picked = scores
                .iter()
                .zip(&picked)
                .filter(|(_, p)| **p)
                .map(|(s, _)| *s)
                .fold(f32::MIN, f32::max);
            assert_eq!(max_picked, sorted[k - 1], "k = {k}");
            let min_left = scores
                .iter()
                .zip(&picked)
                .filter(|(_, p)| !**p)
                .map(|(s, _)| *s)
                .fold(f32::MAX, f32::min);
            assert!(min_left >= max_picked);
        }
    }
}
