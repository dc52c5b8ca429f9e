//! Reading a [`ResNet`](dwlth_models::ResNet)'s tensors as plain `f32` vectors, with every eval-mode
//! BatchNorm folded into the convolution before it.
//!
//! Folding is what makes the sparse engine cheap: eval-mode BatchNorm is an affine map per
//! channel, so `bn(conv(x, w))` equals `conv(x, w · s) + b` with `s = γ / √(var + ε)` and
//! `b = β − mean · s`. Scaling never turns a zero weight into a nonzero one, so the mask's
//! sparsity survives the fold exactly.

use burn::tensor::Tensor;

use crate::error::{Result, SparseError};
use dwlth_models::{BatchNorm2d, MaskedConv2d, MaskedLinear};

/// Geometry of a convolution, checked to be one the engine runs (no groups, no dilation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvShape {
    /// Output channels.
    pub out_channels: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride (rows, columns).
    pub stride: [usize; 2],
    /// Symmetric zero padding (rows, columns).
    pub padding: [usize; 2],
}

/// A convolution with its BatchNorm folded in: dense weights `[out, in, kh, kw]` (zero where
/// masked) and one bias per output channel.
pub(crate) struct FoldedConv {
    /// Geometry.
    pub shape: ConvShape,
    /// Folded weights in PyTorch's layout.
    pub weight: Vec<f32>,
    /// Folded bias.
    pub bias: Vec<f32>,
}

/// The values of a tensor as `f32`; `key` names it in the error.
pub(crate) fn values<const D: usize>(tensor: Tensor<D>, key: &str) -> Result<Vec<f32>> {
    let values = tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec_as::<f32>()
        .map_err(|e| SparseError::InvalidValue {
            key: key.to_string(),
            reason: format!("cannot read the tensor as f32: {e:?}"),
        })?;
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(SparseError::InvalidValue {
            key: key.to_string(),
            reason: format!("{v} is not finite"),
        });
    }
    Ok(values)
}

fn check_len(key: &str, found: usize, expected: usize) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(SparseError::ShapeMismatch {
            key: key.to_string(),
            expected: vec![expected],
            found: vec![found],
        })
    }
}

/// Reads `conv` (its effective, masked weight) and folds the eval-mode `bn` that follows it.
/// `name` is the convolution's torchvision path, `bn_name` the BatchNorm's.
pub(crate) fn fold_conv_bn(
    name: &str,
    conv: &MaskedConv2d,
    bn_name: &str,
    bn: &BatchNorm2d,
) -> Result<FoldedConv> {
    let unsupported = |reason: String| SparseError::UnsupportedLayer {
        layer: name.to_string(),
        reason,
    };
    if conv.groups != 1 {
        return Err(unsupported(format!("groups = {} (only 1)", conv.groups)));
    }
    if conv.dilation != [1, 1] {
        return Err(unsupported(format!(
            "dilation {:?} (only [1, 1])",
            conv.dilation
        )));
    }
    let [out_channels, in_channels, kh, kw] = conv.weight.shape().dims::<4>();
    let bad_geometry = out_channels == 0
        || in_channels == 0
        || kh == 0
        || kw == 0
        || conv.stride.contains(&0)
        || conv.padding[0] >= kh
        || conv.padding[1] >= kw;
    if bad_geometry {
        return Err(unsupported(format!(
            "kernel {kh}×{kw}, stride {:?}, padding {:?} (padding must be smaller than the kernel)",
            conv.stride, conv.padding
        )));
    }
    let shape = ConvShape {
        out_channels,
        in_channels,
        kernel: [kh, kw],
        stride: conv.stride,
        padding: conv.padding,
    };
    let mut weight = values(conv.effective_weight(), &format!("{name}.weight"))?;
    check_len(
        &format!("{name}.weight"),
        weight.len(),
        out_channels * in_channels * kh * kw,
    )?;
    let conv_bias = match &conv.bias {
        Some(b) => {
            let b = values(b.val(), &format!("{name}.bias"))?;
            check_len(&format!("{name}.bias"), b.len(), out_channels)?;
            b
        }
        None => vec![0.0; out_channels],
    };

    let gamma = values(bn.gamma.val(), &format!("{bn_name}.weight"))?;
    let beta = values(bn.beta.val(), &format!("{bn_name}.bias"))?;
    let mean = values(bn.running_mean.value(), &format!("{bn_name}.running_mean"))?;
    let var = values(bn.running_var.value(), &format!("{bn_name}.running_var"))?;
    for (key, len) in [
        ("weight", gamma.len()),
        ("bias", beta.len()),
        ("running_mean", mean.len()),
        ("running_var", var.len()),
    ] {
        check_len(&format!("{bn_name}.{key}"), len, out_channels)?;
    }
    let per_channel = in_channels * kh * kw;
    let mut bias = Vec::with_capacity(out_channels);
    for o in 0..out_channels {
        // Computed in f64: the fold should add no error of its own.
        let denom = var[o] as f64 + bn.epsilon;
        if denom.is_nan() || denom <= 0.0 {
            return Err(SparseError::InvalidValue {
                key: format!("{bn_name}.running_var"),
                reason: format!("variance + ε = {denom} is not positive in channel {o}"),
            });
        }
        let scale = gamma[o] as f64 / denom.sqrt();
        for w in &mut weight[o * per_channel..(o + 1) * per_channel] {
            // 0 · scale stays 0, so masked weights stay exactly zero.
            *w = (*w as f64 * scale) as f32;
        }
        bias.push((beta[o] as f64 + (conv_bias[o] as f64 - mean[o] as f64) * scale) as f32);
    }
    Ok(FoldedConv {
        shape,
        weight,
        bias,
    })
}

/// The head's effective weight `[out, in]` and bias, and its shape `(out, in)`.
pub(crate) fn linear(layer: &MaskedLinear) -> Result<(usize, usize, Vec<f32>, Vec<f32>)> {
    let [out, inp] = layer.weight.shape().dims::<2>();
    let weight = values(layer.effective_weight(), "fc.weight")?;
    check_len("fc.weight", weight.len(), out * inp)?;
    let bias = match &layer.bias {
        Some(b) => values(b.val(), "fc.bias")?,
        None => vec![0.0; out],
    };
    check_len("fc.bias", bias.len(), out)?;
    Ok((out, inp, weight, bias))
}
