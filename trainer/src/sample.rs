//! `intervene sample`: a grid of generated images in any context, composed ones included.
//!
//! The noise comes from `intervene::sampling`, as in the browser, so `--seed` here and `seed=` in a
//! share link draw the same samples.

use crate::image_grid::{square_columns, write_grid};
use anyhow::Result;
use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::model::Model;
use intervene::sampling::{degenerate, latents};
use std::path::Path;

/// Writes `n` samples of `context` (seeded) to a PNG grid; says why, if the images cannot be a
/// trained model's ([`intervene::sampling::degenerate`]): they are written all the same.
pub fn sample_grid(
    model: &Model,
    context: Context,
    n: usize,
    seed: u64,
    out: &Path,
    device: &Device,
) -> Result<Option<String>> {
    let latent = model.config.latent_size();
    let z = latents(&model.config, n, seed, &[]);
    let z = Tensor::<2>::from_data(TensorData::new(z, [n, latent]), device);
    let images = model
        .generate(z, context)
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow::anyhow!("generated images are not f32: {e:?}"))?;
    write_grid(out, &images, model.config.image, square_columns(n))?;
    Ok(degenerate(&images, model.config.image.numel()))
}
