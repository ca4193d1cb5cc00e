//! Run-time device choice: `cpu` (burn's pure-Rust `flex` backend) or `cuda:N` (burn-cuda, with
//! the `cuda` cargo feature). The model is generic over the backend, so the caller hands over
//! a [`BackendTask`] that [`run_on`] instantiates for the chosen backend.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::Backend;

use crate::error::{ModelError, Result};

/// The CPU backend.
pub type CpuBackend = burn::backend::Flex;
/// The CUDA backend (feature `cuda`).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// A device named on the command line or in a pipeline spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    /// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    ModelError::Input(format!("device {other:?} is not one of cpu, cuda, cuda:N"))
                }),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Work to run on whichever backend the device spec selects.
pub trait BackendTask {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Keeps freed memory in the process heap (glibc on Linux; elsewhere a no-op). burn's CPU
/// backend allocates a fresh buffer for every tensor op, and glibc's defaults hand large freed
/// buffers back to the kernel at once, so every op pays for fresh pages (about 54 000 page faults
/// per forward of a 100M model): keeping them makes CPU forwards 10-25% faster
/// (`BENCHMARKS.md`). Call it at the start of `main`, before any thread exists: it changes the
/// whole process's allocator.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; called before other threads run.
    unsafe {
        // buffers up to 32 MiB (glibc's cap on 64-bit) come from the heap, and a freed heap top
        // up to 1 GiB stays mapped
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Runs `task` on the backend and device of `spec`.
pub fn run_on<T: BackendTask>(spec: DeviceSpec, task: T) -> Result<T::Output> {
    match spec {
        DeviceSpec::Cpu => task.run::<CpuBackend>(Default::default()),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(index) => {
            task.run::<CudaBackend>(burn::backend::cuda::CudaDevice { index })
        }
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => Err(ModelError::Input(format!(
            "device {spec} needs xlvlm built with the `cuda` feature"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        assert!("gpu".parse::<DeviceSpec>().is_err());
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }
}
