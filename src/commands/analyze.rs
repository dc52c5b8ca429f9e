//! `dwlth analyze ood|domain-gap`: out-of-distribution detection and the domain gap of a model.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use dwlth_models::io::load_resnet;
use dwlth_models::{DeviceSpec, ResNet};

use crate::analysis::{frechet_distance, max_softmax_probability, roc_auc, FeatureStats};
use crate::commands::eval::dataset_images;
use crate::error::{DwlthError, Result};

/// `dwlth analyze ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AnalyzeCommand {
    /// ROC-AUC of maximum-softmax-probability scores, in-distribution against OoD images.
    Ood {
        /// Weights (the project's safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// In-distribution set as DATASET:ROOT[:SPLIT] (split default test).
        #[arg(long = "in")]
        inside: String,
        /// Out-of-distribution set as DATASET:ROOT[:SPLIT].
        #[arg(long = "out")]
        outside: String,
        /// At most this many images of each set.
        #[arg(long, default_value_t = 2000)]
        limit: usize,
    },
    /// Fréchet distance between two datasets in the model's penultimate features.
    DomainGap {
        /// Weights (the project's safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// First set as DATASET:ROOT[:SPLIT].
        #[arg(long)]
        a: String,
        /// Second set as DATASET:ROOT[:SPLIT].
        #[arg(long)]
        b: String,
        /// At most this many images of each set.
        #[arg(long, default_value_t = 2000)]
        limit: usize,
    },
}

fn images(spec: &str, limit: usize) -> Result<(Vec<usize>, Vec<f32>)> {
    let parts: Vec<&str> = spec.splitn(3, ':').collect();
    let (name, root, split) = match parts.as_slice() {
        [n, r] => (*n, *r, "test"),
        [n, r, s] => (*n, *r, *s),
        _ => {
            return Err(DwlthError::InvalidArgument(format!(
                "`{spec}`: expected DATASET:ROOT[:SPLIT]"
            )))
        }
    };
    let (mut shape, mut values, _) = dataset_images(name, std::path::Path::new(root), split)?;
    let per: usize = shape[1..].iter().product();
    if shape[0] > limit {
        shape[0] = limit;
        values.truncate(limit * per);
    }
    Ok((shape, values))
}

/// Runs `f` over batches of 64 images and concatenates its outputs.
fn batched(
    model: &ResNet,
    (shape, values): &(Vec<usize>, Vec<f32>),
    mut f: impl FnMut(&ResNet, Tensor<4>) -> Vec<f32>,
) -> Result<Vec<f32>> {
    let [n, c, h, w] = <[usize; 4]>::try_from(shape.clone())
        .map_err(|_| DwlthError::InvalidArgument("images must be 4-D".into()))?;
    if c != model.in_channels() {
        return Err(DwlthError::InvalidArgument(format!(
            "images have {c} channel(s), the model takes {}",
            model.in_channels()
        )));
    }
    let per = c * h * w;
    let device = model.devices()[0].clone();
    let mut out = Vec::new();
    for start in (0..n).step_by(64) {
        let end = (start + 64).min(n);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                values[start * per..end * per].to_vec(),
                [end - start, c, h, w],
            ),
            &device,
        );
        out.extend(f(model, x));
    }
    Ok(out)
}

/// Runs the analysis and returns its JSON.
pub fn run(cmd: &AnalyzeCommand, device: DeviceSpec) -> Result<serde_json::Value> {
    let device = device.device()?;
    match cmd {
        AnalyzeCommand::Ood {
            weights,
            inside,
            outside,
            limit,
        } => {
            let (model, _) = load_resnet(weights, None, &device)?;
            let msp = |m: &ResNet, x| max_softmax_probability(m.forward(x));
            let a = batched(&model, &images(inside, *limit)?, msp)?;
            let b = batched(&model, &images(outside, *limit)?, msp)?;
            let auroc = roc_auc(&a, &b)
                .ok_or_else(|| DwlthError::InvalidArgument("empty set or NaN scores".into()))?;
            let mean = |v: &[f32]| v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64;
            Ok(serde_json::json!({
                "auroc": auroc, "n_in": a.len(), "n_out": b.len(),
                "msp_in_mean": mean(&a), "msp_out_mean": mean(&b),
            }))
        }
        AnalyzeCommand::DomainGap {
            weights,
            a,
            b,
            limit,
        } => {
            let (model, _) = load_resnet(weights, None, &device)?;
            let dim = model.config().feature_dim();
            let feats = |m: &ResNet, x| {
                m.features(x)
                    .into_data()
                    .try_to_vec_as::<f32>()
                    .unwrap_or_default()
            };
            let fa = batched(&model, &images(a, *limit)?, feats)?;
            let fb = batched(&model, &images(b, *limit)?, feats)?;
            let too_few =
                || DwlthError::InvalidArgument("each set needs at least two images".into());
            let (sa, sb) = (
                FeatureStats::of(&fa, dim).ok_or_else(too_few)?,
                FeatureStats::of(&fb, dim).ok_or_else(too_few)?,
            );
            let distance = frechet_distance(&sa, &sb).ok_or_else(too_few)?;
            Ok(serde_json::json!({
                "frechet_distance": distance, "feature_dim": dim,
                "n_a": fa.len() / dim, "n_b": fb.len() / dim,
                "features": "penultimate features of the given network (not Inception's FID)",
            }))
        }
    }
}
