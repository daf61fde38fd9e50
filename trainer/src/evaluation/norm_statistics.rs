//! Which BatchNorm statistics the decoder normalises with
//! (docs/method.md#batchnorm-statistics-of-samples and #batchnorm-statistics-of-edits).
//!
//! Training normalises every batch by its own statistics, and every batch holds one context's
//! images encoded by the encoder. Afterwards the decoder normalises with the running averages
//! training kept, pooled over contexts. Where what it decodes differs from what one training
//! batch held, it then sees features it never saw in training. Recomputing the statistics on the
//! population a decoding serves gives it features as normalised as in training: prior draws for
//! samples of a context; for edits, encoded training images of the factual context, decoded in
//! the factual and in the counterfactual context. The paper samples with the running averages.

use super::metrics::context_key;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::counterfactual::abduct;
use intervene::data::{Dataset, Split};
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
    /// Recomputed for each context on the population decoded there: prior draws for samples,
    /// the encoded training images of the factual context for edits. The context module's and
    /// the decoder's BatchNorm layers take the mean and variance of the features it gives.
    #[value(alias = "prior")]
    #[serde(alias = "prior")]
    Recomputed,
}

/// Reads the statistics a metrics file was scored with. Files that say `prior` were scored when
/// only samples had recomputed statistics and edits kept the trained ones: they match no setting
/// now, so `experiment` scores them again and a report refuses them.
pub fn deserialize_recorded<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<NormStatistics, D::Error> {
    match String::deserialize(deserializer)?.as_str() {
        "trained" => Ok(NormStatistics::Trained),
        "recomputed" => Ok(NormStatistics::Recomputed),
        "prior" => Err(serde::de::Error::custom(
            "scored with the earlier `prior` statistics, which left the edits on the trained ones: score it again",
        )),
        other => Err(serde::de::Error::unknown_variant(
            other,
            &["trained", "recomputed"],
        )),
    }
}

/// Codes the statistics are averaged over, in chunks: enough that a context's statistics hardly
/// depend on the draws (the spread over seeds is far larger).
const DRAWS: usize = 2048;
const CHUNK: usize = 256;

/// The random streams of a context's prior draws and of the training images edits are
/// normalised by, apart from the other evaluation streams.
const PRIOR_STREAM: u64 = 70_000;
const EDIT_STREAM: u64 = 80_000;

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
        NormStatistics::Recomputed => {
            let mut rng = Rng::derive(seed, PRIOR_STREAM + context_key(context));
            let latent = model.config.latent_size();
            let chunks = (0..DRAWS).step_by(CHUNK).map(|start| {
                let mut z = vec![0f32; CHUNK.min(DRAWS - start) * latent];
                rng.fill_normal(&mut z);
                TensorData::new(z, [CHUNK.min(DRAWS - start), latent])
            });
            Cow::Owned(recomputed(model, context, chunks, device))
        }
    }
}

/// The exogenous noise of training images of one context: the population edits from that
/// context are normalised by under [`NormStatistics::Recomputed`].
pub struct EditPopulation {
    chunks: Vec<TensorData>,
}

impl EditPopulation {
    /// `None` for the trained statistics; else the posterior means of `DRAWS` training images of
    /// `from`, the same ones for every run of one dataset. `model` must have its encoder.
    pub fn new(
        statistics: NormStatistics,
        model: &Model,
        dataset: &dyn Dataset,
        from: Context,
        device: &Device,
    ) -> Result<Option<Self>> {
        if statistics == NormStatistics::Trained {
            return Ok(None);
        }
        let name = from.name(&dataset.concepts());
        if dataset.available(from, Split::Training) == Some(0) {
            bail!(
                "the data hold no training images of {name} to recompute the statistics of edits from {name} on (--norm-statistics trained needs none)"
            );
        }
        let mut rng = Rng::derive(0, EDIT_STREAM + context_key(from));
        let examples = dataset.draw(from, DRAWS, Split::Training, &mut rng);
        let chunks = (0..DRAWS)
            .step_by(CHUNK)
            .map(|start| {
                let images =
                    examples.render(start..(start + CHUNK).min(DRAWS), model.config.image.size);
                Ok(abduct(model, images, device)?.into_data())
            })
            .collect::<Result<_>>()?;
        Ok(Some(Self { chunks }))
    }
}

/// The model that decodes edits of `population` into `context` (or reconstructs them, for their
/// own context): `model` with the statistics of the population's features there, keeping
/// `model`'s encoder, which abducts as trained. `model` itself without a population (the trained
/// statistics).
pub fn edit_decoder<'a>(
    model: &'a Model,
    population: Option<&EditPopulation>,
    context: Context,
    device: &Device,
) -> Cow<'a, Model> {
    let Some(population) = population else {
        return Cow::Borrowed(model);
    };
    let mut copy = recomputed(model, context, population.chunks.iter().cloned(), device);
    copy.encoder = model.encoder.clone();
    Cow::Owned(copy)
}

/// Runs the context module and the decoder as in training (each chunk of `codes` normalised by
/// its own statistics); each layer's running averages end as the mean of the chunks' statistics
/// (momentum `1 / (i + 1)` for chunk `i`). `train` gives the copy its own running state, so
/// `model` is left as it was; `no_grad` keeps the layers training without recording a graph.
fn recomputed(
    model: &Model,
    context: Context,
    codes: impl Iterator<Item = TensorData>,
    device: &Device,
) -> Model {
    let mut training = model.clone().without_encoder().train().no_grad();
    let trainer = device.clone().autodiff();
    for (i, z) in codes.enumerate() {
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
        // Only the running averages this pass moves are wanted, not its images.
        let _ = training.decode_logits(Tensor::<2>::from_data(z, &trainer), context);
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
        let prior = sampler(
            &model,
            context,
            NormStatistics::Recomputed,
            1,
            &Device::flex(),
        );
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

    /// Recomputed for edits, the decoder normalises one image's noise as training-mode BatchNorm
    /// normalises the whole population of encoded training images, in the factual and in a
    /// counterfactual context; abduction keeps the model's encoder.
    #[test]
    fn edit_statistics_decode_as_training_normalises_the_encoded_population() {
        use intervene::data::DatasetKind;
        let model = model();
        let device = Device::flex();
        let dataset = DatasetKind::QuadDependent.dataset();
        let population = |statistics| {
            EditPopulation::new(statistics, &model, dataset, Context::OBS, &device).unwrap()
        };
        assert!(population(NormStatistics::Trained).is_none());
        let population = population(NormStatistics::Recomputed).unwrap();
        let codes: Vec<f32> = population
            .chunks
            .iter()
            .flat_map(|c| c.try_to_vec::<f32>().unwrap())
            .collect();
        let latent = model.config.latent_size();
        assert_eq!(codes.len(), DRAWS * latent);
        for context in [Context::OBS, Context::single(1)] {
            let before = images(&model, &codes[..8 * latent], context);
            let training = model.clone().without_encoder().train();
            let trainer = device.clone().autodiff();
            let all = TensorData::new(codes.clone(), [DRAWS, latent]);
            let batch_mode: Vec<f32> = training
                .generate(Tensor::<2>::from_data(all, &trainer), context)
                .into_data()
                .try_into_vec_as::<f32>()
                .unwrap();
            let batch_mode = &batch_mode[..before.len()];
            let decoder = edit_decoder(&model, Some(&population), context, &device);
            assert!(decoder.encoder.is_some());
            let recomputed = mean_gap(&images(&decoder, &codes[..8 * latent], context), batch_mode);
            let trained = mean_gap(&before, batch_mode);
            assert!(
                recomputed < trained / 5.0,
                "{context:?}: recomputed statistics {recomputed} vs trained {trained} away from batch statistics"
            );
        }
    }

    /// Scores recorded as `prior` kept the trained statistics for edits, so they are refused
    /// rather than taken for recomputed ones; the flag's old name still means recomputed.
    #[test]
    fn metrics_scored_with_the_earlier_prior_statistics_are_not_taken_for_recomputed() {
        #[derive(Deserialize)]
        struct Recorded {
            #[serde(deserialize_with = "deserialize_recorded")]
            statistics: NormStatistics,
        }
        let read = |name: &str| {
            serde_json::from_value::<Recorded>(serde_json::json!({ "statistics": name }))
                .map(|r| r.statistics)
                .map_err(|e| e.to_string())
        };
        assert_eq!(read("trained"), Ok(NormStatistics::Trained));
        assert_eq!(read("recomputed"), Ok(NormStatistics::Recomputed));
        assert!(read("prior").unwrap_err().contains("score it again"));
        assert!(read("batch").is_err());
        use clap::ValueEnum;
        assert_eq!(
            NormStatistics::from_str("prior", false),
            Ok(NormStatistics::Recomputed)
        );
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
