//! # dwlth-kernels
//!
//! Fast f32 CPU kernels for Burn's `flex` backend, as backend extensions that fall back to
//! Burn's own operations everywhere else (GPUs, other float types):
//!
//! - [`conv`]: 2-D convolution whose forward pass, input gradient and weight gradient are
//!   each one matrix product per chunk of images (im2col), or Winograd's F(4×4, 3×3) for 3×3
//!   stride-1 layers — a training step costs about three forward passes instead of six.
//! - [`batch_norm`]: BatchNorm's training pass (statistics, normalisation, ReLU and a
//!   residual's addition) fused into four passes over the activations, forward and backward
//!   together.
//! - [`conv::sparse`]: the forward pass and input gradient over a pruned weight's nonzero
//!   values, which [`conv::conv2d`] runs when a weight is sparse enough: an attack on a
//!   ticket, or its training forward, costs its kept weights' products.
//! - [`conv::blocks`] and [`conv::winograd`]: the building blocks other CPU kernels are made
//!   of (the sparse inference engine of `dwlth-sparse` is).
//!
//! - [`select`]: the passes of magnitude pruning's threshold selection (SSE2 on x86-64).
//! - [`memory`]: the C allocator's settings that keep a CPU training step's buffers.
//!
//! Knows nothing of models: `dwlth-models`' layers and `dwlth-prune`'s selection call these.
//! This is the one crate of the workspace with `unsafe` code besides the sparse engine
//! (`dwlth-sparse`); every other crate forbids it.

#![warn(missing_docs)]

#[cfg(feature = "flex")]
pub mod batch_norm;
pub mod conv;
pub mod memory;
pub mod select;
