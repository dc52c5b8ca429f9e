//! Exact selection of the `k` lowest scores without a full sort.

/// How many of `n` entries a fraction `amount` prunes: `round(amount · n)` with ties to even,
/// exactly as `torch.nn.utils.prune` computes it (Python's `round`).
pub fn count_to_prune(amount: f64, n: usize) -> usize {
    let k = (amount * n as f64).round_ties_even();
    (k.max(0.0) as usize).min(n)
}

/// A `u32` whose unsigned order is the total order of the float (negative below positive):
/// negative floats have all bits flipped, positive ones their sign bit set (branch-free, so
/// the passes below vectorise).
#[inline(always)]
fn order_key(v: f32) -> u32 {
    let bits = v.to_bits();
    bits ^ (((bits as i32 >> 31) as u32) | 0x8000_0000)
}

/// The float whose [`order_key`] is `key`.
#[inline]
fn from_order_key(key: u32) -> f32 {
    f32::from_bits(if key & 0x8000_0000 != 0 {
        key ^ 0x8000_0000
    } else {
        !key
    })
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
/// Runs in linear time, split over the cores for large inputs, in two passes over the scores
/// when it can:
/// 1. find the `k`-th lowest score (`sampled_threshold`: bracket it with a sample and select
///    among the few scores inside the bracket; `radix_threshold` when the bracket misses or
///    the input is small);
/// 2. mark every score below it, noting the (rare) ones equal to it, and take those in index
///    order until `k` are marked — deterministic even with ties (`-0.0` and `0.0` are equal
///    scores).
pub fn lowest_k(scores: &[f32], k: usize) -> Vec<bool> {
    if k == 0 {
        return vec![false; scores.len()];
    }
    let threshold = match sampled_threshold(scores, k).or_else(|| radix_threshold(scores, k)) {
        Some(key) => from_order_key(key),
        // At least as many wanted as there are present scores: all of them.
        None => return scores.iter().map(|s| !s.is_nan()).collect(),
    };
    // Mark in place, chunk by chunk on the cores; each core reports how many it marked and
    // which scores equal the threshold.
    let mut picked = vec![false; scores.len()];
    let len = chunk_len(scores.len());
    let parts: Vec<(usize, Vec<usize>)> = std::thread::scope(|scope| {
        let parts: Vec<_> = scores
            .chunks(len)
            .zip(picked.chunks_mut(len))
            .enumerate()
            .map(|(i, (c, o))| scope.spawn(move || passes::mark_below(c, o, threshold, i * len)))
            .collect();
        parts
            .into_iter()
            .map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let taken: usize = parts.iter().map(|(below, _)| below).sum();
    for i in parts
        .into_iter()
        .flat_map(|(_, equal)| equal)
        .take(k.saturating_sub(taken))
    {
        picked[i] = true;
    }
    picked
}

/// Scores the sample of [`sampled_threshold`] takes: enough that the bracket around the
/// `k`-th key holds well under 1 % of the scores.
const SAMPLE: usize = 1 << 18;

/// The order key of the `k`-th lowest present score, or `None` when its sampled bracket misses
/// (or the input is too small to sample).
///
/// A sample of [`SAMPLE`] scores (one at a pseudo-random place in each stretch of `n / SAMPLE`)
/// gives scores `lo ≤ hi` that bracket the `k`-th key with near certainty (±4.5 binomial
/// standard deviations of the sample's rank). One pass then counts the present scores below
/// `lo` and collects those in `[lo, hi]`; if the `k`-th falls among the collected ones, an
/// exact selection among them finds it. Otherwise `None`, and [`radix_threshold`] decides: the
/// sample only ever affects speed, never the result.
fn sampled_threshold(scores: &[f32], k: usize) -> Option<u32> {
    let n = scores.len();
    if n < 16 * SAMPLE {
        return None;
    }
    let step = n / SAMPLE;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut sample: Vec<u32> = (0..SAMPLE)
        .filter_map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let s = scores[i * step + (state >> 33) as usize % step];
            (!s.is_nan()).then(|| order_key(s))
        })
        .collect();
    // The k-th of n is at sample rank k · SAMPLE / n (NaN scores count in n, so they count in
    // the sample's size too).
    let p = k as f64 / n as f64;
    let rank = p * SAMPLE as f64;
    let margin = 4.5 * (SAMPLE as f64 * p * (1.0 - p)).sqrt() + 16.0;
    let lo_rank = (rank - margin).floor();
    let hi_rank = (rank + margin).ceil();
    let lo = if lo_rank < 0.0 {
        f32::NEG_INFINITY
    } else if lo_rank as usize >= sample.len() {
        return None;
    } else {
        from_order_key(*sample.select_nth_unstable(lo_rank as usize).1)
    };
    let hi = if hi_rank as usize >= sample.len() {
        f32::INFINITY
    } else {
        from_order_key(*sample.select_nth_unstable(hi_rank as usize).1)
    };
    bracketed_threshold(scores, k, lo, hi)
}

/// The order key of the `k`-th lowest present score if it lies in `[lo, hi]`, else `None`: one
/// pass counts the scores below `lo` and collects those inside. Every score below `lo`
/// precedes every score in `[lo, hi]` in the keys' order too, so the `k`-th is the
/// `(k − below)`-th inside the bracket by key.
fn bracketed_threshold(scores: &[f32], k: usize, lo: f32, hi: f32) -> Option<u32> {
    let parts = par_chunks(scores, |_, chunk| passes::count_and_bracket(chunk, lo, hi));
    let below: usize = parts.iter().map(|(b, _)| b).sum();
    if k <= below {
        return None;
    }
    let mut inside: Vec<u32> = parts
        .into_iter()
        .flat_map(|(_, i)| i)
        .map(order_key)
        .collect();
    if k - below > inside.len() {
        return None;
    }
    Some(*inside.select_nth_unstable(k - below - 1).1)
}

/// Buckets of the radix selection's first pass: the top 16 bits of the order key.
const BUCKETS: usize = 1 << 16;

/// The order key of the `k`-th lowest present score by radix selection (`None` when fewer
/// than `k` scores are present): a histogram of the top 16 bits of every key, then an exact
/// selection inside the bucket holding the `k`-th.
fn radix_threshold(scores: &[f32], k: usize) -> Option<u32> {
    let mut histogram = vec![0usize; BUCKETS];
    for part in par_chunks(scores, |_, chunk| {
        // u32 counts keep each core's table in cache (a chunk never holds 2³² scores here).
        let mut h = vec![0u32; BUCKETS];
        for s in chunk {
            h[(order_key(*s) >> 16) as usize] += !s.is_nan() as u32;
        }
        h
    }) {
        histogram
            .iter_mut()
            .zip(part)
            .for_each(|(x, y)| *x += y as usize);
    }
    let present: usize = histogram.iter().sum();
    if k > present {
        return None;
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
            .filter(|s| !s.is_nan() && order_key(**s) >> 16 == bucket)
            .map(|s| order_key(*s))
            .collect::<Vec<u32>>()
    })
    .concat();
    Some(*candidates.select_nth_unstable(k - below - 1).1)
}

/// The two full passes over the scores (SSE2 on x86-64, plain loops elsewhere), kernels of
/// `dwlth-kernels` so that this crate holds no `unsafe` code.
use dwlth_kernels::select as passes;

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

    /// Scores with both signs, both zeros, infinities, NaNs and many duplicates.
    fn awkward_scores(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                match (state >> 33) % 1000 {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => 0.0,
                    3 => f32::INFINITY,
                    4 => f32::NEG_INFINITY,
                    r => (r as f32 - 500.0) / 64.0 * ((state >> 20) % 7) as f32,
                }
            })
            .collect()
    }

    /// The present scores, sorted.
    fn sorted_present(scores: &[f32]) -> Vec<f32> {
        let mut present: Vec<f32> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
        present.sort_by(|a, b| a.total_cmp(b));
        present
    }

    /// `picked` marks exactly `k` present scores, none above the `k`-th lowest (`sorted[k − 1]`)
    /// and none left below it.
    fn assert_lowest(scores: &[f32], sorted: &[f32], picked: &[bool], k: usize) {
        assert_eq!(picked.iter().filter(|p| **p).count(), k, "k = {k}");
        let kth = sorted[k - 1];
        for (s, p) in scores.iter().zip(picked) {
            if *p {
                assert!(*s <= kth, "picked {s} above the k-th {kth} (k = {k})");
            } else {
                assert!(
                    s.is_nan() || *s >= kth,
                    "left {s} below the k-th {kth} (k = {k})"
                );
            }
        }
    }

    #[test]
    fn vector_passes_agree_with_plain_loops() {
        // Lengths around the 16-score blocks, brackets and thresholds at awkward values.
        for n in [0, 1, 15, 16, 17, 100, 1037] {
            let scores = awkward_scores(n, n as u64 + 3);
            for (lo, hi) in [
                (-1.0, 2.0),
                (0.0, 0.0),
                (-0.0, 3.5),
                (f32::NEG_INFINITY, f32::INFINITY),
                (5.0, 4.0),
            ] {
                let (below, inside) = passes::count_and_bracket(&scores, lo, hi);
                let (want_below, want_inside) = passes::scalar::count_and_bracket(&scores, lo, hi);
                assert_eq!(
                    (below, &inside),
                    (want_below, &want_inside),
                    "{n} [{lo}, {hi}]"
                );
            }
            for threshold in [0.0, -0.0, 1.5, f32::INFINITY, -3.0] {
                let (mut out, mut want_out) = (vec![true; n], vec![true; n]);
                let got = passes::mark_below(&scores, &mut out, threshold, 7);
                let want = passes::scalar::mark_below(&scores, &mut want_out, threshold, 7);
                assert_eq!((got, out), (want, want_out), "{n} < {threshold}");
            }
        }
    }

    #[test]
    fn a_missed_bracket_is_detected() {
        let scores = awkward_scores(5_000, 9);
        let k = 1_234;
        let kth = sorted_present(&scores)[k - 1];
        let exact = bracketed_threshold(&scores, k, kth - 1.0, kth + 1.0);
        assert_eq!(exact.map(from_order_key), Some(kth));
        assert_eq!(bracketed_threshold(&scores, k, kth + 0.5, kth + 9.0), None);
        assert_eq!(bracketed_threshold(&scores, k, kth - 9.0, kth - 0.5), None);
        // The bracket's ends themselves count as inside.
        let at_ends = bracketed_threshold(&scores, k, kth, kth);
        assert_eq!(at_ends.map(from_order_key), Some(kth));
    }

    #[test]
    fn the_sampled_path_agrees_with_sorting() {
        // Large enough to sample (16 · SAMPLE scores); NaNs, infinities and ties included.
        let scores = awkward_scores(16 * SAMPLE + 333, 5);
        let sorted = sorted_present(&scores);
        let present = sorted.len();
        for k in [
            1,
            1_000,
            scores.len() / 5,
            scores.len() / 2,
            present - 1,
            present,
        ] {
            assert!(
                sampled_threshold(&scores, k).is_some() || k < 1_000 || k == present,
                "the sample missed k = {k}"
            );
            assert_lowest(&scores, &sorted, &lowest_k(&scores, k), k);
        }
        let all = lowest_k(&scores, scores.len());
        assert_eq!(all, scores.iter().map(|s| !s.is_nan()).collect::<Vec<_>>());
    }

    #[test]
    fn plus_and_minus_zero_are_equal_scores_taken_in_index_order() {
        let scores = [1.0, 0.0, -0.0, 0.0, -0.0, -1.0];
        assert_eq!(
            lowest_k(&scores, 2),
            [false, true, false, false, false, true]
        );
        assert_eq!(
            lowest_k(&scores, 3),
            [false, true, true, false, false, true]
        );
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
