//! The black-box encoder and decoder (docs/method.md#backbones): `conv3` for 28x28 grey images
//! and `simple64bn` for RGB images (64x64, or 32x32 with one stride-2 stage fewer on each side).

use super::feature_map::{FeatureMap, NormOrder, StageKernels};
use crate::config::{Architecture, ModelConfig};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Where BatchNorm sits relative to ReLU in `architecture`'s stages.
fn norm_order(architecture: Architecture) -> NormOrder {
    match architecture {
        Architecture::Conv3 => NormOrder::NormThenRelu,
        Architecture::Simple64bn => NormOrder::ReluThenNorm,
    }
}

/// A convolution stage: convolution, then ReLU and BatchNorm.
#[derive(Module, Debug)]
pub struct ConvStage {
    pub conv: Conv2d,
    pub norm: BatchNorm,
    #[module(skip)]
    pub order: NormOrder,
}

impl ConvStage {
    fn forward(&self, x: FeatureMap) -> FeatureMap {
        x.conv(&self.conv).relu_norm(&self.norm, self.order)
    }
}

/// A transposed convolution stage: transposed convolution, then ReLU and BatchNorm.
#[derive(Module, Debug)]
pub struct DeconvStage {
    pub deconv: ConvTranspose2d,
    pub norm: BatchNorm,
    #[module(skip)]
    pub order: NormOrder,
}

impl DeconvStage {
    fn forward(&self, x: FeatureMap) -> FeatureMap {
        x.conv_transpose(&self.deconv)
            .relu_norm(&self.norm, self.order)
    }
}

/// `(kernel, stride, padding)` of stage `stage` of `stages`: kernel 4, stride 2, padding 1
/// halves the side, except in `conv3`'s last stage, a 7x7 valid convolution down to 1x1.
fn stage_geometry(
    architecture: Architecture,
    stage: usize,
    stages: usize,
) -> (usize, usize, usize) {
    match architecture {
        Architecture::Conv3 if stage == stages - 1 => (7, 1, 0),
        _ => HALVE,
    }
}

/// Kernel 4, stride 2, padding 1.
const HALVE: (usize, usize, usize) = (4, 2, 1);

/// Image -> (mu, logvar).
#[derive(Module, Debug)]
pub struct Encoder {
    pub stages: Vec<ConvStage>,
    pub hidden: Linear,
    pub mu: Linear,
    pub logvar: Linear,
}

impl Encoder {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let channels = config.conv_channels();
        let order = norm_order(config.architecture);
        let mut input = config.image.channels;
        let stages = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let (k, s, p) = stage_geometry(config.architecture, i, channels.len());
                let stage = ConvStage {
                    conv: Conv2dConfig::new([input, out], [k, k])
                        .with_stride([s, s])
                        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                        .init(device),
                    norm: BatchNormConfig::new(out).init(device),
                    order,
                };
                input = out;
                stage
            })
            .collect();
        let (c, side) = bottleneck(config);
        let latent = config.latent_size();
        Self {
            stages,
            hidden: LinearConfig::new(c * side * side, config.hidden).init(device),
            mu: LinearConfig::new(config.hidden, latent).init(device),
            logvar: LinearConfig::new(config.hidden, latent).init(device),
        }
    }

    pub fn forward(&self, images: FeatureMap) -> (Tensor<2>, Tensor<2>) {
        let x = self.stages.iter().fold(images, |x, stage| stage.forward(x));
        let h = relu(self.hidden.forward(x.flatten()));
        (self.mu.forward(h.clone()), self.logvar.forward(h))
    }
}

/// Channels and side length of the innermost feature map.
fn bottleneck(config: &ModelConfig) -> (usize, usize) {
    let channels = config.conv_channels();
    let side = match config.architecture {
        Architecture::Conv3 => 1,
        Architecture::Simple64bn => 4,
    };
    (*channels.last().expect("at least one stage"), side)
}

/// `[B, hidden]` -> image logits `[B, C, H, W]` (apply a sigmoid for pixel values).
#[derive(Module, Debug)]
pub struct Decoder {
    pub input: Linear,
    pub expand: Linear,
    pub stages: Vec<DeconvStage>,
    pub output: ConvTranspose2d,
    #[module(skip)]
    pub bottleneck: [usize; 2],
    /// How the stages run on this decoder's device (see `Model::new`).
    #[module(skip)]
    pub kernels: StageKernels,
}

impl Decoder {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let channels = config.conv_channels();
        let order = norm_order(config.architecture);
        let n = channels.len();
        let (c, side) = bottleneck(config);
        let deconv = |from: usize, to: usize, (k, s, p): (usize, usize, usize)| {
            ConvTranspose2dConfig::new([from, to], [k, k])
                .with_stride([s, s])
                .with_padding([p, p])
                .init(device)
        };
        // Mirror of the encoder: stage i of the decoder undoes encoder stage n-1-i.
        let stages = (0..n - 1)
            .map(|i| {
                let (from, to) = (channels[n - 1 - i], channels[n - 2 - i]);
                DeconvStage {
                    deconv: deconv(from, to, stage_geometry(config.architecture, n - 1 - i, n)),
                    norm: BatchNormConfig::new(to).init(device),
                    order,
                }
            })
            .collect();
        Self {
            input: LinearConfig::new(config.hidden, config.hidden).init(device),
            expand: LinearConfig::new(config.hidden, c * side * side).init(device),
            stages,
            // Undoes the encoder's first stage, which always halves the side.
            output: deconv(channels[0], config.image.channels, HALVE),
            bottleneck: [c, side],
            kernels: StageKernels::for_device(device),
        }
    }

    /// `h [B, hidden]` -> pixel logits.
    pub fn forward(&self, h: Tensor<2>) -> FeatureMap {
        let x = relu(self.expand.forward(relu(self.input.forward(h))));
        let x = FeatureMap::unflatten(x, self.bottleneck, self.kernels);
        let x = self.stages.iter().fold(x, |x, stage| stage.forward(x));
        x.conv_transpose(&self.output)
    }
}
