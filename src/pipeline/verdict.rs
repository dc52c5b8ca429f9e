//! The double-win verdict (paper A, §3): a subnetwork is *matching* when its mean metric over
//! seeds is at least the dense model's mean minus one standard deviation, under the same
//! pre-training, dataset, data fraction and training regime; it is a *double-win ticket* when
//! it matches for standard training on SA and for adversarial training on both SA and RA; the
//! *extreme sparsity* is the largest sparsity of the schedule at which it is double-win.
//!
//! Standard deviations are population deviations (NumPy's default `ddof = 0`). Beside the
//! criterion, every level carries the paired bootstrap interval of ticket − dense
//! ([`super::bootstrap`]), so a ✗ can be told from noise.

use std::collections::BTreeMap;

use serde::Serialize;

use super::bootstrap::{paired_difference, Difference};
use super::results::RunResult;

/// Mean and population standard deviation of a metric over seeds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Population standard deviation.
    pub std: f64,
    /// Number of runs.
    pub n: usize,
}

impl Stat {
    /// The statistics of `values` (`None` when empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Some(Self {
            mean,
            std: var.sqrt(),
            n: values.len(),
        })
    }

    /// Whether this subnetwork statistic matches the dense one: `mean ≥ dense.mean − dense.std`.
    pub fn matches(&self, dense: &Stat) -> bool {
        self.mean >= dense.mean - dense.std - 1e-12
    }
}

/// Key of a curve: everything but sparsity and seed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CurveKey {
    /// Pre-training.
    pub pretrain: String,
    /// Ticket method, when the results compare several (the dense point is in each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Target dataset.
    pub dataset: String,
    /// Data fraction, in thousandths (to be orderable).
    pub fraction_milli: u32,
    /// Downstream regime.
    pub regime: String,
}

/// How reports name a pre-training and, when results compare several, the ticket method:
/// `θ_AT`, `θ_AT · IMP`.
pub fn label(pretrain: &str, ticket: Option<&str>) -> String {
    match ticket {
        Some(t) => format!("θ_{} · {}", pretrain.to_uppercase(), t.to_uppercase()),
        None => format!("θ_{}", pretrain.to_uppercase()),
    }
}

impl CurveKey {
    /// The curve's pre-training and ticket method, as reports name them ([`label`]).
    pub fn label(&self) -> String {
        label(&self.pretrain, self.ticket.as_deref())
    }
}

impl Verdict {
    /// The row's pre-training and ticket method, as reports name them ([`label`]).
    pub fn label(&self) -> String {
        label(&self.pretrain, self.ticket.as_deref())
    }
}

/// Mean ± std of SA and RA at one sparsity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Sparsity.
    pub sparsity: f64,
    /// SA over seeds.
    pub sa: Stat,
    /// RA over seeds, where measured.
    pub ra: Option<Stat>,
    /// Accuracy under the transfer attack over seeds, where measured.
    pub transfer_ra: Option<Stat>,
    /// Out-of-distribution ROC-AUC over seeds, where measured.
    pub ood_auroc: Option<Stat>,
    /// SA of each seed, for paired comparisons with the dense model.
    #[serde(skip)]
    pub sa_by_seed: Vec<(u64, f64)>,
    /// RA of each seed, where measured.
    #[serde(skip)]
    pub ra_by_seed: Vec<(u64, f64)>,
}

/// Every curve of a result set: points sorted by sparsity. When runs carry ticket methods,
/// each method has its own curves and the dense runs (no method) are the first point of each.
pub fn curves(results: &[RunResult]) -> BTreeMap<CurveKey, Vec<Point>> {
    let mut methods: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for r in results {
        if let Some(t) = &r.ticket {
            let known = methods.entry((&r.pretrain, &r.dataset)).or_default();
            if !known.contains(&t.as_str()) {
                known.push(t);
            }
        }
    }
    let mut grouped: BTreeMap<CurveKey, BTreeMap<u64, Vec<&RunResult>>> = BTreeMap::new();
    for r in results {
        let key = |ticket: Option<&str>| CurveKey {
            pretrain: r.pretrain.clone(),
            ticket: ticket.map(str::to_string),
            dataset: r.dataset.clone(),
            fraction_milli: (r.fraction * 1000.0).round() as u32,
            regime: r.regime.clone(),
        };
        let keys = match (
            &r.ticket,
            methods.get(&(r.pretrain.as_str(), r.dataset.as_str())),
        ) {
            (None, Some(all)) if r.sparsity == 0.0 => all.iter().map(|t| key(Some(t))).collect(),
            (ticket, _) => vec![key(ticket.as_deref())],
        };
        let s = (r.sparsity * 1e6).round() as u64;
        for key in keys {
            grouped
                .entry(key)
                .or_default()
                .entry(s)
                .or_default()
                .push(r);
        }
    }
    grouped
        .into_iter()
        .map(|(key, by_sparsity)| {
            let points = by_sparsity
                .into_iter()
                .filter_map(|(s, runs)| {
                    let sa: Vec<f64> = runs.iter().map(|r| r.sa).collect();
                    let ra: Vec<f64> = runs.iter().filter_map(|r| r.ra).collect();
                    let transfer: Vec<f64> = runs.iter().filter_map(|r| r.transfer_ra).collect();
                    let ood: Vec<f64> = runs.iter().filter_map(|r| r.ood_auroc).collect();
                    Some(Point {
                        sparsity: s as f64 / 1e6,
                        sa: Stat::of(&sa)?,
                        ra: Stat::of(&ra),
                        transfer_ra: Stat::of(&transfer),
                        ood_auroc: Stat::of(&ood),
                        sa_by_seed: runs.iter().map(|r| (r.seed, r.sa)).collect(),
                        ra_by_seed: runs.iter().filter_map(|r| Some((r.seed, r.ra?))).collect(),
                    })
                })
                .collect();
            (key, points)
        })
        .collect()
}

/// The verdict at one sparsity level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelVerdict {
    /// Sparsity.
    pub sparsity: f64,
    /// Standard training, SA matches.
    pub st_sa: bool,
    /// Adversarial training, SA matches.
    pub at_sa: bool,
    /// Adversarial training, RA matches.
    pub at_ra: bool,
    /// All three: a double-win ticket.
    pub double_win: bool,
    /// Ticket − dense SA under standard training, paired over seeds, with its 95 % interval.
    pub st_sa_diff: Option<Difference>,
    /// Ticket − dense SA under adversarial training.
    pub at_sa_diff: Option<Difference>,
    /// Ticket − dense RA under adversarial training.
    pub at_ra_diff: Option<Difference>,
}

/// The verdict of one (pre-training, ticket method, dataset, fraction).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// Pre-training.
    pub pretrain: String,
    /// Ticket method, when the results compare several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Target dataset.
    pub dataset: String,
    /// Data fraction.
    pub fraction: f64,
    /// Per sparsity level (the dense level excluded).
    pub levels: Vec<LevelVerdict>,
    /// Largest double-win sparsity, if any.
    pub extreme_sparsity: Option<f64>,
}

/// The double-win verdicts of a result set. A (pre-training, dataset, fraction) needs runs
/// with both `st` and `at` and a dense (sparsity 0) point for each; levels missing a
/// measurement are not double-win.
pub fn verdicts(results: &[RunResult]) -> Vec<Verdict> {
    let curves = curves(results);
    let groups: std::collections::BTreeSet<CurveKey> = curves
        .keys()
        .map(|k| CurveKey {
            regime: String::new(),
            ..k.clone()
        })
        .collect();
    let find = |group: &CurveKey, regime: &str| {
        curves.get(&CurveKey {
            regime: regime.to_string(),
            ..group.clone()
        })
    };
    let mut out = Vec::new();
    for group in groups {
        let (Some(st), Some(at)) = (find(&group, "st"), find(&group, "at")) else {
            continue;
        };
        let CurveKey {
            pretrain,
            ticket,
            dataset,
            fraction_milli,
            ..
        } = group;
        let dense = |c: &Vec<Point>| c.iter().find(|p| p.sparsity == 0.0).cloned();
        let (Some(st0), Some(at0)) = (dense(st), dense(at)) else {
            continue;
        };
        let mut levels: Vec<f64> = st
            .iter()
            .chain(at.iter())
            .map(|p| p.sparsity)
            .filter(|s| *s > 0.0)
            .collect();
        levels.sort_by(|a, b| a.total_cmp(b));
        levels.dedup();
        let at_point = |s: f64, c: &Vec<Point>| c.iter().find(|p| p.sparsity == s).cloned();
        let level_verdicts: Vec<LevelVerdict> = levels
            .iter()
            .map(|&s| {
                let st_sa = at_point(s, st).is_some_and(|p| p.sa.matches(&st0.sa));
                let at_p = at_point(s, at);
                let at_sa = at_p.as_ref().is_some_and(|p| p.sa.matches(&at0.sa));
                let at_ra = match (at_p.as_ref().and_then(|p| p.ra), at0.ra) {
                    (Some(r), Some(r0)) => r.matches(&r0),
                    _ => false,
                };
                let st_p = at_point(s, st);
                LevelVerdict {
                    sparsity: s,
                    st_sa,
                    at_sa,
                    at_ra,
                    double_win: st_sa && at_sa && at_ra,
                    st_sa_diff: st_p
                        .and_then(|p| paired_difference(&st0.sa_by_seed, &p.sa_by_seed)),
                    at_sa_diff: at_p
                        .as_ref()
                        .and_then(|p| paired_difference(&at0.sa_by_seed, &p.sa_by_seed)),
                    at_ra_diff: at_p
                        .as_ref()
                        .and_then(|p| paired_difference(&at0.ra_by_seed, &p.ra_by_seed)),
                }
            })
            .collect();
        let extreme = level_verdicts
            .iter()
            .filter(|l| l.double_win)
            .map(|l| l.sparsity)
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
        out.push(Verdict {
            pretrain,
            ticket,
            dataset,
            fraction: fraction_milli as f64 / 1000.0,
            levels: level_verdicts,
            extreme_sparsity: extreme,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(regime: &str, sparsity: f64, seed: u64, sa: f64, ra: Option<f64>) -> RunResult {
        RunResult {
            pretrain: "at".into(),
            dataset: "cifar10".into(),
            fraction: 1.0,
            regime: regime.into(),
            sparsity,
            ticket: None,
            seed,
            sa,
            ra,
            // As the pipeline: every run faces the transfer attack, ST runs with their SA
            // checkpoint.
            transfer_ra: Some(ra.unwrap_or(sa) + 0.1),
            ood_auroc: Some(sa - 0.2),
            seconds: 0.0,
            val_sa: Vec::new(),
        }
    }

    #[test]
    fn curves_carry_the_transfer_attack_accuracy() {
        let results = dense();
        let curves = curves(&results);
        let at = curves
            .iter()
            .find(|(k, _)| k.regime == "at")
            .map(|(_, p)| &p[0])
            .unwrap();
        let (ra, transfer) = (at.ra.unwrap(), at.transfer_ra.unwrap());
        assert!((transfer.mean - ra.mean - 0.1).abs() < 1e-12);
        assert!((transfer.std - ra.std).abs() < 1e-12);
        let table = crate::report::transfer_table(&curves);
        assert!(table.contains("## Transfer attack") && table.contains("| θ_AT | cifar10 |"));
        let ood = crate::report::ood_table(&curves);
        assert!(
            ood.contains("Out-of-distribution") && ood.contains("70.00 ± 1.00"),
            "{ood}"
        );
        let st_only: Vec<RunResult> = results.into_iter().filter(|r| r.regime == "st").collect();
        assert!(crate::report::transfer_table(&super::curves(&st_only)).contains("| ST |"));
        let none: Vec<RunResult> = st_only
            .into_iter()
            .map(|r| RunResult {
                transfer_ra: None,
                ..r
            })
            .collect();
        assert!(crate::report::transfer_table(&super::curves(&none)).is_empty());
    }

    /// Dense ST SA 0.90 ± 0.01 (0.89, 0.91), dense AT SA 0.80 ± 0.02, RA 0.50 ± 0.02.
    fn dense() -> Vec<RunResult> {
        vec![
            run("st", 0.0, 0, 0.89, None),
            run("st", 0.0, 1, 0.91, None),
            run("at", 0.0, 0, 0.78, Some(0.48)),
            run("at", 0.0, 1, 0.82, Some(0.52)),
        ]
    }

    #[test]
    fn stats_are_population_statistics() {
        let s = Stat::of(&[0.89, 0.91]).unwrap();
        assert!((s.mean - 0.90).abs() < 1e-12 && (s.std - 0.01).abs() < 1e-12);
        assert!(Stat::of(&[]).is_none());
    }

    #[test]
    fn matching_not_matching_and_ties() {
        let mut rs = dense();
        // 0.5: exactly at the thresholds (0.89, 0.78, 0.48): ties match.
        rs.extend([
            run("st", 0.5, 0, 0.89, None),
            run("at", 0.5, 0, 0.78, Some(0.48)),
        ]);
        // 0.8: ST fine, AT RA just below its threshold.
        rs.extend([
            run("st", 0.8, 0, 0.95, None),
            run("at", 0.8, 0, 0.80, Some(0.4799)),
        ]);
        // 0.9: everything matches again (non-monotone on purpose).
        rs.extend([
            run("st", 0.9, 0, 0.90, None),
            run("st", 0.9, 1, 0.90, None),
            run("at", 0.9, 0, 0.79, Some(0.49)),
        ]);
        // 0.95: ST fails.
        rs.extend([
            run("st", 0.95, 0, 0.88, None),
            run("at", 0.95, 0, 0.85, Some(0.55)),
        ]);
        let v = verdicts(&rs);
        assert_eq!(v.len(), 1);
        let levels: Vec<(f64, bool, bool, bool, bool)> = v[0]
            .levels
            .iter()
            .map(|l| (l.sparsity, l.st_sa, l.at_sa, l.at_ra, l.double_win))
            .collect();
        assert_eq!(
            levels,
            [
                (0.5, true, true, true, true),
                (0.8, true, true, false, false),
                (0.9, true, true, true, true),
                (0.95, false, true, true, false),
            ]
        );
        assert_eq!(v[0].extreme_sparsity, Some(0.9));
    }

    #[test]
    fn incomplete_groups_give_no_verdict_or_no_double_win() {
        let mut rs = dense();
        rs.push(run("st", 0.5, 0, 0.95, None));
        let v = verdicts(&rs);
        assert!(!v[0].levels[0].double_win, "no AT run at 0.5");
        assert_eq!(v[0].extreme_sparsity, None);
        let only_st: Vec<RunResult> = rs.into_iter().filter(|r| r.regime == "st").collect();
        assert!(verdicts(&only_st).is_empty());
    }
}
