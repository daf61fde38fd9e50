//! The model: encoder -> (context module) -> decoder, one definition for trainer and browser.

pub mod block_linear;
pub mod context_module;
pub mod conv;
pub mod loss;
pub mod vae;

use crate::config::{ImageShape, ModelConfig};
use crate::context::Context;
use crate::kernels;
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use context_module::ContextModule;
use vae::{Decoder, Encoder};

/// A VAE with an optional context module between latent sample and decoder.
///
/// `encoder` is optional because an exported file may carry the generative half only.
#[derive(Module, Debug)]
pub struct Model {
    pub encoder: Option<Encoder>,
    pub context_module: Option<ContextModule>,
    pub decoder: Decoder,
    #[module(skip)]
    pub config: ModelConfig,
}

/// Reads every weight once, which makes burn draw its lazily initialised values.
struct Materialise;

impl burn::module::ModuleVisitor for Materialise {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// What one training forward pass produces.
pub struct ForwardOutput {
    /// Pre-sigmoid pixel logits `[B, C, H, W]`.
    pub logits: Tensor<4>,
    pub mu: Tensor<2>,
    pub logvar: Tensor<2>,
    /// The latent sample that was decoded.
    pub z: Tensor<2>,
}

impl Model {
    /// A freshly initialised model (seed the device first for reproducible weights).
    ///
    /// burn draws a weight's initial values when it is first read; every weight is read here, in
    /// declaration order, so that the seed alone fixes the weights, whatever code runs first.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let model = Self {
            encoder: Some(Encoder::new(config, device)),
            context_module: config
                .method
                .has_context_module()
                .then(|| ContextModule::new(config, device)),
            decoder: Decoder::new(config, device),
            config: config.clone(),
        };
        model.visit(&mut Materialise);
        model
    }

    /// Latent `z [B, latent]` -> pixel logits, through the context module in `context`.
    /// A plain VAE has no wiring to change, so it ignores the context.
    pub fn decode_logits(&self, z: Tensor<2>, context: Context) -> Tensor<4> {
        let h = match &self.context_module {
            Some(cm) => cm.forward(z, context),
            None => z,
        };
        self.decoder.forward(h)
    }

    /// Pixel values in `[0, 1]` for latent `z`.
    pub fn generate(&self, z: Tensor<2>, context: Context) -> Tensor<4> {
        let logits = self.decode_logits(z, context);
        if kernels::available(&logits.device()) {
            // On the CPU the logits are a channels-first view of channels-last values: one
            // kernel pass takes the sigmoid and moves the channels first.
            return kernels::pixel_means(logits.permute([0, 2, 3, 1]));
        }
        sigmoid(logits)
    }

    /// Encode, sample `z = mu + exp(logvar / 2) * eps`, decode. `eps` is standard normal noise of
    /// shape `[B, latent]`, passed in so callers decide where randomness comes from.
    ///
    /// Panics if the model carries no encoder; callers check [`Model::has_encoder`] first.
    pub fn forward(&self, images: Tensor<4>, context: Context, eps: Tensor<2>) -> ForwardOutput {
        let encoder = self.encoder.as_ref().expect("this model has no encoder");
        let (mu, logvar) = encoder.forward(images);
        let z = mu.clone() + (logvar.clone() * 0.5).exp() * eps;
        ForwardOutput {
            logits: self.decode_logits(z.clone(), context),
            mu,
            logvar,
            z,
        }
    }

    pub fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    /// Causal weights back into `[0, 1]` (after every optimizer step).
    pub fn clamped(self) -> Self {
        Self {
            context_module: self.context_module.map(ContextModule::clamped),
            ..self
        }
    }

    /// The learned concept graph `[parent][child]`, if the model has a context module.
    pub fn learned_graph(&self) -> Option<Vec<Vec<f32>>> {
        self.context_module
            .as_ref()
            .map(|cm| cm.causal.learned_graph())
    }

    /// Takes the convolution stages and hidden layer of `base`'s encoder and its whole decoder,
    /// keeping this model's `mu`/`logvar` heads and context module (spec section 6, CM frozen and
    /// fine-tune). The two must share architecture, image shape and hidden size.
    pub fn with_encoder_and_decoder_of(self, base: Model) -> Result<Self, String> {
        let (a, b) = (&self.config, &base.config);
        if (a.architecture, a.image, a.hidden) != (b.architecture, b.image, b.hidden) {
            return Err(format!(
                "its architecture ({:?}, {}x{} px, hidden {}) differs from this model's ({:?}, {}x{} px, hidden {})",
                b.architecture,
                b.image.size,
                b.image.size,
                b.hidden,
                a.architecture,
                a.image.size,
                a.image.size,
                a.hidden
            ));
        }
        let (Some(mut encoder), Some(borrowed)) = (self.encoder, base.encoder) else {
            return Err("it carries no encoder".into());
        };
        encoder.stages = borrowed.stages;
        encoder.hidden = borrowed.hidden;
        Ok(Self {
            encoder: Some(encoder),
            decoder: base.decoder,
            ..self
        })
    }

    /// Freezes (or unfreezes) everything but the `mu`/`logvar` heads and the context module.
    /// Frozen BatchNorm layers use their running statistics.
    pub fn with_backbone_frozen(mut self, frozen: bool) -> Self {
        fn set<M: Module>(module: M, frozen: bool) -> M {
            if frozen {
                module.freeze()
            } else {
                module.unfreeze()
            }
        }
        if let Some(encoder) = self.encoder.as_mut() {
            encoder.stages = set(std::mem::take(&mut encoder.stages), frozen);
            encoder.hidden = set(encoder.hidden.clone(), frozen);
        }
        self.decoder = set(self.decoder, frozen);
        self
    }

    /// The generative half only: what the browser needs.
    pub fn without_encoder(self) -> Self {
        Self {
            encoder: None,
            ..self
        }
    }
}

/// Images as the model takes them, `[B, C, S, S]`, from channels-last values `[B, S, S, C]`
/// (`data::channels_last`). The tensor is a permuted view of those values: the CPU path works
/// channels-last throughout and so reads them in place, where channels-first values would be
/// rearranged twice a step (for the encoder and for the loss).
pub fn images_tensor(values: Vec<f32>, shape: ImageShape, device: &Device) -> Tensor<4> {
    let n = values.len() / shape.numel();
    let dims = [n, shape.size, shape.size, shape.channels];
    Tensor::<4>::from_data(TensorData::new(values, dims), device).permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, ImageShape, Method, Widths};

    pub(crate) fn tiny_config(method: Method, size: usize) -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Simple64bn,
            image: ImageShape { channels: 3, size },
            concepts: vec!["a".into(), "b".into(), "c".into()],
            widths: Widths {
                depth: 2,
                w_in: 4,
                w_out: 2,
            },
            hidden: 16,
            method,
        }
    }

    /// The CPU's fused sigmoid-and-transpose gives the pixels burn's sigmoid gives.
    #[test]
    fn generated_pixels_are_the_sigmoid_of_the_logits() {
        use burn::tensor::{Distribution, Tolerance};
        let device = Device::flex();
        let model = Model::new(&tiny_config(Method::Cm, 32), &device);
        let z = Tensor::<2>::random([3, 12], Distribution::Normal(0.0, 1.0), &device);
        let context = Context::from_indices([0, 2]);
        let pixels = model.generate(z.clone(), context);
        let expected = sigmoid(model.decode_logits(z, context));
        assert_eq!(pixels.dims(), [3, 3, 32, 32]);
        pixels
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
    }

    #[test]
    fn shapes_for_every_architecture_and_method() {
        let device = Device::flex();
        for (arch, channels, size) in [
            (Architecture::Simple64bn, 3, 64),
            (Architecture::Simple64bn, 3, 32),
            (Architecture::Conv3, 1, 28),
        ] {
            for method in Method::ALL {
                let config = ModelConfig {
                    architecture: arch,
                    image: ImageShape { channels, size },
                    ..tiny_config(method, size)
                };
                config.validate().unwrap();
                let model = Model::new(&config, &device);
                let images = Tensor::<4>::zeros([2, channels, size, size], &device);
                let eps = Tensor::<2>::zeros([2, config.latent_size()], &device);
                let out = model.forward(images, Context::single(1), eps);
                assert_eq!(
                    out.logits.dims(),
                    [2, channels, size, size],
                    "{arch:?} {method}"
                );
                assert_eq!(out.mu.dims(), [2, config.latent_size()]);
            }
        }
    }

    #[test]
    fn plain_vae_latent_is_hidden_and_cm_latent_is_k_times_w_in() {
        assert_eq!(tiny_config(Method::Base, 32).latent_size(), 16);
        assert_eq!(tiny_config(Method::Cm, 32).latent_size(), 12);
    }
}
