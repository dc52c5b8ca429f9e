//! The plane a loss landscape is drawn in: the weights it moves, filter-normalised random
//! directions (Li et al. 2018, §4), and the two leading PCA directions of a training
//! trajectory (Li et al. 2018, §7), as the reference `net_plotter.py` builds them.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use dwlth_data::Rng;
use dwlth_models::io::{resnet_tensors, torch_key, PathStack};

use crate::error::{DwlthError, Result};

/// One weight tensor of the plane's origin.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightTensor {
    /// Shape; dimension 0 counts the filters (output channels, output features).
    pub shape: Vec<usize>,
    /// Values, already multiplied by the mask.
    pub values: Vec<f32>,
    /// The layer's 0/1 mask, if it is pruned.
    pub mask: Option<Vec<f32>>,
}

/// The weights a landscape moves, under their PyTorch keys: every weight of rank ≥ 2
/// (convolutions and the linear head) times its mask.
///
/// Biases and BatchNorm parameters stay fixed — the reference's `ignore='biasbn'`, the setting
/// of paper A's plots — so the plane lies in the span of the filters.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Key → tensor.
    pub tensors: BTreeMap<String, WeightTensor>,
}

/// A direction in weight space: one vector per key of [`Weights`].
#[derive(Debug, Clone, PartialEq)]
pub struct Direction {
    /// Key → values (same shapes as the weights).
    pub tensors: BTreeMap<String, Vec<f32>>,
}

fn is_weight(key: &str) -> bool {
    key == "weight" || key.ends_with(".weight")
}

impl Weights {
    /// The effective (masked) weights of `module`.
    pub fn of<M: Module>(module: &M) -> Self {
        let all = resnet_tensors(module);
        let masks: BTreeMap<String, Vec<f32>> = all
            .iter()
            .filter_map(|(key, _, values)| {
                key.strip_suffix("_mask")
                    .map(|weight| (weight.to_string(), values.clone()))
            })
            .collect();
        let tensors = all
            .into_iter()
            .filter(|(key, shape, _)| is_weight(key) && shape.len() >= 2)
            .map(|(key, shape, mut values)| {
                let mask = masks.get(&key).cloned();
                if let Some(mask) = &mask {
                    values.iter_mut().zip(mask).for_each(|(w, m)| *w *= *m);
                }
                let tensor = WeightTensor {
                    shape,
                    values,
                    mask,
                };
                (key, tensor)
            })
            .collect();
        Self { tensors }
    }

    /// Number of weights in the plane.
    pub fn len(&self) -> usize {
        self.tensors.values().map(|t| t.values.len()).sum()
    }

    /// Whether there is no weight to move.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `other − self`, flattened in key order; fails naming the first key whose shape differs.
    fn difference(&self, other: &Weights) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.len());
        for (key, t) in &self.tensors {
            let o = other.tensors.get(key).ok_or_else(|| {
                DwlthError::InvalidArgument(format!("a checkpoint has no weight `{key}`"))
            })?;
            if o.shape != t.shape {
                return Err(DwlthError::InvalidArgument(format!(
                    "weight `{key}` is {:?} in a checkpoint and {:?} at the origin",
                    o.shape, t.shape
                )));
            }
            out.extend(o.values.iter().zip(&t.values).map(|(a, b)| a - b));
        }
        Ok(out)
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Scales each filter of `direction` (a slice along dimension 0) to the norm of the matching
/// filter of `weights`: `d_f ← d_f · ‖w_f‖ / (‖d_f‖ + 1e-10)`, the reference's
/// `normalize_direction(..., 'filter')`. Filter normalisation removes the scale invariance of
/// ReLU networks, so that landscapes of different networks can be compared.
pub fn filter_normalize(direction: &mut [f32], weights: &[f32], filters: usize) {
    if filters == 0 || direction.len() != weights.len() || weights.len() % filters != 0 {
        return;
    }
    let per = weights.len() / filters;
    if per == 0 {
        return;
    }
    for (d, w) in direction.chunks_mut(per).zip(weights.chunks(per)) {
        let scale = (norm(w) / (norm(d) + 1e-10)) as f32;
        d.iter_mut().for_each(|x| *x *= scale);
    }
}

impl Direction {
    /// A Gaussian direction, zero where the mask prunes, filter-normalised to `origin`.
    /// Each tensor draws from its own stream (seed, key), so a direction does not change when
    /// other layers are added or removed.
    pub fn random(origin: &Weights, seed: u64) -> Self {
        let tensors = origin
            .tensors
            .iter()
            .map(|(key, t)| {
                let stream = dwlth_store::fnv1a(key.bytes());
                let mut rng = Rng::derived(&[seed, stream]);
                let mut d: Vec<f32> = (0..t.values.len()).map(|_| rng.normal() as f32).collect();
                if let Some(mask) = &t.mask {
                    d.iter_mut().zip(mask).for_each(|(x, m)| *x *= *m);
                }
                filter_normalize(&mut d, &t.values, t.shape[0]);
                (key.clone(), d)
            })
            .collect();
        Self { tensors }
    }

    fn from_flat(origin: &Weights, flat: &[f64]) -> Self {
        let mut offset = 0;
        let tensors = origin
            .tensors
            .iter()
            .map(|(key, t)| {
                let n = t.values.len();
                let d = flat[offset..offset + n].iter().map(|v| *v as f32).collect();
                offset += n;
                (key.clone(), d)
            })
            .collect();
        Self { tensors }
    }

    /// Euclidean norm over every tensor.
    pub fn norm(&self) -> f64 {
        self.tensors
            .values()
            .map(|v| norm(v).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// The plane of a training trajectory: its two leading principal directions and where each
/// checkpoint lies in it.
#[derive(Debug, Clone)]
pub struct PcaPlane {
    /// First principal direction (unit norm).
    pub x: Direction,
    /// Second principal direction (unit norm).
    pub y: Direction,
    /// Fraction of the trajectory's variance each direction explains.
    pub explained: [f64; 2],
    /// `(x, y)` of every checkpoint, in the order given; the origin is `(0, 0)`.
    pub path: Vec<[f64; 2]>,
}

/// The two leading PCA directions of `checkpoints − origin` (the reference's
/// `setup_PCA_directions`: sklearn's PCA, i.e. centred, on the differences to the final
/// weights) and each checkpoint's projection `(⟨δ, x⟩, ⟨δ, y⟩)`.
///
/// The principal directions come from the `n × n` Gram matrix of the centred differences, so
/// memory stays at the checkpoints themselves however many weights the network has.
pub fn pca_plane(checkpoints: &[Weights], origin: &Weights) -> Result<PcaPlane> {
    if checkpoints.len() < 2 {
        return Err(DwlthError::InvalidArgument(format!(
            "a trajectory needs at least 2 checkpoints, got {}",
            checkpoints.len()
        )));
    }
    let rows: Vec<Vec<f32>> = checkpoints
        .iter()
        .map(|c| origin.difference(c))
        .collect::<Result<_>>()?;
    let (n, d) = (rows.len(), origin.len());
    let mut mean = vec![0.0f64; d];
    for row in &rows {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += *v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    // Centred differences, kept in f32: at ResNet-50 size each row is 94 MB.
    let centred: Vec<Vec<f32>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .zip(&mean)
                .map(|(r, m)| (*r as f64 - m) as f32)
                .collect()
        })
        .collect();
    let mut gram = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let g: f64 = centred[i]
                .iter()
                .zip(&centred[j])
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            gram[i * n + j] = g;
            gram[j * n + i] = g;
        }
    }
    let (values, vectors) = crate::analysis::frechet::symmetric_eigen(&gram, n);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
    let mut axes = Vec::new();
    for &e in order.iter().take(2) {
        // v = Cᵀ u / ‖Cᵀ u‖ for the Gram eigenvector u.
        let mut axis = vec![0.0f64; d];
        for i in 0..n {
            let u = vectors[i * n + e];
            axis.iter_mut()
                .zip(&centred[i])
                .for_each(|(a, c)| *a += u * *c as f64);
        }
        let len = axis.iter().map(|a| a * a).sum::<f64>().sqrt();
        // A second eigenvalue at rounding level means the trajectory is a line.
        if !(len > 0.0 && values[e] > 1e-9 * values[order[0]]) {
            return Err(DwlthError::InvalidArgument(
                "the checkpoints span fewer than two directions (are they all on one line?)".into(),
            ));
        }
        axis.iter_mut().for_each(|a| *a /= len);
        axes.push(axis);
    }
    let explained = [
        values[order[0]].max(0.0) / total,
        values[order[1]].max(0.0) / total,
    ];
    let path = rows
        .iter()
        .map(|row| {
            let dot = |axis: &[f64]| row.iter().zip(axis).map(|(r, a)| *r as f64 * a).sum();
            [dot(&axes[0]), dot(&axes[1])]
        })
        .collect();
    Ok(PcaPlane {
        x: Direction::from_flat(origin, &axes[0]),
        y: Direction::from_flat(origin, &axes[1]),
        explained,
        path,
    })
}

/// Sets every weight of the plane to `origin + a·x + b·y`, leaving all other parameters as
/// they are.
struct Shift<'a> {
    path: PathStack,
    origin: &'a Weights,
    x: &'a Direction,
    y: &'a Direction,
    a: f32,
    b: f32,
}

impl ModuleMapper for Shift<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = torch_key(self.path.parts());
        let (Some(w), Some(dx), Some(dy)) = (
            self.origin.tensors.get(&key),
            self.x.tensors.get(&key),
            self.y.tensors.get(&key),
        ) else {
            return param;
        };
        if param.shape().to_vec() != w.shape {
            return param;
        }
        let values: Vec<f32> = w
            .values
            .iter()
            .zip(dx.iter().zip(dy))
            .map(|(w, (u, v))| w + self.a * u + self.b * v)
            .collect();
        let shape = w.shape.clone();
        param.map(|old| {
            let require_grad = old.is_require_grad();
            let new = Tensor::from_data(TensorData::new(values, shape), &old.device());
            if require_grad {
                new.require_grad()
            } else {
                new
            }
        })
    }
}

/// A copy of `model` with its plane weights at `origin + a·x + b·y`.
pub fn shifted<M: Module>(
    model: &M,
    origin: &Weights,
    (x, y): (&Direction, &Direction),
    (a, b): (f64, f64),
) -> M {
    let mut shift = Shift {
        path: PathStack::default(),
        origin,
        x,
        y,
        a: a as f32,
        b: b as f32,
    };
    dwlth_models::mode::independent_copy(model).map(&mut shift)
}
