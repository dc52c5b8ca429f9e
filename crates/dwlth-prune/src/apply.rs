//! Rewriting a model's masked layers from a [`MaskSet`]: every mask set, every weight it
//! prunes zeroed, checked against the model first (shapes, unknown layers) so that nothing is
//! half-applied.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use dwlth_models::io::{torch_key, PathStack};

use crate::error::{PruneError, Result};
use crate::layers::masked_weights;
use crate::mask_set::MaskSet;

struct Applier<'a> {
    path: PathStack,
    masks: &'a MaskSet,
}

impl Applier<'_> {
    fn layer(&self) -> Option<(String, bool)> {
        let parts = self.path.parts();
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
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((name, is_mask)) = self.layer() else {
            return param;
        };
        let Some(layer) = self.masks.get(&name) else {
            return param;
        };
        let values: Vec<f32> = layer.keep.iter().map(|k| f32::from(u8::from(*k))).collect();
        let shape = layer.shape.clone();
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
/// the mask is zero (so pruned weights stay exactly zero through training). Layers the set
/// does not name keep their masks.
///
/// Refuses, naming the layer, a mask for a layer the model lacks or of the wrong shape.
pub fn apply_masks<M: Module>(model: M, masks: &MaskSet) -> Result<M> {
    check_masks_fit(&model, masks).map_err(|e| masks.in_file(e))?;
    let mut applier = Applier {
        path: PathStack::default(),
        masks,
    };
    Ok(model.map(&mut applier))
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
