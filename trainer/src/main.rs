//! The `intervene` command line: parses flags and hands each command to the library.

use intervene_trainer::{
    bench, cli, data, demo, edit, evaluation, experiment, export, files, image_grid, import_torch,
    memory, mnist_source, model_source, progress, sample, training,
};

use anyhow::{Context as _, Result};
use burn::module::Module;
use clap::Parser;
use cli::TrainSettings;
use cli::{
    BenchArgs, Cli, Command, CounterfactualArgs, DataCommand, DataExportArgs, EditArgs, EvalArgs,
    ExperimentArgs, ExportArgs, ImportTorchArgs, PreviewArgs, SampleArgs, TrainArgs,
};
use evaluation::metrics::{EvalSettings, evaluate, table};
use evaluation::norm_statistics::{self, EditPopulation, NormStatistics, edit_decoder};
use intervene::config::Method;
use intervene::context::Context;
use intervene::counterfactual::Editor;
use intervene::data::Split;
use intervene::rng::Rng;
use intervene_trainer::data::DataSource;
use intervene_trainer::settings;
use progress::Progress;
use training::config::{Preset, TrainConfig};

/// burn allocates and frees many large tensors per step; glibc returns them to the kernel and
/// faults them back in every time (page faults were 15% of a training profile), mimalloc keeps
/// and reuses them. The wrapper counts live bytes for `bench`'s memory figure.
#[global_allocator]
static ALLOCATOR: memory::CountingMimalloc = memory::CountingMimalloc;

/// `mi_option_purge_delay` in mimalloc.h (v3): how long freed memory stays mapped. By number
/// because libmimalloc-sys (0.1.49) exports constants only for the older options.
const MIMALLOC_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // By default mimalloc returns freed memory to the kernel after 10 ms; a training step frees
    // and reallocates the same few hundred MB, which the kernel then zeroes and faults back in:
    // 15% of a training profile without this line, 7% with it (the rest are allocations too large
    // for mimalloc to keep).
    // SAFETY: sets a process-wide option before any thread but this one exists.
    unsafe { libmimalloc_sys::mi_option_set(MIMALLOC_PURGE_DELAY, -1) };
    quiet_wayland_probe();
    cpu_for_burns_defaults();
    let cli = parse_flags();
    let pool = rayon::ThreadPoolBuilder::new()
        .build()
        .expect("thread pool");
    if let Err(err) = pool.install(|| run(cli)) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// The command line, or exit: help and version as clap prints them, a usage error as one line
/// (clap's message without its usage block), exit status 2.
fn parse_flags() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            let text = err.render().to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:"))
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .collect();
            eprintln!("{}", parts.join(" "));
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let progress = Progress::new();
    mnist_source::install(cli.mnist_dir.as_deref())?;
    match cli.command {
        Command::Demo(args) => demo::run(&args, &progress),
        Command::Data {
            command: DataCommand::Preview(args),
        } => preview(args, &progress),
        Command::Data {
            command: DataCommand::Export(args),
        } => export_data(args, &progress),
        Command::Data {
            command: DataCommand::Counterfactuals(args),
        } => counterfactuals(args, &progress),
        Command::Train(args) => train(&args, &progress),
        Command::Eval(args) => eval(args, &progress),
        Command::Sample(args) => sample(args, &progress),
        Command::Edit(args) => edit(args, &progress),
        Command::Export(args) => export(args, &progress),
        Command::Experiment(args) => experiment(*args, cli.mnist_dir.as_deref(), &progress),
        Command::Bench(args) => bench(args, &progress),
        Command::ImportTorch(args) => import_torch(args, &progress),
        Command::Plot(args) => plot(args, &progress),
    }
}

/// Each run named by the part of its path that tells it from the others.
fn plot(args: cli::PlotArgs, progress: &Progress) -> Result<()> {
    let parts: Vec<Vec<String>> = args
        .runs
        .iter()
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect()
        })
        .collect();
    let shared = (0..parts.iter().map(Vec::len).min().unwrap_or(0))
        .take_while(|&i| parts.iter().all(|p| p[i] == parts[0][i]))
        .count();
    let mut runs = Vec::new();
    for (path, parts) in args.runs.iter().zip(&parts) {
        let folder = training::run_folder::RunFolder::new(path);
        folder.read_config()?;
        let rows = folder
            .read_metrics()
            .with_context(|| format!("cannot read {}", folder.metrics_path().display()))?;
        let label = match parts.len() > shared {
            true => parts[shared..].join("/"),
            false => path.display().to_string(),
        };
        runs.push((label, rows));
    }
    experiment::plots::compare_runs(&runs, &args.out)?;
    progress.line(format!(
        "wrote {} ({} runs)",
        args.out.display(),
        runs.len()
    ));
    Ok(())
}

fn import_torch(args: ImportTorchArgs, progress: &Progress) -> Result<()> {
    let request = import_torch::Request {
        checkpoint: &args.checkpoint,
        dataset: args.dataset,
        method: args.method,
        architecture: args.arch,
        concepts: args.concepts,
    };
    let imported = import_torch::import(&request, &args.out)?;
    let config = imported.config;
    progress.line(format!(
        "wrote {}: {} tensors of a {} {} model ({} concepts, widths {}, hidden {})",
        args.out.display(),
        imported.tensors,
        args.dataset.name(),
        config.method,
        config.num_concepts(),
        config.widths,
        config.hidden
    ));
    Ok(())
}

fn preview(args: PreviewArgs, progress: &Progress) -> Result<()> {
    let dataset = DataSource::choose(args.data.as_deref(), args.dataset)?.open()?;
    let size = args.image_size.unwrap_or(dataset.native_shape().size);
    let shape = dataset.image_shape(size).map_err(anyhow::Error::msg)?;
    let concepts = dataset.concepts();
    let context = Context::parse(&args.context, &concepts)?;
    dataset.prepare(size).map_err(anyhow::Error::msg)?;
    let images = dataset.images(
        context,
        args.n,
        size,
        Split::HeldOut,
        &mut Rng::new(args.seed),
    );
    image_grid::write_grid(
        &args.out,
        &images,
        shape,
        image_grid::square_columns(args.n),
    )?;
    progress.line(format!(
        "wrote {} real images of {} to {}",
        args.n,
        context.name(&concepts),
        args.out.display()
    ));
    Ok(())
}

fn export_data(args: DataExportArgs, progress: &Progress) -> Result<()> {
    let dataset = args.dataset.dataset();
    let request = data::export::ExportRequest {
        dataset,
        per_context: args.per_context,
        image_size: args.image_size.unwrap_or(dataset.native_shape().size),
        seed: args.seed,
    };
    data::export::export(&request, &args.out, progress)?;
    progress.line(format!(
        "wrote {} images per context of {} to {} (train on it with --data {2})",
        args.per_context,
        args.dataset,
        args.out.display()
    ));
    Ok(())
}

fn train(args: &TrainArgs, progress: &Progress) -> Result<()> {
    let summary = match &args.resume {
        Some(dir) => training::resume(
            dir,
            match args.restart {
                true => training::Opening::Restart,
                false => training::Opening::Resume,
            },
        )?,
        None => {
            let (config, preset) = train_config(args)?;
            if args.file.print_config {
                print!("{}", settings::to_toml(&TrainSettings::of(&config, preset)));
                return Ok(());
            }
            let out = args
                .out
                .clone()
                .context("--out is required (or --resume, or --print-config)")?;
            training::start(&out, config)?
        }
    };
    progress.line(format!(
        "done: {} epochs on {}, best valid -ELBO {}, {} skipped batches",
        summary.epochs,
        summary.device,
        summary
            .best_valid
            .map_or("n/a".into(), |v| format!("{v:.2}")),
        summary.skipped_batches
    ));
    Ok(())
}

/// Scores a run folder (writing `metrics.json` into it) or a weights file (`FILE.metrics.json`).
fn eval(args: EvalArgs, progress: &Progress) -> Result<()> {
    let source = model_source::Source::open(&args.model)?;
    let dataset = source.dataset(args.data.as_deref())?;
    let resolved = args.device.resolve();
    let model = source.load(&resolved.device)?.model.valid();
    let defaults = EvalSettings::default();
    let settings = EvalSettings {
        seed: args.seed,
        samples: args.samples.unwrap_or(defaults.samples),
        norm_statistics: args.norm_statistics,
        ..defaults
    };
    let metrics = evaluate(&model, dataset, &settings, &resolved.device, progress)?;
    print!("{}", table(&metrics));
    let out = if args.model.is_dir() {
        training::run_folder::RunFolder::new(&args.model).scores_path()
    } else {
        args.model.with_extension("metrics.json")
    };
    files::atomic_write(&out, serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    progress.line(format!("wrote {}", out.display()));
    Ok(())
}

fn sample(args: SampleArgs, progress: &Progress) -> Result<()> {
    let source = model_source::Source::open(&args.model)?;
    let context = Context::parse(&args.intervene, &source.config.concepts)?;
    let resolved = args.device.resolve();
    let model = source.load(&resolved.device)?.model.valid();
    let model = norm_statistics::sampler(
        &model,
        context,
        args.norm_statistics,
        args.seed,
        &resolved.device,
    );
    let degenerate = sample::sample_grid(
        &model,
        context,
        args.n,
        args.seed,
        &args.out,
        &resolved.device,
    )?;
    let name = context.name(&source.config.concepts);
    progress.line(format!(
        "wrote {} samples of {name} to {}",
        args.n,
        args.out.display()
    ));
    if let Some(why) = degenerate {
        progress.line(format!("warning: {why}"));
    }
    Ok(())
}

fn counterfactuals(args: CounterfactualArgs, progress: &Progress) -> Result<()> {
    let dataset = args.dataset.dataset();
    let concepts = dataset.concepts();
    let request = data::export::CounterfactualRequest {
        dataset,
        from: Context::parse(&args.from, &concepts)?,
        intervene: Context::parse(&args.intervene, &concepts)?,
        n: args.n,
        image_size: args.image_size.unwrap_or(dataset.native_shape().size),
        seed: args.seed,
    };
    data::export::counterfactuals(&request, &args.out, progress)?;
    let to = request.from.compose(request.intervene);
    progress.line(format!(
        "wrote {} images of {} and their counterfactuals under {} to {}",
        args.n,
        request.from.name(&concepts),
        to.name(&concepts),
        args.out.display()
    ));
    Ok(())
}

fn edit(args: EditArgs, progress: &Progress) -> Result<()> {
    let source = model_source::Source::open(&args.model)?;
    let concepts = &source.config.concepts;
    let request = intervene::counterfactual::Edit {
        from: Context::parse(&args.from, concepts)?,
        intervene: Context::parse(&args.intervene, concepts)?,
        shifts: edit::parse_shifts(&args.shifts, concepts)?,
    };
    let resolved = args.device.resolve();
    let mut model = source.load(&resolved.device)?.model;
    if let Some(file) = &args.encoder {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        model = intervene::weights::attach_encoder(&bytes, model, source.bytes())
            .with_context(|| format!("cannot load {}", file.display()))?;
    }
    let model = model.valid();
    edit::needs_encoder(&model)?;
    let inputs = edit::Inputs::read(&args.images, model.config.image)?;
    let population = match args.norm_statistics {
        NormStatistics::Trained => None,
        statistics => {
            let dataset = source.dataset(args.data.as_deref())?;
            EditPopulation::new(statistics, &model, dataset, request.from, &resolved.device)?
        }
    };
    let decoder = |context| edit_decoder(&model, population.as_ref(), context, &resolved.device);
    let (factual, counterfactual) = (decoder(request.from), decoder(request.to()));
    if !model.config.method.has_context_module() {
        progress.line(format!(
            "note: a {} model has no context module, so an intervention leaves its reconstruction as it is",
            model.config.method
        ));
    }
    let written = edit::edit_files(
        Editor {
            factual: &factual,
            counterfactual: &counterfactual,
        },
        &inputs,
        &request,
        &args.out,
        args.grid.as_deref(),
        &resolved.device,
    )?;
    progress.line(format!(
        "wrote the reconstructions of {} image{} and their counterfactuals in {} to {}{}",
        written.images,
        if written.images == 1 { "" } else { "s" },
        request.to().name(concepts),
        args.out.display(),
        args.grid
            .as_ref()
            .map_or(String::new(), |g| format!(" (grid: {})", g.display()))
    ));
    if let Some(why) = written.degenerate {
        progress.line(format!("warning: {why}"));
    }
    Ok(())
}

fn export(args: ExportArgs, progress: &Progress) -> Result<()> {
    let device = burn::tensor::Device::flex();
    let loaded = model_source::Source::open(&args.model)?.load(&device)?;
    let request = export::ExportRequest {
        out: &args.out,
        precision: args.precision,
        decoder_only: args.decoder_only,
        encoder_out: args.encoder_out.as_deref(),
    };
    export::export(loaded, &request, &device, progress)?;
    Ok(())
}

fn experiment(
    args: ExperimentArgs,
    mnist_dir: Option<&std::path::Path>,
    progress: &Progress,
) -> Result<()> {
    let mut settings = settings::resolve(args.file.config.as_deref(), &args.settings)?;
    choose_source(
        (&mut settings.dataset, &mut settings.data),
        (args.settings.dataset, args.settings.data.as_ref()),
    );
    let plan = experiment::Plan::new(&settings)?;
    if args.file.print_config {
        print!("{}", experiment_settings_text(&plan)?);
        return Ok(());
    }
    if let Some(dir) = &args.emit_slurm {
        experiment::slurm::emit(&plan, mnist_dir, dir)?;
        progress.line(format!(
            "wrote {0}/experiment.toml, task.sbatch, collect.sbatch and submit.sh ({1} runs); submit with {0}/submit.sh",
            dir.display(),
            plan.all_runs().len()
        ));
        return Ok(());
    }
    if !args.report_only {
        experiment::run(&plan, args.run, progress)?;
    }
    if !args.no_report && args.run.is_none() {
        experiment::report(&plan, progress)?;
    }
    Ok(())
}

/// The resolved settings (every training setting spelled out) and, as comments, the runs.
fn experiment_settings_text(plan: &experiment::Plan) -> Result<String> {
    // Absolute, so that the text means the same wherever it is saved and read back.
    let mut settings = plan.settings.with_absolute_paths()?;
    let preset = TrainConfig::preset(plan.budget, plan.source.clone(), Method::Cm)?;
    settings.train = training::config::Overrides::all_of(&preset).and(&settings.train);
    let mut text = settings::to_toml(&settings);
    text.push_str("\n# The runs, numbered as --run counts them:\n");
    for (i, run) in plan.all_runs().into_iter().enumerate() {
        text.push_str(&format!("# {i}: {}\n", plan.run_dir(run).display()));
    }
    Ok(text)
}

/// A dataset given on the command line replaces a folder given in the file, and the other way
/// round.
fn choose_source(
    resolved: (
        &mut Option<intervene::data::DatasetKind>,
        &mut Option<std::path::PathBuf>,
    ),
    flags: (
        Option<intervene::data::DatasetKind>,
        Option<&std::path::PathBuf>,
    ),
) {
    match flags {
        (Some(kind), _) => (*resolved.0, *resolved.1) = (Some(kind), None),
        (_, Some(dir)) => (*resolved.0, *resolved.1) = (None, Some(dir.clone())),
        _ => {}
    }
}

fn bench(args: BenchArgs, progress: &Progress) -> Result<()> {
    let settings = bench::BenchSettings {
        device: args.device,
        image_size: args.image_size,
        steps: args.steps,
        batch_sizes: args.batch_sizes,
        layers: args.layers,
    };
    let report = bench::run(&settings, progress);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// Probing for GPUs loads Mesa's Vulkan drivers, whose Wayland code prints an error line when
/// `XDG_RUNTIME_DIR` is unset (headless machines, CI). Pointing it at the temp folder makes the
/// probe quiet; nothing of ours reads it.
fn quiet_wayland_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}

/// burn makes a few tensors on its default device, the GPU's where there is one: the optimizer's
/// state read from a checkpoint (moved to the run's device at its first step). Made on the CPU,
/// resuming a CPU run never starts the GPU driver (0.35 s of every resume with Mesa's lavapipe).
/// `BURN_DEVICE` set by the user wins.
fn cpu_for_burns_defaults() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// The preset with the settings file's and the flags' settings on top, and the preset.
fn train_config(args: &TrainArgs) -> Result<(TrainConfig, Preset)> {
    let mut settings = settings::resolve(args.file.config.as_deref(), &args.settings)?;
    choose_source(
        (&mut settings.dataset, &mut settings.data),
        (args.settings.dataset, args.settings.data.as_ref()),
    );
    let data = DataSource::choose(
        settings.data.as_deref(),
        settings
            .dataset
            .unwrap_or(intervene::data::DatasetKind::QuadDependent),
    )?;
    let preset = settings.preset.unwrap_or(Preset::Paper);
    let method = settings.method.unwrap_or(Method::Cm);
    let mut config = TrainConfig::preset(preset, data, method)?.with(&settings.train);
    config.device = settings.device.unwrap_or(config.device);
    config.seed = settings.seed.unwrap_or(config.seed);
    config.init_from = settings.init_from;
    Ok((config, preset))
}
