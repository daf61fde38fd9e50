//! A run's checkpoints: model, optimizer and loop state in one file with a checksum, so a bit
//! flip is caught before burn reads a byte of it. Two are kept, `checkpoint.bin` and the one
//! before it, `checkpoint.prev.bin`: a new checkpoint replaces the old only once it is complete,
//! and resume falls back to the previous one when the latest is missing or damaged.
//!
//! Layout: `"INTVCKP2"`, then three length-prefixed (u64 LE) sections: loop state (JSON), model
//! record (burnpack), optimizer record (burnpack); then the CRC-32 of everything before it (u32
//! LE). Burn's records keep parameter ids, so the optimizer's moments find their parameters again
//! after a restart. Files of the first format (`"INTVCKPT"`, no checksum) are refused: nothing
//! could tell a damaged one from a good one.

mod records;

use crate::files::atomic_write_keeping_previous;
use crate::training::config::TrainConfig;
use anyhow::{Context as _, Result, anyhow, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use intervene::model::Model;
use records::Contents;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"INTVCKP2";
/// The first format: no checksum.
const MAGIC_V1: &[u8; 8] = b"INTVCKPT";

/// Where the training loop stands. Every field must be present, and no other: an edited or
/// foreign loop state is refused rather than read with defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopState {
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of that epoch already trained.
    pub batch: usize,
    pub step: usize,
    // `deserialize_with`: serde would read a missing `Option` as `None`.
    #[serde(deserialize_with = "Option::deserialize")]
    pub best_valid: Option<f64>,
    #[serde(deserialize_with = "Option::deserialize")]
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

    /// Moves on to the next epoch after one that `improved` the best validation score or not,
    /// and finishes the run after `patience` epochs without improvement or at the last epoch;
    /// says why when it stops early.
    pub fn next_epoch(&mut self, improved: bool, config: &TrainConfig) -> Option<String> {
        self.epochs_without_improvement = match improved {
            true => 0,
            false => self.epochs_without_improvement + 1,
        };
        self.epoch += 1;
        self.batch = 0;
        self.epoch_loss_sum = 0.0;
        self.epoch_loss_count = 0;
        self.finished = self.epoch >= config.max_epochs;
        if self.epochs_without_improvement >= config.patience {
            self.finished = true;
            return Some(format!(
                "early stop: no improvement for {} epochs",
                config.patience
            ));
        }
        None
    }
}

/// The two checkpoint files of a run folder.
pub struct Checkpoints {
    pub latest: PathBuf,
    pub previous: PathBuf,
}

/// A checkpoint read back: its loop state and the model and optimizer restored from it.
pub struct Restored {
    pub state: LoopState,
    pub model: Model,
    pub optimizer: ModuleOptimizer,
    /// Set when the latest checkpoint could not be used and the previous one was: why.
    pub fell_back: Option<String>,
}

impl Checkpoints {
    pub fn in_folder(dir: &Path) -> Self {
        Self {
            latest: dir.join("checkpoint.bin"),
            previous: dir.join("checkpoint.prev.bin"),
        }
    }

    /// Whether any checkpoint file is there (damaged or not).
    pub fn any(&self) -> bool {
        self.latest.exists() || self.previous.exists()
    }

    /// Writes a new latest checkpoint; the old latest becomes the previous one.
    pub fn save(
        &self,
        state: &LoopState,
        model: &Model,
        optimizer: &ModuleOptimizer,
    ) -> Result<()> {
        let bytes = encode(state, model, optimizer)?;
        atomic_write_keeping_previous(&self.latest, &self.previous, &bytes)
    }

    /// Restores from the latest checkpoint, or from the previous one if the latest is missing or
    /// damaged. `model` and `optimizer` are fresh ones of the run's config, on its device.
    pub fn load(&self, model: Model, optimizer: ModuleOptimizer) -> Result<Restored> {
        let latest = load_file(&self.latest, model.clone(), optimizer.clone());
        let latest_err = match latest {
            Ok((state, model, optimizer)) => {
                return Ok(Restored {
                    state,
                    model,
                    optimizer,
                    fell_back: None,
                });
            }
            Err(e) => e,
        };
        match load_file(&self.previous, model, optimizer) {
            Ok((state, model, optimizer)) => Ok(Restored {
                state,
                model,
                optimizer,
                fell_back: Some(format!("{latest_err:#}")),
            }),
            Err(previous_err) => Err(anyhow!(
                "no usable checkpoint: {latest_err:#}; {previous_err:#}"
            )),
        }
    }

    /// The loop state of the checkpoint `load` would use (cheap: e.g. to tell whether a run has
    /// finished).
    pub fn read_state(&self) -> Result<LoopState> {
        read_state_of(&self.latest).or_else(|latest_err| {
            read_state_of(&self.previous)
                .map_err(|previous_err| anyhow!("{latest_err:#}; {previous_err:#}"))
        })
    }

    /// Deletes both checkpoints (a restart).
    pub fn remove(&self) -> Result<()> {
        for path in [&self.latest, &self.previous] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

pub fn encode(state: &LoopState, model: &Model, optimizer: &ModuleOptimizer) -> Result<Vec<u8>> {
    let state = serde_json::to_vec(state)?;
    let model = model
        .clone()
        .into_record()
        .into_bytes()
        .context("cannot serialise the model")?;
    let optimizer = optimizer
        .into_bytes()
        .context("cannot serialise the optimizer")?;
    Ok(assemble([&state, &model, &optimizer]))
}

/// A checkpoint of these three sections: the magic, each section length-prefixed, the checksum.
fn assemble(sections: [&[u8]; 3]) -> Vec<u8> {
    let len = sections.iter().map(|s| 8 + s.len()).sum::<usize>();
    let mut out = Vec::with_capacity(MAGIC.len() + len + 4);
    out.extend_from_slice(MAGIC);
    for section in sections {
        out.extend_from_slice(&(section.len() as u64).to_le_bytes());
        out.extend_from_slice(section);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Restores a checkpoint held in memory into `model` and `optimizer`.
pub fn decode(
    bytes: &[u8],
    model: Model,
    optimizer: ModuleOptimizer,
) -> Result<(LoopState, Model, ModuleOptimizer)> {
    let [state, model_record, optimizer_record] = split(bytes)?;
    let state: LoopState = serde_json::from_slice(state).context("loop state")?;
    Contents::read(model_record)
        .and_then(|contents| records::check_model(&contents, &model))
        .context("the model record does not fit this run's model")?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_record.to_vec()))
        .map_err(|e| anyhow!("model record: {e:?}"))?;
    let model = model
        .try_load_record(record)
        .map_err(|e| anyhow!("the model record does not fit this run's model: {e:?}"))?;
    let optimizer = Contents::read(optimizer_record)
        .and_then(|contents| {
            records::check_optimizer(&contents, &model)?;
            records::load_optimizer(optimizer, optimizer_record, &contents)
        })
        .context("optimizer record")?;
    Ok((state, model, optimizer))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))
}

fn load_file(
    path: &Path,
    model: Model,
    optimizer: ModuleOptimizer,
) -> Result<(LoopState, Model, ModuleOptimizer)> {
    decode(&read(path)?, model, optimizer)
        .with_context(|| format!("checkpoint {} cannot be used", path.display()))
}

fn read_state_of(path: &Path) -> Result<LoopState> {
    let bytes = read(path)?;
    let [state, ..] =
        split(&bytes).with_context(|| format!("checkpoint {} cannot be used", path.display()))?;
    serde_json::from_slice(state)
        .with_context(|| format!("checkpoint {} has a bad loop state", path.display()))
}

/// Checks the magic and the checksum, then cuts the three sections out.
fn split(bytes: &[u8]) -> Result<[&[u8]; 3]> {
    let mut rest = match bytes.get(..8) {
        Some(m) if m == MAGIC => {
            let body_len = bytes
                .len()
                .checked_sub(4)
                .filter(|&n| n >= 8)
                .context("truncated")?;
            let (body, crc) = bytes.split_at(body_len);
            if crc32fast::hash(body).to_le_bytes() != crc {
                bail!("checksum mismatch (the file was altered or only partly written)");
            }
            &body[8..]
        }
        Some(m) if m == MAGIC_V1 => bail!(
            "an old checkpoint format without a checksum, which this version no longer reads (`--restart` starts the run over)"
        ),
        _ => bail!("not an intervene checkpoint"),
    };
    let mut sections = [&[][..]; 3];
    for section in &mut sections {
        let (len, tail) = rest.split_first_chunk::<8>().context("truncated")?;
        let len = usize::try_from(u64::from_le_bytes(*len)).context("truncated")?;
        if tail.len() < len {
            bail!("truncated");
        }
        (*section, rest) = tail.split_at(len);
    }
    if !rest.is_empty() {
        bail!("trailing bytes");
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::Learner;
    use crate::training::config;
    use burn_store::burn_pack::{DType, Reader, Scalar, Writer};
    use std::collections::BTreeMap;

    fn tiny() -> Learner {
        Learner::new(config::tiny(), burn::tensor::Device::flex().autodiff()).unwrap()
    }

    #[test]
    fn the_loop_stops_after_patience_epochs_without_improvement_or_at_the_last() {
        let mut config = config::tiny();
        (config.patience, config.max_epochs) = (2, 5);
        let mut state = LoopState::default();
        assert_eq!(state.next_epoch(false, &config), None);
        assert_eq!(
            state.next_epoch(true, &config),
            None,
            "an improvement resets"
        );
        assert_eq!(state.next_epoch(false, &config), None);
        assert!(!state.finished);
        let said = state
            .next_epoch(false, &config)
            .expect("an early stop says so");
        assert!(said.contains("2 epochs"), "{said}");
        assert!(state.finished && state.epoch == 4);
        let mut state = LoopState::default();
        for _ in 0..4 {
            state.next_epoch(true, &config);
        }
        assert!(!state.finished);
        assert_eq!(state.next_epoch(true, &config), None);
        assert!(state.finished, "the last epoch ends the run");
    }

    fn state(epoch: usize) -> LoopState {
        LoopState {
            epoch,
            step: 10 * epoch,
            ..LoopState::default()
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let learner = tiny();
        let bytes = encode(&state(3), &learner.model, &learner.optimizer).unwrap();
        let restore = |b: &[u8]| decode(b, learner.model.clone(), learner.optimizer.clone());
        assert_eq!(restore(&bytes).unwrap().0, state(3));
        // CRC-32 catches every single-bit error; this checks that nothing reads a byte before
        // it does: every byte of the framing and loop state, the trailer, and 2,000 others.
        let mut rng = intervene::rng::Rng::new(7);
        let n = bytes.len();
        let positions = (0..256)
            .chain(n - 64..n)
            .chain((0..2_000).map(|_| rng.below(n)))
            .collect::<Vec<_>>();
        let mut flipped = bytes.clone();
        for at in positions {
            let bit = 1 << rng.below(8);
            flipped[at] ^= bit;
            let message = format!(
                "{:#}",
                restore(&flipped).err().expect("a flip was accepted")
            );
            assert!(!message.contains('\n'), "{message}");
            flipped[at] ^= bit;
        }
    }

    #[test]
    fn a_damaged_or_missing_latest_falls_back_to_the_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let learner = tiny();
        let checkpoints = Checkpoints::in_folder(dir);
        let (model, optimizer) = (&learner.model, &learner.optimizer);
        let load = || checkpoints.load(model.clone(), optimizer.clone());
        for epoch in 1..=2 {
            checkpoints.save(&state(epoch), model, optimizer).unwrap();
        }
        let latest = load().unwrap();
        assert_eq!((latest.state, latest.fell_back), (state(2), None));

        let mut bytes = std::fs::read(&checkpoints.latest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&checkpoints.latest, &bytes).unwrap();
        let restored = load().unwrap();
        assert_eq!(restored.state, state(1));
        let why = restored.fell_back.expect("says it fell back");
        assert!(why.contains("checksum"), "{why}");
        assert_eq!(checkpoints.read_state().unwrap(), state(1));

        std::fs::remove_file(&checkpoints.latest).unwrap();
        assert_eq!(load().unwrap().state, state(1));
        std::fs::write(&checkpoints.previous, b"INTVCKP2").unwrap();
        let err = format!("{:#}", load().err().expect("nothing usable is left"));
        assert!(err.contains("no usable checkpoint"), "{err}");

        // The first format, unchecked, is refused even when whole.
        checkpoints.save(&state(3), model, optimizer).unwrap();
        let whole = std::fs::read(&checkpoints.latest).unwrap();
        let mut old = MAGIC_V1.to_vec();
        old.extend_from_slice(&whole[8..whole.len() - 4]);
        std::fs::write(&checkpoints.latest, old).unwrap();
        let err = format!("{:#}", load().err().expect("nothing usable is left"));
        assert!(err.contains("old checkpoint format"), "{err}");
    }

    /// A burnpack record taken apart, to be edited and put back together.
    struct Pack {
        tensors: Vec<burn_store::burn_pack::Tensor>,
        scalars: BTreeMap<String, Scalar>,
        metadata: BTreeMap<String, String>,
    }

    impl Pack {
        fn read(bytes: &[u8]) -> Self {
            let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).unwrap();
            let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
            let tensors = reader.into_tensors().unwrap();
            Self {
                tensors,
                scalars,
                metadata,
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut writer = Writer::new(self.tensors.clone());
            for (key, value) in &self.scalars {
                writer = writer.with_scalar(key, *value);
            }
            for (key, value) in &self.metadata {
                writer = writer.with_metadata(key, value);
            }
            writer.into_bytes().unwrap().to_vec()
        }

        /// Every record this one becomes with one key renamed, deleted or given another type:
        /// tensors (also without their parameter id), scalars and metadata.
        fn edits(&self) -> Vec<(String, Vec<u8>)> {
            let mut edits = Vec::new();
            let mut edit = |what: String, change: &dyn Fn(&mut Pack)| {
                let mut pack = Pack {
                    tensors: self.tensors.clone(),
                    scalars: self.scalars.clone(),
                    metadata: self.metadata.clone(),
                };
                change(&mut pack);
                edits.push((what, pack.bytes()));
            };
            for (i, tensor) in self.tensors.iter().enumerate() {
                let name = &tensor.name;
                edit(format!("tensor {name} renamed"), &|p| {
                    p.tensors[i].name.push('x')
                });
                edit(format!("tensor {name} deleted"), &|p| {
                    p.tensors.remove(i);
                });
                edit(format!("tensor {name} without its id"), &|p| {
                    p.tensors[i].param_id = None
                });
                edit(format!("tensor {name} as f64"), &|p| {
                    let t = &p.tensors[i];
                    let values: Vec<f64> = f32s(&t.to_bytes().unwrap()).map(f64::from).collect();
                    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    p.tensors[i] = burn_store::burn_pack::Tensor::new(
                        t.name.clone(),
                        DType::F64,
                        t.shape.clone(),
                        t.param_id,
                        Bytes::from_bytes_vec(bytes),
                    );
                });
            }
            for (key, value) in &self.scalars {
                let retyped = match *value {
                    Scalar::Float(v) => Scalar::Int(v as i64),
                    Scalar::Int(v) => Scalar::Float(v as f64),
                    Scalar::UInt(v) => Scalar::Float(v as f64),
                    Scalar::Bool(v) => Scalar::UInt(v.into()),
                };
                edit(format!("scalar {key} renamed"), &|p| {
                    let v = p.scalars.remove(key).unwrap();
                    p.scalars.insert(format!("{key}x"), v);
                });
                edit(format!("scalar {key} deleted"), &|p| {
                    p.scalars.remove(key);
                });
                edit(format!("scalar {key} as {retyped:?}"), &|p| {
                    p.scalars.insert(key.clone(), retyped);
                });
            }
            for key in self.metadata.keys() {
                edit(format!("metadata {key} renamed"), &|p| {
                    let v = p.metadata.remove(key).unwrap();
                    p.metadata.insert(format!("{key}x"), v);
                });
                edit(format!("metadata {key} deleted"), &|p| {
                    p.metadata.remove(key);
                });
            }
            // The format's own keys (in the CBOR header), renamed in place.
            let bytes = self.bytes();
            for key in [
                "tensors",
                "dtype",
                "shape",
                "data_offsets",
                "param_id",
                "scalars",
                "metadata",
            ] {
                if let Some(at) = bytes.windows(key.len()).position(|w| w == key.as_bytes()) {
                    let mut renamed = bytes.clone();
                    renamed[at + key.len() - 1] ^= 1;
                    edits.push((format!("format key {key} renamed"), renamed));
                }
            }
            edits
        }
    }

    fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
    }

    /// The loop state with each key renamed, deleted or given another type.
    fn loop_state_edits(json: &[u8]) -> Vec<(String, Vec<u8>)> {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(json).unwrap();
        let mut edits = Vec::new();
        for key in object.keys() {
            let mut edit = |what: &str, change: &dyn Fn(&mut serde_json::Map<_, _>)| {
                let mut object = object.clone();
                change(&mut object);
                edits.push((
                    format!("loop state {key} {what}"),
                    serde_json::to_vec(&object).unwrap(),
                ));
            };
            edit("renamed", &|o| {
                let v = o.remove(key).unwrap();
                o.insert(format!("{key}x"), v);
            });
            edit("deleted", &|o| {
                o.remove(key);
            });
            edit("as a string", &|o| {
                o.insert(key.clone(), "1".into());
            });
        }
        edits
    }

    #[test]
    fn a_checkpoint_with_any_key_of_any_section_edited_falls_back_to_the_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::in_folder(tmp.path());
        let mut learner = crate::training::tests::tiny_learner();
        let fresh = (learner.model.clone(), learner.optimizer.clone());
        let load = || checkpoints.load(fresh.0.clone(), fresh.1.clone());
        // Two steps: the optimizer holds moments and a step count for every parameter.
        for _ in 0..2 {
            let batch = crate::training::tests::batch(&learner, 0.1);
            learner.step(batch, 1e-3);
        }
        let mut previous = state(1);
        previous.best_valid = Some(1.5);
        let previous_bytes = encode(&previous, &learner.model, &learner.optimizer).unwrap();
        let latest = encode(&state(2), &learner.model, &learner.optimizer).unwrap();
        let [loop_state, model, optimizer] = split(&latest).unwrap();
        let (model, optimizer) = (Pack::read(model), Pack::read(optimizer));
        assert!(
            [
                optimizer.tensors.len(),
                optimizer.scalars.len(),
                optimizer.metadata.len()
            ]
            .iter()
            .all(|&n| n > 0),
            "the optimizer holds state"
        );

        // Taken apart and put back unedited, it is used as it is.
        let whole = assemble([loop_state, &model.bytes(), &optimizer.bytes()]);
        std::fs::write(&checkpoints.latest, &whole).unwrap();
        let restored = load().unwrap();
        assert_eq!((restored.state, restored.fell_back), (state(2), None));

        let (model_bytes, optimizer_bytes) = (model.bytes(), optimizer.bytes());
        let edits = loop_state_edits(loop_state)
            .into_iter()
            .map(|(what, s)| (what, assemble([&s, &model_bytes, &optimizer_bytes])))
            .chain(model.edits().into_iter().map(|(what, m)| {
                (
                    format!("model: {what}"),
                    assemble([loop_state, &m, &optimizer_bytes]),
                )
            }))
            .chain(optimizer.edits().into_iter().map(|(what, o)| {
                (
                    format!("optimizer: {what}"),
                    assemble([loop_state, &model_bytes, &o]),
                )
            }))
            .collect::<Vec<_>>();
        assert!(edits.len() > 500, "{} edits", edits.len());
        // Each is refused in one line (burn reads the optimizer's state onto its default device,
        // in tests the GPU's, which takes 0.2 s: so only the first edit of each section goes
        // through the whole fallback, which is the same for every refusal).
        let mut sections_seen = std::collections::BTreeSet::new();
        for (what, bytes) in &edits {
            let refused = decode(bytes, fresh.0.clone(), fresh.1.clone())
                .err()
                .unwrap_or_else(|| panic!("{what} was used"));
            assert!(
                !format!("{refused:#}").contains('\n'),
                "{what}: {refused:#}"
            );
            if sections_seen.insert(what.split(' ').next().unwrap().to_string()) {
                std::fs::write(&checkpoints.previous, &previous_bytes).unwrap();
                std::fs::write(&checkpoints.latest, bytes).unwrap();
                let restored = load().unwrap_or_else(|e| panic!("{what}: {e:#}"));
                assert_eq!(restored.state, previous, "{what} was used");
                assert!(restored.fell_back.is_some(), "{what}");
            }
        }
        assert_eq!(sections_seen.len(), 3);
    }
}
