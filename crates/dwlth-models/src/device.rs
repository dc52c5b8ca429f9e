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
