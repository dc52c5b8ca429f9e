//! The double-win pipeline of paper A: pre-trained weights θ_p, tickets on the source task,
//! transfer with standard and adversarial training, SA / RA, the double-win verdict, reports.

pub mod bootstrap;
pub mod config;
pub mod cost;
pub mod data;
pub mod merge;
pub(crate) mod records;
pub mod results;
pub mod run;
mod stages;
pub mod tickets;
mod transfer;
pub mod verdict;

pub use config::{
    imp_levels, Cifar10Preset, DataSpec, ExperimentConfig, ModelSpec, PretrainSpec, TransferSpec,
};
pub use merge::{merge_shards, MergeSummary};
pub use results::RunResult;
pub use run::{run_experiment, ExperimentSummary, RunOptions};
pub use tickets::TicketSpec;
pub use verdict::{curves, verdicts, LevelVerdict, Stat, Verdict};
