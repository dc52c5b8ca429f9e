//! One training step's gradients, on one device or split across several (data parallelism).
//!
//! With several devices the batch is cut into near-equal contiguous chunks, one per device.
//! Replica 0 is the model itself, on its own device; every other replica is a copy of the
//! current weights moved there. Each replica crafts its chunk's training inputs (the regime's
//! attack runs where its chunk lives), takes the mean cross-entropy over it weighted by the
//! chunk's share of the batch, and backpropagates; the gradients are moved to the model's
//! device and summed, so one optimiser step sees the gradient of the whole batch's mean loss.
//!
//! BatchNorm behaves as PyTorch's `DistributedDataParallel` does by default: each replica
//! normalises with its own chunk's statistics, and the running statistics follow replica 0
//! (DDP broadcasts rank 0's buffers). Models without BatchNorm in training mode get exactly
//! the one-device step on the whole batch, up to floating-point summation order.
//!
//! Replicas are issued in order from one host thread, so random draws (attack starts, noise)
//! happen in the same order in every run. GPU backends queue work asynchronously, so the
//! devices compute side by side while the host moves on to the next replica.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{Device, Int, Tensor};
use dwlth_models::mode::independent_copy;

use super::regime::Regime;
use crate::classifier::Classifier;
use crate::error::Result;

/// What one step produced: the gradients on the model's device and, still on the devices,
/// each chunk's mean loss, its size and its number of correct predictions.
pub(crate) struct Step {
    pub grads: GradientsParams,
    pub chunks: Vec<(Tensor<1>, usize, Tensor<1, Int>)>,
}

impl Step {
    /// The whole batch's mean loss, images and correct predictions of `chunks` (this waits
    /// for the devices).
    pub fn totals(chunks: Vec<(Tensor<1>, usize, Tensor<1, Int>)>) -> (f64, usize, usize) {
        let (mut loss, mut n, mut correct) = (0.0, 0, 0);
        for (l, size, c) in chunks {
            loss += l.into_scalar::<f32>() as f64 * size as f64;
            correct += c.into_scalar::<i64>() as usize;
            n += size;
        }
        (loss / n.max(1) as f64, n, correct)
    }
}

/// Sizes of `n` images cut into `k` near-equal contiguous chunks (the first ones one larger);
/// empty chunks are left out.
pub(crate) fn chunk_sizes(n: usize, k: usize) -> Vec<usize> {
    let k = k.max(1);
    (0..k)
        .map(|i| n / k + usize::from(i < n % k))
        .filter(|&s| s > 0)
        .collect()
}

/// The gradients of the mean cross-entropy of `model` on `images` / `labels` under `regime`,
/// split across `replicas` (the model's own device when empty or one).
pub(crate) fn step<M: Classifier>(
    model: &M,
    replicas: &[Device],
    regime: &Regime,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
) -> Result<Step> {
    let main = images.device();
    if replicas.len() <= 1 {
        let (loss, correct, grads) = chunk(model, regime, images, labels, None)?;
        let n = correct.1;
        return Ok(Step {
            grads,
            chunks: vec![(loss, n, correct.0)],
        });
    }
    let n = images.dims()[0];
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut chunks = Vec::new();
    let mut start = 0;
    for (i, size) in chunk_sizes(n, replicas.len()).into_iter().enumerate() {
        let device = &replicas[i];
        let x = images.clone().narrow(0, start, size).to_device(device);
        let y = labels.clone().narrow(0, start, size).to_device(device);
        start += size;
        let share = size as f64 / n as f64;
        let (loss, correct, grads) = if i == 0 {
            chunk(model, regime, x, y, Some(share))?
        } else {
            // Fresh running statistics: a replica's BatchNorm updates are its own.
            let replica = independent_copy(model).fork(device);
            let (loss, correct, grads) = chunk(&replica, regime, x, y, Some(share))?;
            let grads = if *device == main {
                grads
            } else {
                grads.to_device(&main, &replica)
            };
            (loss, correct, grads)
        };
        accumulator.accumulate(model, grads);
        chunks.push((loss, correct.1, correct.0));
    }
    Ok(Step {
        grads: accumulator.grads(),
        chunks,
    })
}

/// One replica's part: its chunk's mean loss, (correct predictions, chunk size) and the
/// gradients of the loss — scaled by `share` of the whole batch when given.
#[allow(clippy::type_complexity)]
fn chunk<M: Classifier>(
    model: &M,
    regime: &Regime,
    images: Tensor<4>,
    labels: Tensor<1, Int>,
    share: Option<f64>,
) -> Result<(Tensor<1>, (Tensor<1, Int>, usize), GradientsParams)> {
    let device = images.device();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let inputs = regime.inputs(model, images, labels.clone())?;
    let logits = model.logits(inputs.autodiff());
    let [n, _] = logits.dims();
    let correct = logits
        .clone()
        .argmax(1)
        .reshape([n])
        .equal(labels.clone())
        .int()
        .sum();
    let loss = ce.forward(logits, labels);
    let scaled = match share {
        Some(s) => loss.clone().mul_scalar(s),
        None => loss.clone(),
    };
    let grads = GradientsParams::from_grads(scaled.backward(), model);
    Ok((loss.detach(), (correct, n), grads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_batch_near_evenly() {
        assert_eq!(chunk_sizes(10, 3), vec![4, 3, 3]);
        assert_eq!(chunk_sizes(2, 4), vec![1, 1]);
        assert_eq!(chunk_sizes(8, 1), vec![8]);
        assert_eq!(chunk_sizes(0, 2), Vec::<usize>::new());
    }
}
