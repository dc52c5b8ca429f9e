//! # dwlth-store — results that cannot be silently wrong
//!
//! Every file dwlth writes goes through this crate, so that a process killed at any moment
//! (a pre-empted cluster job, `kill -9`, a power cut) leaves either the old state or the new one,
//! never a mixture that a resume would read as valid:
//!
//! - [`atomic_write`] publishes one file (temporary file, `fsync`, rename, `fsync` of the folder);
//!   [`write_file`] writes a file inside a folder that is not published yet.
//! - [`Checkpoints`] publishes a whole checkpoint — several files — as one folder rename, and
//!   refuses to resume a run whose stored settings differ from the given ones, naming the
//!   setting ([`StoreError::SettingsChanged`]).
//! - [`Store`] is the content-addressed stage store of an experiment: each artefact (pre-trained
//!   weights, tickets, transfer runs, …) lives under a key derived from the settings that made it
//!   *and the keys of its inputs*, so a changed setting can never reuse a stale result.
//!
//! Temporary files and folders carry the host and process that made them; those of dead
//! processes are removed when a folder is opened again ([`remove_stale_temporaries`]).
//!
//! ```
//! use dwlth_store::{Store, StoreError};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), StoreError> {
//! let root = tempfile::tempdir().unwrap();
//! let store = Store::open(root.path())?;
//! let stage = store.stage("squares", &json!({ "n": 4 }), &[])?;
//! let squares: Vec<u64> = stage.load_or_compute(
//!     |dir| Ok::<_, StoreError>(serde_json::from_slice(&std::fs::read(dir.join("v.json")).unwrap()).unwrap()),
//!     |_work| Ok((0..4u64).map(|i| i * i).collect()),
//!     |v: &Vec<u64>, dir| dwlth_store::write_file(&dir.join("v.json"), &serde_json::to_vec(v).unwrap()),
//! )?;
//! assert_eq!(squares, [0, 1, 4, 9]);
//! assert!(stage.done().is_some()); // the next call loads it instead
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod atomic;
mod checkpoint;
mod error;
mod fault;
mod hash;
mod settings;
mod stage;
mod temp;

pub use atomic::{
    atomic_write, link_or_copy, publish_copy, publish_dir, sync_dir, write_file, Published,
};
pub use checkpoint::Checkpoints;
pub use error::{Result, SettingsChanged, StoreError};
pub use hash::{fnv1a, key_of, Fingerprint};
pub use settings::{check_settings, first_difference, Difference};
pub use stage::{Stage, StageKey, Store, STORE_MARKER};
pub use temp::{remove_stale_temporaries, temp_path};
