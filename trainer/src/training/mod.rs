//! Training (docs/method.md#training): one context per batch, Adam (`adam.rs`) with warm-up then cosine
//! decay, BCE + beta * KL, early stopping on validation with the best weights kept, causal weights
//! clamped after every step, non-finite batches skipped and counted, checkpoints on the way.

pub mod adam;
pub mod checkpoint;
pub mod config;
pub mod run_folder;
pub mod schedule;

use crate::data::loader::{self, Batch, TrainingData};
use crate::evaluation::elbo::{ContextElbo, elbo_per_context, pooled_negative_elbo};
use crate::files::atomic_write;
use crate::progress::Progress;
use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData, Transaction};
use checkpoint::LoopState;
use config::TrainConfig;
use intervene::config::Method;
use intervene::context::Context;
use intervene::data::Examples;
use intervene::model::Model;
use intervene::model::loss::{elbo_terms, total_correlation};
use intervene::weights::{self, Precision};
use run_folder::{EpochRow, RunFolder};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seed of the fixed validation noise, so validation scores differ only when weights do.
const VALIDATION_SEED: u64 = 0x05EE_D0F7_A11D;

/// What a finished (or stopped) run reports.
pub struct Summary {
    pub epochs: usize,
    pub best_valid: Option<f64>,
    pub skipped_batches: usize,
    pub device: String,
}

/// The result of one optimizer step.
pub enum StepOutcome {
    Trained {
        loss: f64,
    },
    /// The loss was not finite: no update, running statistics restored.
    Skipped,
}

/// A learner's state at one step ([`Learner::snapshot`]).
pub struct Snapshot {
    /// The model in inference form (`Module::valid`).
    model: Model,
    optimizer: ModuleOptimizer,
}

/// The model and optimizer under training.
pub struct Learner {
    pub model: Model,
    pub optimizer: ModuleOptimizer,
    pub config: TrainConfig,
    pub device: Device,
    /// Training images per epoch, for beta-TCVAE's total-correlation estimator.
    dataset_size: usize,
    /// Whether the borrowed encoder and decoder are frozen now (cm-frozen, cm-finetune).
    frozen: bool,
}

impl Learner {
    /// A fresh model; `cm-frozen` and `cm-finetune` take their encoder and decoder from the
    /// `base-pooled` weights named by `init_from`.
    pub fn new(config: TrainConfig, device: Device) -> Result<Self> {
        let mut model = Model::seeded(&config.model_config(), config.seed, &device);
        if config.method.starts_from_base_pooled() {
            let path = config
                .init_from
                .as_deref()
                .context("this method needs --init-from")?;
            let base = crate::model_source::Source::open(path)?;
            if base.config.method != Method::BasePooled {
                bail!(
                    "--init-from {} holds a {} model; {} starts from base-pooled",
                    path.display(),
                    base.config.method,
                    config.method
                );
            }
            let base = base.load(&device)?.model;
            model = model
                .with_encoder_and_decoder_of(base)
                .map_err(|e| anyhow::anyhow!("--init-from {}: {e}", path.display()))?;
        }
        let dataset_size = config.training_context_count() * config.train_per_context();
        let mut learner = Self {
            model,
            optimizer: adam::for_device(&device, config.adam_epsilon as f32),
            config,
            device,
            dataset_size,
            frozen: false,
        };
        learner.enter_epoch(0);
        Ok(learner)
    }

    /// Freezes or unfreezes the borrowed encoder and decoder for `epoch`, if that changes.
    pub fn enter_epoch(&mut self, epoch: usize) {
        if self.config.frozen_in(epoch) != self.frozen {
            self.apply_phase(epoch);
        }
    }

    /// Sets the frozen state for `epoch` unconditionally (after loading a checkpoint).
    fn apply_phase(&mut self, epoch: usize) {
        self.frozen = self.config.frozen_in(epoch);
        if self.config.method.starts_from_base_pooled() {
            self.model = self.model.clone().with_backbone_frozen(self.frozen);
        }
    }

    /// One step on a batch (taken by value: its buffers become the input tensors without a
    /// copy), reading the loss first: a non-finite batch is skipped and leaves the model and
    /// optimizer as they were. Reading waits for the device, so training reads losses in
    /// windows instead ([`Learner::step_unread`], `Session::settle`).
    pub fn step(&mut self, batch: Batch, learning_rate: f64) -> StepOutcome {
        let loss = self.loss(batch);
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            self.discard_pending_statistics();
            return StepOutcome::Skipped;
        }
        self.update(loss, learning_rate);
        StepOutcome::Trained { loss: value }
    }

    /// One step whose loss is not read: the update is applied whatever it is, and the loss
    /// comes back still on the device, so the device never waits for the host.
    pub fn step_unread(&mut self, batch: Batch, learning_rate: f64) -> Tensor<1> {
        let loss = self.loss(batch);
        self.update(loss.clone(), learning_rate);
        loss.detach()
    }

    /// The batch's training loss `[1]`: BCE + beta KL, plus the method's extra terms.
    fn loss(&self, batch: Batch) -> Tensor<1> {
        let n = batch.images.count();
        let latent = self.model.config.latent_size();
        let images = self.model.laid_out_images(batch.images, &self.device);
        let eps = Tensor::<2>::from_data(TensorData::new(batch.eps, [n, latent]), &self.device);
        let context = if self.config.method.uses_context_labels() {
            batch.context
        } else {
            Context::OBS
        };
        let out = self.model.forward(images.clone(), context, eps);
        let mut loss = elbo_terms(out.logits, images, out.mu.clone(), out.logvar.clone())
            .negative_elbo(self.config.beta)
            .mean();
        if self.config.method == Method::BetaTcvae {
            let tc = total_correlation(out.z, out.mu, out.logvar, self.dataset_size);
            loss = loss + tc * (self.config.tc_beta - 1.0);
        }
        if let Some(cm) = &self.model.context_module
            && (self.config.group_sparsity > 0.0 || self.config.causal_l2 > 0.0)
        {
            let (group, l2) = cm.causal.regularisers();
            loss = loss + group * self.config.group_sparsity + l2 * self.config.causal_l2;
        }
        loss
    }

    /// Backward pass, optimizer step, and the clamp on the causal weights.
    fn update(&mut self, loss: Tensor<1>, learning_rate: f64) {
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let model = self
            .optimizer
            .step(learning_rate, self.model.clone(), grads);
        self.model = model.clamped();
    }

    /// The weights, running statistics and optimizer state as they are now, to return to with
    /// [`Learner::restore`]. Nothing is copied or read back: the inference copy shares the
    /// weights' tensors and gives the running statistics layers of their own, merging the ones
    /// the last step queued exactly as the next forward would have.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            model: self.model.valid(),
            optimizer: self.optimizer.clone(),
        }
    }

    /// Back to `snapshot`: its layers become trainable again (same parameter ids, so the
    /// optimizer state applies), with running statistics no later step has touched.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.optimizer = snapshot.optimizer;
        self.model = snapshot.model.train();
    }

    /// A training-mode forward pass queues BatchNorm's new running statistics inside the layer,
    /// to be merged at its next forward; after a non-finite batch that queue holds NaNs. Reloading
    /// the weights into freshly built layers (same parameter ids, so the optimizer state still
    /// applies) drops the queue, at the price of that one update.
    fn discard_pending_statistics(&mut self) {
        let record = self.model.clone().into_record();
        let fresh = Model::new(&self.model.config, &self.device);
        self.model = fresh
            .try_load_record(record)
            .expect("a model's own record fits a model of the same config");
        if self.config.method.starts_from_base_pooled() {
            self.model = self.model.clone().with_backbone_frozen(self.frozen);
        }
    }

    fn save_checkpoint(&self, run: &RunFolder, state: &LoopState) -> Result<()> {
        run.checkpoints().save(state, &self.model, &self.optimizer)
    }
}

/// How a session begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// A new run in an empty folder, or one this process `made` (removed again if the run is
    /// refused before it exists).
    New { made: bool },
    /// The run's last checkpoint, or the one before it if the last is missing or damaged.
    Resume,
    /// The run's config from the first epoch, its checkpoints and metrics discarded.
    Restart,
}

/// Starts a new run in `dir`. A run refused before it exists (a bad `--init-from`, a full disk)
/// leaves no folder behind when this call made it.
pub fn start(dir: &Path, config: TrainConfig) -> Result<Summary> {
    ready(&config)?;
    let made = !dir.exists();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    drive(RunFolder::new(dir), config, Opening::New { made })
}

/// Continues the run in `dir` from its last checkpoint (`Resume`), or from scratch (`Restart`).
pub fn resume(dir: &Path, opening: Opening) -> Result<Summary> {
    let run = RunFolder::new(dir);
    let config = run.read_config()?;
    ready(&config)?;
    drive(run, config, opening)
}

/// Checks the settings and decodes a dataset on disk, before anything is written: a bad setting
/// or a bad image leaves no run folder behind.
fn ready(config: &TrainConfig) -> Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    config
        .data()
        .prepare(config.image_size)
        .map_err(anyhow::Error::msg)
}

fn drive(run: RunFolder, config: TrainConfig, opening: Opening) -> Result<Summary> {
    let _lock = run.lock()?;
    if let Opening::New { .. } = opening {
        run.ensure_new()?;
    }
    let dir = run.dir.clone();
    let mut session = match Session::open(run, config, opening) {
        Ok(session) => session,
        Err(refused) => {
            // Under the lock, so no other process is creating a run here.
            if opening == (Opening::New { made: true }) && !RunFolder::new(&dir).exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(refused);
        }
    };
    if session.state.finished {
        session.progress.line("this run has already finished");
        return Ok(session.summary());
    }
    session.announce();
    let data = Arc::new(TrainingData::generate(&session.config));
    let epochs_bar = session.progress.bar("epoch", session.config.max_epochs);
    let batches_bar = session
        .progress
        .bar("batch", session.config.batches_per_epoch());
    while !session.state.finished {
        epochs_bar.set_position(session.state.epoch as u64);
        let epoch = session.train_epoch(&data, &batches_bar)?;
        session.end_epoch(&data, epoch)?;
    }
    epochs_bar.finish_and_clear();
    batches_bar.finish_and_clear();
    if let (Some(best), Some(epoch)) = (session.state.best_valid, session.state.best_epoch) {
        session.progress.line(format!(
            "best weights: epoch {} (valid -ELBO {best:.2}) in {}",
            epoch + 1,
            session.run.best_path().display()
        ));
    }
    Ok(session.summary())
}

/// A run being trained: its folder, its learner and where the loop stands.
struct Session {
    run: RunFolder,
    config: TrainConfig,
    learner: Learner,
    state: LoopState,
    progress: Progress,
    device_name: String,
    consecutive_bad: usize,
    /// Whether the time the run will take has been estimated (once per process).
    estimated: bool,
}

/// A run expected to take longer than this says how long, once its speed is known.
const LONG_RUN: Duration = Duration::from_secs(30 * 60);
/// Training time left out of the speed estimate (allocations, kernel selection), then the time
/// it is measured over.
const WARM_UP: Duration = Duration::from_secs(5);
const SPEED_SAMPLE: Duration = Duration::from_secs(15);

/// What one epoch's training pass measured.
struct EpochPass {
    started: Instant,
    train_seconds: f64,
    /// Time the loop spent waiting for the loader's next batch.
    data_wait_seconds: f64,
    images: usize,
    learning_rate: f64,
}

/// Training steps per loss read (`Session::settle`): few enough that the progress bar moves
/// and a rollback replays little, many enough that the device rarely drains.
const LOSS_WINDOW: usize = 16;

/// Steps whose losses are still on the device, and where they started.
struct Window {
    start: Snapshot,
    batch: usize,
    step: usize,
    losses: Vec<Tensor<1>>,
}

impl Window {
    fn new(learner: &Learner, state: &LoopState) -> Self {
        Self {
            start: learner.snapshot(),
            batch: state.batch,
            step: state.step,
            losses: Vec::with_capacity(LOSS_WINDOW),
        }
    }
}

impl Session {
    /// A fresh learner, or a checkpoint's. The caller holds the folder's lock.
    fn open(run: RunFolder, config: TrainConfig, opening: Opening) -> Result<Self> {
        let progress = Progress::new();
        let resolved = config.device.resolve();
        let mut learner = Learner::new(config.clone(), resolved.device.autodiff())?;
        let mut state = LoopState::default();
        let checkpoints = run.checkpoints();
        let dir = run.dir.display();
        match opening {
            Opening::New { .. } => {
                // Only what a creation cut short could have left here.
                checkpoints.remove()?;
                learner.save_checkpoint(&run, &state)?;
                run.create(&config)?;
            }
            Opening::Restart => {
                checkpoints.remove()?;
                for stale in [run.best_path(), run.scores_path()] {
                    let _ = std::fs::remove_file(stale);
                }
                run.truncate_metrics(0)?;
                learner.save_checkpoint(&run, &state)?;
                progress.line(format!("restarting {dir} from the first epoch"));
            }
            Opening::Resume if !checkpoints.any() => bail!(
                "{dir} has no checkpoint (checkpoint.bin and checkpoint.prev.bin are gone), so its progress cannot be recovered; `intervene train --resume {dir} --restart` starts it over"
            ),
            Opening::Resume => {
                let restored = checkpoints
                    .load(learner.model.clone(), learner.optimizer.clone())
                    .with_context(|| {
                        format!(
                            "cannot resume {dir} (`intervene train --resume {dir} --restart` starts it over)"
                        )
                    })?;
                (state, learner.model, learner.optimizer) =
                    (restored.state, restored.model, restored.optimizer);
                learner.apply_phase(state.epoch);
                run.truncate_metrics(state.epoch)?;
                if let Some(why) = restored.fell_back {
                    progress.line(format!(
                        "warning: {why}; using the previous checkpoint instead"
                    ));
                }
                progress.line(format!(
                    "resuming {dir} from epoch {} batch {} (step {})",
                    state.epoch + 1,
                    state.batch,
                    state.step
                ));
            }
        }
        Ok(Self {
            run,
            config,
            learner,
            state,
            progress,
            device_name: resolved.name,
            consecutive_bad: 0,
            estimated: false,
        })
    }

    fn announce(&self) {
        let c = &self.config;
        self.progress.line(format!(
            "training {} on {} with {}: {} px, {} images/context, batch {}, up to {} epochs of {} batches",
            c.method,
            c.dataset,
            self.device_name,
            c.image_size,
            c.per_context,
            c.batch_size,
            c.max_epochs,
            c.batches_per_epoch()
        ));
    }

    /// Says how long the rest of the run takes at `images_per_second` when that is long, and
    /// on the CPU suggests the quick preset.
    fn estimate(&self, images_per_second: f64) {
        let c = &self.config;
        let steps_left = c.planned_steps().saturating_sub(self.state.step);
        let seconds = (steps_left * c.batch_size) as f64 / images_per_second.max(1e-9);
        if seconds < LONG_RUN.as_secs_f64() {
            return;
        }
        let minutes = (seconds / 60.0).round() as u64;
        let on_cpu = self.device_name.starts_with("flex");
        self.progress.line(format!(
            "at {images_per_second:.0} images/s the {} epochs left take about {} h {} min (early stopping may end them sooner){}",
            c.max_epochs - self.state.epoch,
            minutes / 60,
            minutes % 60,
            match on_cpu {
                true => "; on a CPU, --preset quick trains a smaller model in minutes",
                false => "",
            }
        ));
    }

    fn summary(&self) -> Summary {
        Summary {
            epochs: self.state.epoch,
            best_valid: self.state.best_valid,
            skipped_batches: self.state.skipped_batches,
            device: self.device_name.clone(),
        }
    }

    /// Trains the rest of the current epoch, checkpointing every `checkpoint_every` batches.
    ///
    /// Losses stay on the device and are read once per window of [`LOSS_WINDOW`] steps
    /// (`settle`), so a GPU is not drained after every step; the NaN guard still holds, by
    /// rolling a window with a non-finite loss back and replaying it step by step.
    fn train_epoch(
        &mut self,
        data: &Arc<TrainingData>,
        bar: &indicatif::ProgressBar,
    ) -> Result<EpochPass> {
        let config = self.config.clone();
        self.learner.enter_epoch(self.state.epoch);
        let started = Instant::now();
        let maker = loader::BatchMaker::new(
            data.clone(),
            &config,
            self.state.epoch,
            self.learner.model.stage_kernels(),
        );
        let plan = Arc::new(loader::plan_epoch(data, &config, self.state.epoch));
        let batches = loader::spawn(maker.clone(), plan.clone(), self.state.batch);
        bar.set_position(self.state.batch as u64);
        let mut pass = EpochPass {
            started,
            train_seconds: 0.0,
            data_wait_seconds: 0.0,
            images: 0,
            learning_rate: config.learning_rate,
        };
        let mut window = Window::new(&self.learner, &self.state);
        let mut speed_mark: Option<(Instant, usize)> = None;
        loop {
            let waiting = Instant::now();
            let Ok(batch) = batches.recv() else { break };
            pass.data_wait_seconds += waiting.elapsed().as_secs_f64();
            pass.learning_rate = self.learning_rate();
            pass.images += batch.images.count();
            window
                .losses
                .push(self.learner.step_unread(batch, pass.learning_rate));
            self.state.batch += 1;
            self.state.step += 1;
            let every = config.checkpoint_every;
            let checkpoint = every > 0
                && self.state.batch.is_multiple_of(every)
                && self.state.batch < config.batches_per_epoch();
            if checkpoint || window.losses.len() == LOSS_WINDOW {
                self.settle(window, &maker, &plan)?;
                window = Window::new(&self.learner, &self.state);
                bar.set_position(self.state.batch as u64);
                let images_per_second =
                    pass.images as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.1} | {images_per_second:.0} img/s{}",
                    self.state.mean_loss(),
                    best_text(&self.state)
                ));
                // The speed past the first seconds (allocations, kernel selection).
                match speed_mark {
                    None if started.elapsed() >= WARM_UP => {
                        speed_mark = Some((Instant::now(), pass.images));
                    }
                    Some((at, images)) if !self.estimated && at.elapsed() >= SPEED_SAMPLE => {
                        self.estimated = true;
                        let speed = (pass.images - images) as f64 / at.elapsed().as_secs_f64();
                        self.estimate(speed);
                    }
                    _ => {}
                }
            }
            if checkpoint {
                self.learner.save_checkpoint(&self.run, &self.state)?;
            }
        }
        self.settle(window, &maker, &plan)?;
        pass.train_seconds = started.elapsed().as_secs_f64();
        Ok(pass)
    }

    /// The learning rate of the current step.
    fn learning_rate(&self) -> f64 {
        let config = &self.config;
        schedule::learning_rate(
            self.state.step,
            config.learning_rate,
            config.warmup_steps,
            config.planned_steps(),
            config.final_lr_fraction,
        )
    }

    /// Reads a window's losses in one transfer. All finite: they count. Otherwise the learner
    /// returns to the window's start and replays its batches one by one, reading each loss
    /// before its update, so a non-finite batch is skipped exactly as if it had been read at
    /// once.
    fn settle(
        &mut self,
        window: Window,
        maker: &loader::BatchMaker,
        plan: &[(usize, Vec<usize>)],
    ) -> Result<()> {
        if window.losses.is_empty() {
            return Ok(());
        }
        let mut reading = Transaction::default();
        for loss in &window.losses {
            reading = reading.register(loss.clone());
        }
        let values: Vec<f64> = reading
            .execute()
            .into_iter()
            .map(|data| data.iter::<f32>().next().map_or(f64::NAN, f64::from))
            .collect();
        if values.iter().all(|v| v.is_finite()) {
            self.consecutive_bad = 0;
            self.state.epoch_loss_sum += values.iter().sum::<f64>();
            self.state.epoch_loss_count += values.len();
            return Ok(());
        }
        let end = self.state.batch;
        self.learner.restore(window.start);
        (self.state.batch, self.state.step) = (window.batch, window.step);
        while self.state.batch < end {
            let batch = maker.make(self.state.batch, &plan[self.state.batch]);
            match self.learner.step(batch, self.learning_rate()) {
                StepOutcome::Trained { loss } => {
                    self.consecutive_bad = 0;
                    self.state.epoch_loss_sum += loss;
                    self.state.epoch_loss_count += 1;
                }
                StepOutcome::Skipped => self.skipped()?,
            }
            self.state.batch += 1;
            self.state.step += 1;
        }
        Ok(())
    }

    /// The NaN guard's bookkeeping: count, and stop after too many in a row.
    fn skipped(&mut self) -> Result<()> {
        self.consecutive_bad += 1;
        self.state.skipped_batches += 1;
        if self.consecutive_bad >= self.config.max_bad_batches {
            bail!(
                "{} consecutive batches gave a non-finite loss (at step {}); stopping. Best weights so far are in {}; try a lower --lr",
                self.consecutive_bad,
                self.state.step,
                self.run.best_path().display()
            );
        }
        Ok(())
    }

    /// Validates, keeps the best weights, records the epoch, decides on early stopping and
    /// checkpoints.
    /// The end of an epoch: validate, keep the weights if they are the best yet, log the epoch,
    /// move the loop on (stopping early or at the last epoch), and checkpoint.
    fn end_epoch(&mut self, data: &TrainingData, pass: EpochPass) -> Result<()> {
        let terms = self.validate(data);
        let valid = pooled_negative_elbo(&terms, self.config.beta);
        let improved = self.keep_if_best(valid)?;
        self.log_epoch(&pass, &terms, valid, improved)?;
        if let Some(reason) = self.state.next_epoch(improved, &self.config) {
            self.progress.line(reason);
        }
        self.learner.save_checkpoint(&self.run, &self.state)
    }

    /// Each training context's validation negative ELBO terms, always on the same draws.
    fn validate(&self, data: &TrainingData) -> Vec<ContextElbo> {
        let sets: Vec<(Context, &Examples)> = data
            .contexts
            .iter()
            .copied()
            .zip(data.valid.iter())
            .collect();
        let device = self.learner.device.clone().inner();
        let model = self.learner.model.valid();
        elbo_per_context(&model, &sets, 256, VALIDATION_SEED, &device)
    }

    /// Writes `best.bin` if `valid` beats the best so far by the configured margin; whether it did.
    fn keep_if_best(&mut self, valid: f64) -> Result<bool> {
        let (config, state) = (&self.config, &mut self.state);
        let improved = valid.is_finite()
            && state
                .best_valid
                .is_none_or(|best| valid < best - config.min_improvement);
        if !improved {
            return Ok(false);
        }
        state.best_valid = Some(valid);
        state.best_epoch = Some(state.epoch);
        let mut metadata = serde_json::json!({
            "dataset": config.data().name(),
            "epoch": state.epoch + 1,
            "valid_negative_elbo": valid,
            "seed": config.seed,
        });
        // A dataset on disk is found again by its folder (`eval`, `sample`).
        if let Some(folder) = config.dataset.folder() {
            metadata["data"] = folder.display().to_string().into();
        }
        let model = self.learner.model.valid();
        atomic_write(
            &self.run.best_path(),
            &weights::encode(&model, Precision::F32, metadata),
        )?;
        Ok(true)
    }

    /// The epoch's row in `metrics.csv` and its line on the terminal.
    fn log_epoch(
        &self,
        pass: &EpochPass,
        terms: &[ContextElbo],
        valid: f64,
        improved: bool,
    ) -> Result<()> {
        let (config, state) = (&self.config, &self.state);
        let train_loss = state.mean_loss();
        let images_per_second = pass.images as f64 / pass.train_seconds.max(1e-9);
        let seconds = pass.started.elapsed().as_secs_f64();
        let reconstruction = pooled_negative_elbo(terms, 0.0);
        self.run.append_metrics(&EpochRow {
            epoch: state.epoch,
            train_loss,
            valid_negative_elbo: valid,
            learning_rate: pass.learning_rate,
            skipped_batches: state.skipped_batches,
            images_per_second,
            seconds,
            valid_reconstruction: Some(reconstruction),
            valid_kl: Some(pooled_negative_elbo(terms, 1.0) - reconstruction),
            valid_per_context: terms
                .iter()
                .map(|t| {
                    (
                        t.context.name(&config.data().concepts()),
                        t.negative_elbo(config.beta),
                    )
                })
                .collect(),
        })?;
        let data_wait = 100.0 * pass.data_wait_seconds / pass.train_seconds.max(1e-9);
        self.progress.line(format!(
            "epoch {:>3}/{}: train loss {train_loss:.2}, valid -ELBO {valid:.2}{}, {images_per_second:.0} img/s ({data_wait:.0}% waiting for data), {seconds:.1}s",
            state.epoch + 1,
            config.max_epochs,
            if improved { " (best)" } else { "" },
        ));
        Ok(())
    }
}

fn best_text(state: &LoopState) -> String {
    state
        .best_valid
        .map(|b| format!(" | best valid {b:.1}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::config;
    use burn::module::{ModuleVisitor, Param};

    /// Every float in the model (weights and running statistics), in visiting order.
    fn all_values(model: &Model) -> Vec<f32> {
        struct Gather(Vec<f32>);
        impl ModuleVisitor for Gather {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0
                    .extend(param.val().into_data().try_into_vec_as::<f32>().unwrap());
            }
        }
        let mut g = Gather(Vec::new());
        model.visit(&mut g);
        g.0
    }

    pub(crate) fn tiny_learner() -> Learner {
        Learner::new(config::tiny(), Device::flex().autodiff()).unwrap()
    }

    /// A batch of grey images; `noise` fills the reparameterisation noise (NaN poisons the
    /// context module's BatchNorm statistics).
    pub(crate) fn batch(learner: &Learner, noise: f32) -> Batch {
        let n = 4;
        Batch {
            context: Context::single(1),
            images: intervene::model::HostImages::new(
                vec![0.5; n * learner.model.config.image.numel()],
                learner.model.config.image,
                learner.model.stage_kernels(),
            ),
            eps: vec![noise; n * learner.model.config.latent_size()],
        }
    }

    #[test]
    fn nan_batches_are_skipped_without_touching_weights_or_statistics() {
        let mut learner = tiny_learner();
        assert!(matches!(
            learner.step(batch(&learner, 0.1), 1e-3),
            StepOutcome::Trained { .. }
        ));
        let weights_before = all_values(&learner.model);
        assert!(matches!(
            learner.step(batch(&learner, f32::NAN), 1e-3),
            StepOutcome::Skipped
        ));
        assert_eq!(weights_before.len(), all_values(&learner.model).len());
        // Statistics queued by the bad batch would be merged by the next forward pass.
        for _ in 0..2 {
            assert!(matches!(
                learner.step(batch(&learner, 0.1), 1e-3),
                StepOutcome::Trained { .. }
            ));
        }
        let after = all_values(&learner.model);
        assert!(
            after.iter().all(|v| v.is_finite()),
            "NaN reached the model after a skipped batch"
        );
        assert_ne!(after, weights_before, "good batches train");
    }

    /// A window rolled back (`Session::settle`) leaves no trace: after a good and a non-finite
    /// unread step and a restore, a step trains exactly as it would have without the detour,
    /// so the weights, the running statistics and Adam's moments and step count all returned.
    #[test]
    fn a_restored_snapshot_is_as_if_the_window_never_ran() {
        let mut direct = tiny_learner();
        let mut detour = tiny_learner();
        // A trained step leaves its BatchNorm statistics queued in the layers, not yet merged.
        for learner in [&mut direct, &mut detour] {
            learner.step(batch(learner, 0.4), 1e-3);
        }
        let start = detour.snapshot();
        detour.step_unread(batch(&detour, 0.2), 1e-3);
        detour.step_unread(batch(&detour, f32::NAN), 1e-3);
        assert!(all_values(&detour.model).iter().any(|v| !v.is_finite()));
        detour.restore(start);
        for learner in [&mut direct, &mut detour] {
            for noise in [0.1, 0.3] {
                assert!(matches!(
                    learner.step(batch(learner, noise), 1e-3),
                    StepOutcome::Trained { .. }
                ));
            }
        }
        assert_eq!(all_values(&direct.model), all_values(&detour.model));
    }

    /// A diagnostic, not a check (docs/performance.md#gpu): a run's validation -ELBO from its
    /// latest checkpoint, with the BatchNorm running statistics it stored, then with statistics
    /// refreshed by one epoch of its training batches at learning rate 0. Run with
    /// `INTERVENE_RUN=<run folder> [INTERVENE_DEVICE=wgpu] cargo test --release -p
    /// intervene-trainer --lib running_statistics_lag -- --ignored --nocapture`.
    #[test]
    #[ignore = "a diagnostic of a run folder named by INTERVENE_RUN"]
    fn running_statistics_lag() {
        use crate::device::DeviceChoice;
        let dir = std::env::var_os("INTERVENE_RUN").expect("INTERVENE_RUN names a run folder");
        let choice = std::env::var("INTERVENE_DEVICE").map_or(DeviceChoice::Flex, |name| {
            clap::ValueEnum::from_str(&name, true).expect("INTERVENE_DEVICE is flex or wgpu")
        });
        let run = RunFolder::new(std::path::Path::new(&dir));
        let config = run.read_config().unwrap();
        let data = Arc::new(TrainingData::generate(&config));
        let sets: Vec<(Context, &Examples)> = (data.contexts.iter().copied())
            .zip(data.valid.iter())
            .collect();
        let device = choice.resolve().device;
        let mut learner = Learner::new(config.clone(), device.clone().autodiff()).unwrap();
        let restored = (run.checkpoints())
            .load(learner.model.clone(), learner.optimizer.clone())
            .unwrap();
        learner.model = restored.model;
        let valid = |learner: &Learner| {
            let model = learner.model.valid();
            crate::evaluation::elbo::mean_negative_elbo(
                &model,
                &sets,
                config.beta,
                256,
                VALIDATION_SEED,
                &device,
            )
        };
        let stored = valid(&learner);
        let maker =
            loader::BatchMaker::new(data.clone(), &config, 0, learner.model.stage_kernels());
        for (index, batch) in loader::plan_epoch(&data, &config, 0).iter().enumerate() {
            learner.step(maker.make(index, batch), 0.0);
        }
        eprintln!(
            "{}, after epoch {}: valid -ELBO {stored:.2} with the stored statistics, {:.2} refreshed",
            dir.to_string_lossy(),
            restored.state.epoch,
            valid(&learner)
        );
    }

    #[test]
    fn causal_weights_stay_clamped_after_steps() {
        let mut learner = tiny_learner();
        for _ in 0..3 {
            learner.step(batch(&learner, 0.3), 1e-1);
        }
        let graph_weights = learner
            .model
            .context_module
            .as_ref()
            .unwrap()
            .causal
            .b_obs
            .val();
        let values: Vec<f32> = graph_weights.into_data().try_into_vec_as::<f32>().unwrap();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
