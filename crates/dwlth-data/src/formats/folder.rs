//! Image folders: one sub-folder per class holding JPEG or PNG files, the layout of
//! torchvision's `ImageFolder` and of ImageNet's `train/` and `val/` folders. Classes are the
//! sub-folder names in sorted order (label `k` is the `k`-th name), files are sorted too, so
//! labels and order never depend on the file system.

use std::fs;
use std::path::{Path, PathBuf};

use burn::data::dataset::{Dataset, DatasetError};

use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::image::{Image, Sample};
use crate::transforms::resize::resize_bilinear;

/// File extensions read (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Colour handling when decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Channels {
    /// Three channels; grey images are repeated (torchvision's loader converts to RGB).
    #[default]
    Rgb,
    /// One channel; colour images are converted to luma.
    Gray,
}

impl Channels {
    fn count(self) -> usize {
        match self {
            Self::Rgb => 3,
            Self::Gray => 1,
        }
    }
}

/// A folder of class folders, decoded lazily: only paths and labels are held in memory.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    files: Vec<(PathBuf, u32)>,
    channels: Channels,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        .unwrap_or(false)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(dir, err)))
        .collect::<Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

impl ImageFolder {
    /// Scans `root`: every sub-folder is a class. Errors when there is no class folder, or a
    /// class folder holds no JPEG/PNG file.
    pub fn scan(root: &Path) -> Result<Self> {
        let classes: Vec<String> = sorted_entries(root)?
            .into_iter()
            .filter(|p| p.is_dir())
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.starts_with('.'))
            .collect();
        Self::scan_classes(root, &classes, true)
    }

    /// Scans `root` with a given class list (e.g. the training folder's, for `val/`), so that
    /// labels agree across splits. A listed class may be absent here; a folder that is not a
    /// listed class is an error, since its images would have no label.
    pub fn scan_with_classes(root: &Path, classes: &[String]) -> Result<Self> {
        Self::scan_classes(root, classes, false)
    }

    fn scan_classes(root: &Path, classes: &[String], every_class: bool) -> Result<Self> {
        if !root.is_dir() {
            return Err(DataError::Missing {
                dataset: "image folder".into(),
                path: root.to_path_buf(),
                hint: "expected a folder with one sub-folder of images per class".into(),
            });
        }
        if classes.is_empty() {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
                what: "class folders (one sub-folder of images per class)".into(),
            });
        }
        for p in sorted_entries(root)? {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name {
                if p.is_dir() && !name.starts_with('.') && !classes.contains(&name) {
                    return Err(DataError::invalid(format!(
                        "`{}` is not one of the {} known classes",
                        p.display(),
                        classes.len()
                    )));
                }
            }
        }
        if classes.len() > u32::MAX as usize {
            return Err(DataError::invalid("too many classes"));
        }
        let mut files = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let before = files.len();
            if dir.is_dir() {
                for p in sorted_entries(&dir)? {
                    if p.is_file() && is_image(&p) {
                        files.push((p, label as u32));
                    }
                }
            }
            if every_class && files.len() == before {
                return Err(DataError::Empty {
                    path: dir,
                    what: "JPEG or PNG images".into(),
                });
            }
        }
        if files.is_empty() {
            return Err(DataError::Empty {
                path: root.to_path_buf(),
                what: "JPEG or PNG images in its class folders".into(),
            });
        }
        Ok(Self {
            root: root.to_path_buf(),
            classes: classes.to_vec(),
            files,
            channels: Channels::Rgb,
        })
    }

    /// Decode to this many channels (RGB by default).
    pub fn with_channels(mut self, channels: Channels) -> Self {
        self.channels = channels;
        self
    }

    /// Channels of every decoded image.
    pub fn decode_channels(&self) -> usize {
        self.channels.count()
    }

    /// The scanned folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Class names (sorted folder names).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// A fingerprint of what the folder holds (16 hex digits): class names, channels and, per
    /// image in order, its path under the root, its size in bytes and its label. Reading every
    /// image to hash its pixels would cost a pass over the dataset; a file rewritten in place
    /// with the same name and size goes unnoticed.
    pub fn fingerprint(&self) -> Result<String> {
        let mut f = dwlth_store::Fingerprint::new();
        f.update(
            format!(
                "folder {:?} {:?} {}",
                self.classes,
                self.channels,
                self.files.len()
            )
            .as_bytes(),
        );
        for (path, label) in &self.files {
            let size = fs::metadata(path)
                .map_err(|e| DataError::io(path, e))?
                .len();
            let name = path.strip_prefix(&self.root).unwrap_or(path);
            f.update(name.to_string_lossy().as_bytes())
                .update(&size.to_le_bytes())
                .update(&label.to_le_bytes());
        }
        Ok(f.finish())
    }

    /// The file of image `index`, or `item <index>` out of range (what errors name).
    pub fn describe(&self, index: usize) -> PathBuf {
        self.path(index)
            .map_or_else(|| format!("item {index}").into(), Path::to_path_buf)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no images (never true for a scanned folder).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file of image `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(|(p, _)| p.as_path())
    }

    /// The label of image `index`.
    pub fn label(&self, index: usize) -> Option<usize> {
        self.files.get(index).map(|(_, l)| *l as usize)
    }

    /// All labels, in order.
    pub fn labels(&self) -> Vec<usize> {
        self.files.iter().map(|(_, l)| *l as usize).collect()
    }

    /// How many images each class has.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for (_, l) in &self.files {
            counts[*l as usize] += 1;
        }
        counts
    }

    /// Checks every file without decoding its pixels: a known image format with a readable,
    /// non-empty size, and for PNG files every chunk's checksum and the closing `IEND` chunk
    /// (truncated or damaged files). Counts of a folder are only reported for images that can
    /// be read; the first damaged file is named in the error.
    pub fn verify(&self) -> Result<()> {
        self.files
            .iter()
            .try_for_each(|(path, _)| verify_file(path))
    }

    /// Decodes image `index`.
    pub fn decode(&self, index: usize) -> Result<Image<u8>> {
        let path = self.path(index).ok_or_else(|| {
            DataError::invalid(format!(
                "index {index} is out of range for a folder of {} images",
                self.len()
            ))
        })?;
        decode_file(path, self.channels)
    }

    /// Decodes every image into memory at `size` (height, width), resizing with bilinear
    /// interpolation when an image differs; with `None` all images must share one size.
    pub fn load(&self, size: Option<(usize, usize)>) -> Result<ImageDataset> {
        let c = self.channels.count();
        let mut pixels = Vec::new();
        let mut shape = size.map(|(h, w)| [c, h, w]);
        for i in 0..self.len() {
            let img = self.decode(i)?;
            let img = match shape {
                None => {
                    shape = Some(img.shape());
                    img
                }
                Some(s) if s == img.shape() => img,
                Some(s) if size.is_some() => resize_bilinear(&img.to_f32(), s[1], s[2]).to_u8(),
                Some(s) => {
                    return Err(DataError::Shape {
                        path: self.files[i].0.clone(),
                        expected: s,
                        found: img.shape(),
                    })
                }
            };
            pixels.extend_from_slice(img.data());
        }
        let shape = shape.ok_or_else(|| DataError::Empty {
            path: self.root.clone(),
            what: "images".into(),
        })?;
        ImageDataset::new(
            pixels,
            self.files.iter().map(|(_, l)| *l).collect(),
            shape,
            self.classes.clone(),
        )
    }
}

/// Checks one image file as [`ImageFolder::verify`] does.
pub fn verify_file(path: &Path) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let bad = |reason: String| DataError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.starts_with(PNG_SIGNATURE) {
        check_png_chunks(&bytes).map_err(bad)?;
    }
    let (w, h) = image::ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?
        .into_dimensions()
        .map_err(|e| bad(e.to_string()))?;
    if w == 0 || h == 0 {
        return Err(bad(format!("the image is {w}×{h} pixels")));
    }
    Ok(())
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Walks the chunks of a PNG file: each must fit in the file and match its CRC-32, and the
/// last must be `IEND`. Reads every byte once, decodes nothing.
fn check_png_chunks(bytes: &[u8]) -> std::result::Result<(), String> {
    let mut at = PNG_SIGNATURE.len();
    loop {
        let Some(head) = bytes.get(at..at + 8) else {
            return Err(format!(
                "the file ends at byte {at} before its `IEND` chunk"
            ));
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = &head[4..8];
        let Some(body) = bytes.get(at + 4..at + 8 + len) else {
            return Err(format!(
                "chunk `{}` at byte {at} runs past the end of the file",
                String::from_utf8_lossy(kind)
            ));
        };
        let Some(crc) = bytes.get(at + 8 + len..at + 12 + len) else {
            return Err(format!(
                "the file ends inside the checksum of the chunk at byte {at}"
            ));
        };
        if crc32fast::hash(body).to_be_bytes() != crc {
            return Err(format!(
                "chunk `{}` at byte {at} fails its checksum",
                String::from_utf8_lossy(kind)
            ));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        at += 12 + len;
    }
}

/// Decodes a JPEG or PNG file to `[C, H, W]` bytes.
pub fn decode_file(path: &Path, channels: Channels) -> Result<Image<u8>> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_bytes(&bytes, path, channels)
}

/// Decodes JPEG or PNG bytes (format from the content); `name` labels errors.
pub fn decode_bytes(bytes: &[u8], name: &Path, channels: Channels) -> Result<Image<u8>> {
    let decoded = image::load_from_memory(bytes).map_err(|e| DataError::Decode {
        path: name.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let (c, hwc) = match channels {
        Channels::Rgb => (3, decoded.into_rgb8().into_raw()),
        Channels::Gray => (1, decoded.into_luma8().into_raw()),
    };
    let mut chw = vec![0u8; hwc.len()];
    for (p, px) in hwc.chunks_exact(c).enumerate() {
        for (ch, &v) in px.iter().enumerate() {
            chw[ch * h * w + p] = v;
        }
    }
    Ok(Image::from_parts(chw, c, h, w))
}

impl Dataset<Sample<u8>> for ImageFolder {
    fn get(&self, index: usize) -> Result<Sample<u8>, DatasetError> {
        let image = self.decode(index).map_err(DatasetError::new)?;
        let label = self.label(index).unwrap_or(0);
        Ok(Sample { image, label })
    }

    fn len(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, w: u32, h: u32, v: u8) {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([v, v / 2, 255 - v]));
        img.save(path).unwrap();
    }

    #[test]
    fn scans_sorted_classes_and_files() {
        let dir = tempfile::tempdir().unwrap();
        for (class, n) in [("b", 2), ("a", 1)] {
            fs::create_dir(dir.path().join(class)).unwrap();
            for i in 0..n {
                png(
                    &dir.path().join(class).join(format!("{i}.png")),
                    4,
                    3,
                    10 * i as u8,
                );
            }
        }
        fs::write(dir.path().join("a/notes.txt"), "x").unwrap();
        let f = ImageFolder::scan(dir.path()).unwrap();
        assert_eq!(f.classes(), ["a", "b"]);
        assert_eq!(f.labels(), vec![0, 1, 1]);
        let img = f.decode(2).unwrap();
        assert_eq!(img.shape(), [3, 3, 4]);
        assert_eq!(img.plane(0)[0], 10);
        assert_eq!(img.plane(2)[0], 245);
        let ds = f.load(None).unwrap();
        assert_eq!(ds.label_counts(), vec![1, 2]);
        let gray = f.clone().with_channels(Channels::Gray).decode(0).unwrap();
        assert_eq!(gray.shape(), [1, 3, 4]);
    }

    #[test]
    fn empty_and_broken_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ImageFolder::scan(dir.path()),
            Err(DataError::Empty { .. })
        ));
        fs::create_dir(dir.path().join("c")).unwrap();
        let e = ImageFolder::scan(dir.path()).unwrap_err();
        assert!(e.to_string().contains("JPEG or PNG"), "{e}");
        fs::write(dir.path().join("c/bad.png"), b"not a png").unwrap();
        let f = ImageFolder::scan(dir.path()).unwrap();
        let e = f.decode(0).unwrap_err();
        assert!(
            matches!(e, DataError::Decode { .. }) && e.to_string().contains("bad.png"),
            "{e}"
        );
        png(&dir.path().join("c/ok.png"), 2, 2, 0);
        fs::remove_file(dir.path().join("c/bad.png")).unwrap();
        png(&dir.path().join("c/other.png"), 3, 2, 0);
        let f = ImageFolder::scan(dir.path()).unwrap();
        assert!(matches!(f.load(None), Err(DataError::Shape { .. })));
        assert_eq!(f.load(Some((5, 5))).unwrap().shape(), [3, 5, 5]);
    }
}
