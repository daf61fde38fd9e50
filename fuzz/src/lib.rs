//! What the fuzz targets share: the tiny model whose files they read, and checksum repair.
//!
//! A file whose checksum fails is refused before it is parsed, so bytes mutated at random would
//! almost never reach the parser. Each target therefore reads its input twice: as is (the
//! checksum path) and with the checksum recomputed (everything after it).

use burn::tensor::Device;
use intervene::config::{Architecture, ImageShape, Method, ModelConfig, Widths};
use intervene::model::Model;

/// The smallest model the formats allow, so seed files stay a few kilobytes.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Simple64bn,
        image: ImageShape {
            channels: 3,
            size: 32,
        },
        concepts: vec!["a".into(), "b".into()],
        widths: Widths {
            depth: 2,
            w_in: 2,
            w_out: 1,
        },
        hidden: 4,
        method: Method::Cm,
        noise_layer: Default::default(),
    }
}

/// `bytes` with its last four bytes replaced by the CRC-32 of the rest (both formats end so).
pub fn with_valid_checksum(bytes: &[u8]) -> Vec<u8> {
    let mut fixed = bytes.to_vec();
    if let Some(body) = fixed.len().checked_sub(4) {
        let crc = crc32fast::hash(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
    }
    fixed
}

/// The model the checkpoint target restores into: the tiny one without its encoder, so that a
/// checkpoint (f32, plus the optimizer) stays under AFL++'s 1 MB.
pub fn checkpoint_model(device: &Device) -> Model {
    Model::new(&tiny_config(), device).without_encoder()
}

/// A fresh optimizer for [`checkpoint_model`]. Adam's epsilon is a setting, not state: reading a
/// checkpoint never looks at it.
pub fn checkpoint_optimizer(device: &Device) -> burn::optim::ModuleOptimizer {
    intervene_trainer::training::adam::for_device(device, 1e-5)
}
