//! The command line: argument types only; `main.rs` dispatches them.

use crate::bench::Layers;
use crate::device::DeviceChoice;
use crate::flags::whole;
use crate::training::config::{IMAGE_SIZE, Overrides, Preset};
use clap::{Args, Parser, Subcommand};
use intervene::config::{Architecture, Method};
use intervene::data::DatasetKind;
use intervene::weights::Precision;
use std::ops::RangeInclusive;
use std::path::PathBuf;

/// Images in one written grid (`sample`, `data preview`): up to 32 x 32.
const GRID_IMAGES: RangeInclusive<usize> = 1..=1_024;
/// Images per context `data export` writes: up to the paper's 50,000 twice over.
const EXPORT_IMAGES: RangeInclusive<usize> = 1..=100_000;
/// Generated and real images per context when scoring: up to twice the paper's 10,000 (both
/// sets of one context are held in memory at once).
const EVAL_SAMPLES: RangeInclusive<usize> = 2..=20_000;

#[derive(Parser)]
#[command(
    name = "intervene",
    version,
    about = "Train, evaluate and sample generative models whose concepts can be intervened on and composed."
)]
pub struct Cli {
    /// Read MNIST from standard (uncompressed) IDX files in this folder instead of the 10,000
    /// digits built in.
    #[arg(long, global = true)]
    pub mnist_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The whole pipeline on the quick preset: train, evaluate, write sample grids.
    Demo(DemoArgs),
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Train a model into a run folder (or continue one with --resume).
    Train(Box<TrainArgs>),
    /// Score a run folder or weights file with Concept, Compo and Recon.
    Eval(EvalArgs),
    /// Write a grid of generated samples in any context.
    Sample(SampleArgs),
    /// Edit images: what each would look like had some concepts been intervened on, all else
    /// equal (its counterfactual), beside its reconstruction.
    Edit(EditArgs),
    /// Write one self-describing weights file (for the browser, or for sample/eval).
    Export(ExportArgs),
    /// Measure training images/s and generation latency.
    Bench(BenchArgs),
    /// Every method of the paper's table over seeds: train, evaluate, tabulate, plot.
    Experiment(Box<ExperimentArgs>),
    /// Convert a model trained with the paper's PyTorch reference into a weights file.
    ImportTorch(ImportTorchArgs),
}

#[derive(Args)]
pub struct ImportTorchArgs {
    /// The reference's `vae.pth` (its `model_state_dict` is read) or a bare state dict.
    pub checkpoint: PathBuf,
    /// The dataset it was trained on: fixes the concepts, their order and the image size.
    #[arg(long, value_enum)]
    pub dataset: DatasetKind,
    /// Its backbone (the reference's `--arch_id`); the dataset's own if left out.
    #[arg(long, value_enum)]
    pub arch: Option<Architecture>,
    /// Its method: cm for the reference's `concepts` arch_flag, base or base-pooled for its
    /// vanilla ones.
    #[arg(long, value_enum, default_value = "cm")]
    pub method: Method,
    /// The reference's concept order, its labels without obs, comma-separated (default: the
    /// order its loader gives the dataset).
    #[arg(long, value_delimiter = ',')]
    pub concepts: Option<Vec<String>>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct ExperimentArgs {
    #[arg(long, value_enum, default_value = "quad-dependent")]
    pub dataset: DatasetKind,
    /// Read the dataset from this folder instead (image folders, or the paper's files; see
    /// docs/method.md#your-own-data).
    #[arg(long, conflicts_with = "dataset")]
    pub data: Option<PathBuf>,
    /// quick (2 CPU cores) or paper (the paper's settings).
    #[arg(long, value_enum, default_value = "quick")]
    pub budget: Preset,
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// A subset of methods (default: all seven).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<Method>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Root of the run folders.
    #[arg(long, default_value = "runs/experiments")]
    pub runs: PathBuf,
    /// Where tables and plots go (`<results>/<dataset>/`).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Write a Slurm job array (one task per method x seed) and its collect job here, run nothing.
    #[arg(long)]
    pub emit_slurm: Option<PathBuf>,
    /// Train and evaluate only; write no tables.
    #[arg(long, conflicts_with = "report_only")]
    pub no_report: bool,
    /// Write tables and plots from finished runs only.
    #[arg(long)]
    pub report_only: bool,
    /// Evaluation samples per context (default: 1,000 for quick, 10,000 for paper).
    #[arg(long, allow_negative_numbers = true, value_parser = whole(EVAL_SAMPLES))]
    pub eval_samples: Option<usize>,
    /// Settings that replace the budget's in every run.
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Write a grid of real images of a context (composed ones too, e.g. quad1+quad2).
    Preview(PreviewArgs),
    /// Write a built-in dataset as image folders, the layout --data reads.
    Export(DataExportArgs),
    /// Write true counterfactuals: images of one context and the same draws under an
    /// intervention, paired by file name.
    Counterfactuals(CounterfactualArgs),
}

#[derive(Args)]
pub struct CounterfactualArgs {
    #[arg(long, value_enum, default_value = "quad-dependent")]
    pub dataset: DatasetKind,
    /// Concepts to intervene on, comma- or plus-separated.
    #[arg(long)]
    pub intervene: String,
    /// The factual images' context.
    #[arg(long, default_value = "obs")]
    pub from: String,
    /// Pairs to write.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = whole(EXPORT_IMAGES))]
    pub n: usize,
    /// Defaults to the dataset's native size (64 for quad, 28 for MNIST).
    #[arg(long, allow_negative_numbers = true, value_parser = whole(IMAGE_SIZE))]
    pub image_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A new (or empty) folder.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct DataExportArgs {
    #[arg(long, value_enum, default_value = "quad-dependent")]
    pub dataset: DatasetKind,
    /// Images per context (obs, each concept, each composed context).
    #[arg(long, default_value_t = 1_000, allow_negative_numbers = true, value_parser = whole(EXPORT_IMAGES))]
    pub per_context: usize,
    /// Defaults to the dataset's native size (64 for quad, 28 for MNIST).
    #[arg(long, allow_negative_numbers = true, value_parser = whole(IMAGE_SIZE))]
    pub image_size: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A new (or empty) folder.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct PreviewArgs {
    #[arg(long, value_enum, default_value = "quad-dependent")]
    pub dataset: DatasetKind,
    /// Read the dataset from this folder instead (image folders, or the paper's files; see
    /// docs/method.md#your-own-data).
    #[arg(long, conflicts_with = "dataset")]
    pub data: Option<PathBuf>,
    /// `obs`, a concept, or concepts joined by `+`.
    #[arg(long, default_value = "obs")]
    pub context: String,
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = whole(GRID_IMAGES))]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Defaults to the dataset's native size (64 for quad, 28 for MNIST).
    #[arg(long, allow_negative_numbers = true, value_parser = whole(IMAGE_SIZE))]
    pub image_size: Option<usize>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Continue the run in this folder from its last checkpoint (other flags are ignored).
    #[arg(long, conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// With --resume: start that run over from the first epoch with its config, discarding its
    /// checkpoints, metrics and best weights.
    #[arg(long, requires = "resume")]
    pub restart: bool,
    /// Run folder to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "quad-dependent")]
    pub dataset: DatasetKind,
    /// Read the dataset from this folder instead (image folders, or the paper's files; see
    /// docs/method.md#your-own-data).
    #[arg(long, conflicts_with = "dataset")]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "cm")]
    pub method: Method,
    /// Starting settings; the flags below override single ones.
    #[arg(long, value_enum, default_value = "paper")]
    pub preset: Preset,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// The trained base-pooled run (or weights file) that cm-frozen and cm-finetune start from.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder or weights file.
    pub model: PathBuf,
    /// Score against the dataset in this folder (default: the data the model was trained on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Generated and real images per context.
    #[arg(long, allow_negative_numbers = true, value_parser = whole(EVAL_SAMPLES))]
    pub samples: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Args)]
pub struct SampleArgs {
    /// Run folder or weights file.
    pub model: PathBuf,
    /// Concepts to intervene on, comma- or plus-separated (empty or `obs`: none).
    #[arg(long, default_value = "obs")]
    pub intervene: String,
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = whole(GRID_IMAGES))]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Args)]
pub struct EditArgs {
    /// Run folder or weights file (with its encoder).
    pub model: PathBuf,
    /// PNG or JPEG files; resized to the model's image size.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Concepts to intervene on, comma- or plus-separated (empty or `obs`: none).
    #[arg(long, default_value = "obs")]
    pub intervene: String,
    /// The images' own context: what was already intervened on when they were taken.
    #[arg(long, default_value = "obs")]
    pub from: String,
    /// Move a concept's noise by this many standard deviations (repeatable), e.g. size=1.5.
    #[arg(long = "shift", value_name = "CONCEPT=VALUE")]
    pub shifts: Vec<String>,
    /// The encoder file of a decoder-only weights file (`export --encoder-out`).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Folder for `<name>.png` (counterfactual) and `<name>.recon.png` (reconstruction).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write rows of input | reconstruction | counterfactual to this PNG.
    #[arg(long)]
    pub grid: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Run folder or weights file.
    pub model: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "f16")]
    pub precision: Precision,
    /// Leave out the encoder (generation still works; Recon then cannot be computed).
    #[arg(long)]
    pub decoder_only: bool,
    /// With --decoder-only: write the encoder to this file too, for editing images with the
    /// decoder-only file (the page fetches it only when a visitor edits).
    #[arg(long, requires = "decoder_only")]
    pub encoder_out: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = whole(IMAGE_SIZE))]
    pub image_size: usize,
    /// Training steps per timed round (three rounds per batch size; the median is reported).
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = whole(1..=1_000))]
    pub steps: usize,
    /// Which convolution layers to time off the CPU.
    #[arg(long, value_enum, default_value = "both")]
    pub layers: Layers,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
