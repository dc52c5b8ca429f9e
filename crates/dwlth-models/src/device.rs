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

/// Makes the C allocator keep freed memory for reuse instead of returning it to the system;
/// returns whether the setting took. Call once, at the start of a program that trains on
/// the CPU (the `dwlth` binary and the examples do).
///
/// A CPU training step allocates and frees gigabytes of activations and gradients, many of
/// them 32 MiB or more (ResNet-18's first stage at batch 128 is exactly 32 MiB a tensor).
/// glibc serves such sizes with fresh memory maps and unmaps them on free, so every step
/// touches them anew: one page fault and one zeroed page per 4 KiB. Raising the map and trim
/// thresholds to 1 GiB makes the heap recycle them: ResNet-18-CIFAR training steps ran 8 %
/// faster here (docs/performance.md). Process-wide, like any allocator setting; a no-op
/// (returning `false`) where the C library is not glibc.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
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

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_allocator_thresholds() {
        assert!(super::keep_freed_memory());
    }
}
