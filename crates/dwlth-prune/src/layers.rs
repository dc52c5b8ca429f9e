//! Finding the prunable weights of *any* Burn model.
//!
//! Two kinds of layer are found, and nothing here assumes a ResNet:
//!
//! - a **masked layer**: any module with two sibling parameters named `weight` and `mask` of the
//!   same shape — what `dwlth_models::MaskedConv2d` and `MaskedLinear` are, and what a user's
//!   own layer can be. Its mask is the `mask` parameter.
//! - a **plain Burn layer**: `burn::nn::Conv2d` or `burn::nn::Linear`, what every Burn model is
//!   made of. It has nowhere to keep a mask, so its pruned weights are the ones pruning set to
//!   zero: its mask reads as `weight != 0`. Keep them at zero while training with
//!   [`ParamMasks`](dwlth_models::ParamMasks) (see [`param_masks`](crate::param_masks)).
//!   A Burn `Linear` stores its weight as `[in, out]`; it is reported (and its masks are
//!   written) in PyTorch's `[out, in]`, so masks, structured criteria and saved mask files mean
//!   the same for both kinds.
//!
//! A layer is named by the PyTorch key of its weight (`layer1.0.conv1.weight`), the name
//! `torch.nn.utils.prune` masks go by.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use dwlth_models::io::{torch_key, PathStack};

/// One masked weight of a model, copied to the host.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedWeight {
    /// PyTorch key of the weight (`layer2.0.downsample.0.weight`).
    pub name: String,
    /// Weight shape.
    pub shape: Vec<usize>,
    /// Weight values (row-major).
    pub weight: Vec<f32>,
    /// Current mask (`true` = kept).
    pub mask: Vec<bool>,
    /// Which kind of layer holds the weight.
    pub kind: WeightKind,
}

/// The kind of layer a prunable weight belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightKind {
    /// A layer with its own `mask` parameter (`MaskedConv2d`, `MaskedLinear`, a user's layer).
    Masked,
    /// Burn's `Conv2d`: no mask of its own; pruned weights are zeros.
    BurnConv2d,
    /// Burn's `Linear`: no mask of its own, weight stored `[in, out]` (reported `[out, in]`).
    BurnLinear,
}

impl WeightKind {
    /// The kind of a parameter named `weight` of rank `rank` inside a struct of
    /// `container_type` (Burn's derive passes `"Struct:Conv2d"`), if it is a plain Burn layer.
    pub(crate) fn plain(container_type: &str, rank: usize) -> Option<Self> {
        match (container_type, rank) {
            ("Struct:Conv2d", 4) => Some(Self::BurnConv2d),
            ("Struct:Linear", 2) => Some(Self::BurnLinear),
            _ => None,
        }
    }

    /// Whether the layer keeps no mask of its own.
    pub fn is_plain(self) -> bool {
        self != Self::Masked
    }
}

/// Where a module traversal is: the path and, for each entered field, the struct that holds it
/// (Burn's derive passes `"Struct:Conv2d"` when entering a `Conv2d`'s fields) — what tells a
/// plain Burn layer's weight from any other parameter. Every visitor and mapper of this crate
/// that treats plain layers walks with one.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    /// The module path.
    pub path: PathStack,
    containers: Vec<String>,
}

impl Walk {
    /// Call from `enter_module`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        self.path.enter(name);
        self.containers.push(container_type.to_string());
    }

    /// Call from `exit_module`.
    pub fn exit(&mut self) {
        self.path.exit();
        self.containers.pop();
    }

    /// The plain Burn layer the visited parameter (of rank `rank`) is the weight of, if any.
    pub fn plain(&self, rank: usize) -> Option<WeightKind> {
        if self.path.parts().last().map(String::as_str) != Some("weight") {
            return None;
        }
        WeightKind::plain(self.containers.last().map(String::as_str)?, rank)
    }
}

/// `values` of a `[rows, cols]` matrix, transposed to `[cols, rows]`.
pub(crate) fn transpose<T: Copy>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

impl MaskedWeight {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.weight.len()
    }

    /// Whether the weight is empty.
    pub fn is_empty(&self) -> bool {
        self.weight.is_empty()
    }
}

fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap_or_default()
}

struct Finder {
    walk: Walk,
    weights: HashMap<String, (Vec<usize>, Vec<f32>)>,
    found: Vec<MaskedWeight>,
}

impl ModuleVisitor for Finder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.walk.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.walk.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(kind) = self.walk.plain(D) {
            let name = torch_key(self.walk.path.parts());
            let value = param.val();
            let mut shape = value.shape().to_vec();
            let mut weight = host_values(value);
            if kind == WeightKind::BurnLinear {
                weight = transpose(&weight, shape[0], shape[1]);
                shape.swap(0, 1);
            }
            let mask = weight.iter().map(|w| *w != 0.0).collect();
            self.found.push(MaskedWeight {
                name,
                shape,
                weight,
                mask,
                kind,
            });
            return;
        }
        let parts = self.walk.path.parts();
        let Some((leaf, parent)) = parts.split_last() else {
            return;
        };
        let mut weight_path = parent.to_vec();
        weight_path.push("weight".into());
        let name = torch_key(&weight_path);
        let value = param.val();
        let shape = value.shape().to_vec();
        match leaf.as_str() {
            "weight" => {
                self.weights.insert(name, (shape, host_values(value)));
            }
            "mask" => {
                if let Some((wshape, weight)) = self.weights.remove(&name) {
                    if wshape == shape {
                        let mask = host_values(value).into_iter().map(|m| m != 0.0).collect();
                        self.found.push(MaskedWeight {
                            name,
                            shape,
                            weight,
                            mask,
                            kind: WeightKind::Masked,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every prunable weight of `model` — of masked layers and of plain Burn `Conv2d` / `Linear`
/// layers — in module order.
///
/// ```
/// use burn::module::Module;
/// use burn::nn::conv::{Conv2d, Conv2dConfig};
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::Device;
/// use dwlth_models::{MaskedConv2d, MaskedConv2dConfig};
/// use dwlth_prune::{masked_weights, WeightKind};
///
/// #[derive(Module, Debug)]
/// struct Mixed {
///     stem: MaskedConv2d,
///     body: Conv2d,
///     head: Linear,
/// }
///
/// let device = Device::flex();
/// let model = Mixed {
///     stem: MaskedConv2dConfig::new([3, 4], [3, 3]).init(&device),
///     body: Conv2dConfig::new([4, 4], [1, 1]).init(&device),
///     head: LinearConfig::new(4, 10).init(&device),
/// };
/// let found: Vec<_> = masked_weights(&model)
///     .into_iter()
///     .map(|l| (l.name, l.shape, l.kind))
///     .collect();
/// assert_eq!(found, [
///     ("stem.weight".to_string(), vec![4, 3, 3, 3], WeightKind::Masked),
///     ("body.weight".to_string(), vec![4, 4, 1, 1], WeightKind::BurnConv2d),
///     // PyTorch's `[out, in]`, whatever Burn stores.
///     ("head.weight".to_string(), vec![10, 4], WeightKind::BurnLinear),
/// ]);
/// ```
pub fn masked_weights<M: Module>(model: &M) -> Vec<MaskedWeight> {
    let mut finder = Finder {
        walk: Walk::default(),
        weights: HashMap::new(),
        found: Vec::new(),
    };
    model.visit(&mut finder);
    finder.found
}
