//! `intervene demo`: the quick preset end to end. Trains the context module (`cm`) and the plain
//! VAE (`base`) with the same seed, scores both, and writes sample grids of every context,
//! composed pairs included, beside real images of the same contexts.

use crate::cli::DemoArgs;
use crate::evaluation::metrics::{EvalSettings, Metrics, evaluate, table};
use crate::files::atomic_write;
use crate::image_grid::write_grid;
use crate::model_source;
use crate::progress::Progress;
use crate::sample::sample_grid;
use crate::training::config::{Preset, TrainConfig};
use crate::training::{self, run_folder::RunFolder};
use anyhow::Result;
use burn::module::Module;
use intervene::config::Method;
use intervene::context::Context;
use intervene::data::{DatasetKind, Split};
use intervene::rng::Rng;

/// Samples per context for the demo's scores: enough to rank methods, quick to compute.
const DEMO_EVAL_SAMPLES: usize = 1_000;

pub fn run(args: &DemoArgs, progress: &Progress) -> Result<()> {
    let kind = DatasetKind::QuadDependent;
    let dataset = kind.dataset();
    let mut results: Vec<Metrics> = Vec::new();
    for method in [Method::Cm, Method::Base] {
        let dir = args.out.join(method.name());
        let run = RunFolder::new(&dir);
        if run.exists() {
            training::resume(&dir, training::Opening::Resume)?; // finishes an interrupted demo; a finished run returns at once
        } else {
            let mut config = TrainConfig::preset(Preset::Quick, kind, method)?;
            config.device = args.device;
            config.seed = args.seed;
            training::start(&dir, config)?;
        }
        let device = args.device.resolve().device;
        let model = model_source::Source::open(&dir)?
            .load(&device)?
            .model
            .valid();
        let settings = EvalSettings {
            samples: DEMO_EVAL_SAMPLES,
            seed: args.seed,
            ..EvalSettings::default()
        };
        let metrics = evaluate(&model, dataset, &settings, &device, progress)?;
        atomic_write(
            &run.scores_path(),
            serde_json::to_string_pretty(&metrics)?.as_bytes(),
        )?;
        progress.line(table(&metrics));
        if method == Method::Cm {
            let samples = args.out.join("samples");
            let contexts = Context::training_contexts(dataset.concepts().len())
                .into_iter()
                .chain(dataset.composed_contexts());
            for context in contexts {
                let name = context.name(&model.config.concepts);
                sample_grid(
                    &model,
                    context,
                    16,
                    args.seed,
                    &samples.join(format!("{name}-generated.png")),
                    &device,
                )?;
                let real = dataset.images(
                    context,
                    16,
                    model.config.image.size,
                    Split::HeldOut,
                    &mut Rng::new(args.seed),
                );
                write_grid(
                    &samples.join(format!("{name}-real.png")),
                    &real,
                    model.config.image,
                    4,
                )?;
            }
            progress.line(format!(
                "wrote generated and real grids of every context to {}",
                samples.display()
            ));
        }
        results.push(metrics);
    }
    progress.line("comparison (lower is better):");
    progress.line(format!(
        "  {:<8} {:>8} {:>8} {:>10}",
        "method", "Concept", "Compo", "Recon bpd"
    ));
    for m in &results {
        let recon = m.recon.as_ref().map_or(f64::NAN, |r| r.in_distribution_bpd);
        progress.line(format!(
            "  {:<8} {:>8.4} {:>8.4} {:>10.4}",
            m.method, m.concept.mean, m.compo.mean, recon
        ));
    }
    Ok(())
}
