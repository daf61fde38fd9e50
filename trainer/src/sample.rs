//! `intervene sample`: a grid of generated images in any context, composed ones included.

use crate::evaluation::metrics::generate;
use crate::image_grid::{square_columns, write_grid};
use anyhow::Result;
use burn::tensor::Device;
use intervene::context::Context;
use intervene::model::Model;
use intervene::rng::Rng;
use std::path::Path;

/// Writes `n` samples of `context` (seeded) to a PNG grid.
pub fn sample_grid(
    model: &Model,
    context: Context,
    n: usize,
    seed: u64,
    out: &Path,
    device: &Device,
) -> Result<()> {
    let images = generate(model, context, n, &mut Rng::new(seed), 64, device);
    write_grid(out, &images, model.config.image, square_columns(n))
}
