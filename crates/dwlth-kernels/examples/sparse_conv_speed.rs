//! Times the forward pass and input gradient of ResNet-18-CIFAR's convolution shapes at
//! batch 128, the dense passes against the sparse ones, at densities 1, 0.3, 0.1, 0.05
//! (random kept positions; the fastest of three runs each).
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p dwlth-kernels --example sparse_conv_speed
//! ```
//!
//! `SHAPE=i` times the `i`-th shape only, `DENSITY=d` one density, `LIMITS=l` one density
//! limit (0: the dense passes only).
use std::time::Instant;

use burn::tensor::{ops::ConvOptions, Device, Distribution, Tensor};
use dwlth_kernels::conv::sparse::{set_sparse_limit, SparseLimit};
use dwlth_kernels::conv::CpuConvBackend;

fn main() {
    dwlth_kernels::memory::keep_freed_memory();
    let device = Device::flex();
    let batch = 128;
    for (c_in, c_out, hw, k, s) in [
        (64, 64, 32, 3, 1),
        (64, 128, 32, 3, 2),
        (128, 128, 16, 3, 1),
        (256, 256, 8, 3, 1),
        (512, 512, 4, 3, 1),
        (64, 128, 32, 1, 2),
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| std::env::var("SHAPE").map_or(true, |s| s == i.to_string()))
    .map(|(_, v)| v)
    {
        let p = k / 2;
        let x = Tensor::<4>::random(
            [batch, c_in, hw, hw],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let w = Tensor::<4>::random(
            [c_out, c_in, k, k],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let keep = Tensor::<4>::random(
            [c_out, c_in, k, k],
            Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        let oh = (hw + 2 * p - k) / s + 1;
        let gy = Tensor::<4>::random(
            [batch, c_out, oh, oh],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let macs = (batch * c_out * c_in * k * k * oh * oh) as f64;
        for density in std::env::var("DENSITY")
            .map_or(vec![1.0f32, 0.3, 0.1, 0.05], |d| vec![d.parse().unwrap()])
        {
            let wd = w.clone() * keep.clone().lower_equal_elem(density).float();
            let (xp, wp, gp) = (
                x.clone().into_dispatch(),
                wd.into_dispatch(),
                gy.clone().into_dispatch(),
            );
            let time = |f: &dyn Fn()| {
                f();
                (0..3)
                    .map(|_| {
                        let t = Instant::now();
                        f();
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            let mut line = format!("{c_in}->{c_out} {hw}x{hw} k{k} s{s} density {density}:");
            for limit in
                std::env::var("LIMITS").map_or(vec![0.0f32, 0.5], |d| vec![d.parse().unwrap()])
            {
                set_sparse_limit(SparseLimit::Density(limit));
                let f = time(&|| {
                    let _ = <burn::backend::Dispatch as CpuConvBackend>::cpu_conv2d(
                        xp.clone(),
                        wp.clone(),
                        options.clone(),
                    );
                });
                let b = time(&|| {
                    let _ = <burn::backend::Dispatch as CpuConvBackend>::cpu_conv2d_x_backward(
                        xp.clone(),
                        wp.clone(),
                        gp.clone(),
                        options.clone(),
                    );
                });
                let name = if limit == 0.0 { "dense" } else { "sparse" };
                line += &format!(
                    "  {name} fwd {:.1} ms ({:.0} eff GF/s) bwd {:.1} ms",
                    f * 1e3,
                    2.0 * macs * f64::from(density) / f / 1e9,
                    b * 1e3
                );
            }
            println!("{line}");
        }
    }
}
