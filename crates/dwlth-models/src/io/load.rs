//! Loading a [`StateDict`] with torchvision keys into a model, and importing whole checkpoints.

use std::collections::BTreeSet;
use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::formats::CheckpointFormat;
use super::keys::{torch_key, PathStack};
use super::state_dict::StateDict;
use crate::error::{ModelError, Result};
use crate::layers::NormalizeConfig;
use crate::resnet::{Arch, ResNet, ResNetConfig, Stem};

/// What a load did, key by key.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ImportReport {
    /// Keys loaded into the model.
    pub loaded: Vec<String>,
    /// Keys of the file deliberately ignored (optimiser state, duplicate copies, counters).
    pub skipped: Vec<String>,
    /// Model tensors the file does not hold that keep their default: all-ones masks, and the
    /// normalisation when it came from the options instead.
    pub defaulted: Vec<String>,
}

/// Keys the model may lack a value for: a missing mask means "not pruned".
fn is_optional(key: &str) -> bool {
    key.ends_with("weight_mask") || key.starts_with("normalize.")
}

/// Keys a file may hold that no model tensor stands for.
fn is_ignorable(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}

struct Loader<'a> {
    dict: &'a StateDict,
    path: PathStack,
    loaded: Vec<String>,
    missing: Vec<String>,
    defaulted: Vec<String>,
    error: Option<ModelError>,
    /// Masks already read for zeroing their weights, reused when the mask itself is loaded.
    masks: std::collections::HashMap<String, Vec<f32>>,
}

impl Loader<'_> {
    fn values(&mut self, key: &str, expected: &[usize]) -> Option<Vec<f32>> {
        let raw = self.dict.get(key)?;
        if raw.shape() != expected {
            self.error.get_or_insert(ModelError::ShapeMismatch {
                key: key.to_string(),
                expected: expected.to_vec(),
                found: raw.shape().to_vec(),
            });
            return None;
        }
        if let Err(e) = check_dtype(self.dict, key, raw) {
            self.error.get_or_insert(e);
            return None;
        }
        let read = match self.masks.remove(key) {
            Some(v) => Ok(v),
            None => raw.to_f32(key, self.dict.path()),
        };
        let mut values = match read {
            Ok(v) => v,
            Err(e) => {
                self.error.get_or_insert(e);
                return None;
            }
        };
        if let Err(e) = check_finite(self.dict.path(), key, &values) {
            self.error.get_or_insert(e);
            return None;
        }
        if let Some(layer) = key.strip_suffix("weight_mask") {
            if let Some(v) = values.iter().find(|v| **v != 0.0 && **v != 1.0) {
                self.error.get_or_insert(ModelError::InvalidMask {
                    layer: layer.trim_end_matches('.').to_string(),
                    reason: format!(
                        "`{}` holds {v} in `{key}`, neither 0 nor 1",
                        self.dict.path().display()
                    ),
                });
                return None;
            }
        }
        // Pruned weights are kept at exactly zero; a ticket file (`weight_orig`) holds the
        // original values there.
        if let Some(layer) = key.strip_suffix("weight") {
            let mask_key = format!("{layer}weight_mask");
            if let Some(mask) = self.dict.get(&mask_key) {
                if mask.shape() == expected {
                    if let Ok(mask) = mask.to_f32(&mask_key, self.dict.path()) {
                        values.iter_mut().zip(&mask).for_each(|(w, m)| *w *= *m);
                        self.masks.insert(mask_key, mask);
                    }
                }
            }
        }
        Some(values)
    }
}

/// Weights and statistics must be floating point: an integer or boolean tensor under a
/// weight's name is a wrong file or key, and casting it would hide that. Masks may be stored
/// as integers or booleans (their values are checked to be 0 or 1).
fn check_dtype(dict: &StateDict, key: &str, raw: &super::state_dict::RawTensor) -> Result<()> {
    if raw.is_float() || key.ends_with("weight_mask") {
        return Ok(());
    }
    Err(ModelError::UnsupportedDtype {
        path: dict.path().to_path_buf(),
        key: key.to_string(),
        dtype: raw.dtype().to_string(),
        expected: "float weights are expected (float32, float16, bfloat16 or float64)",
    })
}

/// Refuses NaN and infinities, which would silently poison every output of the model.
pub(crate) fn check_finite(path: &Path, key: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(ModelError::NonFinite {
            path: path.to_path_buf(),
            key: key.to_string(),
            index,
            value: values[index],
        }),
    }
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = torch_key(self.path.parts());
        let expected = param.shape().to_vec();
        if !self.dict.contains(&key) {
            if is_optional(&key) {
                self.defaulted.push(key);
            } else {
                self.missing.push(key);
            }
            return param;
        }
        match self.values(&key, &expected) {
            Some(values) => {
                self.loaded.push(key);
                param.map(|old| {
                    let require_grad = old.is_require_grad();
                    let new = Tensor::from_data(TensorData::new(values, expected), &old.device());
                    if require_grad {
                        new.require_grad()
                    } else {
                        new
                    }
                })
            }
            None => param,
        }
    }
}

/// Loads every tensor of `dict` (torchvision keys, `X.weight_mask`, `normalize.*`) into
/// `module`, matching Burn paths to keys with [`torch_key`].
///
/// Fails, naming the keys, if the model needs a tensor the file lacks, if the file holds a
/// tensor the model has no place for, or if shapes differ. Masks and normalisation statistics
/// may be absent (they keep their current values). `skipped` lists keys the caller already set
/// aside; they are reported, not checked.
pub fn load_state<M: Module>(
    module: M,
    dict: &StateDict,
    skipped: Vec<String>,
) -> Result<(M, ImportReport)> {
    let mut loader = Loader {
        dict,
        path: PathStack::default(),
        loaded: Vec::new(),
        missing: Vec::new(),
        defaulted: Vec::new(),
        error: None,
        masks: Default::default(),
    };
    let module = module.map(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }
    if !loader.missing.is_empty() {
        loader.missing.sort();
        return Err(ModelError::MissingKeys {
            path: dict.path().to_path_buf(),
            keys: loader.missing,
        });
    }
    let loaded: BTreeSet<&String> = loader.loaded.iter().collect();
    let mut skipped = skipped;
    let mut unexpected = Vec::new();
    for key in dict.tensors().keys() {
        if loaded.contains(key) {
            continue;
        }
        if is_ignorable(key) {
            skipped.push(key.clone());
        } else {
            unexpected.push(key.clone());
        }
    }
    if !unexpected.is_empty() {
        return Err(ModelError::UnexpectedKeys {
            path: dict.path().to_path_buf(),
            keys: unexpected,
        });
    }
    skipped.sort();
    Ok((
        module,
        ImportReport {
            loaded: loader.loaded,
            skipped,
            defaulted: loader.defaulted,
        },
    ))
}

/// Options of [`import_resnet`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The architecture the checkpoint holds.
    pub arch: Arch,
    /// The checkpoint layout.
    pub format: CheckpointFormat,
    /// Normalisation for files that hold none (torchvision, fast_adversarial). `None` means
    /// ImageNet statistics, what those models were trained with. Ignored when the file has
    /// its own.
    pub normalize: Option<NormalizeConfig>,
}

impl ResNetConfig {
    /// Infers width, stem, input channels and classes of an `arch` ResNet from a state dict
    /// with torchvision keys.
    pub fn infer(arch: Arch, dict: &StateDict) -> Result<Self> {
        let shape = |key: &str| {
            dict.get(key)
                .map(|t| t.shape().to_vec())
                .ok_or_else(|| ModelError::MissingKeys {
                    path: dict.path().to_path_buf(),
                    keys: vec![key.to_string()],
                })
        };
        let conv1 = shape("conv1.weight")?;
        let fc = shape("fc.weight")?;
        let [width, in_channels, k, _] =
            <[usize; 4]>::try_from(conv1.clone()).map_err(|_| bad_rank("conv1.weight", &conv1))?;
        let [num_classes, _] =
            <[usize; 2]>::try_from(fc.clone()).map_err(|_| bad_rank("fc.weight", &fc))?;
        let stem = match k {
            7 => Stem::ImageNet,
            3 => Stem::Cifar,
            _ => {
                return Err(ModelError::ShapeMismatch {
                    key: "conv1.weight".into(),
                    expected: vec![width, in_channels, 7, 7],
                    found: conv1,
                })
            }
        };
        Ok(ResNetConfig::new(arch)
            .with_width(width)
            .with_stem(stem)
            .with_in_channels(in_channels)
            .with_num_classes(num_classes)
            .with_normalize(NormalizeConfig::identity(in_channels)))
    }
}

fn bad_rank(key: &str, found: &[usize]) -> ModelError {
    ModelError::ShapeMismatch {
        key: key.to_string(),
        expected: Vec::new(),
        found: found.to_vec(),
    }
}

/// Reads a checkpoint of any supported layout into a ResNet on `device`.
///
/// ```no_run
/// use dwlth_models::io::{import_resnet, CheckpointFormat, ImportOptions};
/// use dwlth_models::Arch;
/// use burn::tensor::Device;
///
/// let options = ImportOptions {
///     arch: Arch::ResNet50,
///     format: CheckpointFormat::Robustness,
///     normalize: None,
/// };
/// let (model, report) = import_resnet("imagenet_linf_4.pt", &options, &Device::flex())?;
/// println!("{} tensors loaded, {} skipped", report.loaded.len(), report.skipped.len());
/// # Ok::<(), dwlth_models::ModelError>(())
/// ```
pub fn import_resnet(
    path: impl AsRef<Path>,
    options: &ImportOptions,
    device: &Device,
) -> Result<(ResNet, ImportReport)> {
    let raw = StateDict::read(path)?;
    let (dict, skipped) = options.format.canonicalize(&raw)?;
    let mut config = ResNetConfig::infer(options.arch, &dict)?;
    let in_channels = config.in_channels;
    config.normalize = match (&options.normalize, dict.contains("normalize.mean")) {
        (_, true) => NormalizeConfig::identity(in_channels),
        (Some(n), false) => n.clone(),
        (None, false) if in_channels == 3 => NormalizeConfig::imagenet(),
        (None, false) => NormalizeConfig::identity(in_channels),
    };
    let model = config.try_init(device)?;
    let (model, report) = load_state(model, &dict, skipped)?;
    check_normalize(&model)?;
    Ok((model, report))
}

/// Loads this project's own safetensors file (see [`save_resnet`](super::save_resnet)). The
/// architecture comes from the file's metadata unless given; a conflict is an error.
pub fn load_resnet(
    path: impl AsRef<Path>,
    arch: Option<Arch>,
    device: &Device,
) -> Result<(ResNet, ImportReport)> {
    let dict = StateDict::read(path)?;
    let file_arch = dict
        .metadata()
        .get("arch")
        .map(|a| a.parse::<Arch>())
        .transpose()?;
    let arch = match (arch, file_arch) {
        (Some(a), Some(f)) if a != f => {
            return Err(ModelError::InvalidConfig(format!(
                "`{}` holds a {f}, not a {a}",
                dict.path().display()
            )))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(ModelError::InvalidConfig(format!(
                "`{}` does not say which architecture it holds; give it explicitly",
                dict.path().display()
            )))
        }
    };
    let (dict, skipped) = CheckpointFormat::Dwlth.canonicalize(&dict)?;
    let config = ResNetConfig::infer(arch, &dict)?;
    let model = config.try_init(device)?;
    let (model, report) = load_state(model, &dict, skipped)?;
    check_normalize(&model)?;
    Ok((model, report))
}

fn check_normalize(model: &ResNet) -> Result<()> {
    model.normalize.to_config().validate()
}

/// Finds the first non-finite float tensor of a module (by Burn parameter path).
struct FiniteChecker {
    path: PathStack,
    found: Option<(String, usize, f32)>,
}

impl burn::module::ModuleVisitor for FiniteChecker {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.found.is_some() {
            return;
        }
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec_as::<f32>()
            .unwrap_or_default();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            self.found = Some((self.path.dotted(), i, values[i]));
        }
    }
}

/// Refuses a module loaded from `path` (a training checkpoint) whose tensors hold NaN or an
/// infinity: resuming from it would train on garbage without any error.
pub(crate) fn check_module_finite<M: Module>(module: &M, path: &Path) -> Result<()> {
    let mut checker = FiniteChecker {
        path: PathStack::default(),
        found: None,
    };
    module.visit(&mut checker);
    match checker.found {
        None => Ok(()),
        Some((key, index, value)) => Err(ModelError::NonFinite {
            path: path.to_path_buf(),
            key,
            index,
            value,
        }),
    }
}
