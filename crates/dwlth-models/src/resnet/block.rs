//! The residual block of torchvision's ResNets, basic and bottleneck in one type.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::error::Result;
use crate::layers::{
    BatchNorm2d as BatchNorm, BatchNorm2dConfig, MaskedConv2d, MaskedConv2dConfig,
};

/// One residual block with torchvision's parameter names.
///
/// A basic block (ResNet-18/34) is `conv1` 3×3 (stride) → `conv2` 3×3; a v1.5 bottleneck
/// (ResNet-50/101) is `conv1` 1×1 → `conv2` 3×3 (stride) → `conv3` 1×1. One type with optional
/// `conv3`/`bn3` keeps the paths identical to torchvision's (`layer1.0.conv1.weight`) without
/// an enum variant in them. The shortcut `downsample` is a (conv 1×1, BatchNorm) pair, so its
/// paths are torchvision's `downsample.0.*` and `downsample.1.*`.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// First convolution.
    pub conv1: MaskedConv2d,
    /// First BatchNorm.
    pub bn1: BatchNorm,
    /// Second convolution.
    pub conv2: MaskedConv2d,
    /// Second BatchNorm.
    pub bn2: BatchNorm,
    /// Third convolution (bottleneck only).
    pub conv3: Option<MaskedConv2d>,
    /// Third BatchNorm (bottleneck only).
    pub bn3: Option<BatchNorm>,
    /// Projection shortcut when the shape changes.
    pub downsample: Option<(MaskedConv2d, BatchNorm)>,
}

pub(crate) struct BlockSpec {
    pub in_channels: usize,
    pub planes: usize,
    pub stride: usize,
    pub bottleneck: bool,
}

pub(crate) fn batch_norm(channels: usize, device: &Device) -> Result<BatchNorm> {
    // PyTorch's defaults: eps 1e-5, momentum 0.1.
    BatchNorm2dConfig::new(channels).try_init(device)
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Result<MaskedConv2d> {
    MaskedConv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding([k / 2, k / 2])
        .try_init(device)
}

impl BlockSpec {
    pub fn out_channels(&self) -> usize {
        if self.bottleneck {
            self.planes * 4
        } else {
            self.planes
        }
    }

    pub fn init(&self, device: &Device) -> Result<ResidualBlock> {
        let (cin, p, s) = (self.in_channels, self.planes, self.stride);
        let out = self.out_channels();
        let downsample = if s != 1 || cin != out {
            Some((conv(cin, out, 1, s, device)?, batch_norm(out, device)?))
        } else {
            None
        };
        let block = if self.bottleneck {
            ResidualBlock {
                conv1: conv(cin, p, 1, 1, device)?,
                bn1: batch_norm(p, device)?,
                conv2: conv(p, p, 3, s, device)?,
                bn2: batch_norm(p, device)?,
                conv3: Some(conv(p, out, 1, 1, device)?),
                bn3: Some(batch_norm(out, device)?),
                downsample,
            }
        } else {
            ResidualBlock {
                conv1: conv(cin, p, 3, s, device)?,
                bn1: batch_norm(p, device)?,
                conv2: conv(p, p, 3, 1, device)?,
                bn2: batch_norm(p, device)?,
                conv3: None,
                bn3: None,
                downsample,
            }
        };
        Ok(block)
    }
}

impl ResidualBlock {
    /// Applies the block.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward(conv.forward(input.clone())),
            None => input.clone(),
        };
        let out = self.bn1.forward_relu(self.conv1.forward(input));
        match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let out = self.bn2.forward_relu(self.conv2.forward(out));
                bn3.forward_add_relu(conv3.forward(out), identity)
            }
            _ => self.bn2.forward_add_relu(self.conv2.forward(out), identity),
        }
    }
}
