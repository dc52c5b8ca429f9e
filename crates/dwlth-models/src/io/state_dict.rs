//! A checkpoint read into memory: names → tensors converted to `f32` on demand.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::store::pytorch_reader::{DType, PytorchReader, Tensor as TorchTensor};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};

/// Element types a checkpoint tensor can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl Elem {
    /// Whether values of this type are floating point (weights must be).
    fn is_float(self) -> bool {
        matches!(self, Elem::F64 | Elem::F32 | Elem::F16 | Elem::BF16)
    }

    /// The type's name as PyTorch spells it.
    fn name(self) -> &'static str {
        match self {
            Elem::F64 => "float64",
            Elem::F32 => "float32",
            Elem::F16 => "float16",
            Elem::BF16 => "bfloat16",
            Elem::I64 => "int64",
            Elem::I32 => "int32",
            Elem::I16 => "int16",
            Elem::I8 => "int8",
            Elem::U64 => "uint64",
            Elem::U32 => "uint32",
            Elem::U16 => "uint16",
            Elem::U8 => "uint8",
            Elem::Bool => "bool",
        }
    }

    fn size(self) -> usize {
        match self {
            Elem::F64 | Elem::I64 | Elem::U64 => 8,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F16 | Elem::BF16 | Elem::I16 | Elem::U16 => 2,
            Elem::I8 | Elem::U8 | Elem::Bool => 1,
        }
    }

    fn from_torch(dtype: DType) -> Self {
        match dtype {
            DType::F64 => Elem::F64,
            DType::F32 => Elem::F32,
            DType::F16 => Elem::F16,
            DType::BF16 => Elem::BF16,
            DType::I64 => Elem::I64,
            DType::I32 => Elem::I32,
            DType::I16 => Elem::I16,
            DType::I8 => Elem::I8,
            DType::U64 => Elem::U64,
            DType::U32 => Elem::U32,
            DType::U16 => Elem::U16,
            DType::U8 => Elem::U8,
            DType::Bool => Elem::Bool,
        }
    }

    fn from_safetensors(dtype: Dtype) -> Option<Self> {
        Some(match dtype {
            Dtype::F64 => Elem::F64,
            Dtype::F32 => Elem::F32,
            Dtype::F16 => Elem::F16,
            Dtype::BF16 => Elem::BF16,
            Dtype::I64 => Elem::I64,
            Dtype::I32 => Elem::I32,
            Dtype::I16 => Elem::I16,
            Dtype::I8 => Elem::I8,
            Dtype::U64 => Elem::U64,
            Dtype::U32 => Elem::U32,
            Dtype::U16 => Elem::U16,
            Dtype::U8 => Elem::U8,
            Dtype::BOOL => Elem::Bool,
            _ => return None,
        })
    }

    /// Little-endian bytes to `f32` (integers and booleans convert by value).
    fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        macro_rules! conv {
            ($n:literal, $f:expr) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        $f(a)
                    })
                    .collect()
            };
        }
        match self {
            Elem::F32 => conv!(4, f32::from_le_bytes),
            Elem::F64 => conv!(8, |a| f64::from_le_bytes(a) as f32),
            Elem::F16 => conv!(2, |a| f16::from_le_bytes(a).to_f32()),
            Elem::BF16 => conv!(2, |a| bf16::from_le_bytes(a).to_f32()),
            Elem::I64 => conv!(8, |a| i64::from_le_bytes(a) as f32),
            Elem::I32 => conv!(4, |a| i32::from_le_bytes(a) as f32),
            Elem::I16 => conv!(2, |a| i16::from_le_bytes(a) as f32),
            Elem::U64 => conv!(8, |a| u64::from_le_bytes(a) as f32),
            Elem::U32 => conv!(4, |a| u32::from_le_bytes(a) as f32),
            Elem::U16 => conv!(2, |a| u16::from_le_bytes(a) as f32),
            Elem::I8 => bytes.iter().map(|b| *b as i8 as f32).collect(),
            Elem::U8 | Elem::Bool => bytes.iter().map(|b| *b as f32).collect(),
        }
    }
}

#[derive(Clone)]
enum Source {
    /// A tensor of a PyTorch file, read from disk when asked for.
    Torch(Arc<TorchTensor>),
    /// A slice of a safetensors file held in memory.
    Bytes {
        bytes: Arc<Vec<u8>>,
        start: usize,
        end: usize,
    },
}

/// One tensor of a checkpoint: its shape, element type and where its bytes are.
#[derive(Clone)]
pub struct RawTensor {
    shape: Vec<usize>,
    elem: Elem,
    source: Source,
}

impl std::fmt::Debug for RawTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawTensor({:?}, {:?})", self.elem, self.shape)
    }
}

impl RawTensor {
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements; `usize::MAX` when a declared shape overflows (a corrupt header),
    /// so that comparing it with the bytes present fails instead of wrapping.
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(*d))
            .unwrap_or(usize::MAX)
    }

    /// The element type as PyTorch names it (`float32`, `int64`, `bool`, ...).
    pub fn dtype(&self) -> &'static str {
        self.elem.name()
    }

    /// Whether the elements are floating point.
    pub fn is_float(&self) -> bool {
        self.elem.is_float()
    }

    /// The same data viewed with another shape of equal element count (`[3, 1, 1]` → `[3]`).
    pub fn reshaped(mut self, shape: Vec<usize>) -> Option<Self> {
        let numel = shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
        (numel == Some(self.numel())).then(|| {
            self.shape = shape;
            self
        })
    }

    /// Reads the values as `f32`; `key` names the tensor in errors.
    pub fn to_f32(&self, key: &str, file: &Path) -> Result<Vec<f32>> {
        let expected = self.numel().saturating_mul(self.elem.size());
        let bytes: std::borrow::Cow<'_, [u8]> = match &self.source {
            Source::Torch(t) => t
                .read()
                .map_err(|e| ModelError::Format {
                    path: file.to_path_buf(),
                    format: "PyTorch checkpoint",
                    reason: format!("cannot read tensor `{key}`: {e}"),
                })?
                .into(),
            Source::Bytes { bytes, start, end } => bytes
                .get(*start..*end)
                .ok_or_else(|| ModelError::Format {
                    path: file.to_path_buf(),
                    format: "safetensors",
                    reason: format!("tensor `{key}` lies outside the file"),
                })?
                .into(),
        };
        if bytes.len() != expected || expected == usize::MAX {
            return Err(ModelError::Format {
                path: file.to_path_buf(),
                format: "checkpoint",
                reason: format!(
                    "tensor `{key}` holds {} bytes, its shape {:?} needs {expected}",
                    bytes.len(),
                    self.shape
                ),
            });
        }
        Ok(self.elem.to_f32(&bytes))
    }
}

/// The tensors of a checkpoint file by name, plus the safetensors metadata if any.
///
/// Nested PyTorch checkpoints are flattened with dots: the `model` entry of a `robustness`
/// checkpoint gives keys `model.module.model.conv1.weight`, its optimiser
/// `optimizer.state.0.momentum_buffer`. Non-tensor values (epochs, hyper-parameters) are
/// left out.
#[derive(Debug, Clone)]
pub struct StateDict {
    path: PathBuf,
    tensors: BTreeMap<String, RawTensor>,
    metadata: HashMap<String, String>,
}

impl StateDict {
    /// Reads a PyTorch (`.pt`, `.pth`, `.ckpt`, `.tar`; zip, legacy or tar container) or a
    /// safetensors file, recognised by its content — or by a `.safetensors` name, so that a
    /// damaged safetensors file is reported as such rather than as a bad PyTorch checkpoint.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut head = [0u8; 16];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
            f.read(&mut head).map_err(|e| ModelError::io(path, e))?
        };
        if n == 0 {
            return Err(ModelError::Format {
                path: path.to_path_buf(),
                format: if has_safetensors_name(path) {
                    "safetensors"
                } else {
                    "checkpoint"
                },
                reason: "the file is empty (0 bytes)".into(),
            });
        }
        if looks_like_safetensors(&head[..n]) || has_safetensors_name(path) {
            Self::read_safetensors(path)
        } else {
            Self::read_pytorch(path)
        }
    }

    /// Reads a PyTorch checkpoint.
    pub fn read_pytorch(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let reader = PytorchReader::new(path).map_err(|e| match e {
            burn::store::pytorch_reader::PytorchError::Io(source) => ModelError::io(path, source),
            other => ModelError::Format {
                path: path.to_path_buf(),
                format: "PyTorch checkpoint",
                reason: other.to_string(),
            },
        })?;
        let tensors = reader
            .into_tensors()
            .into_iter()
            .map(|(name, t)| {
                let raw = RawTensor {
                    shape: t.shape().to_vec(),
                    elem: Elem::from_torch(t.dtype()),
                    source: Source::Torch(Arc::new(t)),
                };
                (name, raw)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata: HashMap::new(),
        })
    }

    /// Reads a safetensors file.
    pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Arc::new(std::fs::read(path).map_err(|e| ModelError::io(path, e))?);
        let bad = |reason: String| ModelError::Format {
            path: path.to_path_buf(),
            format: "safetensors",
            reason,
        };
        check_safetensors_header(&bytes).map_err(bad)?;
        let (header_len, metadata) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + header_len;
        let mut tensors = BTreeMap::new();
        for (name, info) in metadata.tensors() {
            let elem = Elem::from_safetensors(info.dtype).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` has data type {:?}, which cannot be read",
                    info.dtype
                ))
            })?;
            let (start, end) = info.data_offsets;
            tensors.insert(
                name,
                RawTensor {
                    shape: info.shape.clone(),
                    elem,
                    source: Source::Bytes {
                        bytes: bytes.clone(),
                        start: data_start + start,
                        end: data_start + end,
                    },
                },
            );
        }
        let metadata = metadata.metadata().clone().unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// Builds a state dict from tensors already in memory (tests, conversions).
    pub fn from_tensors(
        path: impl Into<PathBuf>,
        tensors: impl IntoIterator<Item = (String, Vec<usize>, Vec<f32>)>,
    ) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(name, shape, values)| {
                let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                let end = bytes.len();
                let raw = RawTensor {
                    shape,
                    elem: Elem::F32,
                    source: Source::Bytes {
                        bytes: Arc::new(bytes),
                        start: 0,
                        end,
                    },
                };
                (name, raw)
            })
            .collect();
        Self {
            path: path.into(),
            tensors,
            metadata: HashMap::new(),
        }
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The safetensors metadata (empty for PyTorch files).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// All tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, RawTensor> {
        &self.tensors
    }

    /// Whether a key exists.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// One tensor.
    pub fn get(&self, key: &str) -> Option<&RawTensor> {
        self.tensors.get(key)
    }

    /// One tensor's values, or a [`ModelError::MissingKeys`] naming it.
    pub fn values(&self, key: &str) -> Result<Vec<f32>> {
        let tensor = self.get(key).ok_or_else(|| ModelError::MissingKeys {
            path: self.path.clone(),
            keys: vec![key.to_string()],
        })?;
        tensor.to_f32(key, &self.path)
    }

    /// The same state dict without the tensors whose key starts with one of `prefixes` (to keep
    /// only a model's tensors out of a file that also holds inputs and references).
    pub fn without_prefixes(&self, prefixes: &[&str]) -> Self {
        let keep = self
            .tensors
            .iter()
            .filter(|(k, _)| !prefixes.iter().any(|p| k.starts_with(p)))
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        self.with_tensors(keep)
    }

    /// A new state dict over the same file with the tensors replaced.
    pub fn with_tensors(&self, tensors: BTreeMap<String, RawTensor>) -> Self {
        Self {
            path: self.path.clone(),
            tensors,
            metadata: self.metadata.clone(),
        }
    }
}

/// Whether the file is named `*.safetensors` (any case).
fn has_safetensors_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
}

/// The first 8 bytes of a safetensors file are the length of the JSON header that follows:
/// explains, in the file's terms, why `bytes` cannot be one.
fn check_safetensors_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let Some(header) = header_length(bytes) else {
        return Err(format!(
            "the file is {} bytes, too short for the 8-byte header length",
            bytes.len()
        ));
    };
    let room = bytes.len() as u64 - 8;
    if header > room {
        return Err(format!(
            "header length {header} exceeds the {room} bytes after it (file size {})",
            bytes.len()
        ));
    }
    if bytes.get(8) != Some(&b'{') {
        return Err("the header is not a JSON object (it does not start with `{`)".into());
    }
    Ok(())
}

/// A safetensors file starts with a little-endian u64 header length followed by `{`.
fn looks_like_safetensors(head: &[u8]) -> bool {
    head.get(8) == Some(&b'{') && header_length(head).is_some_and(|n| n > 1 && n < (1 << 32))
}

/// The little-endian length of the JSON header that opens a safetensors file.
fn header_length(bytes: &[u8]) -> Option<u64> {
    let mut le = [0u8; 8];
    le.copy_from_slice(bytes.get(..8)?);
    Some(u64::from_le_bytes(le))
}
