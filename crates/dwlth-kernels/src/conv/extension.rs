//! The convolution as a Burn backend extension: the [`kernel`](super::kernel) functions on
//! the `flex` CPU backend, with a hand-written backward pass for autodiff devices.
//!
//! Burn's own autodiff convolution asks the inner backend for `conv2d_x_backward` and
//! `conv2d_weight_backward`; the `flex` backend keeps Burn's generic versions of both (a
//! transposed convolution, and a convolution with the batch as channels whose products are
//! nine columns wide), which cost 2–3× the forward pass. Here both are single products over
//! the same patch matrix as the forward pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{backend_extension, Autodiff, Backend, Flex, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, TensorData};
use std::mem::MaybeUninit;

use super::blocks::Geometry;
use super::kernel;
use super::sparse;

/// Convolution operations with a CPU implementation of all three passes.
#[backend_extension(Flex, Autodiff)]
pub trait CpuConvBackend: Backend {
    /// `conv2d(x, weight)` without bias.
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient of [`cpu_conv2d`](Self::cpu_conv2d) with respect to `x`.
    fn cpu_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// The gradient of [`cpu_conv2d`](Self::cpu_conv2d) with respect to `weight`.
    fn cpu_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// The geometry of a convolution the kernels handle (f32, one group, consistent shapes), or
/// `None` to leave it to the backend's own implementation.
fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<Geometry> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 || options.groups != 1 {
        return None;
    }
    let xs = x.shape();
    let ws = weight.shape();
    // Inconsistent or empty tensors and zero strides or dilations are the backend's to
    // handle (and to report).
    if xs.num_dims() != 4
        || ws.num_dims() != 4
        || xs[1] != ws[1]
        || xs.num_elements() == 0
        || ws.num_elements() == 0
        || options.stride.contains(&0)
        || options.dilation.contains(&0)
    {
        return None;
    }
    let out = |size: usize, k: usize, s: usize, (pb, pe): (usize, usize), d: usize| {
        let span = d * (k.max(1) - 1) + 1;
        (size + pb + pe).checked_sub(span).map(|v| v / s + 1)
    };
    let oh = out(
        xs[2],
        ws[2],
        options.stride[0],
        options.padding[0],
        options.dilation[0],
    )?;
    let ow = out(
        xs[3],
        ws[3],
        options.stride[1],
        options.padding[1],
        options.dilation[1],
    )?;
    Some(Geometry {
        batch: xs[0],
        c_in: xs[1],
        h: xs[2],
        w: xs[3],
        c_out: ws[0],
        kh: ws[2],
        kw: ws[3],
        stride: options.stride,
        pad: [options.padding[0].0, options.padding[1].0],
        dilation: options.dilation,
        oh,
        ow,
    })
}

/// The f32 values of a contiguous tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.storage::<f32>()
}

/// A new `shape` tensor whose values `fill` writes, every one of them (the kernels'
/// contract): the buffer is not zeroed first, which cost a `memset` of every convolution
/// output (3–5 % of an attack's or an inference's time).
fn computed(shape: [usize; 4], fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> FlexTensor {
    let len = shape.iter().product();
    let mut out: Vec<f32> = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` is one of the kernels, each of which writes every value of its output
    // (`kernel::forward`, `backward_input`, `backward_weight`, and the sparse passes when they
    // return `true`; their tests run on outputs pre-filled with NaN and compare every value).
    unsafe { out.set_len(len) };
    FlexTensor::from_data(TensorData::new(out, Shape::new(shape)))
}

impl CpuConvBackend for Flex {
    fn cpu_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        let Some(g) = geometry(&x, &weight, &options) else {
            return Flex::conv2d(x, weight, None, options);
        };
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        let (x, w) = (values(&x), values(&weight));
        computed([g.batch, g.c_out, g.oh, g.ow], |y| {
            if sparse::applies(&g, w) && sparse::forward(&g, x, w, y) {
                sparse::count_pass();
            } else {
                kernel::forward(&g, x, w, y)
            }
        })
    }

    fn cpu_conv2d_x_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = geometry(&x, &weight, &options) else {
            return Flex::conv2d_x_backward(x, weight, grad, options);
        };
        let (weight, grad) = (weight.to_contiguous(), grad.to_contiguous());
        let (w, gy) = (values(&weight), values(&grad));
        computed([g.batch, g.c_in, g.h, g.w], |gx| {
            if sparse::applies_to_input_gradient(&g, w) && sparse::backward_input(&g, w, gy, gx) {
                sparse::count_pass();
            } else {
                kernel::backward_input(&g, w, gy, gx)
            }
        })
    }

    fn cpu_conv2d_weight_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        let Some(g) = geometry(&x, &weight, &options) else {
            return Flex::conv2d_weight_backward(x, weight, grad, options);
        };
        let (x, grad) = (x.to_contiguous(), grad.to_contiguous());
        computed([g.c_out, g.c_in, g.kh, g.kw], |gw| {
            kernel::backward_weight(&g, values(&x), values(&grad), gw)
        })
    }
}

/// The backward step of [`CpuConvBackend::cpu_conv2d`] on an autodiff device.
#[derive(Debug)]
struct CpuConv2dBackward;

impl<B: CpuConvBackend> Backward<B, 2> for CpuConv2dBackward {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        if let Some(node) = node_x {
            let gx =
                B::cpu_conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<B>(node.id, gx);
        }
        if let Some(node) = node_weight {
            let gw = B::cpu_conv2d_weight_backward(x, weight, grad, options);
            grads.register::<B>(node.id, gw);
        }
    }
}

impl<B: CpuConvBackend, C: CheckpointStrategy> CpuConvBackend for Autodiff<B, C> {
    fn cpu_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match CpuConv2dBackward
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = B::cpu_conv2d(x.into_primitive(), weight.into_primitive(), options.clone());
                prep.finish((x_state, weight_state, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cpu_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                options,
            )),
        }
    }

    // Second derivatives go through Burn's differentiable reference operations.
    fn cpu_conv2d_x_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, grad, options)
    }

    fn cpu_conv2d_weight_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, grad, options)
    }
}
