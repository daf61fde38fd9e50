//! The last checkpoint of a run: model, optimizer and loop state in one file, written atomically
//! so `kill -9` at any moment leaves the previous checkpoint usable.
//!
//! Layout: `"INTVCKPT"`, then three length-prefixed (u64 LE) sections: loop state (JSON), model
//! record (burnpack), optimizer record (burnpack). Burn's records keep parameter ids, so the
//! optimizer's moments find their parameters again after a restart.

use crate::files::atomic_write;
use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use intervene::model::Model;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"INTVCKPT";

/// Where the training loop stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of that epoch already trained.
    pub batch: usize,
    pub step: usize,
    pub best_valid: Option<f64>,
    pub best_epoch: Option<usize>,
    pub epochs_without_improvement: usize,
    pub skipped_batches: usize,
    /// Running sums for the epoch in progress.
    pub epoch_loss_sum: f64,
    pub epoch_loss_count: usize,
    pub finished: bool,
}

impl LoopState {
    /// The mean training loss of the epoch so far; NaN if no batch of it has trained (all were
    /// skipped as non-finite), so that a plot breaks its line there instead of dropping to 0.
    pub fn mean_loss(&self) -> f64 {
        match self.epoch_loss_count {
            0 => f64::NAN,
            n => self.epoch_loss_sum / n as f64,
        }
    }
}

pub fn save(
    path: &Path,
    state: &LoopState,
    model: &Model,
    optimizer: &ModuleOptimizer,
) -> Result<()> {
    let state = serde_json::to_vec(state)?;
    let model = model
        .clone()
        .into_record()
        .into_bytes()
        .context("cannot serialise the model")?;
    let optimizer = optimizer
        .into_bytes()
        .context("cannot serialise the optimizer")?;
    let mut out = Vec::with_capacity(8 + 24 + state.len() + model.len() + optimizer.len());
    out.extend_from_slice(MAGIC);
    for section in [&state[..], &model[..], &optimizer[..]] {
        out.extend_from_slice(&(section.len() as u64).to_le_bytes());
        out.extend_from_slice(section);
    }
    atomic_write(path, &out)
}

/// Restores into freshly built `model` and `optimizer` (same config, same device).
pub fn load(
    path: &Path,
    model: Model,
    optimizer: ModuleOptimizer,
) -> Result<(LoopState, Model, ModuleOptimizer)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let sections =
        split(&bytes).with_context(|| format!("checkpoint {} is damaged", path.display()))?;
    let state: LoopState = serde_json::from_slice(sections[0]).context("checkpoint loop state")?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(sections[1].to_vec()))
        .map_err(|e| anyhow::anyhow!("checkpoint model record: {e:?}"))?;
    let model = model
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("checkpoint does not fit this model: {e:?}"))?;
    let optimizer = optimizer
        .from_bytes(Bytes::from_bytes_vec(sections[2].to_vec()))
        .map_err(|e| anyhow::anyhow!("checkpoint optimizer record: {e:?}"))?;
    Ok((state, model, optimizer))
}

/// Only the loop state of a checkpoint (cheap: e.g. to tell whether a run has finished).
pub fn read_state(path: &Path) -> Result<LoopState> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let sections =
        split(&bytes).with_context(|| format!("checkpoint {} is damaged", path.display()))?;
    serde_json::from_slice(sections[0]).context("checkpoint loop state")
}

fn split(bytes: &[u8]) -> Result<[&[u8]; 3]> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        bail!("not an intervene checkpoint");
    }
    let mut rest = &bytes[8..];
    let mut sections = [&[][..]; 3];
    for section in &mut sections {
        if rest.len() < 8 {
            bail!("truncated");
        }
        let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        rest = &rest[8..];
        if rest.len() < len {
            bail!("truncated");
        }
        *section = &rest[..len];
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        bail!("trailing bytes");
    }
    Ok(sections)
}
