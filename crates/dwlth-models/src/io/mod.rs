//! Reading and writing weights: PyTorch checkpoints in the layouts the papers' code produced,
//! safetensors, and the project's own safetensors file.
//!
//! The pipeline is the same for every format: read the file into a [`StateDict`] (names →
//! lazily converted tensors), rewrite its keys into torchvision's names with a
//! [`CheckpointFormat`], infer the model's shape from the tensors, and load them with
//! [`load_state`], which refuses missing, unexpected and mis-shaped tensors by name.

mod export;
mod formats;
mod keys;
mod load;
mod module_file;
mod state_dict;

/// The one atomic file writer of the project (temporary file, sync, rename, folder sync).
pub use dwlth_store::atomic_write;
pub use export::{resnet_tensors, save_resnet, RESNET_FILE_FORMAT};
pub use formats::CheckpointFormat;
pub use keys::{torch_key, PathStack};
pub use load::{import_resnet, load_resnet, load_state, ImportOptions, ImportReport};
pub use module_file::{
    fingerprint_module, load_module, module_bytes, param_ids, param_shapes, restore_param_ids,
    save_module,
};
pub use state_dict::{RawTensor, StateDict};
