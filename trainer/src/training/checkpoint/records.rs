//! What a checkpoint's two burn records must hold, checked before burn reads them.
//!
//! A checkpoint that passes its checksum can still be one burn cannot use: written by another
//! version, or edited. burn-optim panics on some such records (an optimizer tensor without its
//! parameter id) and silently drops state from others (a renamed tensor, a scalar of another
//! type), and a moment whose shape differs from its parameter's would fail at the first step. So
//! the records are compared with the model they restore into, and the optimizer's with what it
//! reads back, and any difference makes the checkpoint unusable: resume then falls back to the
//! previous one.

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Bytes;
use burn_store::burn_pack::{DType, Reader, Scalar};
use intervene::model::Model;
use std::collections::BTreeMap;

/// Burn's name for the scalar that records a parameter's rank (`"{param_id}.__rank"`).
const RANK_KEY: &str = "__rank";

/// A tensor of a record, less its values.
#[derive(Debug, PartialEq)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    param_id: Option<u64>,
}

/// What a burnpack record holds, less its tensors' values.
#[derive(Debug, PartialEq)]
pub(super) struct Contents {
    tensors: BTreeMap<String, Entry>,
    scalars: BTreeMap<String, Scalar>,
    metadata: BTreeMap<String, String>,
}

impl Contents {
    pub(super) fn read(record: &[u8]) -> Result<Self> {
        let reader = Reader::from_bytes(Bytes::from_bytes_vec(record.to_vec()))
            .map_err(|e| anyhow!("{e}"))?;
        let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
        let tensors = reader
            .into_tensors()
            .map_err(|e| anyhow!("{e}"))?
            .into_iter()
            .map(|t| {
                let entry = Entry {
                    dtype: t.dtype,
                    shape: t.shape.to_vec(),
                    param_id: t.param_id,
                };
                (t.name, entry)
            })
            .collect();
        Ok(Self {
            tensors,
            scalars,
            metadata,
        })
    }

    fn of_model(model: &Model) -> Result<Self> {
        let record = model.clone().into_record().into_bytes();
        Self::read(&record.map_err(|e| anyhow!("cannot serialise the model: {e:?}"))?)
    }
}

/// Checks a model record against `fresh`, a model of the run's config: the same tensors (names,
/// types, shapes), each with a parameter id of its own, and nothing else.
pub(super) fn check_model(record: &Contents, fresh: &Model) -> Result<()> {
    let expected = Contents::of_model(fresh)?;
    for (name, entry) in &record.tensors {
        let want = expected
            .tensors
            .get(name)
            .with_context(|| format!("{name} is not a parameter of this run's model"))?;
        ensure!(
            (entry.dtype, &entry.shape) == (want.dtype, &want.shape),
            "{name} is {:?} {:?}, not {:?} {:?}",
            entry.dtype,
            entry.shape,
            want.dtype,
            want.shape
        );
    }
    if let Some(name) = expected
        .tensors
        .keys()
        .find(|n| !record.tensors.contains_key(*n))
    {
        bail!("{name} is missing");
    }
    let mut ids = std::collections::BTreeSet::new();
    for (name, entry) in &record.tensors {
        let id = entry
            .param_id
            .with_context(|| format!("{name} has no parameter id"))?;
        ensure!(
            ids.insert(id),
            "{name} shares its parameter id with another"
        );
    }
    ensure!(
        (&record.scalars, &record.metadata) == (&expected.scalars, &expected.metadata),
        "its scalars or metadata differ from this model's"
    );
    Ok(())
}

/// Checks an optimizer record against `model` (restored from the same checkpoint): every state
/// tensor belongs to one of its parameters, by id and name, with that parameter's type and shape;
/// every scalar and path to one of its parameters, the recorded ranks are theirs, every parameter
/// has the same kinds of state, and every parameter with state has its path.
pub(super) fn check_optimizer(record: &Contents, model: &Model) -> Result<()> {
    let params: BTreeMap<u64, Entry> = Contents::of_model(model)?
        .tensors
        .into_values()
        .filter_map(|e| Some((e.param_id?, e)))
        .collect();
    let param = |id: &str, key: &str| {
        id.parse::<u64>()
            .ok()
            .and_then(|id| params.get(&id))
            .with_context(|| format!("{key} names no parameter of the model"))
    };
    for (name, entry) in &record.tensors {
        let id = entry
            .param_id
            .with_context(|| format!("{name} has no parameter id"))?;
        let (prefix, _) = id_and_leaf(name);
        ensure!(
            prefix == id.to_string(),
            "{name} is filed under parameter {id}"
        );
        let want = param(prefix, name)?;
        ensure!(
            (entry.dtype, &entry.shape) == (want.dtype, &want.shape),
            "{name} is {:?} {:?}, but its parameter is {:?} {:?}",
            entry.dtype,
            entry.shape,
            want.dtype,
            want.shape
        );
    }
    for (key, value) in &record.scalars {
        let (prefix, leaf) = id_and_leaf(key);
        let want = param(prefix, key)?;
        if leaf == RANK_KEY {
            let rank = usize::try_from(*value).ok();
            ensure!(
                rank == Some(want.shape.len()),
                "{key} is {value:?}, not {}",
                want.shape.len()
            );
        }
    }
    for key in record.metadata.keys() {
        param(key, key)?;
    }
    // One optimizer keeps the same state for every parameter: a parameter whose leaves or
    // scalar types differ from the others' was edited (burn would drop its state).
    let mut leaves: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    let tensors = record.tensors.keys().map(|k| (k, "tensor"));
    let scalars = record.scalars.iter().map(|(k, v)| (k, scalar_kind(v)));
    for (key, kind) in tensors.chain(scalars) {
        let (id, leaf) = id_and_leaf(key);
        leaves.entry(id).or_default().push((leaf, kind));
    }
    let mut states = leaves.iter();
    if let Some((first, state)) = states.next()
        && let Some((id, _)) = states.find(|(_, other)| *other != state)
    {
        bail!("parameter {id}'s state has other entries than parameter {first}'s");
    }
    // Burn files each parameter's state with its path in the model, which picks its optimizer.
    let ids = record.tensors.keys().chain(record.scalars.keys());
    if let Some(key) = ids
        .map(|k| id_and_leaf(k).0)
        .find(|id| !record.metadata.contains_key(*id))
    {
        bail!("parameter {key} has state but no path");
    }
    Ok(())
}

/// An optimizer record's key, `"{param_id}.{leaf}"`, split.
fn id_and_leaf(key: &str) -> (&str, &str) {
    key.split_once('.').unwrap_or((key, ""))
}

fn scalar_kind(value: &Scalar) -> &'static str {
    match value {
        Scalar::Int(_) => "int",
        Scalar::UInt(_) => "uint",
        Scalar::Float(_) => "float",
        Scalar::Bool(_) => "bool",
    }
}

/// Loads the optimizer record `bytes` (checked by [`check_optimizer`]) into `optimizer` and
/// checks that it kept all of it: burn skips a parameter's state it cannot rebuild.
pub(super) fn load_optimizer(
    optimizer: ModuleOptimizer,
    bytes: &[u8],
    record: &Contents,
) -> Result<ModuleOptimizer> {
    let optimizer = optimizer
        .from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| anyhow!("{e:?}"))?;
    let kept = optimizer.into_bytes().map_err(|e| anyhow!("{e:?}"))?;
    ensure!(
        Contents::read(&kept)? == *record,
        "it holds state the optimizer cannot read back"
    );
    Ok(optimizer)
}
