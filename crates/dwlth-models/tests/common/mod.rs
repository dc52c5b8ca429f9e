//! Helpers shared by the integration tests: the PyTorch golden fixtures written by
//! `tools/golden.py`.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use dwlth_models::io::StateDict;

/// Path of a fixture in `tests/golden/`.
pub fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Reads a golden tensor as a Burn tensor.
pub fn tensor<const D: usize>(dict: &StateDict, key: &str, device: &Device) -> Tensor<D> {
    let raw = dict
        .get(key)
        .unwrap_or_else(|| panic!("golden file lacks `{key}`"));
    let values = raw
        .to_f32(key, dict.path())
        .expect("readable golden tensor");
    Tensor::from_data(TensorData::new(values, raw.shape().to_vec()), device)
}

/// Largest absolute difference between two tensors, relative to the reference's largest
/// magnitude when that exceeds 1. The random-BatchNorm fixtures reach logits in the thousands
/// (ResNet-101), where f32 itself only resolves about 1e-4.
pub fn max_rel_diff<const D: usize>(got: Tensor<D>, reference: Tensor<D>) -> f32 {
    let scale = reference.clone().abs().max().into_scalar::<f32>().max(1.0);
    max_abs_diff(got, reference) / scale
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.into_data().try_to_vec_as::<f32>().unwrap();
    let b = b.into_data().try_to_vec_as::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The golden file's model tensors only (torchvision keys), without inputs and references.
pub fn model_part(dict: &StateDict) -> StateDict {
    dict.without_prefixes(&["after_train.", "logits", "input", "labels", "loss", "kept."])
}
