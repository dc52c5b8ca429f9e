//! Reproducible streaming batches: the order of an epoch is drawn on the host from a seed, the
//! samples of each batch are read, decoded and augmented on worker threads, and batches arrive
//! in that order, a bounded number ahead of the consumer.
//!
//! Burn's data loader hands batches out in the order its workers finish them, which differs
//! from run to run; a training run fed that way is not bit-reproducible. Here the worker count
//! changes only the speed: epoch `e` is the same sequence of batches with one worker or eight,
//! in this process or a resumed one (augmentation of item `i` in epoch `e` is
//! [`Augmented::sample`]`(i, e)`). Memory holds at most `prefetch + 1` batches.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use crate::augment::{Augmented, ImageSource};
use crate::error::{DataError, Result};
use crate::rng::Rng;

/// How a [`Stream`] batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Images per batch (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Reshuffle every epoch from this seed; `None` keeps the dataset order.
    pub shuffle: Option<u64>,
    /// Threads decoding and augmenting the samples of a batch (at least 1).
    pub workers: usize,
    /// Batches prepared ahead of the consumer (at least 1).
    pub prefetch: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            shuffle: None,
            workers: 2,
            prefetch: 2,
        }
    }
}

/// One batch on the host: images `[n, C, H, W]` in `[0, 1]` (row-major) and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// Pixel values, `n · C · H · W` of them.
    pub images: Vec<f32>,
    /// `[n, C, H, W]`.
    pub shape: [usize; 4],
    /// Class of each image.
    pub labels: Vec<i64>,
}

/// Reproducible batches of an [`Augmented`] source (see the module documentation).
pub struct Stream<D> {
    data: Arc<Augmented<D>>,
    config: StreamConfig,
}

impl<D: ImageSource + Send + Sync + 'static> Stream<D> {
    /// Streams `data`; a zero batch size, worker count or prefetch depth is an error.
    pub fn new(data: Augmented<D>, config: StreamConfig) -> Result<Self> {
        for (name, value) in [
            ("batch_size", config.batch_size),
            ("workers", config.workers),
            ("prefetch", config.prefetch),
        ] {
            if value == 0 {
                return Err(DataError::invalid(format!(
                    "stream `{name}` = 0: it must be at least 1"
                )));
            }
        }
        Ok(Self {
            data: Arc::new(data),
            config,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.data.len().div_ceil(self.config.batch_size)
    }

    /// `[C, H, W]` of every image.
    pub fn shape(&self) -> [usize; 3] {
        self.data.shape()
    }

    /// The order in which epoch `epoch` visits the samples.
    pub fn order(&self, epoch: u32) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if let Some(seed) = self.config.shuffle {
            Rng::derived(&[seed, u64::from(epoch)]).shuffle(&mut order);
        }
        order
    }

    /// The batches of epoch `epoch`, prepared on a producer thread at most `prefetch` ahead.
    /// A sample that cannot be read ends the epoch with its error.
    pub fn epoch(&self, epoch: u32) -> EpochStream {
        let (send, receive) = sync_channel(self.config.prefetch);
        let data = Arc::clone(&self.data);
        let order = self.order(epoch);
        let (batch_size, workers) = (self.config.batch_size, self.config.workers);
        let producer = std::thread::spawn(move || {
            for indices in order.chunks(batch_size) {
                let batch = build(&data, indices, epoch, workers);
                let failed = batch.is_err();
                if send.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        EpochStream {
            receive,
            producer: Some(producer),
        }
    }
}

/// Reads, decodes and augments the samples `indices` (the `epoch`-th draw of each) on up to
/// `workers` threads, keeping their order.
fn build<D: ImageSource + Send + Sync>(
    data: &Augmented<D>,
    indices: &[usize],
    epoch: u32,
    workers: usize,
) -> Result<HostBatch> {
    let [c, h, w] = data.shape();
    let per = c * h * w;
    let mut images = vec![0f32; indices.len() * per];
    let mut labels = vec![0i64; indices.len()];
    let chunk = indices.len().div_ceil(workers).max(1);
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = indices
            .chunks(chunk)
            .zip(images.chunks_mut(chunk * per))
            .zip(labels.chunks_mut(chunk))
            .map(|((ids, pixels), labels)| {
                scope.spawn(move || -> Result<()> {
                    for (k, &i) in ids.iter().enumerate() {
                        let sample = data
                            .sample(i, epoch)
                            .map_err(|e| DataError::invalid(format!("sample {i}: {e}")))?;
                        pixels[k * per..(k + 1) * per].copy_from_slice(sample.image.data());
                        labels[k] = sample.label as i64;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DataError::invalid("a stream worker panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<Result<()>>()?;
    Ok(HostBatch {
        images,
        shape: [indices.len(), c, h, w],
        labels,
    })
}

/// The batches of one epoch, in order (see [`Stream::epoch`]).
pub struct EpochStream {
    receive: Receiver<Result<HostBatch>>,
    producer: Option<std::thread::JoinHandle<()>>,
}

impl Iterator for EpochStream {
    type Item = Result<HostBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receive.recv().ok()
    }
}

impl Drop for EpochStream {
    fn drop(&mut self) {
        // Closing the channel stops the producer at its next batch.
        let (_, closed) = sync_channel(0);
        self.receive = closed;
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ImageDataset;
    use crate::transforms::crop_flip;

    fn data(n: usize) -> Augmented<ImageDataset> {
        let pixels = (0..n * 3 * 8 * 8).map(|i| (i * 7 % 256) as u8).collect();
        let labels = (0..n as u32).map(|i| i % 3).collect();
        let classes = (0..3).map(|i| i.to_string()).collect();
        let set = ImageDataset::new(pixels, labels, [3, 8, 8], classes).unwrap();
        Augmented::new(set, crop_flip(8, 2).unwrap(), 5).unwrap()
    }

    fn collect(stream: &Stream<ImageDataset>, epoch: u32) -> Vec<HostBatch> {
        stream.epoch(epoch).map(|b| b.unwrap()).collect()
    }

    #[test]
    fn an_epoch_is_the_same_batches_whatever_the_worker_count() {
        let config = |workers| StreamConfig {
            batch_size: 16,
            shuffle: Some(9),
            workers,
            prefetch: 2,
        };
        let one = Stream::new(data(70), config(1)).unwrap();
        let four = Stream::new(data(70), config(4)).unwrap();
        assert_eq!(one.batches_per_epoch(), 5);
        let a = collect(&one, 3);
        assert_eq!(a, collect(&four, 3));
        assert_eq!(a.len(), 5);
        assert_eq!(a[4].shape, [6, 3, 8, 8]);
        // Every sample once per epoch; another epoch, another order and other crops.
        let mut seen: Vec<i64> = a.iter().flat_map(|b| b.labels.clone()).collect();
        seen.sort();
        let mut all: Vec<i64> = (0..70).map(|i| i % 3).collect();
        all.sort();
        assert_eq!(seen, all);
        assert_ne!(a, collect(&one, 4));
        // A consumer that stops early lets the producer go.
        let mut partial = one.epoch(0);
        assert!(partial.next().is_some());
        drop(partial);
    }

    #[test]
    fn zero_sizes_are_refused() {
        for config in [
            StreamConfig {
                batch_size: 0,
                ..Default::default()
            },
            StreamConfig {
                workers: 0,
                ..Default::default()
            },
            StreamConfig {
                prefetch: 0,
                ..Default::default()
            },
        ] {
            assert!(Stream::new(data(4), config).is_err());
        }
    }
}
