//! `intervene export`: one self-describing weights file for the browser (and for `sample`/`eval`).

use crate::evaluation::metrics::generate;
use crate::files::atomic_write;
use crate::progress::Progress;
use anyhow::{Context as _, Result};
use burn::tensor::Device;
use intervene::context::Context;
use intervene::rng::Rng;
use intervene::weights::{self, LoadedWeights, Precision};
use std::path::Path;

/// How far the exported weights' samples drift from the originals (pixel values in [0, 1]).
pub struct Drift {
    pub max: f32,
    pub mean: f32,
}

/// What to write.
pub struct ExportRequest<'a> {
    pub out: &'a Path,
    pub precision: Precision,
    pub decoder_only: bool,
    /// With `decoder_only`: where the encoder goes, as an encoder file paired with `out`.
    pub encoder_out: Option<&'a Path>,
}

pub fn export(
    loaded: LoadedWeights,
    request: &ExportRequest,
    device: &Device,
    progress: &Progress,
) -> Result<Drift> {
    let ExportRequest {
        out,
        precision,
        decoder_only,
        encoder_out,
    } = *request;
    let whole = loaded.model;
    let model = match decoder_only {
        true => whole.clone().without_encoder(),
        false => whole.clone(),
    };
    let bytes = weights::encode(&model, precision, loaded.metadata);
    let encoder = match encoder_out {
        Some(path) => Some((
            path,
            weights::encode_encoder(&whole, precision, &bytes)
                .context("these weights carry no encoder to write")?,
        )),
        None => None,
    };
    // Measure what the precision costs on 64 samples of a composed context before writing.
    let reloaded = weights::decode(&bytes, device)?.model;
    let context = Context::from_indices(0..model.config.num_concepts().min(2));
    let a = generate(&model, context, 64, &mut Rng::new(1), 64, device);
    let b = generate(&reloaded, context, 64, &mut Rng::new(1), 64, device);
    let diffs: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).collect();
    let drift = Drift {
        max: diffs.iter().copied().fold(0.0, f32::max),
        mean: diffs.iter().sum::<f32>() / diffs.len().max(1) as f32,
    };
    atomic_write(out, &bytes)?;
    progress.line(format!(
        "wrote {} ({:.2} MB, {precision:?}{}); sample drift vs the original: max {:.4}, mean {:.5}",
        out.display(),
        bytes.len() as f64 / 1e6,
        if decoder_only { ", decoder only" } else { "" },
        drift.max,
        drift.mean
    ));
    if let Some((path, encoder)) = &encoder {
        atomic_write(path, encoder)?;
        progress.line(format!(
            "wrote {} ({:.2} MB, the encoder of {})",
            path.display(),
            encoder.len() as f64 / 1e6,
            out.display()
        ));
    }
    Ok(drift)
}
