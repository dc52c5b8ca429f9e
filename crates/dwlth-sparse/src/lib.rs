//! # dwlth-sparse
//!
//! Sparse CPU inference: a ticket's sparsity turned into speed.
//!
//! A ticket is a [`ResNet`] whose masked layers keep only a few percent of their weights. The
//! dense model still multiplies every zero; [`SparseResNet`] compiles the ticket into an
//! inference engine that does not:
//!
//! - every eval-mode BatchNorm is folded into the convolution before it, so a block is three
//!   convolutions with bias, and nothing else (`read.rs`);
//! - each folded convolution keeps only its nonzero weights, per output channel
//!   (`filter.rs`);
//! - output channels whose weights are all pruned are constants: they are never convolved, and
//!   the next convolution drops (zero constant) or folds into its bias (1×1 convolution) the
//!   weights that read them;
//! - the convolution is direct and sparse: per nonzero weight, one multiply-add over a tile of
//!   contiguous output positions held in registers (`kernel.rs`), on activations laid out so that
//!   every weight reads a contiguous run of its input (`activation.rs`), with bias, shortcut and
//!   ReLU fused into the store, in parallel over images and channel blocks.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use dwlth_sparse::SparseResNet;
//! use dwlth_models::{Arch, ResNetConfig, Stem};
//!
//! let device = Device::flex();
//! let model = ResNetConfig::new(Arch::ResNet18).with_width(2).with_stem(Stem::Cifar)
//!     .with_num_classes(3).init(&device);
//! let engine = SparseResNet::from_resnet(&model).unwrap();
//! let x = Tensor::<4>::ones([2, 3, 8, 8], &device);
//! let logits = engine.forward_tensor(x).unwrap();
//! assert_eq!(logits.dims(), [2, 3]);
//! ```

#![warn(missing_docs)]

mod activation;
mod dense;
pub mod error;
mod filter;
mod kernel;
mod pool;
mod profile;
mod read;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};

use activation::{conv_input, stem_input, Act, ConvInput, Pool};
use dense::convolve_dense;
use filter::SparseConv;
use kernel::{convolve, convolve_max_pooled};
use pool::{global_average, max_pool_3x3_s2, SparseLinear};
use read::{fold_conv_bn, linear, values};

pub use crate::error::{Result, SparseError};
use dwlth_models::{ResNet, ResidualBlock};
pub use profile::LayerTime;
use profile::Recorder;

/// Sparsity of one layer of a [`SparseResNet`].
#[derive(Clone, Debug, PartialEq)]
pub struct SparseLayerSummary {
    /// Torchvision path (`layer2.0.conv2`, `fc`).
    pub name: String,
    /// Weights of the dense layer.
    pub dense: usize,
    /// Nonzero weights of the masked layer.
    pub masked_nnz: usize,
    /// Weights the engine multiplies (after removing those that read constant channels).
    pub stored_nnz: usize,
    /// Output channels without weights, computed as constants.
    pub empty_channels: usize,
    /// Whether the engine runs the layer as a dense matrix product (a convolution that keeps
    /// at least a third of its weights, or the head a quarter), multiplying its zeros too.
    pub dense_product: bool,
}

/// One residual block, BatchNorm folded.
struct SparseBlock {
    conv1: SparseConv,
    conv2: SparseConv,
    conv3: Option<SparseConv>,
    downsample: Option<SparseConv>,
}

/// `conv` on `input`, as a dense product or on the sparse kernel as compiled.
fn run(
    pool: &Pool,
    conv: &SparseConv,
    input: &ConvInput,
    batch: usize,
    res: Option<Act>,
    relu: bool,
) -> Result<Act> {
    match &conv.dense {
        Some(weight) => convolve_dense(pool, conv, weight, input, batch, res, relu),
        None => convolve(pool, conv, input, batch, res, relu),
    }
}

/// `conv` applied to `x` (input layout included in its time), its phase-split input (if any)
/// returned to `pool`.
fn apply(
    pool: &Pool,
    rec: &Recorder,
    conv: &SparseConv,
    x: &Act,
    res: Option<Act>,
    relu: bool,
) -> Result<Act> {
    rec.time(
        &conv.name,
        |y| conv_macs(conv, y),
        || {
            let input = conv_input(pool, conv, x)?;
            let out = run(pool, conv, &input, x.batch, res, relu);
            input.recycle(pool);
            out
        },
    )
}

/// Multiply-adds of `conv` for the output maps `y`.
fn conv_macs(conv: &SparseConv, y: &Act) -> usize {
    conv.multiplies() * y.batch * y.height * y.width
}

impl SparseBlock {
    /// The block's output; `x` and every intermediate map go back to `pool`.
    fn forward(&self, pool: &Pool, rec: &Recorder, x: Act) -> Result<Act> {
        let shortcut = match &self.downsample {
            Some(ds) => Some(apply(pool, rec, ds, &x, None, false)?),
            None => None,
        };
        let y = apply(pool, rec, &self.conv1, &x, None, true)?;
        // The last convolution adds the shortcut in place, in the shortcut's own buffer.
        let identity = match shortcut {
            Some(s) => {
                pool.put(x.data);
                s
            }
            None => x,
        };
        match &self.conv3 {
            Some(conv3) => {
                let z = apply(pool, rec, &self.conv2, &y, None, true)?;
                pool.put(y.data);
                let out = apply(pool, rec, conv3, &z, Some(identity), true);
                pool.put(z.data);
                out
            }
            None => {
                let out = apply(pool, rec, &self.conv2, &y, Some(identity), true);
                pool.put(y.data);
                out
            }
        }
    }

    fn convolutions(&self) -> impl Iterator<Item = &SparseConv> {
        [
            Some(&self.conv1),
            Some(&self.conv2),
            self.conv3.as_ref(),
            self.downsample.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

/// A [`ResNet`] compiled for sparse CPU inference in eval mode (BatchNorm on running
/// statistics), giving the same logits as the dense model up to float rounding.
pub struct SparseResNet {
    mean: Vec<f32>,
    std: Vec<f32>,
    stem: SparseConv,
    max_pool: bool,
    blocks: Vec<SparseBlock>,
    fc: SparseLinear,
    fc_masked_nnz: usize,
    /// Activation buffers kept between calls (a few of the largest maps of the last batch).
    pool: Pool,
}

fn mismatch(layer: &str, what: &str, expected: usize, found: usize) -> SparseError {
    SparseError::UnsupportedLayer {
        layer: layer.to_string(),
        reason: format!("takes {found} {what} but the layer before gives {expected}"),
    }
}

fn check_in(conv: &SparseConv, channels: usize) -> Result<()> {
    if conv.shape.in_channels == channels {
        Ok(())
    } else {
        Err(mismatch(
            &conv.name,
            "input channels",
            channels,
            conv.shape.in_channels,
        ))
    }
}

/// The constant each output channel of `conv` takes after ReLU (`None` where it computes).
fn constants(conv: &SparseConv) -> Vec<Option<f32>> {
    (0..conv.shape.out_channels)
        .map(|o| conv.constant_output(o))
        .collect()
}

fn compile_block(prefix: &str, block: &ResidualBlock, in_channels: usize) -> Result<SparseBlock> {
    let conv = |name: &str, c, bn_name: &str, bn| -> Result<SparseConv> {
        let full = format!("{prefix}.{name}");
        let folded = fold_conv_bn(&full, c, &format!("{prefix}.{bn_name}"), bn)?;
        Ok(SparseConv::compress(&full, folded))
    };
    let conv1 = conv("conv1", &block.conv1, "bn1", &block.bn1)?;
    let mut conv2 = conv("conv2", &block.conv2, "bn2", &block.bn2)?;
    check_in(&conv1, in_channels)?;
    check_in(&conv2, conv1.shape.out_channels)?;
    conv2.fold_constant_inputs(&constants(&conv1));
    let conv3 = match (&block.conv3, &block.bn3) {
        (Some(c), Some(bn)) => {
            let mut conv3 = conv("conv3", c, "bn3", bn)?;
            check_in(&conv3, conv2.shape.out_channels)?;
            conv3.fold_constant_inputs(&constants(&conv2));
            Some(conv3)
        }
        (None, None) => None,
        _ => {
            return Err(SparseError::UnsupportedLayer {
                layer: format!("{prefix}.conv3"),
                reason: "a bottleneck needs both conv3 and bn3".into(),
            })
        }
    };
    let out_channels = conv3.as_ref().unwrap_or(&conv2).shape.out_channels;
    let downsample = match &block.downsample {
        Some((c, bn)) => {
            let ds = conv("downsample.0", c, "downsample.1", bn)?;
            check_in(&ds, in_channels)?;
            if ds.shape.out_channels != out_channels {
                return Err(mismatch(
                    &ds.name,
                    "output channels",
                    out_channels,
                    ds.shape.out_channels,
                ));
            }
            Some(ds)
        }
        None => None,
    };
    Ok(SparseBlock {
        conv1,
        conv2,
        conv3,
        downsample,
    })
}

impl SparseResNet {
    /// Compiles `model` (on any device; its tensors are read once) for sparse inference.
    ///
    /// Reads every convolution's masked weight, folds the eval-mode BatchNorm that follows it
    /// (running statistics, synchronised as [`io::resnet_tensors`](dwlth_models::io::resnet_tensors)
    /// reads them) and keeps the nonzero weights. Fails on layers the engine does not run
    /// (groups, dilation), on non-finite values and on inconsistent channel counts.
    pub fn from_resnet(model: &ResNet) -> Result<Self> {
        // `valid()` folds pending train-mode BatchNorm updates into the running statistics.
        let model = model.valid();
        let mean = values(model.normalize.mean.val(), "normalize.mean")?;
        let std = values(model.normalize.std.val(), "normalize.std")?;
        if mean.len() != std.len() || std.iter().any(|s| *s <= 0.0) {
            return Err(SparseError::InvalidValue {
                key: "normalize".into(),
                reason: "mean and std must have one value per channel, std positive".into(),
            });
        }
        let stem = SparseConv::compress(
            "conv1",
            fold_conv_bn("conv1", &model.conv1, "bn1", &model.bn1)?,
        );
        check_in(&stem, mean.len())?;
        let mut channels = stem.shape.out_channels;
        // The stem's constant channels stay constant through the max-pool (values ≥ 0).
        let mut incoming = Some(constants(&stem));
        let mut blocks = Vec::new();
        for (stage, layer) in [&model.layer1, &model.layer2, &model.layer3, &model.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, block) in layer.iter().enumerate() {
                let mut b = compile_block(&format!("layer{}.{i}", stage + 1), block, channels)?;
                if let Some(constant) = incoming.take() {
                    b.conv1.fold_constant_inputs(&constant);
                    if let Some(ds) = &mut b.downsample {
                        ds.fold_constant_inputs(&constant);
                    }
                }
                channels = b.conv3.as_ref().unwrap_or(&b.conv2).shape.out_channels;
                blocks.push(b);
            }
        }
        let (out, inp, weight, bias) = linear(&model.fc)?;
        if inp != channels {
            return Err(mismatch("fc", "features", channels, inp));
        }
        let fc = SparseLinear::compress(out, inp, &weight, bias);
        let fc_masked_nnz = fc.values.len();
        Ok(Self {
            mean,
            std,
            stem,
            max_pool: model.max_pool,
            blocks,
            fc,
            fc_masked_nnz,
            pool: Pool::default(),
        })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.mean.len()
    }

    /// Classes.
    pub fn num_classes(&self) -> usize {
        self.fc.out_features
    }

    /// Logits `[batch · classes]` (row-major) of `batch` images of `in_channels × h × w`
    /// values in `[0, 1]`, NCHW, as [`ResNet::forward`] in eval mode.
    pub fn forward(&self, input: &[f32], batch: usize, h: usize, w: usize) -> Result<Vec<f32>> {
        self.run_forward(input, [batch, h, w], &Recorder::Off)
    }

    /// [`forward`](Self::forward), timing every layer: where a ticket's inference time goes.
    ///
    /// Returns the logits and one [`LayerTime`] per step in forward order: each convolution
    /// (its input layout included), `maxpool` (unless the stem is sparse, when it runs fused
    /// with the stem and counts as `conv1`), `avgpool` and `fc`. Their sum is the whole pass
    /// but for buffer bookkeeping. Times are wall-clock, so run a warm-up pass first and
    /// compare medians of several runs.
    ///
    /// ```
    /// # use burn::tensor::Device;
    /// # use dwlth_sparse::SparseResNet;
    /// # use dwlth_models::{Arch, ResNetConfig, Stem};
    /// # let model = ResNetConfig::new(Arch::ResNet18).with_width(2).with_stem(Stem::Cifar)
    /// #     .with_num_classes(3).init(&Device::flex());
    /// let engine = SparseResNet::from_resnet(&model).unwrap();
    /// let (logits, times) = engine.profile(&[0.5; 2 * 3 * 8 * 8], 2, 8, 8).unwrap();
    /// assert_eq!(logits.len(), 2 * 3);
    /// assert_eq!(times[0].name, "conv1");
    /// let slowest = times.iter().max_by(|a, b| a.seconds.total_cmp(&b.seconds)).unwrap();
    /// println!("{} took {:.2} ms", slowest.name, slowest.seconds * 1e3);
    /// ```
    pub fn profile(
        &self,
        input: &[f32],
        batch: usize,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, Vec<LayerTime>)> {
        let rec = Recorder::On(Default::default());
        let logits = self.run_forward(input, [batch, h, w], &rec)?;
        Ok((logits, rec.into_times()))
    }

    fn run_forward(
        &self,
        input: &[f32],
        [batch, h, w]: [usize; 3],
        rec: &Recorder,
    ) -> Result<Vec<f32>> {
        let c = self.in_channels();
        let expected = [batch, c, h, w]
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if batch == 0 || h == 0 || w == 0 || expected != Some(input.len()) {
            return Err(SparseError::InvalidInput(format!(
                "{} values given for {batch} image(s) of {c}×{h}×{w} (every size must be positive)",
                input.len()
            )));
        }
        let pool = &self.pool;
        // A sparse stem and its max-pool run fused: one entry, `conv1`, in a profile, its
        // multiply-adds counted on the convolution's own output.
        let fused = self.max_pool && self.stem.dense.is_none();
        let positions = std::cell::Cell::new(0);
        let mut x = rec.time(
            &self.stem.name,
            |_| self.stem.multiplies() * batch * positions.get(),
            || {
                let stem = stem_input(
                    pool,
                    &self.stem,
                    input,
                    [batch, h, w],
                    (&self.mean, &self.std),
                )?;
                positions.set(stem.out_h * stem.out_w);
                let x = if fused {
                    convolve_max_pooled(pool, &self.stem, &stem, batch)
                } else {
                    run(pool, &self.stem, &stem, batch, None, true)
                };
                stem.recycle(pool);
                x
            },
        )?;
        if self.max_pool && !fused {
            let pooled = rec.time("maxpool", |_| 0, || max_pool_3x3_s2(pool, &x))?;
            pool.put(std::mem::replace(&mut x, pooled).data);
        }
        for block in &self.blocks {
            x = block.forward(pool, rec, x)?;
        }
        let features = rec.time("avgpool", |_| 0, || Ok(global_average(&x)))?;
        pool.put(x.data);
        rec.time(
            "fc",
            |_| batch * self.fc.values.len(),
            || Ok(self.fc.forward(&features)),
        )
    }

    /// [`forward`](Self::forward) on a Burn tensor `[batch, channels, h, w]`; the logits
    /// `[batch, classes]` are on the input's device.
    pub fn forward_tensor(&self, input: Tensor<4>) -> Result<Tensor<2>> {
        let [batch, channels, h, w] = input.dims();
        if channels != self.in_channels() {
            return Err(SparseError::InvalidInput(format!(
                "the model takes {} channel(s), the input has {channels}",
                self.in_channels()
            )));
        }
        let device = input.device();
        let data = values(input, "input")?;
        let logits = self.forward(&data, batch, h, w)?;
        Ok(Tensor::from_data(
            TensorData::new(logits, [batch, self.num_classes()]),
            &device,
        ))
    }

    fn convolutions(&self) -> impl Iterator<Item = &SparseConv> {
        std::iter::once(&self.stem).chain(self.blocks.iter().flat_map(SparseBlock::convolutions))
    }

    /// Per-layer sparsity, convolutions in forward order, then the head.
    pub fn layers(&self) -> Vec<SparseLayerSummary> {
        self.convolutions()
            .map(|c| SparseLayerSummary {
                name: c.name.clone(),
                dense: c.dense_len(),
                masked_nnz: c.masked_nnz,
                stored_nnz: c.nnz(),
                empty_channels: c.empty_channels(),
                dense_product: c.dense.is_some(),
            })
            .chain(std::iter::once(SparseLayerSummary {
                name: "fc".into(),
                dense: self.fc.out_features * self.fc.in_features,
                masked_nnz: self.fc_masked_nnz,
                stored_nnz: self.fc.values.len(),
                empty_channels: self.fc.row.windows(2).filter(|r| r[0] == r[1]).count(),
                dense_product: self.fc.dense.is_some(),
            }))
            .collect()
    }

    /// Weights the engine multiplies, over every convolution and the head.
    pub fn nnz(&self) -> usize {
        self.layers().iter().map(|l| l.stored_nnz).sum()
    }

    /// Nonzero weights of the masked model over its weights (convolutions and head), in `[0, 1]`.
    pub fn density(&self) -> f64 {
        let layers = self.layers();
        let dense: usize = layers.iter().map(|l| l.dense).sum();
        let masked: usize = layers.iter().map(|l| l.masked_nnz).sum();
        masked as f64 / dense.max(1) as f64
    }

    /// Multiply-adds of one image of `h × w` pixels: the weights each convolution multiplies
    /// (its stored nonzero ones, or all of them for a layer run as a dense product) times its
    /// output positions, plus the head.
    pub fn macs(&self, h: usize, w: usize) -> usize {
        let mut size = (h, w);
        let mut total = 0;
        let out = |(h, w): (usize, usize), c: &SparseConv| {
            let s = &c.shape;
            let o = |n: usize, i: usize| {
                (n + 2 * s.padding[i]).saturating_sub(s.kernel[i]) / s.stride[i] + 1
            };
            (o(h, 0), o(w, 1))
        };
        size = out(size, &self.stem);
        total += self.stem.multiplies() * size.0 * size.1;
        if self.max_pool {
            size = (size.0.div_ceil(2), size.1.div_ceil(2));
        }
        for b in &self.blocks {
            let input = size;
            if let Some(ds) = &b.downsample {
                let o = out(input, ds);
                total += ds.multiplies() * o.0 * o.1;
            }
            for c in [Some(&b.conv1), Some(&b.conv2), b.conv3.as_ref()]
                .into_iter()
                .flatten()
            {
                size = out(size, c);
                total += c.multiplies() * size.0 * size.1;
            }
        }
        total + self.fc.values.len()
    }
}
