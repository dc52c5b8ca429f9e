//! What a report concludes, in words and numbers drawn from the runs: the paired intervals of
//! ticket − dense, which dense references had not converged, and one paragraph on paper A's
//! claim — generated, so it cannot drift from the results it describes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::pipeline::results::RunResult;
use crate::pipeline::verdict::Verdict;

/// Validation SA may still rise this much, mean of the last quarter of the epochs against the
/// quarter before, for a run to count as converged (two percentage points).
pub const PLATEAU_TOLERANCE: f64 = 0.02;

/// A (pre-training, dataset, data fraction in thousandths) group: one row of the verdict table.
pub type Group = (String, String, u32);

fn group_of(pretrain: &str, dataset: &str, fraction: f64) -> Group {
    (
        pretrain.to_string(),
        dataset.to_string(),
        (fraction * 1000.0).round() as u32,
    )
}

/// The groups whose dense reference runs (sparsity 0, any regime or seed) had not plateaued,
/// and a section listing those runs and how many could not be judged.
pub fn convergence(results: &[RunResult]) -> (BTreeSet<Group>, String) {
    let dense: Vec<&RunResult> = results.iter().filter(|r| r.sparsity == 0.0).collect();
    let mut rising = Vec::new();
    let mut unjudged = 0;
    let mut groups = BTreeSet::new();
    for r in &dense {
        match r.plateaued(PLATEAU_TOLERANCE) {
            Some(true) => {}
            Some(false) => {
                groups.insert(group_of(&r.pretrain, &r.dataset, r.fraction));
                rising.push(*r);
            }
            None => unjudged += 1,
        }
    }
    let mut out = String::from("\n## Convergence\n\n");
    let _ = write!(
        out,
        "A run has converged when the mean validation SA of its last quarter of validations \
         (at least two) is within {:.0} points of the mean of the quarter before. Of {} dense reference runs, {} had \
         converged, {} were still improving and {} had too short a curve to judge (fewer than \
         four validations).",
        100.0 * PLATEAU_TOLERANCE,
        dense.len(),
        dense.len() - rising.len() - unjudged,
        rising.len(),
        unjudged
    );
    if rising.is_empty() {
        out.push('\n');
    } else {
        out.push_str(
            " Rows of the double-win table marked † compare tickets with a dense model that was \
             still improving:\n\n| pre-training | dataset | data | regime | seed | validation SA, last epochs |\n|---|---|---:|---|---:|---|\n",
        );
        for r in rising {
            let tail: Vec<String> = r
                .val_sa
                .iter()
                .rev()
                .take(4)
                .rev()
                .map(|v| format!("{:.1}", 100.0 * v))
                .collect();
            let _ = writeln!(
                out,
                "| θ_{} | {} | {}% | {} | {} | {} |",
                r.pretrain.to_uppercase(),
                r.dataset,
                100.0 * r.fraction,
                r.regime.to_uppercase(),
                r.seed,
                tail.join(" → ")
            );
        }
    }
    (groups, out)
}

/// Ticket − dense of every verdict level and criterion, with the paired 95 % bootstrap interval
/// over seeds, and whether a failed criterion is a loss (interval below zero) or noise.
pub fn differences_table(verdicts: &[Verdict]) -> String {
    let mut out = String::from(
        "\n## Ticket − dense, with 95 % intervals\n\nMean difference in percentage points over paired seeds (the ticket and the dense model trained with the same seed), with its 95 % paired bootstrap interval. A failed criterion is a **loss** when the interval lies below zero, and cannot be told from noise otherwise.\n\n| pre-training | dataset | data | sparsity | ST SA | AT SA | AT RA | failed criteria |\n|---|---|---:|---:|---|---|---|---|\n",
    );
    for v in verdicts {
        for l in &v.levels {
            let cell = |d: Option<crate::pipeline::bootstrap::Difference>| {
                d.map_or("–".to_string(), |d| d.points())
            };
            let failed: Vec<String> = [
                (l.st_sa, l.st_sa_diff, "ST-SA"),
                (l.at_sa, l.at_sa_diff, "AT-SA"),
                (l.at_ra, l.at_ra_diff, "AT-RA"),
            ]
            .into_iter()
            .filter(|(ok, _, _)| !ok)
            .map(|(_, d, name)| {
                let kind = match d {
                    Some(d) if d.is_loss() => "loss",
                    Some(_) => "noise",
                    None => "unmeasured",
                };
                format!("{name} ({kind})")
            })
            .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {}% | {:.2}% | {} | {} | {} | {} |",
                v.label(),
                v.dataset,
                100.0 * v.fraction,
                100.0 * l.sparsity,
                cell(l.st_sa_diff),
                cell(l.at_sa_diff),
                cell(l.at_ra_diff),
                if failed.is_empty() {
                    "none".to_string()
                } else {
                    failed.join(", ")
                }
            );
        }
    }
    out
}

fn percent(s: Option<f64>) -> String {
    s.map_or("none".to_string(), |s| format!("{:.0} %", 100.0 * s))
}

/// One paragraph on paper A's claim — robust pre-training gives double-win tickets at higher
/// sparsity, also when little target data is used — drawn from `verdicts`, whatever they show;
/// with several ticket methods, each is judged on its own and then compared.
pub fn what_this_shows(verdicts: &[Verdict], unconverged: &BTreeSet<Group>) -> String {
    type Setting = (Option<String>, String, std::cmp::Reverse<u32>);
    let mut settings: BTreeMap<Setting, Vec<&Verdict>> = BTreeMap::new();
    for v in verdicts {
        let key = (
            v.ticket.clone(),
            v.dataset.clone(),
            std::cmp::Reverse((v.fraction * 1000.0).round() as u32),
        );
        settings.entry(key).or_default().push(v);
    }
    let mut out = String::from("\n## What this shows\n\n");
    if settings.is_empty() {
        out.push_str(
            "No setting has both standard and adversarial transfer runs of a dense model and \
             its tickets, so there is no double-win verdict to draw from.\n",
        );
        return out;
    }
    let (mut supported, mut judged) = (0, 0);
    let mut sentences = Vec::new();
    for ((ticket, dataset, std::cmp::Reverse(milli)), group) in &settings {
        let extremes: Vec<String> = group
            .iter()
            .map(|v| {
                format!(
                    "{} from θ_{}",
                    percent(v.extreme_sparsity),
                    v.pretrain.to_uppercase()
                )
            })
            .collect();
        let method = ticket.as_ref().map_or(String::new(), |t| {
            format!(" and {} tickets", t.to_uppercase())
        });
        if group.iter().all(|v| v.extreme_sparsity.is_none()) {
            if group.iter().any(|v| v.pretrain == "std") && group.len() > 1 {
                judged += 1;
            }
            sentences.push(format!(
                "With {}% of the {dataset} training data{method}, no pre-training gives a \
                 double-win ticket at any sparsity.",
                *milli as f64 / 10.0
            ));
            continue;
        }
        let mut sentence = format!(
            "With {}% of the {dataset} training data{method}, the sparsest double-win tickets \
             are at {}",
            *milli as f64 / 10.0,
            extremes.join(", ")
        );
        let standard = group.iter().find(|v| v.pretrain == "std");
        let robust = group.iter().filter(|v| v.pretrain != "std").max_by(|a, b| {
            let e = |v: &Verdict| v.extreme_sparsity.unwrap_or(0.0);
            e(a).total_cmp(&e(b))
        });
        if let (Some(s), Some(r)) = (standard, robust) {
            judged += 1;
            let (es, er) = (
                s.extreme_sparsity.unwrap_or(0.0),
                r.extreme_sparsity.unwrap_or(0.0),
            );
            let verb = if er > es {
                supported += 1;
                "higher than"
            } else if er == es {
                "no higher than"
            } else {
                "lower than"
            };
            let _ = write!(
                sentence,
                ": robust pre-training (θ_{}) reaches a sparsity {verb} standard pre-training's",
                r.pretrain.to_uppercase()
            );
        }
        sentence.push('.');
        sentences.push(sentence);
    }
    out.push_str(&sentences.join(" "));
    let _ = write!(
        out,
        " Paper A's claim — robust pre-training gives double-win tickets at higher sparsity, \
         with full and with limited data — holds in {supported} of the {judged} settings that \
         have both a standard and a robust pre-training."
    );
    out.push_str(&methods_compared(verdicts));
    let (mut losses, mut noise) = (0, 0);
    for l in verdicts.iter().flat_map(|v| &v.levels) {
        for (ok, d) in [
            (l.st_sa, l.st_sa_diff),
            (l.at_sa, l.at_sa_diff),
            (l.at_ra, l.at_ra_diff),
        ] {
            match (ok, d) {
                (false, Some(d)) if d.is_loss() => losses += 1,
                (false, Some(_)) => noise += 1,
                _ => {}
            }
        }
    }
    let _ = write!(
        out,
        " Of the {} criteria tickets failed, {losses} are losses (the 95 % interval of ticket − \
         dense lies below zero) and {noise} cannot be told from seed-to-seed noise.",
        losses + noise
    );
    let marked = verdicts
        .iter()
        .filter(|v| unconverged.contains(&group_of(&v.pretrain, &v.dataset, v.fraction)))
        .count();
    if marked == 0 {
        out.push_str(" Every dense reference that could be judged had converged.\n");
    } else {
        let _ = writeln!(
            out,
            " {marked} of the {} rows (†) rest on a dense reference still improving at its last \
             epochs: their verdicts compare undertrained networks.",
            verdicts.len()
        );
    }
    out
}

/// With several ticket methods: for how many (pre-training, dataset, fraction) each method's
/// extreme sparsity is the highest, and each method's mean ticket − dense difference at the
/// levels every method has. Empty with one method.
fn methods_compared(verdicts: &[Verdict]) -> String {
    let mut by_row: BTreeMap<Group, Vec<&Verdict>> = BTreeMap::new();
    for v in verdicts.iter().filter(|v| v.ticket.is_some()) {
        by_row
            .entry(group_of(&v.pretrain, &v.dataset, v.fraction))
            .or_default()
            .push(v);
    }
    let rows: Vec<&Vec<&Verdict>> = by_row.values().filter(|r| r.len() > 1).collect();
    if rows.is_empty() {
        return String::new();
    }
    let method = |v: &Verdict| v.ticket.clone().unwrap_or_default().to_uppercase();
    let mut higher: BTreeMap<String, usize> = BTreeMap::new();
    // Per method: sums and counts of ticket − dense (ST SA, AT SA, AT RA) at shared levels.
    let mut diffs: BTreeMap<String, [(f64, usize); 3]> = BTreeMap::new();
    for row in &rows {
        let e = |v: &Verdict| v.extreme_sparsity.unwrap_or(0.0);
        let best = row.iter().map(|v| e(v)).fold(0.0, f64::max);
        if let [one] = row
            .iter()
            .filter(|v| e(v) == best)
            .collect::<Vec<_>>()
            .as_slice()
        {
            *higher.entry(method(one)).or_default() += 1;
        }
        let shared: Vec<u64> = row[0]
            .levels
            .iter()
            .map(|l| (l.sparsity * 1e6).round() as u64)
            .filter(|s| {
                row.iter().all(|v| {
                    v.levels
                        .iter()
                        .any(|l| (l.sparsity * 1e6).round() as u64 == *s)
                })
            })
            .collect();
        for v in row.iter() {
            let sums = diffs.entry(method(v)).or_default();
            for l in v
                .levels
                .iter()
                .filter(|l| shared.contains(&((l.sparsity * 1e6).round() as u64)))
            {
                for (k, d) in [l.st_sa_diff, l.at_sa_diff, l.at_ra_diff]
                    .iter()
                    .enumerate()
                {
                    if let Some(d) = d {
                        sums[k].0 += d.mean;
                        sums[k].1 += 1;
                    }
                }
            }
        }
    }
    let n = rows.len();
    let mut out = if higher.is_empty() {
        format!(
            " Side by side on the same pre-trainings, neither ticket method reaches a higher \
             extreme sparsity than the other in any of the {n} (pre-training, data) pairs."
        )
    } else {
        let counts: Vec<String> = higher
            .iter()
            .map(|(m, k)| format!("{m} tickets in {k}"))
            .collect();
        format!(
            " Side by side on the same pre-trainings, the higher extreme sparsity comes from {} \
             of the {n} (pre-training, data) pairs (the rest tie).",
            counts.join(" and ")
        )
    };
    let means: Vec<String> = diffs
        .iter()
        .map(|(m, sums)| {
            let cell = |(sum, count): (f64, usize)| {
                if count == 0 {
                    "–".to_string()
                } else {
                    format!("{:+.1}", 100.0 * sum / count as f64)
                }
            };
            format!(
                "{m} {} / {} / {}",
                cell(sums[0]),
                cell(sums[1]),
                cell(sums[2])
            )
        })
        .collect();
    let _ = write!(
        out,
        " At the sparsities both have, the mean ticket − dense difference in points (ST SA / AT \
         SA / AT RA) is {}.",
        means.join("; ")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::verdict::verdicts;

    fn run(pretrain: &str, regime: &str, sparsity: f64, seed: u64, sa: f64) -> RunResult {
        RunResult {
            pretrain: pretrain.into(),
            dataset: "mnist".into(),
            fraction: 0.1,
            regime: regime.into(),
            sparsity,
            ticket: None,
            seed,
            sa,
            ra: (regime == "at").then_some(sa / 2.0),
            transfer_ra: None,
            ood_auroc: None,
            seconds: 0.0,
            val_sa: if pretrain == "std" {
                vec![0.1, 0.2, 0.3, 0.4]
            } else {
                vec![0.6, 0.6, 0.6, 0.61]
            },
        }
    }

    fn results() -> Vec<RunResult> {
        let mut out = Vec::new();
        for pretrain in ["std", "at"] {
            for seed in 0..3 {
                let jitter = 0.01 * seed as f64;
                for regime in ["st", "at"] {
                    out.push(run(pretrain, regime, 0.0, seed, 0.8 + jitter));
                    // θ_AT's ticket equals its dense model; θ_STD's loses 10 points.
                    let loss = if pretrain == "std" { 0.1 } else { 0.0 };
                    out.push(run(pretrain, regime, 0.5, seed, 0.8 + jitter - loss));
                }
            }
        }
        out
    }

    #[test]
    fn the_paragraph_states_what_the_numbers_show() {
        let results = results();
        let v = verdicts(&results);
        let (unconverged, section) = convergence(&results);
        assert!(section.contains("| θ_STD | mnist | 10% | ST | 0 | 10.0 → 20.0 → 30.0 → 40.0 |"));
        assert_eq!(unconverged.len(), 1);
        let text = what_this_shows(&v, &unconverged);
        assert!(
            text.contains("50 % from θ_AT, none from θ_STD")
                || text.contains("none from θ_STD, 50 % from θ_AT"),
            "{text}"
        );
        assert!(text.contains("reaches a sparsity higher than"), "{text}");
        assert!(text.contains("holds in 1 of the 1 settings"), "{text}");
        assert!(
            text.contains("3 are losses") && text.contains("0 cannot"),
            "{text}"
        );
        assert!(text.contains("1 of the 2 rows (†)"), "{text}");
        // No double-win ticket anywhere: one short sentence, still judged against the claim.
        let losing: Vec<RunResult> = results
            .iter()
            .map(|r| RunResult {
                sa: if r.sparsity > 0.0 { r.sa - 0.2 } else { r.sa },
                ..r.clone()
            })
            .collect();
        let none = what_this_shows(&verdicts(&losing), &unconverged);
        assert!(
            none.contains("no pre-training gives a double-win ticket at any sparsity")
                && none.contains("holds in 0 of the 1 settings"),
            "{none}"
        );
        let table = differences_table(&v);
        assert!(table.contains("ST-SA (loss)"), "{table}");
        assert!(
            table.contains("| θ_AT | mnist | 10% | 50.00% | +0.0 [+0.0, +0.0]"),
            "{table}"
        );
    }

    #[test]
    fn methods_side_by_side_are_compared() {
        // The same runs as two methods: OMP's tickets as above, IMP's 5 points better.
        let mut results: Vec<RunResult> = Vec::new();
        for r in self::results() {
            if r.sparsity == 0.0 {
                results.push(r);
                continue;
            }
            for (ticket, gain) in [("omp", 0.0), ("imp", 0.05)] {
                results.push(RunResult {
                    ticket: Some(ticket.into()),
                    sa: r.sa + gain,
                    ..r.clone()
                });
            }
        }
        let v = verdicts(&results);
        assert_eq!(v.len(), 4, "(θ_STD, θ_AT) × (OMP, IMP)");
        let text = what_this_shows(&v, &BTreeSet::new());
        assert!(text.contains("and IMP tickets") && text.contains("and OMP tickets"));
        // θ_STD's IMP ticket (−5 points) fails like its OMP ticket (−10), θ_AT's both pass:
        // a tie in both rows; IMP's mean SA difference is 5 points above OMP's (RA unchanged).
        assert!(
            text.contains("neither ticket method reaches a higher"),
            "{text}"
        );
        assert!(
            text.contains("IMP +0.0 / +0.0 / -2.5; OMP -5.0 / -5.0 / -2.5"),
            "{text}"
        );
    }
}
