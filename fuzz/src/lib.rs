//! What the fuzz targets share: the tiny model whose files they read, checksum repair, folders
//! packed into one input and the pixel limit of the image readers.
//!
//! A file whose checksum fails is refused before it is parsed, so bytes mutated at random would
//! almost never reach the parser. Each target therefore reads its input twice: as is (the
//! checksum path) and with the checksum recomputed (everything after it).

use burn::tensor::Device;
use intervene::config::{Architecture, ImageShape, Method, ModelConfig, Widths};
use intervene::model::Model;
use std::path::Path;

/// The pixel limit of the targets that decode images (the product's is 25 megapixels): reading
/// time grows with the pixels a tiny file can declare, and AFL's 5 s hang limit is for hangs.
pub const MAX_IMAGE_PIXELS: u64 = 1_000_000;

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

/// Most files an input to the `image_folder` target may unpack into.
const MAX_ENTRIES: usize = 64;

/// Packs the files under `dir` (relative paths, sorted) as [`unpack`] reads them: per file, its
/// path's length (one byte), the path, the content's length (4 bytes, little-endian) and the
/// content.
pub fn pack(dir: &Path) -> Vec<u8> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut packed = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let content = std::fs::read(&path).unwrap();
        packed.push(u8::try_from(name.len()).unwrap());
        packed.extend(name.as_bytes());
        packed.extend(u32::try_from(content.len()).unwrap().to_le_bytes());
        packed.extend(content);
    }
    packed
}

/// Writes the files `bytes` packs (see [`pack`]) under `root`, which must be empty. A path that
/// would leave `root` (absolute, `..`, empty parts) is skipped, as is a file whose folder is a file;
/// a length past the end takes what is left.
pub fn unpack(mut bytes: &[u8], root: &Path) {
    for _ in 0..MAX_ENTRIES {
        let Some((&len, rest)) = bytes.split_first() else {
            return;
        };
        let (name, rest) = rest.split_at(usize::from(len).min(rest.len()));
        let Some((size, rest)) = rest.split_first_chunk::<4>() else {
            return;
        };
        let (content, rest) = rest.split_at((u32::from_le_bytes(*size) as usize).min(rest.len()));
        bytes = rest;
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let parts: Vec<&str> = name.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
        {
            continue;
        }
        let path = parts
            .iter()
            .fold(root.to_path_buf(), |path, part| path.join(part));
        if path
            .parent()
            .is_some_and(|p| std::fs::create_dir_all(p).is_ok())
        {
            let _ = std::fs::write(&path, content);
        }
    }
}
