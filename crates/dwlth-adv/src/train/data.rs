//! What the training loop reads: batches per epoch.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::{invalid, AdvError, Result};

/// A source of training batches, epoch by epoch.
///
/// [`InMemory`] serves `[0, 1]` pixels a caller already holds (this crate needs no dataset
/// crate); `dwlth`'s pipeline feeds every source, in memory or on disk, through
/// `dwlth-data`'s `Stream` (`dwlth::pipeline::data::StreamBatches`), which yields an error
/// when a sample cannot be read, which ends training with that error.
pub trait EpochBatches {
    /// Batches of epoch `epoch` (shuffled as the source sees fit, reproducibly).
    fn epoch(&mut self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;

    /// Batches per epoch (for the learning-rate schedule and progress).
    fn steps_per_epoch(&self) -> usize;
}

/// One batch: images `[N, C, H, W]` in `[0, 1]` and their labels.
pub type Batch = (Tensor<4>, Tensor<1, Int>);

/// What [`evaluate`](crate::evaluate) takes as one batch: a batch, or the result of making
/// one (a streamed set yields an error when an image cannot be read).
pub trait IntoBatch {
    /// The batch, or why there is none.
    fn into_batch(self) -> Result<Batch>;
}

impl IntoBatch for Batch {
    fn into_batch(self) -> Result<Batch> {
        Ok(self)
    }
}

impl IntoBatch for Result<Batch> {
    fn into_batch(self) -> Result<Batch> {
        self
    }
}

/// Evaluation data (validation, test), walked in order as often as needed.
///
/// A slice or `Vec` of batches is one; a set that builds its batches on the fly (images read
/// from disk, or upsampled to 224 pixels, too large to keep in memory) is another, and yields
/// an error for a batch that cannot be made.
pub trait EvalSet {
    /// The batches, in order.
    fn batches(&self) -> Box<dyn Iterator<Item = Result<Batch>> + '_>;

    /// Number of batches.
    fn len(&self) -> usize;

    /// Whether there is no batch.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: EvalSet + ?Sized> EvalSet for Box<T> {
    fn batches(&self) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        T::batches(self)
    }

    fn len(&self) -> usize {
        T::len(self)
    }
}

impl EvalSet for [Batch] {
    fn batches(&self) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(self.iter().cloned().map(Ok))
    }

    fn len(&self) -> usize {
        <[Batch]>::len(self)
    }
}

impl EvalSet for Vec<Batch> {
    fn batches(&self) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(self.iter().cloned().map(Ok))
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }
}

impl<const N: usize> EvalSet for [Batch; N] {
    fn batches(&self) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        Box::new(self.iter().cloned().map(Ok))
    }

    fn len(&self) -> usize {
        N
    }
}

/// Images `[N, C, H, W]` in `[0, 1]` and labels held on the host, shuffled per epoch from a seed.
#[derive(Debug, Clone)]
pub struct InMemory {
    images: Vec<f32>,
    labels: Vec<i64>,
    shape: [usize; 3],
    batch_size: usize,
    seed: u64,
    device: Device,
}

impl InMemory {
    /// A source over `n = labels.len()` images of `shape = [C, H, W]`, in batches of
    /// `batch_size` on `device`, reshuffled each epoch from `seed`.
    ///
    /// # Panics
    /// If `images.len() != n · C · H · W` or `batch_size == 0`; use
    /// [`try_new`](Self::try_new) for an error instead.
    pub fn new(
        images: Vec<f32>,
        labels: Vec<i64>,
        shape: [usize; 3],
        batch_size: usize,
        seed: u64,
        device: &Device,
    ) -> Self {
        match Self::try_new(images, labels, shape, batch_size, seed, device) {
            Ok(source) => source,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`new`](Self::new), refusing a zero `batch_size` (which would loop forever or divide
    /// by zero) and images that do not fill `labels.len()` examples of `shape`.
    pub fn try_new(
        images: Vec<f32>,
        labels: Vec<i64>,
        shape: [usize; 3],
        batch_size: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(invalid("batch_size", 0, "a batch holds at least one image"));
        }
        let per: usize = shape.iter().product();
        if Some(images.len()) != labels.len().checked_mul(per) {
            return Err(AdvError::InvalidInput(format!(
                "{} pixel values for {} images of shape {shape:?}",
                images.len(),
                labels.len()
            )));
        }
        Ok(Self {
            images,
            labels,
            shape,
            batch_size,
            seed,
            device: device.clone(),
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn order(&self, epoch: usize) -> Vec<usize> {
        // SplitMix64-driven Fisher–Yates: the same order on every platform.
        let mut state = self.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut order: Vec<usize> = (0..self.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }

    /// All examples in order, in batches (for validation and testing).
    pub fn batches(&self) -> Vec<(Tensor<4>, Tensor<1, Int>)> {
        let order: Vec<usize> = (0..self.len()).collect();
        order
            .chunks(self.batch_size)
            .map(|idx| self.batch(idx))
            .collect()
    }

    fn batch(&self, idx: &[usize]) -> (Tensor<4>, Tensor<1, Int>) {
        let per: usize = self.shape.iter().product();
        let [c, h, w] = self.shape;
        let mut x = Vec::with_capacity(idx.len() * per);
        for &i in idx {
            x.extend_from_slice(&self.images[i * per..(i + 1) * per]);
        }
        let y: Vec<i64> = idx.iter().map(|&i| self.labels[i]).collect();
        (
            Tensor::from_data(TensorData::new(x, [idx.len(), c, h, w]), &self.device),
            Tensor::from_data(TensorData::new(y, [idx.len()]), &self.device),
        )
    }
}

impl EpochBatches for InMemory {
    fn epoch(&mut self, epoch: usize) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        let order = self.order(epoch);
        let bs = self.batch_size;
        Box::new((0..order.len().div_ceil(bs)).map(move |b| {
            let end = ((b + 1) * bs).min(order.len());
            Ok(self.batch(&order[b * bs..end]))
        }))
    }

    fn steps_per_epoch(&self) -> usize {
        self.len().div_ceil(self.batch_size)
    }
}
