//! How the tickets of different pre-trainings relate (paper A Fig. A8 and Fig. 7): the IoU of
//! their masks at each sparsity, and how many whole 3×3 / 1×1 kernels each prunes per stage.
//!
//! Reads an experiment's tickets (`tickets/<pretrain>/s<sparsity>.safetensors`, `lmp…`, IMP
//! rounds) and writes
//! `masks.md` (tables), `mask_iou_matrices.{svg,png}` (the IoU matrix at each sparsity),
//! `mask_similarity.{svg,png}` (IoU of every pair against sparsity) and
//! `zero_kernels.{svg,png}` (fraction of all-zero kernels against sparsity, per pre-training).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use dwlth_prune::analysis::{similarity, zero_kernels};
use dwlth_prune::MaskSet;

use super::matrix::{matrices_png, matrices_svg, Panel};
use super::{png, svg, Written};
use crate::error::{DwlthError, Result};

/// Every ticket of an experiment: pre-training → sparsity (as written in the file name) → masks.
pub type Tickets = BTreeMap<String, BTreeMap<String, MaskSet>>;

/// Reads the tickets of an experiment folder (those of the experiment last run there, through
/// its `experiment.json`), or of a folder of `<pretrain>/` folders — an experiment's `tickets/`
/// of the earlier layout, or one assembled by hand — holding `s<sparsity>.safetensors`,
/// `lmp<sparsity>.safetensors` and `imp*/round-KK/masks.safetensors`. An absent folder gives
/// no tickets.
pub fn read_tickets(dir: &Path) -> Result<Tickets> {
    if dir.join("experiment.json").exists() {
        return read_experiment_tickets(dir);
    }
    if dir.join("tickets").is_dir() {
        return read_ticket_folders(&dir.join("tickets"));
    }
    read_ticket_folders(dir)
}

/// The tickets an experiment's index names: pre-training → its tickets stage.
fn read_experiment_tickets(dir: &Path) -> Result<Tickets> {
    let index = crate::pipeline::records::ExperimentIndex::read(&dir.join("experiment.json"))?;
    let mut out = Tickets::new();
    for (name, key) in &index.tickets {
        let stage = dir.join("tickets").join(key);
        let levels = crate::pipeline::records::TicketIndex::read(&stage.join("tickets.json"))?;
        let mine = out.entry(name.clone()).or_default();
        for (sparsity, file) in levels.levels {
            mine.insert(format!("{sparsity:.4}"), MaskSet::load(stage.join(file))?);
        }
    }
    out.retain(|_, tickets| !tickets.is_empty());
    Ok(out)
}

/// Tickets in `dir/<pretrain>/` folders.
fn read_ticket_folders(dir: &Path) -> Result<Tickets> {
    let mut out = Tickets::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let sub = entry.path();
        if !sub.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let files = std::fs::read_dir(&sub).map_err(|e| DwlthError::Io {
            path: sub.clone(),
            source: e,
        })?;
        let mine = out.entry(name.clone()).or_default();
        for file in files.flatten() {
            let path = file.path();
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            // One-shot, random, structured and file tickets (`s0.9000`), learnt masks
            // (`lmp0.9000`), IMP rounds (`imp*/round-KK/masks.safetensors`).
            let level = stem
                .strip_prefix("lmp")
                .or_else(|| stem.strip_prefix('s'))
                .filter(|s| s.parse::<f64>().is_ok());
            let is_file = path.extension().is_some_and(|e| e == "safetensors");
            if let (Some(level), true) = (level, is_file) {
                mine.insert(level.to_string(), MaskSet::load(&path)?);
            } else if path.is_dir() && stem.starts_with("imp") {
                let rounds = std::fs::read_dir(&path).map_err(|e| DwlthError::Io {
                    path: path.clone(),
                    source: e,
                })?;
                for round in rounds.flatten() {
                    let masks = round.path().join("masks.safetensors");
                    if masks.exists() {
                        let set = MaskSet::load(&masks)?;
                        mine.entry(format!("{:.4}", set.sparsity())).or_insert(set);
                    }
                }
            }
        }
    }
    // Folders without tickets are not pre-trainings.
    out.retain(|_, tickets| !tickets.is_empty());
    Ok(out)
}

/// The tables as Markdown, and the two plots' series.
struct Tables {
    markdown: String,
    iou: Vec<svg::Series>,
    matrices: Vec<Panel>,
    zero: Vec<svg::Series>,
}

fn tables(tickets: &Tickets) -> Result<Tables> {
    let names: Vec<&String> = tickets.keys().collect();
    let mut levels: Vec<&String> = tickets.values().flat_map(|t| t.keys()).collect();
    levels.sort_by(|a, b| {
        let (x, y) = (
            a.parse::<f64>().unwrap_or(0.0),
            b.parse::<f64>().unwrap_or(0.0),
        );
        x.total_cmp(&y)
    });
    levels.dedup();
    let mut md = String::from("# Tickets of different pre-trainings\n\n## Mask similarity\n\nIntersection over union of the kept weights, |a ∩ b| / |a ∪ b|, between the tickets of two pre-trainings at the same sparsity (paper A, Fig. A8).\n\n");
    // (pre-training i, pre-training j) → (sparsity, IoU, 0) points of a plot series.
    type Points = Vec<(f64, f64, f64)>;
    let mut iou: BTreeMap<(usize, usize), Points> = BTreeMap::new();
    let mut matrices = Vec::new();
    for level in &levels {
        let s: f64 = level.parse().unwrap_or(0.0);
        let present: Vec<(usize, &MaskSet)> = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| tickets[*n].get(*level).map(|m| (i, m)))
            .collect();
        if present.len() < 2 {
            continue;
        }
        let _ = writeln!(md, "### Sparsity {:.2} %\n", 100.0 * s);
        let header: Vec<String> = present
            .iter()
            .map(|(i, _)| format!("θ_{}", names[*i].to_uppercase()))
            .collect();
        let _ = writeln!(md, "| | {} |", header.join(" | "));
        let _ = writeln!(md, "|---|{}", "---:|".repeat(present.len()));
        let k = present.len();
        let mut values = vec![vec![1.0; k]; k];
        for row in 0..k {
            for col in row + 1..k {
                let v = similarity(present[row].1, present[col].1)?;
                values[row][col] = v;
                values[col][row] = v;
                iou.entry((present[row].0, present[col].0))
                    .or_default()
                    .push((s, v, 0.0));
            }
        }
        for (row, cells) in values.iter().enumerate() {
            let cells: Vec<String> = cells.iter().map(|v| format!("{v:.3}")).collect();
            let _ = writeln!(md, "| {} | {} |", header[row], cells.join(" | "));
        }
        md.push('\n');
        matrices.push(Panel {
            title: format!("{:.2} %", 100.0 * s),
            labels: present
                .iter()
                .map(|(i, _)| names[*i].to_uppercase())
                .collect(),
            values,
        });
    }
    md.push_str("## Zero kernels per stage\n\nKernels (3×3 or 1×1 filters of one input channel) whose every weight is pruned, per stage (paper A, Fig. 7). More zero kernels mean a more structured, more easily accelerated ticket.\n\n");
    let mut zero = Vec::new();
    for name in &names {
        let mut points = Vec::new();
        let _ = writeln!(md, "### θ_{}\n", name.to_uppercase());
        let per_level: Vec<(f64, BTreeMap<String, dwlth_prune::analysis::StageKernels>)> = tickets
            [*name]
            .iter()
            .map(|(l, m)| (l.parse::<f64>().unwrap_or(0.0), zero_kernels(m)))
            .collect();
        let mut per_level = per_level;
        per_level.sort_by(|a, b| a.0.total_cmp(&b.0));
        let stages: Vec<String> = per_level
            .first()
            .map(|(_, z)| z.keys().cloned().collect())
            .unwrap_or_default();
        let _ = writeln!(md, "| sparsity | {} | all |", stages.join(" | "));
        let _ = writeln!(md, "|---:|{}---:|", "---:|".repeat(stages.len()));
        for (s, z) in &per_level {
            let cells: Vec<String> = stages
                .iter()
                .map(|st| {
                    z.get(st)
                        .map_or("–".into(), |k| format!("{} / {}", k.zero, k.total))
                })
                .collect();
            let (zeros, total) = z
                .values()
                .fold((0, 0), |(a, b), k| (a + k.zero, b + k.total));
            let fraction = zeros as f64 / total.max(1) as f64;
            points.push((*s, fraction, 0.0));
            let _ = writeln!(
                md,
                "| {:.2} % | {} | {:.2} % |",
                100.0 * s,
                cells.join(" | "),
                100.0 * fraction
            );
        }
        md.push('\n');
        zero.push(svg::Series {
            label: format!("θ_{}", name.to_uppercase()),
            points,
        });
    }
    let iou = iou
        .into_iter()
        .map(|((i, j), points)| svg::Series {
            label: format!("{}–{}", names[i].to_uppercase(), names[j].to_uppercase()),
            points,
        })
        .collect();
    Ok(Tables {
        markdown: md,
        iou,
        matrices,
        zero,
    })
}

/// Writes the mask report of the tickets [`read_tickets`] finds in `source` into `dir`
/// (nothing when there are none).
pub fn write_mask_report(source: &Path, dir: &Path, written: &mut Written) -> Result<()> {
    let tickets = read_tickets(source)?;
    if tickets.is_empty() {
        return Ok(());
    }
    let t = tables(&tickets)?;
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        dwlth_models::io::atomic_write(&path, bytes)?;
        written.files.push(path);
        Ok(())
    };
    put("masks.md", t.markdown.as_bytes())?;
    if !t.iou.is_empty() {
        let title = "mask similarity (IoU) between pre-trainings";
        put(
            "mask_similarity.svg",
            svg::plot(title, "IoU", &t.iou).as_bytes(),
        )?;
        put("mask_similarity.png", &png::plot(title, "IoU", &t.iou))?;
        let title = "IoU of the tickets of two pre-trainings";
        put(
            "mask_iou_matrices.svg",
            matrices_svg(title, &t.matrices).as_bytes(),
        )?;
        put("mask_iou_matrices.png", &matrices_png(title, &t.matrices))?;
    }
    let title = "all-zero kernels";
    put(
        "zero_kernels.svg",
        svg::plot(title, "zero kernels", &t.zero).as_bytes(),
    )?;
    put(
        "zero_kernels.png",
        &png::plot(title, "zero kernels", &t.zero),
    )?;
    Ok(())
}
