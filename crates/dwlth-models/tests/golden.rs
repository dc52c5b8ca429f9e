//! ResNets against PyTorch: logits in eval and train mode, BatchNorm running statistics after a
//! train-mode step, and input gradients in eval mode, on fixtures written by
//! `tools/golden.py` (rerun it to regenerate; see tools/README.md).

mod common;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Int, Tensor};
use common::{golden, max_rel_diff, model_part, tensor};
use dwlth_models::io::{load_state, StateDict};
use dwlth_models::mode::attack_view;
use dwlth_models::{NormalizeConfig, ResNet, ResNetConfig};

const CASES: [&str; 5] = [
    "r18_imagenet_w4",
    "r50_imagenet_w4",
    "r18_cifar_w4",
    "r34_cifar_w2",
    "r101_imagenet_w2",
];
const TOL: f32 = 1e-4;

/// Train-mode tolerance. Batch statistics of two images amplify float rounding with depth:
/// ResNet-101 at width 2 (two-channel bottlenecks, 101 BatchNorms in a row) ends 1.5e-4 away
/// from PyTorch (2.2e-4 through Burn's `batch_norm_train`), the others within 6e-5.
fn train_tol(case: &str) -> f32 {
    if case.starts_with("r101") {
        1e-3
    } else {
        TOL
    }
}

fn load_case(name: &str, device: &Device) -> (StateDict, ResNet) {
    let dict = StateDict::read(golden(&format!("{name}.safetensors"))).expect("golden file");
    let meta = dict.metadata();
    let arch = meta["arch"].parse().expect("arch");
    let part = model_part(&dict);
    let config = ResNetConfig::infer(arch, &part).expect("infer config");
    assert_eq!(config.width.to_string(), meta["width"]);
    assert_eq!(config.stem.to_string(), meta["stem"]);
    assert_eq!(config.num_classes.to_string(), meta["num_classes"]);
    let model = config
        .with_normalize(NormalizeConfig::identity(
            part.get("conv1.weight").unwrap().shape()[1],
        ))
        .try_init(device)
        .expect("model");
    let (model, report) = load_state(model, &part, Vec::new()).expect("load golden weights");
    assert!(report.defaulted.iter().all(|k| k.ends_with("weight_mask")));
    (dict, model)
}

#[test]
fn eval_logits_match_pytorch() {
    let device = Device::flex();
    for case in CASES {
        let (dict, model) = load_case(case, &device);
        let logits = model.forward(tensor(&dict, "input", &device));
        let diff = max_rel_diff(logits, tensor(&dict, "logits_eval", &device));
        assert!(diff < TOL, "{case}: eval logits differ by {diff}");
    }
}

#[test]
fn train_mode_logits_and_running_stats_match_pytorch() {
    let device = Device::flex().autodiff();
    for case in CASES {
        let (dict, model) = load_case(case, &device);
        let logits = model.forward(tensor(&dict, "input", &device));
        let diff = max_rel_diff(logits, tensor(&dict, "logits_train", &device));
        assert!(
            diff < train_tol(case),
            "{case}: train-mode logits differ by {diff}"
        );
        // Running statistics after one train-mode forward (momentum 0.1, unbiased variance).
        let after = dwlth_models::io::resnet_tensors(&model);
        let mut checked = 0;
        for (key, shape, values) in after {
            if !(key.ends_with("running_mean") || key.ends_with("running_var")) {
                continue;
            }
            let expected: Tensor<1> = tensor(&dict, &format!("after_train.{key}"), &device);
            let got = Tensor::<1>::from_data(burn::tensor::TensorData::new(values, shape), &device);
            let diff = max_rel_diff(got, expected);
            assert!(
                diff < train_tol(case),
                "{case}: `{key}` after a train step differs by {diff}"
            );
            checked += 1;
        }
        assert!(checked > 0, "{case}: no running statistics checked");
    }
}

#[test]
fn eval_input_gradient_matches_pytorch() {
    let device = Device::flex().autodiff();
    for case in ["r18_imagenet_w4", "r50_imagenet_w4"] {
        let (dict, model) = load_case(case, &device);
        let frozen = attack_view(&model);
        let x: Tensor<4> = tensor::<4>(&dict, "input", &device).require_grad();
        let labels_f: Tensor<1> = tensor(&dict, "labels", &device);
        let labels: Tensor<1, Int> = labels_f.int();
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(frozen.forward(x.clone()), labels);
        let grads = loss.backward();
        let g = x.grad(&grads).expect("input gradient");
        let diff = max_rel_diff(g, tensor(&dict, "input_grad_eval", &Device::flex()));
        assert!(diff < TOL, "{case}: eval input gradient differs by {diff}");
        // The eval-mode pass left the original model's running statistics alone.
        let (_, fresh) = load_case(case, &device);
        for ((k, _, a), (_, _, b)) in dwlth_models::io::resnet_tensors(&model.valid())
            .into_iter()
            .zip(dwlth_models::io::resnet_tensors(&fresh.valid()))
        {
            assert_eq!(
                a, b,
                "{case}: `{k}` changed during an eval-mode attack pass"
            );
        }
    }
}
