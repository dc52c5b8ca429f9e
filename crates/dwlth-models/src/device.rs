//! Choosing the compute device at run time: `cpu`, `cuda[:N]` or `wgpu`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{ModelError, Result};

/// A device named on the command line or in a configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceSpec {
    /// The pure-Rust CPU backend (`flex` feature, on by default).
    #[default]
    Cpu,
    /// An NVIDIA GPU by index (`cuda` feature; the CUDA driver is loaded at run time).
    Cuda(usize),
    /// The default GPU through wgpu (Vulkan, Metal, DirectX; `wgpu` feature).
    Wgpu,
}

impl DeviceSpec {
    /// The Burn device, or an error naming the feature to compile in.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => Ok(Device::cuda(index)),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => Err(ModelError::DeviceNotCompiled {
                device: other.to_string(),
                feature: match other {
                    DeviceSpec::Cpu => "flex",
                    DeviceSpec::Cuda(_) => "cuda",
                    DeviceSpec::Wgpu => "wgpu",
                },
            }),
        }
    }
}

/// Makes the C allocator keep freed memory for reuse (see
/// [`dwlth_kernels::memory::keep_freed_memory`]): call once, at the start of a program that
/// trains on the CPU.
pub use dwlth_kernels::memory::keep_freed_memory;

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::Wgpu => f.write_str("wgpu"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    /// ```
    /// use dwlth_models::DeviceSpec;
    /// assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
    /// assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
    /// assert!("tpu".parse::<DeviceSpec>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let unknown = || ModelError::UnknownName {
            what: "device",
            value: s.to_string(),
            expected: "cpu, cuda, cuda:N, wgpu",
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(DeviceSpec::Cpu),
            "wgpu" | "gpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(unknown),
        }
    }
}

/// One device, or several for data-parallel training, written `cuda:0,cuda:1`: every training
/// batch is split across them and the first holds the model (see `dwlth_adv`'s
/// `Trainer::with_replicas`).
///
/// ```
/// use dwlth_models::device::{DeviceList, DeviceSpec};
/// let list: DeviceList = "cuda:0, cuda:1".parse().unwrap();
/// assert_eq!(list.main(), DeviceSpec::Cuda(0));
/// assert_eq!(list.replicas(), vec![DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]);
/// assert!("cpu".parse::<DeviceList>().unwrap().replicas().is_empty());
/// assert!("cuda:0,,cuda:1".parse::<DeviceList>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(Vec<DeviceSpec>);

impl DeviceList {
    /// The device holding the model.
    pub fn main(&self) -> DeviceSpec {
        self.0.first().copied().unwrap_or_default()
    }

    /// Every device a batch is split across, the main one first; empty for one device.
    pub fn replicas(&self) -> Vec<DeviceSpec> {
        if self.0.len() > 1 {
            self.0.clone()
        } else {
            Vec::new()
        }
    }
}

impl Default for DeviceList {
    /// The CPU.
    fn default() -> Self {
        Self(vec![DeviceSpec::Cpu])
    }
}

impl From<DeviceSpec> for DeviceList {
    fn from(device: DeviceSpec) -> Self {
        Self(vec![device])
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for DeviceList {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        s.split(',')
            .map(str::parse)
            .collect::<Result<Vec<DeviceSpec>>>()
            .map(Self)
    }
}

/// Memory assumed available where the system does not say (no `/proc/meminfo`): generous, so
/// that only absurd requests (hundreds of gigabytes) are refused.
pub const FALLBACK_MEMORY_BYTES: u64 = 256 << 30;

/// Bytes of memory a new allocation can take, and where the number comes from: `MemAvailable`
/// of `/proc/meminfo` where it exists, otherwise [`FALLBACK_MEMORY_BYTES`].
pub fn available_memory() -> (u64, &'static str) {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_available(&text))
        .map_or((FALLBACK_MEMORY_BYTES, "fixed cap"), |b| {
            (b, "MemAvailable of /proc/meminfo")
        })
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// `bytes` in a readable unit (`1.5 GB`).
pub fn human_bytes(bytes: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

/// Refuses to allocate `bytes` for `what` when they exceed the memory available: an
/// allocation that large aborts the process instead of returning an error.
pub fn check_allocation(what: &str, bytes: f64) -> Result<()> {
    let (available, source) = available_memory();
    if bytes.is_finite() && bytes <= available as f64 {
        return Ok(());
    }
    Err(ModelError::InvalidConfig(format!(
        "{what} needs about {} of memory, more than the {} available ({source})",
        human_bytes(bytes),
        human_bytes(available as f64)
    )))
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn an_absurd_allocation_is_refused_by_name() {
        let e = check_allocation("`width` = 1048576", 3.6e14).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`width` = 1048576"), "{text}");
        assert!(text.contains("360.0 TB"), "{text}");
        assert!(check_allocation("a small tensor", 1e3).is_ok());
        assert!(check_allocation("a NaN size", f64::NAN).is_err());
    }
}
