//! Training-mode BatchNorm on the `flex` CPU backend in four passes over the activations.
//!
//! Burn's `batch_norm_train` moves the channels last and back (two transposed copies), takes
//! the mean and the variance in separate passes and normalises in several element-wise steps,
//! each of which autodiff then differentiates step by step. Here, as a Burn backend extension
//! with a hand-written backward:
//! - forward: one pass for the per-channel moments (Welford's update in independent lanes,
//!   merged in `f64`), one pass for `y = x · scale + shift` (`scale = γ / √(var + ε)`,
//!   `shift = β − mean · scale`);
//! - backward: one pass for `Σ gy` and `Σ gy · (x − mean)` per channel, which give `∂β` and
//!   `∂γ`, and one pass for `∂x = γ/σ · (gy − mean(gy) − x̂ · mean(gy · x̂))`, written as
//!   `a · gy + b · x + c` per channel.
//!
//! A ReLU after the BatchNorm can be part of the operation (no pass of its own either way:
//! the backward passes test the forward's own condition), and so can the residual addition
//! before it at the end of a residual block (`…_add_relu`, both modes: one forward pass; the
//! ReLU's gradient, which is also the residual's, in one pass backward). Evaluation mode, a per-channel
//! affine map, has its own operation (`cpu_channel_affine`): one pass forward, one pass for
//! the input gradient, and one more for `∂scale`, `∂shift` only when they are trained.

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

    /// `(x − mean) / √(var + ε) · γ + β` with the batch's `moments`, followed by a ReLU when
    /// `relu` is set; differentiable in `x` (through the batch statistics too), `gamma` and
    /// `beta`.
    fn cpu_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// The gradients of [`cpu_batch_norm_train`](Self::cpu_batch_norm_train) with respect
    /// to `x`, `gamma` and `beta`, from the output gradient `grad`.
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `relu(cpu_batch_norm_train(x, gamma, beta, moments, epsilon, false) + residual)`, in
    /// one pass: the end of a residual block. Differentiable in `x`, `gamma`, `beta` and
    /// `residual` (same shape as `x`).
    fn cpu_batch_norm_train_add_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self>;

    /// `relu(cpu_channel_affine(x, scale, shift, false) + residual)`, in one pass: the end
    /// of a residual block in evaluation mode. Differentiable in `x`, `scale`, `shift` and
    /// `residual` (same shape as `x`).
    fn cpu_channel_affine_add_relu(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// `grad` where `output > 0`, 0 elsewhere: a gradient back through a ReLU, from the
    /// ReLU's output. Not differentiated.
    ///
    /// # Panics
    /// If `output` and `grad` hold different numbers of values (a caller's bug: the autodiff
    /// steps that call it pass a ReLU's output and that output's gradient).
    fn cpu_relu_gate(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x · scale + shift` per channel (`scale`, `shift`: `[C]`), followed by a ReLU when
    /// `relu` is set: BatchNorm in evaluation mode. Differentiable in `x`, `scale` and
    /// `shift`.
    fn cpu_channel_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// The gradients of [`cpu_channel_affine`](Self::cpu_channel_affine) with respect to
    /// `x`, `scale` and `shift` from the output gradient `grad`; those of `scale` and `shift`
    /// (a pass over `x` and `grad`) only when `with_params` is set, zeros otherwise.
    fn cpu_channel_affine_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        relu: bool,
        with_params: bool,
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

/// One channel's map of [`per_channel_affine`].
#[derive(Clone, Copy, Debug)]
enum Affine {
    /// `a · x + b`.
    Plain { a: f32, b: f32 },
    /// `max(0, a · x + b)`: a BatchNorm followed by a ReLU.
    Relu { a: f32, b: f32 },
    /// `max(0, a · x + b + z)`: a BatchNorm, a residual `z` added, then a ReLU.
    AddRelu { a: f32, b: f32 },
    /// `c · z`, counting `z` only where `gate` (as for [`Affine::WithGradient`]) lets it
    /// through: the input gradient of a per-channel affine map.
    Gradient { c: f32, gate: Option<[f32; 2]> },
    /// `a · x + b + c · z`, counting `z` only where `gate` lets it through: `gate = [s, t]`
    /// passes `z` where `s · x + t > 0` (where the ReLU after a BatchNorm passed its input;
    /// the same `f32` operations as [`Affine::Relu`], so the same decisions), `None` always.
    WithGradient {
        a: f32,
        b: f32,
        c: f32,
        gate: Option<[f32; 2]>,
    },
}

/// [`Affine`] maps per channel, plane by plane, in parallel, into a new vector; `z` (parallel
/// to `x`) is read by the maps that name it only.
///
/// The vector is written once without being zeroed first: a `memset` of every BatchNorm
/// output and input gradient cost as much as the pass itself.
fn per_channel_affine(
    plane: usize,
    channels: usize,
    x: &[f32],
    z: Option<&[f32]>,
    maps: &[Affine],
) -> Vec<f32> {
    let plane = plane.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, dst)| {
            let src = &x[i * plane..][..dst.len()];
            let z = z.map_or(&[][..], |z| &z[i * plane..][..dst.len()]);
            affine_plane(dst, src, z, maps[i % channels]);
        });
    // SAFETY: the chunks cover the first `x.len()` slots and every slot of each chunk was
    // written above.
    unsafe { out.set_len(x.len()) };
    out
}

/// What follows a BatchNorm's affine map in its forward pass.
#[derive(Clone, Copy)]
enum Then<'a> {
    Nothing,
    Relu,
    /// A residual added, then a ReLU.
    AddRelu(&'a FlexTensor),
}

/// `a · x + b` per channel, `[a, b]` from `coefficients`, then `then`: the forward pass of
/// both BatchNorm modes.
fn affine_forward(
    x: &FlexTensor,
    coefficients: impl IntoIterator<Item = [f32; 2]>,
    then: Then,
) -> FlexTensor {
    let [_, c, plane] = dims(x);
    let maps: Vec<Affine> = coefficients
        .into_iter()
        .map(|[a, b]| match then {
            Then::Nothing => Affine::Plain { a, b },
            Then::Relu => Affine::Relu { a, b },
            Then::AddRelu(_) => Affine::AddRelu { a, b },
        })
        .collect();
    let residual = match then {
        Then::AddRelu(r) => Some(values(r)),
        _ => None,
    };
    tensor(
        per_channel_affine(plane, c, values(x), residual, &maps),
        x.shape(),
    )
}

/// `Then::Relu` or `Then::Nothing`.
fn relu_or_nothing<'a>(relu: bool) -> Then<'a> {
    if relu {
        Then::Relu
    } else {
        Then::Nothing
    }
}

/// `dst = map(x, z)`, in the widest instructions this CPU has.
fn affine_plane(dst: &mut [MaybeUninit<f32>], x: &[f32], z: &[f32], map: Affine) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU, all `affine_plane_avx512` assumes; its
        // body is safe Rust.
        return unsafe { affine_plane_avx512(dst, x, z, map) };
    }
    affine_plane_any(dst, x, z, map)
}

/// AVX-512 build of [`affine_plane_any`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn affine_plane_avx512(dst: &mut [MaybeUninit<f32>], x: &[f32], z: &[f32], map: Affine) {
    affine_plane_any(dst, x, z, map)
}

#[inline(always)]
fn affine_plane_any(dst: &mut [MaybeUninit<f32>], x: &[f32], z: &[f32], map: Affine) {
    match map {
        Affine::Plain { a, b } => {
            for (d, x) in dst.iter_mut().zip(x) {
                d.write(a * x + b);
            }
        }
        Affine::Relu { a, b } => {
            for (d, x) in dst.iter_mut().zip(x) {
                d.write((a * x + b).max(0.0));
            }
        }
        Affine::AddRelu { a, b } => {
            for ((d, x), z) in dst.iter_mut().zip(x).zip(z) {
                d.write((a * x + b + z).max(0.0));
            }
        }
        Affine::Gradient { c, gate: None } => {
            for (d, z) in dst.iter_mut().zip(z) {
                d.write(c * z);
            }
        }
        Affine::Gradient {
            c,
            gate: Some([s, t]),
        } => {
            for ((d, x), z) in dst.iter_mut().zip(x).zip(z) {
                let z = if s * x + t > 0.0 { *z } else { 0.0 };
                d.write(c * z);
            }
        }
        Affine::WithGradient {
            a,
            b,
            c,
            gate: None,
        } => {
            for ((d, x), z) in dst.iter_mut().zip(x).zip(z) {
                d.write(a * x + b + c * z);
            }
        }
        Affine::WithGradient {
            a,
            b,
            c,
            gate: Some([s, t]),
        } => {
            for ((d, x), z) in dst.iter_mut().zip(x).zip(z) {
                let z = if s * x + t > 0.0 { *z } else { 0.0 };
                d.write(a * x + b + c * z);
            }
        }
    }
}

/// Values per parallel task of [`CpuBatchNormBackend::cpu_relu_gate`].
const GATE_CHUNK: usize = 1 << 14;

/// `dst = g` where `y > 0`, 0 elsewhere, in the widest instructions this CPU has.
fn relu_gate(dst: &mut [MaybeUninit<f32>], y: &[f32], g: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU, all `relu_gate_avx512` assumes; its body
        // is safe Rust.
        return unsafe { relu_gate_avx512(dst, y, g) };
    }
    relu_gate_any(dst, y, g)
}

/// AVX-512 build of [`relu_gate_any`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn relu_gate_avx512(dst: &mut [MaybeUninit<f32>], y: &[f32], g: &[f32]) {
    relu_gate_any(dst, y, g)
}

/// The gate as a bit mask (`g`'s bits, or those of +0), not a branch: ReLU outputs are
/// positive about half the time in no pattern a predictor learns, and the compiler kept
/// `if y > 0 { g } else { 0 }` a branch per value (9 % of an attack's time, mispredicted).
#[inline(always)]
fn relu_gate_any(dst: &mut [MaybeUninit<f32>], y: &[f32], g: &[f32]) {
    for ((d, y), g) in dst.iter_mut().zip(y).zip(g) {
        let keep = u32::from(*y > 0.0).wrapping_neg();
        d.write(f32::from_bits(g.to_bits() & keep));
    }
}

/// Lanes of the per-plane sums: independent accumulators, so that the additions do not wait
/// on each other (one running sum made every reduction pass latency-bound, four cycles per
/// value) and the loop vectorises.
const LANES: usize = 16;

/// Sets of [`LANES`] lanes [`plane_spread_any`] updates in turn, so that four updates are in
/// flight at once.
const SETS: usize = 4;

/// Lanes of [`lane_sums`]: four vectors of [`LANES`], so that four additions are in flight
/// per sum (one vector's additions waited on each other, four cycles apart: the backward
/// pass's reductions ran at a quarter of the memory's rate).
const SUM_LANES: usize = 4 * LANES;

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
        let mut acc = [[0.0f32; SUM_LANES]; K];
        let (xc, yc) = (xb.chunks_exact(SUM_LANES), yb.chunks_exact(SUM_LANES));
        let (xr, yr) = (xc.remainder(), yc.remainder());
        for (xs, ys) in xc.zip(yc) {
            // Sum by sum, so that each is one vector operation over the lanes.
            for (k, lanes) in acc.iter_mut().enumerate() {
                for l in 0..SUM_LANES {
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
            // The lanes folded to `LANES` in `f32` (three vector additions), then summed in
            // `f64`.
            let mut folded = [0.0f32; LANES];
            for part in acc[k].chunks_exact(LANES) {
                for (a, &v) in folded.iter_mut().zip(part) {
                    *a += v;
                }
            }
            total[k] += folded.iter().map(|v| f64::from(*v)).sum::<f64>();
        }
    }
    total
}

/// Count, mean and sum of squared deviations of a set of values, merged exactly (Chan et
/// al.'s pairwise update), in `f64`.
#[derive(Clone, Copy, Default)]
struct Spread {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Spread {
    /// The spread of lanes of `n` values each, lane `l` with mean `mean[l]` and squared
    /// deviations `m2[l]`: the lanes' mean, and their squared deviations plus `n` times the
    /// squared deviations of their means from it (within plus between).
    #[inline(always)]
    fn of_equal_lanes(n: f64, mean: &[f32], m2: &[f32]) -> Spread {
        let lanes = mean.len() as f64;
        let average = mean.iter().map(|m| f64::from(*m)).sum::<f64>() / lanes;
        let within = m2.iter().map(|v| f64::from(*v)).sum::<f64>();
        let between = mean
            .iter()
            .map(|m| (f64::from(*m) - average).powi(2))
            .sum::<f64>();
        Spread {
            n: n * lanes,
            mean: average,
            m2: within + n * between,
        }
    }

    fn merge(self, other: Spread) -> Spread {
        let n = self.n + other.n;
        if n == 0.0 {
            return self;
        }
        let delta = other.mean - self.mean;
        Spread {
            n,
            mean: self.mean + delta * other.n / n,
            m2: self.m2 + other.m2 + delta * delta * self.n * other.n / n,
        }
    }
}

/// The [`Spread`] of a plane in one pass, in the widest instructions this CPU has.
fn plane_spread(x: &[f32]) -> Spread {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected on this CPU, all `plane_spread_avx512` assumes; its
        // body is safe Rust.
        return unsafe { plane_spread_avx512(x) };
    }
    plane_spread_any(x)
}

/// AVX-512 build of [`plane_spread_any`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn plane_spread_avx512(x: &[f32]) -> Spread {
    plane_spread_any(x)
}

/// Welford's update in [`SETS`] × [`LANES`] independent `f32` lanes over each `BLOCK` of
/// values (16 values per lane: the lanes' means and squared deviations stay accurate to a
/// few `f32` ulps of the deviations, not of the values), the lanes and blocks merged in
/// `f64`.
///
/// The values are first shifted by the plane's first one, so that a large common offset
/// (activations around 10⁴ that differ by 10⁻²) does not take the lanes' `f32` precision:
/// `x − shift` is exact for values within a factor two of it.
///
/// Lanes that saw equally many values merge without a division ([`Spread::of_equal_lanes`]):
/// merging one lane at a time, a division each, took three quarters of this pass, and with
/// one set of lanes each update waited on the last (the pass ran at 3 GB/s per core).
#[inline(always)]
fn plane_spread_any(x: &[f32]) -> Spread {
    let shift = x.first().copied().unwrap_or(0.0);
    let mut total = Spread::default();
    for block in x.chunks(BLOCK) {
        let group = SETS * LANES;
        let steps = block.len() / group;
        let (body, tail) = block.split_at(steps * group);
        let (mut mean, mut m2) = ([[0.0f32; LANES]; SETS], [[0.0f32; LANES]; SETS]);
        for (t, rows) in body.chunks_exact(group).enumerate() {
            let inv = 1.0 / (t + 1) as f32;
            for (set, xs) in rows.chunks_exact(LANES).enumerate() {
                let (mean, m2) = (&mut mean[set], &mut m2[set]);
                for l in 0..LANES {
                    let v = xs[l] - shift;
                    let d = v - mean[l];
                    mean[l] += d * inv;
                    m2[l] += d * (v - mean[l]);
                }
            }
        }
        if steps > 0 {
            total = total.merge(Spread::of_equal_lanes(
                steps as f64,
                mean.as_flattened(),
                m2.as_flattened(),
            ));
        }
        // Whole rows of the tail: lanes of one value each.
        let rows = tail.chunks_exact(LANES);
        let rest = rows.remainder();
        for xs in rows {
            let shifted: [f32; LANES] = std::array::from_fn(|l| xs[l] - shift);
            total = total.merge(Spread::of_equal_lanes(1.0, &shifted, &[0.0; LANES]));
        }
        for v in rest {
            total = total.merge(Spread {
                n: 1.0,
                mean: f64::from(*v - shift),
                m2: 0.0,
            });
        }
    }
    total.mean += f64::from(shift);
    total
}

/// Mean and biased variance per channel in one pass over the values: each plane's spread
/// (Welford's update, see [`plane_spread_any`]), merged per channel in `f64`. Two passes (the
/// mean, then the squared deviations from it, as PyTorch's CPU kernel takes them) read every
/// activation once more; the merged spreads agree with them to rounding.
fn moments(x: &[f32], [n, c, plane]: [usize; 3]) -> Vec<f32> {
    let planes: Vec<Spread> = x.par_chunks(plane.max(1)).map(plane_spread).collect();
    let mut per_channel = vec![Spread::default(); c];
    for (i, s) in planes.iter().enumerate() {
        per_channel[i % c] = per_channel[i % c].merge(*s);
    }
    let count = (n * plane) as f64;
    let mut out = vec![0.0f32; 2 * c];
    for (ch, s) in per_channel.iter().enumerate() {
        out[ch] = s.mean as f32;
        out[c + ch] = (s.m2 / count) as f32;
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
        relu: bool,
    ) -> FlexTensor {
        let (x, gamma, beta, moments) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
            moments.to_contiguous(),
        );
        affine_forward(
            &x,
            scale_shift(&gamma, &beta, &moments, epsilon),
            relu_or_nothing(relu),
        )
    }

    fn cpu_batch_norm_train_add_relu(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        moments: FlexTensor,
        residual: FlexTensor,
        epsilon: f64,
    ) -> FlexTensor {
        let (x, gamma, beta, moments, residual) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
            moments.to_contiguous(),
            residual.to_contiguous(),
        );
        affine_forward(
            &x,
            scale_shift(&gamma, &beta, &moments, epsilon),
            Then::AddRelu(&residual),
        )
    }

    fn cpu_channel_affine_add_relu(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        residual: FlexTensor,
    ) -> FlexTensor {
        let (x, scale, shift, residual) = (
            x.to_contiguous(),
            scale.to_contiguous(),
            shift.to_contiguous(),
            residual.to_contiguous(),
        );
        let coefficients = values(&scale).iter().zip(values(&shift));
        affine_forward(
            &x,
            coefficients.map(|(&a, &b)| [a, b]),
            Then::AddRelu(&residual),
        )
    }

    fn cpu_relu_gate(output: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (output, grad) = (output.to_contiguous(), grad.to_contiguous());
        let (y, g) = (values(&output), values(&grad));
        // Every slot below is written only if the two are as long: checked, not assumed.
        assert_eq!(
            y.len(),
            g.len(),
            "cpu_relu_gate: output and gradient sizes differ"
        );
        let mut out: Vec<f32> = Vec::with_capacity(y.len());
        out.spare_capacity_mut()[..y.len()]
            .par_chunks_mut(GATE_CHUNK)
            .zip(y.par_chunks(GATE_CHUNK).zip(g.par_chunks(GATE_CHUNK)))
            .for_each(|(dst, (y, g))| relu_gate(dst, y, g));
        // SAFETY: the chunks cover the first `y.len()` slots and every one was written.
        unsafe { out.set_len(y.len()) };
        tensor(out, output.shape())
    }

    fn cpu_batch_norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        moments: FlexTensor,
        grad: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, gamma, beta, moments, grad) = (
            x.to_contiguous(),
            gamma.to_contiguous(),
            beta.to_contiguous(),
            moments.to_contiguous(),
            grad.to_contiguous(),
        );
        let d @ [n, c, plane] = dims(&x);
        let (xs, gy, g, m) = (values(&x), values(&grad), values(&gamma), values(&moments));
        let inv = inverse_std(m, c, epsilon);
        // After a fused ReLU, the BatchNorm's own output gradient is `gy` where the ReLU
        // passed its input (`s · x + t > 0`, the forward pass's own test) and 0 elsewhere.
        let gates: Vec<Option<[f32; 2]>> = if relu {
            scale_shift(&gamma, &beta, &moments, epsilon)
                .into_iter()
                .map(Some)
                .collect()
        } else {
            vec![None; c]
        };
        // Σ gy and Σ gy · (x − mean) per channel.
        let sums = channel_sums::<2>(xs, d, |i, ch| {
            let mean = m[ch];
            let (x, gy) = (&xs[i * plane..][..plane], &gy[i * plane..][..plane]);
            match gates[ch] {
                None => lane_sums(x, gy, |x, g| [g, g * (x - mean)]),
                Some([s, t]) => lane_sums(x, gy, |x, g| {
                    let g = if s * x + t > 0.0 { g } else { 0.0 };
                    [g, g * (x - mean)]
                }),
            }
        });
        let count = (n * plane) as f64;
        // ∂x = k · (gy − Σgy/M − x̂ · Σgy·x̂/M), k = γ/σ, x̂ = (x − mean)/σ:
        // a · x + b + c · gy with c = k, a = −k · σ⁻² · Σgy(x − mean)/M,
        // b = −k · Σgy/M − a · mean.
        let maps: Vec<Affine> = (0..c)
            .map(|ch| {
                let k = f64::from(g[ch]) * inv[ch];
                let [sum_gy, sum_gy_centered] = sums[ch];
                let a = -k * inv[ch] * inv[ch] * sum_gy_centered / count;
                let b = -k * sum_gy / count - a * f64::from(m[ch]);
                Affine::WithGradient {
                    a: a as f32,
                    b: b as f32,
                    c: k as f32,
                    gate: gates[ch],
                }
            })
            .collect();
        let gx = per_channel_affine(plane, c, xs, Some(gy), &maps);
        let ggamma: Vec<f32> = (0..c).map(|ch| (sums[ch][1] * inv[ch]) as f32).collect();
        let gbeta: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        (
            tensor(gx, x.shape()),
            tensor(ggamma, Shape::new([c])),
            tensor(gbeta, Shape::new([c])),
        )
    }

    fn cpu_channel_affine(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        relu: bool,
    ) -> FlexTensor {
        let (x, scale, shift) = (
            x.to_contiguous(),
            scale.to_contiguous(),
            shift.to_contiguous(),
        );
        let coefficients = values(&scale).iter().zip(values(&shift));
        affine_forward(
            &x,
            coefficients.map(|(&a, &b)| [a, b]),
            relu_or_nothing(relu),
        )
    }

    fn cpu_channel_affine_backward(
        x: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        grad: FlexTensor,
        relu: bool,
        with_params: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (x, scale, shift, grad) = (
            x.to_contiguous(),
            scale.to_contiguous(),
            shift.to_contiguous(),
            grad.to_contiguous(),
        );
        let d @ [_, c, plane] = dims(&x);
        let (xs, gy) = (values(&x), values(&grad));
        // Where the ReLU passed its input: the forward pass's own test.
        let gates: Vec<Option<[f32; 2]>> = values(&scale)
            .iter()
            .zip(values(&shift))
            .map(|(&s, &t)| relu.then_some([s, t]))
            .collect();
        let maps: Vec<Affine> = values(&scale)
            .iter()
            .zip(&gates)
            .map(|(&c, &gate)| Affine::Gradient { c, gate })
            .collect();
        let gx = per_channel_affine(plane, c, xs, Some(gy), &maps);
        // Σ gy and Σ gy · x per channel (the gradients of shift and scale).
        let sums = if with_params {
            channel_sums::<2>(xs, d, |i, ch| {
                let (x, gy) = (&xs[i * plane..][..plane], &gy[i * plane..][..plane]);
                match gates[ch] {
                    None => lane_sums(x, gy, |x, g| [g, g * x]),
                    Some([s, t]) => lane_sums(x, gy, |x, g| {
                        let g = if s * x + t > 0.0 { g } else { 0.0 };
                        [g, g * x]
                    }),
                }
            })
        } else {
            vec![[0.0; 2]; c]
        };
        let gscale: Vec<f32> = sums.iter().map(|s| s[1] as f32).collect();
        let gshift: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
        (
            tensor(gx, x.shape()),
            tensor(gscale, Shape::new([c])),
            tensor(gshift, Shape::new([c])),
        )
    }
}

/// The forward map `x · scale + shift` per channel, `[scale, shift]` in `f32`:
/// `scale = γ / √(var + ε)`, `shift = β − mean · scale`, computed in `f64`.
fn scale_shift(
    gamma: &FlexTensor,
    beta: &FlexTensor,
    moments: &FlexTensor,
    epsilon: f64,
) -> Vec<[f32; 2]> {
    let (g, b, m) = (values(gamma), values(beta), values(moments));
    let c = g.len();
    let inv = inverse_std(m, c, epsilon);
    (0..c)
        .map(|ch| {
            let scale = f64::from(g[ch]) * inv[ch];
            let shift = f64::from(b[ch]) - f64::from(m[ch]) * scale;
            [scale as f32, shift as f32]
        })
        .collect()
}

/// The backward step of [`CpuBatchNormBackend::cpu_batch_norm_train`] on an autodiff device.
#[derive(Debug)]
struct CpuBatchNormBackward;

impl<B: CpuBatchNormBackend> Backward<B, 3> for CpuBatchNormBackward {
    type State = (NodeId, NodeId, NodeId, FloatTensor<B>, f64, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, moments, epsilon, relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
        let (gx, ggamma, gbeta) =
            B::cpu_batch_norm_train_backward(x, gamma, beta, moments, grad, epsilon, relu);
        for (node, g) in [(node_x, gx), (node_gamma, ggamma), (node_beta, gbeta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// The backward step of [`CpuBatchNormBackend::cpu_batch_norm_train_add_relu`] on an
/// autodiff device: the output gradient through the ReLU (from the kept output), which is
/// the residual's gradient, then the BatchNorm's backward on it.
#[derive(Debug)]
struct CpuBatchNormAddReluBackward;

impl<B: CpuBatchNormBackend> Backward<B, 4> for CpuBatchNormAddReluBackward {
    type State = (NodeId, NodeId, NodeId, FloatTensor<B>, f64, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta, node_residual] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, gamma_state, beta_state, moments, epsilon, output) = ops.state;
        let gated = B::cpu_relu_gate(output, grad);
        // Retrieved whether or not they are needed, as every step retrieves its checkpoints.
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
        let beta = checkpointer.retrieve_node_output::<FloatTensor<B>>(beta_state);
        if node_x.is_some() || node_gamma.is_some() || node_beta.is_some() {
            let (gx, ggamma, gbeta) = B::cpu_batch_norm_train_backward(
                x,
                gamma,
                beta,
                moments,
                gated.clone(),
                epsilon,
                false,
            );
            for (node, g) in [(node_x, gx), (node_gamma, ggamma), (node_beta, gbeta)] {
                if let Some(node) = node {
                    grads.register::<B>(node.id, g);
                }
            }
        }
        if let Some(node) = node_residual {
            grads.register::<B>(node.id, gated);
        }
    }
}

/// The backward step of [`CpuBatchNormBackend::cpu_channel_affine_add_relu`] on an autodiff
/// device, as [`CpuBatchNormAddReluBackward`] for the evaluation-mode map.
#[derive(Debug)]
struct CpuChannelAffineAddReluBackward;

impl<B: CpuBatchNormBackend> Backward<B, 4> for CpuChannelAffineAddReluBackward {
    type State = (NodeId, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_scale, node_shift, node_residual] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, scale, shift, output) = ops.state;
        let gated = B::cpu_relu_gate(output, grad);
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        if node_x.is_some() || node_scale.is_some() || node_shift.is_some() {
            let with_params = node_scale.is_some() || node_shift.is_some();
            let (gx, gscale, gshift) =
                B::cpu_channel_affine_backward(x, scale, shift, gated.clone(), false, with_params);
            for (node, g) in [(node_x, gx), (node_scale, gscale), (node_shift, gshift)] {
                if let Some(node) = node {
                    grads.register::<B>(node.id, g);
                }
            }
        }
        if let Some(node) = node_residual {
            grads.register::<B>(node.id, gated);
        }
    }
}

/// Three gradients of the inner backend as autodiff tensors that track nothing (the backward
/// methods provide no second derivatives).
type ThreeGradients<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

fn untracked<B: CpuBatchNormBackend, C: CheckpointStrategy>(
    (a, b, c): ThreeGradients<B>,
) -> ThreeGradients<Autodiff<B, C>> {
    (
        <FloatTensor<Autodiff<B, C>>>::new(a),
        <FloatTensor<Autodiff<B, C>>>::new(b),
        <FloatTensor<Autodiff<B, C>>>::new(c),
    )
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
        relu: bool,
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
                let beta_state = prep.checkpoint(&beta);
                let y = B::cpu_batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    moments.clone(),
                    epsilon,
                    relu,
                );
                prep.finish(
                    (x_state, gamma_state, beta_state, moments, epsilon, relu),
                    y,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_batch_norm_train(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                moments,
                epsilon,
                relu,
            )),
        }
    }

    fn cpu_batch_norm_train_add_relu(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let moments = moments.into_primitive();
        match CpuBatchNormAddReluBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node(), residual.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta_state = prep.checkpoint(&beta);
                let y = B::cpu_batch_norm_train_add_relu(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.into_primitive(),
                    moments.clone(),
                    residual.into_primitive(),
                    epsilon,
                );
                prep.finish(
                    (
                        x_state,
                        gamma_state,
                        beta_state,
                        moments,
                        epsilon,
                        y.clone(),
                    ),
                    y,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_batch_norm_train_add_relu(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                moments,
                residual.into_primitive(),
                epsilon,
            )),
        }
    }

    fn cpu_channel_affine_add_relu(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match CpuChannelAffineAddReluBackward
            .prepare::<C>([x.node(), scale.node(), shift.node(), residual.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (scale, shift) = (scale.into_primitive(), shift.into_primitive());
                let y = B::cpu_channel_affine_add_relu(
                    x.into_primitive(),
                    scale.clone(),
                    shift.clone(),
                    residual.into_primitive(),
                );
                prep.finish((x_state, scale, shift, y.clone()), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_channel_affine_add_relu(
                x.into_primitive(),
                scale.into_primitive(),
                shift.into_primitive(),
                residual.into_primitive(),
            )),
        }
    }

    // Not differentiated: the gradient comes back untracked.
    fn cpu_relu_gate(output: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::cpu_relu_gate(
            output.into_primitive(),
            grad.into_primitive(),
        ))
    }

    fn cpu_channel_affine(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        match CpuChannelAffineBackward
            .prepare::<C>([x.node(), scale.node(), shift.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (scale, shift) = (scale.into_primitive(), shift.into_primitive());
                let y =
                    B::cpu_channel_affine(x.into_primitive(), scale.clone(), shift.clone(), relu);
                prep.finish((x_state, scale, shift, relu), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_channel_affine(
                x.into_primitive(),
                scale.into_primitive(),
                shift.into_primitive(),
                relu,
            )),
        }
    }

    // Second derivatives are not provided: the gradients come back untracked.
    fn cpu_channel_affine_backward(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        relu: bool,
        with_params: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        untracked::<B, C>(B::cpu_channel_affine_backward(
            x.into_primitive(),
            scale.into_primitive(),
            shift.into_primitive(),
            grad.into_primitive(),
            relu,
            with_params,
        ))
    }

    // Second derivatives are not provided: the gradients come back untracked.
    fn cpu_batch_norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        untracked::<B, C>(B::cpu_batch_norm_train_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
            moments.into_primitive(),
            grad.into_primitive(),
            epsilon,
            relu,
        ))
    }
}

/// The backward step of [`CpuBatchNormBackend::cpu_channel_affine`] on an autodiff device.
#[derive(Debug)]
struct CpuChannelAffineBackward;

impl<B: CpuBatchNormBackend> Backward<B, 3> for CpuChannelAffineBackward {
    type State = (NodeId, FloatTensor<B>, FloatTensor<B>, bool);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_scale, node_shift] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, scale, shift, relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let with_params = node_scale.is_some() || node_shift.is_some();
        let (gx, gscale, gshift) =
            B::cpu_channel_affine_backward(x, scale, shift, grad, relu, with_params);
        for (node, g) in [(node_x, gx), (node_scale, gscale), (node_shift, gshift)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-pass `f64` definition.
    fn two_pass(x: &[f32], [n, c, plane]: [usize; 3]) -> Vec<f64> {
        let count = (n * plane) as f64;
        let values = |ch: usize| {
            (0..n).flat_map(move |i| {
                x[(i * c + ch) * plane..][..plane]
                    .iter()
                    .map(|v| f64::from(*v))
            })
        };
        let mean: Vec<f64> = (0..c).map(|ch| values(ch).sum::<f64>() / count).collect();
        let var = (0..c).map(|ch| values(ch).map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / count);
        mean.clone().into_iter().chain(var).collect()
    }

    #[test]
    fn one_pass_moments_equal_the_two_pass_definition() {
        // Planes shorter than a lane row, ragged against lanes and blocks, several blocks;
        // values far from zero with a small spread (where a plain sum of squares would lose
        // every digit), a constant channel, a channel of ReLU-like zeros and outliers.
        let mut s = 7u32;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 10_000) as f32 / 10_000.0
        };
        for d in [
            [3, 4, 1],
            [2, 3, 15],
            [4, 2, 16],
            [2, 3, 49],
            [2, 3, 4],
            [8, 2, 64],
            [5, 3, 128],
            [2, 2, 200],
            [2, 3, 1031],
            [2, 2, 1024 + 64 + 48 + 7],
            [3, 2, 4096],
        ] {
            let [n, c, plane] = d;
            let mut x = vec![0.0f32; n * c * plane];
            for i in 0..n {
                for ch in 0..c {
                    for (j, v) in x[(i * c + ch) * plane..][..plane].iter_mut().enumerate() {
                        let u = next();
                        *v = match ch % 4 {
                            0 => 1.0e4 + u * 1.0e-2,
                            1 => 2.5,
                            2 => {
                                if u < 0.5 {
                                    0.0
                                } else {
                                    u
                                }
                            }
                            _ => {
                                if j % 97 == 3 {
                                    1.0e3 * u
                                } else {
                                    u - 0.5
                                }
                            }
                        };
                    }
                }
            }
            let got = moments(&x, d);
            let want = two_pass(&x, d);
            for ch in 0..c {
                let (m, v) = (f64::from(got[ch]), f64::from(got[c + ch]));
                let (wm, wv) = (want[ch], want[c + ch]);
                assert!(
                    (m - wm).abs() <= 1e-6 * wm.abs().max(1.0),
                    "{d:?} ch {ch}: mean {m} vs {wm}"
                );
                assert!(
                    (v - wv).abs() <= 1e-5 * wv + 1e-12,
                    "{d:?} ch {ch}: variance {v} vs {wv}"
                );
            }
        }
    }
}
