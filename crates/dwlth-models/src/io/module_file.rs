//! Saving and loading the full state of *any* module (a training checkpoint), atomically.
//!
//! Unlike [`save_resnet`](super::save_resnet), which writes torchvision's key names for
//! exchange with PyTorch, this writes Burn's own parameter paths and so works for every model
//! built from Burn modules. BatchNorm running statistics are synchronised before saving.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::error::{ModelError, Result};

/// Saves every tensor of `module` to a safetensors file at `path`, atomically.
pub fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut store = SafetensorsStore::from_file(&tmp);
    module
        .valid()
        .save_into(&mut store)
        .map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            format: "module checkpoint",
            reason: e.to_string(),
        })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ModelError::io(path, e)
    })
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
    ids: std::collections::BTreeMap<String, u64>,
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
        self.ids.insert(self.path.dotted(), param.id.val());
    }
}

/// The parameter id of every float tensor of `module`, by module path.
///
/// Optimiser state (momentum buffers) is keyed by parameter id, and a model rebuilt after a
/// restart gets fresh ids; saving these and restoring them with [`restore_param_ids`] lets a
/// resumed run continue with its optimiser state.
pub fn param_ids<M: Module>(module: &M) -> std::collections::BTreeMap<String, u64> {
    let mut collector = IdCollector {
        path: Default::default(),
        ids: Default::default(),
    };
    module.visit(&mut collector);
    collector.ids
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
