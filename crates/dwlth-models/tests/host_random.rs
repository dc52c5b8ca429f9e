//! `dwlth_models::random` on the CPU backend: the host draw is Burn's own draw, so CPU results do
//! not depend on it. (Alone in its test binary: Burn's generator is one per process, and tests
//! running in parallel threads would draw from it in between.)
#![cfg(feature = "flex")]

use burn::module::Param;
use burn::nn::Initializer;
use burn::tensor::{Device, Distribution, Tensor};
use dwlth_models::random::{init_param, random, seed};

fn values(p: Param<Tensor<2>>) -> Vec<f32> {
    p.val().into_data().try_to_vec_as::<f32>().unwrap()
}

/// On the CPU backend (with or without autodiff) the host draw is Burn's own draw: CPU results
/// do not depend on this module.
#[test]
fn on_the_cpu_the_host_draw_is_burns_own() {
    let init = Initializer::KaimingUniform {
        gain: 1.0,
        fan_out_only: false,
    };
    for device in [Device::flex(), Device::flex().autodiff()] {
        seed(&device, 3);
        let ours = values(init_param(&init, [4, 5], Some(5), Some(4), &device));
        device.seed(3);
        let burns = values(init.init_with([4, 5], Some(5), Some(4), &device));
        assert_eq!(ours, burns);
        seed(&device, 3);
        let a = random([3, 2], Distribution::Default, &device);
        device.seed(3);
        let b = Tensor::<2>::random([3, 2], Distribution::Default, &device);
        assert_eq!(a.into_data(), b.into_data());
    }
}
