//! Crash consistency of `dwlth run` and `dwlth train`. Each is aborted right after every one of
//! its durable file writes in turn — through the store's fault-injection hook, like `kill -9`:
//! no destructor runs — then resumed, and must end with the same results, masks, weights,
//! checkpoints and reports as an uninterrupted run: tensors bit for bit, JSON minus timings,
//! every other file byte for byte, and no file more or less (no temporary left behind).
//!
//! The data are two tiny IDX datasets written here (12×12 images, three classes); the
//! experiment has a pre-training with PGD, two IMP rounds with adversarial re-training, and
//! standard and adversarial transfer of every ticket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dwlth::adv::{Attack, AttackMode, Regime};
use dwlth::pipeline::{ExperimentConfig, TicketSpec};

fn dwlth(args: &[&str], fault: Option<usize>, trace: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dwlth"));
    cmd.args(args)
        .env_remove("DWLTH_FAULT_AFTER_WRITES")
        .env_remove("DWLTH_FAULT_TRACE")
        // One thread per process: the cases run two at a time, and results must not depend on
        // how the machine is shared.
        .env("RAYON_NUM_THREADS", "1");
    if let Some(k) = fault {
        cmd.env("DWLTH_FAULT_AFTER_WRITES", k.to_string());
    }
    if trace {
        cmd.env("DWLTH_FAULT_TRACE", "1");
    }
    cmd.output().expect("the dwlth binary runs")
}

/// An IDX file: big-endian magic (unsigned bytes, `dims.len()` dimensions), sizes, data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    bytes
}

/// A learnable three-class MNIST-layout dataset: class `c` brightens row band `c` (`shift`
/// moves the bands, so source and target differ), with seeded noise.
fn write_dataset(dir: &Path, shift: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let side = 12usize;
    let mut state = seed;
    for (prefix, n) in [("train", 72u32), ("t10k", 24u32)] {
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n as usize {
            let class = i % 3;
            for row in 0..side {
                for _ in 0..side {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let noise = (state >> 58) as u8;
                    let band = (row / 4 + shift) % 3 == class;
                    pixels.push(if band { 180 + noise } else { 40 + noise });
                }
            }
            labels.push(class as u8);
        }
        let images = idx(&[n, side as u32, side as u32], &pixels);
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), images).unwrap();
        let labels = idx(&[n], &labels);
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), labels).unwrap();
    }
}

fn experiment(source: &Path, target: &Path) -> ExperimentConfig {
    let mut c = ExperimentConfig::smoke(source.into(), target.into());
    c.name = "crash".into();
    for spec in [&mut c.source, &mut c.target] {
        spec.dataset = "mnist".into();
        spec.train_limit = None;
        spec.test_limit = None;
        spec.validation = 12;
    }
    c.source.root = source.into();
    c.target.root = target.into();
    c.source_batch_size = 30;
    c.transfer.batch_size = 30;
    let pgd = Attack::pgd(0.1, 0.05, 1);
    c.pretrain.retain(|p| p.name == "at");
    c.pretrain_train.epochs = 2;
    c.pretrain_train.eval_attack = Some(pgd.clone());
    let mut retrain = c.pretrain_train.clone();
    retrain.epochs = 1;
    retrain.regime = Regime::Adversarial {
        attack: pgd.clone(),
        mode: AttackMode::Train,
    };
    c.tickets = vec![TicketSpec::Imp {
        rounds: 2,
        sparsities: Vec::new(),
        retrain,
        downstream: false,
    }];
    c.transfer.train.epochs = 2;
    c.transfer.train.ra_from_epoch = 0;
    c.transfer.seeds = vec![0];
    c.transfer.transfer_attack = false;
    c.transfer.ood = false;
    c
}

/// A file's content as compared: tensors by name, JSON without timings, else raw bytes.
#[derive(Debug, PartialEq)]
enum Content {
    Tensors(BTreeMap<String, (String, Vec<usize>, Vec<u8>)>),
    Json(Vec<serde_json::Value>),
    Bytes(Vec<u8>),
}

/// Drops every `seconds` field (wall-clock timings) from a JSON value.
fn without_timings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("seconds");
            map.values_mut().for_each(without_timings);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_timings),
        _ => {}
    }
}

fn content(path: &Path) -> Content {
    let bytes = std::fs::read(path).unwrap();
    let name = path.to_string_lossy();
    if name.ends_with(".safetensors") {
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        return Content::Tensors(
            file.tensors()
                .into_iter()
                .map(|(k, v)| {
                    let entry = (
                        format!("{:?}", v.dtype()),
                        v.shape().to_vec(),
                        v.data().to_vec(),
                    );
                    (k, entry)
                })
                .collect(),
        );
    }
    if name.ends_with(".json") || name.ends_with(".jsonl") {
        let text = String::from_utf8(bytes).unwrap();
        let docs = if name.ends_with(".jsonl") {
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        } else {
            vec![serde_json::from_str(&text).unwrap()]
        };
        return Content::Json(
            docs.into_iter()
                .map(|mut d: serde_json::Value| {
                    without_timings(&mut d);
                    d
                })
                .collect(),
        );
    }
    Content::Bytes(bytes)
}

/// Every file under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Content> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                files.insert(rel, content(&path));
            }
        }
    }
    files
}

/// The first difference between two snapshots, if any.
fn difference(a: &BTreeMap<PathBuf, Content>, b: &BTreeMap<PathBuf, Content>) -> Option<String> {
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    if !only_a.is_empty() || !only_b.is_empty() {
        return Some(format!(
            "files only uninterrupted: {only_a:?}; only resumed: {only_b:?}"
        ));
    }
    a.iter().find(|(k, v)| b[*k] != **v).map(|(k, v)| {
        let detail = match (v, &b[k]) {
            (Content::Json(x), Content::Json(y)) => x
                .iter()
                .zip(y)
                .find_map(|(x, y)| dwlth_store::first_difference(x, y))
                .map(|d| format!(": `{}` {} vs {}", d.setting, d.stored, d.given))
                .unwrap_or_default(),
            (Content::Tensors(x), Content::Tensors(y)) => x
                .iter()
                .find(|(name, t)| y.get(*name) != Some(t))
                .map(|(name, _)| format!(": tensor `{name}`"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        format!("`{}` differs{detail}", k.display())
    })
}

fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args(dir)` uninterrupted, counts its writes, then for every write k: a fresh run
/// aborted after write k, resumed, compared with the uninterrupted one. Returns the count.
fn every_write_survives(
    name: &str,
    root: &Path,
    args: impl Fn(&Path) -> Vec<String> + Sync,
) -> usize {
    let run = |dir: &Path, fault: Option<usize>, trace: bool| {
        let args = args(dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dwlth(&args, fault, trace)
    };
    let reference = root.join(format!("{name}-uninterrupted"));
    let out = run(&reference, None, true);
    succeeded(&out, "the uninterrupted run");
    let writes = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("dwlth-fault: write "))
        .count();
    assert!(writes > 10, "{name}: only {writes} writes traced");
    let expected = snapshot(&reference);
    // Deterministic: a second uninterrupted run gives the same files.
    let again = root.join(format!("{name}-again"));
    succeeded(&run(&again, None, false), "the second run");
    if let Some(d) = difference(&expected, &snapshot(&again)) {
        panic!("{name}: two uninterrupted runs differ: {d}");
    }
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(1);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if k > writes {
                    break;
                }
                let dir = root.join(format!("{name}-killed-after-{k}"));
                let killed = run(&dir, Some(k), false);
                let said = String::from_utf8_lossy(&killed.stderr);
                if killed.status.success() || !said.contains(&format!("aborting after write {k} "))
                {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("write {k}: the run was not aborted"));
                    continue;
                }
                let resumed = run(&dir, None, false);
                if !resumed.status.success() {
                    let err = String::from_utf8_lossy(&resumed.stderr).into_owned();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("write {k}: resume failed: {err}"));
                    continue;
                }
                if let Some(d) = difference(&expected, &snapshot(&dir)) {
                    let line = said.lines().last().unwrap_or_default().to_string();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("write {k} ({line}): {d}"));
                }
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    writes
}

#[test]
fn a_run_killed_after_any_write_resumes_to_the_same_results() {
    let root = tempfile::tempdir().unwrap();
    let (source, target) = (root.path().join("source"), root.path().join("target"));
    write_dataset(&source, 0, 1);
    write_dataset(&target, 1, 2);
    let file = root.path().join("experiment.toml");
    std::fs::write(&file, experiment(&source, &target).to_toml()).unwrap();
    let file = file.to_string_lossy().into_owned();
    let writes = every_write_survives("run", root.path(), |dir| {
        ["run", "--config", &file, "--out", &dir.to_string_lossy()]
            .map(String::from)
            .to_vec()
    });
    eprintln!("`dwlth run`: killed after each of {writes} writes, every resume matched");
}

#[test]
fn a_training_killed_after_any_write_resumes_to_the_same_weights() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    write_dataset(&data, 0, 3);
    let mut file = dwlth::commands::train::TrainFile::example();
    file.model.width = Some(2);
    file.data.spec.dataset = "mnist".into();
    file.data.spec.root = data;
    file.data.spec.validation = 12;
    file.data.spec.augment = false;
    file.data.batch_size = 30;
    file.train.epochs = 3;
    file.train.snapshots = true;
    file.train.lr.schedule = dwlth::adv::Schedule::Cosine;
    file.train.regime = Regime::Adversarial {
        attack: Attack::pgd(0.1, 0.05, 1),
        mode: AttackMode::Train,
    };
    file.train.eval_attack = Some(Attack::pgd(0.1, 0.05, 2));
    file.train.ra_from_epoch = 0;
    let writes = every_write_survives("train", root.path(), |dir| {
        // The run folder is what is compared; its file lies beside it.
        let mut file = file.clone();
        file.out = dir.to_path_buf();
        let path = dir.with_extension("toml");
        if !path.exists() {
            std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
        }
        ["train", "--config", &path.to_string_lossy()]
            .map(String::from)
            .to_vec()
    });
    eprintln!("`dwlth train`: killed after each of {writes} writes, every resume matched");
}
