//! `dwlth import`: convert a checkpoint into the project's safetensors file.

use std::path::Path;

use dwlth_models::io::{import_resnet, save_resnet, ImportOptions, ImportReport};
use dwlth_models::DeviceSpec;

use crate::error::Result;

/// Imports `input` with `options` and writes the project's safetensors file to `output`.
pub fn run(
    input: &Path,
    output: &Path,
    options: &ImportOptions,
    device: DeviceSpec,
) -> Result<ImportReport> {
    let device = device.device()?;
    let (model, report) = import_resnet(input, options, &device)?;
    save_resnet(&model, output)?;
    Ok(report)
}

/// A short human-readable account of an import.
pub fn summary(report: &ImportReport) -> String {
    let masks = report
        .loaded
        .iter()
        .filter(|k| k.ends_with("weight_mask"))
        .count();
    let mut lines = vec![format!(
        "loaded {} tensors ({} masks), skipped {}, defaulted {}",
        report.loaded.len(),
        masks,
        report.skipped.len(),
        report.defaulted.len()
    )];
    let group = |keys: &[String]| -> String {
        // Group keys into families (`*.num_batches_tracked`, `optimizer.*`,
        // `model.module.attacker.*`) to keep the output short.
        let mut groups = std::collections::BTreeMap::<String, usize>::new();
        for k in keys {
            let family = if k.ends_with("num_batches_tracked") {
                "*.num_batches_tracked".to_string()
            } else {
                let parts: Vec<&str> = k.split('.').collect();
                let depth = if matches!(parts[0], "model" | "state_dict") {
                    3
                } else {
                    1
                };
                format!("{}.*", parts[..depth.min(parts.len())].join("."))
            };
            *groups.entry(family).or_default() += 1;
        }
        groups
            .iter()
            .map(|(h, n)| format!("{h} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !report.skipped.is_empty() {
        lines.push(format!("  skipped: {}", group(&report.skipped)));
    }
    let defaulted_other: Vec<&String> = report
        .defaulted
        .iter()
        .filter(|k| !k.ends_with("weight_mask"))
        .collect();
    if !defaulted_other.is_empty() {
        lines.push(format!(
            "  not in the file, set from options: {}",
            defaulted_other
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let masks_default = report.defaulted.len() - defaulted_other.len();
    if masks_default > 0 {
        lines.push(format!(
            "  {masks_default} layer(s) without a mask: kept dense"
        ));
    }
    lines.join("\n")
}
