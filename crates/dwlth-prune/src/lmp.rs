//! Learnable mask pruning (LMP, paper B §II-B): a score per weight, learned by gradient
//! descent with the weights frozen at θ_p; the mask keeps the top-scoring weights
//! (straight-through: the forward pass uses the hard mask, the gradient updates the scores).
//!
//! The gradient of the loss with respect to a mask entry is `∂L/∂(w ⊙ m) · w`. Running each
//! step with the hard mask baked into the weights (`w ← θ ⊙ m`, mask ← 1) gives
//! `∂L/∂(w ⊙ m)` at *every* entry, pruned ones included, as the weights' gradient; so LMP needs
//! nothing of the layers beyond the usual `weight`/`mask` pair and works on any masked model —
//! and on Burn's plain `Conv2d` / `Linear`, which have the weight alone.
//! BatchNorm runs on θ_p's running statistics (the whole model is frozen except for the
//! gradients LMP reads). Scores start at |θ| so the first mask is the one-shot magnitude
//! ticket.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Gradients;
use burn::tensor::{Int, Tensor, TensorData};
use dwlth_models::io::torch_key;
use dwlth_models::mode::materialize;

use crate::criteria::Scope;
use crate::error::{check_fraction, PruneError, Result};
use crate::layers::{masked_weights, transpose, Walk, WeightKind};
use crate::mask_set::{LayerMask, MaskSet};
use crate::select::{count_to_prune, lowest_k};
use crate::selection::Prunable;

/// Settings of learnable mask pruning.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LmpConfig {
    /// Target sparsity of the prunable weights.
    pub sparsity: f64,
    /// Top-k over all layers (global) or per layer.
    pub scope: Scope,
    /// Step size of the score updates (scores start at |θ|, so this is in weight units).
    pub lr: f64,
    /// Passes over the batches.
    pub epochs: usize,
}

/// A layer for one step: name, shape, θ, hard mask.
type BakedLayer = (String, Vec<usize>, Vec<f32>, Vec<bool>);

/// The model of one LMP step: weights `θ ⊙ m` requiring gradients, masks all ones.
struct Bake<'a> {
    walk: Walk,
    layers: &'a [BakedLayer],
}

impl ModuleMapper for Bake<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.walk.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.walk.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let parts = self.walk.path.parts().to_vec();
        let Some((leaf, parent)) = parts.split_last() else {
            return param;
        };
        let mut weight_path = parent.to_vec();
        weight_path.push("weight".into());
        let name = torch_key(&weight_path);
        let Some((_, shape, theta, keep)) = self.layers.iter().find(|l| l.0 == name) else {
            return param;
        };
        let mut values: Vec<f32> = match leaf.as_str() {
            "weight" => theta
                .iter()
                .zip(keep)
                .map(|(w, k)| if *k { *w } else { 0.0 })
                .collect(),
            "mask" => vec![1.0; theta.len()],
            _ => return param,
        };
        let is_weight = leaf == "weight";
        let mut shape = shape.clone();
        if self.walk.plain(D) == Some(WeightKind::BurnLinear) {
            // Layers are `[out, in]`; Burn's `Linear` stores `[in, out]`.
            values = transpose(&values, shape[0], shape[1]);
            shape.swap(0, 1);
        }
        param.map(|old| {
            let t = Tensor::<D>::from_data(TensorData::new(values, shape), &old.device());
            if is_weight {
                t.require_grad()
            } else {
                t
            }
        })
    }
}

struct GradReader<'a> {
    walk: Walk,
    grads: &'a Gradients,
    names: &'a [String],
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for GradReader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.walk.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.walk.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.walk.path.parts().last().map(String::as_str) != Some("weight") {
            return;
        }
        let name = torch_key(self.walk.path.parts());
        if !self.names.contains(&name) {
            return;
        }
        if let Some(g) = param.val().grad(self.grads) {
            let shape = g.shape().to_vec();
            let mut values = g.into_data().try_to_vec_as::<f32>().unwrap_or_default();
            if self.walk.plain(D) == Some(WeightKind::BurnLinear) {
                values = transpose(&values, shape[0], shape[1]);
            }
            self.out.push((name, values));
        }
    }
}

/// The hard masks of `scores` at `sparsity` (the lowest scores pruned).
fn top_masks(
    scores: &[(String, Vec<usize>, Vec<f32>)],
    sparsity: f64,
    scope: Scope,
) -> Vec<Vec<bool>> {
    match scope {
        Scope::Layer => scores
            .iter()
            .map(|(_, _, s)| {
                let cut = lowest_k(s, count_to_prune(sparsity, s.len()));
                cut.into_iter().map(|c| !c).collect()
            })
            .collect(),
        Scope::Global => {
            let all: Vec<f32> = scores
                .iter()
                .flat_map(|(_, _, s)| s.iter().copied())
                .collect();
            let cut = lowest_k(&all, count_to_prune(sparsity, all.len()));
            let mut out = Vec::new();
            let mut at = 0;
            for (_, _, s) in scores {
                out.push(cut[at..at + s.len()].iter().map(|c| !c).collect());
                at += s.len();
            }
            out
        }
    }
}

/// Learns a mask of `model`'s prunable layers (weights stay θ_p) on `batches`, for `classes`
/// classes; returns it at the target sparsity with the final training loss per epoch.
///
/// `model` must live on an autodiff device.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::{Device, Distribution, Int, Tensor};
/// use dwlth_prune::{learn_mask, LmpConfig, Prunable, Scope};
///
/// #[derive(Module, Debug)]
/// struct Net {
///     fc: Linear,
/// }
///
/// let device = Device::flex().autodiff();
/// let model = Net { fc: LinearConfig::new(12, 3).init(&device) };
/// let x = Tensor::<4>::random([6, 3, 2, 2], Distribution::Uniform(0.0, 1.0), &device);
/// let y = Tensor::<1, Int>::from_ints([0, 1, 2, 0, 1, 2], &device);
/// let config = LmpConfig { sparsity: 0.5, scope: Scope::Global, lr: 0.01, epochs: 2 };
/// let (masks, losses) = learn_mask(&model, &Prunable::all(), &config, &[(x, y)],
///     |m: &Net, images| m.fc.forward(images.flatten(1, 3)))?;
/// assert_eq!((masks.kept(), losses.len()), (18, 2));
/// # Ok::<(), dwlth_prune::PruneError>(())
/// ```
pub fn learn_mask<M: Module + Clone>(
    model: &M,
    prunable: &Prunable,
    config: &LmpConfig,
    batches: &[(Tensor<4>, Tensor<1, Int>)],
    logits: impl Fn(&M, Tensor<4>) -> Tensor<2>,
) -> Result<(MaskSet, Vec<f64>)> {
    check_fraction("sparsity", config.sparsity)?;
    if !(config.lr.is_finite() && config.lr > 0.0) || config.epochs == 0 {
        return Err(PruneError::InvalidFraction {
            what: "LMP learning rate (must be positive; epochs ≥ 1)",
            value: config.lr,
        });
    }
    if !model.devices().iter().any(|d| d.is_autodiff()) {
        return Err(PruneError::NothingPrunable(
            "LMP needs the model on an autodiff device".into(),
        ));
    }
    materialize(model);
    let layers: Vec<_> = masked_weights(model)
        .into_iter()
        .filter(|l| prunable.selects(&l.name, &l.shape))
        .collect();
    if layers.is_empty() {
        return Err(PruneError::NothingPrunable(
            "no prunable masked layer".into(),
        ));
    }
    let names: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    let mut scores: Vec<(String, Vec<usize>, Vec<f32>)> = layers
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                l.shape.clone(),
                l.weight.iter().map(|w| w.abs()).collect(),
            )
        })
        .collect();
    let frozen = model.clone().freeze();
    let device = model.devices()[0].clone();
    let ce = CrossEntropyLossConfig::new().init(&device);
    let mut history = Vec::new();
    for _ in 0..config.epochs {
        let (mut loss_sum, mut n) = (0.0, 0usize);
        for (x, y) in batches {
            let masks = top_masks(&scores, config.sparsity, config.scope);
            let baked: Vec<_> = layers
                .iter()
                .zip(&masks)
                .map(|(l, m)| (l.name.clone(), l.shape.clone(), l.weight.clone(), m.clone()))
                .collect();
            let step = frozen.clone().map(&mut Bake {
                walk: Walk::default(),
                layers: &baked,
            });
            let loss = ce.forward(logits(&step, x.clone().autodiff()), y.clone());
            let [batch] = y.dims();
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * batch as f64;
            n += batch;
            let grads = loss.backward();
            let mut reader = GradReader {
                walk: Walk::default(),
                grads: &grads,
                names: &names,
                out: Vec::new(),
            };
            step.visit(&mut reader);
            for (name, g) in reader.out {
                let Some(i) = names.iter().position(|n| *n == name) else {
                    continue;
                };
                let theta = &layers[i].weight;
                for ((s, g), w) in scores[i].2.iter_mut().zip(&g).zip(theta) {
                    // ∂L/∂m = ∂L/∂(w ⊙ m) · θ; descend on the score.
                    *s -= (config.lr * (*g as f64) * (*w as f64)) as f32;
                }
            }
        }
        history.push(loss_sum / n.max(1) as f64);
    }
    let masks = top_masks(&scores, config.sparsity, config.scope);
    let mut set = MaskSet::new();
    for ((name, shape, _), keep) in scores.into_iter().zip(masks) {
        set.insert(name, LayerMask { shape, keep });
    }
    set.metadata.insert("method".into(), "lmp".into());
    Ok((set, history))
}
