//! `dwlth run --jobs N` and `dwlth demo`: an experiment's transfer runs on N worker processes
//! of this machine.
//!
//! Why processes: the small networks of data-limited runs are bound by per-operation overhead,
//! not arithmetic, so one run leaves most cores idle (measured on two cores: a width-4
//! ResNet-18 sweep ran 2.1× faster as two one-thread workers than as one two-thread process).
//! Threads cannot share the work: Burn's random generator is one per process, so two runs in
//! one process would draw from each other's stream and stop being reproducible. Workers are the
//! same mechanism as machines sharing a sweep — each runs `--shard i/N` on the same results
//! folder. Each worker computes with its share of the cores ([`worker_threads`]); a CPU's sums
//! depend on how the work is split between threads, in the last bits, so the results are bit
//! for bit those of one process run with as many threads (`RAYON_NUM_THREADS`), and agree with
//! other thread counts up to that rounding — as runs on two machines do.
//!
//! The coordinator first publishes every stage the runs share (θ_p, tickets, the transfer
//! attack's source model: `RunOptions::prepare_only`), so no two workers compute one; then it
//! starts the workers, shows one progress bar over their runs, and writes the report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dwlth_models::device::DeviceList;
use indicatif::{ProgressBar, ProgressStyle};

use super::run::summary_text;
use crate::error::{DwlthError, Result};
use crate::pipeline::{run_experiment, ExperimentConfig, RunOptions};

/// The variable through which a worker learns its coordinator's process id.
const WORKER_OF: &str = "DWLTH_WORKER_OF";

/// In a worker started by [`run_with_jobs`], ends the process once its coordinator is gone
/// (killed on its own, not with its process group): otherwise a second `--jobs` run on the
/// same folder would race the orphans on the same runs. Ending at any point is safe — every
/// write is crash-consistent — and the next run resumes. Does nothing in other processes.
pub fn exit_with_coordinator() {
    #[cfg(unix)]
    if let Some(coordinator) = std::env::var(WORKER_OF)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        if std::os::unix::process::parent_id() != coordinator {
            std::process::exit(130);
        }
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            // An orphan is adopted by another process: its parent id changes.
            if std::os::unix::process::parent_id() != coordinator {
                std::process::exit(130);
            }
        });
    }
}

/// The default number of workers: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads each of `workers` workers computes with: its share of the cores, at least one.
/// A worker that also spread its operations over every core would only contend with the others.
pub fn worker_threads(workers: usize) -> usize {
    (default_jobs() / workers.max(1)).max(1)
}

/// Runs `config` into `out` with `jobs` worker processes of the running executable (which must
/// be `dwlth`); returns the printable summary. `jobs` = 1 runs in this process.
pub fn run_with_jobs(
    config: &ExperimentConfig,
    out: &Path,
    devices: &DeviceList,
    jobs: usize,
) -> Result<String> {
    let options = |prepare_only| RunOptions {
        out: out.to_path_buf(),
        device: devices.main(),
        replicas: devices.replicas(),
        shard: None,
        verbose: true,
        prepare_only,
    };
    if jobs == 0 {
        return Err(DwlthError::InvalidArgument(
            "--jobs must be at least 1".into(),
        ));
    }
    if jobs == 1 {
        return Ok(summary_text(&run_experiment(config, &options(false))?, out));
    }
    let prepared = run_experiment(config, &options(true))?;
    if !prepared.pending.is_empty() {
        let workers = jobs.min(prepared.pending.len());
        run_workers(out, devices, workers, &prepared.pending)?;
    }
    let summary = run_experiment(config, &options(false))?;
    Ok(summary_text(&summary, out))
}

/// Starts `workers` processes on the shards of the experiment written to `out/config.toml`,
/// waits for all of them with a progress bar over `pending`, and names the first that failed
/// with the end of its log.
fn run_workers(
    out: &Path,
    devices: &DeviceList,
    workers: usize,
    pending: &[PathBuf],
) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| DwlthError::Io {
        path: PathBuf::from("dwlth"),
        source: e,
    })?;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| DwlthError::Io {
        path: logs.clone(),
        source: e,
    })?;
    let threads = worker_threads(workers);
    let mut children: Vec<(usize, PathBuf, Child)> = Vec::new();
    for i in 0..workers {
        let log = logs.join(format!("worker-{i}.log"));
        let file = std::fs::File::create(&log).map_err(|e| DwlthError::Io {
            path: log.clone(),
            source: e,
        })?;
        let child = Command::new(&exe)
            .arg("run")
            .arg("--config")
            .arg(out.join("config.toml"))
            .arg("--out")
            .arg(out)
            .arg("--shard")
            .arg(format!("{i}/{workers}"))
            .arg("--device")
            .arg(devices.to_string())
            .env("RAYON_NUM_THREADS", threads.to_string())
            .env(WORKER_OF, std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn();
        match child {
            Ok(child) => children.push((i, log, child)),
            Err(e) => {
                stop(&mut children);
                return Err(DwlthError::Io {
                    path: exe.clone(),
                    source: e,
                });
            }
        }
    }
    let bar = ProgressBar::new(pending.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "sweep [{{bar:30}}] {{pos}}/{{len}} runs on {workers} workers \
             {{elapsed_precise}}<{{eta_precise}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut failed = None;
    while !children.is_empty() {
        std::thread::sleep(Duration::from_millis(500));
        let done = pending
            .iter()
            .filter(|p| p.join("manifest.json").is_file())
            .count();
        bar.set_position(done as u64);
        let mut k = 0;
        while k < children.len() {
            match children[k].2.try_wait() {
                Ok(None) => k += 1,
                Ok(Some(status)) => {
                    let (i, log, _) = children.remove(k);
                    if !status.success() && failed.is_none() {
                        failed = Some((i, log, status.to_string()));
                    }
                }
                Err(e) => {
                    let (i, log, _) = children.remove(k);
                    failed.get_or_insert((i, log, e.to_string()));
                }
            }
        }
        if failed.is_some() {
            // One worker's error (a bad file, a full disk) would stop the others too.
            stop(&mut children);
        }
    }
    bar.finish_and_clear();
    match failed {
        None => Ok(()),
        Some((i, log, status)) => {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(DwlthError::InvalidArgument(format!(
                "worker {i} of {workers} failed ({status}); its log `{}` ends:\n{}\n\
                 Finished runs are kept: run the same command again to resume.",
                log.display(),
                tail.join("\n")
            )))
        }
    }
}

/// Kills and reaps the workers still running.
fn stop(children: &mut Vec<(usize, PathBuf, Child)>) {
    for (_, _, child) in children.iter_mut() {
        let _ = child.kill();
        let _ = child.wait();
    }
    children.clear();
}
