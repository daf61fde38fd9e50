//! Training data: which dataset a run uses (built in, or read from a folder), the examples of
//! each context, and batches rendered ahead of the training loop.

pub mod export;
pub mod folder;
pub mod loader;
pub mod readers;
mod store;

use anyhow::{Context as _, Result};
use intervene::data::{Dataset, DatasetKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Where a run's images come from, as `config.json` records it: a built-in dataset by name
/// (`"quad-dependent"`), or a folder (`{"folder": "/abs/path"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataSource {
    BuiltIn(DatasetKind),
    Folder { folder: PathBuf },
}

impl From<DatasetKind> for DataSource {
    fn from(kind: DatasetKind) -> Self {
        DataSource::BuiltIn(kind)
    }
}

impl DataSource {
    /// `--data DIR` when given, else `--dataset`. The folder is kept absolute, so a run finds
    /// its data from wherever it is resumed or evaluated.
    pub fn choose(data: Option<&Path>, dataset: DatasetKind) -> Result<Self> {
        match data {
            None => Ok(DataSource::BuiltIn(dataset)),
            Some(dir) => Self::from_folder(dir),
        }
    }

    /// The dataset in folder `dir`.
    pub fn from_folder(dir: &Path) -> Result<Self> {
        let folder = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        Ok(DataSource::Folder { folder })
    }

    /// The dataset, opened once per process: a folder is scanned (not decoded) the first time
    /// and its layout checked; its decoded images are cached in the user's cache folder.
    pub fn open(&self) -> Result<&'static dyn Dataset> {
        self.open_caching_in(&store::cache_root())
    }

    /// [`Self::open`], caching a folder's decoded images under `cache` if this process has not
    /// opened it yet.
    pub fn open_caching_in(&self, cache: &Path) -> Result<&'static dyn Dataset> {
        match self {
            DataSource::BuiltIn(kind) => Ok(kind.dataset()),
            DataSource::Folder { folder } => {
                static OPENED: OnceLock<Mutex<HashMap<PathBuf, &'static folder::FolderDataset>>> =
                    OnceLock::new();
                let mut opened = OPENED.get_or_init(Default::default).lock().unwrap();
                if let Some(&dataset) = opened.get(folder) {
                    return Ok(dataset);
                }
                // Kept for the life of the process, like the built-in datasets.
                let dataset: &'static folder::FolderDataset = Box::leak(Box::new(
                    folder::FolderDataset::open_with_cache(folder, cache)?,
                ));
                opened.insert(folder.clone(), dataset);
                Ok(dataset)
            }
        }
    }

    /// The folder a dataset read from disk lives in.
    pub fn folder(&self) -> Option<&Path> {
        match self {
            DataSource::BuiltIn(_) => None,
            DataSource::Folder { folder } => Some(folder),
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::BuiltIn(kind) => write!(f, "{kind}"),
            DataSource::Folder { folder } => write!(f, "{}", folder.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_sources_serialise_as_their_old_names() {
        let source = DataSource::from(DatasetKind::QuadDependent);
        assert_eq!(
            serde_json::to_string(&source).unwrap(),
            "\"quad-dependent\""
        );
        let folder: DataSource = serde_json::from_str(r#"{"folder": "/data/x"}"#).unwrap();
        assert_eq!(folder.folder(), Some(Path::new("/data/x")));
        assert_eq!(
            serde_json::from_str::<DataSource>("\"mnist\"").unwrap(),
            DataSource::BuiltIn(DatasetKind::Mnist)
        );
    }
}
