//! Published digests and streaming verification.
//!
//! The datasets' sites publish MD5 only (CIFAR, SVHN; torchvision records MNIST's and
//! Fashion-MNIST's); SHA-256 is supported for resources that publish it.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::error::{DataError, Result};

/// A published digest, lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// MD5 (128 bits).
    Md5(String),
    /// SHA-256.
    Sha256(String),
}

impl Checksum {
    /// `MD5` or `SHA-256`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Md5(_) => "MD5",
            Self::Sha256(_) => "SHA-256",
        }
    }

    /// The expected hex digest.
    pub fn expected(&self) -> &str {
        match self {
            Self::Md5(h) | Self::Sha256(h) => h,
        }
    }

    /// A streaming hasher for this algorithm.
    pub fn hasher(&self) -> Hasher {
        match self {
            Self::Md5(_) => Hasher::Md5(Md5::new()),
            Self::Sha256(_) => Hasher::Sha256(Sha256::new()),
        }
    }

    /// Whether `actual` (hex) matches, ignoring case.
    pub fn matches(&self, actual: &str) -> bool {
        self.expected().eq_ignore_ascii_case(actual)
    }

    /// Checks the file at `path`, streaming it.
    pub fn verify_file(&self, path: &Path) -> Result<()> {
        let actual = self.digest_file(path)?;
        if self.matches(&actual) {
            Ok(())
        } else {
            Err(DataError::Checksum {
                path: path.to_path_buf(),
                url: None,
                algorithm: self.algorithm(),
                expected: self.expected().to_string(),
                actual,
            })
        }
    }

    /// The hex digest of the file at `path`.
    pub fn digest_file(&self, path: &Path) -> Result<String> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut hasher = self.hasher();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.algorithm(), self.expected())
    }
}

/// A running digest.
pub enum Hasher {
    /// MD5.
    Md5(Md5),
    /// SHA-256.
    Sha256(Sha256),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Md5(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }

    /// The lower-case hex digest.
    pub fn finish(self) -> String {
        let bytes: Vec<u8> = match self {
            Self::Md5(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = Checksum::Md5(String::new()).hasher();
        h.update(b"abc");
        assert_eq!(h.finish(), "900150983cd24fb0d6963f7d28e17f72");
        let mut h = Checksum::Sha256(String::new()).hasher();
        h.update(b"abc");
        assert_eq!(
            h.finish(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"abc").unwrap();
        Checksum::Md5("900150983CD24FB0D6963F7D28E17F72".into())
            .verify_file(&p)
            .unwrap();
        let e = Checksum::Md5("00".into()).verify_file(&p).unwrap_err();
        assert!(e.to_string().contains("f.bin"), "{e}");
    }
}
