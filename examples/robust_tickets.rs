//! Paper B's comparisons on the offline data: one-shot magnitude (OMP) tickets against random,
//! learnable-mask (LMP), upstream and downstream IMP and structured (row / kernel / channel) tickets, and linear evaluation against whole-model fine-tuning.
//!
//! ```sh
//! cargo run --release --example robust_tickets -- [omp|random|lmp|imp|ds-imp|row|kernel|channel] [--linear] [--out DIR]
//! ```

use std::path::PathBuf;

use dwlth::adv::Regime;
use dwlth::commands::run::{run, DemoData};
use dwlth::models::DeviceSpec;
use dwlth::pipeline::{ExperimentConfig, TicketSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Reuse freed activations instead of mapping fresh pages every step.
    dwlth::models::device::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let method = args.first().map_or("omp", String::as_str);
    let linear = args.iter().any(|a| a == "--linear");
    let data = DemoData::locate();
    data.ensure()?;
    let mut config = ExperimentConfig::offline_demo(data.fashion, data.mnist);
    let sparsities = vec![0.5, 0.8, 0.95];
    config.tickets = vec![match method {
        "omp" => TicketSpec::Omp { sparsities },
        "random" => TicketSpec::Random {
            sparsities,
            seed: 0,
        },
        "imp" | "ds-imp" => {
            // IMP: 20 % per round, one re-training epoch per round; upstream on the source task,
            // `ds-imp` downstream on the target task.
            let mut retrain = config.pretrain_train.clone();
            retrain.epochs = 1;
            retrain.regime = Regime::Standard;
            TicketSpec::Imp {
                rounds: 5,
                sparsities: Vec::new(),
                retrain,
                downstream: method == "ds-imp",
            }
        }
        other => {
            return Err(format!(
                "unknown method `{other}`; expected omp, random, lmp, imp, ds-imp, row, kernel or channel"
            )
            .into())
        }
    }];
    config.transfer.linear = linear;
    config.transfer.fractions = vec![1.0];
    config.name = format!(
        "robust-tickets-{method}{}",
        if linear { "-linear" } else { "" }
    );
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || PathBuf::from("results").join(&config.name),
            PathBuf::from,
        );
    println!("{}", run(&config, &out, &DeviceSpec::Cpu.into(), None)?);
    Ok(())
}
