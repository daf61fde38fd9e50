//! The command line: argument types only; `main.rs` dispatches them.

use crate::bench::Layers;
use crate::data::DataSource;
use crate::device::DeviceChoice;
use crate::evaluation::norm_statistics::NormStatistics;
use crate::flags::whole;
use crate::settings::{FileFlags, FromFile, rebase};
use crate::training::config::{BATCH_SIZE, IMAGE_SIZE, Overrides, Preset, TrainConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use intervene::config::{Architecture, Method};
use intervene::data::DatasetKind;
use intervene::weights::Precision;
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use std::path::Path;
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
    /// Draw the training curves of several runs on shared axes (one SVG).
    Plot(PlotArgs),
    /// Convert a model trained with the paper's PyTorch reference into a weights file.
    ImportTorch(ImportTorchArgs),
}

#[derive(Args)]
pub struct PlotArgs {
    /// Run folders (their `metrics.csv`).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The SVG to write.
    #[arg(long)]
    pub out: PathBuf,
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
    #[command(flatten)]
    pub file: FileFlags,
    /// Write Slurm job arrays and their collect job here (see the slurm settings), run nothing.
    #[arg(long)]
    pub emit_slurm: Option<PathBuf>,
    /// Train and evaluate only; write no tables.
    #[arg(long, conflicts_with = "report_only")]
    pub no_report: bool,
    /// Write tables and plots from finished runs only.
    #[arg(long)]
    pub report_only: bool,
    /// Train and evaluate only the N-th run of the plan (counted from 0, in the order
    /// `--print-config` lists them): what each Slurm task runs.
    #[arg(long, value_name = "N", conflicts_with = "report_only")]
    pub run: Option<usize>,
    #[command(flatten)]
    pub settings: ExperimentSettings,
}

/// An experiment's settings: flags, or keys of a `--config` file (same names, `[train]` and
/// `[slurm]` tables for those groups).
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSettings {
    /// [default: quad-dependent]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetKind>,
    /// Read the dataset from this folder instead (image folders, or the paper's files; see
    /// docs/method.md#your-own-data).
    #[arg(long, conflicts_with = "dataset")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// quick (2 CPU cores) or paper (the paper's settings) [default: quick].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Preset>,
    /// [default: 0]
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
    /// A subset of methods [default: all seven; cm for an --ablation].
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<Method>>,
    /// [default: auto]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceChoice>,
    /// Root of the run folders [default: runs/experiments].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<PathBuf>,
    /// Where tables and plots go, `<results>/<dataset>/` [default: results].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<PathBuf>,
    /// Evaluation samples per context [default: 1,000 for quick, 10,000 for paper].
    #[arg(long, allow_negative_numbers = true, value_parser = whole(EVAL_SAMPLES))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_samples: Option<usize>,
    /// BatchNorm statistics of the samples and edits scored [default: trained, as the paper
    /// samples]; changing it re-evaluates finished runs, it does not retrain them.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub norm_statistics: Option<NormStatistics>,
    /// Train every method at each of these values of a training setting, e.g. beta=0.5,1,2
    /// (repeat for a grid over several settings); one table and plot for the sweep.
    #[arg(long = "sweep", value_name = "SETTING=V1,V2,...")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<String>,
    /// One of the paper's ablations: its sweep with the paper's values (cm unless --methods).
    #[arg(long, value_enum, conflicts_with = "sweep")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ablation: Option<Ablation>,
    /// Settings that replace the budget's in every run.
    #[command(flatten)]
    #[serde(default, rename = "train")]
    pub train: Overrides,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "SlurmSettings::is_unset")]
    pub slurm: SlurmSettings,
}

/// The paper's ablations (its Snakefile's `expressivity_2`/`_4`, `beta`, `l2norm`, `groupnorm`
/// tables): each a sweep of one setting of cm (docs/method.md#ablations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ablation {
    /// Context-module widths: depth 2 and 4, w_in 16 and 32, w_out 8, 16 and 32.
    Expressivity,
    /// The KL weight: 0.5, 1, 2, 4.
    Beta,
    /// The causal layer's L2 penalty at the paper's 0, 1, 10, 100 (per 512-image batch).
    L2,
    /// The causal layer's group sparsity at the paper's 0, 1, 10, 100 (per 512-image batch;
    /// the paper's "groupnorm" table).
    GroupSparsity,
}

/// Where and how `--emit-slurm` jobs run: each is an `#SBATCH` line, left to the cluster's
/// defaults when not given.
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// GPUs per task; 0 trains on the CPU (device flex) [default: 1].
    #[arg(long = "slurm-gpus", value_name = "N", value_parser = whole(0..=64))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<usize>,
    /// CPU cores per task.
    #[arg(long = "slurm-cpus", value_name = "N", value_parser = whole(1..=4_096))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<usize>,
    /// Memory per task, as sbatch reads it (e.g. 16G).
    #[arg(long = "slurm-mem", value_name = "SIZE", value_parser = sbatch_value)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Time limit per task, as sbatch reads it (e.g. 24:00:00).
    #[arg(long = "slurm-time", value_name = "TIME", value_parser = sbatch_value)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[arg(long = "slurm-partition", value_name = "NAME", value_parser = sbatch_value)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[arg(long = "slurm-account", value_name = "NAME", value_parser = sbatch_value)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Any other sbatch option, written as an `#SBATCH` line (repeatable), e.g. --qos=long.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true, value_parser = sbatch_option)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
}

impl SlurmSettings {
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// A value for an `#SBATCH` line: one word (no spaces or quotes, nothing a shell would read).
pub fn sbatch_value(text: &str) -> Result<String, String> {
    let fine = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.,=+/%@".contains(c));
    match fine {
        true => Ok(text.to_string()),
        false => Err("must be one word of letters, digits and -_:.,=+/%@".into()),
    }
}

/// An sbatch option: `--name` or `--name=value`, one word.
fn sbatch_option(text: &str) -> Result<String, String> {
    match text.starts_with("--") {
        true => sbatch_value(text),
        false => Err("must be an sbatch option such as --qos=long".into()),
    }
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
    #[arg(long, conflicts_with_all = ["out", "config", "print_config"])]
    pub resume: Option<PathBuf>,
    /// With --resume: start that run over from the first epoch with its config, discarding its
    /// checkpoints, metrics and best weights.
    #[arg(long, requires = "resume")]
    pub restart: bool,
    /// Run folder to create.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub file: FileFlags,
    #[command(flatten)]
    pub settings: TrainSettings,
}

/// A training run's settings: flags, or keys of a `--config` file (same names, the training
/// settings in a `[train]` table).
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// [default: quad-dependent]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetKind>,
    /// Read the dataset from this folder instead (image folders, or the paper's files; see
    /// docs/method.md#your-own-data).
    #[arg(long, conflicts_with = "dataset")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// [default: cm]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Starting settings; the training settings override single ones [default: paper].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceChoice>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The trained base-pooled run (or weights file) that cm-frozen and cm-finetune start from.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    #[serde(default, rename = "train")]
    pub train: Overrides,
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
    /// BatchNorm statistics of the samples Concept and Compo score and of the counterfactual
    /// scores' edits (trained: as the paper samples).
    #[arg(long, value_enum, default_value = "trained")]
    pub norm_statistics: NormStatistics,
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
    /// BatchNorm statistics to sample with (trained: as the model was saved).
    #[arg(long, value_enum, default_value = "trained")]
    pub norm_statistics: NormStatistics,
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
    /// BatchNorm statistics to decode with (recomputed: per context, on the encoded training
    /// images of the images' own context; needs the model's data).
    #[arg(long, value_enum, default_value = "trained")]
    pub norm_statistics: NormStatistics,
    /// The model's data, where its run did not record a folder that still holds them.
    #[arg(long)]
    pub data: Option<PathBuf>,
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
    /// Training batch sizes to time, in order.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 512], allow_negative_numbers = true, value_parser = whole(BATCH_SIZE))]
    pub batch_sizes: Vec<usize>,
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

impl FromFile for TrainSettings {
    fn rebase(&mut self, dir: &Path) {
        rebase(&mut self.data, dir);
        rebase(&mut self.init_from, dir);
    }
}

impl ExperimentSettings {
    /// These settings with the folders they name made absolute (from the working folder).
    pub fn with_absolute_paths(&self) -> std::io::Result<Self> {
        let mut settings = self.clone();
        for path in [
            &mut settings.runs,
            &mut settings.results,
            &mut settings.data,
        ]
        .into_iter()
        .flatten()
        {
            *path = std::path::absolute(&*path)?;
        }
        Ok(settings)
    }
}

impl FromFile for ExperimentSettings {
    fn rebase(&mut self, dir: &Path) {
        rebase(&mut self.data, dir);
        rebase(&mut self.runs, dir);
        rebase(&mut self.results, dir);
    }
}

impl TrainSettings {
    /// Every setting of `config`, as a file that reproduces it.
    pub fn of(config: &TrainConfig, preset: Preset) -> Self {
        let (dataset, data) = match &config.dataset {
            DataSource::BuiltIn(kind) => (Some(*kind), None),
            DataSource::Folder { folder } => (None, Some(folder.clone())),
        };
        TrainSettings {
            dataset,
            data,
            method: Some(config.method),
            preset: Some(preset),
            device: Some(config.device),
            seed: Some(config.seed),
            init_from: config.init_from.clone(),
            train: Overrides::all_of(config),
        }
    }
}
