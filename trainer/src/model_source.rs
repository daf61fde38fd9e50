//! Loading weights for `sample`, `eval` and `export`: from a run folder or an exported file.
//!
//! Opening checks the file completely (framing, checksum, header) before any device is touched,
//! so bad input fails fast with one clear line.

use crate::data::DataSource;
use crate::training::run_folder::weights_path;
use anyhow::{Context as _, Result};
use burn::tensor::Device;
use intervene::config::ModelConfig;
use intervene::data::{Dataset, DatasetKind};
use intervene::weights::{self, LoadedWeights};
use std::path::{Path, PathBuf};

pub struct Source {
    pub file: PathBuf,
    bytes: Vec<u8>,
    pub config: ModelConfig,
    metadata: serde_json::Value,
}

impl Source {
    pub fn open(path: &Path) -> Result<Self> {
        let file = weights_path(path)?;
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let (config, metadata) = weights::read_config(&bytes)
            .with_context(|| format!("cannot load {}", file.display()))?;
        Ok(Self {
            file,
            bytes,
            config,
            metadata,
        })
    }

    /// The data the weights were trained on, as recorded in their metadata: a folder, or a
    /// built-in dataset's name.
    pub fn data(&self) -> Result<DataSource> {
        if let Some(folder) = self.metadata["data"].as_str() {
            return Ok(DataSource::Folder {
                folder: folder.into(),
            });
        }
        let name = self.metadata["dataset"]
            .as_str()
            .context("these weights do not record their dataset (give --data DIR)")?;
        let kind = name.parse::<DatasetKind>().map_err(anyhow::Error::msg)?;
        Ok(kind.into())
    }

    /// Refuses a dataset whose concepts or images are not the model's (metadata edited or mixed
    /// up, another `--data` folder): scoring it would index past the model's blocks.
    pub fn fits(&self, dataset: &dyn Dataset) -> Result<()> {
        let (concepts, image) = (dataset.concepts(), &self.config.image);
        let name = dataset.name();
        anyhow::ensure!(
            concepts == self.config.concepts,
            "dataset {name}, whose concepts are {}, does not fit {} (concepts {})",
            concepts.join(", "),
            self.file.display(),
            self.config.concepts.join(", ")
        );
        let shape = dataset
            .image_shape(image.size)
            .map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            shape.channels == image.channels,
            "dataset {name}, whose images have {} channels, does not fit {} ({} channels)",
            shape.channels,
            self.file.display(),
            image.channels
        );
        Ok(())
    }

    /// The dataset in `folder`, else the one the weights were trained on, checked to fit them and
    /// prepared at their image size.
    pub fn dataset(&self, folder: Option<&Path>) -> Result<&'static dyn Dataset> {
        let data = match folder {
            Some(dir) => DataSource::from_folder(dir)?,
            None => self.data()?,
        };
        let dataset = data.open()?;
        self.fits(dataset)?;
        dataset
            .prepare(self.config.image.size)
            .map_err(anyhow::Error::msg)?;
        Ok(dataset)
    }

    /// The weights file as read.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn load(&self, device: &Device) -> Result<LoadedWeights> {
        weights::decode(&self.bytes, device)
            .with_context(|| format!("cannot load {}", self.file.display()))
    }
}
