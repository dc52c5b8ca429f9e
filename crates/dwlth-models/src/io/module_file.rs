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
    Ok(())
}
