//! A run folder: `config.json`, `metrics.csv`, `best.bin` (best weights, the export format),
//! `checkpoint.bin` and `checkpoint.prev.bin` (the last two checkpoints) and `lock` (held by the
//! one process writing the folder), plus what evaluation and sampling add later.

use super::checkpoint::Checkpoints;
use super::config::TrainConfig;
use crate::files::{atomic_write, temp_path};
use anyhow::{Context as _, Result, bail};
use std::fs::{File, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
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
    /// The scores `eval` (or `experiment`) wrote for the best weights.
    pub fn scores_path(&self) -> PathBuf {
        self.dir.join("metrics.json")
    }
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints::in_folder(&self.dir)
    }

    /// Makes this process the folder's only writer until the returned guard drops (or the
    /// process dies: the operating system releases the lock, so a killed run never leaves a
    /// stale one). The folder must exist.
    pub fn lock(&self) -> Result<RunLock> {
        if !self.dir.is_dir() {
            bail!("no run folder at {}", self.dir.display());
        }
        let path = self.dir.join("lock");
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                bail!(
                    "{} is in use by another intervene process (pid {}); wait for it to finish or stop it",
                    self.dir.display(),
                    holder.trim()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        // The holder's pid, for the message above; the lock itself is what counts.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        // What a killed writer may have left half-written; nobody else writes here now.
        let written = [
            self.config_path(),
            self.metrics_path(),
            self.best_path(),
            self.checkpoints().latest,
            self.scores_path(),
        ];
        for path in written {
            let _ = std::fs::remove_file(temp_path(&path));
        }
        Ok(RunLock { _file: file })
    }

    /// Whether the folder holds a run (its config is written last when a run is created).
    pub fn exists(&self) -> bool {
        self.config_path().exists()
    }

    /// Refuses to create a run where one exists already.
    pub fn ensure_new(&self) -> Result<()> {
        if self.exists() {
            bail!(
                "{} already holds a run; continue it with `intervene train --resume {}` or pick another --out",
                self.dir.display(),
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Writes a new run's files; `config.json` last, so that a folder with a config always has
    /// its first checkpoint (written before this) and metrics file.
    pub fn create(&self, config: &TrainConfig) -> Result<()> {
        atomic_write(&self.metrics_path(), format!("{CSV_HEADER}\n").as_bytes())?;
        atomic_write(
            &self.config_path(),
            serde_json::to_string_pretty(config)?.as_bytes(),
        )
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

    /// Appends one epoch's row (rewriting the file atomically, it is small), replacing any rows
    /// of that epoch or later, so no epoch is ever listed twice.
    pub fn append_metrics(&self, row: &EpochRow) -> Result<()> {
        let mut rows = self.read_metrics()?;
        rows.retain(|r| r.epoch < row.epoch);
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

/// Held while a process writes a run folder; see [`RunFolder::lock`].
pub struct RunLock {
    _file: File,
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
