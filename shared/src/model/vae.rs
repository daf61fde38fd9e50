//! The black-box encoder and decoder (spec section 4): `conv3` for 28x28 grey images and
//! `simple64bn` for RGB images (64x64, or 32x32 with one stride-2 stage fewer on each side).

//!
//! On burn's CPU backend the stages run channels-last through this crate's kernels
//! (`crate::kernels`); on other backends, channels-first through burn's own layers. Both read
//! the same weights.

use super::conv::{self, Geometry};
use crate::config::{Architecture, ModelConfig};
use crate::kernels;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

pub use crate::kernels::NormOrder;

impl NormOrder {
    fn of(architecture: Architecture) -> Self {
        match architecture {
            Architecture::Conv3 => NormOrder::NormThenRelu,
            Architecture::Simple64bn => NormOrder::ReluThenNorm,
        }
    }

    fn apply<const D: usize>(self, x: Tensor<D>, norm: &BatchNorm) -> Tensor<D> {
        match self {
            NormOrder::ReluThenNorm => norm.forward(relu(x)),
            NormOrder::NormThenRelu => relu(norm.forward(x)),
        }
    }
}

/// A convolution stage: `kernel 4, stride 2, padding 1` halves the size; `conv3`'s last stage
/// is a `7x7` valid convolution down to `1x1`.
#[derive(Module, Debug)]
pub struct ConvStage {
    pub conv: Conv2d,
    pub norm: BatchNorm,
    #[module(skip)]
    pub order: NormOrder,
    #[module(skip)]
    pub geometry: Geometry,
}

#[derive(Module, Debug)]
pub struct DeconvStage {
    pub deconv: ConvTranspose2d,
    pub norm: BatchNorm,
    #[module(skip)]
    pub order: NormOrder,
    #[module(skip)]
    pub geometry: Geometry,
}

impl ConvStage {
    /// Channels-first `[B, C, H, W]` in and out, burn's layers.
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.order.apply(self.conv.forward(x), &self.norm)
    }

    /// Channels-last `[B, H, W, C]` in and out, the CPU kernels.
    fn forward_channels_last(&self, x: Tensor<4>) -> Tensor<4> {
        let bias = self
            .conv
            .bias
            .as_ref()
            .expect("stages are built with a bias");
        let y = conv::conv2d(x, self.conv.weight.val(), bias.val(), self.geometry);
        normalise_channels_last(y, self.order, &self.norm)
    }
}

impl DeconvStage {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.order.apply(self.deconv.forward(x), &self.norm)
    }

    fn forward_channels_last(&self, x: Tensor<4>) -> Tensor<4> {
        let y = deconv_channels_last(&self.deconv, x, self.geometry);
        normalise_channels_last(y, self.order, &self.norm)
    }
}

fn deconv_channels_last(layer: &ConvTranspose2d, x: Tensor<4>, geometry: Geometry) -> Tensor<4> {
    let bias = layer.bias.as_ref().expect("stages are built with a bias");
    conv::conv_transpose2d(x, layer.weight.val(), bias.val(), geometry)
}

/// ReLU and BatchNorm of a channels-last map, one row per pixel: burn's BatchNorm semantics
/// (batch statistics and a running-average update when training, running statistics otherwise).
fn normalise_channels_last(y: Tensor<4>, order: NormOrder, norm: &BatchNorm) -> Tensor<4> {
    let dims = y.dims();
    let [b, h, w, c] = dims;
    let rows = y.reshape([b * h * w, c]);
    let device = rows.device();
    let out = if device.is_autodiff() && norm.training.is_enabled() {
        let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
        let (out, mean, variance) =
            kernels::relu_batch_norm(rows, gamma, beta, norm.epsilon, order);
        let momentum = norm.momentum;
        let blend = |running: Tensor<1>, batch: Tensor<1>| {
            (running.to_device(&device) * (1.0 - momentum) + batch * momentum).detach()
        };
        norm.running_mean
            .update(blend(norm.running_mean.value_sync(), mean));
        norm.running_var
            .update(blend(norm.running_var.value_sync(), variance));
        out
    } else {
        let mean = norm.running_mean.value().to_device(&device);
        let variance = norm.running_var.value().to_device(&device);
        let scale = norm.gamma.val() / (variance + norm.epsilon).sqrt();
        let shift = norm.beta.val() - mean * scale.clone();
        kernels::relu_affine(rows, scale, shift, order)
    };
    out.reshape(dims)
}

/// Stage kernel geometry: every stage halves the side, except `conv3`'s last, a `7x7` valid
/// convolution down to `1x1`.
fn stage_geometry(architecture: Architecture, stage: usize, stages: usize) -> Geometry {
    match architecture {
        Architecture::Conv3 if stage == stages - 1 => Geometry::Collapse(7),
        _ => Geometry::Halve,
    }
}

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
        let order = NormOrder::of(config.architecture);
        let mut input = config.image.channels;
        let stages = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let geometry = stage_geometry(config.architecture, i, channels.len());
                let (k, s, p) = geometry.kernel_stride_padding();
                let stage = ConvStage {
                    conv: Conv2dConfig::new([input, out], [k, k])
                        .with_stride([s, s])
                        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                        .init(device),
                    norm: BatchNormConfig::new(out).init(device),
                    order,
                    geometry,
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

    pub fn forward(&self, images: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let features = if kernels::available(&images.device()) {
            let mut x = images.permute([0, 2, 3, 1]);
            for stage in &self.stages {
                x = stage.forward_channels_last(x);
            }
            // Back to channels-first for flattening: `hidden`'s weights expect that order.
            x.permute([0, 3, 1, 2])
        } else {
            let mut x = images;
            for stage in &self.stages {
                x = stage.forward(x);
            }
            x
        };
        let h = relu(self.hidden.forward(features.flatten(1, 3)));
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

/// The output layer undoes the encoder's first stage, which always halves the side.
const OUTPUT_GEOMETRY: Geometry = Geometry::Halve;

/// `[B, hidden]` -> image logits `[B, C, H, W]` (apply a sigmoid for pixel values).
#[derive(Module, Debug)]
pub struct Decoder {
    pub input: Linear,
    pub expand: Linear,
    pub stages: Vec<DeconvStage>,
    pub output: ConvTranspose2d,
    #[module(skip)]
    pub bottleneck: [usize; 2],
}

impl Decoder {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let channels = config.conv_channels();
        let order = NormOrder::of(config.architecture);
        let n = channels.len();
        let (c, side) = bottleneck(config);
        let deconv = |from: usize, to: usize, geometry: Geometry| {
            let (k, s, p) = geometry.kernel_stride_padding();
            ConvTranspose2dConfig::new([from, to], [k, k])
                .with_stride([s, s])
                .with_padding([p, p])
                .init(device)
        };
        // Mirror of the encoder: stage i of the decoder undoes encoder stage n-1-i.
        let stages = (0..n - 1)
            .map(|i| {
                let (from, to) = (channels[n - 1 - i], channels[n - 2 - i]);
                let geometry = stage_geometry(config.architecture, n - 1 - i, n);
                DeconvStage {
                    deconv: deconv(from, to, geometry),
                    norm: BatchNormConfig::new(to).init(device),
                    order,
                    geometry,
                }
            })
            .collect();
        Self {
            input: LinearConfig::new(config.hidden, config.hidden).init(device),
            expand: LinearConfig::new(config.hidden, c * side * side).init(device),
            stages,
            output: deconv(channels[0], config.image.channels, OUTPUT_GEOMETRY),
            bottleneck: [c, side],
        }
    }

    pub fn forward(&self, h: Tensor<2>) -> Tensor<4> {
        let [batch, _] = h.dims();
        let [c, side] = self.bottleneck;
        let x = relu(self.expand.forward(relu(self.input.forward(h))));
        let x = x.reshape([batch, c, side, side]);
        if !kernels::available(&x.device()) {
            let x = self.stages.iter().fold(x, |x, stage| stage.forward(x));
            return self.output.forward(x);
        }
        let mut x = x.permute([0, 2, 3, 1]);
        for stage in &self.stages {
            x = stage.forward_channels_last(x);
        }
        deconv_channels_last(&self.output, x, OUTPUT_GEOMETRY).permute([0, 3, 1, 2])
    }
}

#[cfg(all(test, feature = "train"))]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::{Distribution, Tolerance};

    /// The fused channels-last ReLU + BatchNorm against burn's layers: outputs, gradients of
    /// the input, gamma and beta, and the running statistics it leaves behind.
    fn check(order: NormOrder) {
        let device = Device::flex().autodiff();
        let c = 5;
        let gamma0 = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
        let beta0 = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
        let x = Tensor::<4>::random([3, c, 4, 2], Distribution::Normal(0.2, 1.0), &device);
        let r = Tensor::<4>::random([3, c, 4, 2], Distribution::Default, &device);
        let run = |ours: bool| {
            // A fresh layer each time: clones of a layer share its running statistics.
            let (x, gamma, beta) = (
                x.clone().require_grad(),
                gamma0.clone().require_grad(),
                beta0.clone().require_grad(),
            );
            let norm = BatchNorm {
                gamma: Param::from_tensor(gamma.clone()),
                beta: Param::from_tensor(beta.clone()),
                ..BatchNormConfig::new(c).init(&device)
            };
            let out = normalise(x.clone(), order, &norm, ours);
            let grads = (out.clone() * r.clone()).sum().backward();
            [
                out.into_data(),
                x.grad(&grads).unwrap().into_data(),
                gamma.grad(&grads).unwrap().into_data(),
                beta.grad(&grads).unwrap().into_data(),
                norm.running_mean.value_sync().into_data(),
                norm.running_var.value_sync().into_data(),
            ]
        };
        for (ours, theirs) in run(true).iter().zip(run(false)) {
            ours.assert_approx_eq::<f32>(&theirs, Tolerance::permissive());
        }
    }

    /// `x [B, C, H, W]` through ReLU and `norm` in `order`: our channels-last kernels or burn's
    /// layers.
    fn normalise(x: Tensor<4>, order: NormOrder, norm: &BatchNorm, ours: bool) -> Tensor<4> {
        match ours {
            true => {
                normalise_channels_last(x.permute([0, 2, 3, 1]), order, norm).permute([0, 3, 1, 2])
            }
            false => order.apply(x, norm),
        }
    }

    /// A BatchNorm layer as training leaves it: its own scale and shift, running statistics.
    fn trained_norm(c: usize, device: &Device) -> BatchNorm {
        let norm = BatchNorm {
            gamma: Param::from_tensor(Tensor::random([c], Distribution::Normal(1.0, 0.5), device)),
            beta: Param::from_tensor(Tensor::random([c], Distribution::Normal(0.0, 0.5), device)),
            ..BatchNormConfig::new(c).init(device)
        };
        norm.running_mean
            .update(Tensor::random([c], Distribution::Normal(0.0, 1.0), device));
        norm.running_var
            .update(Tensor::random([c], Distribution::Uniform(0.5, 2.0), device));
        norm
    }

    /// A frozen layer normalises with its running statistics; gradients still reach the input.
    fn check_inference(order: NormOrder) {
        let device = Device::flex().autodiff();
        let c = 4;
        let norm = trained_norm(c, &device).freeze();
        let x = Tensor::<4>::random([2, c, 3, 3], Distribution::Normal(0.2, 1.0), &device);
        let r = Tensor::<4>::random([2, c, 3, 3], Distribution::Default, &device);
        let run = |ours: bool| {
            let x = x.clone().require_grad();
            let out = normalise(x.clone(), order, &norm, ours);
            let grads = (out.clone() * r.clone()).sum().backward();
            [out.into_data(), x.grad(&grads).unwrap().into_data()]
        };
        for (ours, theirs) in run(true).iter().zip(run(false)) {
            ours.assert_approx_eq::<f32>(&theirs, Tolerance::permissive());
        }
    }

    /// At inference (no autodiff) the kernel overwrites its own input buffer; the values must
    /// still be burn's, and a tensor sharing the input must keep its values.
    #[test]
    fn inference_norm_in_place_matches_burn() {
        let device = Device::flex();
        let c = 3;
        let norm = trained_norm(c, &device);
        for order in [NormOrder::ReluThenNorm, NormOrder::NormThenRelu] {
            let data = Tensor::<4>::random([2, 4, 4, c], Distribution::Normal(0.2, 1.0), &device)
                .into_data();
            // Sole owner of its buffer: normalised in place.
            let owned = Tensor::<4>::from_data(data.clone(), &device);
            let ours = normalise_channels_last(owned, order, &norm);
            // Shared with `kept`: copied first.
            let kept = Tensor::<4>::from_data(data.clone(), &device);
            let shared = normalise_channels_last(kept.clone(), order, &norm);
            let theirs = order.apply(kept.clone().permute([0, 3, 1, 2]), &norm);
            let theirs = theirs.permute([0, 2, 3, 1]).into_data();
            ours.into_data()
                .assert_approx_eq::<f32>(&theirs, Tolerance::permissive());
            shared
                .into_data()
                .assert_approx_eq::<f32>(&theirs, Tolerance::permissive());
            assert_eq!(kept.into_data(), data);
        }
    }

    #[test]
    fn frozen_norms_match_burn() {
        check_inference(NormOrder::ReluThenNorm);
        check_inference(NormOrder::NormThenRelu);
    }

    #[test]
    fn relu_then_norm_matches_burn() {
        check(NormOrder::ReluThenNorm);
    }

    #[test]
    fn norm_then_relu_matches_burn() {
        check(NormOrder::NormThenRelu);
    }
}
