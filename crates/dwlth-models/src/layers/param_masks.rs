//! Masks held beside a model, keyed by the name of the weight they prune, for the two places a
//! pruned weight can come back to life: its gradient and the optimiser's state.
//!
//! Why this exists next to [`MaskedConv2d`](super::MaskedConv2d): a model built from Burn's own
//! `Conv2d` / `Linear` has nowhere to keep a mask, so its pruned weights are zero only because
//! pruning wrote zeros — the next gradient step moves them again. And for *any* model an
//! optimiser carried over from dense training still holds momentum (or Adam moments) at the
//! positions just pruned, which moves the stored weight even when the gradient is zero. Pruned
//! weights stay exactly zero when, before each step, their gradients are zeroed
//! ([`ParamMasks::mask_gradients`]) and, once after pruning, the optimiser's state there is zeroed
//! ([`ParamMasks::mask_optimizer`]). With zero weight, zero gradient and zero state, SGD (with
//! momentum, Nesterov, coupled weight decay), Adam and AdamW all leave the weight at zero.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::optim::{GradientsParams, SgdConfig};
//! use burn::tensor::{Device, Tensor};
//! use dwlth_models::layers::ParamMasks;
//!
//! #[derive(Module, Debug)]
//! struct Net {
//!     fc: Linear,
//! }
//!
//! let device = Device::flex().autodiff();
//! let net = Net { fc: LinearConfig::new(2, 2).init(&device) };
//! // Keep only the diagonal of the (Burn-layout, `[in, out]`) weight.
//! let mut masks = ParamMasks::new();
//! masks.insert("fc.weight", vec![2, 2], &[true, false, false, true]).unwrap();
//! let net = masks.mask_weights(net).unwrap();
//! let mut optim = SgdConfig::new().init();
//! let x = Tensor::<2>::ones([3, 2], &device);
//! let grads = GradientsParams::from_grads(net.fc.forward(x).sum().backward(), &net);
//! let grads = masks.mask_gradients(&net, grads).unwrap();
//! let net = optim.step(0.1, net, grads);
//! let w = net.fc.weight.val().into_data().try_to_vec_as::<f32>().unwrap();
//! assert_eq!((w[1], w[2]), (0.0, 0.0));
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Bytes, Tensor, TensorData};

use crate::error::{ModelError, Result};
use crate::io::{torch_key, PathStack};

/// One mask: the parameter's shape and its values (1 = kept, 0 = pruned), in the parameter's
/// own layout.
#[derive(Debug, Clone, PartialEq)]
struct ParamMask {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// Binary masks of a model's parameters, keyed by the PyTorch name of the parameter
/// (`layer1.0.conv1.weight`) and laid out like the parameter itself.
///
/// Keyed by name, not by Burn's `ParamId`, so the masks survive anything that renumbers
/// parameters (a reload, a copy, a trainer giving parameters stable ids).
#[derive(Debug, Clone, Default)]
pub struct ParamMasks {
    masks: BTreeMap<String, ParamMask>,
    /// Each mask as a flat tensor on the device the gradients last lived on, so masking a
    /// step's gradients uploads nothing (on a GPU, a host-to-device copy of every masked
    /// weight per step otherwise). Shared by clones; emptied when a mask changes.
    on_device: Arc<Mutex<BTreeMap<String, Tensor<1>>>>,
}

/// Equal masks; what is cached on a device does not matter.
impl PartialEq for ParamMasks {
    fn eq(&self, other: &Self) -> bool {
        self.masks == other.masks
    }
}

impl ParamMasks {
    /// No masks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the mask of the parameter `name`, of `shape`, from `keep` in row-major
    /// order (`true` = kept). Refuses a mask whose length is not the shape's.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        keep: &[bool],
    ) -> Result<()> {
        let name = name.into();
        let numel: usize = shape.iter().product();
        if keep.len() != numel {
            return Err(ModelError::InvalidMask {
                layer: name,
                reason: format!(
                    "{} values for shape {shape:?} ({numel} entries)",
                    keep.len()
                ),
            });
        }
        let values = keep.iter().map(|k| f32::from(u8::from(*k))).collect();
        self.masks.insert(name, ParamMask { shape, values });
        // Clones share the cache: give this set a fresh one.
        self.on_device = Arc::default();
        Ok(())
    }

    /// Number of masked parameters.
    pub fn len(&self) -> usize {
        self.masks.len()
    }

    /// Whether no parameter is masked.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// The names of the masked parameters, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.masks.keys().map(String::as_str)
    }

    /// A fingerprint of every name, shape and mask value, for keying results made with them.
    pub fn fingerprint(&self) -> String {
        let mut f = dwlth_store::Fingerprint::new();
        for (name, mask) in &self.masks {
            f.update(name.as_bytes()).update(&[0]);
            for d in &mask.shape {
                f.update(&(*d as u64).to_le_bytes());
            }
            f.update_f32(&mask.values);
        }
        f.finish()
    }

    /// Checks that every mask names a float parameter of `model` of the mask's shape; returns
    /// each masked parameter's id (`ParamId::val`) by name.
    fn locate<M: Module>(&self, model: &M) -> Result<BTreeMap<String, u64>> {
        let mut finder = Finder {
            path: PathStack::default(),
            masks: self,
            found: BTreeMap::new(),
            error: None,
        };
        model.visit(&mut finder);
        if let Some(e) = finder.error {
            return Err(e);
        }
        if let Some(missing) = self.masks.keys().find(|n| !finder.found.contains_key(*n)) {
            return Err(ModelError::InvalidMask {
                layer: missing.clone(),
                reason: "the model has no float parameter of this name".into(),
            });
        }
        Ok(finder.found)
    }

    /// Zeroes the gradients of `grads` at masked positions, so that an optimiser step cannot move
    /// a pruned weight. Call it between `GradientsParams::from_grads` and `optim.step`.
    ///
    /// Refuses, naming it, a mask whose parameter `model` lacks or whose shape differs.
    pub fn mask_gradients<M: Module>(
        &self,
        model: &M,
        mut grads: GradientsParams,
    ) -> Result<GradientsParams> {
        self.locate(model)?;
        let mut masker = GradientMasker {
            path: PathStack::default(),
            masks: self,
            grads: &mut grads,
        };
        model.visit(&mut masker);
        Ok(grads)
    }

    /// Zeroes `model`'s masked parameters at pruned positions (keeping each parameter's id and
    /// gradient setting).
    pub fn mask_weights<M: Module>(&self, model: M) -> Result<M> {
        self.locate(&model)?;
        Ok(model.map(&mut WeightMasker {
            path: PathStack::default(),
            masks: self,
        }))
    }

    /// Zeroes the optimiser's state (momentum, Adam's moments — every state tensor of the
    /// parameter's shape) at pruned positions, so that momentum gathered before pruning cannot
    /// move a pruned weight. Call it once after pruning when the optimiser carries on from
    /// training the dense model; a fresh optimiser has no state to zero.
    ///
    /// Refuses, naming it, a mask whose parameter `model` lacks or whose shape differs.
    pub fn mask_optimizer<M: Module>(
        &self,
        model: &M,
        optim: ModuleOptimizer,
    ) -> Result<ModuleOptimizer> {
        let ids = self.locate(model)?;
        let by_id: BTreeMap<u64, &ParamMask> = ids
            .iter()
            .filter_map(|(name, id)| self.masks.get(name).map(|m| (*id, m)))
            .collect();
        let state_error = |reason: String| {
            ModelError::InvalidInput(format!("cannot rewrite the optimiser's state: {reason}"))
        };
        let bytes = optim
            .to_record()
            .into_bytes()
            .map_err(|e| state_error(e.to_string()))?;
        let reader =
            burn_pack::Reader::from_bytes(bytes).map_err(|e| state_error(e.to_string()))?;
        let scalars = reader.scalars().clone();
        let metadata = reader.metadata().clone();
        let tensors = reader
            .into_tensors()
            .map_err(|e| state_error(e.to_string()))?;
        let mut masked = Vec::with_capacity(tensors.len());
        for tensor in tensors {
            let mask = tensor.param_id.and_then(|id| by_id.get(&id)).filter(|m| {
                tensor.dtype == burn_pack::DType::F32 && tensor.shape.as_slice() == m.shape
            });
            let Some(mask) = mask else {
                masked.push(tensor);
                continue;
            };
            let (name, dtype, shape, param_id, data) = tensor
                .into_parts()
                .map_err(|e| state_error(e.to_string()))?;
            let values: Vec<u8> = data
                .chunks_exact(4)
                .zip(&mask.values)
                .flat_map(|(v, m)| {
                    let v = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                    (v * m).to_le_bytes()
                })
                .collect();
            masked.push(burn_pack::Tensor::new(
                name,
                dtype,
                shape,
                param_id,
                Bytes::from_bytes_vec(values),
            ));
        }
        let mut writer = burn_pack::Writer::new(masked);
        for (key, value) in &scalars {
            writer = writer.with_scalar(key, *value);
        }
        for (key, value) in &metadata {
            writer = writer.with_metadata(key, value);
        }
        let bytes = writer
            .into_bytes()
            .map_err(|e| state_error(e.to_string()))?;
        optim
            .from_bytes(bytes)
            .map_err(|e| state_error(e.to_string()))
    }
}

/// The torch name of the parameter at the end of `path`.
fn name_of(path: &PathStack) -> String {
    torch_key(path.parts())
}

struct Finder<'a> {
    path: PathStack,
    masks: &'a ParamMasks,
    found: BTreeMap<String, u64>,
    error: Option<ModelError>,
}

impl ModuleVisitor for Finder<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = name_of(&self.path);
        let Some(mask) = self.masks.masks.get(&name) else {
            return;
        };
        let shape = param.shape().dims::<D>().to_vec();
        if shape != mask.shape && self.error.is_none() {
            self.error = Some(ModelError::InvalidMask {
                layer: name.clone(),
                reason: format!(
                    "shape {:?} differs from the parameter's {shape:?}",
                    mask.shape
                ),
            });
        }
        self.found.insert(name, param.id.val());
    }
}

struct GradientMasker<'a> {
    path: PathStack,
    masks: &'a ParamMasks,
    grads: &'a mut GradientsParams,
}

impl ModuleVisitor for GradientMasker<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(mask) = self.masks.masks.get(&name_of(&self.path)) else {
            return;
        };
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let device = grad.device();
            let name = name_of(&self.path);
            let mut cache = self
                .masks
                .on_device
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let flat = match cache.get(&name) {
                Some(t) if t.device() == device => t.clone(),
                _ => {
                    let data = TensorData::new(mask.values.clone(), [mask.values.len()]);
                    let t = Tensor::<1>::from_data(data, &device);
                    cache.insert(name, t.clone());
                    t
                }
            };
            let shape: [usize; D] = grad.shape().dims();
            self.grads.register(param.id, grad * flat.reshape(shape));
        }
    }
}

struct WeightMasker<'a> {
    path: PathStack,
    masks: &'a ParamMasks,
}

impl ModuleMapper for WeightMasker<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(mask) = self.masks.masks.get(&name_of(&self.path)) else {
            return param;
        };
        let data = TensorData::new(mask.values.clone(), mask.shape.clone());
        super::mask::replace_value(param, |old| {
            let mask = Tensor::<D>::from_data(data, &old.device());
            old * mask
        })
    }
}
