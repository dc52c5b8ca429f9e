//! The in-memory image dataset: `u8` pixels `[N, C, H, W]`, labels and class names.
//!
//! Pixels stay bytes (a CIFAR split is 150 MB as bytes, 600 MB as `f32`) and are shared behind
//! an `Arc`: subsets and splits are index views, never copies, so carving a validation split
//! or a 1 % subset out of a training set costs nothing.

use std::sync::Arc;

use burn::data::dataset::{Dataset, DatasetError};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{DataError, Result};
use crate::image::{Image, Sample};

/// Images of one shape with labels, in memory.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    pixels: Arc<Vec<u8>>,
    labels: Arc<Vec<u32>>,
    shape: [usize; 3],
    classes: Arc<Vec<String>>,
    /// Which stored images this view shows, in order.
    view: Arc<Vec<u32>>,
}

impl ImageDataset {
    /// A dataset from `pixels` (`N * C * H * W` bytes), one label per image and the class
    /// names (label `k` is `classes[k]`). Checks sizes and that every label is a class.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u32>,
        shape: [usize; 3],
        classes: Vec<String>,
    ) -> Result<Self> {
        let per_image = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                DataError::invalid(format!("image shape {shape:?} is empty or too large"))
            })?;
        if Some(pixels.len()) != per_image.checked_mul(labels.len()) {
            return Err(DataError::invalid(format!(
                "{} labels of shape {shape:?} need {per_image} pixel bytes each, got {} in all",
                labels.len(),
                pixels.len()
            )));
        }
        if labels.len() > u32::MAX as usize {
            return Err(DataError::invalid("more than 2^32 images"));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes.len())
        {
            return Err(DataError::invalid(format!(
                "image {i} has label {l}, but there are {} classes",
                classes.len()
            )));
        }
        let view = (0..labels.len() as u32).collect();
        Ok(Self {
            pixels: Arc::new(pixels),
            labels: Arc::new(labels),
            shape,
            classes: Arc::new(classes),
            view: Arc::new(view),
        })
    }

    /// A fingerprint of the images this view shows, in order: shape, class names, labels and
    /// pixels (16 hex digits). Two views with the same content have the same one, wherever
    /// their files lie — what results computed from them are keyed by.
    pub fn fingerprint(&self) -> String {
        let mut f = dwlth_store::Fingerprint::new();
        f.update(format!("{:?}{:?}{}", self.shape, self.classes, self.len()).as_bytes());
        let per_image = self.shape.iter().product::<usize>();
        for &i in self.view.iter() {
            let i = i as usize;
            f.update(&self.labels[i].to_le_bytes())
                .update(&self.pixels[i * per_image..(i + 1) * per_image]);
        }
        f.finish()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.view.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.view.is_empty()
    }

    /// `[C, H, W]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Class names; label `k` is `classes()[k]`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn stored(&self, index: usize) -> Option<usize> {
        self.view.get(index).map(|&i| i as usize)
    }

    /// The label of image `index`.
    pub fn label(&self, index: usize) -> Option<usize> {
        self.stored(index).map(|i| self.labels[i] as usize)
    }

    /// All labels, in order.
    pub fn labels(&self) -> Vec<usize> {
        self.view
            .iter()
            .map(|&i| self.labels[i as usize] as usize)
            .collect()
    }

    /// The bytes of image `index`, `[C, H, W]`.
    pub fn pixels(&self, index: usize) -> Option<&[u8]> {
        let n = self.shape.iter().product::<usize>();
        self.stored(index).map(|i| &self.pixels[i * n..(i + 1) * n])
    }

    /// Image `index` as an owned `u8` image.
    pub fn image(&self, index: usize) -> Option<Image<u8>> {
        let [c, h, w] = self.shape;
        self.pixels(index)
            .map(|p| Image::from_parts(p.to_vec(), c, h, w))
    }

    /// How many images each class has, indexed by label.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &i in self.view.iter() {
            counts[self.labels[i as usize] as usize] += 1;
        }
        counts
    }

    /// The images at `indices` (positions in this dataset), in that order. Shares the pixels.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        let view = indices
            .iter()
            .map(|&i| {
                self.view.get(i).copied().ok_or_else(|| {
                    DataError::invalid(format!(
                        "index {i} is out of range for a dataset of {} images",
                        self.len()
                    ))
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        Ok(Self {
            view: Arc::new(view),
            ..self.clone()
        })
    }

    /// The images as `[0, 1]` floats `[N, C, H, W]` and the labels, on `device`.
    pub fn to_tensors(&self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let [c, h, w] = self.shape;
        let mut values = Vec::with_capacity(self.len() * c * h * w);
        for i in 0..self.len() {
            if let Some(p) = self.pixels(i) {
                values.extend(p.iter().map(|&v| f32::from(v) / 255.0));
            }
        }
        let images = Tensor::<4>::from_data(TensorData::new(values, [self.len(), c, h, w]), device);
        let labels: Vec<i64> = self.labels().into_iter().map(|l| l as i64).collect();
        let n = labels.len();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
        (images, labels)
    }
}

impl Dataset<Sample<u8>> for ImageDataset {
    fn get(&self, index: usize) -> Result<Sample<u8>, DatasetError> {
        match (self.image(index), self.label(index)) {
            (Some(image), Some(label)) => Ok(Sample { image, label }),
            _ => Err(DatasetError::new(DataError::invalid(format!(
                "index {index} is out of range for a dataset of {} images",
                self.len()
            )))),
        }
    }

    fn len(&self) -> usize {
        self.view.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_follow_content_and_order() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let data =
            ImageDataset::new(vec![1, 2, 3, 4], vec![0, 1], [1, 1, 2], classes.clone()).unwrap();
        let same =
            ImageDataset::new(vec![1, 2, 3, 4], vec![0, 1], [1, 1, 2], classes.clone()).unwrap();
        assert_eq!(data.fingerprint(), same.fingerprint());
        let relabelled =
            ImageDataset::new(vec![1, 2, 3, 4], vec![1, 1], [1, 1, 2], classes).unwrap();
        assert_ne!(data.fingerprint(), relabelled.fingerprint());
        let reversed = data.subset(&[1, 0]).unwrap();
        assert_ne!(data.fingerprint(), reversed.fingerprint());
        assert_eq!(
            data.subset(&[0, 1]).unwrap().fingerprint(),
            data.fingerprint()
        );
    }

    fn tiny() -> ImageDataset {
        // 4 images of [1, 1, 2]: image i has pixels [i, 10 + i].
        let pixels = (0..4u8).flat_map(|i| [i, 10 + i]).collect();
        ImageDataset::new(
            pixels,
            vec![0, 1, 1, 0],
            [1, 1, 2],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    #[test]
    fn new_rejects_bad_sizes_and_labels() {
        assert!(ImageDataset::new(vec![0; 3], vec![0], [1, 1, 2], vec!["a".into()]).is_err());
        let err = ImageDataset::new(vec![0; 2], vec![1], [1, 1, 2], vec!["a".into()]);
        assert!(err.unwrap_err().to_string().contains("label 1"));
        assert!(ImageDataset::new(vec![], vec![], [0, 1, 2], vec![]).is_err());
    }

    #[test]
    fn subset_is_a_view_in_order() {
        let ds = tiny();
        assert_eq!(ds.label_counts(), vec![2, 2]);
        let sub = ds.subset(&[3, 1]).unwrap();
        assert_eq!(sub.len(), 2);
        assert_eq!(sub.pixels(0).unwrap(), &[3, 13]);
        assert_eq!(sub.labels(), vec![0, 1]);
        let subsub = sub.subset(&[1]).unwrap();
        assert_eq!(subsub.pixels(0).unwrap(), &[1, 11]);
        assert!(sub.subset(&[2]).is_err());
        assert!(Dataset::get(&sub, 5).is_err());
    }

    #[test]
    fn tensors_are_scaled() {
        let ds = tiny();
        let (x, y) = ds.to_tensors(&Device::flex());
        assert_eq!(x.dims(), [4, 1, 1, 2]);
        let v = x.into_data().try_to_vec::<f32>().unwrap();
        assert!((v[7] - 13.0 / 255.0).abs() < 1e-7);
        assert_eq!(
            y.into_data().convert::<i64>().try_to_vec::<i64>().unwrap(),
            vec![0, 1, 1, 0]
        );
    }
}
