//! Writing a model as safetensors with torchvision's key names.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::keys::{torch_key, PathStack};
use crate::error::{ModelError, Result};
use crate::resnet::ResNet;
use dwlth_store::atomic_write;

/// The `format` metadata value of the project's ResNet files.
pub const RESNET_FILE_FORMAT: &str = "dwlth.resnet.v1";

struct Collector {
    path: PathStack,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = torch_key(self.path.parts());
        let value = param.val();
        let shape = value.shape().to_vec();
        let values = value
            .into_data()
            .convert::<f32>()
            .try_to_vec_as::<f32>()
            .unwrap_or_default();
        // An all-ones mask says nothing: leave it out so that unpruned models are plain
        // torchvision files.
        if key.ends_with("weight_mask") && values.iter().all(|v| *v == 1.0) {
            return;
        }
        self.tensors.push((key, shape, values));
    }
}

/// Every tensor of `module` under its PyTorch key (`bn1.weight`, `layer1.0.conv1.weight_mask`),
/// leaving out all-ones masks.
///
/// BatchNorm running statistics are read after synchronisation: Burn keeps the latest
/// train-mode update per thread until `valid()` folds it in.
pub fn resnet_tensors<M: Module>(module: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut collector = Collector {
        path: PathStack::default(),
        tensors: Vec::new(),
    };
    module.valid().visit(&mut collector);
    collector.tensors
}

/// Saves `model` atomically as safetensors: torchvision keys (loadable by
/// `torchvision.models.resnetXX().load_state_dict(..., strict=False)`), `X.weight_mask` for
/// pruned layers, `normalize.mean|std`, and metadata naming the architecture and shape.
/// Pruned weights are stored as the zeros they are.
pub fn save_resnet(model: &ResNet, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let tensors = resnet_tensors(model);
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views = bytes
        .iter()
        .map(|(k, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.as_str(), v))
                .map_err(|e| ModelError::InvalidValue {
                    key: k.clone(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let config = model.config();
    let metadata = HashMap::from([
        ("format".to_string(), RESNET_FILE_FORMAT.to_string()),
        ("arch".to_string(), config.arch.to_string()),
        ("stem".to_string(), config.stem.to_string()),
        ("width".to_string(), config.width.to_string()),
        ("in_channels".to_string(), config.in_channels.to_string()),
        ("num_classes".to_string(), config.num_classes.to_string()),
    ]);
    let out = safetensors::serialize(views, Some(metadata)).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        format: "safetensors",
        reason: e.to_string(),
    })?;
    Ok(atomic_write(path, &out)?)
}
