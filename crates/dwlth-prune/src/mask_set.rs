//! `MaskSet`: named binary masks, saved as compact safetensors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::Module;
use dwlth_models::io::{atomic_write, StateDict};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::error::{PruneError, Result};
use crate::layers::masked_weights;
use crate::selection::Prunable;

/// The `format` metadata of mask files written by [`MaskSet::save`].
pub const MASK_FILE_FORMAT: &str = "dwlth.masks.v1";

/// The binary mask of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMask {
    /// Shape of the layer's weight.
    pub shape: Vec<usize>,
    /// `true` where the weight is kept, row-major.
    pub keep: Vec<bool>,
}

impl LayerMask {
    /// An all-kept mask.
    pub fn dense(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Self {
            shape,
            keep: vec![true; n],
        }
    }

    /// Kept entries.
    pub fn kept(&self) -> usize {
        self.keep.iter().filter(|k| **k).count()
    }

    /// All entries.
    pub fn total(&self) -> usize {
        self.keep.len()
    }

    /// Checks that the shape has no zero-size dimension and that `keep` fills it exactly (the
    /// fields are public, so a hand-made mask may not); `layer` names it in the error.
    pub fn validate(&self, layer: &str) -> Result<()> {
        let numel = self.shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
        let reason = if self.shape.is_empty() || self.shape.contains(&0) {
            format!("shape {:?}: every dimension must be at least 1", self.shape)
        } else if numel != Some(self.keep.len()) {
            format!(
                "{} values do not fill its shape {:?}",
                self.keep.len(),
                self.shape
            )
        } else {
            return Ok(());
        };
        Err(PruneError::InvalidMask {
            layer: layer.to_string(),
            reason,
        })
    }
}

/// Binary masks by layer name (the PyTorch key of the layer's weight), in model order, with
/// free-form metadata (method, sparsity, round, hash of the source weights).
///
/// A set read by [`load`](Self::load) remembers its file, so that errors about its masks
/// (a shape that does not fit the model, a layer it lacks) name the file as well as the layer.
#[derive(Debug, Clone, Default)]
pub struct MaskSet {
    layers: Vec<(String, LayerMask)>,
    index: HashMap<String, usize>,
    /// Metadata saved with the masks.
    pub metadata: BTreeMap<String, String>,
    /// The file the masks were read from.
    source: Option<PathBuf>,
}

/// Equal masks and metadata; where they were read from does not matter.
impl PartialEq for MaskSet {
    fn eq(&self, other: &Self) -> bool {
        self.layers == other.layers && self.metadata == other.metadata
    }
}

impl MaskSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current masks of the layers of `model` that `prunable` selects.
    ///
    /// ```
    /// use burn::module::Module;
    /// use burn::nn::conv::{Conv2d, Conv2dConfig};
    /// use burn::tensor::Device;
    /// use dwlth_prune::{MaskSet, Prunable};
    ///
    /// #[derive(Module, Debug)]
    /// struct Net {
    ///     conv: Conv2d,
    /// }
    ///
    /// let model = Net { conv: Conv2dConfig::new([2, 4], [3, 3]).init(&Device::flex()) };
    /// let masks = MaskSet::from_model(&model, &Prunable::convolutions());
    /// assert_eq!((masks.total(), masks.sparsity()), (72, 0.0));
    /// ```
    pub fn from_model<M: Module>(model: &M, prunable: &Prunable) -> Self {
        let mut set = Self::new();
        for layer in masked_weights(model) {
            if prunable.selects(&layer.name, &layer.shape) {
                set.insert(
                    layer.name,
                    LayerMask {
                        shape: layer.shape,
                        keep: layer.mask,
                    },
                );
            }
        }
        set
    }

    /// Adds or replaces a layer's mask.
    pub fn insert(&mut self, name: String, mask: LayerMask) {
        match self.index.get(&name) {
            Some(&i) => self.layers[i].1 = mask,
            None => {
                self.index.insert(name.clone(), self.layers.len());
                self.layers.push((name, mask));
            }
        }
    }

    /// The file the masks were read from ([`load`](Self::load)), if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// `error` about these masks, naming their file when they were read from one.
    pub fn in_file(&self, error: PruneError) -> PruneError {
        match &self.source {
            Some(path) if !matches!(error, PruneError::InFile { .. }) => PruneError::InFile {
                path: path.clone(),
                error: Box::new(error),
            },
            _ => error,
        }
    }

    /// One layer's mask.
    pub fn get(&self, name: &str) -> Option<&LayerMask> {
        self.index.get(name).map(|&i| &self.layers[i].1)
    }

    /// Layers in model order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &LayerMask)> {
        self.layers.iter().map(|(n, m)| (n, m))
    }

    /// Layer names in model order.
    pub fn names(&self) -> Vec<&str> {
        self.layers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the set has no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Kept entries over all layers.
    pub fn kept(&self) -> usize {
        self.layers.iter().map(|(_, m)| m.kept()).sum()
    }

    /// All entries over all layers.
    pub fn total(&self) -> usize {
        self.layers.iter().map(|(_, m)| m.total()).sum()
    }

    /// Global sparsity: the pruned fraction.
    pub fn sparsity(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            t => 1.0 - self.kept() as f64 / t as f64,
        }
    }

    /// A fingerprint of what the masks keep — layer names, shapes and kept positions, not the
    /// metadata: two methods that found the same ticket have the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut f = dwlth_store::Fingerprint::new();
        for (name, mask) in &self.layers {
            f.update(name.as_bytes()).update(&[0]);
            for d in &mask.shape {
                f.update(&(*d as u64).to_le_bytes());
            }
            let bits: Vec<u8> = mask.keep.iter().map(|k| u8::from(*k)).collect();
            f.update(&bits);
        }
        f.finish()
    }

    /// Saves the masks atomically as safetensors: one `u8` tensor `<layer>_mask` per layer
    /// (`layer1.0.conv1.weight_mask`, the name `torch.nn.utils.prune` uses), the metadata, and
    /// `format = dwlth.masks.v1`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes: Vec<(String, &LayerMask, Vec<u8>)> = self
            .layers
            .iter()
            .map(|(n, m)| {
                (
                    format!("{n}_mask"),
                    m,
                    m.keep.iter().map(|k| u8::from(*k)).collect(),
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(k, m, b)| {
                TensorView::new(Dtype::U8, m.shape.clone(), b)
                    .map(|v| (k.as_str(), v))
                    .map_err(|e| PruneError::Format {
                        path: path.to_path_buf(),
                        reason: format!("mask `{k}`: {e}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        metadata.insert("format".into(), MASK_FILE_FORMAT.into());
        metadata.insert("sparsity".into(), format!("{:.6}", self.sparsity()));
        let out =
            safetensors::serialize(views, Some(metadata)).map_err(|e| PruneError::Format {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        atomic_write(path, &out)?;
        Ok(())
    }

    /// Reads masks: this project's files, or any PyTorch / safetensors file with
    /// `<layer>.weight_mask` tensors (Double-Win-LTH tickets, `torch.nn.utils.prune` state dicts;
    /// `state_dict.`, `model.`, `module.` and the `1.` of `nn.Sequential(normalizer, net)` are
    /// stripped). Values must be 0 or 1.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let dict = StateDict::read(path)?;
        let keys: Vec<&String> = dict
            .tensors()
            .keys()
            .filter(|k| k.ends_with("weight_mask"))
            .collect();
        if keys.is_empty() {
            return Err(PruneError::Format {
                path: path.to_path_buf(),
                reason: "it holds no `*.weight_mask` tensor".into(),
            });
        }
        let wrapped = keys.iter().all(|k| strip_wrappers(k).starts_with("1."));
        let mut set = Self::new();
        for key in keys {
            let Some(raw) = dict.get(key) else { continue };
            let values = raw.to_f32(key, path)?;
            if let Some(v) = values.iter().find(|v| **v != 0.0 && **v != 1.0) {
                return Err(PruneError::Format {
                    path: path.to_path_buf(),
                    reason: format!("mask `{key}` holds {v}, not 0 or 1"),
                });
            }
            let mut name = strip_wrappers(key);
            if wrapped {
                name = &name[2..];
            }
            let name = name.trim_end_matches("_mask").to_string();
            let mask = LayerMask {
                shape: raw.shape().to_vec(),
                keep: values.iter().map(|v| *v != 0.0).collect(),
            };
            // A mask with a zero-size dimension masks nothing, and the analyses would divide by
            // its kernel size or loop over its declared rows (2^40 of them in a 288-byte file).
            mask.validate(key).map_err(|e| match e {
                PruneError::InvalidMask { reason, .. } => PruneError::Format {
                    path: path.to_path_buf(),
                    reason: format!("mask `{key}`: {reason}"),
                },
                other => other,
            })?;
            set.insert(name, mask);
        }
        set.source = Some(path.to_path_buf());
        set.metadata = dict
            .metadata()
            .iter()
            .filter(|(k, _)| k.as_str() != "format")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Keep the file's layer order stable and model-like: safetensors sorts keys, so order
        // by the natural reading of the names (layer10 after layer9).
        set.layers.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        set.index = set
            .layers
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        Ok(set)
    }

    /// Checks that every layer of `model` selected by `prunable` has a mask of the right shape
    /// here, and that every mask names such a layer.
    pub fn check_fits<M: Module>(&self, model: &M, prunable: &Prunable) -> Result<()> {
        self.fits(model, prunable).map_err(|e| self.in_file(e))
    }

    fn fits<M: Module>(&self, model: &M, prunable: &Prunable) -> Result<()> {
        let layers = masked_weights(model);
        for (name, mask) in self.iter() {
            match layers.iter().find(|l| &l.name == name) {
                None => {
                    return Err(PruneError::UnknownLayer {
                        layer: name.clone(),
                        known: layers
                            .iter()
                            .take(6)
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
                }
                Some(l) if l.shape != mask.shape => {
                    return Err(PruneError::ShapeMismatch {
                        layer: name.clone(),
                        expected: l.shape.clone(),
                        found: mask.shape.clone(),
                    })
                }
                Some(_) => {}
            }
        }
        for l in layers {
            if prunable.selects(&l.name, &l.shape) && self.get(&l.name).is_none() {
                return Err(PruneError::MissingLayer { layer: l.name });
            }
        }
        Ok(())
    }
}

fn strip_wrappers(key: &str) -> &str {
    let mut k = key;
    loop {
        let before = k;
        for prefix in ["state_dict.", "model.", "module."] {
            k = k.strip_prefix(prefix).unwrap_or(k);
        }
        if k == before {
            return k;
        }
    }
}

/// Compares names with embedded numbers by value (`layer3.10` after `layer3.9`).
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(String, u64)> {
        s.split('.')
            .map(|p| match p.parse::<u64>() {
                Ok(n) => (String::new(), n),
                Err(_) => (p.to_string(), 0),
            })
            .collect()
    };
    split(a).cmp(&split(b))
}
