//! The `--device` and `--dtype` choices, resolved to a libtorch device and kind.
use anyhow::{bail, Result};
use tch::{Device, Kind};

/// The precision of a model's weights and activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Full precision: parity with transformers within 1e-5.
    Float32,
    /// Half the weights' memory, as people run 1-8B models; losses and softmaxes of the
    /// Llama family stay in float32, as in transformers.
    Bfloat16,
    /// Double precision: for checking that two computations are equal beyond float32's
    /// rounding (a pruned model against the masked original).
    Float64,
}

impl Dtype {
    pub fn kind(self) -> Kind {
        match self {
            Dtype::Float32 => Kind::Float,
            Dtype::Bfloat16 => Kind::BFloat16,
            Dtype::Float64 => Kind::Double,
        }
    }
}

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
