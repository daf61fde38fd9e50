//! Held-out negative ELBO: the validation loss during training and the Recon metric after it.

use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::data::Examples;
use intervene::model::Model;
use intervene::model::loss::elbo_terms;
use intervene::rng::Rng;

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
    let shape = model.config.image;
    let latent = model.config.latent_size();
    let mut rng = Rng::new(seed);
    let (mut total, mut count) = (0f64, 0usize);
    for &(context, examples) in sets {
        let context = if model.config.method.uses_context_labels() {
            context
        } else {
            Context::OBS
        };
        let mut start = 0;
        while start < examples.len() {
            let end = (start + batch_size).min(examples.len());
            let n = end - start;
            let images = model.images(examples.render(start..end, shape.size), device);
            let mut eps = vec![0f32; n * latent];
            rng.fill_normal(&mut eps);
            let eps = Tensor::<2>::from_data(TensorData::new(eps, [n, latent]), device);
            let out = model.forward(images.clone(), context, eps);
            let nelbo = elbo_terms(out.logits, images, out.mu, out.logvar)
                .negative_elbo(beta)
                .sum();
            total += nelbo.into_scalar::<f32>() as f64;
            count += n;
            start = end;
        }
    }
    total / count.max(1) as f64
}

/// Negative ELBO per image in bits per dimension, counted over pixels (not channels).
pub fn bits_per_dim(negative_elbo: f64, image_size: usize) -> f64 {
    negative_elbo / ((image_size * image_size) as f64 * std::f64::consts::LN_2)
}
