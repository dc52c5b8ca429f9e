//! [`Images`]: one type for every place images come from — decoded in memory (CIFAR, SVHN,
//! the IDX family), an image folder, tar shards — and views of them (validation splits,
//! limits, data-limited fractions). A view of files on disk holds indices, never pixels, so a
//! subset of ImageNet costs its index list.

use std::sync::{Arc, OnceLock};

use crate::augment::ImageSource;
use crate::dataset::ImageDataset;
use crate::error::{DataError, Result};
use crate::formats::folder::ImageFolder;
use crate::formats::shards::TarShards;
use crate::image::Sample;

/// Where the images are.
#[derive(Clone, Debug)]
enum Store {
    Memory(ImageDataset),
    Folder(Arc<ImageFolder>),
    Shards(Arc<TarShards>),
}

/// Images in memory or on disk, or a view of them (see the module documentation).
#[derive(Clone, Debug)]
pub struct Images {
    store: Store,
    /// For files on disk: which samples this view shows, in order (`None`: all).
    view: Option<Arc<Vec<usize>>>,
    /// The whole store's fingerprint once taken (a `stat` per file of a folder): shared by
    /// every view of the store, so a training and a validation split take it once.
    whole: Arc<OnceLock<String>>,
}

impl From<ImageDataset> for Images {
    fn from(data: ImageDataset) -> Self {
        Self {
            store: Store::Memory(data),
            view: None,
            whole: Arc::default(),
        }
    }
}

impl From<ImageFolder> for Images {
    fn from(folder: ImageFolder) -> Self {
        Self {
            store: Store::Folder(Arc::new(folder)),
            view: None,
            whole: Arc::default(),
        }
    }
}

impl From<TarShards> for Images {
    fn from(shards: TarShards) -> Self {
        Self {
            store: Store::Shards(Arc::new(shards)),
            view: None,
            whole: Arc::default(),
        }
    }
}

impl Images {
    /// The decoded images, when they are held in memory.
    pub fn in_memory(&self) -> Option<&ImageDataset> {
        match &self.store {
            Store::Memory(data) => Some(data),
            _ => None,
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        match (&self.view, &self.store) {
            (Some(view), _) => view.len(),
            (None, Store::Memory(d)) => d.len(),
            (None, Store::Folder(f)) => f.len(),
            (None, Store::Shards(s)) => s.len(),
        }
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position of image `index` in the store.
    fn stored(&self, index: usize) -> Option<usize> {
        match &self.view {
            Some(view) => view.get(index).copied(),
            None => (index < self.len()).then_some(index),
        }
    }

    /// The label of image `index`.
    pub fn label(&self, index: usize) -> Option<usize> {
        let i = self.stored(index)?;
        match &self.store {
            Store::Memory(d) => d.label(i),
            Store::Folder(f) => f.label(i),
            Store::Shards(s) => s.label(i),
        }
    }

    /// Every label, in order.
    pub fn labels(&self) -> Vec<usize> {
        (0..self.len()).filter_map(|i| self.label(i)).collect()
    }

    /// Number of classes (of the whole dataset, not only those this view shows).
    pub fn num_classes(&self) -> usize {
        match &self.store {
            Store::Memory(d) => d.num_classes(),
            Store::Folder(f) => f.classes().len(),
            Store::Shards(s) => s.num_classes(),
        }
    }

    /// Class names, label order (tar shards carry class numbers only: `"0"`, `"1"`, …).
    pub fn classes(&self) -> Vec<String> {
        match &self.store {
            Store::Memory(d) => d.classes().to_vec(),
            Store::Folder(f) => f.classes().to_vec(),
            Store::Shards(s) => (0..s.num_classes()).map(|k| k.to_string()).collect(),
        }
    }

    /// Decodes every image of the view into memory; they must share one size (an image of
    /// another size is an error naming it).
    pub fn decode_all(&self) -> Result<ImageDataset> {
        if let Some(d) = self.in_memory() {
            return Ok(d.clone());
        }
        let (mut pixels, mut labels, mut shape) = (Vec::new(), Vec::new(), None);
        for i in 0..self.len() {
            let s = self.sample(i)?;
            let found = s.image.shape();
            match shape {
                None => shape = Some(found),
                Some(expected) if expected != found => {
                    return Err(DataError::Shape {
                        path: format!("item {i}").into(),
                        expected,
                        found,
                    })
                }
                Some(_) => {}
            }
            pixels.extend_from_slice(s.image.data());
            labels.push(s.label as u32);
        }
        let shape = shape.ok_or_else(|| DataError::invalid("no image to decode"))?;
        ImageDataset::new(pixels, labels, shape, self.classes())
    }

    /// Channels of every image.
    pub fn channels(&self) -> usize {
        self.image_shape().0
    }

    /// The images `indices` of this view, in that order; an index out of range is an error.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if let Store::Memory(d) = &self.store {
            return Ok(d.subset(indices)?.into());
        }
        let view = indices
            .iter()
            .map(|&i| {
                self.stored(i).ok_or_else(|| {
                    DataError::invalid(format!(
                        "subset index {i} is out of range for {} images",
                        self.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            store: self.store.clone(),
            view: Some(Arc::new(view)),
            whole: Arc::clone(&self.whole),
        })
    }

    /// What results computed from these images are keyed by (16 hex digits): for images in
    /// memory their content, for files on disk what [`ImageFolder::fingerprint`] and
    /// [`TarShards::fingerprint`] hash, and the view's indices.
    pub fn fingerprint(&self) -> Result<String> {
        let whole = match (self.whole.get(), &self.store) {
            (_, Store::Memory(d)) => return Ok(d.fingerprint()),
            (Some(known), _) => known.clone(),
            (None, Store::Folder(f)) => f.fingerprint()?,
            (None, Store::Shards(s)) => s.fingerprint()?,
        };
        let whole = self.whole.get_or_init(|| whole).clone();
        let Some(view) = &self.view else {
            return Ok(whole);
        };
        let mut f = dwlth_store::Fingerprint::new();
        f.update(whole.as_bytes());
        for &i in view.iter() {
            f.update(&(i as u64).to_le_bytes());
        }
        Ok(f.finish())
    }

    /// Per-channel mean and standard deviation of pixel values in `[0, 1]`, over at most
    /// `max_images` images spread evenly over the view (every image when it has fewer).
    pub fn channel_stats(&self, max_images: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let c = self.channels();
        let (mut sum, mut sq, mut n) = (vec![0f64; c], vec![0f64; c], 0usize);
        let take = self.len().min(max_images.max(1));
        for k in 0..take {
            let index = k * self.len() / take;
            let image = self.sample(index)?.image;
            let [_, h, w] = image.shape();
            let per = h * w;
            for (ch, (s, q)) in sum.iter_mut().zip(&mut sq).enumerate() {
                for &v in &image.data()[ch * per..(ch + 1) * per] {
                    let v = f64::from(v) / 255.0;
                    *s += v;
                    *q += v * v;
                }
            }
            n += per;
        }
        let n = n.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - f64::from(*m).powi(2)).max(1e-6)).sqrt() as f32)
            .collect();
        Ok((mean, std))
    }
}

impl ImageSource for Images {
    fn len(&self) -> usize {
        Images::len(self)
    }

    fn sample(&self, index: usize) -> Result<Sample<u8>> {
        let i = self.stored(index).ok_or_else(|| {
            DataError::invalid(format!(
                "item {index} is out of range for a dataset of {} images",
                self.len()
            ))
        })?;
        match &self.store {
            Store::Memory(d) => d.sample(i),
            Store::Folder(f) => f.sample(i),
            Store::Shards(s) => s.sample(i),
        }
    }

    fn image_shape(&self) -> (usize, Option<(usize, usize)>) {
        match &self.store {
            Store::Memory(d) => d.image_shape(),
            Store::Folder(f) => f.image_shape(),
            Store::Shards(s) => s.image_shape(),
        }
    }

    fn describe(&self, index: usize) -> std::path::PathBuf {
        match (self.stored(index), &self.store) {
            (Some(i), Store::Folder(f)) => f.describe(i),
            (Some(i), Store::Shards(s)) => s.describe(i),
            _ => format!("item {index}").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::shards::ShardWriter;

    fn png(v: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(4, 3, image::Rgb([v, v / 2, 255 - v]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn views_of_files_hold_indices_and_agree_with_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut shard = ShardWriter::create(&path).unwrap();
        for k in 0..6u8 {
            shard
                .add(&format!("{k}"), "png", &png(k * 40), usize::from(k % 3))
                .unwrap();
        }
        shard.finish().unwrap();
        let all: Images = TarShards::open(&[path]).unwrap().into();
        assert_eq!((all.len(), all.num_classes(), all.channels()), (6, 3, 3));
        let view = all.subset(&[5, 1, 2]).unwrap();
        let inner = view.subset(&[2, 0]).unwrap();
        assert_eq!(inner.labels(), vec![2, 2]);
        assert_eq!(inner.sample(1).unwrap(), all.sample(5).unwrap());
        assert!(inner.sample(2).is_err());
        assert!(view.subset(&[3]).is_err());
        // Views are keyed by what they show.
        let f = |i: &Images| i.fingerprint().unwrap();
        assert_ne!(f(&all), f(&view));
        assert_eq!(f(&view), f(&all.subset(&[5, 1, 2]).unwrap()));
        assert_ne!(f(&view), f(&all.subset(&[1, 5, 2]).unwrap()));
        let (mean, std) = all.channel_stats(100).unwrap();
        assert!(
            (mean[0] - (0..6).map(|k| k as f32 * 40.0).sum::<f32>() / 6.0 / 255.0).abs() < 1e-5
        );
        assert!(std.iter().all(|s| *s > 0.0));
    }
}
