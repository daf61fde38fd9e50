//! A run folder: `config.json`, `metrics.csv`, `best.bin` (best weights, the export format),
//! `checkpoint.bin` and `checkpoint.prev.bin` (the last two checkpoints) and `lock` (held by the
//! one process writing the folder), plus what evaluation and sampling add later.

use super::checkpoint::Checkpoints;
use super::config::TrainConfig;
use crate::files::{atomic_write, remove_staged};
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
    /// The validation negative ELBO's terms, nats per image (absent in rows written before
    /// they were recorded).
    pub valid_reconstruction: Option<f64>,
    pub valid_kl: Option<f64>,
    /// Validation negative ELBO per training context, by its name (`obs`, `quad1`, ...).
    pub valid_per_context: Vec<(String, f64)>,
}

/// The columns every row has, in order; then `valid_reconstruction`, `valid_kl` and a
/// `valid_<context>` column per training context.
const COLUMNS: [&str; 7] = [
    "epoch",
    "train_loss",
    "valid_negative_elbo",
    "learning_rate",
    "skipped_batches",
    "images_per_second",
    "seconds",
];
const TERMS: [&str; 2] = ["valid_reconstruction", "valid_kl"];
const PER_CONTEXT_PREFIX: &str = "valid_";

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
                // The holder writes its pid just after taking the lock: it may not be there yet.
                let pid = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                bail!(
                    "{} is in use by another intervene process{pid}; wait for it to finish or stop it",
                    self.dir.display(),
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
        remove_staged(&self.dir);
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
        atomic_write(&self.metrics_path(), header(&[]).as_bytes())?;
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

    /// The rows of `metrics.csv`, by its header's column names (so files written before a
    /// column existed still read).
    pub fn read_metrics(&self) -> Result<Vec<EpochRow>> {
        let text = std::fs::read_to_string(self.metrics_path()).unwrap_or_default();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else {
            return Ok(Vec::new());
        };
        let names: Vec<&str> = head.split(',').map(str::trim).collect();
        for required in COLUMNS {
            if !names.contains(&required) {
                bail!("metrics.csv has no {required} column");
            }
        }
        lines.map(|line| parse_row(&names, line)).collect()
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
        // Every context any row names, in the order first seen.
        let mut contexts: Vec<&str> = Vec::new();
        for (name, _) in rows.iter().flat_map(|r| &r.valid_per_context) {
            if !contexts.contains(&name.as_str()) {
                contexts.push(name);
            }
        }
        let mut text = header(&contexts);
        let optional = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
        for r in rows {
            text.push_str(&format!(
                "{},{:.4},{:.4},{:.3e},{},{:.1},{:.1},{},{}",
                r.epoch,
                r.train_loss,
                r.valid_negative_elbo,
                r.learning_rate,
                r.skipped_batches,
                r.images_per_second,
                r.seconds,
                optional(r.valid_reconstruction),
                optional(r.valid_kl),
            ));
            for context in &contexts {
                let value = r.valid_per_context.iter().find(|(n, _)| n == context);
                text.push(',');
                text.push_str(&optional(value.map(|(_, v)| *v)));
            }
            text.push('\n');
        }
        atomic_write(&self.metrics_path(), text.as_bytes())
    }
}

fn header(contexts: &[&str]) -> String {
    let mut names: Vec<String> = COLUMNS
        .iter()
        .chain(&TERMS)
        .map(|s| s.to_string())
        .collect();
    names.extend(contexts.iter().map(|c| format!("{PER_CONTEXT_PREFIX}{c}")));
    format!("{}\n", names.join(","))
}

/// Held while a process writes a run folder; see [`RunFolder::lock`].
pub struct RunLock {
    _file: File,
}

fn parse_row(names: &[&str], line: &str) -> Result<EpochRow> {
    let cells: Vec<&str> = line.split(',').map(str::trim).collect();
    if cells.len() != names.len() {
        bail!("bad metrics.csv row: {line}");
    }
    let bad = || format!("bad metrics.csv row: {line}");
    let cell = |name: &str| names.iter().position(|n| *n == name).map(|i| cells[i]);
    let num = |name: &str| -> Result<f64> {
        let text = cell(name).with_context(bad)?;
        text.parse::<f64>().with_context(bad)
    };
    let optional = |text: &str| -> Result<Option<f64>> {
        match text.is_empty() {
            true => Ok(None),
            false => text.parse::<f64>().map(Some).with_context(bad),
        }
    };
    let mut valid_per_context = Vec::new();
    for (name, text) in names.iter().zip(&cells) {
        let context = name.strip_prefix(PER_CONTEXT_PREFIX);
        if let Some(context) = context
            && !COLUMNS.contains(name)
            && !TERMS.contains(name)
            && let Some(value) = optional(text)?
        {
            valid_per_context.push((context.to_string(), value));
        }
    }
    Ok(EpochRow {
        epoch: num("epoch")? as usize,
        train_loss: num("train_loss")?,
        valid_negative_elbo: num("valid_negative_elbo")?,
        learning_rate: num("learning_rate")?,
        skipped_batches: num("skipped_batches")? as usize,
        images_per_second: num("images_per_second")?,
        seconds: num("seconds")?,
        valid_reconstruction: cell(TERMS[0]).map(optional).transpose()?.flatten(),
        valid_kl: cell(TERMS[1]).map(optional).transpose()?.flatten(),
        valid_per_context,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, per_context: &[(&str, f64)]) -> EpochRow {
        EpochRow {
            epoch,
            train_loss: 10.0,
            valid_negative_elbo: 9.0,
            learning_rate: 1e-3,
            skipped_batches: 0,
            images_per_second: 100.0,
            seconds: 1.0,
            valid_reconstruction: Some(8.5),
            valid_kl: Some(0.5),
            valid_per_context: per_context
                .iter()
                .map(|(n, v)| (n.to_string(), *v))
                .collect(),
        }
    }

    /// A run resumed by this version appends rows with the terms and per-context losses to a
    /// `metrics.csv` written before they existed; both kinds read back.
    #[test]
    fn metrics_written_before_the_terms_still_read_and_extend() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::new(dir.path());
        std::fs::write(
            run.metrics_path(),
            "epoch,train_loss,valid_negative_elbo,learning_rate,skipped_batches,images_per_second,seconds\n0,12.5,11.25,1.000e-3,0,90.0,2.0\n",
        )
        .unwrap();
        let old = run.read_metrics().unwrap();
        assert_eq!((old[0].valid_kl, old[0].valid_per_context.len()), (None, 0));
        let new = row(1, &[("obs", 9.5), ("quad1+x", 8.5)]);
        run.append_metrics(&new).unwrap();
        let both = run.read_metrics().unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].valid_negative_elbo, 11.25);
        assert_eq!(both[0].valid_reconstruction, None);
        assert_eq!(both[1], new);
        let text = std::fs::read_to_string(run.metrics_path()).unwrap();
        assert!(
            text.starts_with("epoch,")
                && text
                    .lines()
                    .next()
                    .unwrap()
                    .ends_with(",valid_kl,valid_obs,valid_quad1+x"),
            "{text}"
        );
    }

    /// A second writer is refused naming the holder's pid, or without one if the holder has not
    /// written it yet (never "(pid )").
    #[test]
    fn a_held_lock_is_refused_with_the_pid_when_there_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::new(dir.path());
        let _held = run.lock().unwrap();
        let refused = format!("{:#}", run.lock().err().expect("the lock is held"));
        assert!(
            refused.contains(&format!("(pid {})", std::process::id())),
            "{refused}"
        );
        std::fs::write(dir.path().join("lock"), "").unwrap();
        let refused = format!("{:#}", run.lock().err().expect("the lock is held"));
        assert!(refused.contains("another intervene process;"), "{refused}");
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::new(dir.path());
        run.write_metrics(&[row(0, &[("obs", 1.0)])]).unwrap();
        let mut text = std::fs::read_to_string(run.metrics_path()).unwrap();
        text.push_str("1,2,3\n");
        std::fs::write(run.metrics_path(), text).unwrap();
        assert!(
            run.read_metrics()
                .unwrap_err()
                .to_string()
                .contains("bad metrics.csv row")
        );
    }
}
