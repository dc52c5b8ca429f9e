//! Mask sets on models: applying, saving, loading, refusing mismatches; random and matched
//! random pruning; analyses.

use burn::tensor::{Device, Distribution, Tensor};
use dwlth_models::{Arch, ResNet, ResNetConfig, Stem};
use dwlth_prune::analysis::{heatmap_png, similarity, zero_kernels, MaskReport};
use dwlth_prune::{
    apply_masks, masked_weights, random_like, Granularity, MaskSet, Norm, Prunable, PruneError,
    PruneMethod, Scope,
};

fn tiny(arch: Arch, seed: u64) -> ResNet {
    let device = Device::flex();
    device.seed(seed);
    ResNetConfig::new(arch)
        .with_width(2)
        .with_stem(Stem::Cifar)
        .with_num_classes(5)
        .init(&device)
}

fn omp(model: &ResNet, amount: f64) -> MaskSet {
    PruneMethod::global_magnitude()
        .prune(&masked_weights(model), &Prunable::convolutions(), amount)
        .unwrap()
}

#[test]
fn applied_masks_zero_weights_and_round_trip_through_files() {
    let model = tiny(Arch::ResNet18, 1);
    let masks = omp(&model, 0.6);
    let pruned = apply_masks(model, &masks).unwrap();
    for layer in masked_weights(&pruned) {
        if let Some(mask) = masks.get(&layer.name) {
            assert_eq!(layer.mask, mask.keep, "{}", layer.name);
            assert!(layer
                .weight
                .iter()
                .zip(&mask.keep)
                .all(|(w, k)| *k || *w == 0.0));
        } else {
            assert!(
                layer.mask.iter().all(|k| *k),
                "{} should stay dense",
                layer.name
            );
        }
    }
    assert_eq!(
        MaskSet::from_model(&pruned, &Prunable::convolutions()).kept(),
        masks.kept()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut annotated = masks.clone();
    annotated.metadata.insert("method".into(), "omp".into());
    annotated.save(&path).unwrap();
    let back = MaskSet::load(&path).unwrap();
    assert_eq!(back.names(), masks.names());
    for (name, mask) in masks.iter() {
        assert_eq!(back.get(name), Some(mask));
    }
    assert_eq!(back.metadata.get("method").map(String::as_str), Some("omp"));
    // u8 storage: about one byte per weight.
    let bytes = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(
        bytes < masks.total() + 8192,
        "{bytes} bytes for {} weights",
        masks.total()
    );
}

#[test]
fn pruning_is_iterative_over_the_remaining_weights() {
    let model = tiny(Arch::ResNet18, 2);
    let mut current = model;
    for k in 1..=5 {
        let masks = omp(&current, 0.2);
        current = apply_masks(current, &masks).unwrap();
        let expected = 1.0 - 0.8f64.powi(k);
        assert!(
            (masks.sparsity() - expected).abs() < 1e-3,
            "round {k}: {}",
            masks.sparsity()
        );
    }
}

#[test]
fn mismatched_masks_are_refused_by_layer_name() {
    let r18 = tiny(Arch::ResNet18, 3);
    let r34 = tiny(Arch::ResNet34, 3);
    let masks = omp(&r34, 0.5);
    let err = apply_masks(r18.clone(), &masks).unwrap_err();
    assert!(
        matches!(&err, PruneError::UnknownLayer { layer, .. } if layer.starts_with("layer1.2")),
        "{err}"
    );
    let wide = ResNetConfig::new(Arch::ResNet18)
        .with_width(4)
        .with_stem(Stem::Cifar)
        .init(&Device::flex());
    let err = apply_masks(r18.clone(), &omp(&wide, 0.5)).unwrap_err();
    assert!(
        matches!(&err, PruneError::ShapeMismatch { layer, .. } if layer == "conv1.weight"),
        "{err}"
    );
    let mut partial = omp(&r18, 0.5);
    partial = {
        let mut p = MaskSet::new();
        for (n, m) in partial.iter().skip(1) {
            p.insert(n.clone(), m.clone());
        }
        p
    };
    let err = partial
        .check_fits(&r18, &Prunable::convolutions())
        .unwrap_err();
    assert!(
        matches!(&err, PruneError::MissingLayer { layer } if layer == "conv1.weight"),
        "{err}"
    );
}

#[test]
fn random_pruning_is_seeded_and_exact() {
    let model = tiny(Arch::ResNet18, 4);
    let layers = masked_weights(&model);
    let method = |seed| PruneMethod::Random {
        scope: Scope::Global,
        seed,
    };
    let a = method(7)
        .prune(&layers, &Prunable::convolutions(), 0.7)
        .unwrap();
    let b = method(7)
        .prune(&layers, &Prunable::convolutions(), 0.7)
        .unwrap();
    let c = method(8)
        .prune(&layers, &Prunable::convolutions(), 0.7)
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let total = a.total();
    assert_eq!(
        a.kept(),
        total - (0.7 * total as f64).round_ties_even() as usize
    );
    let layerwise = PruneMethod::Random {
        scope: Scope::Layer,
        seed: 1,
    }
    .prune(&layers, &Prunable::convolutions(), 0.5)
    .unwrap();
    for (_, m) in layerwise.iter() {
        assert_eq!(
            m.total() - m.kept(),
            (0.5 * m.total() as f64).round_ties_even() as usize
        );
    }
    // Matched to another ticket: same kept count in every layer, different positions.
    let ticket = omp(&model, 0.8);
    let matched = random_like(&ticket, 3);
    for ((n1, m1), (n2, m2)) in ticket.iter().zip(matched.iter()) {
        assert_eq!(n1, n2);
        assert_eq!(m1.kept(), m2.kept(), "{n1}");
    }
    assert!(similarity(&ticket, &matched).unwrap() < 0.9);
}

#[test]
fn structured_granularities_prune_whole_structures() {
    let model = tiny(Arch::ResNet50, 5);
    let layers = masked_weights(&model);
    for (granularity, size) in [
        (Granularity::Channel, None),
        (Granularity::Kernel, Some(9)),
        (Granularity::Row, Some(3)),
    ] {
        let masks = PruneMethod::Structured {
            granularity,
            norm: Norm::L2,
            scope: Scope::Global,
        }
        .prune(&layers, &Prunable::convolutions(), 0.4)
        .unwrap();
        assert!(
            masks.sparsity() > 0.1,
            "{granularity}: {}",
            masks.sparsity()
        );
        for (name, m) in masks.iter() {
            let chunk = match (granularity, size) {
                (Granularity::Channel, _) => m.shape[1..].iter().product(),
                (_, Some(_)) if m.shape[2] * m.shape[3] == 1 => 1,
                (Granularity::Kernel, _) => m.shape[2] * m.shape[3],
                _ => m.shape[3],
            };
            for s in m.keep.chunks(chunk) {
                assert!(
                    s.iter().all(|k| *k) || s.iter().all(|k| !k),
                    "{granularity} {name}: a split structure"
                );
            }
        }
    }
    let linear_only = Prunable::all().excluding(
        masked_weights(&model)
            .iter()
            .filter(|l| l.shape.len() == 4)
            .map(|l| l.name.clone()),
    );
    let err = PruneMethod::Structured {
        granularity: Granularity::Kernel,
        norm: Norm::L1,
        scope: Scope::Layer,
    }
    .prune(&layers, &linear_only, 0.5)
    .unwrap_err();
    assert!(
        matches!(&err, PruneError::Granularity { layer, .. } if layer == "fc.weight"),
        "{err}"
    );
}

#[test]
fn bad_fractions_are_refused() {
    let model = tiny(Arch::ResNet18, 6);
    let layers = masked_weights(&model);
    for bad in [-0.1, 1.0, 1.5, f64::NAN] {
        let err = PruneMethod::global_magnitude()
            .prune(&layers, &Prunable::convolutions(), bad)
            .unwrap_err();
        assert!(
            matches!(err, PruneError::InvalidFraction { .. }),
            "{bad}: {err}"
        );
    }
    let err = PruneMethod::global_magnitude()
        .prune(&layers, &Prunable::only(["nothing.weight"]), 0.5)
        .unwrap_err();
    assert!(matches!(err, PruneError::NothingPrunable(_)), "{err}");
}

#[test]
fn analyses_report_similarity_zero_kernels_and_draw() {
    let model = tiny(Arch::ResNet18, 7);
    let a = omp(&model, 0.97);
    let report = MaskReport::of(&a);
    assert_eq!(report.kept, a.kept());
    assert_eq!(report.layers.len(), 20);
    assert!(report.table().contains("layer4.1.conv2.weight"));
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["layers"][0]["name"].is_string() && json["sparsity"].is_number());
    assert_eq!(similarity(&a, &a).unwrap(), 1.0);
    let dense = MaskSet::from_model(&model, &Prunable::convolutions());
    let s = similarity(&a, &dense).unwrap();
    assert!((s - a.kept() as f64 / a.total() as f64).abs() < 1e-12);
    let zeros = zero_kernels(&a);
    assert_eq!(
        zeros.keys().cloned().collect::<Vec<_>>(),
        ["layer1", "layer2", "layer3", "layer4", "stem"]
    );
    let kernels: usize = zeros.values().map(|z| z.total).sum();
    let expected: usize = a
        .iter()
        .map(|(_, m)| m.total() / (m.shape[2] * m.shape[3]))
        .sum();
    assert_eq!(kernels, expected);
    assert!(zeros.values().map(|z| z.zero).sum::<usize>() > kernels / 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heat.png");
    heatmap_png(&a, &path, 64).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    // The pruned model still runs.
    let pruned = apply_masks(model, &a).unwrap();
    let x = Tensor::<4>::random(
        [1, 3, 8, 8],
        Distribution::Uniform(0.0, 1.0),
        &Device::flex(),
    );
    assert_eq!(pruned.forward(x).dims(), [1, 5]);
}

#[test]
fn double_win_ticket_masks_load() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dwlth-models/tests/golden/r18_w4_double_win.pth");
    let masks = MaskSet::load(&path).unwrap();
    assert_eq!(masks.len(), 20);
    assert_eq!(masks.names()[0], "conv1.weight");
    assert_eq!(masks.kept(), 35_338);
    let ticket = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dwlth-models/tests/golden/r18_w4_double_win_ticket.pth");
    assert_eq!(MaskSet::load(&ticket).unwrap(), masks);
}

/// A mask file holding one `uint8` mask of `shape` with `data` (as many bytes as it declares).
fn write_mask_file(path: &std::path::Path, key: &str, shape: Vec<usize>, data: &[u8]) {
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U8, shape, data).unwrap();
    std::fs::write(path, safetensors::serialize([(key, view)], None).unwrap()).unwrap();
}

#[test]
fn a_mask_with_a_zero_size_dimension_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    // 288 bytes declaring 2^40 kernels: the heat map used to loop over all of them.
    let path = dir.path().join("huge.safetensors");
    write_mask_file(
        &path,
        "conv1.weight_mask",
        vec![1 << 20, 1 << 20, 0, 0],
        &[],
    );
    let err = MaskSet::load(&path).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PruneError::Format { .. }), "{text}");
    assert!(
        text.contains("huge.safetensors") && text.contains("conv1.weight_mask"),
        "{text}"
    );
}

#[test]
fn analyses_of_hand_made_empty_masks_fail_instead_of_panicking_or_looping() {
    let mut set = MaskSet::new();
    set.insert(
        "conv1.weight".into(),
        dwlth_prune::LayerMask {
            shape: vec![1 << 12, 1 << 12, 0, 0],
            keep: Vec::new(),
        },
    );
    // A kernel of 0×0 weights: `chunks(0)` used to panic.
    assert!(zero_kernels(&set).is_empty());
    assert!(matches!(
        similarity(&set, &set),
        Err(PruneError::InvalidMask { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("heat.png");
    let err = heatmap_png(&set, &png, 64).unwrap_err();
    assert!(
        matches!(&err, PruneError::InvalidMask { layer, .. } if layer == "conv1.weight"),
        "{err}"
    );
    assert!(!png.exists());
    // Values that do not fill the declared shape.
    let mut short = MaskSet::new();
    short.insert(
        "conv1.weight".into(),
        dwlth_prune::LayerMask {
            shape: vec![2, 3, 3, 3],
            keep: vec![true; 5],
        },
    );
    assert!(heatmap_png(&short, &png, 64).is_err());
    assert!(apply_masks(tiny(Arch::ResNet18, 1), &short).is_err());
}

#[test]
fn heat_map_pictures_are_bounded_and_their_errors_name_the_picture() {
    let a = omp(&tiny(Arch::ResNet18, 7), 0.5);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("heat.png");
    let err = heatmap_png(&a, &png, 1 << 30).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PruneError::Picture { .. }), "{text}");
    assert!(
        text.contains("heat.png") && !text.contains("mask file"),
        "{text}"
    );
    // Two 4096 × 4096 bands: the picture would exceed the pixel budget.
    let mut wide = MaskSet::new();
    for i in 0..2 {
        wide.insert(
            format!("layer1.{i}.conv1.weight"),
            dwlth_prune::LayerMask::dense(vec![4096, 4096, 1, 1]),
        );
    }
    let err = heatmap_png(&wide, &png, 4096).unwrap_err();
    assert!(err.to_string().contains("lower --max-width"), "{err}");
    assert!(!png.exists());
}

#[test]
fn mask_errors_name_the_mask_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r34-ticket.safetensors");
    omp(&tiny(Arch::ResNet34, 3), 0.5).save(&path).unwrap();
    let masks = MaskSet::load(&path).unwrap();
    let r18 = tiny(Arch::ResNet18, 3);
    for err in [
        apply_masks(r18.clone(), &masks).unwrap_err(),
        masks
            .check_fits(&r18, &Prunable::convolutions())
            .unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            matches!(&err, PruneError::InFile { error, .. } if matches!(**error, PruneError::UnknownLayer { .. })),
            "{text}"
        );
        assert!(
            text.contains("r34-ticket.safetensors") && text.contains("layer1.2"),
            "{text}"
        );
    }
    let wide = ResNetConfig::new(Arch::ResNet18)
        .with_width(4)
        .with_stem(Stem::Cifar)
        .init(&Device::flex());
    let other = dir.path().join("wide.safetensors");
    omp(&wide, 0.5).save(&other).unwrap();
    let err = apply_masks(r18, &MaskSet::load(&other).unwrap()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("wide.safetensors") && text.contains("conv1.weight"),
        "{text}"
    );
}
