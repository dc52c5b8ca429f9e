//! Importing the checkpoint layouts the papers' code produced, and refusing bad files by name.
//! Fixtures come from `tools/golden.py`.

mod common;

use std::path::Path;

use burn::tensor::Device;
use common::{golden, max_abs_diff, tensor};
use dwlth_models::io::{
    import_resnet, load_resnet, save_resnet, CheckpointFormat, ImportOptions, StateDict,
};
use dwlth_models::{Arch, ModelError, NormalizeConfig};

const TOL: f32 = 1e-4;

fn options(format: CheckpointFormat) -> ImportOptions {
    ImportOptions {
        arch: Arch::ResNet18,
        format,
        // The fixtures' network was trained behind CIFAR-10 statistics.
        normalize: Some(NormalizeConfig::cifar10()),
    }
}

fn assert_matches_golden(file: &str, format: CheckpointFormat, golden_file: &str) {
    let device = Device::flex();
    let (model, report) = import_resnet(golden(file), &options(format), &device)
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(!report.loaded.is_empty());
    let reference = StateDict::read(golden(golden_file)).unwrap();
    let logits = model.forward(tensor(&reference, "input", &device));
    let diff = max_abs_diff(logits, tensor(&reference, "logits_eval", &device));
    assert!(diff < TOL, "{file}: logits differ from PyTorch by {diff}");
}

#[test]
fn torchvision_pth_zip_legacy_and_safetensors() {
    for file in [
        "r18_w4_torchvision.pth",
        "r18_w4_torchvision_legacy.pth",
        "r18_w4_torchvision.safetensors",
    ] {
        assert_matches_golden(
            file,
            CheckpointFormat::Torchvision,
            "r18_imagenet_w4.safetensors",
        );
    }
}

#[test]
fn robustness_zip_and_legacy_read_their_normalizer() {
    for file in ["r18_w4_robustness.pt", "r18_w4_robustness_legacy.pt"] {
        let device = Device::flex();
        // The file's own normaliser wins over the option.
        let opts = ImportOptions {
            normalize: Some(NormalizeConfig::imagenet()),
            ..options(CheckpointFormat::Robustness)
        };
        let (model, report) = import_resnet(golden(file), &opts, &device).unwrap();
        assert_eq!(model.normalize.to_config(), NormalizeConfig::cifar10());
        assert!(report
            .skipped
            .iter()
            .any(|k| k.contains("module.attacker.model.conv1.weight")));
        assert!(report.skipped.iter().any(|k| k.starts_with("optimizer.")));
        assert_matches_golden(
            file,
            CheckpointFormat::Robustness,
            "r18_imagenet_w4.safetensors",
        );
    }
}

#[test]
fn fast_adversarial_checkpoint() {
    assert_matches_golden(
        "r18_w4_fast_adversarial.pth",
        CheckpointFormat::FastAdversarial,
        "r18_imagenet_w4.safetensors",
    );
    let device = Device::flex();
    let opts = ImportOptions {
        normalize: None,
        ..options(CheckpointFormat::FastAdversarial)
    };
    let (model, _) = import_resnet(golden("r18_w4_fast_adversarial.pth"), &opts, &device).unwrap();
    assert_eq!(model.normalize.to_config(), NormalizeConfig::imagenet());
}

#[test]
fn double_win_ticket_gives_weights_and_masks() {
    let device = Device::flex();
    let reference = StateDict::read(golden("r18_w4_double_win_golden.safetensors")).unwrap();
    // The downstream layout (`0.mean`, `1.conv1.weight_orig`, ...) in both containers, and the
    // ImageNet ticket layout of the pruning script (`state_dict` → `normalize.mean`,
    // `conv1.weight_orig`, beside `optimizer`, `init`, `state_prune`).
    for (file, normalize) in [
        ("r18_w4_double_win.pth", NormalizeConfig::cifar10()),
        ("r18_w4_double_win.safetensors", NormalizeConfig::cifar10()),
        ("r18_w4_double_win_ticket.pth", NormalizeConfig::imagenet()),
    ] {
        let (model, report) =
            import_resnet(golden(file), &options(CheckpointFormat::DoubleWin), &device).unwrap();
        assert!(report.loaded.contains(&"conv1.weight_mask".to_string()));
        assert_eq!(model.normalize.to_config(), normalize, "{file}");
        if normalize == NormalizeConfig::cifar10() {
            let logits = model.forward(tensor(&reference, "input", &device));
            let diff = max_abs_diff(logits, tensor(&reference, "logits_eval", &device));
            assert!(diff < TOL, "{file}: ticket logits differ by {diff}");
        }
        for (name, conv) in model.convolutions() {
            let kept = reference.values(&format!("kept.{name}")).unwrap()[0] as usize;
            assert_eq!(conv.mask_stats().kept, kept, "{name}: kept count");
            // Pruned weights are zero in the model even though `weight_orig` keeps them.
            use dwlth_models::Masked;
            let w = conv
                .weight
                .val()
                .into_data()
                .try_to_vec_as::<f32>()
                .unwrap();
            let m = conv.mask_data().try_to_vec_as::<f32>().unwrap();
            assert!(
                w.iter().zip(&m).all(|(w, m)| *m == 1.0 || *w == 0.0),
                "{name}"
            );
        }
    }
}

#[test]
fn export_round_trip_is_exact() {
    let device = Device::flex();
    let (model, _) = import_resnet(
        golden("r18_w4_robustness.pt"),
        &options(CheckpointFormat::Robustness),
        &device,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_resnet(&model, &path).unwrap();
    // The export has torchvision's keys: the torchvision importer reads it too.
    let dict = StateDict::read(&path).unwrap();
    let golden_dict = StateDict::read(golden("r18_w4_torchvision.safetensors")).unwrap();
    for key in golden_dict.tensors().keys() {
        if !key.ends_with("num_batches_tracked") {
            assert_eq!(
                dict.values(key).unwrap(),
                golden_dict.values(key).unwrap(),
                "`{key}` changed in the round trip"
            );
        }
    }
    let (back, _) = load_resnet(&path, Some(Arch::ResNet18), &device).unwrap();
    assert_eq!(back.normalize.to_config(), NormalizeConfig::cifar10());
    let reference = StateDict::read(golden("r18_imagenet_w4.safetensors")).unwrap();
    let x = tensor::<4>(&reference, "input", &device);
    assert_eq!(max_abs_diff(back.forward(x.clone()), model.forward(x)), 0.0);
}

/// Writes a safetensors file from (key, shape) pairs with zero values.
fn write_safetensors(path: &Path, tensors: Vec<(String, Vec<usize>, Vec<f32>)>) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn golden_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let dict = StateDict::read(golden("r18_w4_torchvision.safetensors")).unwrap();
    dict.tensors()
        .iter()
        .map(|(k, t)| (k.clone(), t.shape().to_vec(), dict.values(k).unwrap()))
        .collect()
}

fn import_err(tensors: Vec<(String, Vec<usize>, Vec<f32>)>) -> ModelError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write_safetensors(&path, tensors);
    import_resnet(
        &path,
        &options(CheckpointFormat::Torchvision),
        &Device::flex(),
    )
    .unwrap_err()
}

#[test]
fn a_missing_key_is_named() {
    let tensors = golden_tensors()
        .into_iter()
        .filter(|(k, _, _)| k != "layer3.1.bn2.running_var")
        .collect();
    let err = import_err(tensors);
    assert!(
        matches!(&err, ModelError::MissingKeys { keys, .. } if keys == &["layer3.1.bn2.running_var"]),
        "{err}"
    );
    assert!(err.to_string().contains("layer3.1.bn2.running_var"));
}

#[test]
fn an_unexpected_key_is_named() {
    let mut tensors = golden_tensors();
    tensors.push(("layer5.0.conv1.weight".into(), vec![1], vec![0.0]));
    let err = import_err(tensors);
    assert!(
        matches!(&err, ModelError::UnexpectedKeys { keys, .. } if keys == &["layer5.0.conv1.weight"]),
        "{err}"
    );
}

#[test]
fn a_misshaped_key_is_named() {
    let tensors = golden_tensors()
        .into_iter()
        .map(|(k, s, v)| {
            if k == "layer2.0.conv2.weight" {
                let n = v.len();
                (k, vec![n], v)
            } else {
                (k, s, v)
            }
        })
        .collect();
    let err = import_err(tensors);
    assert!(
        matches!(&err, ModelError::ShapeMismatch { key, .. } if key == "layer2.0.conv2.weight"),
        "{err}"
    );
}

#[test]
fn the_wrong_architecture_is_refused() {
    let opts = ImportOptions {
        arch: Arch::ResNet50,
        ..options(CheckpointFormat::Torchvision)
    };
    let err = import_resnet(golden("r18_w4_torchvision.pth"), &opts, &Device::flex()).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::MissingKeys { .. } | ModelError::ShapeMismatch { .. }
        ),
        "{err}"
    );
}

#[test]
fn the_wrong_layout_is_refused_with_the_file_name() {
    let err = import_resnet(
        golden("r18_w4_torchvision.pth"),
        &options(CheckpointFormat::Robustness),
        &Device::flex(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Format { .. }), "{err}");
    assert!(err.to_string().contains("r18_w4_torchvision.pth"), "{err}");
}

#[test]
fn corrupt_and_missing_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(golden("r18_w4_torchvision.pth")).unwrap();
    let safet = std::fs::read(golden("r18_w4_torchvision.safetensors")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.pth", Vec::new()),
        ("text.pth", b"not a checkpoint at all".to_vec()),
        ("truncated.pth", original[..original.len() / 2].to_vec()),
        ("truncated.safetensors", safet[..safet.len() - 100].to_vec()),
        ("header.safetensors", safet[..40].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        for format in CheckpointFormat::ALL {
            let opts = options(format);
            let result = import_resnet(&path, &opts, &Device::flex());
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name} as {format} was accepted"));
            assert!(!err.to_string().is_empty());
        }
    }
    let err = import_resnet(
        dir.path().join("absent.pth"),
        &options(CheckpointFormat::Torchvision),
        &Device::flex(),
    )
    .unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err}");
}

#[test]
fn a_damaged_safetensors_file_is_called_a_safetensors_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.safetensors", Vec::new(), "empty"),
        ("short.safetensors", vec![7, 0, 0], "too short"),
        (
            "huge.safetensors",
            [&u64::MAX.to_le_bytes()[..], b"{}"].concat(),
            "exceeds",
        ),
        (
            "garbage.safetensors",
            b"this is not a safetensors file".to_vec(),
            "exceeds",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = StateDict::read(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                &err,
                ModelError::Format {
                    format: "safetensors",
                    ..
                }
            ),
            "{name}: {text}"
        );
        assert!(
            text.contains(name) && text.contains(needle),
            "{name}: {text}"
        );
        assert!(!text.contains("PyTorch"), "{name}: {text}");
    }
}

#[test]
fn non_finite_weights_are_refused_by_key_and_file() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let tensors = golden_tensors()
            .into_iter()
            .map(|(k, s, mut v)| {
                if k == "layer1.0.conv2.weight" {
                    v[5] = bad;
                }
                (k, s, v)
            })
            .collect();
        let err = import_err(tensors);
        let text = err.to_string();
        assert!(
            matches!(&err, ModelError::NonFinite { key, index: 5, .. } if key == "layer1.0.conv2.weight"),
            "{text}"
        );
        assert!(text.contains("bad.safetensors"), "{text}");
    }
}

/// A safetensors file whose tensor `key` is stored as `dtype` with `bytes`.
fn write_with_dtype(path: &Path, key: &str, dtype: safetensors::Dtype, bytes: Vec<u8>) {
    let golden = golden_tensors();
    let raw: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = golden
        .into_iter()
        .map(|(k, s, v)| {
            if k == key {
                (k, s, bytes.clone(), dtype)
            } else {
                let b = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                (k, s, b, safetensors::Dtype::F32)
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw
        .iter()
        .map(|(k, s, b, d)| {
            let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
            (k.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn integer_and_boolean_weights_are_refused_not_cast() {
    let dir = tempfile::tempdir().unwrap();
    let key = "layer1.0.conv1.weight";
    let numel: usize = golden_tensors()
        .into_iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, s, _)| s.iter().product())
        .unwrap();
    let cases = [
        (safetensors::Dtype::I64, 8, "int64"),
        (safetensors::Dtype::BOOL, 1, "bool"),
    ];
    for (dtype, size, name) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        write_with_dtype(&path, key, dtype, vec![0u8; numel * size]);
        let err = import_resnet(
            &path,
            &options(CheckpointFormat::Torchvision),
            &Device::flex(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, ModelError::UnsupportedDtype { key: k, .. } if k == key),
            "{text}"
        );
        assert!(
            text.contains(name) && text.contains(&format!("{name}.safetensors")),
            "{text}"
        );
    }
}

#[test]
fn a_checkpoint_with_nan_is_refused_by_load_module() {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let config = dwlth_models::ResNetConfig::new(Arch::ResNet18)
        .with_width(2)
        .with_stem(dwlth_models::Stem::Cifar)
        .with_num_classes(3);
    let model = config.try_init(&device).unwrap();
    // Poison one weight.
    let mut conv1 = model.conv1.clone();
    conv1.weight = conv1.weight.map(|w| w.mul_scalar(f32::NAN));
    let poisoned = dwlth_models::ResNet { conv1, ..model };
    let path = dir.path().join("state.safetensors");
    dwlth_models::io::save_module(&poisoned, &path).unwrap();
    let mut fresh = config.try_init(&device).unwrap();
    let err = dwlth_models::io::load_module(&mut fresh, &path).unwrap_err();
    let text = err.to_string();
    assert!(matches!(&err, ModelError::NonFinite { .. }), "{text}");
    assert!(
        text.contains("conv1.weight") && text.contains("state.safetensors"),
        "{text}"
    );
}

/// The tiny checkpoints `tools/tiny_checkpoints.py` writes in torch's zip and legacy layouts
/// (the `pth` fuzz target's seeds) read back with the values the script put in.
#[test]
fn tiny_zip_and_legacy_checkpoints_read_back() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for file in ["tiny_zip.pth", "tiny_legacy.pth"] {
        let dict = StateDict::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let shapes = [
            ("conv1.weight", vec![2, 1, 3, 3]),
            ("bn1.running_mean", vec![2]),
            ("fc.weight", vec![3, 2]),
        ];
        assert_eq!(dict.tensors().len(), shapes.len(), "{file}");
        for (k, (name, shape)) in shapes.iter().enumerate() {
            let t = dict.get(name).unwrap_or_else(|| panic!("{file}: {name}"));
            assert_eq!(t.shape(), shape.as_slice(), "{file}: {name}");
            let expected: Vec<f32> = (0..t.numel())
                .map(|i| ((i * 7 + k) % 11) as f32 / 8.0 - 5.0 / 8.0)
                .collect();
            assert_eq!(dict.values(name).unwrap(), expected, "{file}: {name}");
        }
    }
}
