//! Picking the compute device: burn's flex on the CPU or wgpu on a GPU.

use burn::tensor::{Device, DeviceKind};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// wgpu when a real (discrete or integrated) GPU is present, otherwise flex.
    Auto,
    /// burn's pure-Rust CPU backend.
    Flex,
    /// burn's wgpu backend (any adapter, including a software one such as lavapipe).
    Wgpu,
}

/// A resolved device and the name to report for it.
pub struct Resolved {
    pub device: Device,
    pub name: String,
}

impl DeviceChoice {
    pub fn resolve(self) -> Resolved {
        match self {
            DeviceChoice::Flex => flex(),
            DeviceChoice::Wgpu => Resolved {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                name: format!(
                    "wgpu ({})",
                    adapter_summary().unwrap_or_else(|| "no adapter found".into())
                ),
            },
            DeviceChoice::Auto => match hardware_gpu() {
                Some(gpu) => Resolved {
                    device: Device::wgpu(DeviceKind::DefaultDevice),
                    name: format!("wgpu ({gpu})"),
                },
                None => flex(),
            },
        }
    }
}

fn flex() -> Resolved {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Resolved {
        device: Device::flex(),
        name: format!("flex (CPU, {threads} threads)"),
    }
}

fn adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
        .iter()
        .map(wgpu::Adapter::get_info)
        .collect()
}

/// The name of a hardware GPU, if wgpu sees one.
fn hardware_gpu() -> Option<String> {
    adapters()
        .into_iter()
        .find(|a| {
            matches!(
                a.device_type,
                wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
            )
        })
        .map(|a| format!("{} via {:?}", a.name, a.backend))
}

fn adapter_summary() -> Option<String> {
    adapters()
        .first()
        .map(|a| format!("{} via {:?}", a.name, a.backend))
}
