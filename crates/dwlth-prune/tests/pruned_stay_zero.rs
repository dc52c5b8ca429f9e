//! Stored pruned weights stay exactly zero in every training path: over random models (Burn's
//! plain layers and the library's masked layers), random masks and random optimiser settings
//! (SGD with or without momentum, Nesterov and weight decay; Adam; AdamW), with an optimiser
//! that carries on from dense training — once its state is pruned with the masks.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use dwlth_models::{MaskedConv2d, MaskedConv2dConfig, MaskedLinear, MaskedLinearConfig};
use dwlth_prune::{
    apply_masks, masked_weights, param_masks, prune_optimizer_state, pruned_nonzero, MaskSet,
    Prunable, PruneMethod,
};

/// A model of Burn's own layers.
#[derive(Module, Debug)]
struct Plain {
    conv: Conv2d,
    fc: Linear,
}

/// The same model of the library's masked layers.
#[derive(Module, Debug)]
struct Masked {
    conv: MaskedConv2d,
    fc: MaskedLinear,
}

trait Net: Module + Sized {
    fn build(channels: usize, device: &Device) -> Self;
    fn out(&self, x: Tensor<4>) -> Tensor<2>;
}

impl Net for Plain {
    fn build(channels: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([2, channels], [3, 3]).init(device),
            fc: LinearConfig::new(channels * 4, 3).init(device),
        }
    }

    fn out(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(relu(self.conv.forward(x)).flatten(1, 3))
    }
}

impl Net for Masked {
    fn build(channels: usize, device: &Device) -> Self {
        Self {
            conv: MaskedConv2dConfig::new([2, channels], [3, 3]).init(device),
            fc: MaskedLinearConfig::new(channels * 4, 3).init(device),
        }
    }

    fn out(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(relu(self.conv.forward(x)).flatten(1, 3))
    }
}

#[derive(Debug, Clone, Copy)]
enum Optim {
    Sgd {
        momentum: bool,
        nesterov: bool,
        decay: bool,
    },
    Adam {
        decay: bool,
    },
    AdamW,
}

impl Optim {
    fn init(self) -> ModuleOptimizer {
        let decay = |on: bool| on.then(|| WeightDecayConfig::new(5e-2));
        match self {
            Optim::Sgd {
                momentum,
                nesterov,
                decay: d,
            } => SgdConfig::new()
                .with_momentum(momentum.then(|| {
                    MomentumConfig::new()
                        .with_momentum(0.9)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov)
                }))
                .with_weight_decay(decay(d))
                .init(),
            Optim::Adam { decay: d } => AdamConfig::new().with_weight_decay(decay(d)).init(),
            Optim::AdamW => AdamWConfig::new().with_weight_decay(0.05).init(),
        }
    }
}

/// A random case: channels, sparsity, optimiser, dense steps before pruning, seed.
#[derive(Debug, Clone, Copy)]
struct Case {
    channels: usize,
    sparsity: f64,
    optim: Optim,
    dense: usize,
    seed: u64,
}

/// `n` cases drawn from a fixed seed (so a failure names a case that can be re-run).
fn cases(n: usize, seed: u64) -> Vec<Case> {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|_| {
            let optim = match next() % 3 {
                0 => {
                    let momentum = next() % 2 == 0;
                    Optim::Sgd {
                        momentum,
                        nesterov: momentum && next() % 2 == 0,
                        decay: next() % 2 == 0,
                    }
                }
                1 => Optim::Adam {
                    decay: next() % 2 == 0,
                },
                _ => Optim::AdamW,
            };
            Case {
                channels: 1 + (next() % 4) as usize,
                sparsity: 0.05 + 0.9 * (next() % 1000) as f64 / 1000.0,
                optim,
                dense: (next() % 3) as usize,
                seed: next() % 1000,
            }
        })
        .collect()
}

/// Pruned positions whose stored weight is not exactly zero.
fn revived(model: &impl Module, masks: &MaskSet) -> usize {
    pruned_nonzero(model, masks).unwrap()
}

/// Steps of a squared-logit loss on a fixed input.
fn steps<N: Net>(
    mut net: N,
    optim: &mut ModuleOptimizer,
    n: usize,
    masks: Option<&MaskSet>,
    device: &Device,
) -> N {
    let x = Tensor::<4>::ones([2, 2, 4, 4], device) * 0.5;
    for _ in 0..n {
        let loss = net.out(x.clone()).square().mean();
        let mut grads = GradientsParams::from_grads(loss.backward(), &net);
        if let Some(masks) = masks {
            grads = param_masks(&net, masks)
                .unwrap()
                .mask_gradients(&net, grads)
                .unwrap();
        }
        net = optim.step(0.05, net, grads);
    }
    net
}

/// Dense steps, pruning to `sparsity`, the optimiser's state pruned, then masked steps: no
/// pruned stored weight may move. Returns how many moved when the state is *not* pruned.
fn run<N: Net>(
    channels: usize,
    sparsity: f64,
    optim: Optim,
    dense: usize,
    seed: u64,
    prune_state: bool,
) -> usize {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let net = N::build(channels, &device);
    let mut opt = optim.init();
    let net = steps(net, &mut opt, dense, None, &device);
    let masks = PruneMethod::global_magnitude()
        .prune(&masked_weights(&net), &Prunable::all(), sparsity)
        .unwrap();
    let net = apply_masks(net, &masks).unwrap();
    assert_eq!(revived(&net, &masks), 0);
    if prune_state {
        opt = prune_optimizer_state(opt, &net, &masks).unwrap();
    }
    let net = steps(net, &mut opt, 3, Some(&masks), &device);
    revived(&net, &masks)
}

#[test]
fn pruned_weights_of_plain_layers_stay_exactly_zero() {
    for c in cases(24, 0x5eed_0001) {
        let moved = run::<Plain>(c.channels, c.sparsity, c.optim, c.dense, c.seed, true);
        assert_eq!(moved, 0, "{c:?}");
    }
}

#[test]
fn pruned_weights_of_masked_layers_stay_exactly_zero() {
    for c in cases(24, 0x5eed_0002) {
        let moved = run::<Masked>(c.channels, c.sparsity, c.optim, c.dense, c.seed, true);
        assert_eq!(moved, 0, "{c:?}");
    }
}

/// Without pruning the optimiser's state, momentum gathered on the dense model moves pruned
/// stored weights — in masked layers too, whose forward pass still reads zeros.
#[test]
fn momentum_carried_over_from_dense_training_moves_pruned_weights_unless_pruned() {
    let sgd = Optim::Sgd {
        momentum: true,
        nesterov: false,
        decay: true,
    };
    for optim in [sgd, Optim::Adam { decay: false }] {
        assert!(run::<Masked>(4, 0.5, optim, 2, 7, false) > 0, "{optim:?}");
        assert!(run::<Plain>(4, 0.5, optim, 2, 7, false) > 0, "{optim:?}");
        assert_eq!(run::<Masked>(4, 0.5, optim, 2, 7, true), 0, "{optim:?}");
        assert_eq!(run::<Plain>(4, 0.5, optim, 2, 7, true), 0, "{optim:?}");
    }
}
