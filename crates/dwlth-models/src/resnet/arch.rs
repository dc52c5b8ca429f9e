//! Named choices of the ResNet family: architecture depth and stem.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// A torchvision ResNet depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// ResNet-18: basic blocks `[2, 2, 2, 2]`.
    ResNet18,
    /// ResNet-34: basic blocks `[3, 4, 6, 3]`.
    ResNet34,
    /// ResNet-50: bottleneck blocks `[3, 4, 6, 3]` (v1.5, stride on the 3×3 convolution).
    ResNet50,
    /// ResNet-101: bottleneck blocks `[3, 4, 23, 3]`.
    ResNet101,
}

impl Arch {
    /// All architectures.
    pub const ALL: [Arch; 4] = [
        Arch::ResNet18,
        Arch::ResNet34,
        Arch::ResNet50,
        Arch::ResNet101,
    ];

    /// Blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 | Arch::ResNet50 => [3, 4, 6, 3],
            Arch::ResNet101 => [3, 4, 23, 3],
        }
    }

    /// Whether the blocks are bottlenecks (1×1, 3×3, 1×1, expansion 4).
    pub fn is_bottleneck(self) -> bool {
        matches!(self, Arch::ResNet50 | Arch::ResNet101)
    }

    /// Output channels of a block relative to its planes.
    pub fn expansion(self) -> usize {
        if self.is_bottleneck() {
            4
        } else {
            1
        }
    }

    /// The lowercase name, as torchvision spells it.
    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
            Arch::ResNet50 => "resnet50",
            Arch::ResNet101 => "resnet101",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == key)
            .ok_or_else(|| ModelError::UnknownName {
                what: "architecture",
                value: s.to_string(),
                expected: "resnet18, resnet34, resnet50, resnet101",
            })
    }
}

/// The first layers of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// torchvision's stem: 7×7 convolution with stride 2, then 3×3 max-pool with stride 2.
    ImageNet,
    /// For 32×32 inputs: 3×3 convolution with stride 1 and no max-pool.
    Cifar,
}

impl Stem {
    /// Kernel size, stride and padding of the stem convolution.
    pub fn conv_geometry(self) -> (usize, usize, usize) {
        match self {
            Stem::ImageNet => (7, 2, 3),
            Stem::Cifar => (3, 1, 1),
        }
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Stem::ImageNet => "imagenet",
            Stem::Cifar => "cifar",
        }
    }
}

impl fmt::Display for Stem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stem {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "imagenet" => Ok(Stem::ImageNet),
            "cifar" => Ok(Stem::Cifar),
            _ => Err(ModelError::UnknownName {
                what: "stem",
                value: s.to_string(),
                expected: "imagenet, cifar",
            }),
        }
    }
}
