//! The two files a training checkpoint is resumed from, read and checked before use: the
//! bookkeeping (`state.json`) and the optimiser's state (`optimizer.bpk`).
//!
//! Checkpoints are published whole, so a kill cannot leave these files half-written; the checks
//! here are for files damaged or edited afterwards. A state whose history disagrees with its
//! epoch count, or an optimiser state for parameters the model does not have, would make a
//! resumed run continue from something other than what it wrote — or make Burn's optimiser
//! panic on the next step — so both are refused with the file named.

use std::collections::BTreeMap;
use std::path::Path;

use burn::optim::OptimizerRecord;
use burn::tensor::Bytes;
use burn_pack::DType;
use serde::{Deserialize, Serialize};

use crate::error::{AdvError, Result};

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch (0-based).
    pub epoch: usize,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy on the inputs the regime produced.
    pub train_acc: f64,
    /// Validation SA.
    pub val_sa: Option<f64>,
    /// Validation RA.
    pub val_ra: Option<f64>,
    /// Robust accuracy of the overfitting guard's probe.
    pub guard_ra: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The best value of a metric and its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// The epoch.
    pub epoch: usize,
    /// The value.
    pub value: f64,
}

/// The bookkeeping of a checkpoint (`state.json`): the epochs done and what they measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Epochs finished.
    pub epochs_done: usize,
    /// One record per finished epoch, in order.
    pub history: Vec<EpochRecord>,
    /// The best validation SA so far, and its epoch.
    pub best_sa: Option<Best>,
    /// The best validation RA so far, and its epoch.
    pub best_ra: Option<Best>,
    /// The best robust accuracy the overfitting guard has seen.
    pub best_guard: Option<f64>,
    /// Why training stopped early, if it did.
    pub stopped: Option<String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> AdvError {
    AdvError::Format {
        path: path.to_path_buf(),
        what: "training checkpoint",
        reason: reason.into(),
    }
}

fn is_fraction(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

impl CheckpointState {
    /// Reads a `state.json` and checks that it is consistent: one record per finished epoch,
    /// numbered in order; accuracies in [0, 1]; best values belonging to a finished epoch.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let state: Self = serde_json::from_slice(bytes).map_err(|e| bad(path, e.to_string()))?;
        if state.history.len() != state.epochs_done {
            return Err(bad(
                path,
                format!(
                    "says {} epochs are done but records {}",
                    state.epochs_done,
                    state.history.len()
                ),
            ));
        }
        for (k, r) in state.history.iter().enumerate() {
            if r.epoch != k {
                return Err(bad(
                    path,
                    format!("record {k} is numbered epoch {}", r.epoch),
                ));
            }
            let fractions = [Some(r.train_acc), r.val_sa, r.val_ra, r.guard_ra];
            if !fractions.into_iter().flatten().all(is_fraction) {
                return Err(bad(
                    path,
                    format!("epoch {k} holds an accuracy outside [0, 1]"),
                ));
            }
        }
        for (name, best) in [("best_sa", state.best_sa), ("best_ra", state.best_ra)] {
            if let Some(b) = best {
                if b.epoch >= state.epochs_done || !is_fraction(b.value) {
                    return Err(bad(
                        path,
                        format!(
                            "`{name}` (epoch {}, value {}) is not an accuracy of a finished epoch",
                            b.epoch, b.value
                        ),
                    ));
                }
            }
        }
        if state.best_guard.is_some_and(|g| !is_fraction(g)) {
            return Err(bad(path, "`best_guard` is not an accuracy in [0, 1]"));
        }
        Ok(state)
    }
}

/// Reads an optimiser state (`optimizer.bpk`, a burnpack file) and checks it against the
/// model's parameters (`shapes`, by parameter id — [`param_shapes`](dwlth_models::io::param_shapes)):
/// every tensor must belong to a parameter, be `f32` and have its shape, and every recorded
/// rank must be the parameter's.
pub fn parse_optimizer(
    bytes: Vec<u8>,
    path: &Path,
    shapes: &BTreeMap<u64, Vec<usize>>,
) -> Result<OptimizerRecord> {
    let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.clone()))
        .map_err(|e| bad(path, e.to_string()))?;
    for (key, value) in reader.scalars() {
        let Some((id, field)) = key.split_once('.') else {
            continue;
        };
        if field != "__rank" {
            continue;
        }
        let shape = id
            .parse::<u64>()
            .ok()
            .and_then(|id| shapes.get(&id))
            .ok_or_else(|| {
                bad(
                    path,
                    format!("holds state for `{id}`, not a parameter of the model"),
                )
            })?;
        if usize::try_from(*value).ok() != Some(shape.len()) {
            return Err(bad(
                path,
                format!("records rank {value:?} for parameter {id} of shape {shape:?}"),
            ));
        }
    }
    let tensors = reader
        .into_tensors()
        .map_err(|e| bad(path, e.to_string()))?;
    for t in tensors {
        let (name, dtype, shape, param_id, data) =
            t.into_parts().map_err(|e| bad(path, e.to_string()))?;
        let expected = param_id.and_then(|id| shapes.get(&id)).ok_or_else(|| {
            bad(
                path,
                format!("tensor `{name}` belongs to no parameter of the model"),
            )
        })?;
        if dtype != DType::F32 || shape.as_slice() != expected.as_slice() {
            return Err(bad(
                path,
                format!(
                    "tensor `{name}` is {dtype:?} {:?}; its parameter is F32 {expected:?}",
                    shape.as_slice()
                ),
            ));
        }
        if data.len() != 4 * expected.iter().product::<usize>() {
            return Err(bad(
                path,
                format!("tensor `{name}` holds {} bytes", data.len()),
            ));
        }
    }
    OptimizerRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| bad(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::{Device, Tensor};
    use dwlth_models::io::param_shapes;

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            lr: 0.1,
            train_loss: 1.0,
            train_acc: 0.5,
            val_sa: Some(0.5),
            val_ra: None,
            guard_ra: None,
            seconds: 1.0,
        }
    }

    fn state() -> CheckpointState {
        CheckpointState {
            epochs_done: 2,
            history: vec![record(0), record(1)],
            best_sa: Some(Best {
                epoch: 1,
                value: 0.5,
            }),
            best_ra: None,
            best_guard: None,
            stopped: None,
        }
    }

    fn parsed(state: &CheckpointState) -> Result<CheckpointState> {
        let bytes = serde_json::to_vec(state).unwrap();
        CheckpointState::parse(&bytes, Path::new("run/step-000002/state.json"))
    }

    #[test]
    fn a_consistent_state_reads_back_and_an_inconsistent_one_is_refused_by_name() {
        assert_eq!(parsed(&state()).unwrap(), state());
        let mut wrong = Vec::new();
        let mut s = state();
        s.epochs_done = 3;
        wrong.push((s, "says 3 epochs are done but records 2"));
        let mut s = state();
        s.history[1].epoch = 5;
        wrong.push((s, "record 1 is numbered epoch 5"));
        let mut s = state();
        s.history[0].val_sa = Some(1.5);
        wrong.push((s, "outside [0, 1]"));
        let mut s = state();
        s.best_sa = Some(Best {
            epoch: 2,
            value: 0.5,
        });
        wrong.push((s, "`best_sa` (epoch 2"));
        for (s, expected) in wrong {
            let message = parsed(&s).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("state.json"), "{message}");
        }
        let garbage = CheckpointState::parse(b"{", Path::new("state.json")).unwrap_err();
        assert!(garbage.to_string().contains("state.json"));
    }

    fn stepped(inputs: usize) -> (Linear, Vec<u8>) {
        let device = Device::flex().autodiff();
        let model = LinearConfig::new(inputs, 2).init(&device);
        let mut optim = SgdConfig::new()
            .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
            .init();
        let x = Tensor::<2>::ones([4, inputs], &device);
        let loss = model.forward(x).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(0.1, model, grads);
        let bytes = optim.to_record().into_bytes().unwrap().to_vec();
        (model, bytes)
    }

    #[test]
    fn an_optimiser_state_loads_only_into_the_model_it_was_made_for() {
        let path = Path::new("optimizer.bpk");
        let (model, bytes) = stepped(3);
        let record = parse_optimizer(bytes.clone(), path, &param_shapes(&model)).unwrap();
        assert!(!record.is_empty());
        // Another model's parameters: other ids.
        let (other, _) = stepped(3);
        let message = parse_optimizer(bytes.clone(), path, &param_shapes(&other))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("not a parameter of the model")
                || message.contains("belongs to no parameter"),
            "{message}"
        );
        // The same ids with other shapes.
        let mut shapes = param_shapes(&model);
        for shape in shapes.values_mut() {
            shape[0] += 1;
        }
        let message = parse_optimizer(bytes.clone(), path, &shapes)
            .unwrap_err()
            .to_string();
        assert!(message.contains("its parameter is F32"), "{message}");
        // Damaged bytes.
        let message = parse_optimizer(
            bytes[..bytes.len() / 2].to_vec(),
            path,
            &param_shapes(&model),
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("optimizer.bpk"), "{message}");
    }
}
