//! Which kernels run a model's convolution stages, picked once from the device when a model is
//! built, loaded or moved; `feature_map.rs` says what each choice means for memory layout.

use burn::tensor::Device;

/// How a model's convolution stages, its loss and its output pixels are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKernels {
    /// burn's layers and tensor ops, channels-first: any device.
    Burn,
    /// `intervene-kernels`, channels-last: burn's CPU backend only.
    Cpu,
    /// Convolutions as patch gathers and matrix products in burn's tensor ops, channels-last:
    /// any device.
    PatchGemm,
}

impl StageKernels {
    /// The fastest choice that runs on `device`.
    pub fn for_device(device: &Device) -> Self {
        if intervene_kernels::supports(device) {
            StageKernels::Cpu
        } else {
            StageKernels::PatchGemm
        }
    }

    /// Whether maps are stored channels-last.
    pub(crate) fn channels_last(self) -> bool {
        self != StageKernels::Burn
    }
}
