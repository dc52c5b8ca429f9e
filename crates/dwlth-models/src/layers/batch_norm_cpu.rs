//! Training-mode BatchNorm on the `flex` CPU backend in four passes over the activations.
//!
//! Burn's `batch_norm_train` moves the channels last and back (two transposed copies), takes
//! the mean and the variance in separate passes and normalises in several element-wise steps,
//! each of which autodiff then differentiates step by step. Here, as a Burn backend extension
//! with a hand-written backward:
//! - forward: two passes for the per-channel moments (mean, then squared deviations, summed in
//!   `f64` as PyTorch does), one pass for `y = x · scale + shift` (`scale = γ / √(var + ε)`,
//!   `shift = β − mean · scale`);
//! - backward: one pass for `Σ gy` and `Σ gy · (x − mean)` per channel, which give `∂β` and
//!   `∂γ`, and one pass for `∂x = γ/σ · (gy − mean(gy) − x̂ · mean(gy · x̂))`, written as
//!   `a · gy + b · x + c` per channel.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex, TensorMetadata};
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Training-mode BatchNorm over `[N, C, H, W]` f32 tensors.
#[backend_extension(Flex, Autodiff)]
pub trait CpuBatchNormBackend: Backend {
    /// Per-channel mean and biased variance of `x`, as `[2, C]` (means, then variances). Not
    /// differentiated: [`cpu_batch_norm_train`](Self::cpu_batch_norm_train) accounts for
    /// them in its gradient.
    fn cpu_channel_moments(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `(x − mean) / √(var + ε) · γ + β` with the batch's `moments`; differentiable in `x`
    /// (through the batch statistics too), `gamma` and `beta`.
    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// The gradients of [`cpu_batch_norm_train`](Self::cpu_batch_norm_train) with respect
    /// to `x`, `gamma` and `beta`, from the output gradient `grad`.
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// `[N, C, H·W]` of a 4-D tensor.
fn dims(t: &FlexTensor) -> [usize; 3] {
    let s = t.shape();
    [s[0], s[1], s[2] * s[3]]
}

fn values(t: &FlexTensor) -> &[f32] {
    t.storage::<f32>()
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Per-channel sums over the planes of `[N, C, plane]` values: `f(plane, channel)` per plane
/// (in parallel), added up per channel in `f64`.
fn channel_sums<const K: usize>(
    x: &[f32],
    [_, c, plane]: [usize; 3],
    f: impl Fn(usize, usize) -> [f64; K] + Sync,
) -> Vec<[f64; K]> {
    let per_plane: Vec<[f64; K]> = (0..x.len() / plane.max(1))
        .into_par_iter()
        .map(|i| f(i, i % c))
        .collect();
    let mut sums = vec![[0.0; K]; c];
    for (i, s) in per_plane.iter().enumerate() {
        for (a, b) in sums[i % c].iter_mut().zip(s) {
            *a += b;
        }
    }
    sums
}

/// `a[ch] · x[i] + b[ch] (+ c[ch] · z[i])` plane by plane, in parallel, into a new vector.
///
/// The vector is written once without being zeroed first: a `memset` of every BatchNorm
/// output and input gradient cost as much as the pass itself.
fn per_channel_affine(
    plane: usize,
    channels: usize,
    x: &[f32],
    z: Option<&[f32]>,
    coefficients: &[[f32; 3]],
) -> Vec<f32> {
    let plane = plane.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, dst)| {
            let src = &x[i * plane..][..dst.len()];
            let z = z.map(|z| &z[i * plane..][..dst.len()]);
            affine_plane(dst, src, z, coefficients[i % channels]);
        });
    // SAFETY: the chunks cover the first `x.len()` slots and every slot of each chunk was
    // written above.
    unsafe { out.set_len(x.len()) };
    out
}

/// `dst[i] = a · x[i] + b (+ c · z[i])`, in the widest instructions this CPU has.
fn affine_plane(dst: &mut [MaybeUninit<f32>], x: &[f32], z: Option<&[f32]>, abc: [f32; 3]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU, all `affine_plane_avx512` assumes; its
        // body is safe Rust.
        return unsafe { affine_plane_avx512(dst, x, z, abc) };
    }
    affine_plane_any(dst, x, z, abc)
}

/// AVX-512 build of [`affine_plane_any`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn affine_plane_avx512(dst: &mut [MaybeUninit<f32>], x: &[f32], z: Option<&[f32]>, abc: [f32; 3]) {
    affine_plane_any(dst, x, z, abc)
}

#[inline(always)]
fn affine_plane_any(
    dst: &mut [MaybeUninit<f32>],
    x: &[f32],
    z: Option<&[f32]>,
    [a, b, c]: [f32; 3],
) {
    match z {
        Some(z) => {
            for ((d, x), z) in dst.iter_mut().zip(x).zip(z) {
                d.write(a * x + b + c * z);
            }
        }
        None => {
            for (d, x) in dst.iter_mut().zip(x) {
                d.write(a * x + b);
            }
        }
    }
}

/// Lanes of the per-plane sums: independent accumulators, so that the additions do not wait
/// on each other (one running sum made every reduction pass latency-bound, four cycles per
/// value) and the loop vectorises.
const LANES: usize = 16;

/// Values per block: each lane adds up `BLOCK / LANES` values in `f32`, then the block's sum
/// joins the `f64` total, which keeps the `f64` accuracy PyTorch's CPU kernel has within a
/// few `f32` ulps per block.
const BLOCK: usize = 1024;

/// `Σ f(x[i], y[i])` (`K` sums at once), in the widest instructions this CPU has.
fn lane_sums<const K: usize, F: Fn(f32, f32) -> [f32; K]>(x: &[f32], y: &[f32], f: F) -> [f64; K] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU, all `lane_sums_avx512` assumes; its body
        // is safe Rust.
        return unsafe { lane_sums_avx512(x, y, f) };
    }
    lane_sums_any(x, y, f)
}

/// AVX-512 build of [`lane_sums_any`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn lane_sums_avx512<const K: usize, F: Fn(f32, f32) -> [f32; K]>(
    x: &[f32],
    y: &[f32],
    f: F,
) -> [f64; K] {
    lane_sums_any(x, y, f)
}

#[inline(always)]
fn lane_sums_any<const K: usize, F: Fn(f32, f32) -> [f32; K]>(
    x: &[f32],
    y: &[f32],
    f: F,
) -> [f64; K] {
    let mut total = [0.0f64; K];
    for (xb, yb) in x.chunks(BLOCK).zip(y.chunks(BLOCK)) {
        let mut acc = [[0.0f32; LANES]; K];
        let (xc, yc) = (xb.chunks_exact(LANES), yb.chunks_exact(LANES));
        let (xr, yr) = (xc.remainder(), yc.remainder());
        for (xs, ys) in xc.zip(yc) {
            // Sum by sum, so that each is one vector operation over the lanes.
            for (k, lanes) in acc.iter_mut().enumerate() {
                for l in 0..LANES {
                    lanes[l] += f(xs[l], ys[l])[k];
                }
            }
        }
        for (l, (x, y)) in xr.iter().zip(yr).enumerate() {
            let v = f(*x, *y);
            for k in 0..K {
                acc[k][l] += v[k];
            }
        }
        for k in 0..K {
            total[k] += acc[k].iter().map(|v| f64::from(*v)).sum::<f64>();
        }
    }
    total
}

/// Mean and biased variance per channel, in two passes with `f64` sums (the mean, then the
/// squared deviations from it), as PyTorch's CPU kernel collects them.
fn moments(x: &[f32], d: [usize; 3]) -> Vec<f32> {
    let [n, c, plane] = d;
    let count = (n * plane) as f64;
    let sums = channel_sums::<1>(x, d, |i, _| {
        let v = &x[i * plane..][..plane];
        lane_sums(v, v, |x, _| [x])
    });
    let mean: Vec<f64> = sums.iter().map(|[s]| s / count).collect();
    let squares = channel_sums::<1>(x, d, |i, ch| {
        let m = mean[ch] as f32;
        let v = &x[i * plane..][..plane];
        lane_sums(v, v, |x, _| [(x - m) * (x - m)])
    });
    let mut out = vec![0.0f32; 2 * c];
    for ch in 0..c {
        out[ch] = mean[ch] as f32;
        out[c + ch] = (squares[ch][0] / count) as f32;
    }
    out
}

/// `1 / √(var + ε)` per channel.
fn inverse_std(moments: &[f32], c: usize, epsilon: f64) -> Vec<f64> {
    moments[c..2 * c]
        .iter()
        .map(|v| 1.0 / (f64::from(*v) + epsilon).sqrt())
        .collect()
}

impl CpuBatchNormBackend for Flex {
    fn cpu_channel_moments(x: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        let d = dims(&x);
        tensor(moments(values(&x), d), Shape::new([2, d[1]]))
    }

    fn cpu_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        moments: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let (x, gamma, beta, moments) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
            moments.to_contiguous(),
        );
        let [_, c, plane] = dims(&x);
        let (g, b, m) = (values(&gamma), values(&beta), values(&moments));
        let inv = inverse_std(m, c, epsilon);
        let coefficients: Vec<[f32; 3]> = (0..c)
            .map(|ch| {
                let scale = f64::from(g[ch]) * inv[ch];
                let shift = f64::from(b[ch]) - f64::from(m[ch]) * scale;
                [scale as f32, shift as f32, 0.0]
            })
            .collect();
        let y = per_channel_affine(plane, c, values(&x), None, &coefficients);
        tensor(y, x.shape())
    }

    fn cpu_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        moments: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, moments, grad) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            moments.to_contiguous(),
            grad.to_contiguous(),
        );
        let d @ [n, c, plane] = dims(&x);
        let (xs, gy, g, m) = (values(&x), values(&grad), values(&gamma), values(&moments));
        let inv = inverse_std(m, c, epsilon);
        // Σ gy and Σ gy · (x − mean) per channel.
        let sums = channel_sums::<2>(xs, d, |i, ch| {
            let mean = m[ch];
            let (x, gy) = (&xs[i * plane..][..plane], &gy[i * plane..][..plane]);
            lane_sums(x, gy, |x, g| [g, g * (x - mean)])
        });
        let count = (n * plane) as f64;
        // ∂x = k · (gy − Σgy/M − x̂ · Σgy·x̂/M), k = γ/σ, x̂ = (x − mean)/σ:
        // a · x + b + c · gy with c = k, a = −k · σ⁻² · Σgy(x − mean)/M,
        // b = −k · Σgy/M − a · mean.
        let coefficients: Vec<[f32; 3]> = (0..c)
            .map(|ch| {
                let k = f64::from(g[ch]) * inv[ch];
                let [sum_gy, sum_gy_centered] = sums[ch];
                let a = -k * inv[ch] * inv[ch] * sum_gy_centered / count;
                let b = -k * sum_gy / count - a * f64::from(m[ch]);
                [a as f32, b as f32, k as f32]
            })
            .collect();
        let gx = per_channel_affine(plane, c, xs, Some(gy), &coefficients);
        let ggamma: Vec<f32> = (0..c).map(|ch| (sums[ch][1] * inv[ch]) as f32).collect();
        let gbeta: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        (
            tensor(gx, x.shape()),
            tensor(ggamma, Shape::new([c])),
            tensor(gbeta, Shape::new([c])),
        )
    }
}

/// The backward step of [`CpuBatchNormBackend::cpu_batch_norm_train`] on an autodiff device.
#[derive(Debug)]
struct CpuBatchNormBackward;

impl<B: CpuBatchNormBackend> Backward<B, 3> for CpuBatchNormBackward {
    type State = (NodeId, NodeId, FloatTensor<B>, f64);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, moments, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let (gx, ggamma, gbeta) =
            B::cpu_batch_norm_train_backward(x, gamma, moments, grad, epsilon);
        for (node, g) in [(node_x, gx), (node_gamma, ggamma), (node_beta, gbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

impl<B: CpuBatchNormBackend, C: CheckpointStrategy> CpuBatchNormBackend for Autodiff<B, C> {
    fn cpu_channel_moments(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::cpu_channel_moments(x.into_primitive()))
    }

    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let moments = moments.into_primitive();
        match CpuBatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let y = B::cpu_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    moments.clone(),
                    epsilon,
                );
                prep.finish((x_state, gamma_state, moments, epsilon), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_batch_norm_train(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                moments,
                epsilon,
            )),
        }
    }

    // Second derivatives are not provided: the gradients come back untracked.
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (gx, ggamma, gbeta) = B::cpu_batch_norm_train_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            moments.into_primitive(),
            grad.into_primitive(),
            epsilon,
        );
        (
            <FloatTensor<Self>>::new(gx),
            <FloatTensor<Self>>::new(ggamma),
            <FloatTensor<Self>>::new(gbeta),
        )
    }
}
