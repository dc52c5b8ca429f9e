//! Loss landscapes (Li et al. 2018; paper A Fig. 2, 6 and A9): loss and accuracy of a model
//! on a grid of points `θ + a·x + b·y` of a plane through its weights, on clean and on
//! PGD-attacked data.
//!
//! The plane is spanned by two filter-normalised random directions ([`Direction::random`]) or
//! by the two leading PCA directions of a training trajectory ([`pca_plane`]), which then
//! comes with the trajectory's path. Points are evaluated by `workers` threads, each on its
//! own copy of the model, and the grid is saved after every point (atomically), so a killed
//! computation resumes where it stopped.
//!
//! ```no_run
//! # use dwlth::analysis::landscape::*;
//! # fn demo(model: &dwlth::models::ResNet, data: &[(burn::tensor::Tensor<4>, burn::tensor::Tensor<1, burn::tensor::Int>)]) -> dwlth::Result<()> {
//! let origin = Weights::of(model);
//! let (x, y) = (Direction::random(&origin, 1), Direction::random(&origin, 2));
//! let grid = Grid::square(1.0, 21);
//! let mut surface = Surface::new(&grid, "random", None);
//! let options = GridOptions { attack: None, workers: 2, save_to: None, progress: true };
//! evaluate_grid(model, data, &origin, (&x, &y), &mut surface, &options)?;
//! println!("loss at the origin: {:?}", surface.clean_loss[surface.index(10, 10)]);
//! # Ok(()) }
//! ```

mod directions;

pub use directions::{
    filter_normalize, pca_plane, shifted, Direction, PcaPlane, WeightTensor, Weights,
};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};
use dwlth_adv::{Attack, AttackMode, Classifier};
use dwlth_models::io::atomic_write;
use dwlth_store::{first_difference, Fingerprint, SettingsChanged};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::error::{DwlthError, Result};

/// Coordinates of the grid along each direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Coefficients of the first direction (columns).
    pub xs: Vec<f64>,
    /// Coefficients of the second direction (rows).
    pub ys: Vec<f64>,
}

/// Fewest grid points per axis: a contour needs two.
pub const MIN_STEPS: usize = 2;

/// Most grid points per axis (a million points in all, days of evaluation on a CPU).
pub const MAX_STEPS: usize = 1001;

/// Checks the landscape's `steps` setting.
pub fn check_steps(steps: usize) -> Result<()> {
    if (MIN_STEPS..=MAX_STEPS).contains(&steps) {
        Ok(())
    } else {
        Err(DwlthError::InvalidArgument(format!(
            "landscape `steps` = {steps}: must be between {MIN_STEPS} and {MAX_STEPS} points per axis"
        )))
    }
}

impl Grid {
    /// `steps` evenly spaced values in `[lo, hi]` on each axis (`steps ≥ 2`; 1 gives `lo`).
    pub fn new((x_lo, x_hi): (f64, f64), (y_lo, y_hi): (f64, f64), steps: usize) -> Self {
        let axis = |lo: f64, hi: f64| -> Vec<f64> {
            if steps <= 1 {
                return vec![lo];
            }
            (0..steps)
                .map(|i| lo + (hi - lo) * i as f64 / (steps - 1) as f64)
                .collect()
        };
        Self {
            xs: axis(x_lo, x_hi),
            ys: axis(y_lo, y_hi),
        }
    }

    /// `[-half, half]²` with `steps` points per axis — the reference's `-1:1:51` style.
    pub fn square(half: f64, steps: usize) -> Self {
        Self::new((-half, half), (-half, half), steps)
    }

    /// [`square`](Self::square) for settings a user gave: `range` (the half-width) must be
    /// finite and positive and `steps` within [`MIN_STEPS`]`..=`[`MAX_STEPS`]; the error names
    /// the setting.
    pub fn checked_square(range: f64, steps: usize) -> Result<Self> {
        if !(range.is_finite() && range > 0.0) {
            return Err(DwlthError::InvalidArgument(format!(
                "landscape `range` = {range}: must be a finite number above 0"
            )));
        }
        check_steps(steps)?;
        Ok(Self::square(range, steps))
    }

    /// Checks that both axes have points and every coordinate is finite (NaN coordinates
    /// would shift every weight to NaN and plot nothing).
    pub fn validate(&self) -> Result<()> {
        for (axis, values) in [("x", &self.xs), ("y", &self.ys)] {
            if values.is_empty() {
                return Err(DwlthError::InvalidArgument(format!(
                    "the landscape grid has no point along {axis}"
                )));
            }
            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                return Err(DwlthError::InvalidArgument(format!(
                    "the landscape grid has coordinate {v} along {axis}; coordinates must be finite"
                )));
            }
        }
        Ok(())
    }

    /// A grid around a trajectory's path: its bounding box with a 25 % margin (the reference
    /// plots PCA planes the same way).
    pub fn around(path: &[[f64; 2]], steps: usize) -> Self {
        let bound = |k: usize| {
            let lo = path.iter().map(|p| p[k]).fold(0.0f64, f64::min);
            let hi = path.iter().map(|p| p[k]).fold(0.0f64, f64::max);
            let margin = 0.25 * (hi - lo).max(1e-3);
            (lo - margin, hi + margin)
        };
        Self::new(bound(0), bound(1), steps)
    }
}

/// The landscape: one value per grid point for each metric, row-major (`ys` × `xs`), `None`
/// while not yet computed. Serialised as the `landscape.json` the CLI writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surface {
    /// `random` (filter-normalised, seeds in `settings`) or `pca`.
    pub directions: String,
    /// Everything the values depend on (fingerprints of the model, images and directions, the
    /// grid and the attack); a saved surface is resumed only if it matches.
    pub settings: serde_json::Value,
    /// The grid.
    pub grid: Grid,
    /// Images evaluated at each point.
    pub n_images: usize,
    /// Mean cross-entropy on clean images.
    pub clean_loss: Vec<Option<f64>>,
    /// Accuracy on clean images.
    pub clean_acc: Vec<Option<f64>>,
    /// Mean cross-entropy on adversarial images (crafted against the shifted model itself).
    pub adv_loss: Vec<Option<f64>>,
    /// Accuracy on adversarial images.
    pub adv_acc: Vec<Option<f64>>,
    /// A training trajectory's path in the plane (PCA planes).
    pub trajectory: Vec<[f64; 2]>,
    /// Fraction of the trajectory's variance each PCA direction explains.
    pub explained_variance: Option<[f64; 2]>,
}

impl Surface {
    /// An empty surface over `grid`; `trajectory` is a PCA plane's path and explained variance.
    pub fn new(grid: &Grid, directions: &str, plane: Option<&PcaPlane>) -> Self {
        let n = grid.xs.len() * grid.ys.len();
        Self {
            directions: directions.to_string(),
            settings: serde_json::Value::Null,
            grid: grid.clone(),
            n_images: 0,
            clean_loss: vec![None; n],
            clean_acc: vec![None; n],
            adv_loss: vec![None; n],
            adv_acc: vec![None; n],
            trajectory: plane.map(|p| p.path.clone()).unwrap_or_default(),
            explained_variance: plane.map(|p| p.explained),
        }
    }

    /// Index of grid point (column `i` along x, row `j` along y).
    pub fn index(&self, i: usize, j: usize) -> usize {
        j * self.grid.xs.len() + i
    }

    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.clean_loss.len()
    }

    /// Whether the grid is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every point is computed (for the adversarial metrics only if `adversarial`).
    pub fn is_complete(&self, adversarial: bool) -> bool {
        (0..self.len()).all(|k| self.done(k, adversarial))
    }

    fn done(&self, k: usize, adversarial: bool) -> bool {
        self.clean_loss[k].is_some() && (!adversarial || self.adv_loss[k].is_some())
    }

    /// Reads a surface saved by [`evaluate_grid`].
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DwlthError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let surface: Self = serde_json::from_str(&text).map_err(|e| {
            DwlthError::InvalidArgument(format!("`{}` is not a landscape: {e}", path.display()))
        })?;
        surface
            .grid
            .validate()
            .map_err(|e| DwlthError::InvalidArgument(format!("`{}`: {e}", path.display())))?;
        let n = surface.grid.xs.len() * surface.grid.ys.len();
        let lengths = [
            surface.clean_loss.len(),
            surface.clean_acc.len(),
            surface.adv_loss.len(),
            surface.adv_acc.len(),
        ];
        if lengths.iter().any(|l| *l != n) {
            return Err(DwlthError::InvalidArgument(format!(
                "`{}`: a {}×{} grid needs {n} values per metric, found {lengths:?}",
                path.display(),
                surface.grid.xs.len(),
                surface.grid.ys.len()
            )));
        }
        Ok(surface)
    }

    fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| DwlthError::InvalidArgument(format!("landscape JSON: {e}")))?;
        atomic_write(path, &json)?;
        Ok(())
    }
}

/// How [`evaluate_grid`] runs.
#[derive(Debug, Clone, Default)]
pub struct GridOptions {
    /// Also evaluate on adversarial images crafted by this attack at every point.
    pub attack: Option<Attack>,
    /// Points evaluated at once, each on its own copy of the model (at least 1).
    pub workers: usize,
    /// Save the surface here after every point, and resume from it.
    pub save_to: Option<PathBuf>,
    /// A progress bar on stderr.
    pub progress: bool,
}

/// Loss (mean cross-entropy) and accuracy of `model` on `batches`.
fn loss_and_accuracy<C: Classifier>(
    model: &C,
    batches: &[(Tensor<4>, Tensor<1, Int>)],
    attack: Option<&Attack>,
) -> Result<(f64, f64)> {
    let view = AttackMode::Eval.view(model);
    let (mut loss, mut correct, mut n) = (0.0f64, 0usize, 0usize);
    for (images, labels) in batches {
        let images = match attack {
            Some(a) => a.perturb(&view, images.clone(), labels.clone())?,
            None => images.clone(),
        };
        let logits = view.logits(images);
        let count = labels.dims()[0];
        let ce = CrossEntropyLossConfig::new()
            .init(&logits.device())
            .forward(logits.clone(), labels.clone());
        loss += ce.into_scalar::<f32>() as f64 * count as f64;
        let predicted = logits.argmax(1).flatten::<1>(0, 1);
        correct += predicted
            .equal(labels.clone())
            .int()
            .sum()
            .into_scalar::<i64>() as usize;
        n += count;
    }
    if n == 0 {
        return Err(DwlthError::InvalidArgument(
            "a landscape needs at least one image".into(),
        ));
    }
    Ok((loss / n as f64, correct as f64 / n as f64))
}

/// The model's own loss and accuracy on `batches` (the landscape's value at the origin).
pub fn model_loss<C: Classifier>(
    model: &C,
    batches: &[(Tensor<4>, Tensor<1, Int>)],
) -> Result<(f64, f64)> {
    loss_and_accuracy(model, batches, None)
}

/// Everything the surface's values depend on: every tensor of the model (BatchNorm statistics
/// and normalisation included), the images and labels, the directions, the grid and the
/// attack.
fn settings_of<C: Classifier>(
    surface: &Surface,
    model: &C,
    batches: &[(Tensor<4>, Tensor<1, Int>)],
    (x, y): (&Direction, &Direction),
    attack: Option<&Attack>,
) -> serde_json::Value {
    let tensors = dwlth_models::io::resnet_tensors(model);
    let mut model_fp = Fingerprint::new();
    for (name, _, values) in &tensors {
        model_fp.update(name.as_bytes()).update_f32(values);
    }
    let mut data = Fingerprint::new();
    for (images, labels) in batches {
        let host = |d: burn::tensor::TensorData| {
            d.convert::<f32>().try_into_vec::<f32>().unwrap_or_default()
        };
        data.update_f32(&host(images.clone().into_data()))
            .update_f32(&host(labels.clone().into_data()));
    }
    let direction = |d: &Direction| {
        let mut f = Fingerprint::new();
        for (name, values) in &d.tensors {
            f.update(name.as_bytes()).update_f32(values);
        }
        f.finish()
    };
    serde_json::json!({
        "directions": surface.directions,
        "grid": surface.grid,
        "images": batches.iter().map(|(_, l)| l.dims()[0]).sum::<usize>(),
        "attack": attack,
        "model": model_fp.finish(),
        "data": data.finish(),
        "x": direction(x),
        "y": direction(y),
    })
}

/// Fills every missing point of `surface`: the model shifted to `origin + a·x + b·y` is
/// evaluated on `batches` (clean, and under `options.attack` crafted against the shifted
/// model). `model` lives on an autodiff device when an attack is given.
///
/// With `options.save_to`, a surface saved there by an earlier call with the same settings
/// (weights, directions, grid, images, attack) is resumed, and the surface is saved after each
/// point; a saved surface with other settings is an error, never overwritten.
pub fn evaluate_grid<C: Classifier>(
    model: &C,
    batches: &[(Tensor<4>, Tensor<1, Int>)],
    origin: &Weights,
    (x, y): (&Direction, &Direction),
    surface: &mut Surface,
    options: &GridOptions,
) -> Result<()> {
    surface.grid.validate()?;
    let n_images: usize = batches.iter().map(|(_, l)| l.dims()[0]).sum();
    if n_images == 0 {
        return Err(DwlthError::InvalidArgument(
            "a landscape needs at least one image".into(),
        ));
    }
    if let Some(a) = &options.attack {
        a.validate()?;
    }
    surface.n_images = n_images;
    surface.settings = settings_of(surface, model, batches, (x, y), options.attack.as_ref());
    if let Some(path) = &options.save_to {
        if path.exists() {
            let saved = Surface::read(path)?;
            if let Some(d) = first_difference(&saved.settings, &surface.settings) {
                return Err(SettingsChanged::error(path.clone(), "a landscape", d).into());
            }
            *surface = saved;
        }
    }
    let adversarial = options.attack.is_some();
    let todo: Vec<usize> = (0..surface.len())
        .filter(|k| !surface.done(*k, adversarial))
        .collect();
    let bar = if options.progress && !todo.is_empty() {
        let bar =
            ProgressBar::with_draw_target(Some(todo.len() as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "landscape {bar:30} {pos}/{len} points [{elapsed} < {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let shared = Mutex::new((surface.clone(), None::<DwlthError>));
    let next = AtomicUsize::new(0);
    let workers = options.workers.clamp(1, todo.len().max(1));
    let grid = surface.grid.clone();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (model, batches) = (model.clone(), batches.to_vec());
            let (shared, next, todo, grid, bar) = (&shared, &next, &todo, &grid, &bar);
            scope.spawn(move || loop {
                let t = next.fetch_add(1, Ordering::SeqCst);
                let Some(&k) = todo.get(t) else { break };
                if shared.lock().map(|s| s.1.is_some()).unwrap_or(true) {
                    break;
                }
                let (a, b) = (grid.xs[k % grid.xs.len()], grid.ys[k / grid.xs.len()]);
                let point = shifted(&model, origin, (x, y), (a, b));
                let result = loss_and_accuracy(&point, &batches, None).and_then(|clean| {
                    let adv = match &options.attack {
                        Some(attack) => Some(loss_and_accuracy(&point, &batches, Some(attack))?),
                        None => None,
                    };
                    Ok((clean, adv))
                });
                let Ok(mut guard) = shared.lock() else { break };
                let (surface, error) = &mut *guard;
                match result {
                    Ok(((loss, acc), adv)) => {
                        surface.clean_loss[k] = Some(loss);
                        surface.clean_acc[k] = Some(acc);
                        if let Some((loss, acc)) = adv {
                            surface.adv_loss[k] = Some(loss);
                            surface.adv_acc[k] = Some(acc);
                        }
                        if let Some(path) = &options.save_to {
                            if let Err(e) = surface.write(path) {
                                error.get_or_insert(e);
                            }
                        }
                        bar.inc(1);
                    }
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let (done, error) = shared
        .into_inner()
        .map_err(|_| DwlthError::InvalidArgument("a landscape worker panicked".into()))?;
    *surface = done;
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
