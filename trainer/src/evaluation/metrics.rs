//! Concept, Compo and Recon (docs/method.md#metrics), all lower-is-better.

use super::counterfactual::{self, CounterfactualScores};
use super::elbo::{bits_per_pixel, mean_negative_elbo};
use super::norm_statistics::{NormStatistics, sampler};
use super::swd::sliced_wasserstein;
use crate::progress::Progress;
use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::data::{Dataset, Split};
use intervene::model::Model;
use intervene::rng::Rng;
use intervene::sampling::degenerate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Generated and real images per context.
    pub samples: usize,
    pub projections: usize,
    pub seed: u64,
    pub batch_size: usize,
    pub beta: f64,
    /// BatchNorm statistics of the samples Concept and Compo score and of the edits the
    /// counterfactual scores score; older metrics files, written before there was a choice, used
    /// the trained ones.
    #[serde(
        default,
        deserialize_with = "super::norm_statistics::deserialize_recorded"
    )]
    pub norm_statistics: NormStatistics,
}

impl EvalSettings {
    /// Factual images edited per context for the counterfactual scores: each is encoded twice and
    /// decoded four times, so fewer than the distributions' samples.
    pub fn counterfactual_samples(&self) -> usize {
        self.samples.min(500)
    }
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            samples: 2_000,
            projections: 50,
            seed: 0,
            batch_size: 256,
            beta: 1.0,
            norm_statistics: NormStatistics::Trained,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConceptScores {
    pub mean: f64,
    pub per_context: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompoScores {
    pub mean: f64,
    pub per_pair: BTreeMap<String, f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReconScores {
    pub in_distribution_bpd: f64,
    pub ood_bpd: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metrics {
    pub concept: ConceptScores,
    pub compo: CompoScores,
    /// Absent when the weights carry no encoder (a decoder-only export).
    pub recon: Option<ReconScores>,
    pub method: String,
    pub dataset: String,
    pub settings: EvalSettings,
    /// `[parent][child]` mean |weight| of the causal layer's blocks, for context-module models.
    pub learned_graph: Option<Vec<Vec<f32>>>,
    /// `None` where the dataset has no known graph (MNIST, data read from disk).
    pub true_graph: Option<Vec<Vec<f32>>>,
    /// Absent without an encoder, or where the dataset knows no true counterfactuals (data read
    /// from disk), and in metrics written before they were scored.
    #[serde(default)]
    pub counterfactual: Option<CounterfactualScores>,
}

/// Random streams of the evaluation, apart from training's.
mod stream {
    pub const REAL: u64 = 10_000;
    pub const LATENT: u64 = 20_000;
    pub const PROJECTIONS: u64 = 30_000;
    pub const RECON: u64 = 40_000;
}

/// `n` generated images of `context` from seeded latents (pixel values, CHW, concatenated).
pub fn generate(
    model: &Model,
    context: Context,
    n: usize,
    rng: &mut Rng,
    batch_size: usize,
    device: &Device,
) -> Vec<f32> {
    let latent = model.config.latent_size();
    let mut out = Vec::with_capacity(n * model.config.image.numel());
    let mut done = 0;
    while done < n {
        let b = batch_size.min(n - done);
        let mut z = vec![0f32; b * latent];
        rng.fill_normal(&mut z);
        let z = Tensor::<2>::from_data(TensorData::new(z, [b, latent]), device);
        let images: Vec<f32> = model
            .generate(z, context)
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 images");
        out.extend_from_slice(&images);
        done += b;
    }
    out
}

/// Scores `model` against fresh held-out images of `dataset`. `model` must be in evaluation mode.
/// Refuses a model whose generated images cannot be a trained model's
/// ([`intervene::sampling::degenerate`]): a distance to them would be a number about nothing.
pub fn evaluate(
    model: &Model,
    dataset: &dyn Dataset,
    settings: &EvalSettings,
    device: &Device,
    progress: &Progress,
) -> Result<Metrics> {
    let config = &model.config;
    let concepts = &config.concepts;
    let size = config.image.size;
    let dim = config.image.numel();
    let training = Context::training_contexts(concepts.len());
    let composed = dataset.composed_contexts();
    let bar = progress.bar("eval", 2 * (training.len() + composed.len()));
    let swd_of = |context: Context| {
        bar.set_message(context.name(concepts));
        let key = context_key(context);
        let real = dataset.images(
            context,
            settings.samples,
            size,
            Split::HeldOut,
            &mut Rng::derive(settings.seed, stream::REAL + key),
        );
        let sampler = sampler(
            model,
            context,
            settings.norm_statistics,
            settings.seed,
            device,
        );
        let fake = generate(
            &sampler,
            context,
            settings.samples,
            &mut Rng::derive(settings.seed, stream::LATENT + key),
            settings.batch_size,
            device,
        );
        if let Some(why) = degenerate(&fake, dim) {
            bail!("cannot score {}: {why}", context.name(concepts));
        }
        let mut projections = Rng::derive(settings.seed, stream::PROJECTIONS);
        let d = sliced_wasserstein(&fake, &real, dim, settings.projections, &mut projections);
        bar.inc(1);
        Ok((context.name(concepts), d))
    };
    let per_context: BTreeMap<String, f64> =
        training.iter().map(|&c| swd_of(c)).collect::<Result<_>>()?;
    let per_pair: BTreeMap<String, f64> =
        composed.iter().map(|&c| swd_of(c)).collect::<Result<_>>()?;
    let recon = model.has_encoder().then(|| {
        bar.set_message("recon");
        let draw = |contexts: &[Context]| -> Vec<(Context, intervene::data::Examples)> {
            contexts
                .iter()
                .map(|&c| {
                    (
                        c,
                        dataset.draw(
                            c,
                            settings.samples,
                            Split::HeldOut,
                            &mut Rng::derive(settings.seed, stream::REAL + context_key(c)),
                        ),
                    )
                })
                .collect()
        };
        let score = |sets: &[(Context, intervene::data::Examples)]| {
            let refs: Vec<(Context, &intervene::data::Examples)> =
                sets.iter().map(|(c, e)| (*c, e)).collect();
            bits_per_pixel(
                mean_negative_elbo(
                    model,
                    &refs,
                    settings.beta,
                    settings.batch_size,
                    settings.seed ^ stream::RECON,
                    device,
                ),
                size,
            )
        };
        ReconScores {
            in_distribution_bpd: score(&draw(&training)),
            ood_bpd: score(&draw(&composed)),
        }
    });
    bar.inc(1);
    let counterfactual = if model.has_encoder() {
        counterfactual::score(
            model,
            dataset,
            settings.counterfactual_samples(),
            (settings.seed, settings.batch_size, settings.norm_statistics),
            device,
            |context| {
                bar.set_message(format!("counterfactual {}", context.name(concepts)));
                bar.inc(1);
            },
        )?
    } else {
        None
    };
    bar.finish_and_clear();
    Ok(Metrics {
        concept: ConceptScores {
            mean: mean(per_context.values()),
            per_context,
        },
        compo: CompoScores {
            mean: mean(per_pair.values()),
            per_pair,
        },
        recon,
        method: config.method.name().to_string(),
        dataset: dataset.name(),
        settings: settings.clone(),
        learned_graph: model.learned_graph(),
        true_graph: dataset.true_graph(),
        counterfactual,
    })
}

/// A stable number per context for deriving its random streams.
pub(crate) fn context_key(context: Context) -> u64 {
    context.indices().fold(0u64, |acc, k| acc | (1 << k))
}

fn mean<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    let v: Vec<f64> = values.copied().collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The metrics as an aligned text table.
pub fn table(m: &Metrics) -> String {
    let mut out = format!("{} on {} (lower is better)\n", m.method, m.dataset);
    if m.settings.norm_statistics == NormStatistics::Recomputed {
        out.push_str(
            "  BatchNorm statistics recomputed per context: on prior draws for samples, on encoded training images for edits\n",
        );
    }
    out.push_str(&format!("  Concept (SWD) mean {:.4}\n", m.concept.mean));
    for (name, v) in &m.concept.per_context {
        out.push_str(&format!("    {name:<24} {v:.4}\n"));
    }
    out.push_str(&format!("  Compo (SWD)   mean {:.4}\n", m.compo.mean));
    for (name, v) in &m.compo.per_pair {
        out.push_str(&format!("    {name:<24} {v:.4}\n"));
    }
    match &m.recon {
        Some(r) => out.push_str(&format!(
            "  Recon (bits per pixel) in-distribution {:.4}, out-of-distribution {:.4}\n",
            r.in_distribution_bpd, r.ood_bpd
        )),
        None => out.push_str("  Recon: not available (these weights carry no encoder)\n"),
    }
    if let Some(cf) = &m.counterfactual {
        out.push_str(&format!(
            "  Counterfactuals from obs ({} images per context; mean |difference| of pixel values)\n    composition (null edit vs image) {:.4}\n    {:<24} {:>7} {:>10} {:>12} {:>9} {:>8} {:>8} {:>8}\n",
            cf.samples, cf.composition, "context", "error", "do-nothing", "ignore-image", "untouched", "unprop.", "touched", "reverse"
        ));
        let rows = cf
            .per_context
            .iter()
            .map(|(name, s)| (name.as_str(), s))
            .chain([
                ("mean: single", &cf.single),
                ("mean: composed", &cf.composed),
            ]);
        for (name, s) in rows {
            out.push_str(&format!(
                "    {name:<24} {:>7.4} {:>10.4} {:>12.4} {:>9.4} {:>8.4} {:>8.4} {:>8.4}\n",
                s.error,
                s.do_nothing,
                s.ignore_image,
                s.untouched_change,
                s.untouched_change_unpropagated,
                s.touched_change,
                s.reversibility
            ));
        }
    }
    out
}
