//! Saving and loading the full state of *any* module (a training checkpoint), atomically.
//!
//! Unlike [`save_resnet`](super::save_resnet), which writes torchvision's key names for
//! exchange with PyTorch, this writes Burn's own parameter paths and so works for every model
//! built from Burn modules. BatchNorm running statistics are synchronised before saving.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::error::{ModelError, Result};

/// Every tensor of `module` as the bytes of a safetensors file (Burn's parameter paths).
pub fn module_bytes<M: Module>(module: &M) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None);
    let format = |e: &dyn std::fmt::Display| ModelError::Format {
        path: "(in memory)".into(),
        format: "module checkpoint",
        reason: e.to_string(),
    };
    module
        .valid()
        .save_into(&mut store)
        .map_err(|e| format(&e))?;
    store.get_bytes().map_err(|e| format(&e))
}

/// Saves every tensor of `module` to a safetensors file at `path`, atomically.
///
/// Any Burn module, with PyTorch-style dotted names:
///
/// ```
/// use burn::module::Module;
/// use burn::nn::{Linear, LinearConfig};
/// use burn::tensor::Device;
/// use dwlth_models::io::{fingerprint_module, load_module, save_module};
///
/// #[derive(Module, Debug)]
/// struct Net {
///     fc: Linear,
/// }
///
/// let device = Device::flex();
/// let net = Net { fc: LinearConfig::new(3, 2).init(&device) };
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("net.safetensors");
/// save_module(&net, &path)?;
/// let mut other = Net { fc: LinearConfig::new(3, 2).init(&device) };
/// load_module(&mut other, &path)?;
/// assert_eq!(fingerprint_module(&other)?, fingerprint_module(&net)?);
/// # Ok::<(), dwlth_models::ModelError>(())
/// ```
pub fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    let bytes = module_bytes(module)?;
    Ok(dwlth_store::atomic_write(path, &bytes)?)
}

/// A fingerprint of every tensor's values in `module` (16 hex digits), in a fixed order: two
/// modules with the same parameters and buffers have the same one. Used to refuse resuming a run
/// from other starting weights.
pub fn fingerprint_module<M: Module>(module: &M) -> Result<String> {
    // The tensors, not the file: its metadata header is a hash map in no fixed order.
    let bytes = module_bytes(module)?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Format {
        path: "(in memory)".into(),
        format: "module checkpoint",
        reason: e.to_string(),
    })?;
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut f = dwlth_store::Fingerprint::new();
    for (name, view) in tensors {
        f.update(name.as_bytes())
            .update(format!("{:?}{:?}", view.dtype(), view.shape()).as_bytes())
            .update(view.data());
    }
    Ok(f.finish())
}

/// Loads a file written by [`save_module`] into `module`; every tensor must be present and fit.
pub fn load_module<M: Module>(module: &mut M, path: &Path) -> Result<()> {
    if !path.exists() {
        return Err(ModelError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let mut store = SafetensorsStore::from_file(path);
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            format: "module checkpoint",
            reason: e.to_string(),
        })?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        return Err(ModelError::Format {
            path: path.to_path_buf(),
            format: "module checkpoint",
            reason: format!("{result}"),
        });
    }
    super::load::check_module_finite(module, path)
}

struct IdCollector {
    path: super::keys::PathStack,
    params: std::collections::BTreeMap<String, (u64, Vec<usize>)>,
}

impl burn::module::ModuleVisitor for IdCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(
        &mut self,
        param: &burn::module::Param<burn::tensor::Tensor<D>>,
    ) {
        let shape = param.val().dims().to_vec();
        self.params
            .insert(self.path.dotted(), (param.id.val(), shape));
    }
}

fn collect_params<M: Module>(module: &M) -> std::collections::BTreeMap<String, (u64, Vec<usize>)> {
    let mut collector = IdCollector {
        path: Default::default(),
        params: Default::default(),
    };
    module.visit(&mut collector);
    collector.params
}

/// The parameter id of every float tensor of `module`, by module path.
///
/// Optimiser state (momentum buffers) is keyed by parameter id, and a model rebuilt after a
/// restart gets fresh ids; saving these and restoring them with [`restore_param_ids`] lets a
/// resumed run continue with its optimiser state.
pub fn param_ids<M: Module>(module: &M) -> std::collections::BTreeMap<String, u64> {
    collect_params(module)
        .into_iter()
        .map(|(path, (id, _))| (path, id))
        .collect()
}

/// The shape of every float tensor of `module`, by parameter id: what a saved optimiser state
/// must match before it is loaded (Burn's optimiser would panic on the next step otherwise).
pub fn param_shapes<M: Module>(module: &M) -> std::collections::BTreeMap<u64, Vec<usize>> {
    collect_params(module).into_values().collect()
}

struct IdRestorer<'a> {
    path: super::keys::PathStack,
    ids: &'a std::collections::BTreeMap<String, u64>,
}

impl burn::module::ModuleMapper for IdRestorer<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<D>> {
        match self.ids.get(&self.path.dotted()) {
            Some(id) => {
                let (_, value, mapper) = param.consume();
                burn::module::Param::from_mapped_value((*id).into(), value, mapper)
            }
            None => param,
        }
    }
}

/// Gives the parameters of `module` the ids recorded by [`param_ids`] (matched by path).
pub fn restore_param_ids<M: Module>(module: M, ids: &std::collections::BTreeMap<String, u64>) -> M {
    let mut restorer = IdRestorer {
        path: Default::default(),
        ids,
    };
    module.map(&mut restorer)
}
