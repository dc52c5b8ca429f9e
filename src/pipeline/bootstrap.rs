//! Paired bootstrap confidence intervals of a ticket's difference to the dense model.
//!
//! Why: the papers' criterion (mean ≥ dense mean − one std) says ✓ or ✗ but not whether a ✗
//! is a loss or two seeds' noise. Runs of a ticket and of the dense model with the same seed
//! share their data subset, order and random starts, so their *differences* vary far less than
//! either does; resampling seeds (with replacement) and averaging each resample's differences
//! gives the spread of the mean difference. An interval wholly below zero is a real loss at
//! this budget; one that holds zero cannot tell the ticket from the dense model.

use serde::Serialize;

/// Resamples per interval: the percentiles of 2,000 means are stable to a few thousandths.
const RESAMPLES: usize = 2000;

/// The mean of `ticket − dense` over paired seeds and its 95 % percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Difference {
    /// Mean difference (ticket − dense).
    pub mean: f64,
    /// 2.5th percentile of the resampled means.
    pub lo: f64,
    /// 97.5th percentile of the resampled means.
    pub hi: f64,
    /// Number of paired seeds.
    pub n: usize,
}

impl Difference {
    /// Whether the interval lies wholly below zero: the ticket loses at this budget.
    pub fn is_loss(&self) -> bool {
        self.hi < 0.0
    }

    /// `+1.2 [−0.5, +2.9]` in percentage points.
    pub fn points(&self) -> String {
        format!(
            "{:+.1} [{:+.1}, {:+.1}]",
            100.0 * self.mean,
            100.0 * self.lo,
            100.0 * self.hi
        )
    }
}

/// The paired bootstrap of `ticket − dense` over the seeds both have (`(seed, value)` pairs);
/// `None` without a common seed. The resampling is seeded from the data, so a report is the
/// same every time it is written.
pub fn paired_difference(dense: &[(u64, f64)], ticket: &[(u64, f64)]) -> Option<Difference> {
    let diffs: Vec<f64> = ticket
        .iter()
        .filter_map(|(seed, t)| dense.iter().find(|(s, _)| s == seed).map(|(_, d)| t - d))
        .collect();
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    let mean = diffs.iter().sum::<f64>() / n as f64;
    let mut state = diffs.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, d| {
        (h ^ d.to_bits()).wrapping_mul(0x0000_0100_0000_01B3)
    }) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            (0..n)
                .map(|_| diffs[(next() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (RESAMPLES - 1) as f64).round() as usize).min(RESAMPLES - 1)];
    Some(Difference {
        mean,
        lo: at(0.025),
        hi: at(0.975),
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_by_seed_and_brackets_the_mean() {
        let dense = [(0, 0.90), (1, 0.80), (2, 0.85), (9, 0.5)];
        // Every seed 2 points below its dense run, however far apart the seeds are.
        let ticket = [(0, 0.88), (1, 0.78), (2, 0.83)];
        let d = paired_difference(&dense, &ticket).unwrap();
        assert_eq!(d.n, 3);
        assert!((d.mean + 0.02).abs() < 1e-12);
        assert!((d.lo + 0.02).abs() < 1e-12 && (d.hi + 0.02).abs() < 1e-12);
        assert!(d.is_loss());
        assert_eq!(d.points(), "-2.0 [-2.0, -2.0]");
    }

    #[test]
    fn noise_gives_an_interval_across_zero() {
        let dense = [(0, 0.80), (1, 0.80), (2, 0.80)];
        let ticket = [(0, 0.83), (1, 0.77), (2, 0.79)];
        let d = paired_difference(&dense, &ticket).unwrap();
        assert!(d.lo < 0.0 && d.hi > 0.0 && !d.is_loss(), "{d:?}");
        assert!(d.lo >= -0.03 - 1e-12 && d.hi <= 0.03 + 1e-12);
        assert_eq!(paired_difference(&dense, &[(7, 0.5)]), None);
        // The same data, the same interval.
        assert_eq!(paired_difference(&dense, &ticket), Some(d));
    }
}
