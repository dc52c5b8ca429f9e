//! Data-limited transfer (paper A, §4.3): the offline experiment with 100 %, 10 % and 1 % of
//! the target training set, class-stratified or the reference code's first N.
//!
//! ```sh
//! cargo run --release --example data_limited_transfer -- [--first-n] [--out DIR]
//! ```

use std::path::PathBuf;

use dwlth::commands::run::{run, DemoData};
use dwlth::models::DeviceSpec;
use dwlth::pipeline::ExperimentConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Reuse freed activations instead of mapping fresh pages every step.
    dwlth::models::device::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let first_n = args.iter().any(|a| a == "--first-n");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| PathBuf::from("results/data-limited"), PathBuf::from);
    let data = DemoData::locate();
    data.ensure()?;
    let mut config = ExperimentConfig::offline_demo(data.fashion, data.mnist);
    config.name = "data-limited".into();
    // All 5,000 training digits, so that 1 % still holds 50 of them.
    config.target.train_limit = Some(5_000);
    config.transfer.fractions = vec![1.0, 0.1, 0.01];
    config.transfer.stratified = !first_n;
    println!("{}", run(&config, &out, &DeviceSpec::Cpu.into(), None)?);
    Ok(())
}
