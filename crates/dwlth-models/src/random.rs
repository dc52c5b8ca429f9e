//! Randomness drawn on the host, so that one seed gives one experiment on every device.
//!
//! Burn draws random tensors with each backend's own generator: seeded alike, the CPU, wgpu and
//! CUDA backends give different initial weights and attack starts. Everything random that shapes
//! a result — initial weights, attack random starts, smoothing noise — is drawn here instead,
//! with the CPU backend's generator (seeded by [`seed`]), and moved to the device that uses it.
//! On the CPU backend this is exactly Burn's own draw, so CPU results are what they always were.
//! (Data order and augmentation are drawn by `dwlth-data`'s own host generator.)
//!
//! Without the `flex` feature there is no host backend to draw with, and each device draws its
//! own.

use burn::module::{Param, ParamId};
use burn::nn::Initializer;
use burn::tensor::{Device, Distribution, Shape, Tensor};

/// The device whose generator draws: the CPU backend's, when compiled in.
fn host_for(device: &Device) -> Option<Device> {
    #[cfg(feature = "flex")]
    {
        let host = Device::flex();
        (*device != host).then_some(host)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        None
    }
}

/// Seeds the host generator and `device`'s own: call this where one would call
/// `device.seed(seed)`.
pub fn seed(device: &Device, seed: u64) {
    device.seed(seed);
    if let Some(host) = host_for(device) {
        host.seed(seed);
    }
}

/// A random tensor drawn on the host and moved to `device`.
pub fn random<const D: usize>(
    shape: [usize; D],
    distribution: Distribution,
    device: &Device,
) -> Tensor<D> {
    match host_for(device) {
        None => Tensor::random(shape, distribution, device),
        Some(host) => on_device(Tensor::random(shape, distribution, &host), device),
    }
}

/// `value` moved from the host to `device`, tracked by autodiff when `device` is.
fn on_device<const D: usize>(value: Tensor<D>, device: &Device) -> Tensor<D> {
    let value = value.to_device(device);
    if device.is_autodiff() {
        value.autodiff()
    } else {
        value
    }
}

/// A parameter initialised by `initializer` on the host and moved to `device`. Like Burn's own
/// parameters it is drawn lazily, when first used — so parameters are drawn in the same order,
/// and get the same values, on every device.
pub fn init_param<const D: usize>(
    initializer: &Initializer,
    shape: [usize; D],
    fan_in: Option<usize>,
    fan_out: Option<usize>,
    device: &Device,
) -> Param<Tensor<D>> {
    match host_for(device) {
        None => initializer.init_with(shape, fan_in, fan_out, device),
        Some(host) => {
            let on_host = initializer.init_with(shape, fan_in, fan_out, &host);
            Param::uninitialized(
                ParamId::new(),
                move |device, require_grad| {
                    let value = on_device(on_host.val(), device);
                    if require_grad {
                        value.require_grad()
                    } else {
                        value
                    }
                },
                device.clone(),
                true,
                Shape::new(shape),
            )
        }
    }
}
