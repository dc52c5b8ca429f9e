//! Sparse convolution passes inside a pruned network: the forward pass, the attack's input
//! gradient and a training step give what the dense masked path gives.
//!
//! The whole binary is this one test: it switches the process-wide density limit.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use dwlth::kernels::conv::sparse::{set_sparse_limit, sparse_passes, SparseLimit};
use dwlth::models::mode::{attack_view, independent_copy};
use dwlth::models::{Arch, ResNet, ResNetConfig, Stem};
use dwlth::prune::{apply_masks, masked_weights, Prunable, PruneMethod};

fn params(model: &ResNet) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val().into_data().try_to_vec_as::<f32>().expect("f32");
            self.0.push(v);
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().expect("f32")
}

/// Largest `|a − b|` relative to the largest `|b|`.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Logits (eval mode), the attack's input gradient, and the parameters after one SGD step in
/// training mode, at the current density limit.
fn passes(
    ticket: &ResNet,
    x: &Tensor<4>,
    y: &Tensor<1, Int>,
) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    let view = attack_view(ticket);
    let xg = x.clone().require_grad();
    let logits = view.forward(xg.clone());
    let logit_values = values(logits.clone());
    let ce = CrossEntropyLossConfig::new().init(&x.device());
    let grads = ce.forward(logits, y.clone()).backward();
    let gx = values(xg.grad(&grads).expect("an input gradient"));

    let model = independent_copy(ticket);
    let loss = ce.forward(model.forward(x.clone()), y.clone());
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let model = SgdConfig::new().init().step(0.1, model, grads);
    (logit_values, gx, params(&model))
}

#[test]
fn sparse_passes_give_the_dense_paths_results() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = ResNetConfig::new(Arch::ResNet18)
        .with_width(16)
        .with_stem(Stem::Cifar)
        .with_num_classes(10)
        .init(&device);
    let masks = PruneMethod::global_magnitude()
        .prune(&masked_weights(&model), &Prunable::convolutions(), 0.9)
        .expect("masks");
    let ticket = apply_masks(model, &masks).expect("ticket");
    let x = Tensor::<4>::random([6, 3, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4, 5], [6]), &device);

    // Every convolution sparse (the densest layers of a global ticket keep half their
    // weights), so that every geometry of the network takes its sparse passes.
    set_sparse_limit(SparseLimit::Density(0.0));
    let before = sparse_passes();
    let dense = passes(&ticket, &x, &y);
    assert_eq!(sparse_passes(), before, "the dense path ran sparse passes");
    set_sparse_limit(SparseLimit::Density(1.0));
    let sparse = passes(&ticket, &x, &y);
    assert!(
        sparse_passes() > before,
        "no convolution of the 90 % ticket ran its sparse passes"
    );

    let logits = rel(&sparse.0, &dense.0);
    assert!(logits < 1e-5, "logits differ by {logits}");
    let gx = rel(&sparse.1, &dense.1);
    assert!(gx < 1e-4, "input gradients differ by {gx}");
    // The dense path runs its 3×3 stride-1 layers by Winograd's F(4×4, 3×3), which rounds
    // at about 1e-5 of a layer's scale (`dwlth_kernels::conv::winograd`); the sparse passes
    // sum directly (measured: 1.04e-5 at most, 5.9e-6 for the next parameter). A wrong tap
    // or offset moves a parameter by far more.
    for (i, (a, b)) in sparse.2.iter().zip(&dense.2).enumerate() {
        let d = rel(a, b);
        assert!(d < 5e-5, "parameter {i} differs by {d} after a step");
    }
}
