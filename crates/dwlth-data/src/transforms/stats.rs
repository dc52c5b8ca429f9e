//! Per-channel mean and standard deviation of the datasets, as the papers' code uses them.
//!
//! These are constants only: normalisation happens inside the model (attacks and ε live in
//! `[0, 1]` pixel space), so the data pipeline hands out unnormalised `[0, 1]` images.

/// Mean and standard deviation per channel (R, G, B).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelStats {
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

/// CIFAR-10 training set.
pub const CIFAR10_STATS: ChannelStats = ChannelStats {
    mean: [0.4914, 0.4822, 0.4465],
    std: [0.2470, 0.2435, 0.2616],
};

/// CIFAR-100 training set.
pub const CIFAR100_STATS: ChannelStats = ChannelStats {
    mean: [0.5071, 0.4867, 0.4408],
    std: [0.2675, 0.2565, 0.2761],
};

/// SVHN training set.
pub const SVHN_STATS: ChannelStats = ChannelStats {
    mean: [0.4377, 0.4438, 0.4728],
    std: [0.1201, 0.1231, 0.1052],
};

/// ImageNet (torchvision's).
pub const IMAGENET_STATS: ChannelStats = ChannelStats {
    mean: [0.485, 0.456, 0.406],
    std: [0.229, 0.224, 0.225],
};
