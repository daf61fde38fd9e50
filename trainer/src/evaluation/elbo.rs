//! Held-out negative ELBO: the validation loss during training and the Recon metric after it.

use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::data::Examples;
use intervene::model::Model;
use intervene::model::loss::elbo_terms;
use intervene::rng::Rng;

/// The two terms of the negative ELBO, each a mean per image over one context's held-out images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContextElbo {
    pub context: Context,
    /// Bernoulli negative log-likelihood of the pixels given `z`, nats per image.
    pub reconstruction: f64,
    /// `KL(q(z|x) || N(0, I))`, nats per image.
    pub kl: f64,
    pub images: usize,
}

impl ContextElbo {
    pub fn negative_elbo(&self, beta: f64) -> f64 {
        self.reconstruction + beta * self.kl
    }
}

/// Mean negative ELBO per image over all images of `terms`.
pub fn pooled_negative_elbo(terms: &[ContextElbo], beta: f64) -> f64 {
    let images: usize = terms.iter().map(|t| t.images).sum();
    let total: f64 = terms
        .iter()
        .map(|t| t.negative_elbo(beta) * t.images as f64)
        .sum();
    total / images.max(1) as f64
}

/// Mean negative ELBO per image over every `(context, examples)` set, the model in the given
/// context. Noise is seeded, so the same weights always score the same. `model` must be in
/// evaluation mode (e.g. `Model::valid()`), on `device`.
pub fn mean_negative_elbo(
    model: &Model,
    sets: &[(Context, &Examples)],
    beta: f64,
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> f64 {
    pooled_negative_elbo(
        &elbo_per_context(model, sets, batch_size, seed, device),
        beta,
    )
}

/// Reconstruction and KL per image of each `(context, examples)` set (see
/// [`mean_negative_elbo`]).
pub fn elbo_per_context(
    model: &Model,
    sets: &[(Context, &Examples)],
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Vec<ContextElbo> {
    let shape = model.config.image;
    let latent = model.config.latent_size();
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(sets.len());
    for &(context, examples) in sets {
        let as_trained = if model.config.method.uses_context_labels() {
            context
        } else {
            Context::OBS
        };
        let (mut reconstruction, mut kl) = (0f64, 0f64);
        let mut start = 0;
        while start < examples.len() {
            let end = (start + batch_size).min(examples.len());
            let n = end - start;
            let images = model.images(examples.render(start..end, shape.size), device);
            let mut eps = vec![0f32; n * latent];
            rng.fill_normal(&mut eps);
            let eps = Tensor::<2>::from_data(TensorData::new(eps, [n, latent]), device);
            let out = model.forward(images.clone(), as_trained, eps);
            let terms = elbo_terms(out.logits, images, out.mu, out.logvar);
            // Both sums in one read from the device.
            let sums = Tensor::cat(vec![terms.reconstruction.sum(), terms.kl.sum()], 0)
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 sums");
            reconstruction += sums[0] as f64;
            kl += sums[1] as f64;
            start = end;
        }
        let images = examples.len();
        out.push(ContextElbo {
            context,
            reconstruction: reconstruction / images.max(1) as f64,
            kl: kl / images.max(1) as f64,
            images,
        });
    }
    out
}

/// Negative ELBO per image in bits per pixel (a pixel's channels count once): the paper's "bits
/// per dim".
pub fn bits_per_pixel(negative_elbo: f64, image_size: usize) -> f64 {
    negative_elbo / ((image_size * image_size) as f64 * std::f64::consts::LN_2)
}
