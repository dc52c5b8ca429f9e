//! The `double_win_cifar10` example's `smoke` preset end to end, on files the test writes in
//! the real CIFAR-10 / CIFAR-100 binary formats (the full datasets cannot be had offline).

use std::path::Path;

use dwlth::models::DeviceSpec;
use dwlth::pipeline::{run_experiment, Cifar10Preset, ExperimentConfig, RunOptions};

/// A 32×32 image whose colour says its class, with some per-image texture.
fn record(label: usize, classes: usize, i: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(3072);
    for c in 0..3 {
        let base = ((label * 255 / classes.max(1)) as u32 + c as u32 * 60) % 256;
        for p in 0..1024 {
            px.push(((base + ((p * 7 + i * 13) % 40) as u32) % 256) as u8);
        }
    }
    px
}

fn write_cifar10(root: &Path) {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for (file, count) in [
        ("data_batch_1.bin", 40),
        ("data_batch_2.bin", 40),
        ("data_batch_3.bin", 40),
        ("data_batch_4.bin", 40),
        ("data_batch_5.bin", 40),
        ("test_batch.bin", 64),
    ] {
        let mut bytes = Vec::new();
        for _ in 0..count {
            let label = n % 10;
            bytes.push(label as u8);
            bytes.extend(record(label, 10, n));
            n += 1;
        }
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}

fn write_cifar100(root: &Path) {
    let dir = root.join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    for (file, count) in [("train.bin", 300), ("test.bin", 100)] {
        let mut bytes = Vec::new();
        for i in 0..count {
            let fine = i % 100;
            bytes.push((fine / 5) as u8);
            bytes.push(fine as u8);
            bytes.extend(record(fine, 100, i));
        }
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}

#[test]
fn cifar10_smoke_preset_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (c10, c100) = (dir.path().join("cifar10"), dir.path().join("cifar100"));
    write_cifar10(&c10);
    write_cifar100(&c100);
    let config = ExperimentConfig::cifar10(Cifar10Preset::Smoke, c10, c100, &[]);
    assert_eq!(config.target.dataset, "cifar10");
    let out = dir.path().join("results");
    let summary = run_experiment(
        &config,
        &RunOptions {
            out: out.clone(),
            device: DeviceSpec::Cpu,
            replicas: Vec::new(),
            shard: None,
            verbose: false,
            prepare_only: false,
        },
    )
    .unwrap();
    assert_eq!(summary.results.len(), summary.planned);
    assert_eq!(summary.verdicts.len(), 3);
    assert!(out.join("report/double_win.md").exists());
}

#[test]
fn the_paper_preset_holds_the_papers_settings() {
    let c = ExperimentConfig::cifar10(Cifar10Preset::Paper, "a".into(), "b".into(), &[]);
    assert_eq!(c.model.arch, dwlth::models::Arch::ResNet50);
    assert_eq!(c.transfer.train.epochs, 100);
    assert_eq!(c.transfer.train.lr.base, 0.1);
    assert_eq!(c.transfer.seeds.len(), 3);
    assert_eq!(c.transfer.fractions, vec![1.0, 0.1, 0.01]);
    assert_eq!(c.transfer.test_attack, dwlth::adv::Attack::pgd20());
    let levels = dwlth::pipeline::imp_levels();
    assert_eq!(levels.len(), 19);
    assert!((levels[18] - 0.9856).abs() < 1e-4);
    assert!(c.validate().is_ok());
}
