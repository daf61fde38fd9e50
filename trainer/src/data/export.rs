//! `intervene data export`: a dataset written in the plain folder layout that `--data` reads,
//! so users see the format and a round trip can be checked.
//!
//! `DIR/<context>/<index>.png` for `obs`, each concept and each composed context (`a+b`), and
//! beside each context's images `latents.csv`: what generated them, one row per image.
//! `intervene data counterfactuals` writes true counterfactual pairs in the same layout.

use crate::image_grid::write_image;
use crate::progress::Progress;
use anyhow::{Context as _, Result, bail};
use intervene::config::ImageShape;
use intervene::context::Context;
use intervene::data::{Dataset, Examples, Split};
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
    require_empty(out)?;
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
        let mut rng = Rng::derive(request.seed, i as u64);
        let examples = dataset.draw(context, request.per_context, split, &mut rng);
        write_examples(&out.join(&name), &examples, shape, &bar)?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// What `data counterfactuals` writes.
pub struct CounterfactualRequest<'a> {
    pub dataset: &'a dyn Dataset,
    /// The factual images' context.
    pub from: Context,
    /// The intervention: the counterfactual context is `from` with these concepts intervened on.
    pub intervene: Context,
    pub n: usize,
    pub image_size: usize,
    pub seed: u64,
}

/// Writes `n` factual images into `out/<from>/` and their true counterfactuals into
/// `out/<from+intervene>/`, the same file names pairing them, each folder with its `latents.csv`.
pub fn counterfactuals(
    request: &CounterfactualRequest,
    out: &Path,
    progress: &Progress,
) -> Result<()> {
    let dataset = request.dataset;
    let shape = dataset
        .image_shape(request.image_size)
        .map_err(anyhow::Error::msg)?;
    let (from, to) = (request.from, request.from.compose(request.intervene));
    let concepts = dataset.concepts();
    if from == to {
        bail!(
            "intervening on {} changes nothing in {}: name a concept it does not already intervene on",
            request.intervene.name(&concepts),
            from.name(&concepts)
        );
    }
    require_empty(out)?;
    let mut rng = Rng::new(request.seed);
    let (factual, counterfactual) = dataset
        .counterfactuals(from, to, request.n, &mut rng)
        .with_context(|| {
            format!(
                "{} has no generator to draw counterfactuals from",
                dataset.name()
            )
        })?;
    let bar = progress.bar("counterfactuals", 2 * request.n);
    for (context, examples) in [(from, factual), (to, counterfactual)] {
        bar.set_message(context.name(&concepts));
        write_examples(&out.join(context.name(&concepts)), &examples, shape, &bar)?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// `folder/<index>.png` for every example, and `folder/latents.csv`: what generated each.
fn write_examples(
    folder: &Path,
    examples: &Examples,
    shape: ImageShape,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    std::fs::create_dir_all(folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let digits = examples.len().to_string().len().max(5);
    let mut latents = csv_writer(&folder.join("latents.csv"))?;
    // In chunks, so memory stays bounded whatever the count.
    for start in (0..examples.len()).step_by(256) {
        let end = (start + 256).min(examples.len());
        let images = examples.render(start..end, shape.size);
        for (offset, chw) in images.chunks(shape.numel()).enumerate() {
            let index = start + offset;
            let file = format!("{index:0digits$}.png");
            write_image(&folder.join(&file), chw, shape)?;
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
        .with_context(|| format!("cannot write {}", folder.display()))
}

/// Refuses a folder that already holds something.
fn require_empty(out: &Path) -> Result<()> {
    if out.exists()
        && std::fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_some()
    {
        bail!("{} already exists and is not empty", out.display());
    }
    Ok(())
}

fn csv_writer(path: &Path) -> Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}
