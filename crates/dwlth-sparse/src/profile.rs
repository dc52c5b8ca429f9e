//! Per-layer wall-clock times of a sparse forward pass ([`super::SparseResNet::profile`]).

use std::cell::RefCell;
use std::time::Instant;

use crate::error::Result;

/// Wall-clock time of one step of a profiled forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    /// Torchvision path of the layer (`layer2.0.conv2`), or `maxpool`, `avgpool`, `fc`. A
    /// sparse stem's entry, `conv1`, includes the max-pool fused with it.
    pub name: String,
    /// Seconds, the input layout of a convolution included.
    pub seconds: f64,
    /// Multiply-adds the step performed over the batch (zero for the pools): for a
    /// convolution, the weights it multiplies (see [`SparseResNet::macs`]) times its output
    /// positions. `macs / seconds` is the step's rate.
    ///
    /// [`SparseResNet::macs`]: super::SparseResNet::macs
    pub macs: usize,
}

/// Where a forward pass sends its layer times: nowhere, or a list.
pub(super) enum Recorder {
    Off,
    On(RefCell<Vec<LayerTime>>),
}

impl Recorder {
    /// Runs `step`, recording its time and `macs(&output)` under `name` when on.
    pub fn time<T>(
        &self,
        name: &str,
        macs: impl FnOnce(&T) -> usize,
        step: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        match self {
            Recorder::Off => step(),
            Recorder::On(times) => {
                let start = Instant::now();
                let out = step()?;
                let seconds = start.elapsed().as_secs_f64();
                times.borrow_mut().push(LayerTime {
                    name: name.to_string(),
                    seconds,
                    macs: macs(&out),
                });
                Ok(out)
            }
        }
    }

    /// The times recorded, in order.
    pub fn into_times(self) -> Vec<LayerTime> {
        match self {
            Recorder::Off => Vec::new(),
            Recorder::On(times) => times.into_inner(),
        }
    }
}
