//! Which BatchNorm statistics generate the samples that Concept and Compo score
//! (docs/method.md#batchnorm-statistics-of-samples).
//!
//! Training normalises every batch by its own statistics, and every batch holds one context's
//! images encoded by the encoder. Sampling feeds the prior instead, through the running averages
//! training kept. Where the encoder's codes and the prior differ, the decoder then sees features
//! it never saw in training; recomputing the statistics on the prior, per context, gives it
//! features as normalised as in training. The paper samples with the running averages.

use super::metrics::context_key;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::model::Model;
use intervene::rng::Rng;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NormStatistics {
    /// The running averages kept in training, as the paper samples.
    #[default]
    Trained,
    /// Recomputed for each context on draws from the prior: the context module's and the
    /// decoder's BatchNorm layers take the mean and variance of the features those draws give.
    Prior,
}

/// Prior draws the statistics are averaged over, in chunks: enough that a context's statistics
/// hardly depend on the draws (the spread over seeds is far larger).
const DRAWS: usize = 2048;
const CHUNK: usize = 256;

/// The random stream of a context's prior draws, apart from the other evaluation streams.
const STREAM: u64 = 70_000;

/// The model that samples `context` with `statistics`: `model` itself for the trained ones, else
/// a copy whose BatchNorm statistics after the latent are those of prior draws in `context`,
/// the same for one `seed` in `eval` and `sample`. `model` is in evaluation mode and keeps its
/// own statistics.
pub fn sampler<'a>(
    model: &'a Model,
    context: Context,
    statistics: NormStatistics,
    seed: u64,
    device: &Device,
) -> Cow<'a, Model> {
    match statistics {
        NormStatistics::Trained => Cow::Borrowed(model),
        NormStatistics::Prior => {
            let mut draws = Rng::derive(seed, STREAM + context_key(context));
            Cow::Owned(prior_statistics(model, context, &mut draws, device))
        }
    }
}

/// Runs the context module and the decoder as in training (each chunk normalised by its own
/// statistics) on `DRAWS` prior draws; each layer's running averages end as the mean of the
/// chunks' statistics (momentum `1 / (i + 1)` for chunk `i`). `train` gives the copy its own
/// running state, so `model` is left as it was; `no_grad` keeps the layers training without
/// recording a graph.
fn prior_statistics(model: &Model, context: Context, rng: &mut Rng, device: &Device) -> Model {
    let mut training = model.clone().without_encoder().train().no_grad();
    let trainer = device.clone().autodiff();
    let latent = model.config.latent_size();
    for (i, start) in (0..DRAWS).step_by(CHUNK).enumerate() {
        let momentum = 1.0 / (i + 1) as f64;
        if let Some(module) = training.context_module.as_mut() {
            module
                .stack
                .iter_mut()
                .for_each(|l| l.norm.momentum = momentum);
        }
        for stage in training.decoder.stages.iter_mut() {
            stage.norm.momentum = momentum;
        }
        let b = CHUNK.min(DRAWS - start);
        let mut z = vec![0f32; b * latent];
        rng.fill_normal(&mut z);
        let z = Tensor::<2>::from_data(TensorData::new(z, [b, latent]), &trainer);
        // Only the running averages this pass moves are wanted, not its images.
        let _ = training.decode_logits(z, context);
    }
    training.valid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let config = crate::training::config::tiny().model_config();
        Model::seeded(&config, 5, &Device::flex()).valid()
    }

    fn images(model: &Model, z: &[f32], context: Context) -> Vec<f32> {
        let n = z.len() / model.config.latent_size();
        let z = Tensor::<2>::from_data(
            TensorData::new(z.to_vec(), [n, model.config.latent_size()]),
            &Device::flex(),
        );
        model
            .generate(z, context)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    fn mean_gap(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    }

    /// With the prior's statistics, one image is decoded as a large batch of prior draws would
    /// decode it in training mode; the trained statistics are left as they were.
    #[test]
    fn prior_statistics_decode_as_training_normalises_prior_draws() {
        let model = model();
        let context = Context::single(1);
        let latent = model.config.latent_size();
        let mut z = vec![0f32; 4096 * latent];
        Rng::new(9).fill_normal(&mut z);
        let before = images(&model, &z[..8 * latent], context);
        let batch_mode = {
            let training = model.clone().without_encoder().train();
            let device = Device::flex().autodiff();
            let z = Tensor::<2>::from_data(TensorData::new(z.clone(), [4096, latent]), &device);
            let all: Vec<f32> = training
                .generate(z, context)
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap();
            all[..before.len()].to_vec()
        };
        let prior = sampler(&model, context, NormStatistics::Prior, 1, &Device::flex());
        let calibrated = images(&prior, &z[..8 * latent], context);
        let trained = mean_gap(&before, &batch_mode);
        let recomputed = mean_gap(&calibrated, &batch_mode);
        assert!(
            recomputed < trained / 5.0,
            "prior statistics {recomputed} vs trained {trained} away from batch statistics"
        );
        assert_eq!(images(&model, &z[..8 * latent], context), before);
        assert!(prior.encoder.is_none());
    }

    #[test]
    fn trained_statistics_sample_with_the_model_itself() {
        let model = model();
        let same = sampler(
            &model,
            Context::OBS,
            NormStatistics::Trained,
            1,
            &Device::flex(),
        );
        assert!(matches!(same, Cow::Borrowed(_)));
    }
}
