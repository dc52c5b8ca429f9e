//! Tar shards of encoded images, the layout WebDataset popularised for datasets too large or too
//! many-filed for a file system: each shard is a plain tar file, and each sample is a group of
//! consecutive members sharing a key — `<key>.jpg` (or `.jpeg`, `.png`) holding the encoded
//! image and `<key>.cls` holding its class as a decimal integer:
//!
//! ```text
//! train-000000.tar: n01440764_10026.jpg n01440764_10026.cls n01440764_10027.jpg …
//! ```
//!
//! Opening the shards reads only their tar headers, once, to index where each sample's bytes
//! lie; a sample is read (one seek and one read) and decoded when asked for, on whichever
//! loader worker asks. Memory therefore holds the index — a few dozen bytes per image — and the
//! batches in flight, never the dataset.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};

use crate::error::{DataError, Result};
use crate::formats::folder::{decode_bytes, Channels, IMAGE_EXTENSIONS};
use crate::image::{Image, Sample};

/// Where one sample's encoded image lies.
#[derive(Clone, Debug)]
struct Entry {
    shard: u32,
    offset: u64,
    size: u64,
    label: u32,
}

/// Images in tar shards, decoded lazily (see the module documentation).
#[derive(Clone, Debug)]
pub struct TarShards {
    shards: Vec<PathBuf>,
    entries: Vec<Entry>,
    num_classes: usize,
    channels: Channels,
}

/// The largest encoded image or label member read (a damaged header cannot make a read of
/// terabytes).
const MAX_MEMBER: u64 = 1 << 30;

impl TarShards {
    /// Indexes `shards` (in the given order; samples keep the order of their shard). Errors
    /// name the shard and the sample: a sample without an image or a class, a class that is not
    /// a non-negative integer, a damaged tar header, no sample at all.
    pub fn open(shards: &[PathBuf]) -> Result<Self> {
        let mut entries = Vec::new();
        let mut max_label = None;
        for (k, path) in shards.iter().enumerate() {
            let shard = u32::try_from(k)
                .map_err(|_| DataError::invalid("more than 2³² shards".to_string()))?;
            for entry in index_shard(path, shard)? {
                max_label = max_label.max(Some(entry.label));
                entries.push(entry);
            }
        }
        let Some(max_label) = max_label else {
            return Err(DataError::Empty {
                path: shards.first().cloned().unwrap_or_default(),
                what: "samples (`<key>.jpg|png` with `<key>.cls`)".into(),
            });
        };
        Ok(Self {
            shards: shards.to_vec(),
            entries,
            num_classes: max_label as usize + 1,
            channels: Channels::Rgb,
        })
    }

    /// The `*.tar` files of `dir`, in name order.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(DataError::Empty {
                path: dir.to_path_buf(),
                what: "tar shards (`*.tar`)".into(),
            });
        }
        Self::open(&shards)
    }

    /// Decodes to `channels` (RGB by default).
    pub fn with_channels(mut self, channels: Channels) -> Self {
        self.channels = channels;
        self
    }

    /// Channels of every decoded image.
    pub fn decode_channels(&self) -> usize {
        match self.channels {
            Channels::Rgb => 3,
            Channels::Gray => 1,
        }
    }

    /// A fingerprint of what the shards hold (16 hex digits): channels, the shards' file names
    /// and sizes, and per sample where its image lies and its class. Hashing every image would
    /// cost a pass over the dataset; a shard rewritten in place with the same layout goes
    /// unnoticed.
    pub fn fingerprint(&self) -> Result<String> {
        let mut f = dwlth_store::Fingerprint::new();
        f.update(format!("shards {:?} {}", self.channels, self.entries.len()).as_bytes());
        for path in &self.shards {
            let size = std::fs::metadata(path)
                .map_err(|e| DataError::io(path, e))?
                .len();
            let name = path.file_name().unwrap_or(path.as_os_str());
            f.update(name.to_string_lossy().as_bytes())
                .update(&size.to_le_bytes());
        }
        for e in &self.entries {
            f.update(&e.shard.to_le_bytes())
                .update(&e.offset.to_le_bytes())
                .update(&e.size.to_le_bytes())
                .update(&e.label.to_le_bytes());
        }
        Ok(f.finish())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no sample (never true for an opened set).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of classes: one more than the largest class seen.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The class of sample `index`.
    pub fn label(&self, index: usize) -> Option<usize> {
        self.entries.get(index).map(|e| e.label as usize)
    }

    /// Sample `index` as errors name it: `<shard>/#<index>`, or `item <index>` out of range.
    pub fn describe(&self, index: usize) -> PathBuf {
        match self.entries.get(index) {
            Some(entry) => self.shards[entry.shard as usize].join(format!("#{index}")),
            None => format!("item {index}").into(),
        }
    }

    /// Reads and decodes sample `index`.
    pub fn decode(&self, index: usize) -> Result<Image<u8>> {
        let entry = self.entries.get(index).ok_or_else(|| {
            DataError::invalid(format!(
                "index {index} is out of range for {} samples",
                self.entries.len()
            ))
        })?;
        let path = &self.shards[entry.shard as usize];
        let bytes = read_member(path, entry.offset, entry.size)?;
        decode_bytes(&bytes, &path.join(format!("#{index}")), self.channels)
    }
}

fn read_member(path: &Path, offset: u64, size: u64) -> Result<Vec<u8>> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 != size {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            format: "tar",
            offset,
            reason: format!("a member of {size} bytes ends after {} bytes", bytes.len()),
        });
    }
    Ok(bytes)
}

/// The samples of one shard, by key, in the order their first member appears.
fn index_shard(path: &Path, shard: u32) -> Result<Vec<Entry>> {
    let bad = |offset: u64, reason: String| DataError::Format {
        path: path.to_path_buf(),
        format: "tar shard",
        offset,
        reason,
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive = tar::Archive::new(file);
    // key → (image (offset, size), label), in first-seen order.
    type Parts = (Option<(u64, u64)>, Option<u32>);
    let mut order: Vec<String> = Vec::new();
    let mut samples: BTreeMap<String, Parts> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| bad(0, e.to_string()))?;
    for member in entries {
        let mut member = member.map_err(|e| bad(0, e.to_string()))?;
        let offset = member.raw_file_position();
        if !member.header().entry_type().is_file() {
            continue;
        }
        let name = member
            .path()
            .map_err(|e| bad(offset, e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let size = member.size();
        // The key is the name up to the first dot of its last component, directories kept.
        let (dir, file) = name.rsplit_once('/').unwrap_or(("", &name));
        let Some((stem, ext)) = file.split_once('.') else {
            continue;
        };
        let key = if dir.is_empty() {
            stem.to_string()
        } else {
            format!("{dir}/{stem}")
        };
        let ext = ext.to_ascii_lowercase();
        let is_image = IMAGE_EXTENSIONS.contains(&ext.as_str());
        if !is_image && ext != "cls" {
            continue;
        }
        if size > MAX_MEMBER {
            return Err(bad(offset, format!("`{name}` declares {size} bytes")));
        }
        let slot = samples.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            (None, None)
        });
        if is_image {
            if slot.0.is_some() {
                return Err(bad(offset, format!("sample `{key}` has two images")));
            }
            slot.0 = Some((offset, size));
        } else {
            let mut text = String::new();
            member
                .read_to_string(&mut text)
                .map_err(|e| bad(offset, format!("`{name}`: {e}")))?;
            let label: u32 = text.trim().parse().map_err(|_| {
                bad(
                    offset,
                    format!("`{name}` holds `{}`, not a class number", text.trim()),
                )
            })?;
            slot.1 = Some(label);
        }
    }
    order
        .into_iter()
        .map(|key| match samples.remove(&key) {
            Some((Some((offset, size)), Some(label))) => Ok(Entry {
                shard,
                offset,
                size,
                label,
            }),
            Some((None, _)) => Err(bad(0, format!("sample `{key}` has a class but no image"))),
            _ => Err(bad(0, format!("sample `{key}` has no `{key}.cls` class"))),
        })
        .collect()
}

/// Writes samples into a tar shard in the layout [`TarShards`] reads: `<key>.<ext>` with the
/// encoded image, then `<key>.cls` with its class.
pub struct ShardWriter {
    path: PathBuf,
    builder: tar::Builder<File>,
}

impl ShardWriter {
    /// Creates (or truncates) the shard at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            builder: tar::Builder::new(file),
        })
    }

    /// Appends one sample: `image` holds encoded bytes of type `ext` (`png`, `jpg`).
    pub fn add(&mut self, key: &str, ext: &str, image: &[u8], class: usize) -> Result<()> {
        let label = class.to_string();
        for (name, bytes) in [
            (format!("{key}.{ext}"), image),
            (format!("{key}.cls"), label.as_bytes()),
        ] {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            self.builder
                .append_data(&mut header, &name, bytes)
                .map_err(|e| DataError::io(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes the tar trailer and closes the shard.
    pub fn finish(self) -> Result<()> {
        self.builder
            .into_inner()
            .map(drop)
            .map_err(|e| DataError::io(&self.path, e))
    }
}

impl Dataset<Sample<u8>> for TarShards {
    fn get(&self, index: usize) -> Result<Sample<u8>, DatasetError> {
        let image = self.decode(index).map_err(DatasetError::new)?;
        let label = self.label(index).unwrap_or(0);
        Ok(Sample { image, label })
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(v: u8, w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([v, v / 2, 255 - v]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn shard(path: &Path, members: &[(&str, Vec<u8>)]) {
        let mut builder = tar::Builder::new(File::create(path).unwrap());
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, bytes.as_slice())
                .unwrap();
        }
        builder.finish().unwrap();
    }

    #[test]
    fn samples_are_read_lazily_in_shard_order_with_their_classes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("s-000.tar"), dir.path().join("s-001.tar"));
        shard(
            &a,
            &[
                ("x/k0.png", png(10, 5, 4)),
                ("x/k0.cls", b"2\n".to_vec()),
                ("x/k1.cls", b"0".to_vec()),
                ("x/k1.png", png(200, 3, 3)),
                ("notes.txt", b"ignored".to_vec()),
            ],
        );
        shard(&b, &[("k2.PNG", png(90, 2, 6)), ("k2.cls", b"1".to_vec())]);
        let set = TarShards::open_dir(dir.path()).unwrap();
        assert_eq!((set.len(), set.num_classes()), (3, 3));
        let labels: Vec<usize> = (0..3).map(|i| set.get(i).unwrap().label).collect();
        assert_eq!(labels, [2, 0, 1]);
        assert_eq!(set.get(0).unwrap().image.shape(), [3, 4, 5]);
        assert_eq!(set.get(1).unwrap().image.data()[0], 200);
        assert_eq!(set.get(2).unwrap().image.shape(), [3, 6, 2]);
        let grey = set.clone().with_channels(Channels::Gray);
        assert_eq!(grey.get(2).unwrap().image.shape(), [1, 6, 2]);
        assert!(set.get(3).is_err());
    }

    #[test]
    fn incomplete_samples_and_bad_classes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.tar");
        for (members, expected) in [
            (
                vec![("k.png", png(1, 2, 2))],
                "sample `k` has no `k.cls` class",
            ),
            (
                vec![("k.cls", b"1".to_vec())],
                "sample `k` has a class but no image",
            ),
            (
                vec![("k.png", png(1, 2, 2)), ("k.cls", b"-1".to_vec())],
                "holds `-1`, not a class number",
            ),
        ] {
            shard(&path, &members);
            let message = TarShards::open(std::slice::from_ref(&path))
                .unwrap_err()
                .to_string();
            assert!(
                message.contains(expected) && message.contains("bad.tar"),
                "{message}"
            );
        }
        shard(
            &path,
            &[("k.png", b"not a png".to_vec()), ("k.cls", b"0".to_vec())],
        );
        let set = TarShards::open(std::slice::from_ref(&path)).unwrap();
        assert!(set.decode(0).unwrap_err().to_string().contains("bad.tar"));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(TarShards::open(&[path]).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(TarShards::open_dir(empty.path()).is_err());
    }
}
