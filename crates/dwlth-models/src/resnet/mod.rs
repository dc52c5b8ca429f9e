//! torchvision-exact ResNets (18, 34, 50 and 101; v1.5 bottleneck) built from masked layers,
//! with the input normalisation inside the model.

mod arch;
mod block;

pub use arch::{Arch, Stem};
pub use block::ResidualBlock;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::module::{adaptive_avg_pool2d, max_pool2d};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

use block::{batch_norm, BlockSpec};

use crate::error::{ModelError, Result};
use crate::layers::{
    BatchNorm2d, MaskedConv2d, MaskedConv2dConfig, MaskedLinear, MaskedLinearConfig, Normalize,
    NormalizeConfig,
};

/// Configuration of a [`ResNet`].
///
/// ```
/// use dwlth_models::{Arch, ResNetConfig, Stem};
/// use burn::tensor::{Device, Tensor};
///
/// let device = Device::flex();
/// // A tiny CIFAR-style ResNet-18 (width 4 instead of torchvision's 64).
/// let model = ResNetConfig::new(Arch::ResNet18)
///     .with_width(4)
///     .with_stem(Stem::Cifar)
///     .with_num_classes(10)
///     .try_init(&device)
///     .unwrap();
/// let logits = model.forward(Tensor::<4>::zeros([2, 3, 32, 32], &device));
/// assert_eq!(logits.dims(), [2, 10]);
/// ```
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// Depth and block type.
    pub arch: Arch,
    /// Classes of the head.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Channels of the stem and of the first stage (torchvision: 64); stage `i` has
    /// `width · 2^i` planes.
    #[config(default = 64)]
    pub width: usize,
    /// ImageNet (7×7 + max-pool) or CIFAR (3×3, no pool) stem.
    #[config(default = "Stem::ImageNet")]
    pub stem: Stem,
    /// Input channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// Input normalisation applied inside the model.
    #[config(default = "NormalizeConfig::imagenet()")]
    pub normalize: NormalizeConfig,
}

impl ResNetConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        if self.num_classes == 0 || self.width == 0 || self.in_channels == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "num_classes ({}), width ({}) and in_channels ({}) must be positive",
                self.num_classes, self.width, self.in_channels
            )));
        }
        if self.normalize.channels() != self.in_channels {
            return Err(ModelError::InvalidConfig(format!(
                "normalisation has {} channel(s) but the model takes {} input channel(s)",
                self.normalize.channels(),
                self.in_channels
            )));
        }
        self.normalize.validate()
    }

    /// Features before the head (`512 · expansion · width / 64`).
    pub fn feature_dim(&self) -> usize {
        self.width * 8 * self.arch.expansion()
    }

    /// Bytes the built model's tensors take in `f32`: weight and mask of every convolution and
    /// of the head, the head's bias, four values per BatchNorm channel and the normalisation.
    /// Computed in `f64`, so that an absurd width gives a huge number instead of overflowing.
    pub fn parameter_bytes(&self) -> f64 {
        let conv = |cin: f64, cout: f64, k: f64| 2.0 * cin * cout * k * k;
        let bn = |c: f64| 4.0 * c;
        let (w, expansion) = (self.width as f64, self.arch.expansion() as f64);
        let (k, _, _) = self.stem.conv_geometry();
        let mut n = 2.0 * self.in_channels as f64 + conv(self.in_channels as f64, w, k as f64);
        n += bn(w);
        let mut cin = w;
        for (stage, blocks) in self.arch.blocks().into_iter().enumerate() {
            let planes = w * 2f64.powi(stage as i32);
            let out = planes * expansion;
            for b in 0..blocks {
                n += if self.arch.is_bottleneck() {
                    conv(cin, planes, 1.0)
                        + conv(planes, planes, 3.0)
                        + conv(planes, out, 1.0)
                        + 2.0 * bn(planes)
                        + bn(out)
                } else {
                    conv(cin, planes, 3.0) + conv(planes, planes, 3.0) + 2.0 * bn(planes)
                };
                if (stage > 0 && b == 0) || cin != out {
                    n += conv(cin, out, 1.0) + bn(out);
                }
                cin = out;
            }
        }
        let classes = self.num_classes as f64;
        n += 2.0 * cin * classes + classes;
        4.0 * n
    }

    /// Refuses a configuration whose parameters alone would not fit in the memory available
    /// (e.g. a mistyped `width`): allocating them would abort the process.
    fn check_memory(&self) -> Result<()> {
        crate::device::check_allocation(
            &format!(
                "a {} with `width` = {}, `num_classes` = {} and `in_channels` = {}",
                self.arch, self.width, self.num_classes, self.in_channels
            ),
            self.parameter_bytes(),
        )
    }

    /// Builds the model with torchvision's initialisation.
    pub fn try_init(&self, device: &Device) -> Result<ResNet> {
        self.validate()?;
        self.check_memory()?;
        let (k, s, p) = self.stem.conv_geometry();
        let conv1 = MaskedConv2dConfig::new([self.in_channels, self.width], [k, k])
            .with_stride([s, s])
            .with_padding([p, p])
            .try_init(device)?;
        let mut in_channels = self.width;
        let mut stages = Vec::with_capacity(4);
        for (stage, blocks) in self.arch.blocks().into_iter().enumerate() {
            let planes = self.width << stage;
            let mut layer = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let spec = BlockSpec {
                    in_channels,
                    planes,
                    stride: if stage > 0 && b == 0 { 2 } else { 1 },
                    bottleneck: self.arch.is_bottleneck(),
                };
                in_channels = spec.out_channels();
                layer.push(spec.init(device)?);
            }
            stages.push(layer);
        }
        let [layer1, layer2, layer3, layer4] = <[Vec<ResidualBlock>; 4]>::try_from(stages)
            .map_err(|_| ModelError::InvalidConfig("a ResNet has four stages".into()))?;
        Ok(ResNet {
            normalize: self.normalize.try_init(device)?,
            conv1,
            bn1: batch_norm(self.width, device)?,
            max_pool: self.stem == Stem::ImageNet,
            layer1,
            layer2,
            layer3,
            layer4,
            fc: MaskedLinearConfig::new(in_channels, self.num_classes).try_init(device)?,
            arch: self.arch,
            stem: self.stem,
        })
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If the configuration is invalid; use [`try_init`](Self::try_init) for an error instead.
    pub fn init(&self, device: &Device) -> ResNet {
        match self.try_init(device) {
            Ok(model) => model,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A torchvision ResNet whose parameter paths are torchvision's state-dict keys (BatchNorm's
/// `gamma`/`beta` standing for `weight`/`bias`), preceded by a [`Normalize`] layer.
///
/// Inputs are images in `[0, 1]`; the model normalises them itself.
#[derive(Module, Debug)]
pub struct ResNet {
    /// Input normalisation.
    pub normalize: Normalize,
    /// Stem convolution.
    pub conv1: MaskedConv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm2d,
    /// Whether the stem max-pools (ImageNet stem).
    pub max_pool: bool,
    /// Stage 1.
    pub layer1: Vec<ResidualBlock>,
    /// Stage 2.
    pub layer2: Vec<ResidualBlock>,
    /// Stage 3.
    pub layer3: Vec<ResidualBlock>,
    /// Stage 4.
    pub layer4: Vec<ResidualBlock>,
    /// Classification head.
    pub fc: MaskedLinear,
    /// Architecture.
    #[module(skip)]
    pub arch: Arch,
    /// Stem.
    #[module(skip)]
    pub stem: Stem,
}

impl ResNet {
    /// Pooled features before the head, `[batch, feature_dim]`.
    pub fn features(&self, input: Tensor<4>) -> Tensor<2> {
        let x = self.normalize.forward(input);
        let mut x = self.bn1.forward_relu(self.conv1.forward(x));
        if self.max_pool {
            let options = MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]);
            x = max_pool2d(x, options);
        }
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x);
        }
        let [n, c, _, _] = x.dims();
        adaptive_avg_pool2d(x, [1, 1]).reshape([n, c])
    }

    /// Logits `[batch, num_classes]` of images `[batch, channels, h, w]` in `[0, 1]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.features(input))
    }

    /// Checks that images of `shape` (`[N, C, H, W]`) can go through [`forward`](Self::forward):
    /// four dimensions, the model's channels, every size positive. Burn panics on an empty
    /// image (a 0×0 convolution), so callers with user input check here first.
    pub fn check_input(&self, shape: &[usize]) -> Result<()> {
        let [_, c, h, w] = <[usize; 4]>::try_from(shape).map_err(|_| {
            ModelError::InvalidInput(format!("images must be [N, C, H, W], got {shape:?}"))
        })?;
        if c != self.in_channels() {
            return Err(ModelError::InvalidInput(format!(
                "images have {c} channel(s), the model takes {}",
                self.in_channels()
            )));
        }
        if h == 0 || w == 0 {
            return Err(ModelError::InvalidInput(format!(
                "images of {h}×{w} pixels: height and width must be positive"
            )));
        }
        Ok(())
    }

    /// Number of classes of the head.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.shape().dims::<2>()[0]
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.conv1.weight.shape().dims::<4>()[1]
    }

    /// Width (stem channels).
    pub fn width(&self) -> usize {
        self.conv1.weight.shape().dims::<4>()[0]
    }

    /// The configuration that rebuilds this model's shape (with its current normalisation).
    pub fn config(&self) -> ResNetConfig {
        ResNetConfig::new(self.arch)
            .with_num_classes(self.num_classes())
            .with_width(self.width())
            .with_stem(self.stem)
            .with_in_channels(self.in_channels())
            .with_normalize(self.normalize.to_config())
    }

    /// Replaces the classification head by a freshly initialised one with `num_classes` outputs,
    /// keeping the backbone (for transfer to a new task). A head too large for the memory
    /// available is refused ([`MaskedLinearConfig::try_init`]).
    pub fn with_head(self, num_classes: usize, device: &Device) -> Result<Self> {
        let features = self.fc.weight.shape().dims::<2>()[1];
        Ok(Self {
            fc: MaskedLinearConfig::new(features, num_classes).try_init(device)?,
            ..self
        })
    }

    /// Prepares linear evaluation: every layer but the head is frozen (no gradients, BatchNorm
    /// on its running statistics), so training updates only `fc`.
    pub fn freeze_backbone(self) -> Self {
        crate::mode::materialize(&self);
        let fc = self.fc.clone();
        let frozen = self.freeze();
        Self { fc, ..frozen }
    }

    /// Every convolution with its torchvision path (`conv1`, `layer1.0.conv2`,
    /// `layer2.0.downsample.0`, ...), in forward order.
    pub fn convolutions(&self) -> Vec<(String, &MaskedConv2d)> {
        let mut out = vec![("conv1".to_string(), &self.conv1)];
        for (stage, layer) in [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, block) in layer.iter().enumerate() {
                let prefix = format!("layer{}.{i}", stage + 1);
                out.push((format!("{prefix}.conv1"), &block.conv1));
                out.push((format!("{prefix}.conv2"), &block.conv2));
                if let Some(conv3) = &block.conv3 {
                    out.push((format!("{prefix}.conv3"), conv3));
                }
                if let Some((conv, _)) = &block.downsample {
                    out.push((format!("{prefix}.downsample.0"), conv));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_bytes_are_those_of_the_built_model() {
        let device = Device::flex();
        for arch in [
            Arch::ResNet18,
            Arch::ResNet34,
            Arch::ResNet50,
            Arch::ResNet101,
        ] {
            for stem in [Stem::Cifar, Stem::ImageNet] {
                let config = ResNetConfig::new(arch)
                    .with_width(2)
                    .with_stem(stem)
                    .with_in_channels(1)
                    .with_num_classes(7)
                    .with_normalize(NormalizeConfig::identity(1));
                let model = config.try_init(&device).unwrap();
                assert_eq!(
                    config.parameter_bytes(),
                    4.0 * model.num_params() as f64,
                    "{arch} {stem:?}"
                );
            }
        }
    }

    #[test]
    fn a_width_beyond_memory_is_refused_before_allocating() {
        // About 24 PB of parameters: allocating them would abort the process.
        let config = ResNetConfig::new(Arch::ResNet18).with_width(1 << 20);
        let e = config.try_init(&Device::flex()).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ModelError::InvalidConfig(_)), "{text}");
        assert!(text.contains("`width` = 1048576"), "{text}");
        assert!(text.contains("PB of memory, more than"), "{text}");
        // Sizes that overflow usize arithmetic are refused the same way.
        let config = ResNetConfig::new(Arch::ResNet50).with_width(usize::MAX / 2);
        assert!(config.try_init(&Device::flex()).is_err());
    }

    #[test]
    fn a_head_beyond_memory_is_refused() {
        let device = Device::flex();
        let model = ResNetConfig::new(Arch::ResNet18)
            .with_width(2)
            .with_stem(Stem::Cifar)
            .with_num_classes(3)
            .try_init(&device)
            .unwrap();
        let e = model.with_head(usize::MAX / 4, &device).unwrap_err();
        assert!(e.to_string().contains("linear layer"), "{e}");
    }

    #[test]
    fn empty_images_are_refused_before_the_forward_pass() {
        let model = ResNetConfig::new(Arch::ResNet18)
            .with_width(2)
            .with_stem(Stem::Cifar)
            .with_num_classes(3)
            .try_init(&Device::flex())
            .unwrap();
        assert!(model.check_input(&[2, 3, 8, 8]).is_ok());
        for shape in [
            &[1, 3, 0, 0][..],
            &[1, 3, 8, 0],
            &[1, 3, 0, 8],
            &[1, 1, 8, 8],
            &[3, 8, 8],
        ] {
            let e = model.check_input(shape).unwrap_err();
            assert!(matches!(e, ModelError::InvalidInput(_)), "{shape:?}: {e}");
        }
    }
}
