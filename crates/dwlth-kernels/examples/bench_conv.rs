//! Benchmark: the three passes of every convolution shape of a ResNet-18-CIFAR training step.
//!
//! ```sh
//! cargo run --release -p dwlth-kernels --example bench_conv [-- --batch 128 --repeats 3]
//! cargo run --release -p dwlth-kernels --example bench_conv -- --only layer4 --native
//! ```
//!
//! For each shape (batch 128 by default) and for both CPU convolutions (`native`:
//! `dwlth_kernels::conv`, `burn`: Burn's own), prints JSON with the seconds and GFLOP/s of the
//! forward pass, the input gradient and the weight gradient, each the median of `--repeats`
//! runs after one warm-up (`--only NAME[,NAME…]` for some shapes, `--native` to skip Burn's, e.g. under a
//! profiler). One pass is `2 · batch · c_out · oh · ow · c_in · kh · kw` FLOP.

use std::time::Instant;

use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use dwlth_kernels::conv::{conv2d, set_conv_impl, ConvImpl};

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn text_arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn timed(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() {
    // As training does (the `dwlth` binary and the bench): without it, every pass's buffers of
    // 32 MiB or more are fresh memory maps, and page faults distort the large layers' timings.
    dwlth_kernels::memory::keep_freed_memory();
    let batch = arg("--batch", 128);
    let repeats = arg("--repeats", 3);
    let device = Device::flex().autodiff();
    device.seed(0);
    // (name, c_in, c_out, input size, kernel, stride, padding)
    let shapes = [
        ("stem", 3, 64, 32, 3, 1, 1),
        ("layer1", 64, 64, 32, 3, 1, 1),
        ("layer2_down", 64, 128, 32, 3, 2, 1),
        ("layer2", 128, 128, 16, 3, 1, 1),
        ("layer2_shortcut", 64, 128, 32, 1, 2, 0),
        ("layer3", 256, 256, 8, 3, 1, 1),
        ("layer4", 512, 512, 4, 3, 1, 1),
    ];
    let mut out = serde_json::Map::new();
    let only = text_arg("--only");
    let impls: &[ConvImpl] = if std::env::args().any(|a| a == "--native") {
        &[ConvImpl::Native]
    } else {
        &[ConvImpl::Native, ConvImpl::Burn]
    };
    for (name, c_in, c_out, size, k, stride, pad) in shapes {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|o| o == name))
        {
            continue;
        }
        let x0 = Tensor::<4>::random([batch, c_in, size, size], Distribution::Default, &device);
        let w0 = Tensor::<4>::random([c_out, c_in, k, k], Distribution::Default, &device);
        let options = ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1);
        let o = (size + 2 * pad - k) / stride + 1;
        let flop = 2.0 * (batch * c_out * o * o * c_in * k * k) as f64;
        let mut entry = serde_json::Map::new();
        for &choice in impls {
            set_conv_impl(choice);
            let gy = Tensor::<4>::random([batch, c_out, o, o], Distribution::Default, &device);
            let forward = timed(repeats, || {
                let _ = conv2d(x0.clone(), w0.clone(), None, options.clone()).into_data();
            });
            // Backward of sum(y * gy) for one tracked operand: forward + that gradient.
            let with_grad = |track_x: bool| {
                timed(repeats, || {
                    let (x, w) = if track_x {
                        (x0.clone().require_grad(), w0.clone())
                    } else {
                        (x0.clone(), w0.clone().require_grad())
                    };
                    let y = conv2d(x.clone(), w.clone(), None, options.clone());
                    let grads = (y * gy.clone()).sum().backward();
                    let g = if track_x {
                        x.grad(&grads)
                    } else {
                        w.grad(&grads)
                    };
                    let _ = g.expect("gradient").into_data();
                })
            };
            let input = (with_grad(true) - forward).max(1e-9);
            let weight = (with_grad(false) - forward).max(1e-9);
            let pass = |s: f64| serde_json::json!({ "s": s, "gflop_s": flop / s / 1e9 });
            entry.insert(
                format!("{choice:?}").to_lowercase(),
                serde_json::json!({
                    "forward": pass(forward),
                    "input_grad": pass(input),
                    "weight_grad": pass(weight),
                }),
            );
        }
        out.insert(name.into(), entry.into());
    }
    set_conv_impl(ConvImpl::Native);
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(out)).expect("JSON")
    );
}
