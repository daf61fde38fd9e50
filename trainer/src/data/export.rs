//! `intervene data export`: a dataset written in the plain folder layout that `--data` reads,
//! so users see the format and a round trip can be checked.
//!
//! `DIR/<context>/<index>.png` for `obs`, each concept and each composed context (`a+b`), and
//! beside each context's images `latents.csv`: what generated them, one row per image.

use crate::progress::Progress;
use anyhow::{Context as _, Result, bail};
use intervene::context::Context;
use intervene::data::{Dataset, Split};
use intervene::rng::Rng;
use std::io::Write;
use std::path::Path;

pub struct ExportRequest<'a> {
    pub dataset: &'a dyn Dataset,
    pub per_context: usize,
    pub image_size: usize,
    pub seed: u64,
}

/// Writes every context of the dataset into `out`, which must not exist yet (or be empty).
pub fn export(request: &ExportRequest, out: &Path, progress: &Progress) -> Result<()> {
    let dataset = request.dataset;
    let shape = dataset
        .image_shape(request.image_size)
        .map_err(anyhow::Error::msg)?;
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_some()
    {
        bail!("{} already exists and is not empty", out.display());
    }
    let concepts = dataset.concepts();
    let contexts: Vec<(Context, Split)> = Context::training_contexts(concepts.len())
        .into_iter()
        .map(|c| (c, Split::Training))
        .chain(
            dataset
                .composed_contexts()
                .into_iter()
                .map(|c| (c, Split::HeldOut)),
        )
        .collect();
    let bar = progress.bar("export", contexts.len() * request.per_context);
    for (i, &(context, split)) in contexts.iter().enumerate() {
        let name = context.name(&concepts);
        bar.set_message(name.clone());
        let folder = out.join(&name);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let mut rng = Rng::derive(request.seed, i as u64);
        let examples = dataset.draw(context, request.per_context, split, &mut rng);
        let digits = request.per_context.to_string().len().max(5);
        let mut latents = csv_writer(&folder.join("latents.csv"))?;
        // In chunks, so memory stays bounded whatever the count.
        for start in (0..examples.len()).step_by(256) {
            let end = (start + 256).min(examples.len());
            let images = examples.render(start..end, shape.size);
            for (offset, chw) in images.chunks(shape.numel()).enumerate() {
                let index = start + offset;
                let file = format!("{index:0digits$}.png");
                write_png(&folder.join(&file), chw, shape)?;
                let described = examples.describe(index);
                if index == 0 {
                    let header: Vec<&str> = described.iter().map(|(k, _)| k.as_str()).collect();
                    writeln!(latents, "file,{}", header.join(","))?;
                }
                let values: Vec<String> = described.iter().map(|(_, v)| v.to_string()).collect();
                writeln!(latents, "{file},{}", values.join(","))?;
                bar.inc(1);
            }
        }
        latents
            .flush()
            .with_context(|| format!("cannot write {}", folder.display()))?;
    }
    bar.finish_and_clear();
    Ok(())
}

fn csv_writer(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

/// One channels-first image in `[0, 1]` as an 8-bit PNG (grey or RGB).
fn write_png(path: &Path, chw: &[f32], shape: intervene::config::ImageShape) -> Result<()> {
    let pixels = shape.pixels();
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let interleaved: Vec<u8> = (0..shape.numel())
        .map(|i| byte(chw[(i % shape.channels) * pixels + i / shape.channels]))
        .collect();
    let colour = match shape.channels {
        1 => image::ExtendedColorType::L8,
        _ => image::ExtendedColorType::Rgb8,
    };
    let side = shape.size as u32;
    image::save_buffer(path, &interleaved, side, side, colour)
        .with_context(|| format!("cannot write {}", path.display()))
}
