//! Training: regimes (ST, AT, FAT, random smoothing), schedules, and the training loop.

mod config;
mod data;
mod parallel;
mod regime;
mod resume;
mod schedule;
mod trainer;

pub use config::{OverfitGuard, TrainConfig};
pub use data::{Batch, EpochBatches, EvalSet, InMemory, IntoBatch};
pub use regime::Regime;
pub use resume::{parse_optimizer, Best, CheckpointState, EpochRecord};
pub use schedule::{LrSchedule, Schedule};
pub use trainer::{TrainOutcome, Trainer};
