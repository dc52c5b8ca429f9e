//! `dwlth analyze landscape|transfer-attack|masks|ood|domain-gap`: the papers' analyses of why
//! robust tickets win.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use dwlth_adv::{check_labels, evaluate, parse_fraction, Attack, AttackMode};
use dwlth_models::io::{atomic_write, load_resnet};
use dwlth_models::{DeviceSpec, ResNet};

use crate::analysis::landscape::{
    evaluate_grid, pca_plane, Direction, Grid, GridOptions, Surface, Weights,
};
use crate::analysis::{frechet_distance, max_softmax_probability, roc_auc, FeatureStats};
use crate::commands::eval::dataset_images;
use crate::error::{DwlthError, Result};
use crate::report::contour::{contour_png, contour_svg, ContourPlot};

/// `dwlth analyze ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AnalyzeCommand {
    /// ROC-AUC of maximum-softmax-probability scores, in-distribution against OoD images.
    Ood {
        /// Weights (the project's safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// In-distribution set as DATASET:ROOT or DATASET:ROOT:SPLIT (split default test).
        #[arg(long = "in")]
        inside: String,
        /// Out-of-distribution set as DATASET:ROOT or DATASET:ROOT:SPLIT.
        #[arg(long = "out")]
        outside: String,
        /// At most this many images of each set.
        #[arg(long, default_value_t = 2000, allow_negative_numbers = true)]
        limit: usize,
    },
    /// Fréchet distance between two datasets in the model's penultimate features.
    DomainGap {
        /// Weights (the project's safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// First set as DATASET:ROOT or DATASET:ROOT:SPLIT.
        #[arg(long)]
        a: String,
        /// Second set as DATASET:ROOT or DATASET:ROOT:SPLIT.
        #[arg(long)]
        b: String,
        /// At most this many images of each set.
        #[arg(long, default_value_t = 2000, allow_negative_numbers = true)]
        limit: usize,
    },
    /// Loss landscape around a model: filter-normalised random directions, or the PCA plane
    /// of a training trajectory with `--checkpoints`; loss and accuracy on clean (and with
    /// `--attack pgd`, attacked) images; JSON plus contour plots; resumes if killed.
    Landscape {
        /// Weights at the plane's origin (the project's safetensors).
        #[arg(long)]
        weights: PathBuf,
        /// Images as DATASET:ROOT or DATASET:ROOT:SPLIT (split default test).
        #[arg(long)]
        data: String,
        /// At most this many images per grid point.
        #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
        limit: usize,
        /// Weights saved along training, oldest first (exported weights, or the
        /// `epoch_NNN.safetensors` a training run keeps with `snapshots = true`): the plane
        /// becomes their two leading PCA directions and the path is drawn.
        #[arg(long, value_delimiter = ',')]
        checkpoints: Vec<PathBuf>,
        /// Seed of the random directions (x uses it, y the next one).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        seed: u64,
        /// Random directions: the grid spans [-range, range] on both axes.
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        range: f64,
        /// Grid points per axis.
        #[arg(long, default_value_t = 21, allow_negative_numbers = true)]
        steps: usize,
        /// `none` or `pgd` (then adversarial loss and accuracy at every point).
        #[arg(long, default_value = "none")]
        attack: String,
        /// PGD radius (ℓ∞), e.g. 8/255.
        #[arg(long, default_value = "8/255", allow_hyphen_values = true)]
        eps: String,
        /// PGD step size.
        #[arg(long, default_value = "2/255", allow_hyphen_values = true)]
        alpha: String,
        /// PGD steps.
        #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
        attack_steps: usize,
        /// Grid points evaluated at once.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        workers: usize,
        /// Images per batch.
        #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
        batch_size: usize,
        /// Output folder: landscape.json (resumed if present) and contour plots.
        #[arg(long)]
        out: PathBuf,
    },
    /// Transfer (black-box) attack: PGD examples crafted on a separate source model, scored on
    /// each target beside its white-box robust accuracy (paper A Table A2).
    TransferAttack {
        /// The model the examples are crafted on (a separately trained robust model).
        #[arg(long)]
        source: PathBuf,
        /// The models to score (tickets), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        targets: Vec<PathBuf>,
        /// Images as DATASET:ROOT or DATASET:ROOT:SPLIT (split default test).
        #[arg(long)]
        data: String,
        /// At most this many images.
        #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
        limit: usize,
        /// PGD radius (ℓ∞).
        #[arg(long, default_value = "8/255", allow_hyphen_values = true)]
        eps: String,
        /// PGD step size.
        #[arg(long, default_value = "2/255", allow_hyphen_values = true)]
        alpha: String,
        /// PGD steps.
        #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
        attack_steps: usize,
        /// Seed of the random starts.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        seed: u64,
        /// Images per batch.
        #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
        batch_size: usize,
    },
    /// IoU matrices and zero-kernel counts of an experiment's tickets (`tickets/<p>/s*.safetensors`).
    Masks {
        /// The experiment's results folder (or its `tickets/` folder).
        #[arg(long)]
        dir: PathBuf,
        /// Where to write masks.md and the plots (default DIR/report).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Images (shape, values in `[0, 1]`) and labels of `DATASET:ROOT[:SPLIT]`, at most `limit`.
fn labelled(spec: &str, limit: usize) -> Result<(Vec<usize>, Vec<f32>, Vec<i64>)> {
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
    dataset_images(name, std::path::Path::new(root), split, Some(limit))
}

fn images(spec: &str, limit: usize) -> Result<(Vec<usize>, Vec<f32>)> {
    let (shape, values, _) = labelled(spec, limit)?;
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

/// Labelled images as batches on `device`.
fn labelled_batches(
    (shape, values, labels): &(Vec<usize>, Vec<f32>, Vec<i64>),
    batch_size: usize,
    device: &burn::tensor::Device,
) -> Result<Vec<(Tensor<4>, Tensor<1, Int>)>> {
    let [n, c, h, w] = <[usize; 4]>::try_from(shape.clone())
        .map_err(|_| DwlthError::InvalidArgument("images must be 4-D".into()))?;
    let per = c * h * w;
    crate::commands::predict::check_batch_size(batch_size)?;
    let step = batch_size;
    Ok((0..n)
        .step_by(step)
        .map(|start| {
            let end = (start + step).min(n);
            let x = Tensor::<4>::from_data(
                TensorData::new(
                    values[start * per..end * per].to_vec(),
                    [end - start, c, h, w],
                ),
                device,
            );
            let y = Tensor::<1, Int>::from_data(
                TensorData::new(labels[start..end].to_vec(), [end - start]),
                device,
            );
            (x, y)
        })
        .collect())
}

fn pgd(eps: &str, alpha: &str, steps: usize) -> Result<Attack> {
    let attack = Attack::pgd(parse_fraction(eps)?, parse_fraction(alpha)?, steps);
    attack.validate()?;
    Ok(attack)
}

fn load_checked(
    path: &std::path::Path,
    device: &burn::tensor::Device,
    classes: &[i64],
) -> Result<ResNet> {
    let (model, _) = load_resnet(path, None, device)?;
    check_labels(classes, model.num_classes())?;
    Ok(model)
}

/// `dwlth analyze landscape`.
#[allow(clippy::too_many_arguments)]
fn landscape(
    weights: &std::path::Path,
    data: &str,
    limit: usize,
    checkpoints: &[PathBuf],
    (seed, range, steps): (u64, f64, usize),
    attack: Option<Attack>,
    (workers, batch_size): (usize, usize),
    out: &std::path::Path,
    device: &burn::tensor::Device,
) -> Result<serde_json::Value> {
    // The grid's settings first: they fail fast, before any data or weights are read. A
    // random plane has a square grid; a trajectory's grid follows its path.
    crate::analysis::landscape::check_steps(steps)?;
    let square = checkpoints
        .is_empty()
        .then(|| Grid::checked_square(range, steps))
        .transpose()?;
    let set = labelled(data, limit)?;
    let model = load_checked(weights, device, &set.2)?;
    let batches = labelled_batches(&set, batch_size, device)?;
    let origin = Weights::of(&model);
    let (x, y, grid, plane) = if let Some(grid) = square {
        let (x, y) = (
            Direction::random(&origin, seed),
            Direction::random(&origin, seed.wrapping_add(1)),
        );
        (x, y, grid, None)
    } else {
        // Exported weights (`save_resnet`) or a trainer's `epoch_NNN.safetensors` snapshots.
        let trajectory = checkpoints
            .iter()
            .map(|p| match load_resnet(p, None, device) {
                Ok((m, _)) => Ok(Weights::of(&m)),
                Err(e) => {
                    let mut m = dwlth_models::mode::independent_copy(&model);
                    dwlth_models::io::load_module(&mut m, p).map_err(|_| e)?;
                    Ok(Weights::of(&m))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let plane = pca_plane(&trajectory, &origin)?;
        let grid = Grid::around(&plane.path, steps);
        (plane.x.clone(), plane.y.clone(), grid, Some(plane))
    };
    let kind = if plane.is_some() { "pca" } else { "random" };
    let mut surface = Surface::new(&grid, kind, plane.as_ref());
    let json = out.join("landscape.json");
    let options = GridOptions {
        attack: attack.clone(),
        workers,
        save_to: Some(json.clone()),
        progress: true,
    };
    evaluate_grid(&model, &batches, &origin, (&x, &y), &mut surface, &options)?;
    let mut files = vec![json.display().to_string()];
    let mut plots = vec![("clean_loss", "loss on clean images", &surface.clean_loss)];
    if attack.is_some() {
        plots.push(("adv_loss", "loss on PGD images", &surface.adv_loss));
    }
    for (name, title, values) in plots {
        let plot = ContourPlot {
            title,
            xs: &surface.grid.xs,
            ys: &surface.grid.ys,
            values,
            trajectory: &surface.trajectory,
        };
        for (ext, bytes) in [
            ("svg", contour_svg(&plot).into_bytes()),
            ("png", contour_png(&plot)),
        ] {
            let path = out.join(format!("landscape_{name}.{ext}"));
            atomic_write(&path, &bytes)?;
            files.push(path.display().to_string());
        }
    }
    let centre = (0..surface.len()).min_by(|a, b| {
        let r = |k: usize| {
            let (i, j) = (k % surface.grid.xs.len(), k / surface.grid.xs.len());
            surface.grid.xs[i].hypot(surface.grid.ys[j])
        };
        r(*a).total_cmp(&r(*b))
    });
    Ok(serde_json::json!({
        "directions": kind,
        "points": surface.len(),
        "images": surface.n_images,
        "loss_near_origin": centre.and_then(|k| surface.clean_loss[k]),
        "explained_variance": surface.explained_variance,
        "files": files,
    }))
}

/// `dwlth analyze transfer-attack`.
#[allow(clippy::too_many_arguments)]
fn transfer_attack(
    source: &std::path::Path,
    targets: &[PathBuf],
    data: &str,
    limit: usize,
    attack: &Attack,
    seed: u64,
    batch_size: usize,
    device: &burn::tensor::Device,
) -> Result<serde_json::Value> {
    let set = labelled(data, limit)?;
    let source_model = load_checked(source, device, &set.2)?;
    let classes = source_model.num_classes();
    let batches = labelled_batches(&set, batch_size, device)?;
    dwlth_models::random::seed(device, seed);
    // The adversarial set is crafted once, on the source alone.
    let source_view = AttackMode::Eval.view(&source_model);
    let crafted: Vec<(Tensor<4>, Tensor<1, Int>)> = batches
        .iter()
        .map(|(x, y)| {
            Ok((
                attack.perturb(&source_view, x.clone(), y.clone())?,
                y.clone(),
            ))
        })
        .collect::<Result<_>>()?;
    let source_ra = evaluate(&source_view, crafted.iter().cloned(), None, None, classes)?.sa;
    let mut rows = Vec::new();
    for target in targets {
        let model = load_checked(target, device, &set.2)?;
        if model.num_classes() != classes {
            return Err(DwlthError::InvalidArgument(format!(
                "`{}` has {} classes, the source {classes}",
                target.display(),
                model.num_classes()
            )));
        }
        let view = AttackMode::Eval.view(&model);
        dwlth_models::random::seed(device, seed);
        let white = evaluate(&view, batches.iter().cloned(), Some(attack), None, classes)?;
        let transfer = evaluate(&view, crafted.iter().cloned(), None, None, classes)?.sa;
        // Sparsity of the backbone's convolutions, as the papers count it.
        let sparsity =
            dwlth_prune::MaskSet::from_model(&model, &dwlth_prune::Prunable::convolutions())
                .sparsity();
        rows.push(serde_json::json!({
            "target": target.display().to_string(), "sparsity": sparsity,
            "sa": white.sa, "ra_white_box": white.ra, "ra_transfer": transfer,
        }));
    }
    Ok(serde_json::json!({
        "source": source.display().to_string(), "n": set.2.len(),
        "source_ra_on_own_examples": source_ra, "attack": attack, "targets": rows,
    }))
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
        AnalyzeCommand::Landscape {
            weights,
            data,
            limit,
            checkpoints,
            seed,
            range,
            steps,
            attack,
            eps,
            alpha,
            attack_steps,
            workers,
            batch_size,
            out,
        } => {
            let attack = match attack.trim().to_ascii_lowercase().as_str() {
                "none" => None,
                "pgd" => Some(pgd(eps, alpha, *attack_steps)?),
                other => {
                    return Err(DwlthError::InvalidArgument(format!(
                        "unknown --attack `{other}`; expected none or pgd"
                    )))
                }
            };
            let device = if attack.is_some() {
                device.autodiff()
            } else {
                device
            };
            dwlth_models::random::seed(&device, *seed);
            landscape(
                weights,
                data,
                *limit,
                checkpoints,
                (*seed, *range, *steps),
                attack,
                (*workers, *batch_size),
                out,
                &device,
            )
        }
        AnalyzeCommand::TransferAttack {
            source,
            targets,
            data,
            limit,
            eps,
            alpha,
            attack_steps,
            seed,
            batch_size,
        } => transfer_attack(
            source,
            targets,
            data,
            *limit,
            &pgd(eps, alpha, *attack_steps)?,
            *seed,
            *batch_size,
            &device.autodiff(),
        ),
        AnalyzeCommand::Masks { dir, out } => {
            let out = out.clone().unwrap_or_else(|| dir.join("report"));
            let mut written = crate::report::Written::default();
            crate::report::masks::write_mask_report(dir, &out, &mut written)?;
            if written.files.is_empty() {
                return Err(DwlthError::InvalidArgument(format!(
                    "no tickets (an experiment folder, or `<pretrain>/s<sparsity>.safetensors`) under `{}`",
                    dir.display()
                )));
            }
            Ok(serde_json::json!({ "files": written.files }))
        }
    }
}
