//! Feature maps between the VAE's stages, and the one place that knows how a device lays them
//! out in memory.
//!
//! A model runs its convolution stages one of three ways, picked once from the device when the
//! model is built, loaded or moved ([`StageKernels::for_device`]):
//! - this project's CPU kernels (`intervene-kernels`) on channels-last tensors `[B, H, W, C]`,
//!   on burn's CPU backend, where they are several times faster than burn's layers
//!   (docs/performance.md);
//! - elsewhere (GPUs), each convolution as a patch gather and one matrix product in burn's
//!   tensor ops, channels-last (`patch_gemm.rs`);
//! - burn's own layers on channels-first tensors `[B, C, H, W]`, on every device burn supports:
//!   the reference the other two are tested against.
//!
//! All read the same weights in burn's layouts, so weights files and results do not depend on
//! the choice. A [`FeatureMap`] holds its values in its kernels' layout and offers the stages'
//! operations; the model code calls those and never sees the layout.

use super::channels_last;
pub use super::stage_kernels::StageKernels;
use crate::config::ImageShape;
use burn::nn::BatchNorm;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::activation::{relu, sigmoid, softplus};
use burn::tensor::{Device, Tensor, TensorData};
pub use intervene_kernels::NormOrder;

/// Images on the host, laid out for one kind of stage kernels: made from channels-first values
/// `[B, C, S, S]`, the layout every dataset, grid and generated image has, and laid out once, off
/// the training loop's thread when the loader makes them (`Model::laid_out_images`).
#[derive(Clone, Debug, PartialEq)]
pub struct HostImages {
    values: Vec<f32>,
    shape: ImageShape,
    /// `[B, S, S, C]` rather than `[B, C, S, S]`.
    channels_last: bool,
}

impl HostImages {
    /// `chw`, whole images of `shape`, laid out for `kernels`.
    pub fn new(chw: Vec<f32>, shape: ImageShape, kernels: StageKernels) -> Self {
        assert_eq!(chw.len() % shape.numel(), 0, "values of whole images");
        Self {
            values: chw,
            shape,
            channels_last: false,
        }
        .laid_out_for(kernels)
    }

    /// How many images these are.
    pub fn count(&self) -> usize {
        self.values.len() / self.shape.numel()
    }

    /// The same images laid out for `kernels` (a transpose on the host if the layout differs).
    fn laid_out_for(self, kernels: StageKernels) -> Self {
        let wanted = kernels.channels_last();
        if self.channels_last == wanted {
            return self;
        }
        let (c, pixels) = (self.shape.channels, self.shape.pixels());
        let mut out = vec![0f32; self.values.len()];
        for (from, to) in self
            .values
            .chunks(self.shape.numel())
            .zip(out.chunks_mut(self.shape.numel()))
        {
            for channel in 0..c {
                for pixel in 0..pixels {
                    let (chw, hwc) = (channel * pixels + pixel, pixel * c + channel);
                    match wanted {
                        true => to[hwc] = from[chw],
                        false => to[chw] = from[hwc],
                    }
                }
            }
        }
        Self {
            values: out,
            channels_last: wanted,
            ..self
        }
    }
}

/// A batch of images, feature maps or pixel logits: `[B, C, H, W]` in meaning, stored as its
/// kernels want it.
#[derive(Clone, Debug)]
pub struct FeatureMap {
    /// `[B, C, H, W]` for [`StageKernels::Burn`], `[B, H, W, C]` for the others.
    tensor: Tensor<4>,
    kernels: StageKernels,
}

impl FeatureMap {
    /// Images on `device`, for `kernels`.
    pub fn from_host(images: HostImages, device: &Device, kernels: StageKernels) -> Self {
        let images = images.laid_out_for(kernels);
        let (b, c, s) = (images.count(), images.shape.channels, images.shape.size);
        let dims = match images.channels_last {
            true => [b, s, s, c],
            false => [b, c, s, s],
        };
        let tensor = Tensor::from_data(TensorData::new(images.values, dims), device);
        Self { tensor, kernels }
    }

    /// Maps from a channels-last tensor `[B, H, W, C]`: the CPU kernels read it in place, and
    /// burn's layers take a channels-first view of it.
    pub fn from_channels_last(tensor: Tensor<4>, kernels: StageKernels) -> Self {
        let tensor = match kernels.channels_last() {
            false => tensor.permute([0, 3, 1, 2]),
            true => tensor,
        };
        Self { tensor, kernels }
    }

    /// Rows `[B, C * side * side]` of channels-first maps (what a linear layer feeds the
    /// decoder's first stage) as maps `[B, C, side, side]`.
    pub fn unflatten(rows: Tensor<2>, [channels, side]: [usize; 2], kernels: StageKernels) -> Self {
        let [batch, _] = rows.dims();
        let tensor = rows.reshape([batch, channels, side, side]);
        let tensor = match kernels.channels_last() {
            false => tensor,
            true => tensor.permute([0, 2, 3, 1]),
        };
        Self { tensor, kernels }
    }

    /// `[B, C * H * W]`, each row channels-first (the order the encoder's hidden layer's
    /// weights expect).
    pub fn flatten(self) -> Tensor<2> {
        let channels_first = match self.kernels.channels_last() {
            false => self.tensor,
            true => self.tensor.permute([0, 3, 1, 2]),
        };
        channels_first.flatten(1, 3)
    }

    /// `[B, C, H, W]`.
    pub fn dims(&self) -> [usize; 4] {
        let [b, d1, d2, d3] = self.tensor.dims();
        match self.kernels.channels_last() {
            false => [b, d1, d2, d3],
            true => [b, d3, d1, d2],
        }
    }

    /// The convolution `layer`.
    pub fn conv(self, layer: &Conv2d) -> Self {
        let tensor = match self.kernels {
            StageKernels::Burn => layer.forward(self.tensor),
            kernels => channels_last::conv(self.tensor, layer, kernels),
        };
        Self { tensor, ..self }
    }

    /// The transposed convolution `layer`.
    pub fn conv_transpose(self, layer: &ConvTranspose2d) -> Self {
        let tensor = match self.kernels {
            StageKernels::Burn => layer.forward(self.tensor),
            kernels => channels_last::conv_transpose(self.tensor, layer, kernels),
        };
        Self { tensor, ..self }
    }

    /// ReLU and BatchNorm in `order`, with burn's BatchNorm semantics: batch statistics, and
    /// the running averages updated, when training; the running statistics otherwise.
    pub fn relu_norm(self, norm: &BatchNorm, order: NormOrder) -> Self {
        let tensor = match self.kernels {
            StageKernels::Burn => match order {
                NormOrder::ReluThenNorm => norm.forward(relu(self.tensor)),
                NormOrder::NormThenRelu => relu(norm.forward(self.tensor)),
            },
            kernels => channels_last::relu_norm(self.tensor, norm, order, kernels),
        };
        Self { tensor, ..self }
    }

    /// Pixel values `sigmoid(logits)` of these logits, channels-first `[B, C, H, W]`.
    pub fn sigmoid(self) -> Tensor<4> {
        match self.kernels {
            StageKernels::Burn => sigmoid(self.tensor),
            StageKernels::Cpu => intervene_kernels::pixel_means(self.tensor),
            StageKernels::PatchGemm => sigmoid(self.tensor).permute([0, 3, 1, 2]),
        }
    }

    /// Per image, the binary cross-entropy of `targets` (pixel values in `[0, 1]`) under these
    /// logits, summed over pixels and channels: `softplus(l) - x l`, with `l` clamped to
    /// `[-bound, bound]`. The sum does not depend on the pixels' order, so both layouts read
    /// their values in place.
    pub fn bernoulli_nll(self, targets: FeatureMap, bound: f64) -> Tensor<1> {
        assert_eq!(
            self.kernels, targets.kernels,
            "logits and targets in one layout"
        );
        match self.kernels {
            StageKernels::Burn | StageKernels::PatchGemm => {
                let logits = self.tensor.clamp(-bound, bound);
                let bce = softplus(logits.clone(), 1.0) - targets.tensor * logits;
                bce.flatten::<2>(1, 3).sum_dim(1).squeeze_dim(1)
            }
            StageKernels::Cpu => intervene_kernels::bernoulli_nll(
                self.tensor.flatten(1, 3),
                targets.tensor.flatten(1, 3),
                bound,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_images_are_laid_out_once_per_layout_and_back() {
        let shape = ImageShape {
            channels: 2,
            size: 2,
        };
        // Two images; values name (image, channel, pixel).
        let chw: Vec<f32> = (0..2)
            .flat_map(|b| {
                (0..2).flat_map(move |c| (0..4).map(move |p| (100 * b + 10 * c + p) as f32))
            })
            .collect();
        let cpu = HostImages::new(chw.clone(), shape, StageKernels::Cpu);
        assert_eq!(cpu.count(), 2);
        assert_eq!(
            &cpu.values[..8],
            &[0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0]
        );
        assert_eq!((cpu.values[8], cpu.values[15]), (100.0, 113.0));
        let burn = HostImages::new(chw.clone(), shape, StageKernels::Burn);
        assert_eq!(burn.values, chw, "burn's layers take them as they are");
        assert_eq!(cpu.laid_out_for(StageKernels::Burn), burn);
    }

    /// Whichever kernels the values were laid out for, the maps hold the same images.
    #[test]
    fn maps_from_either_layout_agree() {
        let shape = ImageShape {
            channels: 3,
            size: 4,
        };
        let chw: Vec<f32> = (0..2 * shape.numel()).map(|i| i as f32).collect();
        let device = Device::flex();
        for kernels in [StageKernels::Burn, StageKernels::Cpu] {
            for made_for in [StageKernels::Burn, StageKernels::Cpu] {
                let images = HostImages::new(chw.clone(), shape, made_for);
                let maps = FeatureMap::from_host(images, &device, kernels);
                assert_eq!(maps.dims(), [2, 3, 4, 4]);
                let flat: Vec<f32> = maps.flatten().into_data().try_to_vec::<f32>().unwrap();
                assert_eq!(flat, chw, "{kernels:?} from {made_for:?}");
            }
        }
    }
}
