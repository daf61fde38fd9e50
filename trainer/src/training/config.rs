//! Everything a training run is: saved as `config.json` in the run folder, read back on resume.
//! A run starts from a [`Preset`]; [`Overrides`], the flags `train` and `experiment` share,
//! change single settings of it.

use crate::data::DataSource;
use crate::device::DeviceChoice;
use crate::flags::{number, whole};
use anyhow::Result;
use clap::{Args, FromArgMatches as _, ValueEnum};
use intervene::config::{MAX_HIDDEN, Method, ModelConfig, NoiseLayer, Widths};
use intervene::context::Context;
use intervene::data::{Dataset, Split};
use serde::{Deserialize, Serialize};
use std::ops::RangeInclusive;
use std::path::PathBuf;

// The range of each numeric setting, checked both when flags are parsed and when a
// `config.json` is read back.
/// Images per context: up to 20x the paper's 50,000 (each is kept as a recipe, not pixels).
const PER_CONTEXT: RangeInclusive<usize> = 2..=1_000_000;
/// Batch size: up to 8x the paper's 512 (a batch of 64 px images and its activations must fit
/// in memory).
pub(crate) const BATCH_SIZE: RangeInclusive<usize> = 1..=4_096;
/// Epochs (the paper's budget is 100), also the patience.
const EPOCHS: RangeInclusive<usize> = 1..=100_000;
/// Image sides any dataset could take (each dataset then allows only its own).
pub(crate) const IMAGE_SIZE: RangeInclusive<usize> = 28..=64;
const HIDDEN: RangeInclusive<usize> = 1..=MAX_HIDDEN;
const LEARNING_RATE: RangeInclusive<f64> = 1e-12..=1e3;
/// Warm-up steps and the checkpoint interval.
const STEPS: RangeInclusive<usize> = 0..=100_000_000;
/// The weight of a loss term, and the smallest improvement (the paper's are at most 6).
const LOSS_WEIGHT: RangeInclusive<f64> = 0.0..=1e6;
const FRACTION: RangeInclusive<f64> = 0.0..=1.0;
const VALIDATION_FRACTION: RangeInclusive<f64> = 0.01..=0.99;
/// Consecutive non-finite batches before a run stops.
const BAD_BATCHES: RangeInclusive<usize> = 1..=1_000_000;
/// Adam's epsilon: positive, and small next to any gradient that matters.
const ADAM_EPSILON: RangeInclusive<f64> = 1e-20..=1.0;

/// Named starting points for the hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The paper's settings: 64 px, 50,000 images per context, batch 512, up to 100 epochs.
    Paper,
    /// A few minutes on 2 CPU cores: 32 px, fewer images and epochs, still meaningful.
    Quick,
}

/// A training run's settings. [`Overrides`] has one flag for each tunable field, named after
/// it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// A built-in dataset's name, or the folder a dataset is read from.
    pub dataset: DataSource,
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
    /// Runs saved before the option had per-concept blocks.
    #[serde(default)]
    pub noise_layer: NoiseLayer,
    /// Adam's epsilon, relative to the gradients of the per-image loss.
    #[serde(default = "default_adam_epsilon")]
    pub adam_epsilon: f64,
}

/// burn's default, which every run saved before the option used.
fn default_adam_epsilon() -> f64 {
    1e-5
}

fn default_finetune_after() -> f64 {
    0.2
}

fn default_tc_beta() -> f64 {
    6.0
}

/// Flags that change single settings of a preset. Each field is named after the
/// [`TrainConfig`] field it sets (`TrainConfig::with` joins them by name), and its doc comment
/// is the flag's help.
#[derive(Args, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Image side in pixels (quad: 32 or 64; MNIST: 28).
    #[arg(long, allow_negative_numbers = true, value_parser = whole(IMAGE_SIZE))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Context-module widths depth.w_in.w_out (e.g. 2.32.8).
    #[serde(serialize_with = "widths_as_text")]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub widths: Option<Widths>,
    /// Encoder output and decoder input size.
    #[arg(long, allow_negative_numbers = true, value_parser = whole(HIDDEN))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
    /// Images per training context, before the train/validation split.
    #[arg(long, allow_negative_numbers = true, value_parser = whole(PER_CONTEXT))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_context: Option<usize>,
    #[arg(long, allow_negative_numbers = true, value_parser = whole(BATCH_SIZE))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Most epochs to train (early stopping may end sooner).
    #[arg(long = "epochs", value_name = "EPOCHS", allow_negative_numbers = true, value_parser = whole(EPOCHS))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_epochs: Option<usize>,
    /// Peak learning rate.
    #[arg(long = "lr", value_name = "LR", allow_negative_numbers = true, value_parser = number(LEARNING_RATE))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[arg(long, allow_negative_numbers = true, value_parser = whole(STEPS))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    /// The cosine decay ends at this fraction of the peak learning rate.
    #[arg(long, allow_negative_numbers = true, value_parser = number(FRACTION))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_lr_fraction: Option<f64>,
    /// Weight of the KL term.
    #[arg(long, allow_negative_numbers = true, value_parser = number(LOSS_WEIGHT))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// Epochs without validation improvement before stopping.
    #[arg(long, allow_negative_numbers = true, value_parser = whole(EPOCHS))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Smallest drop in validation loss that counts as an improvement.
    #[arg(long, allow_negative_numbers = true, value_parser = number(LOSS_WEIGHT))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_improvement: Option<f64>,
    /// Share of each context's images held out for validation.
    #[arg(long, allow_negative_numbers = true, value_parser = number(VALIDATION_FRACTION))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_fraction: Option<f64>,
    /// Checkpoint every N batches within an epoch too (0: only at epoch ends).
    #[arg(long, allow_negative_numbers = true, value_parser = whole(STEPS))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
    /// Stop after this many consecutive batches with a non-finite loss.
    #[arg(long, allow_negative_numbers = true, value_parser = whole(BAD_BATCHES))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bad_batches: Option<usize>,
    /// cm-finetune unfreezes everything after this fraction of the epochs.
    #[arg(long, allow_negative_numbers = true, value_parser = number(FRACTION))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finetune_after: Option<f64>,
    /// beta-TCVAE's weight on the total correlation.
    #[arg(long, allow_negative_numbers = true, value_parser = number(LOSS_WEIGHT))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tc_beta: Option<f64>,
    /// Causal-layer group sparsity weight (L1 of blockwise L2 norms).
    #[arg(long, allow_negative_numbers = true, value_parser = number(LOSS_WEIGHT))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_sparsity: Option<f64>,
    /// Causal-layer L2 weight.
    #[arg(long, allow_negative_numbers = true, value_parser = number(LOSS_WEIGHT))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causal_l2: Option<f64>,
    /// What the noise layer mixes in the observational context (docs/method.md#noise-layer).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_layer: Option<NoiseLayer>,
    /// Adam's epsilon, relative to the per-image loss (the reference's 1e-8 on a loss summed over
    /// a batch of B images is 1e-8/B here).
    #[arg(long, allow_negative_numbers = true, value_parser = number(ADAM_EPSILON))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adam_epsilon: Option<f64>,
}

/// Widths as `depth.w_in.w_out`, how people write them (a run's `config.json` keeps the record).
fn widths_as_text<S: serde::Serializer>(
    widths: &Option<Widths>,
    out: S,
) -> Result<S::Ok, S::Error> {
    match widths {
        Some(w) => out.serialize_some(&w.to_string()),
        None => out.serialize_none(),
    }
}

impl Overrides {
    /// The flags' definitions, as clap holds them: the one place each setting's name, flag and
    /// range are written down.
    fn command() -> clap::Command {
        Self::augment_args(clap::Command::new("settings").no_binary_name(true))
    }

    /// The setting a name refers to: its field name (`max_epochs`) or its flag (`epochs`,
    /// `--epochs`, `per-context`).
    fn find(command: &clap::Command, name: &str) -> Option<clap::Arg> {
        let name = name.trim().trim_start_matches("--");
        command
            .get_arguments()
            .find(|arg| {
                arg.get_id() == name
                    || arg.get_long() == Some(name)
                    || arg.get_long() == Some(name.replace('_', "-").as_str())
            })
            .cloned()
    }

    /// Settings from `name=value` pairs, each value read by its flag's own parser (so with its
    /// range checked), e.g. `beta=2` or `widths=4.32.8`.
    pub fn parse_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let command = Self::command();
        let mut words = Vec::new();
        for (name, value) in pairs {
            let arg = Self::find(&command, name).ok_or_else(|| {
                let names: Vec<&str> = command
                    .get_arguments()
                    .map(|a| a.get_id().as_str())
                    .collect();
                format!(
                    "no training setting is named '{name}' (settings: {})",
                    names.join(", ")
                )
            })?;
            words.push(format!(
                "--{}",
                arg.get_long().expect("every setting is a flag")
            ));
            words.push(value.trim().to_string());
        }
        let matches = command
            .try_get_matches_from(words)
            .map_err(|e| clap_message(&e))?;
        Self::from_arg_matches(&matches).map_err(|e| clap_message(&e))
    }

    /// The canonical name of the setting `name` refers to (see [`Self::parse_pairs`]).
    pub fn field_name(name: &str) -> Option<String> {
        Self::find(&Self::command(), name).map(|a| a.get_id().to_string())
    }

    /// Every setting of `config` that has a flag, set to its value there.
    pub fn all_of(config: &TrainConfig) -> Self {
        let serde_json::Value::Object(mut settings) =
            serde_json::to_value(config).expect("settings serialise")
        else {
            unreachable!("a struct serialises to an object")
        };
        let command = Self::command();
        settings.retain(|name, _| command.get_arguments().any(|a| a.get_id() == name.as_str()));
        serde_json::from_value(serde_json::Value::Object(settings))
            .expect("a setting's flag has the setting's type")
    }

    /// These settings with `other`'s given ones on top.
    pub fn and(&self, other: &Overrides) -> Self {
        crate::settings::layered(self, other)
    }

    /// Checks each of `config`'s settings that has a flag with that flag's parser: the ranges
    /// are the flags' (widths, which are not a plain value, are checked by the model's config).
    fn check(config: &TrainConfig) -> Result<(), String> {
        let serde_json::Value::Object(settings) =
            serde_json::to_value(config).expect("settings serialise")
        else {
            unreachable!("a struct serialises to an object")
        };
        let command = Self::command();
        let mut pairs = Vec::new();
        for arg in command.get_arguments() {
            let name = arg.get_id().as_str();
            match settings.get(name) {
                Some(serde_json::Value::Number(n)) => pairs.push((name, n.to_string())),
                Some(serde_json::Value::String(s)) => pairs.push((name, s.clone())),
                // How JSON writes a NaN or an infinity, which no setting takes.
                Some(serde_json::Value::Null) => pairs.push((name, "NaN".into())),
                _ => {}
            }
        }
        Self::parse_pairs(pairs.iter().map(|(n, v)| (*n, v.as_str())))?;
        Ok(())
    }
}

/// clap's message on one line, without its `error:` prefix and help hint.
fn clap_message(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_string()
}

impl TrainConfig {
    /// `preset`'s settings for `method` on `data`. The dataset is opened (a folder is listed);
    /// a dataset on disk trains on at most the images its smallest training context holds.
    pub fn preset(preset: Preset, data: impl Into<DataSource>, method: Method) -> Result<Self> {
        let data = data.into();
        let dataset = data.open()?;
        let paper = TrainConfig {
            dataset: data,
            method,
            image_size: dataset.native_shape().size,
            widths: dataset.default_widths(),
            hidden: 128,
            per_context: dataset.paper_per_context(),
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
            noise_layer: NoiseLayer::Block,
            adam_epsilon: default_adam_epsilon(),
        };
        let mut config = match preset {
            Preset::Paper => paper,
            Preset::Quick => {
                let quick = dataset.quick_budget();
                TrainConfig {
                    image_size: quick.image_size,
                    per_context: quick.per_context,
                    batch_size: 64,
                    max_epochs: quick.max_epochs,
                    warmup_steps: 100,
                    patience: quick.patience,
                    ..paper
                }
            }
        };
        if let Some(available) = config.images_available(dataset) {
            config.per_context = config.per_context.min(available);
        }
        Ok(config)
    }

    /// The fewest training images any training context of a dataset on disk holds.
    fn images_available(&self, dataset: &dyn Dataset) -> Option<usize> {
        Context::training_contexts(dataset.concepts().len())
            .into_iter()
            .filter_map(|c| dataset.available(c, Split::Training))
            .min()
    }

    /// The dataset these settings train on. Panics if it cannot be opened: [`Self::validate`]
    /// opens it first.
    pub fn data(&self) -> &'static dyn Dataset {
        self.dataset
            .open()
            .expect("the dataset was opened when the settings were validated")
    }

    /// These settings with every given override applied.
    pub fn with(self, overrides: &Overrides) -> Self {
        let serde_json::Value::Object(mut settings) =
            serde_json::to_value(&self).expect("settings serialise")
        else {
            unreachable!("a struct serialises to an object")
        };
        let serde_json::Value::Object(changes) =
            serde_json::to_value(overrides).expect("overrides serialise")
        else {
            unreachable!("a struct serialises to an object")
        };
        for (name, value) in changes {
            assert!(
                settings.contains_key(&name),
                "override {name} names no setting"
            );
            settings.insert(name, value);
        }
        serde_json::from_value(serde_json::Value::Object(settings))
            .expect("an override has its setting's type")
    }

    /// The settings that decide what a run learns, by name: all but the device, where
    /// cm-frozen and cm-finetune start from (a path, the same run wherever it is), and the
    /// checkpoint and bad-batch bookkeeping.
    pub fn identity(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let serde_json::Value::Object(mut settings) =
            serde_json::to_value(self).expect("settings serialise")
        else {
            unreachable!("a struct serialises to an object")
        };
        for bookkeeping in ["device", "init_from", "checkpoint_every", "max_bad_batches"] {
            settings.remove(bookkeeping);
        }
        settings.into_iter().collect()
    }

    pub fn model_config(&self) -> ModelConfig {
        let dataset = self.data();
        ModelConfig {
            architecture: dataset.architecture(),
            image: dataset
                .image_shape(self.image_size)
                .expect("validated image size"),
            concepts: dataset.concepts(),
            widths: self.widths,
            hidden: self.hidden,
            method: self.method,
            noise_layer: self.noise_layer,
        }
    }

    /// Checks every setting and names the first bad one. The upper bounds are far above any
    /// real run (the paper's: 50,000 images per context, batch 512, 100 epochs) and keep a
    /// hand-edited `config.json` from exhausting memory.
    pub fn validate(&self) -> Result<(), String> {
        let dataset = self.dataset.open().map_err(|e| format!("{e:#}"))?;
        dataset.image_shape(self.image_size)?;
        if let Some(available) = self.images_available(dataset)
            && self.per_context > available
        {
            return Err(format!(
                "--per-context {} is more than the {available} training images of {}'s smallest training context",
                self.per_context,
                dataset.name()
            ));
        }
        self.model_config().validate()?;
        Overrides::check(self)?;
        let train_per_context = self.train_per_context();
        if train_per_context < self.batch_size {
            return Err(format!(
                "--per-context {} leaves {train_per_context} training images per context, fewer than --batch-size {}",
                self.per_context, self.batch_size
            ));
        }
        if self.method.starts_from_base_pooled() && self.init_from.is_none() {
            return Err(format!(
                "--method {} needs --init-from, a trained base-pooled run",
                self.method
            ));
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
            self.data().concepts().len() + 1
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

/// A cm model on quad small enough to build and train a step of in milliseconds: the unit tests'
/// one tiny configuration.
#[cfg(test)]
pub fn tiny() -> TrainConfig {
    use intervene::data::DatasetKind;
    let mut config = TrainConfig::preset(Preset::Quick, DatasetKind::QuadDependent, Method::Cm)
        .expect("the quick preset");
    config.widths = "2.4.2".parse().expect("widths");
    config.hidden = 16;
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use intervene::data::DatasetKind;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        overrides: Overrides,
    }

    fn quick() -> TrainConfig {
        TrainConfig::preset(Preset::Quick, DatasetKind::QuadDependent, Method::Cm).unwrap()
    }

    /// Every flag reaches the setting it is named after, and nothing else changes.
    #[test]
    fn every_override_lands_on_its_setting() {
        let flags = Flags::parse_from([
            "x",
            "--image-size",
            "64",
            "--widths",
            "3.16.4",
            "--hidden",
            "64",
            "--per-context",
            "1000",
            "--batch-size",
            "32",
            "--epochs",
            "9",
            "--lr",
            "0.002",
            "--warmup-steps",
            "7",
            "--beta",
            "0.5",
            "--patience",
            "4",
            "--min-improvement",
            "0.01",
            "--validation-fraction",
            "0.2",
            "--checkpoint-every",
            "11",
            "--finetune-after",
            "0.5",
            "--tc-beta",
            "3",
            "--group-sparsity",
            "0.1",
            "--causal-l2",
            "0.2",
        ]);
        let expected = TrainConfig {
            image_size: 64,
            widths: "3.16.4".parse().unwrap(),
            hidden: 64,
            per_context: 1000,
            batch_size: 32,
            max_epochs: 9,
            learning_rate: 0.002,
            warmup_steps: 7,
            beta: 0.5,
            patience: 4,
            min_improvement: 0.01,
            validation_fraction: 0.2,
            checkpoint_every: 11,
            finetune_after: 0.5,
            tc_beta: 3.0,
            group_sparsity: 0.1,
            causal_l2: 0.2,
            ..quick()
        };
        assert_eq!(quick().with(&flags.overrides), expected);
        assert_eq!(quick().with(&Overrides::default()), quick());
    }

    #[test]
    fn non_finite_numbers_are_refused_when_parsed() {
        for flag in ["--lr", "--beta", "--tc-beta", "--min-improvement"] {
            for value in ["nan", "inf", "-inf"] {
                assert!(
                    Flags::try_parse_from(["x", flag, value]).is_err(),
                    "{flag} {value}"
                );
            }
        }
    }

    #[test]
    fn validate_names_the_bad_setting() {
        type Change = fn(&mut TrainConfig);
        let cases: [(Change, &str); 6] = [
            (|c| c.batch_size = 0, "--batch-size"),
            (|c| c.per_context = usize::MAX, "--per-context"),
            (|c| c.learning_rate = f64::NAN, "--lr"),
            (|c| c.min_improvement = f64::INFINITY, "--min-improvement"),
            (|c| c.hidden = 1 << 20, "hidden size"),
            (|c| c.validation_fraction = 1.0, "--validation-fraction"),
        ];
        assert_eq!(quick().validate(), Ok(()));
        for (change, name) in cases {
            let mut config = quick();
            change(&mut config);
            let message = config.validate().unwrap_err();
            assert!(message.contains(name), "{name}: {message}");
        }
    }
}
