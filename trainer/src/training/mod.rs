//! Training (spec section 5): one context per batch, Adam with warm-up then cosine decay,
//! BCE + beta * KL, early stopping on validation with the best weights kept, causal weights
//! clamped after every step, non-finite batches skipped and counted, checkpoints on the way.

pub mod checkpoint;
pub mod config;
pub mod nan_guard;
pub mod run_folder;
pub mod schedule;

use crate::data::loader::{self, Batch, TrainingData};
use crate::evaluation::elbo::mean_negative_elbo;
use crate::files::atomic_write;
use crate::progress::Progress;
use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use checkpoint::LoopState;
use config::TrainConfig;
use intervene::config::Method;
use intervene::context::Context;
use intervene::model::Model;
use intervene::model::loss::{elbo_terms, total_correlation};
use intervene::weights::{self, Precision};
use nan_guard::RunningStats;
use run_folder::{EpochRow, RunFolder};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

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
        device.seed(config.seed);
        let mut model = Model::new(&config.model_config(), &device);
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
            optimizer: AdamConfig::new().init(),
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

    /// One step on a batch; the NaN guard lives here.
    pub fn step(&mut self, batch: &Batch, learning_rate: f64) -> StepOutcome {
        let shape = self.model.config.image;
        let n = batch.images.len() / shape.numel();
        let latent = self.model.config.latent_size();
        let images = Tensor::<4>::from_data(
            TensorData::new(
                batch.images.clone(),
                [n, shape.channels, shape.size, shape.size],
            ),
            &self.device,
        );
        let eps = Tensor::<2>::from_data(
            TensorData::new(batch.eps.clone(), [n, latent]),
            &self.device,
        );
        let context = if self.config.method.uses_context_labels() {
            batch.context
        } else {
            Context::OBS
        };
        let stats = RunningStats::snapshot(&self.model);
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
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            self.model = stats.restore(self.model.clone());
            return StepOutcome::Skipped;
        }
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        let model = self
            .optimizer
            .step(learning_rate, self.model.clone(), grads);
        self.model = model.clamped();
        StepOutcome::Trained { loss: value }
    }

    fn save_checkpoint(&self, run: &RunFolder, state: &LoopState) -> Result<()> {
        checkpoint::save(&run.checkpoint_path(), state, &self.model, &self.optimizer)
    }
}

/// Starts a new run in `dir`.
pub fn start(dir: &Path, config: TrainConfig) -> Result<Summary> {
    config.validate().map_err(anyhow::Error::msg)?;
    let run = RunFolder::new(dir);
    run.create(&config)?;
    drive(run, config, false)
}

/// Continues the run in `dir` from its last checkpoint.
pub fn resume(dir: &Path) -> Result<Summary> {
    let run = RunFolder::new(dir);
    let config = run.read_config()?;
    config.validate().map_err(anyhow::Error::msg)?;
    drive(run, config, true)
}

fn drive(run: RunFolder, config: TrainConfig, resuming: bool) -> Result<Summary> {
    let progress = Progress::new();
    let resolved = config.device.resolve();
    let mut learner = Learner::new(config.clone(), resolved.device.clone().autodiff())?;
    let mut state = LoopState::default();
    if resuming && run.checkpoint_path().exists() {
        let (s, model, optimizer) = checkpoint::load(
            &run.checkpoint_path(),
            learner.model.clone(),
            learner.optimizer.clone(),
        )?;
        (state, learner.model, learner.optimizer) = (s, model, optimizer);
        learner.apply_phase(state.epoch);
        run.truncate_metrics(state.epoch)?;
        progress.line(format!(
            "resuming {} from epoch {} batch {} (step {})",
            run.dir.display(),
            state.epoch + 1,
            state.batch,
            state.step
        ));
    } else if resuming {
        run.truncate_metrics(0)?;
        progress.line(format!(
            "{} has no checkpoint yet: starting from the beginning",
            run.dir.display()
        ));
    }
    let summary = |state: &LoopState| Summary {
        epochs: state.epoch,
        best_valid: state.best_valid,
        skipped_batches: state.skipped_batches,
        device: resolved.name.clone(),
    };
    if state.finished {
        progress.line("this run has already finished");
        return Ok(summary(&state));
    }
    progress.line(format!(
        "training {} on {} with {}: {} px, {} images/context, batch {}, up to {} epochs of {} batches",
        config.method,
        config.dataset,
        resolved.name,
        config.image_size,
        config.per_context,
        config.batch_size,
        config.max_epochs,
        config.batches_per_epoch()
    ));
    let data = Arc::new(TrainingData::generate(&config));
    let latent = learner.model.config.latent_size();
    let epochs_bar = progress.bar("epoch", config.max_epochs);
    epochs_bar.set_position(state.epoch as u64);
    let batches_bar = progress.bar("batch", config.batches_per_epoch());
    let mut consecutive_bad = 0usize;

    while state.epoch < config.max_epochs {
        learner.enter_epoch(state.epoch);
        let epoch_start = Instant::now();
        let plan = loader::plan_epoch(&data, &config, state.epoch);
        let batches = loader::spawn(
            data.clone(),
            &config,
            state.epoch,
            plan,
            state.batch,
            latent,
        );
        batches_bar.set_position(state.batch as u64);
        let (mut images_seen, mut lr) = (0usize, config.learning_rate);
        for batch in batches {
            lr = schedule::learning_rate(
                state.step,
                config.learning_rate,
                config.warmup_steps,
                config.planned_steps(),
                config.final_lr_fraction,
            );
            match learner.step(&batch, lr) {
                StepOutcome::Trained { loss } => {
                    consecutive_bad = 0;
                    state.epoch_loss_sum += loss;
                    state.epoch_loss_count += 1;
                }
                StepOutcome::Skipped => {
                    consecutive_bad += 1;
                    state.skipped_batches += 1;
                    if consecutive_bad >= config.max_bad_batches {
                        bail!(
                            "{consecutive_bad} consecutive batches gave a non-finite loss (at step {}); stopping. \
                             Best weights so far are in {}; try a lower --lr",
                            state.step,
                            run.best_path().display()
                        );
                    }
                }
            }
            images_seen += batch.images.len() / learner.model.config.image.numel();
            state.batch += 1;
            state.step += 1;
            let rate = images_seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            batches_bar.set_position(state.batch as u64);
            batches_bar.set_message(format!(
                "loss {:.1} | {:.0} img/s{}",
                state.epoch_loss_sum / state.epoch_loss_count.max(1) as f64,
                rate,
                best_text(&state)
            ));
            if config.checkpoint_every > 0
                && state.batch % config.checkpoint_every == 0
                && state.batch < config.batches_per_epoch()
            {
                learner.save_checkpoint(&run, &state)?;
            }
        }
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let eval_model = learner.model.valid();
        let eval_device = learner.device.clone().inner();
        let sets: Vec<(Context, &intervene::data::Examples)> = data
            .contexts
            .iter()
            .copied()
            .zip(data.valid.iter())
            .collect();
        let valid = mean_negative_elbo(
            &eval_model,
            &sets,
            config.beta,
            256,
            VALIDATION_SEED,
            &eval_device,
        );
        let improved = valid.is_finite()
            && state
                .best_valid
                .is_none_or(|best| valid < best - config.min_improvement);
        if improved {
            state.best_valid = Some(valid);
            state.best_epoch = Some(state.epoch);
            state.epochs_without_improvement = 0;
            let metadata = serde_json::json!({
                "dataset": config.dataset.name(),
                "epoch": state.epoch + 1,
                "valid_negative_elbo": valid,
                "seed": config.seed,
            });
            atomic_write(
                &run.best_path(),
                &weights::encode(&eval_model, Precision::F32, metadata),
            )?;
        } else {
            state.epochs_without_improvement += 1;
        }
        run.append_metrics(&EpochRow {
            epoch: state.epoch,
            train_loss: state.epoch_loss_sum / state.epoch_loss_count.max(1) as f64,
            valid_negative_elbo: valid,
            learning_rate: lr,
            skipped_batches: state.skipped_batches,
            images_per_second: images_seen as f64 / train_seconds.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
        })?;
        progress.line(format!(
            "epoch {:>3}/{}: train loss {:.2}, valid -ELBO {:.2}{}, {:.0} img/s, {:.1}s",
            state.epoch + 1,
            config.max_epochs,
            state.epoch_loss_sum / state.epoch_loss_count.max(1) as f64,
            valid,
            if improved { " (best)" } else { "" },
            images_seen as f64 / train_seconds.max(1e-9),
            epoch_start.elapsed().as_secs_f64()
        ));
        state.elapsed_seconds += epoch_start.elapsed().as_secs_f64();
        state.epoch += 1;
        state.batch = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_loss_count = 0;
        epochs_bar.set_position(state.epoch as u64);
        if state.epochs_without_improvement >= config.patience {
            progress.line(format!(
                "early stop: no improvement for {} epochs",
                config.patience
            ));
            state.finished = true;
        }
        if state.epoch == config.max_epochs {
            state.finished = true;
        }
        learner.save_checkpoint(&run, &state)?;
        if state.finished {
            break;
        }
    }
    epochs_bar.finish_and_clear();
    batches_bar.finish_and_clear();
    if let (Some(best), Some(epoch)) = (state.best_valid, state.best_epoch) {
        progress.line(format!(
            "best weights: epoch {} (valid -ELBO {best:.2}) in {}",
            epoch + 1,
            run.best_path().display()
        ));
    }
    Ok(summary(&state))
}

fn best_text(state: &LoopState) -> String {
    state
        .best_valid
        .map(|b| format!(" | best valid {b:.1}"))
        .unwrap_or_default()
}
