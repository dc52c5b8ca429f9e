//! 2-D convolution with fast CPU training passes.
//!
//! [`conv2d`] is a drop-in for `burn::tensor::module::conv2d`. On the `flex` CPU backend, for
//! f32 tensors and one group, it runs its own forward pass, input gradient and weight gradient
//! ([`CpuConvBackend`]): each a single matrix product per chunk of images over one im2col
//! matrix, except 3×3 stride-1 convolutions of 16 channels or more on maps of 16 positions or
//! more, whose three passes (the input gradient is a forward pass of the flipped kernel, the
//! weight gradient the algorithm's adjoint) use Winograd's F(4×4, 3×3): 36 products with
//! 4× fewer multiply-adds in all. Everywhere else
//! (GPU devices, other float types, grouped convolutions) it calls Burn's convolution
//! unchanged.
//!
//! Why: the CPU backend derives both gradients generically (a transposed convolution for the
//! input, and for the weight a convolution with the batch as channels whose products are
//! nine columns wide), so a training step cost about six forward passes instead of three.
//! See `docs/performance.md` for the measurements.
//!
//! ```
//! use burn::tensor::{ops::ConvOptions, Device, Distribution, Tensor};
//! use dwlth_kernels::conv::conv2d;
//!
//! let device = Device::flex().autodiff();
//! let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Default, &device).require_grad();
//! let w = Tensor::<4>::random([4, 3, 3, 3], Distribution::Default, &device).require_grad();
//! let y = conv2d(x.clone(), w.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
//! assert_eq!(y.dims(), [2, 4, 8, 8]);
//! let grads = y.sum().backward();
//! assert_eq!(w.grad(&grads).unwrap().dims(), [4, 3, 3, 3]);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

#[cfg(feature = "flex")]
pub mod blocks;
#[cfg(feature = "flex")]
mod extension;
#[cfg(feature = "flex")]
pub(crate) mod kernel;
#[cfg(feature = "flex")]
pub mod sparse;
#[cfg(feature = "flex")]
pub mod winograd;

#[cfg(feature = "flex")]
pub use extension::CpuConvBackend;

/// Which convolution [`conv2d`] runs on the CPU backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvImpl {
    /// This crate's im2col kernels for all three passes (the default).
    Native,
    /// Burn's own convolution and its generic gradients (for comparison).
    Burn,
}

static USE_BURN: AtomicBool = AtomicBool::new(false);

/// Chooses the CPU convolution for the whole process (the bench compares both).
pub fn set_conv_impl(choice: ConvImpl) {
    USE_BURN.store(choice == ConvImpl::Burn, Ordering::Relaxed);
}

/// The CPU convolution [`conv2d`] currently runs.
pub fn conv_impl() -> ConvImpl {
    if USE_BURN.load(Ordering::Relaxed) {
        ConvImpl::Burn
    } else {
        ConvImpl::Native
    }
}

/// `conv2d(x, weight) + bias`, with `x`: `[batch, c_in, h, w]` and `weight`:
/// `[c_out, c_in / groups, kh, kw]`, as `burn::tensor::module::conv2d`.
pub fn conv2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    options: ConvOptions<2>,
) -> Tensor<4> {
    #[cfg(feature = "flex")]
    if native_applies(&x, &weight, &options) {
        use burn::backend::Dispatch;
        let y = <Dispatch as CpuConvBackend>::cpu_conv2d(
            x.into_dispatch(),
            weight.into_dispatch(),
            options,
        );
        let y = Tensor::<4>::from_dispatch(y);
        return match bias {
            Some(b) => {
                let c = b.dims()[0];
                y + b.reshape([1, c, 1, 1])
            }
            None => y,
        };
    }
    burn::tensor::module::conv2d(x, weight, bias, options)
}

/// Whether `device` is the `flex` CPU device, with or without autodiff.
#[cfg(feature = "flex")]
pub fn on_flex(device: &burn::tensor::Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(
        device.clone().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Whether the native kernels take this convolution: f32 on the `flex` device (with or
/// without autodiff), one group, consistent channels.
#[cfg(feature = "flex")]
fn native_applies(x: &Tensor<4>, weight: &Tensor<4>, options: &ConvOptions<2>) -> bool {
    use burn::tensor::DType;
    if conv_impl() == ConvImpl::Burn || options.groups != 1 {
        return false;
    }
    let device = x.device();
    if device != weight.device() {
        return false;
    }
    on_flex(&device)
        && x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && x.dims()[1] == weight.dims()[1]
}

/// Deterministic values in `[-1, 1]` (xorshift), for the kernels' tests.
#[cfg(all(test, feature = "flex"))]
pub(crate) fn test_values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}
