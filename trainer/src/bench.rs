//! `intervene bench`: training throughput and generation latency of the default 64 px model.

use crate::data::DataSource;
use crate::data::loader::{Batch, BatchMaker, TrainingData, plan_epoch};
use crate::device::DeviceChoice;
use crate::evaluation::metrics::generate;
use crate::memory;
use crate::progress::Progress;
use crate::training::Learner;
use crate::training::config::{Preset, TrainConfig};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use intervene::config::Method;
use intervene::context::Context;
use intervene::data::{DatasetKind, Split};
use intervene::model::block_linear::BlockLinear;
use intervene::model::{HostImages, StageKernels};
use intervene::rng::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

#[derive(Serialize)]
pub struct BenchReport {
    pub device: String,
    /// The GPU features this binary was built with (trainer/Cargo.toml), so that a report says
    /// which build it measured.
    pub gpu_features: Vec<&'static str>,
    pub image_size: usize,
    /// Median over the timed rounds.
    pub train_imgs_per_s: BTreeMap<String, f64>,
    /// Every round's rate, to show the spread.
    pub train_rounds_imgs_per_s: BTreeMap<String, Vec<f64>>,
    /// Most heap bytes live at once during one training step (weights, optimizer state,
    /// activations, gradients), in MB. On a GPU device the tensors live in GPU memory instead.
    pub train_step_peak_heap_mb: BTreeMap<String, f64>,
    pub gen_ms: BTreeMap<String, f64>,
    /// One 6-block `32 -> 32` block-diagonal layer at batch 512, forward, in microseconds:
    /// batched per-block matmul (what the model uses) against a dense masked matmul.
    pub block_diagonal_us: BTreeMap<String, f64>,
    /// Real images rendered per second at the bench's image size, on every core: how fast the
    /// data can come.
    pub render_imgs_per_s: BTreeMap<String, f64>,
    /// Training images per second the loader delivers at batch 512 (drawing, rendering,
    /// channels-last layout, noise): what feeds a GPU.
    pub loader_imgs_per_s: BTreeMap<String, f64>,
    /// Off the CPU: one training step between two device syncs, in ms, per batch size. Against
    /// the kernels' own time (cubecl's profile, docs/performance.md#kernel-profile) it says how
    /// busy the GPU is during a step.
    pub train_synced_step_ms: BTreeMap<String, f64>,
}

/// Which convolution layers `bench` times off the CPU (on the CPU there is one choice).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layers {
    /// The model's own for the device: patch-gather products on a GPU.
    Model,
    /// Those, then burn's `Conv2d` / `ConvTranspose2d` layers for comparison (slow on a software
    /// GPU: minutes at batch 512).
    Both,
}

pub struct BenchSettings {
    pub device: DeviceChoice,
    pub image_size: usize,
    /// Training steps per timed round.
    pub steps: usize,
    /// Training batch sizes timed, in order.
    pub batch_sizes: Vec<usize>,
    pub layers: Layers,
}

/// Timed rounds per batch size: this machine class shares its cores, so one round can be off by
/// 20%; the median of three is steadier.
const ROUNDS: usize = 3;
/// Timed generation runs per sample count.
const GENERATION_RUNS: usize = 15;

/// The GPU features compiled into this binary.
fn gpu_features() -> Vec<&'static str> {
    [
        ("autotune", cfg!(feature = "autotune")),
        ("autotune-cache", cfg!(feature = "autotune-cache")),
        ("fusion", cfg!(feature = "fusion")),
        ("spirv", cfg!(feature = "spirv")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(settings: &BenchSettings, progress: &Progress) -> BenchReport {
    let resolved = settings.device.resolve();
    let gpu_features = gpu_features();
    progress.line(format!(
        "{} (GPU features: {})",
        resolved.name,
        if gpu_features.is_empty() {
            "none".to_string()
        } else {
            gpu_features.join(", ")
        }
    ));
    let mut config = TrainConfig::preset(Preset::Paper, DatasetKind::QuadDependent, Method::Cm)
        .expect("a built-in dataset opens");
    config.image_size = settings.image_size;
    let mut train_imgs_per_s = BTreeMap::new();
    let mut train_rounds_imgs_per_s = BTreeMap::new();
    let mut train_step_peak_heap_mb = BTreeMap::new();
    let mut learner = Learner::new(config.clone(), resolved.device.clone().autodiff())
        .expect("cm needs no --init-from");
    // Off the CPU, burn's own convolution layers are timed too, against the patch-gather
    // products the model uses there (model/feature_map.rs).
    let default_kernels = learner.model.stage_kernels();
    let mut variants = vec![(default_kernels, "")];
    if default_kernels != StageKernels::Cpu && settings.layers == Layers::Both {
        variants.push((StageKernels::Burn, "_burn_layers"));
    }
    for (kernels, suffix) in variants {
        learner.model = learner.model.clone().with_stage_kernels(kernels);
        for &batch_size in &settings.batch_sizes {
            let (rounds, peak_mb) =
                time_training(&mut learner, &config, batch_size, settings.steps);
            let rate = median(rounds.clone());
            let spread = rounds
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ");
            progress.line(format!(
                "train batch {batch_size:>3}{suffix}: {rate:.1} images/s (median of rounds {spread}), peak heap {peak_mb:.0} MB"
            ));
            let key = format!("batch{batch_size}{suffix}");
            train_imgs_per_s.insert(key.clone(), rate);
            train_rounds_imgs_per_s.insert(key.clone(), rounds);
            train_step_peak_heap_mb.insert(key, peak_mb);
        }
    }
    learner.model = learner.model.clone().with_stage_kernels(default_kernels);
    let model = learner.model.valid();
    let device = resolved.device.clone();
    let context = Context::from_indices([0, 1]);
    let mut gen_ms = BTreeMap::new();
    for n in [16, 64] {
        generate(&model, context, n, &mut Rng::new(0), n, &device);
        let times: Vec<f64> = (0..GENERATION_RUNS as u64)
            .map(|i| {
                let start = Instant::now();
                generate(&model, context, n, &mut Rng::new(i), n, &device);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let median = median(times);
        progress.line(format!(
            "generate {n:>2} composed samples: {median:.1} ms (median of {GENERATION_RUNS})"
        ));
        gen_ms.insert(format!("n{n}"), median);
    }
    let block_diagonal_us = block_diagonal(&device, progress);
    let render_imgs_per_s = rendering(settings.image_size, progress);
    let loader_imgs_per_s = loading(&config, progress);
    let train_synced_step_ms = if default_kernels == StageKernels::Cpu {
        BTreeMap::new()
    } else {
        synced_steps(
            &mut learner,
            &config,
            &settings.batch_sizes,
            &device,
            progress,
        )
    };
    BenchReport {
        device: resolved.name,
        gpu_features,
        image_size: settings.image_size,
        train_imgs_per_s,
        train_rounds_imgs_per_s,
        train_step_peak_heap_mb,
        render_imgs_per_s,
        loader_imgs_per_s,
        gen_ms,
        block_diagonal_us,
        train_synced_step_ms,
    }
}

/// Training images/s of each timed round at `batch_size`, and the peak heap of one step in MB.
/// Losses stay on the device until a round's end, as in training.
fn time_training(
    learner: &mut Learner,
    config: &TrainConfig,
    batch_size: usize,
    steps: usize,
) -> (Vec<f64>, f64) {
    let batch = synthetic_batch(
        config,
        batch_size,
        learner.model.config.latent_size(),
        learner.model.stage_kernels(),
    );
    learner.step(batch.clone(), 1e-4); // warm-up: kernels, allocations
    memory::reset_peak();
    learner.step(batch.clone(), 1e-4);
    let peak_mb = memory::peak_bytes() as f64 / 1e6;
    let rounds = (0..ROUNDS)
        .map(|_| {
            let copies: Vec<Batch> = (0..steps).map(|_| batch.clone()).collect();
            let start = Instant::now();
            let losses: Vec<Tensor<1>> = copies
                .into_iter()
                .map(|copy| learner.step_unread(copy, 1e-4))
                .collect();
            Tensor::cat(losses, 0).into_data();
            (steps * batch_size) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    (rounds, peak_mb)
}

/// One training step per batch size, each alone between two device syncs, in ms. It runs
/// last on purpose: with cubecl's kernel profile switched on (a `cubecl.toml`, as
/// scripts/gpu-epoch.sh writes), a sync closes a summary table of the kernels run since the
/// one before, so the log's last tables are exactly these steps, one per batch size.
fn synced_steps(
    learner: &mut Learner,
    config: &TrainConfig,
    batch_sizes: &[usize],
    device: &Device,
    progress: &Progress,
) -> BTreeMap<String, f64> {
    batch_sizes
        .iter()
        .map(|&batch_size| {
            let batch = synthetic_batch(
                config,
                batch_size,
                learner.model.config.latent_size(),
                learner.model.stage_kernels(),
            );
            let sync = || device.sync().expect("the device syncs");
            sync();
            let start = Instant::now();
            learner.step_unread(batch, 1e-4);
            sync();
            let ms = start.elapsed().as_secs_f64() * 1e3;
            progress.line(format!(
                "one training step between syncs, batch {batch_size:>3}: {ms:.1} ms"
            ));
            (format!("batch{batch_size}"), ms)
        })
        .collect()
}

/// Times the blocked form against the dense masked form of the same block-diagonal layer.
fn block_diagonal(device: &Device, progress: &Progress) -> BTreeMap<String, f64> {
    let (blocks, width, batch) = (6, 32, 512);
    let layer = BlockLinear::new(blocks, width, width, device);
    let n = blocks * width;
    let mut mask = vec![0f32; n * n];
    for (i, m) in mask.iter_mut().enumerate() {
        *m = f32::from((i / n) / width == (i % n) / width);
    }
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, n]), device);
    let dense = Tensor::<2>::random([n, n], Distribution::Default, device);
    let x = Tensor::<2>::random([batch, n], Distribution::Default, device);
    let time = |f: &dyn Fn() -> Tensor<2>| {
        f().into_data(); // warm-up
        let start = Instant::now();
        for _ in 0..50 {
            f().into_data();
        }
        start.elapsed().as_secs_f64() * 1e6 / 50.0
    };
    let blocked = time(&|| layer.forward(x.clone()));
    let masked = time(&|| x.clone().matmul(dense.clone() * mask.clone()));
    progress.line(format!(
        "block-diagonal layer: blocked {blocked:.0} us, dense masked {masked:.0} us"
    ));
    BTreeMap::from([
        ("blocked".to_string(), blocked),
        ("dense_masked".to_string(), masked),
    ])
}

/// Images per second each synthetic dataset renders (scenes drawn beforehand, so only the
/// rendering is timed), the median of three rounds of 1,024 images.
fn rendering(image_size: usize, progress: &Progress) -> BTreeMap<String, f64> {
    [DatasetKind::QuadDependent, DatasetKind::Scenes]
        .into_iter()
        .map(|kind| {
            let dataset = kind.dataset();
            let examples = dataset.draw(Context::OBS, 1024, Split::Training, &mut Rng::new(3));
            let rounds = (0..ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    examples.render(.., image_size);
                    examples.len() as f64 / start.elapsed().as_secs_f64()
                })
                .collect();
            let rate = median(rounds);
            progress.line(format!(
                "render {kind} at {image_size} px: {rate:.0} images/s"
            ));
            (kind.name().to_string(), rate)
        })
        .collect()
}

/// Images per second the training loader makes, batch 512: for each synthetic dataset, and
/// for quad written to disk and read back through `--data`'s cache (what a dataset on disk
/// trains at). The median of three rounds of four batches.
fn loading(config: &TrainConfig, progress: &Progress) -> BTreeMap<String, f64> {
    const BATCH: usize = 512;
    let on_disk = quad_on_disk(config.image_size, 2 * BATCH, progress);
    let sources: Vec<(String, DataSource)> = [DatasetKind::QuadDependent, DatasetKind::Scenes]
        .into_iter()
        .map(|kind| (kind.name().to_string(), kind.into()))
        .chain(
            on_disk
                .as_ref()
                .map(|(_, source)| ("quad-dependent-from-disk".to_string(), source.clone())),
        )
        .collect();
    sources
        .into_iter()
        .map(|(name, source)| {
            let mut config = config.clone();
            config.dataset = source;
            config.batch_size = BATCH;
            config.per_context = 2 * BATCH;
            let data = Arc::new(TrainingData::generate(&config));
            let plan = plan_epoch(&data, &config, 0);
            // Channels-last, as the CPU kernels and the GPU's patch products take them.
            let maker = BatchMaker::new(data, &config, 0, StageKernels::Cpu);
            let rounds = (0..ROUNDS)
                .map(|_| {
                    let start = Instant::now();
                    for (index, entry) in plan.iter().take(4).enumerate() {
                        maker.make(index, entry);
                    }
                    (4 * BATCH) as f64 / start.elapsed().as_secs_f64()
                })
                .collect();
            let rate = median(rounds);
            progress.line(format!(
                "loader, {name} at {} px, batch {BATCH}: {rate:.0} images/s",
                config.image_size
            ));
            (name, rate)
        })
        .collect()
}

/// quad exported as image folders into a temporary folder and decoded into its cache there;
/// `None` (and a line saying why) if the disk would not take it.
fn quad_on_disk(
    image_size: usize,
    per_context: usize,
    progress: &Progress,
) -> Option<(tempfile::TempDir, DataSource)> {
    let made = (|| -> anyhow::Result<(tempfile::TempDir, DataSource)> {
        let dir = tempfile::tempdir()?;
        let folder = dir.path().join("quad");
        let request = crate::data::export::ExportRequest {
            dataset: DatasetKind::QuadDependent.dataset(),
            // One in ten is held out by name; this leaves each context `per_context` to train on.
            per_context: per_context * 12 / 10,
            image_size,
            seed: 5,
        };
        crate::data::export::export(&request, &folder, progress)?;
        let source = DataSource::from_folder(&folder)?;
        // Cached in the scratch folder too, so that nothing outlives the bench.
        source
            .open_caching_in(&dir.path().join("cache"))?
            .prepare(image_size)
            .map_err(anyhow::Error::msg)?;
        Ok((dir, source))
    })();
    made.map_err(|e| progress.line(format!("loader from disk not measured: {e:#}")))
        .ok()
}

/// A real batch of the obs context, rendered once so the timing covers the training step only.
fn synthetic_batch(
    config: &TrainConfig,
    batch_size: usize,
    latent: usize,
    kernels: StageKernels,
) -> Batch {
    let mut rng = Rng::new(7);
    let images = config.data().images(
        Context::single(0),
        batch_size,
        config.image_size,
        Split::Training,
        &mut rng,
    );
    let images = HostImages::new(images, config.model_config().image, kernels);
    let mut eps = vec![0f32; batch_size * latent];
    rng.fill_normal(&mut eps);
    Batch {
        context: Context::single(0),
        images,
        eps,
    }
}
