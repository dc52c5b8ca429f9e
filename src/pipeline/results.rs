//! One finished transfer run and the settings that name it.

use serde::{Deserialize, Serialize};

/// The outcome of fine-tuning one (pre-training, ticket) pair on a target task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Pre-training of θ_p: `std`, `fat`, `at` (or any name).
    pub pretrain: String,
    /// Target dataset.
    pub dataset: String,
    /// Fraction of the target training set used (1.0, 0.1, 0.01).
    pub fraction: f64,
    /// Downstream training regime: `st` or `at`.
    pub regime: String,
    /// Sparsity of the ticket (0 for the dense model).
    pub sparsity: f64,
    /// The ticket method (`TicketSpec::label`) when an experiment compares several; `None`
    /// for the dense model (every method's reference) and for single-method experiments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// Seed of the run.
    pub seed: u64,
    /// Test standard accuracy (of the best-SA checkpoint on validation).
    pub sa: f64,
    /// Test robust accuracy (of the best-RA checkpoint on validation), if measured.
    pub ra: Option<f64>,
    /// Test accuracy on adversarial images crafted on a separately trained robust model (the
    /// transfer attack of paper A Table A2), of the same checkpoint as RA (AT runs) or SA (ST
    /// runs); `None` unless the experiment asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_ra: Option<f64>,
    /// ROC-AUC of maximum-softmax-probability scores, target test images against the source
    /// dataset's test images, of the best-SA checkpoint; `None` unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ood_auroc: Option<f64>,
    /// Training time in seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Validation SA after every validated epoch (every `validate_every`-th and the last):
    /// whether the run had stopped improving (a verdict on undertrained networks says
    /// nothing). Empty for runs recorded before it was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_sa: Vec<f64>,
}

impl RunResult {
    /// Whether validation SA had plateaued: the mean of the last quarter of the epochs (at
    /// least two) is within `tolerance` of the mean of the same number of epochs before them.
    /// Means of windows, not single epochs, so that a small validation set's noise does not
    /// read as progress. `None` without a curve of at least four epochs to judge.
    pub fn plateaued(&self, tolerance: f64) -> Option<bool> {
        let n = self.val_sa.len();
        if n < 4 {
            return None;
        }
        let window = (n / 4).max(2);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let last = &self.val_sa[n - window..];
        let before = &self.val_sa[n - 2 * window..n - window];
        Some(mean(last) - mean(before) <= tolerance)
    }
}

impl RunResult {
    /// Reads a run written by the pipeline (`runs/<id>.json`).
    pub fn read(path: &std::path::Path) -> crate::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::DwlthError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let bad = |reason: String| {
            crate::DwlthError::InvalidArgument(format!(
                "`{}` is not a run result: {reason}",
                path.display()
            ))
        };
        let result: Self = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let fractions = [
            ("sparsity", Some(result.sparsity)),
            ("sa", Some(result.sa)),
            ("ra", result.ra),
            ("transfer_ra", result.transfer_ra),
            ("ood_auroc", result.ood_auroc),
        ];
        if let Some((name, value)) = fractions
            .iter()
            .find(|(_, v)| v.is_some_and(|v| !(0.0..=1.0).contains(&v)))
        {
            return Err(bad(format!("`{name}` = {value:?} is outside [0, 1]")));
        }
        if let Some((epoch, value)) = result
            .val_sa
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(bad(format!(
                "`val_sa` of epoch {epoch} = {value} is outside [0, 1]"
            )));
        }
        if !(result.fraction > 0.0 && result.fraction <= 1.0) {
            return Err(bad(format!(
                "`fraction` = {} is outside (0, 1]",
                result.fraction
            )));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_with_a_value_out_of_range_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        let good = RunResult {
            pretrain: "std".into(),
            dataset: "mnist".into(),
            fraction: 0.1,
            regime: "st".into(),
            sparsity: 0.5,
            ticket: None,
            seed: 0,
            sa: 0.9,
            ra: Some(0.4),
            transfer_ra: None,
            ood_auroc: None,
            seconds: 1.0,
            val_sa: Vec::new(),
        };
        std::fs::write(&path, serde_json::to_vec(&good).unwrap()).unwrap();
        assert_eq!(RunResult::read(&path).unwrap(), good);
        let mut bad = good.clone();
        bad.ra = Some(1.5);
        std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let message = RunResult::read(&path).unwrap_err().to_string();
        assert!(
            message.contains("`ra` = Some(1.5)") && message.contains("result.json"),
            "{message}"
        );
        let mut bad = good.clone();
        bad.val_sa = vec![0.5, 1.5];
        std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let message = RunResult::read(&path).unwrap_err().to_string();
        assert!(message.contains("`val_sa` of epoch 1"), "{message}");
        let mut bad = good;
        bad.fraction = 0.0;
        std::fs::write(&path, serde_json::to_vec(&bad).unwrap()).unwrap();
        let message = RunResult::read(&path).unwrap_err().to_string();
        assert!(message.contains("`fraction` = 0"), "{message}");
    }
}
