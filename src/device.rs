//! The `--device` choice, resolved to a libtorch device.
use anyhow::{bail, Result};
use tch::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else CPU.
    Auto,
    Cpu,
    Cuda,
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda => {
                if tch::Cuda::is_available() {
                    Ok(Device::Cuda(0))
                } else {
                    bail!("--device cuda: no CUDA device is available to this libtorch build (use --device cpu or auto)")
                }
            }
        }
    }
}
