//! Exact selection of the `k` lowest scores without a full sort.

/// How many of `n` entries a fraction `amount` prunes: `round(amount · n)` with ties to even,
/// exactly as `torch.nn.utils.prune` computes it (Python's `round`).
pub fn count_to_prune(amount: f64, n: usize) -> usize {
    let k = (amount * n as f64).round_ties_even();
    (k.max(0.0) as usize).min(n)
}

/// Marks the `k` lowest `scores` (`true` = selected); NaN scores are never selected.
///
/// Runs in linear time: the `k`-th smallest value is found with `select_nth_unstable`, every
/// lower score is taken, and entries equal to it are taken in index order until `k` are —
/// so the result is deterministic even with ties.
pub fn lowest_k(scores: &[f32], k: usize) -> Vec<bool> {
    let n = scores.len();
    let mut picked = vec![false; n];
    let mut copy: Vec<f32> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
    if k == 0 {
        return picked;
    }
    if k >= copy.len() {
        return scores.iter().map(|s| !s.is_nan()).collect();
    }
    let (_, threshold, _) = copy.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
    let threshold = *threshold;
    let mut taken = 0;
    for (p, s) in picked.iter_mut().zip(scores) {
        if !s.is_nan() && s.total_cmp(&threshold).is_lt() {
            *p = true;
            taken += 1;
        }
    }
    for (p, s) in picked.iter_mut().zip(scores) {
        if taken == k {
            break;
        }
        if s.total_cmp(&threshold).is_eq() {
            *p = true;
            taken += 1;
        }
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
}
