//! The weights file: one self-describing file that holds a model's config, concept names, image
//! shape and weights, written by `intervene export` (and for a run's best weights) and read by
//! the trainer and the browser alike.
//!
//! Layout (little endian):
//! ```text
//! "INTRVENE"  u32 format version  u64 header length  header (JSON)  tensors  u32 CRC-32
//! ```
//! The header lists every tensor's name and shape in payload order. The CRC covers every byte
//! before it, so a truncated or corrupted file is refused before any weight is read.

use crate::config::ModelConfig;
use crate::model::Model;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const MAGIC: &[u8; 8] = b"INTRVENE";
pub const FORMAT_VERSION: u32 = 1;

/// How weights are stored on disk (they are always f32 in memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    /// Matrices and kernels as 8-bit integers with one f32 scale per row (first dimension);
    /// vectors (biases, normalisation statistics) as f16. Half the size of f16: what the web
    /// page ships.
    Q8,
}

impl Precision {
    /// Bytes one tensor of `shape` takes.
    fn tensor_bytes(self, shape: &[usize]) -> usize {
        let count: usize = shape.iter().product();
        match (self, shape) {
            (Precision::F32, _) => 4 * count,
            (Precision::Q8, [rows, _, ..]) => 4 * rows + count,
            (Precision::F16 | Precision::Q8, _) => 2 * count,
        }
    }

    fn write(self, shape: &[usize], values: &[f32], out: &mut Vec<u8>) {
        match (self, shape) {
            (Precision::F32, _) => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            (Precision::Q8, [rows, _, ..]) => {
                for row in values.chunks_exact(values.len() / rows) {
                    let scale = row.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                    out.extend_from_slice(&scale.to_le_bytes());
                    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                    out.extend(row.iter().map(|v| (v * inverse).round() as i8 as u8));
                }
            }
            (Precision::F16 | Precision::Q8, _) => values
                .iter()
                .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        }
    }

    fn read(self, shape: &[usize], bytes: &[u8]) -> Vec<f32> {
        match (self, shape) {
            (Precision::F32, _) => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            (Precision::Q8, [rows, _, ..]) => {
                let row_len = (bytes.len() - 4 * rows) / rows;
                bytes
                    .chunks_exact(4 + row_len)
                    .flat_map(|row| {
                        let scale = f32::from_le_bytes(row[..4].try_into().unwrap());
                        row[4..].iter().map(move |&q| f32::from(q as i8) * scale)
                    })
                    .collect()
            }
            (Precision::F16 | Precision::Q8, _) => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TensorEntry {
    name: String,
    shape: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    model: ModelConfig,
    precision: Precision,
    has_encoder: bool,
    tensors: Vec<TensorEntry>,
    /// Free-form facts about where the weights came from (dataset, run, metrics).
    metadata: serde_json::Value,
}

/// Why a weights file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("not an intervene weights file (bad magic bytes)")]
    BadMagic,
    #[error(
        "weights file format version {found} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u32 },
    #[error("weights file is truncated: expected {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("weights file is corrupt: checksum mismatch")]
    Checksum,
    #[error("weights file header is invalid: {0}")]
    Header(String),
    #[error("weights file does not match its model: {0}")]
    Mismatch(String),
}

/// What a weights file holds once loaded.
pub struct LoadedWeights {
    pub model: Model,
    pub precision: Precision,
    pub metadata: serde_json::Value,
}

/// Serialises `model` (with or without its encoder, as it is) to bytes.
pub fn encode(model: &Model, precision: Precision, metadata: serde_json::Value) -> Vec<u8> {
    let mut collect = Collect::default();
    model.visit(&mut collect);
    let header = Header {
        model: model.config.clone(),
        precision,
        has_encoder: model.has_encoder(),
        tensors: collect
            .tensors
            .iter()
            .map(|(name, shape, _)| TensorEntry {
                name: name.clone(),
                shape: shape.clone(),
            })
            .collect(),
        metadata,
    };
    let header = serde_json::to_vec(&header).expect("header serialises");
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    for (_, shape, values) in &collect.tensors {
        precision.write(shape, values, &mut out);
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads the config without building the model (cheap; for listings and checks).
pub fn read_config(bytes: &[u8]) -> Result<(ModelConfig, serde_json::Value), WeightsError> {
    let (header, _) = parse(bytes)?;
    Ok((header.model, header.metadata))
}

/// Checks and loads a weights file onto `device`.
pub fn decode(bytes: &[u8], device: &Device) -> Result<LoadedWeights, WeightsError> {
    let (header, payload) = parse(bytes)?;
    header.model.validate().map_err(WeightsError::Header)?;
    let mut tensors = HashMap::new();
    let mut offset = 0usize;
    for entry in &header.tensors {
        let len = header.precision.tensor_bytes(&entry.shape);
        let chunk = payload.get(offset..offset + len).ok_or_else(|| {
            WeightsError::Header(format!("tensor {} runs past the payload", entry.name))
        })?;
        let values = header.precision.read(&entry.shape, chunk);
        offset += len;
        tensors.insert(entry.name.clone(), (entry.shape.clone(), values));
    }
    if offset != payload.len() {
        return Err(WeightsError::Header(format!(
            "payload holds {} bytes but the header accounts for {offset}",
            payload.len()
        )));
    }
    let mut model = Model::new(&header.model, device);
    if !header.has_encoder {
        model = model.without_encoder();
    }
    let mut fill = Fill {
        path: Vec::new(),
        tensors,
        device: device.clone(),
        problems: Vec::new(),
    };
    let model = model.map(&mut fill);
    if let Some(name) = fill.tensors.keys().next() {
        fill.problems
            .push(format!("file has a tensor the model lacks: {name}"));
    }
    if let Some(problem) = fill.problems.into_iter().next() {
        return Err(WeightsError::Mismatch(problem));
    }
    Ok(LoadedWeights {
        model,
        precision: header.precision,
        metadata: header.metadata,
    })
}

/// Validates framing and checksum, returning the header and the tensor payload.
fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), WeightsError> {
    const FIXED: usize = 8 + 4 + 8;
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(WeightsError::BadMagic);
    }
    if bytes.len() < FIXED + 4 {
        return Err(WeightsError::Truncated {
            expected: (FIXED + 4) as u64,
            found: bytes.len() as u64,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(WeightsError::UnsupportedVersion { found: version });
    }
    let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let header_end = (FIXED as u64).saturating_add(header_len);
    if header_end + 4 > bytes.len() as u64 {
        return Err(WeightsError::Truncated {
            expected: header_end + 4,
            found: bytes.len() as u64,
        });
    }
    let header_end = header_end as usize;
    let header: Header = serde_json::from_slice(&bytes[FIXED..header_end])
        .map_err(|e| WeightsError::Header(e.to_string()))?;
    let payload_len: u64 = header
        .tensors
        .iter()
        .map(|t| header.precision.tensor_bytes(&t.shape) as u64)
        .sum();
    let expected = header_end as u64 + payload_len + 4;
    if (bytes.len() as u64) < expected {
        return Err(WeightsError::Truncated {
            expected,
            found: bytes.len() as u64,
        });
    }
    if bytes.len() as u64 > expected {
        return Err(WeightsError::Header(format!(
            "{} unexpected trailing bytes",
            bytes.len() as u64 - expected
        )));
    }
    let body_end = bytes.len() - 4;
    let stored = u32::from_le_bytes(bytes[body_end..].try_into().unwrap());
    if crc32(&bytes[..body_end]) != stored {
        return Err(WeightsError::Checksum);
    }
    Ok((header, &bytes[header_end..body_end]))
}

/// Gathers `(path, shape, values)` for every float tensor, in visiting order.
#[derive(Default)]
struct Collect {
    path: Vec<String>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let shape = value.dims().to_vec();
        let values = value
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 data");
        self.tensors.push((self.path.join("."), shape, values));
    }
}

/// Replaces every float tensor by the one stored under its path.
struct Fill {
    path: Vec<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    device: Device,
    problems: Vec<String>,
}

impl ModuleMapper for Fill {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let Some((shape, values)) = self.tensors.remove(&name) else {
            self.problems.push(format!("tensor {name} is missing"));
            return param;
        };
        let expected = param.lazy_shape().dims::<D>().to_vec();
        if shape != expected {
            self.problems.push(format!(
                "tensor {name} has shape {shape:?}, the model needs {expected:?}"
            ));
            return param;
        }
        let device = self.device.clone();
        param.map(|_| Tensor::from_data(TensorData::new(values, shape), &device))
    }
}

/// CRC-32 (IEEE), bitwise: the files are a few MB and read once, so a table buys nothing.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, ImageShape, Method, Widths};
    use crate::context::Context;

    fn config() -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Simple64bn,
            image: ImageShape {
                channels: 3,
                size: 32,
            },
            concepts: vec!["a".into(), "b".into()],
            widths: Widths {
                depth: 2,
                w_in: 4,
                w_out: 2,
            },
            hidden: 16,
            method: Method::Cm,
        }
    }

    fn generate(model: &Model) -> Vec<f32> {
        let device = Device::flex();
        let mut rng = crate::rng::Rng::new(5);
        let mut z = vec![0f32; 3 * 8];
        rng.fill_normal(&mut z);
        let z = Tensor::<2>::from_data(TensorData::new(z, [3, 8]), &device);
        model
            .generate(z, Context::from_indices([0, 1]))
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap()
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_gives_identical_outputs() {
        let device = Device::flex();
        let model = Model::new(&config(), &device);
        let bytes = encode(&model, Precision::F32, serde_json::json!({"run": "test"}));
        let loaded = decode(&bytes, &device).unwrap();
        assert_eq!(generate(&model), generate(&loaded.model));
        assert_eq!(loaded.metadata["run"], "test");
        assert!(loaded.model.has_encoder());
    }

    #[test]
    fn smaller_precisions_decoder_only_stay_close() {
        let device = Device::flex();
        let model = Model::new(&config(), &device);
        let full = encode(&model, Precision::F32, serde_json::Value::Null).len();
        for (precision, max_fraction, tolerance) in
            [(Precision::F16, 0.5, 1e-2), (Precision::Q8, 0.3, 3e-2)]
        {
            let bytes = encode(
                &model.clone().without_encoder(),
                precision,
                serde_json::Value::Null,
            );
            assert!(
                (bytes.len() as f64) < full as f64 * max_fraction,
                "{precision:?}"
            );
            let loaded = decode(&bytes, &device).unwrap();
            assert!(!loaded.model.has_encoder());
            assert_eq!(loaded.precision, precision);
            let (a, b) = (generate(&model), generate(&loaded.model));
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(worst < tolerance, "{precision:?} moved a pixel by {worst}");
        }
    }

    #[test]
    fn q8_rows_keep_their_own_scale() {
        let shape = [2, 3];
        let values = [1.0, -0.5, 0.25, 100.0, 0.0, -50.0];
        let mut bytes = Vec::new();
        Precision::Q8.write(&shape, &values, &mut bytes);
        assert_eq!(bytes.len(), Precision::Q8.tensor_bytes(&shape));
        let back = Precision::Q8.read(&shape, &bytes);
        for (v, b) in values.iter().zip(&back) {
            assert!(
                (v - b).abs() <= v.abs().max(1.0) / 127.0,
                "{v} came back as {b}"
            );
        }
        // A zero row must not divide by zero.
        let mut zero = Vec::new();
        Precision::Q8.write(&[1, 2], &[0.0, 0.0], &mut zero);
        assert_eq!(Precision::Q8.read(&[1, 2], &zero), [0.0, 0.0]);
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_refused() {
        let device = Device::flex();
        let bytes = encode(
            &Model::new(&config(), &device),
            Precision::F32,
            serde_json::Value::Null,
        );
        let mut flipped = bytes.clone();
        let mid = flipped.len() - 100;
        flipped[mid] ^= 0x40;
        assert!(matches!(
            decode(&flipped, &device),
            Err(WeightsError::Checksum)
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2], &device),
            Err(WeightsError::Truncated { .. })
        ));
        assert!(matches!(
            decode(b"PK\x03\x04 not ours", &device),
            Err(WeightsError::BadMagic)
        ));
        let mut future = bytes.clone();
        future[8] = 99;
        assert!(matches!(
            decode(&future, &device),
            Err(WeightsError::UnsupportedVersion { found: 99 })
        ));
    }
}
