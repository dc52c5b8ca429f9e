//! `dwlth predict`: eval-mode logits of a saved model on a tensor of images.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use dwlth_models::io::{atomic_write, load_resnet, StateDict};
use dwlth_models::{Arch, DeviceSpec, ResNet};
use dwlth_sparse::LayerTime;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::error::{DwlthError, Result};

/// Reads images `[N, C, H, W]` (or one image `[C, H, W]`) in `[0, 1]` from a safetensors file.
/// `name` picks the tensor; without it the file must hold `input` or exactly one tensor.
pub fn read_images(path: &Path, name: Option<&str>) -> Result<(Vec<usize>, Vec<f32>)> {
    let dict = StateDict::read(path)?;
    let key = match name {
        Some(n) => n.to_string(),
        None if dict.contains("input") => "input".to_string(),
        None if dict.tensors().len() == 1 => {
            dict.tensors().keys().next().cloned().unwrap_or_default()
        }
        None => {
            return Err(DwlthError::InvalidArgument(format!(
                "`{}` holds {} tensors ({}); choose one with --tensor",
                path.display(),
                dict.tensors().len(),
                dict.tensors()
                    .keys()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let raw = dict.get(&key).ok_or_else(|| {
        DwlthError::InvalidArgument(format!("`{}` has no tensor `{key}`", path.display()))
    })?;
    let mut shape = raw.shape().to_vec();
    if shape.len() == 3 {
        shape.insert(0, 1);
    }
    let what = format!("tensor `{key}` of `{}`", path.display());
    if shape.len() != 4 {
        return Err(DwlthError::InvalidArgument(format!(
            "{what} has shape {:?}; images must be [N, C, H, W] or [C, H, W]",
            raw.shape()
        )));
    }
    if !raw.is_float() {
        // 0–255 bytes or booleans are not pixels in [0, 1]: say so rather than cast them.
        return Err(DwlthError::InvalidArgument(format!(
            "{what} has data type {}; images must be float pixels in [0, 1]",
            raw.dtype()
        )));
    }
    let values = dict.values(&key)?;
    check_images(&shape, &values, &what)?;
    Ok((shape, values))
}

/// Images must have a positive size (Burn panics on a 0×0 convolution), fill their shape, and
/// hold pixels in `[0, 1]`: NaN, infinities and 0–255 bytes would give garbage logits without
/// any error. `what` names the tensor and file in the message.
pub fn check_images(shape: &[usize], values: &[f32], what: &str) -> Result<()> {
    if shape.len() != 4 || shape[1..].contains(&0) {
        return Err(DwlthError::InvalidArgument(format!(
            "{what} has shape {shape:?}; images need at least one channel and one pixel"
        )));
    }
    if shape.iter().product::<usize>() != values.len() {
        return Err(DwlthError::InvalidArgument(format!(
            "{what} holds {} values, its shape {shape:?} needs {}",
            values.len(),
            shape.iter().product::<usize>()
        )));
    }
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        let kind = if v.is_finite() {
            "outside [0, 1]"
        } else {
            "not finite"
        };
        return Err(DwlthError::InvalidArgument(format!(
            "{what} holds {v} at element {i} ({kind}); images must be pixels in [0, 1]"
        )));
    }
    Ok(())
}

/// A batch holds at least one image: 0 would loop without end or be silently replaced.
pub fn check_batch_size(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(DwlthError::InvalidArgument(
            "--batch-size 0: a batch holds at least one image".into(),
        ));
    }
    Ok(())
}

/// Eval-mode logits of `model` on `images`, in batches of `batch_size`.
pub fn logits(
    model: &ResNet,
    shape: &[usize],
    images: &[f32],
    batch_size: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    model.check_input(shape)?;
    check_images(shape, images, "the images")?;
    check_batch_size(batch_size)?;
    let [n, c, h, w] = <[usize; 4]>::try_from(shape.to_vec())
        .map_err(|_| DwlthError::InvalidArgument(format!("images must be 4-D, got {shape:?}")))?;
    let per = c * h * w;
    let mut out = Vec::with_capacity(n * model.num_classes());
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let chunk = images[start * per..end * per].to_vec();
        let x = Tensor::<4>::from_data(TensorData::new(chunk, [end - start, c, h, w]), device);
        let y = model.forward(x).into_data().convert::<f32>();
        out.extend(
            y.try_to_vec_as::<f32>()
                .map_err(|e| DwlthError::InvalidArgument(format!("cannot read logits: {e:?}")))?,
        );
    }
    Ok(out)
}

/// The logits of [`logits`], computed by the sparse CPU engine; with `profile`, also every
/// layer's time and multiply-adds summed over the batches
/// ([`SparseResNet::profile`](dwlth_sparse::SparseResNet::profile)).
pub fn sparse_logits(
    model: &ResNet,
    shape: &[usize],
    images: &[f32],
    batch_size: usize,
    profile: bool,
) -> Result<(Vec<f32>, Option<Vec<LayerTime>>)> {
    model.check_input(shape)?;
    check_images(shape, images, "the images")?;
    check_batch_size(batch_size)?;
    let [n, c, h, w] = <[usize; 4]>::try_from(shape.to_vec())
        .map_err(|_| DwlthError::InvalidArgument(format!("images must be 4-D, got {shape:?}")))?;
    let engine = dwlth_sparse::SparseResNet::from_resnet(model)?;
    let per = c * h * w;
    let mut out = Vec::with_capacity(n * model.num_classes());
    let mut totals: Option<Vec<LayerTime>> = None;
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let batch = &images[start * per..end * per];
        if !profile {
            out.extend(engine.forward(batch, end - start, h, w)?);
            continue;
        }
        let (logits, times) = engine.profile(batch, end - start, h, w)?;
        out.extend(logits);
        match &mut totals {
            None => totals = Some(times),
            Some(sum) => {
                for (s, t) in sum.iter_mut().zip(times) {
                    s.seconds += t.seconds;
                    s.macs += t.macs;
                }
            }
        }
    }
    Ok((out, totals))
}

/// A per-layer table of `times`: milliseconds, share of the total and G multiply-adds/s.
pub fn profile_table(times: &[LayerTime]) -> String {
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    let mut table = format!(
        "{:<24} {:>10} {:>7} {:>9}\n",
        "layer", "ms", "share", "GMAC/s"
    );
    for t in times {
        let rate = if t.macs > 0 && t.seconds > 0.0 {
            format!("{:.1}", t.macs as f64 / t.seconds / 1e9)
        } else {
            "-".into()
        };
        table += &format!(
            "{:<24} {:>10.2} {:>6.1}% {:>9}\n",
            t.name,
            t.seconds * 1e3,
            100.0 * t.seconds / total.max(f64::MIN_POSITIVE),
            rate
        );
    }
    table += &format!("{:<24} {:>10.2}", "total", total * 1e3);
    table
}

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Architecture (checked against the file's metadata).
    pub arch: Option<Arch>,
    /// Expected classes (checked against the head).
    pub num_classes: Option<usize>,
    /// Tensor name in the input file.
    pub tensor: Option<String>,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Compute device.
    pub device: DeviceSpec,
    /// Run the CPU sparse engine ([`dwlth_sparse::SparseResNet`]): the sparser the
    /// ticket, the faster; the same logits as the masked dense model within 1e-4.
    pub sparse: bool,
    /// With `sparse`: time every layer ([`Prediction::profile`]).
    pub profile: bool,
}

/// What [`run`] wrote.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// Shape of the logits, `[N, num_classes]`.
    pub shape: [usize; 2],
    /// Per-layer times and multiply-adds over all batches, when profiled.
    pub profile: Option<Vec<LayerTime>>,
}

/// Loads `weights`, runs it in eval mode on the images of `input` and writes the logits as
/// tensor `logits` `[N, num_classes]` to `output`.
pub fn run(
    weights: &Path,
    input: &Path,
    output: &Path,
    options: &PredictOptions,
) -> Result<Prediction> {
    if options.profile && !options.sparse {
        return Err(DwlthError::InvalidArgument(
            "--profile times the sparse engine's layers: add --sparse".into(),
        ));
    }
    let device = options.device.device()?;
    let (model, _) = load_resnet(weights, options.arch, &device)?;
    if let Some(k) = options.num_classes {
        if k != model.num_classes() {
            return Err(DwlthError::InvalidArgument(format!(
                "--num-classes {k} but `{}` has a {}-class head",
                weights.display(),
                model.num_classes()
            )));
        }
    }
    let (shape, images) = read_images(input, options.tensor.as_deref())?;
    let (logits, profile) = if options.sparse {
        sparse_logits(&model, &shape, &images, options.batch_size, options.profile)?
    } else {
        (
            logits(&model, &shape, &images, options.batch_size, &device)?,
            None,
        )
    };
    let out_shape = [shape[0], model.num_classes()];
    write_tensor(output, "logits", &out_shape, &logits)?;
    Ok(Prediction {
        shape: out_shape,
        profile,
    })
}

/// Writes one `f32` tensor to a safetensors file, atomically.
pub fn write_tensor(path: &Path, name: &str, shape: &[usize], values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, shape.to_vec(), &bytes)
        .map_err(|e| DwlthError::InvalidArgument(format!("tensor `{name}`: {e}")))?;
    let out = safetensors::serialize([(name, view)], None::<HashMap<String, String>>)
        .map_err(|e| DwlthError::InvalidArgument(format!("tensor `{name}`: {e}")))?;
    atomic_write(path, &out)?;
    Ok(())
}
