//! Counterfactual scores (docs/method.md#counterfactual-scores): how close the model's edit of a
//! factual image comes to the true counterfactual the generator knows, beside the two answers a
//! model could give without understanding anything, how much the edit moves what the
//! intervention does not reach, and the two axioms of Monteiro et al. (ICLR 2023) that need no
//! attribute predictor. Errors are mean absolute differences of pixel values in `[0, 1]`.

use super::norm_statistics::{EditPopulation, NormStatistics, edit_decoder, sampler};
use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::counterfactual::{Edit, abduct, unpropagated};
use intervene::data::Dataset;
use intervene::model::Model;
use intervene::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The scores of one counterfactual context, edited from `obs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContextScores {
    /// Model's counterfactual vs the true one.
    pub error: f64,
    /// The reconstruction (the edit that does nothing) vs the true counterfactual.
    pub do_nothing: f64,
    /// A random sample of the counterfactual context (an answer that ignores the image) vs the
    /// true counterfactual.
    pub ignore_image: f64,
    /// How much the edit moves pixels the true counterfactual leaves as they were (mean |model
    /// counterfactual - reconstruction| there): what the intervention should not touch.
    pub untouched_change: f64,
    /// The untouched change of the edit that moves only the intervened concepts and carries
    /// nothing along the learned graph ([`unpropagated`]): the part the decoder makes by itself.
    /// Equal to `untouched_change` without a context module.
    #[serde(default)]
    pub untouched_change_unpropagated: f64,
    /// The same over the pixels the intervention does change.
    pub touched_change: f64,
    /// Reversibility: the counterfactual edited back to `obs`, vs the image.
    pub reversibility: f64,
}

impl ContextScores {
    fn mean<'a>(all: impl Iterator<Item = &'a ContextScores>) -> ContextScores {
        let all: Vec<&ContextScores> = all.collect();
        let n = all.len().max(1) as f64;
        let mean = |f: fn(&ContextScores) -> f64| all.iter().map(|s| f(s)).sum::<f64>() / n;
        ContextScores {
            error: mean(|s| s.error),
            do_nothing: mean(|s| s.do_nothing),
            ignore_image: mean(|s| s.ignore_image),
            untouched_change: mean(|s| s.untouched_change),
            untouched_change_unpropagated: mean(|s| s.untouched_change_unpropagated),
            touched_change: mean(|s| s.touched_change),
            reversibility: mean(|s| s.reversibility),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CounterfactualScores {
    /// Factual images edited per context.
    pub samples: usize,
    /// Composition: the reconstruction (the null intervention) vs the image.
    pub composition: f64,
    /// Means over the single-concept contexts and over the composed ones.
    pub single: ContextScores,
    pub composed: ContextScores,
    pub per_context: BTreeMap<String, ContextScores>,
}

/// Sums of absolute differences and their counts, for the means above.
#[derive(Default)]
struct Sums {
    error: f64,
    do_nothing: f64,
    ignore_image: f64,
    untouched: (f64, usize),
    untouched_unpropagated: f64,
    touched: (f64, usize),
    reversibility: f64,
    composition: f64,
    values: usize,
}

/// What the scores need of one batch, as host values.
struct Batch<'a> {
    image: &'a [f32],
    truth: &'a [f32],
    reconstruction: Vec<f32>,
    counterfactual: Vec<f32>,
    /// `None` without a context module, where it is the counterfactual itself.
    unpropagated: Option<Vec<f32>>,
    sample: Vec<f32>,
    reversed: Vec<f32>,
}

impl Sums {
    fn add(&mut self, b: &Batch, channels: usize, pixels: usize) {
        let l1 = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).sum()
        };
        self.error += l1(&b.counterfactual, b.truth);
        self.do_nothing += l1(&b.reconstruction, b.truth);
        self.ignore_image += l1(&b.sample, b.truth);
        self.reversibility += l1(&b.reversed, b.image);
        self.composition += l1(&b.reconstruction, b.image);
        self.values += b.image.len();
        let unpropagated = b.unpropagated.as_deref().unwrap_or(&b.counterfactual);
        // A pixel is untouched when every channel of the true counterfactual equals the image's.
        let plane = channels * pixels;
        for start in (0..b.image.len()).step_by(plane) {
            for p in 0..pixels {
                let at = |c: usize| start + c * pixels + p;
                let same = (0..channels).all(|c| b.image[at(c)] == b.truth[at(c)]);
                let moved = |edit: &[f32]| -> f64 {
                    (0..channels)
                        .map(|c| f64::from((edit[at(c)] - b.reconstruction[at(c)]).abs()))
                        .sum::<f64>()
                        / channels as f64
                };
                let slot = if same {
                    self.untouched_unpropagated += moved(unpropagated);
                    &mut self.untouched
                } else {
                    &mut self.touched
                };
                slot.0 += moved(&b.counterfactual);
                slot.1 += 1;
            }
        }
    }

    fn scores(&self) -> ContextScores {
        let per_value = |sum: f64| sum / self.values.max(1) as f64;
        let per_pixel = |(sum, n): (f64, usize)| if n == 0 { 0.0 } else { sum / n as f64 };
        ContextScores {
            error: per_value(self.error),
            do_nothing: per_value(self.do_nothing),
            ignore_image: per_value(self.ignore_image),
            untouched_change: per_pixel(self.untouched),
            untouched_change_unpropagated: per_pixel((
                self.untouched_unpropagated,
                self.untouched.1,
            )),
            touched_change: per_pixel(self.touched),
            reversibility: per_value(self.reversibility),
        }
    }
}

/// Streams of the counterfactual scores, apart from the other metrics'.
const FACTUAL_STREAM: u64 = 50_000;
const SAMPLE_STREAM: u64 = 60_000;

/// Scores `model` (in evaluation mode, with its encoder) on `n` factual images per context,
/// drawn in `obs` and edited into each single and composed context, every decoding normalised
/// with `statistics`. `None` where the dataset knows no true counterfactuals (data read from
/// disk).
pub fn score(
    model: &Model,
    dataset: &dyn Dataset,
    n: usize,
    (seed, batch_size, statistics): (u64, usize, NormStatistics),
    device: &Device,
    mut on_context: impl FnMut(Context),
) -> Result<Option<CounterfactualScores>> {
    if !dataset.draws_share_noise() {
        return Ok(None);
    }
    let population = EditPopulation::new(statistics, model, dataset, Context::OBS, device)?;
    let factual = edit_decoder(model, population.as_ref(), Context::OBS, device);
    let config = &model.config;
    let (shape, latent) = (config.image, config.latent_size());
    let concepts = &config.concepts;
    let singles = Context::training_contexts(concepts.len()).split_off(1);
    let composed = dataset.composed_contexts();
    let (mut composition, mut values_seen) = (0.0, 0);
    let mut per_context = BTreeMap::new();
    for &context in singles.iter().chain(&composed) {
        on_context(context);
        let key = super::metrics::context_key(context);
        let Some((images, truth)) = dataset.counterfactuals(
            Context::OBS,
            context,
            n,
            &mut Rng::derive(seed, FACTUAL_STREAM + key),
        ) else {
            return Ok(None);
        };
        let mut noise = Rng::derive(seed, SAMPLE_STREAM + key);
        let counterfactual = edit_decoder(model, population.as_ref(), context, device);
        let sampler = sampler(model, context, statistics, seed, device);
        let mut sums = Sums::default();
        for start in (0..n).step_by(batch_size) {
            let range = start..(start + batch_size).min(n);
            let b = range.len();
            let image = images.render(range.clone(), shape.size);
            let truth = truth.render(range, shape.size);
            let mu = abduct(model, image.clone(), device)?;
            let unpropagated =
                unpropagated(&counterfactual, mu.clone(), &Edit::intervening(context)).map(values);
            let edited = values(counterfactual.generate(mu.clone(), context));
            let mut z = vec![0f32; b * latent];
            noise.fill_normal(&mut z);
            let z = Tensor::<2>::from_data(TensorData::new(z, [b, latent]), device);
            let back = abduct(model, edited.clone(), device)?;
            let batch = Batch {
                image: &image,
                truth: &truth,
                reconstruction: values(factual.generate(mu, Context::OBS)),
                sample: values(sampler.generate(z, context)),
                reversed: values(factual.generate(back, Context::OBS)),
                counterfactual: edited,
                unpropagated,
            };
            sums.add(&batch, shape.channels, shape.pixels());
        }
        composition += sums.composition;
        values_seen += sums.values;
        per_context.insert(context.name(concepts), sums.scores());
    }
    let named = |contexts: &[Context]| -> Vec<String> {
        contexts.iter().map(|c| c.name(concepts)).collect()
    };
    let mean_of = |names: Vec<String>| ContextScores::mean(names.iter().map(|n| &per_context[n]));
    Ok(Some(CounterfactualScores {
        samples: n,
        composition: composition / values_seen.max(1) as f64,
        single: mean_of(named(&singles)),
        composed: mean_of(named(&composed)),
        per_context,
    }))
}

fn values(images: Tensor<4>) -> Vec<f32> {
    images
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("f32 images")
}
