//! `dwlth data`: what a dataset folder holds, and downloading the published datasets.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dwlth_data::download::{self, FetchOptions};
use dwlth_data::{summarize, DatasetKind, Summary};

use crate::error::DwlthError;

/// `dwlth data …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DataCommand {
    /// Split sizes, number of classes and images per class of a dataset on disk.
    Info {
        /// cifar10, cifar100, svhn, mnist, fashion-mnist, or folder (class sub-folders,
        /// optionally under train/, val/, test/).
        #[arg(long)]
        dataset: String,
        /// The folder holding the dataset's files (e.g. what `dwlth data fetch` printed).
        #[arg(long)]
        root: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download a dataset into the data folder (checksums verified) and print its path.
    /// `$DWLTH_MIRROR` (a URL prefix) is tried before the canonical addresses.
    Fetch {
        /// cifar10, cifar100, svhn, mnist or fashion-mnist.
        #[arg(long)]
        dataset: String,
        /// Data folder; default `$DWLTH_DATA`, else the user cache folder (~/.cache/dwlth).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn kind(dataset: &str) -> crate::Result<DatasetKind> {
    Ok(dataset.parse::<DatasetKind>()?)
}

/// The report of `dwlth data info`: JSON (the [`Summary`]) or a table.
pub fn info(dataset: &str, root: &Path, json: bool) -> crate::Result<String> {
    let summary = summarize(kind(dataset)?, root)?;
    if json {
        return serde_json::to_string_pretty(&summary)
            .map_err(|e| DwlthError::InvalidArgument(format!("cannot write JSON: {e}")));
    }
    Ok(table(&summary))
}

fn table(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} in {}: {} classes",
        s.dataset,
        s.root.display(),
        s.num_classes
    );
    for split in &s.splits {
        let shape = split
            .shape
            .map(|[c, h, w]| format!(" of {c}x{h}x{w}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {:<6} {:>8} images{shape}", split.split, split.len);
    }
    let width = s
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 32);
    let _ = write!(out, "\n  {:>5}  {:<width$}", "label", "class");
    for split in &s.splits {
        let _ = write!(out, " {:>8}", split.split);
    }
    out.push('\n');
    for (label, name) in s.classes.iter().enumerate() {
        let _ = write!(out, "  {label:>5}  {name:<width$}");
        for split in &s.splits {
            let _ = write!(out, " {:>8}", split.label_counts.get(label).unwrap_or(&0));
        }
        out.push('\n');
    }
    out
}

/// Downloads (if needed) a dataset into the data folder and returns the folder to pass as
/// `--root`. Prints progress to stderr. `$DWLTH_MIRROR` names a mirror tried first.
pub fn fetch(dataset: &str, data_dir: Option<&Path>) -> crate::Result<PathBuf> {
    let kind = kind(dataset)?;
    let last_tenth = Arc::new(AtomicU64::new(u64::MAX));
    let progress: download::ProgressFn = Arc::new(move |file, got, total| {
        if let Some(total) = total.filter(|&t| t > 0) {
            let tenth = got * 10 / total;
            if last_tenth.swap(tenth, Ordering::Relaxed) != tenth {
                eprintln!("{file}: {}% of {:.1} MB", tenth * 10, total as f64 / 1e6);
            }
        }
    });
    let options = FetchOptions {
        progress: Some(progress),
        ..FetchOptions::from_env()
    };
    Ok(download::fetch(kind, data_dir, &options)?)
}

/// Runs one `dwlth data` subcommand, printing its result.
pub fn run(cmd: DataCommand) -> crate::Result<()> {
    match cmd {
        DataCommand::Info {
            dataset,
            root,
            json,
        } => println!("{}", info(&dataset, &root, json)?.trim_end()),
        DataCommand::Fetch { dataset, data_dir } => {
            let root = fetch(&dataset, data_dir.as_deref())?;
            println!("{}", root.display());
        }
    }
    Ok(())
}
