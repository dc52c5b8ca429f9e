//! One-shot pruning against `torch.nn.utils.prune` (fixtures from `tools/golden_prune.py`):
//! global and layer-wise L1 magnitude keep exactly PyTorch's per-layer counts and masks;
//! channel-, kernel- and row-wise structured masks equal PyTorch's.

use std::path::PathBuf;

use burn::tensor::Device;
use dwlth_models::io::{load_state, StateDict};
use dwlth_models::{Arch, NormalizeConfig, ResNet, ResNetConfig};
use dwlth_prune::{masked_weights, Granularity, MaskSet, Norm, Prunable, PruneMethod, Scope};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The golden ResNet of `dwlth-models` named `case`.
fn golden_model(case: &str, arch: Arch) -> ResNet {
    let dict = StateDict::read(fixture(&format!(
        "../dwlth-models/tests/golden/{case}.safetensors"
    )))
    .unwrap();
    let dict = dict.without_prefixes(&["after_train.", "logits", "input", "labels", "loss"]);
    let config = ResNetConfig::infer(arch, &dict)
        .unwrap()
        .with_normalize(NormalizeConfig::identity(3));
    let model = config.try_init(&Device::flex()).unwrap();
    load_state(model, &dict, Vec::new()).unwrap().0
}

fn reference(case: &str) -> StateDict {
    StateDict::read(fixture(&format!("tests/golden/{case}_prune.safetensors"))).unwrap()
}

fn kept(reference: &StateDict, key: &str) -> usize {
    reference.values(key).unwrap()[0] as usize
}

fn assert_same_mask(masks: &MaskSet, reference: &StateDict, prefix: &str) {
    let mut compared = 0;
    for (name, mask) in masks.iter() {
        let key = format!("{prefix}.mask.{name}");
        let Some(_) = reference.get(&key) else {
            continue;
        };
        let expected: Vec<bool> = reference
            .values(&key)
            .unwrap()
            .iter()
            .map(|v| *v != 0.0)
            .collect();
        assert_eq!(
            mask.keep, expected,
            "{prefix}: mask of `{name}` differs from PyTorch's"
        );
        compared += 1;
    }
    assert_eq!(
        compared,
        masks.len(),
        "{prefix}: not every layer was compared"
    );
}

const CASES: [(&str, Arch); 2] = [
    ("r18_imagenet_w4", Arch::ResNet18),
    ("r50_imagenet_w4", Arch::ResNet50),
];

#[test]
fn global_magnitude_matches_pytorch_counts_and_masks() {
    for (case, arch) in CASES {
        let model = golden_model(case, arch);
        let reference = reference(case);
        let layers = masked_weights(&model);
        for s in ["0.2", "0.5", "0.9", "0.98"] {
            let amount: f64 = s.parse().unwrap();
            let masks = PruneMethod::global_magnitude()
                .prune(&layers, &Prunable::convolutions(), amount)
                .unwrap();
            let convs = if arch == Arch::ResNet18 { 20 } else { 53 };
            assert_eq!(masks.len(), convs, "the head must not be pruned");
            for (name, mask) in masks.iter() {
                let expected = kept(&reference, &format!("omp_global_l1.{s}.kept.{name}"));
                assert_eq!(mask.kept(), expected, "{case} {s}: kept count of `{name}`");
            }
            if s == "0.2" || s == "0.9" {
                assert_same_mask(&masks, &reference, &format!("omp_global_l1.{s}"));
            }
        }
    }
}

#[test]
fn layerwise_magnitude_matches_pytorch_counts() {
    for (case, arch) in CASES {
        let model = golden_model(case, arch);
        let reference = reference(case);
        let masks = PruneMethod::Magnitude {
            scope: Scope::Layer,
        }
        .prune(&masked_weights(&model), &Prunable::convolutions(), 0.5)
        .unwrap();
        for (name, mask) in masks.iter() {
            let expected = kept(&reference, &format!("omp_layer_l1.0.5.kept.{name}"));
            assert_eq!(mask.kept(), expected, "{case}: `{name}`");
        }
    }
}

#[test]
fn structured_masks_match_pytorch() {
    for (case, arch) in CASES {
        let model = golden_model(case, arch);
        let reference = reference(case);
        let layers = masked_weights(&model);
        for (granularity, prefix) in [
            (Granularity::Channel, "channel_l1.0.3"),
            (Granularity::Kernel, "kernel_l1.0.3"),
            (Granularity::Row, "row_l1.0.3"),
        ] {
            let method = PruneMethod::Structured {
                granularity,
                norm: Norm::L1,
                scope: Scope::Layer,
            };
            let masks = method
                .prune(&layers, &Prunable::convolutions(), 0.3)
                .unwrap();
            assert_same_mask(&masks, &reference, prefix);
        }
    }
}
