//! The model: encoder -> (context module) -> decoder, one definition for trainer and browser,
//! the same code on every device (the device only changes how a [`FeatureMap`] is computed).

pub mod block_linear;
mod channels_last;
pub mod context_module;
pub mod feature_map;
pub mod loss;
mod patch_gemm;
mod stage_kernels;
pub mod vae;

use crate::config::ModelConfig;
use crate::context::Context;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use context_module::ContextModule;
pub use feature_map::{FeatureMap, HostImages, StageKernels};
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

/// Collects every parameter's path and shape without reading its values.
#[derive(Default)]
struct Shapes {
    path: Vec<String>,
    found: Vec<(String, Vec<usize>)>,
}

impl burn::module::ModuleVisitor for Shapes {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.found
            .push((self.path.join("."), param.lazy_shape().dims::<D>().to_vec()));
    }
}

/// What one training forward pass produces.
pub struct ForwardOutput {
    /// Pre-sigmoid pixel logits.
    pub logits: FeatureMap,
    pub mu: Tensor<2>,
    pub logvar: Tensor<2>,
    /// The latent sample that was decoded.
    pub z: Tensor<2>,
}

/// Held while a model's weights are drawn. burn's CPU generator is one per process, so two models
/// drawn at once (tests run side by side) would interleave their draws, and a seed would no
/// longer fix the weights.
static DRAWING: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Model {
    /// A freshly initialised model (seed the device first for reproducible weights), whose stages
    /// run the fastest way `device` offers ([`StageKernels::for_device`]).
    ///
    /// burn draws a weight's initial values when it is first read; every weight is read here, in
    /// declaration order, so that the seed alone fixes the weights, whatever code runs first.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let _drawing = DRAWING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::drawn(config, device)
    }

    fn drawn(config: &ModelConfig, device: &Device) -> Self {
        let model = Self::unmaterialised(config, device);
        model.visit(&mut Materialise);
        model
    }

    /// A freshly initialised model whose weights depend on `seed` alone, not on the device: each
    /// backend has a generator of its own, so a seeded GPU would draw other weights than the CPU.
    /// They are drawn on the CPU and loaded onto `device`, whose stage kernels the model takes.
    pub fn seeded(config: &ModelConfig, seed: u64, device: &Device) -> Self {
        let cpu = Device::flex();
        let drawn = {
            let _drawing = DRAWING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cpu.seed(seed);
            Self::drawn(config, &cpu).into_record()
        };
        Self::unmaterialised(config, device).load_record(drawn)
    }

    /// The model's structure with its weights not yet drawn: every parameter knows its shape
    /// but holds no values (burn initialises lazily), so nothing large is allocated.
    fn unmaterialised(config: &ModelConfig, device: &Device) -> Self {
        Self {
            encoder: Some(Encoder::new(config, device)),
            context_module: config
                .method
                .has_context_module()
                .then(|| ContextModule::new(config, device)),
            decoder: Decoder::new(config, device),
            config: config.clone(),
        }
    }

    /// Every parameter's name (its path in the model, as weights files list it) and shape, in
    /// declaration order, without building any weight. `config` must be valid.
    pub fn parameter_shapes(config: &ModelConfig, with_encoder: bool) -> Vec<(String, Vec<usize>)> {
        let mut model = Self::unmaterialised(config, &Device::flex());
        if !with_encoder {
            model = model.without_encoder();
        }
        let mut shapes = Shapes::default();
        model.visit(&mut shapes);
        shapes.found
    }

    /// This model's weights on `device`, with that device's stage kernels. Use this rather than
    /// `Module::to_device`, which would keep the kernels of the device the model came from.
    pub fn to_device(self, device: &Device) -> Self {
        let mut model = Module::to_device(self, device);
        model.decoder.kernels = StageKernels::for_device(device);
        model
    }

    /// How this model's stages run.
    pub fn stage_kernels(&self) -> StageKernels {
        self.decoder.kernels
    }

    /// This model with its stages run by `kernels`, which must support its device: for
    /// comparing the choices (`intervene bench`, tests), not for picking one.
    pub fn with_stage_kernels(mut self, kernels: StageKernels) -> Self {
        self.decoder.kernels = kernels;
        self
    }

    /// Images from their channels-first values `[B, C, S, S]` (as datasets render them), laid
    /// out once for this model's stages.
    pub fn images(&self, chw: Vec<f32>, device: &Device) -> FeatureMap {
        let images = HostImages::new(chw, self.config.image, self.stage_kernels());
        self.laid_out_images(images, device)
    }

    /// Images laid out beforehand (the training loader does it on its own thread); laid out again
    /// if that was for other stage kernels.
    pub fn laid_out_images(&self, images: HostImages, device: &Device) -> FeatureMap {
        FeatureMap::from_host(images, device, self.stage_kernels())
    }

    /// Latent `z [B, latent]` -> pixel logits, through the context module in `context`.
    /// A plain VAE has no wiring to change, so it ignores the context.
    pub fn decode_logits(&self, z: Tensor<2>, context: Context) -> FeatureMap {
        let h = match &self.context_module {
            Some(cm) => cm.forward(z, context),
            None => z,
        };
        self.decoder.forward(h)
    }

    /// Pixel values in `[0, 1]` for latent `z`, `[B, C, H, W]`.
    pub fn generate(&self, z: Tensor<2>, context: Context) -> Tensor<4> {
        self.decode_logits(z, context).sigmoid()
    }

    /// Encode, sample `z = mu + exp(logvar / 2) * eps`, decode. `eps` is standard normal noise of
    /// shape `[B, latent]`, passed in so callers decide where randomness comes from.
    ///
    /// Panics if the model carries no encoder; callers check [`Model::has_encoder`] first.
    pub fn forward(&self, images: FeatureMap, context: Context, eps: Tensor<2>) -> ForwardOutput {
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

    /// The causal weights the learned concept graph is read from (docs/method.md#learned-graph):
    /// `B_ivn`, which interventions on a block's parent train, for a model trained with context
    /// labels; otherwise `B_obs`, the only ones trained. `None` without a context module.
    pub fn graph_weights(&self) -> Option<Tensor<2>> {
        let causal = &self.context_module.as_ref()?.causal;
        Some(match self.config.method.uses_context_labels() {
            true => causal.b_ivn.val(),
            false => causal.b_obs.val(),
        })
    }

    /// The learned concept graph `[parent][child]`, if the model has a context module.
    pub fn learned_graph(&self) -> Option<Vec<Vec<f32>>> {
        let causal = &self.context_module.as_ref()?.causal;
        let values = self.graph_weights()?.into_data().try_into_vec_as::<f32>();
        let values = values.expect("causal weights are f32");
        Some(context_module::graph_from_weights(
            &values,
            causal.blocks,
            causal.width,
        ))
    }

    /// Takes the convolution stages and hidden layer of `base`'s encoder and its whole decoder,
    /// keeping this model's `mu`/`logvar` heads and context module (docs/method.md#cm-frozen-and-cm-finetune). The two must share architecture, image shape and hidden size.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, ImageShape, Method, NoiseLayer, Widths};

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
            noise_layer: NoiseLayer::Block,
        }
    }

    /// `model`'s weights and running statistics in fresh layers (clones of a layer share its
    /// running statistics), whose stages run with `kernels`.
    fn copy_with(model: &Model, kernels: StageKernels, device: &Device) -> Model {
        Model::new(&model.config, device)
            .load_record(model.clone().into_record())
            .with_stage_kernels(kernels)
    }

    /// The CPU kernels, the patch-gather products and burn's layers compute the same model: one
    /// training step's logits, loss, gradients and BatchNorm running statistics, then generated
    /// pixels in inference mode, for both backbones.
    #[test]
    fn every_stage_kernel_choice_computes_the_same_model() {
        use burn::tensor::Distribution;
        let device = Device::flex().autodiff();
        // A channel with a tiny batch variance (one ReLU nearly silences, or one where the
        // images look alike) makes BatchNorm magnify the rounding differences between two exact
        // implementations: some draws move a few elements of a gradient by a few percent (three
        // draws in 120 with the images below). Each result is therefore compared as a whole, by
        // its relative L2 distance: at most 3.7e-3 over those 120 draws, most under 4e-5, where a
        // wrong kernel is off by tenths. The seed cannot pin the draw: the device's generator is
        // shared with the tests running beside this one.
        device.seed(7);
        let batch = 4;
        for (architecture, channels, size) in [
            (Architecture::Simple64bn, 3, 32),
            (Architecture::Conv3, 1, 28),
        ] {
            let config = ModelConfig {
                architecture,
                image: ImageShape { channels, size },
                ..tiny_config(Method::Cm, size)
            };
            let model = Model::new(&config, &device);
            assert_eq!(model.stage_kernels(), StageKernels::Cpu);
            let values = Tensor::<1>::random(
                [batch * channels * size * size],
                Distribution::Default,
                &device,
            );
            // Each image with its own contrast and brightness, so they differ in the deep stages.
            let numel = channels * size * size;
            let values: Vec<f32> = values.into_data().try_to_vec().unwrap();
            let values: Vec<f32> = values
                .chunks(numel)
                .enumerate()
                .flat_map(|(i, image)| {
                    let (contrast, floor) = [(0.2, 0.1), (0.4, 0.5), (0.6, 0.05), (0.8, 0.15)][i];
                    image.iter().map(move |v| v * contrast + floor)
                })
                .collect();
            let eps = Tensor::<2>::random(
                [batch, config.latent_size()],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let context = Context::single(2);
            let run = |kernels: StageKernels| {
                let model = copy_with(&model, kernels, &device);
                let images = model.images(values.clone(), &device);
                let out = model.forward(images.clone(), context, eps.clone());
                let pixels = out.logits.clone().sigmoid();
                let loss = loss::elbo_terms(out.logits, images, out.mu, out.logvar)
                    .negative_elbo(1.0)
                    .mean();
                let grads = loss.clone().backward();
                let encoder = model.encoder.as_ref().unwrap();
                let first = &encoder.stages[0];
                let last = model.decoder.stages.last().unwrap();
                let mut results = vec![
                    pixels.into_data(),
                    loss.into_data(),
                    first.conv.weight.val().grad(&grads).unwrap().into_data(),
                    first.norm.gamma.val().grad(&grads).unwrap().into_data(),
                    last.deconv.weight.val().grad(&grads).unwrap().into_data(),
                    model
                        .decoder
                        .output
                        .weight
                        .val()
                        .grad(&grads)
                        .unwrap()
                        .into_data(),
                ];
                // A second forward merges the running statistics the first one queued.
                let model = model.valid();
                let eps = Tensor::<2>::from_data(eps.to_data(), &Device::flex());
                let _ = model.decode_logits(eps.clone(), context);
                results.push(
                    model.decoder.stages[0]
                        .norm
                        .running_mean
                        .value()
                        .into_data(),
                );
                results.push(model.decoder.stages[0].norm.running_var.value().into_data());
                results.push(model.generate(eps, context).into_data());
                results
            };
            let theirs = run(StageKernels::Burn);
            for kernels in [StageKernels::Cpu, StageKernels::PatchGemm] {
                for (i, (ours, theirs)) in run(kernels).iter().zip(&theirs).enumerate() {
                    let (ours, theirs): (Vec<f32>, Vec<f32>) =
                        (ours.try_to_vec().unwrap(), theirs.try_to_vec().unwrap());
                    assert_eq!(ours.len(), theirs.len());
                    let norm = |v: &mut dyn Iterator<Item = f32>| {
                        v.map(|x| f64::from(x).powi(2)).sum::<f64>().sqrt()
                    };
                    let gap = norm(&mut ours.iter().zip(&theirs).map(|(a, b)| a - b));
                    let relative = gap / norm(&mut theirs.iter().copied()).max(1e-12);
                    assert!(
                        relative < 1e-2,
                        "{architecture:?}, {kernels:?}, result {i}: relative L2 distance {relative:.2e}"
                    );
                }
            }
        }
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
                let images = model.images(vec![0.0; 2 * channels * size * size], &device);
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
