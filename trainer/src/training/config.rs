//! Everything a training run is: saved as `config.json` in the run folder, read back on resume.

use crate::device::DeviceChoice;
use clap::ValueEnum;
use intervene::config::{Method, ModelConfig, Widths};
use intervene::data::DatasetKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Named starting points for the hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's settings: 64 px, 50,000 images per context, batch 512, up to 100 epochs.
    Paper,
    /// A few minutes on 2 CPU cores: 32 px, fewer images and epochs, still meaningful.
    Quick,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetKind,
    pub method: Method,
    pub image_size: usize,
    pub widths: Widths,
    /// Encoder output / decoder input size `h`.
    pub hidden: usize,
    /// Images generated per training context, before the 70/30 train/validation split.
    pub per_context: usize,
    pub batch_size: usize,
    pub max_epochs: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// The cosine decay ends at this fraction of the learning rate.
    pub final_lr_fraction: f64,
    pub beta: f64,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    pub min_improvement: f64,
    pub validation_fraction: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Also checkpoint every this many batches inside an epoch (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// Abort after this many consecutive non-finite batches.
    pub max_bad_batches: usize,
    /// The trained `base-pooled` run (or weights file) that `cm-frozen` and `cm-finetune` start
    /// from.
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// `cm-finetune` unfreezes everything after this fraction of the epochs.
    #[serde(default = "default_finetune_after")]
    pub finetune_after: f64,
    /// beta-TCVAE's weight on the total correlation.
    #[serde(default = "default_tc_beta")]
    pub tc_beta: f64,
    /// Causal-layer group sparsity (L1 of blockwise L2 norms); 0 turns it off.
    #[serde(default)]
    pub group_sparsity: f64,
    /// Causal-layer L2 penalty; 0 turns it off.
    #[serde(default)]
    pub causal_l2: f64,
}

fn default_finetune_after() -> f64 {
    0.2
}

fn default_tc_beta() -> f64 {
    6.0
}

impl TrainConfig {
    pub fn preset(preset: Preset, dataset: DatasetKind, method: Method) -> Self {
        let mnist = dataset == DatasetKind::Mnist;
        let paper = TrainConfig {
            dataset,
            method,
            image_size: dataset.native_size(),
            widths: dataset.default_widths(),
            hidden: 128,
            // MNIST's built-in digits give each context a partition of 1,000.
            per_context: if mnist { 1_000 } else { 50_000 },
            batch_size: 512,
            max_epochs: 100,
            learning_rate: 1e-3,
            warmup_steps: 200,
            final_lr_fraction: 0.01,
            beta: 1.0,
            patience: 20,
            min_improvement: 1e-4,
            validation_fraction: 0.3,
            seed: 0,
            device: DeviceChoice::Auto,
            checkpoint_every: 100,
            max_bad_batches: 50,
            init_from: None,
            finetune_after: default_finetune_after(),
            tc_beta: default_tc_beta(),
            group_sparsity: 0.0,
            causal_l2: 0.0,
        };
        match (preset, mnist) {
            (Preset::Paper, _) => paper,
            (Preset::Quick, false) => TrainConfig {
                image_size: 32,
                per_context: 3_000,
                batch_size: 64,
                max_epochs: 6,
                warmup_steps: 100,
                patience: 3,
                ..paper
            },
            (Preset::Quick, true) => TrainConfig {
                batch_size: 64,
                max_epochs: 30,
                warmup_steps: 100,
                patience: 5,
                ..paper
            },
        }
    }

    pub fn model_config(&self) -> ModelConfig {
        let dataset = self.dataset;
        ModelConfig {
            architecture: dataset.architecture(),
            image: dataset
                .image_shape(self.image_size)
                .expect("validated image size"),
            concepts: dataset.concepts(),
            widths: self.widths,
            hidden: self.hidden,
            method: self.method,
        }
    }

    /// Checks every setting and names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        self.dataset.image_shape(self.image_size)?;
        self.model_config().validate()?;
        let train_per_context = self.train_per_context();
        if self.batch_size == 0 {
            return Err("--batch-size must be positive".into());
        }
        if train_per_context < self.batch_size {
            return Err(format!(
                "--per-context {} leaves {train_per_context} training images per context, fewer than --batch-size {}",
                self.per_context, self.batch_size
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) || self.validation_fraction == 0.0 {
            return Err("--validation-fraction must be in (0, 1)".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err("--lr must be a positive number".into());
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err("--beta must be a non-negative number".into());
        }
        if self.max_epochs == 0 {
            return Err("--epochs must be positive".into());
        }
        if self.method.starts_from_base_pooled() && self.init_from.is_none() {
            return Err(format!(
                "--method {} needs --init-from, a trained base-pooled run",
                self.method
            ));
        }
        if !(0.0..=1.0).contains(&self.finetune_after) {
            return Err("--finetune-after must be in [0, 1]".into());
        }
        if self.group_sparsity < 0.0 || self.causal_l2 < 0.0 || self.tc_beta < 0.0 {
            return Err("regulariser weights must be non-negative".into());
        }
        Ok(())
    }

    pub fn validation_per_context(&self) -> usize {
        ((self.per_context as f64) * self.validation_fraction).round() as usize
    }

    pub fn train_per_context(&self) -> usize {
        self.per_context - self.validation_per_context()
    }

    /// Contexts the method trains on (their index in `Context::training_contexts`).
    pub fn training_context_count(&self) -> usize {
        if self.method.trains_on_all_contexts() {
            self.dataset.concepts().len() + 1
        } else {
            1
        }
    }

    /// An epoch is (training images / batch size) batches, as in the paper.
    pub fn batches_per_epoch(&self) -> usize {
        (self.training_context_count() * self.train_per_context() / self.batch_size).max(1)
    }

    pub fn planned_steps(&self) -> usize {
        self.batches_per_epoch() * self.max_epochs
    }

    /// Whether the borrowed encoder and decoder are frozen during `epoch`.
    pub fn frozen_in(&self, epoch: usize) -> bool {
        match self.method {
            Method::CmFrozen => true,
            Method::CmFinetune => {
                (epoch as f64) < (self.max_epochs as f64 * self.finetune_after).ceil()
            }
            _ => false,
        }
    }
}
