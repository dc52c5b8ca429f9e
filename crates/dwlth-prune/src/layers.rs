//! Finding and rewriting the masked weights of *any* Burn model.
//!
//! A masked layer is any module with two sibling parameters named `weight` and `mask` of the
//! same shape — what `dwlth_models::MaskedConv2d` and `MaskedLinear` are, and what a user's own
//! layer can be. Nothing here assumes a ResNet. A layer is named by the PyTorch key of its
//! weight (`layer1.0.conv1.weight`), the name `torch.nn.utils.prune` masks go by.

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
    path: PathStack,
    weights: HashMap<String, (Vec<usize>, Vec<f32>)>,
    found: Vec<MaskedWeight>,
}

impl ModuleVisitor for Finder {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let parts = self.path.parts();
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
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// Every masked weight of `model`, in module order.
pub fn masked_weights<M: Module>(model: &M) -> Vec<MaskedWeight> {
    let mut finder = Finder {
        path: PathStack::default(),
        weights: HashMap::new(),
        found: Vec::new(),
    };
    model.visit(&mut finder);
    finder.found
}
