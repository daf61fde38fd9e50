//! Counterfactuals (docs/method.md#counterfactuals): what an image would have looked like had
//! some of its concepts been intervened on, all else equal.
//!
//! Abduction: the encoder's posterior mean is the image's exogenous noise. Action: the context
//! module rewired for the counterfactual context (and, optionally, concept noise shifted).
//! Prediction: the same noise decoded there. Decoding it in the image's own context instead gives
//! its reconstruction, the edit that changes nothing. The trainer's `edit` and `eval` and the
//! page's editor all edit through [`Edit`].

use crate::config::ModelConfig;
use crate::context::Context;
use crate::model::Model;
use crate::sampling;
use burn::tensor::{Device, Tensor, TensorData};

/// One edit: from the context the images were taken in, intervene on more concepts and shift
/// some concepts' noise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Edit {
    /// The images' own context (`obs` for an ordinary photograph of the system).
    pub from: Context,
    /// The concepts to intervene on; the counterfactual keeps `from`'s interventions too.
    pub intervene: Context,
    /// Standard deviations per concept by which the abducted noise moves
    /// ([`sampling::shift`]); empty for none.
    pub shifts: Vec<f32>,
}

impl Edit {
    /// The intervention on `intervene` of images observed without one.
    pub fn intervening(intervene: Context) -> Self {
        Self {
            intervene,
            ..Self::default()
        }
    }

    /// The context the counterfactual is decoded in.
    pub fn to(&self) -> Context {
        self.from.compose(self.intervene)
    }
}

/// Why a model cannot edit images.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("these weights carry the decoder only, and editing an image needs the encoder")]
pub struct NoEncoder;

/// What one edit of a batch produces, each `[B, C, S, S]` pixel values in `[0, 1]`.
pub struct Edited {
    /// The images decoded from their own noise in their own context.
    pub reconstruction: Tensor<4>,
    /// The same noise, shifted, decoded in the counterfactual context.
    pub counterfactual: Tensor<4>,
}

/// The images' exogenous noise `[B, latent]`: the encoder's posterior mean. `images` are
/// channels-first values in `[0, 1]`, `[B, C, S, S]` in the model's shape.
pub fn abduct(model: &Model, images: Vec<f32>, device: &Device) -> Result<Tensor<2>, NoEncoder> {
    let encoder = model.encoder.as_ref().ok_or(NoEncoder)?;
    let (mu, _) = encoder.forward(model.images(images, device));
    Ok(mu)
}

/// The models one edit runs on: `factual` abducts and reconstructs, `counterfactual` predicts.
/// One model serves both unless their BatchNorm statistics were recomputed for each context (the
/// trainer's `--norm-statistics recomputed`, docs/method.md#batchnorm-statistics-of-edits).
#[derive(Clone, Copy)]
pub struct Editor<'a> {
    pub factual: &'a Model,
    pub counterfactual: &'a Model,
}

impl<'a> From<&'a Model> for Editor<'a> {
    fn from(model: &'a Model) -> Self {
        Self {
            factual: model,
            counterfactual: model,
        }
    }
}

/// Abduction, action and prediction for a batch of images (see [`abduct`]).
pub fn edit<'a>(
    editor: impl Into<Editor<'a>>,
    images: Vec<f32>,
    edit: &Edit,
    device: &Device,
) -> Result<Edited, NoEncoder> {
    let Editor {
        factual,
        counterfactual,
    } = editor.into();
    let noise = abduct(factual, images, device)?;
    let moved = shifted(&factual.config, noise.clone(), &edit.shifts);
    Ok(Edited {
        reconstruction: factual.generate(noise, edit.from),
        counterfactual: counterfactual.generate(moved, edit.to()),
    })
}

/// The edit with the learned graph left out: the concepts the edit intervenes on or shifts take
/// their counterfactual representation, every other concept keeps its factual one, and nothing is
/// carried along the causal layer's edges. Set beside [`edit`]'s counterfactual, it tells what
/// the decoder moves by itself from what the graph carries to other concepts
/// (docs/method.md#counterfactual-scores). `None` without a context module.
pub fn unpropagated(model: &Model, noise: Tensor<2>, edit: &Edit) -> Option<Tensor<4>> {
    let module = model.context_module.as_ref()?;
    let (blocks, width) = (module.causal.blocks, module.causal.width);
    let factual = module.concepts(noise.clone(), edit.from);
    let counterfactual = module.concepts(shifted(&model.config, noise, &edit.shifts), edit.to());
    let changes =
        |k: usize| edit.intervene.contains(k) || edit.shifts.get(k).is_some_and(|&s| s != 0.0);
    let moved: Vec<f32> = (0..blocks * width)
        .map(|unit| f32::from(changes(unit / width)))
        .collect();
    let moved = Tensor::<2>::from_data(
        TensorData::new(moved, [1, blocks * width]),
        &factual.device(),
    );
    let kept = moved.clone().neg().add_scalar(1.0);
    let concepts = factual * kept + counterfactual * moved;
    Some(
        model
            .decoder
            .forward(module.unpool.forward(concepts))
            .sigmoid(),
    )
}

/// Why a batch of edits cannot be a trained model's, if they cannot
/// ([`sampling::degenerate`]): its counterfactuals are checked first, then its reconstructions.
/// `numel` is one image's length.
pub fn degenerate(
    reconstructions: &[f32],
    counterfactuals: &[f32],
    numel: usize,
) -> Option<String> {
    sampling::degenerate(counterfactuals, numel)
        .or_else(|| sampling::degenerate(reconstructions, numel))
}

/// `noise` with concept noise shifted. The offset is made on the host and added on the device:
/// nothing is read back (a browser's GPU cannot be read synchronously).
fn shifted(config: &ModelConfig, noise: Tensor<2>, shifts: &[f32]) -> Tensor<2> {
    if shifts.iter().all(|&s| s == 0.0) || !sampling::has_concept_noise(config) {
        return noise;
    }
    let latent = config.latent_size();
    let mut offset = vec![0f32; latent];
    sampling::shift(config, &mut offset, shifts);
    let offset = Tensor::<2>::from_data(TensorData::new(offset, [1, latent]), &noise.device());
    let dims = noise.dims();
    noise + offset.expand(dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, ImageShape, Method, NoiseLayer, Widths};
    use burn::module::Module;

    fn model(method: Method) -> Model {
        let config = ModelConfig {
            architecture: Architecture::Simple64bn,
            image: ImageShape {
                channels: 3,
                size: 32,
            },
            concepts: vec!["a".into(), "b".into(), "c".into()],
            widths: Widths {
                depth: 1,
                w_in: 4,
                w_out: 2,
            },
            hidden: 16,
            method,
            noise_layer: NoiseLayer::Block,
        };
        Model::seeded(&config, 3, &Device::flex()).valid()
    }

    fn pixels(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    fn images(n: usize) -> Vec<f32> {
        (0..n * 3 * 32 * 32)
            .map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5)
            .collect()
    }

    #[test]
    fn the_null_edit_is_the_reconstruction_and_an_intervention_changes_it() {
        let model = model(Method::Cm);
        let device = Device::flex();
        let null = edit(&model, images(2), &Edit::default(), &device).unwrap();
        assert_eq!(pixels(null.reconstruction), pixels(null.counterfactual));
        let b = Context::single(1);
        let edited = edit(&model, images(2), &Edit::intervening(b), &device).unwrap();
        assert_ne!(pixels(edited.reconstruction), pixels(edited.counterfactual));
    }

    #[test]
    fn an_edit_keeps_the_images_interventions() {
        let edit = Edit {
            from: Context::single(0),
            intervene: Context::single(2),
            shifts: vec![0.0, 1.5, 0.0],
        };
        assert_eq!(edit.to(), Context::from_indices([0, 2]));
    }

    #[test]
    fn a_shift_moves_the_counterfactual_only() {
        let model = model(Method::Cm);
        let device = Device::flex();
        let plain = edit(&model, images(1), &Edit::default(), &device).unwrap();
        let shift = Edit {
            shifts: vec![0.0, 0.0, 2.0],
            ..Edit::default()
        };
        let moved = edit(&model, images(1), &shift, &device).unwrap();
        assert_eq!(pixels(plain.reconstruction), pixels(moved.reconstruction));
        assert_ne!(pixels(plain.counterfactual), pixels(moved.counterfactual));
    }

    #[test]
    fn the_unpropagated_edit_moves_only_the_intervened_concepts() {
        let model = model(Method::Cm);
        let device = Device::flex();
        let noise = abduct(&model, images(2), &device).unwrap();
        let b = Edit::intervening(Context::single(1));
        let module = model.context_module.as_ref().unwrap();
        let factual = module.concepts(noise.clone(), Context::OBS);
        let full = module.concepts(noise.clone(), b.to());
        // Concept b's units are the second block: only they may differ from the factual ones.
        let w = module.causal.width;
        let decode =
            |c: Tensor<2>| pixels(model.decoder.forward(module.unpool.forward(c)).sigmoid());
        let pick =
            |c: &Tensor<2>, block: usize| c.clone().slice([0..2, block * w..(block + 1) * w]);
        let by_hand = Tensor::cat(
            vec![pick(&factual, 0), pick(&full, 1), pick(&factual, 2)],
            1,
        );
        let unpropagated = pixels(unpropagated(&model, noise.clone(), &b).unwrap());
        assert_eq!(unpropagated, decode(by_hand));
        assert_ne!(unpropagated, decode(full));
        assert_ne!(unpropagated, decode(factual));
    }

    #[test]
    fn a_plain_vae_has_no_unpropagated_edit() {
        let plain = model(Method::Base);
        let noise = abduct(&plain, images(1), &Device::flex()).unwrap();
        assert!(unpropagated(&plain, noise, &Edit::default()).is_none());
    }

    #[test]
    fn a_decoder_only_model_says_it_cannot_edit() {
        let model = model(Method::Cm).without_encoder();
        let err = edit(&model, images(1), &Edit::default(), &Device::flex()).err();
        assert_eq!(
            err.map(|e| e.to_string().contains("decoder only")),
            Some(true)
        );
    }
}
