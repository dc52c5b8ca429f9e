//! `dwlth run --emit slurm|kubernetes`: a ready job array for an experiment's shards.
//!
//! Every shard writes a folder of its own (`<out>/shards/<index>`), so no two processes — or
//! machines — ever share a file; a killed task resumes from its checkpoints when the scheduler
//! reruns it. Once all have finished, `dwlth report <out> --merge <out>/shards/*` joins them
//! (refusing shards of another experiment) and writes the report.

use std::path::{Path, PathBuf};

use crate::error::{DwlthError, Result};

/// A cluster scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    /// A Slurm job array (`sbatch`).
    Slurm,
    /// A Kubernetes Indexed Job (`kubectl apply`).
    Kubernetes,
}

impl std::str::FromStr for Scheduler {
    type Err = DwlthError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "slurm" => Ok(Self::Slurm),
            "kubernetes" | "k8s" => Ok(Self::Kubernetes),
            other => Err(DwlthError::InvalidArgument(format!(
                "--emit `{other}`: expected slurm or kubernetes"
            ))),
        }
    }
}

/// What a job array runs.
#[derive(Debug, Clone)]
pub struct JobArray {
    /// The experiment's name (names the job).
    pub name: String,
    /// The experiment file, as the tasks will see it.
    pub config: PathBuf,
    /// The results folder; shard `i` writes `<out>/shards/<i>`.
    pub out: PathBuf,
    /// Number of shards (tasks).
    pub shards: usize,
    /// The tasks' `--device` (`cpu`, `cuda`, `wgpu`, or a list such as `cuda:0,cuda:1`); a task
    /// asks for one GPU per CUDA device named.
    pub device: String,
}

/// Quotes `text` for a POSIX shell.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

impl JobArray {
    /// Checks the settings a scheduler would otherwise reject later.
    pub fn validate(&self) -> Result<()> {
        if self.shards == 0 {
            return Err(DwlthError::InvalidArgument(
                "--shards must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// GPUs one task asks the scheduler for.
    fn gpus(&self) -> usize {
        self.device
            .split(',')
            .filter(|d| d.trim().starts_with("cuda"))
            .count()
    }

    /// The command one task runs, with `index` its shard (a shell expression).
    fn command(&self, index: &str, shard: &str) -> String {
        format!(
            "dwlth run --config {} --out {}/shards/\"{index}\" --shard {shard} --device {}",
            quoted(&shown(&self.config)),
            quoted(&shown(&self.out)),
            quoted(&self.device)
        )
    }

    fn merge_command(&self) -> String {
        let out = quoted(&shown(&self.out));
        format!("dwlth report {out} --merge {out}/shards/*")
    }

    /// A Slurm batch script: one array task per shard.
    pub fn slurm(&self) -> Result<String> {
        self.validate()?;
        let gpu = match self.gpus() {
            0 => String::new(),
            n => format!("#SBATCH --gres=gpu:{n}\n"),
        };
        Ok(format!(
            "#!/bin/bash\n\
             # dwlth experiment `{name}`: {n} shards as a Slurm job array.\n\
             # Submit with `sbatch <this file>` (add your partition, time and memory below). When\n\
             # every task has finished, merge the shards and write the report:\n\
             #   sbatch --dependency=afterok:<array job id> --wrap \"{merge}\"\n\
             # A task that fails or is pre-empted resumes from its checkpoints when rerun.\n\
             #SBATCH --job-name=dwlth-{job}\n\
             #SBATCH --array=0-{last}\n\
             #SBATCH --output=dwlth-{job}-%A_%a.log\n\
             {gpu}\
             set -euo pipefail\n\
             exec {command}\n",
            name = self.name,
            n = self.shards,
            merge = self.merge_command().replace('"', "\\\""),
            job = job_name(&self.name),
            last = self.shards - 1,
            command = self.command("${SLURM_ARRAY_TASK_ID}", "auto"),
        ))
    }

    /// A Kubernetes Indexed Job: one completion index per shard, the results on a shared volume.
    pub fn kubernetes(&self) -> Result<String> {
        self.validate()?;
        let gpu = match self.gpus() {
            0 => String::new(),
            n => format!(
                "          resources:\n            limits:\n              nvidia.com/gpu: {n}\n"
            ),
        };
        let command = self.command("$JOB_COMPLETION_INDEX", &format!("auto/{}", self.shards));
        Ok(format!(
            "# dwlth experiment `{name}`: {n} shards as a Kubernetes Indexed Job.\n\
             # Apply with `kubectl apply -f <this file>`. The image must hold the dwlth binary, the\n\
             # experiment file and its data at the paths below; the results go to the\n\
             # ReadWriteMany volume claim `dwlth-results`, mounted at the results folder. When\n\
             # every index has completed, merge the shards and write the report:\n\
             #   {merge}\n\
             apiVersion: batch/v1\n\
             kind: Job\n\
             metadata:\n\
             \x20 name: dwlth-{job}\n\
             spec:\n\
             \x20 completionMode: Indexed\n\
             \x20 completions: {n}\n\
             \x20 parallelism: {n}\n\
             \x20 backoffLimitPerIndex: 3\n\
             \x20 template:\n\
             \x20   spec:\n\
             \x20     restartPolicy: Never\n\
             \x20     containers:\n\
             \x20       - name: dwlth\n\
             \x20         image: dwlth:latest\n\
             \x20         command: [\"sh\", \"-c\", {command}]\n\
             {gpu}\
             \x20         volumeMounts:\n\
             \x20           - name: results\n\
             \x20             mountPath: {out}\n\
             \x20     volumes:\n\
             \x20       - name: results\n\
             \x20         persistentVolumeClaim:\n\
             \x20           claimName: dwlth-results\n",
            name = self.name,
            n = self.shards,
            merge = self.merge_command(),
            job = job_name(&self.name),
            command = yaml_string(&format!("exec {command}")),
            out = yaml_string(&shown(&self.out)),
        ))
    }
}

/// A job name both schedulers accept: lower-case letters, digits and `-`, at most 50 long.
fn job_name(name: &str) -> String {
    let mut out: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    out = out.trim_matches('-').to_string();
    out.truncate(50);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "experiment".into()
    } else {
        out
    }
}

/// A double-quoted YAML string.
fn yaml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(device: &str) -> JobArray {
        JobArray {
            name: "Fashion → MNIST demo".into(),
            config: PathBuf::from("/home/me/it's.toml"),
            out: PathBuf::from("/shared/results"),
            shards: 8,
            device: device.into(),
        }
    }

    #[test]
    fn a_slurm_array_runs_one_shard_per_task_into_its_own_folder() {
        let script = job("cuda").slurm().unwrap();
        assert!(script.starts_with("#!/bin/bash\n"), "{script}");
        assert!(script.contains("#SBATCH --array=0-7\n"), "{script}");
        assert!(
            script.contains("#SBATCH --job-name=dwlth-fashion---mnist-demo\n"),
            "{script}"
        );
        assert!(script.contains("#SBATCH --gres=gpu:1\n"), "{script}");
        assert!(
            script.contains(
                "exec dwlth run --config '/home/me/it'\\''s.toml' --out '/shared/results'/shards/\"${SLURM_ARRAY_TASK_ID}\" --shard auto --device 'cuda'\n"
            ),
            "{script}"
        );
        assert!(
            script.contains("dwlth report '/shared/results' --merge '/shared/results'/shards/*")
        );
        assert!(!job("cpu").slurm().unwrap().contains("--gres"));
        // Data-parallel tasks ask for one GPU per device.
        let two = job("cuda:0,cuda:1").slurm().unwrap();
        assert!(two.contains("#SBATCH --gres=gpu:2\n"), "{two}");
        assert!(two.contains("--device 'cuda:0,cuda:1'"), "{two}");
    }

    #[test]
    fn a_kubernetes_indexed_job_has_one_completion_per_shard() {
        let manifest = job("cpu").kubernetes().unwrap();
        for line in [
            "kind: Job\n",
            "  completionMode: Indexed\n",
            "  completions: 8\n",
            "  parallelism: 8\n",
            "            claimName: dwlth-results\n",
            "              mountPath: \"/shared/results\"\n",
        ] {
            assert!(manifest.contains(line), "{line}\n{manifest}");
        }
        assert!(manifest.contains("--shard auto/8"), "{manifest}");
        assert!(manifest.contains("$JOB_COMPLETION_INDEX"), "{manifest}");
        assert!(!manifest.contains("nvidia.com/gpu"));
        assert!(job("cuda:1")
            .kubernetes()
            .unwrap()
            .contains("nvidia.com/gpu: 1"));
        let mut none = job("cpu");
        none.shards = 0;
        assert!(none.kubernetes().is_err() && none.slurm().is_err());
        assert!("K8s".parse::<Scheduler>().is_ok() && "pbs".parse::<Scheduler>().is_err());
    }
}
