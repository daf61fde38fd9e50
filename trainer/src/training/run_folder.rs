//! A run folder: `config.json`, `metrics.csv`, `best.bin` (best weights, the export format) and
//! `checkpoint.bin` (the last checkpoint), plus what evaluation and sampling add later.

use super::config::TrainConfig;
use crate::files::atomic_write;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};

pub struct RunFolder {
    pub dir: PathBuf,
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_negative_elbo: f64,
    pub learning_rate: f64,
    pub skipped_batches: usize,
    pub images_per_second: f64,
    pub seconds: f64,
}

const CSV_HEADER: &str =
    "epoch,train_loss,valid_negative_elbo,learning_rate,skipped_batches,images_per_second,seconds";

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
    pub fn best_path(&self) -> PathBuf {
        self.dir.join("best.bin")
    }
    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("checkpoint.bin")
    }

    /// Creates the folder for a new run; refuses to overwrite an existing one.
    pub fn create(&self, config: &TrainConfig) -> Result<()> {
        if self.config_path().exists() {
            bail!(
                "{} already holds a run; continue it with `intervene train --resume {}` or pick another --out",
                self.dir.display(),
                self.dir.display()
            );
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        atomic_write(
            &self.config_path(),
            serde_json::to_string_pretty(config)?.as_bytes(),
        )?;
        atomic_write(&self.metrics_path(), format!("{CSV_HEADER}\n").as_bytes())
    }

    pub fn read_config(&self) -> Result<TrainConfig> {
        let path = self.config_path();
        if !self.dir.is_dir() {
            bail!("no run folder at {}", self.dir.display());
        }
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a run folder (no config.json)",
                self.dir.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid run config", path.display()))
    }

    pub fn read_metrics(&self) -> Result<Vec<EpochRow>> {
        let text = std::fs::read_to_string(self.metrics_path()).unwrap_or_default();
        text.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(parse_row)
            .collect()
    }

    /// Appends one epoch's row (rewriting the file atomically, it is small).
    pub fn append_metrics(&self, row: &EpochRow) -> Result<()> {
        let mut rows = self.read_metrics()?;
        rows.push(row.clone());
        self.write_metrics(&rows)
    }

    /// Keeps only rows of epochs before `epoch`: after a crash, rows newer than the checkpoint
    /// belong to work that will be redone.
    pub fn truncate_metrics(&self, epoch: usize) -> Result<()> {
        let rows: Vec<EpochRow> = self
            .read_metrics()?
            .into_iter()
            .filter(|r| r.epoch < epoch)
            .collect();
        self.write_metrics(&rows)
    }

    fn write_metrics(&self, rows: &[EpochRow]) -> Result<()> {
        let mut text = format!("{CSV_HEADER}\n");
        for r in rows {
            text.push_str(&format!(
                "{},{:.4},{:.4},{:.3e},{},{:.1},{:.1}\n",
                r.epoch,
                r.train_loss,
                r.valid_negative_elbo,
                r.learning_rate,
                r.skipped_batches,
                r.images_per_second,
                r.seconds
            ));
        }
        atomic_write(&self.metrics_path(), text.as_bytes())
    }
}

fn parse_row(line: &str) -> Result<EpochRow> {
    let f: Vec<&str> = line.split(',').collect();
    if f.len() != 7 {
        bail!("bad metrics.csv row: {line}");
    }
    let num = |i: usize| {
        f[i].parse::<f64>()
            .with_context(|| format!("bad metrics.csv row: {line}"))
    };
    Ok(EpochRow {
        epoch: num(0)? as usize,
        train_loss: num(1)?,
        valid_negative_elbo: num(2)?,
        learning_rate: num(3)?,
        skipped_batches: num(4)? as usize,
        images_per_second: num(5)?,
        seconds: num(6)?,
    })
}

/// Resolves a `sample`/`eval`/`export` argument: a run folder (its best weights) or a weights file.
pub fn weights_path(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let best = RunFolder::new(path).best_path();
        if !best.exists() {
            bail!(
                "run folder {} has no best.bin yet (train it first)",
                path.display()
            );
        }
        Ok(best)
    } else if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        bail!("no run folder or weights file at {}", path.display())
    }
}
