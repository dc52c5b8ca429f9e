//! Reports of an experiment: every run as JSON, curves as CSV, the double-win table as
//! Markdown, and accuracy–sparsity plots as SVG and PNG (drawn with plotters; docs/reports.md).

pub mod contour;
mod draw;
pub mod findings;
mod font;
mod lines;
pub mod masks;
pub mod matrix;
pub mod png;
pub mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use dwlth_models::io::atomic_write;

use crate::error::Result;
use crate::pipeline::results::RunResult;
use std::collections::BTreeMap;

use crate::pipeline::verdict::{curves, verdicts, CurveKey, Point, Stat, Verdict};

/// The files a report wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Every file, in writing order.
    pub files: Vec<PathBuf>,
}

/// The double-win table: one row per (pre-training, dataset, fraction), one column per
/// sparsity level, ✓ for a double-win ticket; the last column is the extreme sparsity.
pub fn markdown_table(verdicts: &[Verdict]) -> String {
    markdown_table_marked(verdicts, &Default::default())
}

/// [`markdown_table`] with the rows of `unconverged` groups marked †.
pub fn markdown_table_marked(
    verdicts: &[Verdict],
    unconverged: &std::collections::BTreeSet<findings::Group>,
) -> String {
    let mut levels: Vec<f64> = verdicts
        .iter()
        .flat_map(|v| v.levels.iter().map(|l| l.sparsity))
        .collect();
    levels.sort_by(|a, b| a.total_cmp(b));
    levels.dedup();
    let mut out = String::from("| pre-training | dataset | data |");
    for s in &levels {
        let _ = write!(out, " {:.2}% |", 100.0 * s);
    }
    out.push_str(" extreme sparsity |\n|---|---|---|");
    for _ in &levels {
        out.push_str(":-:|");
    }
    out.push_str("---|\n");
    for v in verdicts {
        let group = (
            v.pretrain.clone(),
            v.dataset.clone(),
            (v.fraction * 1000.0).round() as u32,
        );
        let mark = if unconverged.contains(&group) {
            " †"
        } else {
            ""
        };
        let _ = write!(
            out,
            "| {}{mark} | {} | {}% |",
            v.label(),
            v.dataset,
            100.0 * v.fraction
        );
        for s in &levels {
            let cell = match v.levels.iter().find(|l| l.sparsity == *s) {
                Some(l) if l.double_win => "✓".to_string(),
                Some(l) => {
                    let mut miss = Vec::new();
                    if !l.st_sa {
                        miss.push("ST-SA");
                    }
                    if !l.at_sa {
                        miss.push("AT-SA");
                    }
                    if !l.at_ra {
                        miss.push("AT-RA");
                    }
                    format!("✗ {}", miss.join(","))
                }
                None => "–".to_string(),
            };
            let _ = write!(out, " {cell} |");
        }
        let extreme = v
            .extreme_sparsity
            .map_or("none".to_string(), |s| format!("{:.2}%", 100.0 * s));
        let _ = writeln!(out, " {extreme} |");
    }
    out
}

/// The first cells of a per-sparsity table row: pre-training, dataset, data, regime, sparsity.
fn row_key(key: &CurveKey, p: &Point) -> String {
    format!(
        "| {} | {} | {}% | {} | {:.2}% |",
        key.label(),
        key.dataset,
        key.fraction_milli as f64 / 10.0,
        key.regime.to_uppercase(),
        100.0 * p.sparsity
    )
}

/// `mean ± std` in percent, `–` when not measured.
fn pct(s: Option<Stat>) -> String {
    s.map_or("–".to_string(), |s| {
        format!("{:.2} ± {:.2}", 100.0 * s.mean, 100.0 * s.std)
    })
}

/// A titled table with one row per curve point that `cells` gives cells for; empty when none
/// does.
fn point_table(
    curves: &BTreeMap<CurveKey, Vec<Point>>,
    title_and_header: &str,
    cells: impl Fn(&Point) -> Option<String>,
) -> String {
    let mut rows = String::new();
    for (key, points) in curves {
        for p in points {
            if let Some(cells) = cells(p) {
                let _ = writeln!(rows, "{} {cells} |", row_key(key, p));
            }
        }
    }
    if rows.is_empty() {
        return rows;
    }
    format!("{title_and_header}{rows}")
}

/// The transfer-attack table (paper A Table A2): per curve and sparsity, the white-box RA (AT
/// runs) beside the accuracy on examples crafted on a separate robust model. Empty when no run
/// measured it.
pub fn transfer_table(curves: &BTreeMap<CurveKey, Vec<Point>>) -> String {
    point_table(
        curves,
        "\n## Transfer attack\n\nTest accuracy (%) on adversarial images crafted on a separately trained dense robust model (paper A, Table A2), beside SA and the white-box RA, mean ± std over seeds.\n\n| pre-training | dataset | data | regime | sparsity | SA | white-box RA | transfer-attack accuracy |\n|---|---|---:|---|---:|---:|---:|---:|\n",
        |p| {
            p.transfer_ra.map(|t| {
                format!("{} | {} | {}", pct(Some(p.sa)), pct(p.ra), pct(Some(t)))
            })
        },
    )
}

/// The out-of-distribution table (paper B Fig. 8): per curve and sparsity, the MSP ROC-AUC of
/// target test images against the source dataset's. Empty when no run measured it.
pub fn ood_table(curves: &BTreeMap<CurveKey, Vec<Point>>) -> String {
    point_table(
        curves,
        "\n## Out-of-distribution detection\n\nROC-AUC (%) of maximum-softmax-probability scores, target test images (in) against the source dataset's test images (out), of the best-SA checkpoint (paper B, Fig. 8), mean ± std over seeds.\n\n| pre-training | dataset | data | regime | sparsity | ROC-AUC |\n|---|---|---:|---|---:|---:|\n",
        |p| p.ood_auroc.map(|s| pct(Some(s))),
    )
}

/// One pre-training's (and ticket method's) points in a plot panel.
type Line<'a> = (String, &'a Vec<crate::pipeline::verdict::Point>);

/// Writes `results.json`, `curves.csv`, `double_win.md` and one SVG and PNG per (dataset,
/// fraction, regime, metric) into `dir`, and, when `dir` is an experiment's `report/` folder
/// next to its `tickets/`, the mask report of [`masks::write_mask_report`]. Returns the
/// verdicts and the files. Runs are listed in one order — pre-training, sparsity, dataset,
/// fraction, regime, seed (then ticket method) — whatever order they are given in, so a report rebuilt from a
/// folder (or merged from shards) is the same file as the one the run wrote.
pub fn write_report(results: &[RunResult], dir: &Path) -> Result<(Vec<Verdict>, Written)> {
    let mut sorted = results.to_vec();
    sorted.sort_by(|a, b| {
        let key = |r: &RunResult| {
            (
                r.pretrain.clone(),
                r.sparsity.to_bits(),
                r.dataset.clone(),
                r.fraction.to_bits(),
                r.regime.clone(),
                r.seed,
                r.ticket.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let results = sorted.as_slice();
    let mut written = Written::default();
    let mut put = |name: String, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        atomic_write(&path, bytes)?;
        written.files.push(path);
        Ok(())
    };
    let json = serde_json::to_vec_pretty(results).unwrap_or_default();
    put("results.json".into(), &json)?;

    let curves = curves(results);
    let mut csv =
        String::from("pretrain,ticket,dataset,fraction,regime,sparsity,n,sa_mean,sa_std,ra_mean,ra_std,transfer_ra_mean,transfer_ra_std,ood_auroc_mean,ood_auroc_std\n");
    for (key, points) in &curves {
        for p in points {
            let cells = |stat: Option<Stat>| {
                stat.map_or((String::new(), String::new()), |r| {
                    (format!("{:.6}", r.mean), format!("{:.6}", r.std))
                })
            };
            let (ra_m, ra_s) = cells(p.ra);
            let (tr_m, tr_s) = cells(p.transfer_ra);
            let (ood_m, ood_s) = cells(p.ood_auroc);
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{:.6},{},{:.6},{:.6},{},{},{},{},{},{}",
                key.pretrain,
                key.ticket.as_deref().unwrap_or(""),
                key.dataset,
                key.fraction_milli as f64 / 1000.0,
                key.regime,
                p.sparsity,
                p.sa.n,
                p.sa.mean,
                p.sa.std,
                ra_m,
                ra_s,
                tr_m,
                tr_s,
                ood_m,
                ood_s
            );
        }
    }
    put("curves.csv".into(), csv.as_bytes())?;

    let verdicts = verdicts(results);
    let (unconverged, convergence) = findings::convergence(results);
    let mut md = String::from("# Double-win tickets\n\nA ticket is double-win at a sparsity when, over seeds, its mean SA under standard training and its mean SA and RA under adversarial training are each at least the dense model's mean minus one standard deviation. ✗ names the failed criteria; † marks a row whose dense reference was still improving.\n\n");
    md.push_str(&markdown_table_marked(&verdicts, &unconverged));
    md.push_str(&findings::what_this_shows(&verdicts, &unconverged));
    md.push_str(&findings::differences_table(&verdicts));
    md.push_str(&convergence);
    md.push_str(&transfer_table(&curves));
    md.push_str(&ood_table(&curves));
    put("double_win.md".into(), md.as_bytes())?;

    // Plots: one per (dataset, fraction, regime, metric), a line per pre-training (and method).
    let mut panels: std::collections::BTreeMap<(String, u32, String), Vec<Line<'_>>> =
        Default::default();
    for (key, points) in &curves {
        panels
            .entry((key.dataset.clone(), key.fraction_milli, key.regime.clone()))
            .or_default()
            .push((key.label(), points));
    }
    for ((dataset, fraction, regime), lines) in panels {
        for metric in ["sa", "ra"] {
            let series: Vec<svg::Series> = lines
                .iter()
                .map(|(label, points)| svg::Series {
                    label: label.clone(),
                    points: points
                        .iter()
                        .filter_map(|p| {
                            let s = if metric == "sa" { Some(p.sa) } else { p.ra };
                            s.map(|s| (p.sparsity, s.mean, s.std))
                        })
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            if series.is_empty() {
                continue;
            }
            let title = format!(
                "{dataset} · {} · {}% data",
                regime.to_uppercase(),
                fraction as f64 / 10.0
            );
            let svg = svg::plot(&title, &metric.to_uppercase(), &series);
            put(
                format!("{dataset}_f{fraction}_{regime}_{metric}.svg"),
                svg.as_bytes(),
            )?;
            let png = png::plot(&title, &metric.to_uppercase(), &series);
            put(format!("{dataset}_f{fraction}_{regime}_{metric}.png"), &png)?;
        }
    }
    // The experiment's tickets, when `dir` is its `report/` folder.
    if let Some(experiment) = dir.parent() {
        masks::write_mask_report(experiment, dir, &mut written)?;
    }
    Ok((verdicts, written))
}
