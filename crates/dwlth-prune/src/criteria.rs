//! Pruning criteria: magnitude (OMP), random, and structured, over a global or per-layer scope.
//!
//! Every criterion works the same way, which is also how `torch.nn.utils.prune` works: the
//! prunable weights are cut into *structures* (single weights, rows, k×k kernels or output
//! channels), each still-kept structure gets a score, and `round(amount · n)` of the `n`
//! still-kept structures with the lowest scores are pruned — over all layers at once
//! (global) or layer by layer. `amount` is a fraction of what remains, so pruning a fresh
//! model by `s` gives sparsity `s`, and pruning by `p` again and again gives `1 − (1 − p)^k`.

use std::fmt;
use std::str::FromStr;

use crate::error::{check_fraction, PruneError, Result};
use crate::layers::MaskedWeight;
use crate::mask_set::{LayerMask, MaskSet};
use crate::rng::SplitMix64;
use crate::select::{count_to_prune, lowest_k};
use crate::selection::Prunable;

/// Over which set of structures the lowest scores are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// All prunable layers at once (the papers' default).
    Global,
    /// Each layer on its own, with the same fraction.
    Layer,
}

/// The unit that is pruned as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Single weights (unstructured).
    Weight,
    /// One row of a kernel: `w[o, i, r, :]`.
    Row,
    /// One k×k kernel: `w[o, i, :, :]`.
    Kernel,
    /// One output channel (filter): `w[o, ...]`; for a linear layer, one output neuron.
    Channel,
}

/// How a structure's weights are reduced to a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Sum of absolute values.
    L1,
    /// Euclidean norm.
    L2,
}

/// A pruning criterion.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum PruneMethod {
    /// Smallest |w| first (one-shot magnitude pruning, and the step of IMP).
    Magnitude {
        /// Global or per layer.
        scope: Scope,
    },
    /// Uniformly random weights.
    Random {
        /// Global or per layer.
        scope: Scope,
        /// Seed of the choice.
        seed: u64,
    },
    /// Whole rows, kernels or channels with the smallest norm.
    Structured {
        /// What is pruned as a whole.
        granularity: Granularity,
        /// How structures are scored.
        norm: Norm,
        /// Global or per layer.
        scope: Scope,
    },
}

impl PruneMethod {
    /// Global magnitude pruning, the papers' criterion.
    pub fn global_magnitude() -> Self {
        PruneMethod::Magnitude {
            scope: Scope::Global,
        }
    }

    /// Prunes `amount` of the still-kept structures of the `prunable` layers of `layers`
    /// (their current masks are the starting point). Returns masks for the prunable layers.
    pub fn prune(
        &self,
        layers: &[MaskedWeight],
        prunable: &Prunable,
        amount: f64,
    ) -> Result<MaskSet> {
        check_fraction("pruning amount", amount)?;
        let selected: Vec<&MaskedWeight> = layers
            .iter()
            .filter(|l| prunable.selects(&l.name, &l.shape))
            .collect();
        if selected.is_empty() {
            return Err(PruneError::NothingPrunable(format!(
                "{} masked layer(s) in the model",
                layers.len()
            )));
        }
        let (granularity, scope) = match *self {
            PruneMethod::Magnitude { scope } | PruneMethod::Random { scope, .. } => {
                (Granularity::Weight, scope)
            }
            PruneMethod::Structured {
                granularity, scope, ..
            } => (granularity, scope),
        };
        let mut rng = match self {
            PruneMethod::Random { seed, .. } => Some(SplitMix64::new(*seed)),
            _ => None,
        };
        // Scores of the still-kept structures of every layer.
        let mut per_layer = Vec::with_capacity(selected.len());
        for layer in &selected {
            let size = structure_size(layer, granularity)?;
            let scores: Vec<f32> = layer
                .weight
                .chunks(size)
                .zip(layer.mask.chunks(size))
                .map(|(w, m)| {
                    if !m.iter().any(|k| *k) {
                        return ABSENT;
                    }
                    match (&mut rng, self) {
                        (Some(rng), _) => (rng.next_u64() >> 40) as f32,
                        (None, PruneMethod::Structured { norm: Norm::L2, .. }) => w
                            .iter()
                            .zip(m)
                            .map(|(w, k)| if *k { w * w } else { 0.0 })
                            .sum::<f32>()
                            .sqrt(),
                        (None, _) => w
                            .iter()
                            .zip(m)
                            .map(|(w, k)| if *k { w.abs() } else { 0.0 })
                            .sum(),
                    }
                })
                .collect();
            per_layer.push((size, scores));
        }
        let pruned: Vec<Vec<bool>> = match scope {
            Scope::Layer => per_layer
                .iter()
                .map(|(_, scores)| prune_lowest(scores, amount))
                .collect(),
            Scope::Global => {
                let all: Vec<f32> = per_layer
                    .iter()
                    .flat_map(|(_, s)| s.iter().copied())
                    .collect();
                let flags = prune_lowest(&all, amount);
                let mut out = Vec::with_capacity(per_layer.len());
                let mut offset = 0;
                for (_, scores) in &per_layer {
                    out.push(flags[offset..offset + scores.len()].to_vec());
                    offset += scores.len();
                }
                out
            }
        };
        let mut set = MaskSet::new();
        for ((layer, (size, _)), cut) in selected.iter().zip(&per_layer).zip(pruned) {
            let keep = layer
                .mask
                .chunks(*size)
                .zip(cut)
                .flat_map(|(m, c)| m.iter().map(move |k| *k && !c))
                .collect();
            set.insert(
                layer.name.clone(),
                LayerMask {
                    shape: layer.shape.clone(),
                    keep,
                },
            );
        }
        Ok(set)
    }
}

/// The score of a structure that is already fully pruned: it is neither counted nor chosen.
const ABSENT: f32 = f32::NAN;

/// Flags the `round(amount · n)` lowest of the `n` present (non-NaN) scores.
fn prune_lowest(scores: &[f32], amount: f64) -> Vec<bool> {
    let present = scores.iter().filter(|s| !s.is_nan()).count();
    lowest_k(scores, count_to_prune(amount, present))
}

/// Entries per structure; structures are contiguous in row-major order.
fn structure_size(layer: &MaskedWeight, granularity: Granularity) -> Result<usize> {
    let s = &layer.shape;
    let bad = || PruneError::Granularity {
        granularity: granularity.name(),
        layer: layer.name.clone(),
        shape: s.clone(),
    };
    let size = match (granularity, s.len()) {
        (Granularity::Weight, _) => 1,
        (Granularity::Channel, n) if n >= 2 => s[1..].iter().product(),
        (Granularity::Kernel, 4) => s[2] * s[3],
        (Granularity::Row, 4) => s[3],
        _ => return Err(bad()),
    };
    if size == 0 {
        return Err(bad());
    }
    Ok(size)
}

/// Random masks with exactly the per-layer kept counts of `reference` (the "random pruning
/// matched layer-wise" baseline): each layer keeps a uniformly random subset of its entries.
pub fn random_like(reference: &MaskSet, seed: u64) -> MaskSet {
    let mut rng = SplitMix64::new(seed);
    let mut set = MaskSet::new();
    for (name, mask) in reference.iter() {
        let mut keep = vec![false; mask.total()];
        for i in rng.choose(mask.total(), mask.kept()) {
            keep[i] = true;
        }
        set.insert(
            name.clone(),
            LayerMask {
                shape: mask.shape.clone(),
                keep,
            },
        );
    }
    set
}

impl Granularity {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Weight => "weight",
            Granularity::Row => "row",
            Granularity::Kernel => "kernel",
            Granularity::Channel => "channel",
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Granularity {
    type Err = PruneError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "weight" | "unstructured" => Ok(Granularity::Weight),
            "row" => Ok(Granularity::Row),
            "kernel" => Ok(Granularity::Kernel),
            "channel" | "filter" => Ok(Granularity::Channel),
            _ => Err(PruneError::UnknownName {
                what: "granularity",
                value: s.to_string(),
                expected: "weight, row, kernel, channel",
            }),
        }
    }
}

impl FromStr for Scope {
    type Err = PruneError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "global" => Ok(Scope::Global),
            "layer" | "layerwise" | "layer-wise" => Ok(Scope::Layer),
            _ => Err(PruneError::UnknownName {
                what: "scope",
                value: s.to_string(),
                expected: "global, layer",
            }),
        }
    }
}

impl FromStr for Norm {
    type Err = PruneError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "l1" => Ok(Norm::L1),
            "l2" => Ok(Norm::L2),
            _ => Err(PruneError::UnknownName {
                what: "norm",
                value: s.to_string(),
                expected: "l1, l2",
            }),
        }
    }
}
