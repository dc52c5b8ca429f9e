//! Rewriting a model's prunable layers from a [`MaskSet`]: every mask set, every weight it
//! prunes zeroed, checked against the model first (shapes, unknown layers) so that nothing is
//! half-applied; and the [`ParamMasks`] that keep pruned weights at zero through training.

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Tensor, TensorData};
use dwlth_models::io::torch_key;
use dwlth_models::ParamMasks;

use crate::error::{PruneError, Result};
use crate::layers::{masked_weights, transpose, Walk, WeightKind};
use crate::mask_set::MaskSet;

struct Applier<'a> {
    walk: Walk,
    masks: &'a MaskSet,
}

impl Applier<'_> {
    fn layer(&self) -> Option<(String, bool)> {
        let parts = self.walk.path.parts();
        let (leaf, parent) = parts.split_last()?;
        let is_mask = match leaf.as_str() {
            "weight" => false,
            "mask" => true,
            _ => return None,
        };
        let mut weight_path = parent.to_vec();
        weight_path.push("weight".into());
        Some((torch_key(&weight_path), is_mask))
    }
}

impl ModuleMapper for Applier<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.walk.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.walk.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((name, is_mask)) = self.layer() else {
            return param;
        };
        let Some(layer) = self.masks.get(&name) else {
            return param;
        };
        let mut values: Vec<f32> = layer.keep.iter().map(|k| f32::from(u8::from(*k))).collect();
        let mut shape = layer.shape.clone();
        if self.walk.plain(D) == Some(WeightKind::BurnLinear) {
            // Masks are `[out, in]`; Burn's `Linear` stores `[in, out]`.
            values = transpose(&values, shape[0], shape[1]);
            shape.swap(0, 1);
        }
        param.map(|old| {
            let require_grad = old.is_require_grad();
            let mask = Tensor::<D>::from_data(TensorData::new(values, shape), &old.device());
            let new = if is_mask { mask } else { (old * mask).detach() };
            if require_grad {
                new.require_grad()
            } else {
                new
            }
        })
    }
}

/// Writes `masks` into `model`: each named layer gets the mask, and its weight is zeroed where
/// the mask is zero. Layers the set does not name keep their masks.
///
/// What keeps pruned weights at zero afterwards:
/// - a **masked layer** applies its mask in `forward`, so a pruned weight gets a zero gradient;
///   with a fresh optimiser (or one whose state went through [`prune_optimizer_state`]) it stays
///   exactly zero through SGD with momentum and weight decay, and through Adam.
/// - an optimiser **carried over** from training the dense model still holds momentum at the
///   newly pruned positions and moves those stored weights (the forward pass still reads
///   zeros): call [`prune_optimizer_state`] once after pruning.
/// - a **plain Burn `Conv2d` / `Linear`** has no mask of its own, so its gradients must be masked
///   before every step: `param_masks(&model, &masks)?.mask_gradients(&model, grads)?`, or train
///   with `dwlth_adv::Trainer::with_param_masks`.
///
/// Refuses, naming the layer, a mask for a layer the model lacks or of the wrong shape.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::conv::{Conv2d, Conv2dConfig};
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::Device;
/// use dwlth_prune::{apply_masks, masked_weights, Prunable, PruneMethod};
///
/// // A model made of Burn's own layers, pruned like a ResNet of masked layers.
/// #[derive(Module, Debug)]
/// struct Tiny {
///     conv: Conv2d,
///     head: Linear,
/// }
///
/// let device = Device::flex();
/// let model = Tiny {
///     conv: Conv2dConfig::new([3, 8], [3, 3]).init(&device),
///     head: LinearConfig::new(8, 10).init(&device),
/// };
/// let prunable = Prunable::convolutions();
/// let masks = PruneMethod::global_magnitude().prune(&masked_weights(&model), &prunable, 0.5)?;
/// let model = apply_masks(model, &masks)?;
/// let zeros = model.conv.weight.val().equal_elem(0.0).int().sum().into_scalar::<i64>();
/// assert_eq!(zeros, 108); // half of 8 × 3 × 3 × 3
/// # Ok::<(), dwlth_prune::PruneError>(())
/// ```
pub fn apply_masks<M: Module>(model: M, masks: &MaskSet) -> Result<M> {
    check_masks_fit(&model, masks).map_err(|e| masks.in_file(e))?;
    let mut applier = Applier {
        walk: Walk::default(),
        masks,
    };
    Ok(model.map(&mut applier))
}

/// The masks of `masks` laid out like `model`'s parameters (Burn `Linear` weights transposed),
/// to zero gradients ([`ParamMasks::mask_gradients`]) and optimiser state
/// ([`ParamMasks::mask_optimizer`]) at pruned positions.
///
/// Refuses, naming the layer, a mask for a layer the model lacks or of the wrong shape.
pub fn param_masks<M: Module>(model: &M, masks: &MaskSet) -> Result<ParamMasks> {
    check_masks_fit(model, masks).map_err(|e| masks.in_file(e))?;
    let layers = masked_weights(model);
    let mut out = ParamMasks::new();
    for (name, mask) in masks.iter() {
        let plain_linear = layers
            .iter()
            .any(|l| &l.name == name && l.kind == WeightKind::BurnLinear);
        let (shape, keep) = if plain_linear {
            let (rows, cols) = (mask.shape[0], mask.shape[1]);
            (vec![cols, rows], transpose(&mask.keep, rows, cols))
        } else {
            (mask.shape.clone(), mask.keep.clone())
        };
        out.insert(name.clone(), shape, &keep)?;
    }
    Ok(out)
}

/// How many positions `masks` prunes hold a stored weight that is not exactly zero in `model`:
/// 0 when pruning held through training (the check behind every claim that it does).
///
/// Refuses, naming the layer, a mask for a layer the model lacks or of the wrong shape.
pub fn pruned_nonzero<M: Module>(model: &M, masks: &MaskSet) -> Result<usize> {
    check_masks_fit(model, masks).map_err(|e| masks.in_file(e))?;
    let layers = masked_weights(model);
    Ok(masks
        .iter()
        .filter_map(|(name, mask)| {
            let layer = layers.iter().find(|l| &l.name == name)?;
            let weights = layer.weight.iter().zip(&mask.keep);
            Some(weights.filter(|(w, keep)| !**keep && **w != 0.0).count())
        })
        .sum())
}

/// `optim` with its state (momentum, Adam's moments) zeroed at the positions `masks` prunes,
/// for an optimiser that carries on after pruning a model it trained dense. Without it the
/// momentum gathered before pruning moves pruned stored weights for many steps.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::optim::{momentum::MomentumConfig, GradientsParams, SgdConfig};
/// use burn::tensor::{Device, Tensor};
/// use dwlth_prune::{apply_masks, masked_weights, param_masks, prune_optimizer_state,
///     Prunable, PruneMethod};
///
/// #[derive(Module, Debug)]
/// struct Net {
///     fc: Linear,
/// }
///
/// let device = Device::flex().autodiff();
/// let mut net = Net { fc: LinearConfig::new(4, 4).init(&device) };
/// let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new())).init();
/// let x = Tensor::<2>::ones([2, 4], &device);
/// for _ in 0..3 {
///     let grads = GradientsParams::from_grads(net.fc.forward(x.clone()).sum().backward(), &net);
///     net = optim.step(0.1, net, grads);
/// }
/// let masks = PruneMethod::global_magnitude()
///     .prune(&masked_weights(&net), &Prunable::all(), 0.5)?;
/// let net = apply_masks(net, &masks)?;
/// let mut optim = prune_optimizer_state(optim, &net, &masks)?;
/// let keep = param_masks(&net, &masks)?;
/// let grads = GradientsParams::from_grads(net.fc.forward(x).sum().backward(), &net);
/// let grads = keep.mask_gradients(&net, grads)?;
/// let net = optim.step(0.1, net, grads);
/// let zeros = net.fc.weight.val().equal_elem(0.0).int().sum().into_scalar::<i64>();
/// assert_eq!(zeros, 8);
/// # Ok::<(), dwlth_prune::PruneError>(())
/// ```
pub fn prune_optimizer_state<M: Module>(
    optim: ModuleOptimizer,
    model: &M,
    masks: &MaskSet,
) -> Result<ModuleOptimizer> {
    Ok(param_masks(model, masks)?.mask_optimizer(model, optim)?)
}

/// Every mask of `masks` names a layer of `model` and has its weight's shape.
fn check_masks_fit<M: Module>(model: &M, masks: &MaskSet) -> Result<()> {
    let layers = masked_weights(model);
    for (name, layer) in masks.iter() {
        layer.validate(name)?;
        match layers.iter().find(|l| &l.name == name) {
            None => {
                let known: Vec<&str> = layers.iter().take(6).map(|l| l.name.as_str()).collect();
                return Err(PruneError::UnknownLayer {
                    layer: name.clone(),
                    known: known.join(", ") + if layers.len() > 6 { ", ..." } else { "" },
                });
            }
            Some(l) if l.shape != layer.shape => {
                return Err(PruneError::ShapeMismatch {
                    layer: name.clone(),
                    expected: l.shape.clone(),
                    found: layer.shape.clone(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}
