//! The weights file: one self-describing file that holds a model's config, concept names, image
//! shape and weights, written by `intervene export` (and for a run's best weights) and read by
//! the trainer and the browser alike.
//!
//! Layout (little endian):
//! ```text
//! "INTRVENE"  u32 format version  u64 header length  header (JSON)  tensors  u32 CRC-32
//! ```
//! The header lists every tensor's name and shape in payload order. Reading trusts nothing
//! before it is checked: the CRC, which covers every byte before it, comes first; then the
//! header's model config (`ModelConfig::validate`, and a budget on the number of parameters);
//! then every tensor's name and shape against the model that config describes. Only then is
//! anything allocated, and values that are not finite are refused by tensor name.
//!
//! An **encoder file** is the same format holding only the encoder of a model exported without
//! it, and the CRC-32 of that model's file: the page ships models decoder-only and fetches the
//! encoder only when a visitor edits an image ([`encode_encoder`], [`attach_encoder`]).

use crate::config::ModelConfig;
use crate::model::Model;
use crate::model::vae::Encoder;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const MAGIC: &[u8; 8] = b"INTRVENE";
pub const FORMAT_VERSION: u32 = 1;

/// Most parameters a model read from a file may have: 400 MB in f32. The paper's 64 px quad model
/// has about 2.5 million; the configs `ModelConfig::validate` allows reach a billion.
pub const MAX_PARAMETERS: usize = 100_000_000;

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
    /// Bytes one tensor of `shape` takes, or `None` if that overflows.
    fn tensor_bytes(self, shape: &[usize]) -> Option<usize> {
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
        match (self, shape) {
            (Precision::F32, _) => count.checked_mul(4),
            (Precision::Q8, [rows, _, ..]) => rows.checked_mul(4)?.checked_add(count),
            (Precision::F16 | Precision::Q8, _) => count.checked_mul(2),
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
    /// Set in an encoder file: the CRC-32 of the (decoder-only) model file it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encoder_for: Option<u32>,
    tensors: Vec<TensorEntry>,
    /// Free-form facts about where the weights came from (dataset, run, metrics).
    metadata: serde_json::Value,
}

/// Which of a model's parameters a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parts {
    Whole,
    /// The context module and decoder: what generating needs.
    Generative,
    Encoder,
}

impl Header {
    fn parts(&self) -> Parts {
        match (self.encoder_for, self.has_encoder) {
            (Some(_), _) => Parts::Encoder,
            (None, true) => Parts::Whole,
            (None, false) => Parts::Generative,
        }
    }
}

/// The encoder's name in a model's parameter paths (`encoder.stages.0.conv.weight`).
const ENCODER_NAME: &str = "encoder";

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
    write(model, precision, None, collect.tensors, metadata)
}

/// The encoder of `model` as an encoder file for `model_file`, the same model exported without
/// its encoder. `None` if `model` has no encoder.
pub fn encode_encoder(model: &Model, precision: Precision, model_file: &[u8]) -> Option<Vec<u8>> {
    let encoder = model.encoder.as_ref()?;
    let mut collect = Collect {
        path: vec![ENCODER_NAME.to_string()],
        tensors: Vec::new(),
    };
    encoder.visit(&mut collect);
    let paired = stored_checksum(model_file);
    Some(write(
        model,
        precision,
        Some(paired),
        collect.tensors,
        serde_json::json!({}),
    ))
}

/// The CRC-32 a weights file ends with (what an encoder file names its model file by).
fn stored_checksum(file: &[u8]) -> u32 {
    let tail = file.len().saturating_sub(4);
    u32::from_le_bytes(file[tail..].try_into().unwrap_or([0; 4]))
}

/// Gives `model`, loaded from `model_file`, the encoder in `encoder_file`, after checking that
/// the encoder file is intact and was written for exactly that model file.
pub fn attach_encoder(
    encoder_file: &[u8],
    model: Model,
    model_file: &[u8],
) -> Result<Model, WeightsError> {
    let (header, payload) = parse(encoder_file)?;
    check_pair(&header, &model.config, model_file)?;
    let tensors = read_tensors(&header, payload)?;
    // Built on the CPU and moved, as `decode` callers do: no GPU kernel runs for initial values
    // that are overwritten at once.
    let cpu = Device::flex();
    let encoder = Encoder::new(&model.config, &cpu).map(&mut Fill {
        path: vec![ENCODER_NAME.to_string()],
        tensors,
        device: cpu,
    });
    let device = model.decoder.input.weight.device();
    Ok(Model {
        encoder: Some(encoder.to_device(&device)),
        ..model
    })
}

/// Checks, without building anything, that `encoder_file` is an intact encoder file written for
/// the intact weights file `model_file`.
pub fn encoder_fits(encoder_file: &[u8], model_file: &[u8]) -> Result<(), WeightsError> {
    let (model, _) = parse(model_file)?;
    let (header, _) = parse(encoder_file)?;
    check_pair(&header, &model.model, model_file)
}

fn check_pair(
    encoder: &Header,
    config: &ModelConfig,
    model_file: &[u8],
) -> Result<(), WeightsError> {
    if encoder.parts() != Parts::Encoder {
        return Err(WeightsError::Header(
            "this is a model file, not an encoder file".into(),
        ));
    }
    if encoder.encoder_for != Some(stored_checksum(model_file)) || encoder.model != *config {
        return Err(WeightsError::Mismatch(
            "this encoder file belongs to another model file".into(),
        ));
    }
    Ok(())
}

/// The file for `tensors` (each `(path, shape, values)`, in payload order) of `model`.
fn write(
    model: &Model,
    precision: Precision,
    encoder_for: Option<u32>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    metadata: serde_json::Value,
) -> Vec<u8> {
    let header = Header {
        model: model.config.clone(),
        precision,
        has_encoder: model.has_encoder(),
        encoder_for,
        tensors: tensors
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
    for (_, shape, values) in &tensors {
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
    if header.parts() == Parts::Encoder {
        return Err(WeightsError::Header(
            "this file holds only an encoder; load the model file it belongs to, and the encoder with it".into(),
        ));
    }
    let tensors = read_tensors(&header, payload)?;
    Ok(LoadedWeights {
        model: fill(&header.model, header.has_encoder, tensors, device),
        precision: header.precision,
        metadata: header.metadata,
    })
}

type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The payload's tensors by name, refusing values that are not finite.
fn read_tensors(header: &Header, payload: &[u8]) -> Result<Tensors, WeightsError> {
    let mut tensors = HashMap::new();
    let mut offset = 0usize;
    for entry in &header.tensors {
        // `parse` has matched every shape to the model and the payload's length to the shapes.
        let len = header
            .precision
            .tensor_bytes(&entry.shape)
            .expect("checked by parse");
        let values = header
            .precision
            .read(&entry.shape, &payload[offset..offset + len]);
        offset += len;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(WeightsError::Mismatch(format!(
                "tensor {} holds a value that is not finite (NaN or infinity)",
                entry.name
            )));
        }
        tensors.insert(entry.name.clone(), (entry.shape.clone(), values));
    }
    Ok(tensors)
}

/// The model `config` describes, with its encoder, holding `tensors`: `(shape, values)` under
/// each parameter's path. For weights read from another format; every name and shape is checked
/// against the model first.
pub fn assemble(
    config: &ModelConfig,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    device: &Device,
) -> Result<Model, WeightsError> {
    config.validate().map_err(WeightsError::Header)?;
    let mut entries: Vec<TensorEntry> = tensors
        .iter()
        .map(|(name, (shape, _))| TensorEntry {
            name: name.clone(),
            shape: shape.clone(),
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    check_tensors(&Header {
        model: config.clone(),
        precision: Precision::F32,
        has_encoder: true,
        encoder_for: None,
        tensors: entries,
        metadata: serde_json::Value::Null,
    })?;
    for (name, (shape, values)) in &tensors {
        if values.len() != shape.iter().product::<usize>() {
            return Err(WeightsError::Mismatch(format!(
                "tensor {name} holds {} values for shape {shape:?}",
                values.len()
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(WeightsError::Mismatch(format!(
                "tensor {name} holds a value that is not finite (NaN or infinity)"
            )));
        }
    }
    Ok(fill(config, true, tensors, device))
}

/// The model `config` describes holding `tensors`, whose names and shapes have been checked.
fn fill(
    config: &ModelConfig,
    has_encoder: bool,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    device: &Device,
) -> Model {
    let mut model = Model::new(config, device);
    if !has_encoder {
        model = model.without_encoder();
    }
    model.map(&mut Fill {
        path: Vec::new(),
        tensors,
        device: device.clone(),
    })
}

const FIXED: usize = 8 + 4 + 8;

/// Checks framing, checksum, header, config and tensor list, in that order, and returns the
/// header and the tensor payload. Nothing in the file is acted on before the checksum passes, and
/// every size read from it is checked arithmetic.
fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), WeightsError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(WeightsError::BadMagic);
    }
    let found = bytes.len() as u64;
    if bytes.len() < FIXED + 4 {
        return Err(WeightsError::Truncated {
            expected: (FIXED + 4) as u64,
            found,
        });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(WeightsError::UnsupportedVersion { found: version });
    }
    let body_end = bytes.len() - 4;
    let stored = u32::from_le_bytes(bytes[body_end..].try_into().expect("4 bytes"));
    if crc32(&bytes[..body_end]) != stored {
        return Err(match declared_length(bytes) {
            Some(expected) if expected > found => WeightsError::Truncated { expected, found },
            _ => WeightsError::Checksum,
        });
    }
    let header_len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let header_end = usize::try_from(header_len)
        .ok()
        .and_then(|n| n.checked_add(FIXED))
        .filter(|&end| end <= body_end)
        .ok_or_else(|| {
            WeightsError::Header(format!("header length {header_len} runs past the file"))
        })?;
    let header: Header = serde_json::from_slice(&bytes[FIXED..header_end])
        .map_err(|e| WeightsError::Header(e.to_string()))?;
    header.model.validate().map_err(WeightsError::Header)?;
    check_tensors(&header)?;
    let payload_len = header
        .tensors
        .iter()
        .try_fold(0usize, |sum, t| {
            sum.checked_add(header.precision.tensor_bytes(&t.shape)?)
        })
        .ok_or_else(|| WeightsError::Header("tensor sizes overflow".into()))?;
    let payload = &bytes[header_end..body_end];
    if payload.len() != payload_len {
        return Err(WeightsError::Header(format!(
            "payload holds {} bytes but the tensors need {payload_len}",
            payload.len()
        )));
    }
    Ok((header, payload))
}

/// The file length a damaged file's header claims (at least), if it can be worked out: only to
/// tell a truncated file from an altered one in the message.
fn declared_length(bytes: &[u8]) -> Option<u64> {
    let header_len = usize::try_from(u64::from_le_bytes(bytes[12..20].try_into().ok()?)).ok()?;
    let header_end = FIXED.checked_add(header_len)?;
    let Some(header) = bytes.get(FIXED..header_end) else {
        // The header itself is cut off.
        return u64::try_from(header_end.checked_add(4)?).ok();
    };
    let header: Header = serde_json::from_slice(header).ok()?;
    let payload = header.tensors.iter().try_fold(0usize, |sum, t| {
        sum.checked_add(header.precision.tensor_bytes(&t.shape)?)
    })?;
    u64::try_from(header_end.checked_add(payload)?.checked_add(4)?).ok()
}

/// The header's tensors must be exactly the model's, in any order, each with its shape, and the
/// model within [`MAX_PARAMETERS`].
fn check_tensors(header: &Header) -> Result<(), WeightsError> {
    let mut expected = check_size(&header.model, header.parts() != Parts::Generative)?;
    if header.parts() == Parts::Encoder {
        expected.retain(|(name, _)| name.split('.').next() == Some(ENCODER_NAME));
    }
    let listed: HashMap<&str, &[usize]> = header
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice()))
        .collect();
    if listed.len() != header.tensors.len() {
        return Err(WeightsError::Header("a tensor is listed twice".into()));
    }
    for (name, shape) in &expected {
        match listed.get(name.as_str()) {
            None => return Err(WeightsError::Mismatch(format!("tensor {name} is missing"))),
            Some(found) if found != shape => {
                return Err(WeightsError::Mismatch(format!(
                    "tensor {name} has shape {found:?}, the model needs {shape:?}"
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = header
        .tensors
        .iter()
        .find(|t| !expected.iter().any(|(name, _)| *name == t.name))
    {
        return Err(WeightsError::Mismatch(format!(
            "file has a tensor the model lacks: {}",
            extra.name
        )));
    }
    Ok(())
}

/// The parameters' names and shapes of the model a valid `config` describes, if it has at most
/// [`MAX_PARAMETERS`]: checked before anything of that size is allocated.
pub fn check_size(
    config: &ModelConfig,
    with_encoder: bool,
) -> Result<Vec<(String, Vec<usize>)>, WeightsError> {
    let expected = Model::parameter_shapes(config, with_encoder);
    let parameters = expected.iter().try_fold(0usize, |sum, (_, shape)| {
        sum.checked_add(shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?)
    });
    match parameters.is_some_and(|n| n <= MAX_PARAMETERS) {
        true => Ok(expected),
        false => Err(WeightsError::Header(format!(
            "the model has more than {MAX_PARAMETERS} parameters"
        ))),
    }
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

/// Replaces every float tensor by the one stored under its path (`check_tensors` has matched
/// the names and shapes).
struct Fill {
    path: Vec<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    device: Device,
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
        let (shape, values) = self
            .tensors
            .remove(&name)
            .expect("check_tensors lists every tensor of the model");
        let device = self.device.clone();
        param.map(|_| Tensor::from_data(TensorData::new(values, shape), &device))
    }
}

/// CRC-32 (IEEE).
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Architecture, ImageShape, Method, Widths};
    use crate::context::Context;

    /// A model shipped without its encoder gets it back from its encoder file, bit for bit in
    /// f32; the encoder file fits no other model file and cannot be loaded as a model.
    #[test]
    fn an_encoder_file_restores_the_encoder_of_its_model_file_only() {
        let device = Device::flex();
        let model = Model::seeded(&config(), 5, &device);
        let model_file = encode(
            &model.clone().without_encoder(),
            Precision::F32,
            serde_json::json!({}),
        );
        let encoder_file = encode_encoder(&model, Precision::F32, &model_file).unwrap();
        assert!(encoder_file.len() < model_file.len());
        let decoder_only = decode(&model_file, &device).unwrap().model;
        let whole = attach_encoder(&encoder_file, decoder_only.clone(), &model_file).unwrap();
        let mut ours = Collect::default();
        whole.visit(&mut ours);
        let mut theirs = Collect::default();
        model.visit(&mut theirs);
        assert_eq!(ours.tensors, theirs.tensors);

        let other = Model::seeded(&config(), 6, &device).without_encoder();
        let other_file = encode(&other, Precision::F32, serde_json::json!({}));
        assert!(encoder_fits(&encoder_file, &model_file).is_ok());
        assert!(encoder_fits(&encoder_file, &other_file).is_err());
        let err = attach_encoder(&encoder_file, other, &other_file).unwrap_err();
        assert!(err.to_string().contains("another model file"), "{err}");
        let err = decode(&encoder_file, &device).err().unwrap();
        assert!(err.to_string().contains("only an encoder"), "{err}");
        let mut damaged = encoder_file.clone();
        damaged[40] ^= 1;
        assert!(attach_encoder(&damaged, decoder_only, &model_file).is_err());
    }

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
            noise_layer: Default::default(),
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
        assert_eq!(Some(bytes.len()), Precision::Q8.tensor_bytes(&shape));
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

    /// `header` and `payload` framed as a weights file, with a correct checksum.
    fn framed(header: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(header);
        out.extend_from_slice(payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// A header and payload split back out of a file `encode` wrote.
    fn unframe(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
        let header_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        let header = serde_json::from_slice(&bytes[FIXED..FIXED + header_len]).unwrap();
        (header, bytes[FIXED + header_len..bytes.len() - 4].to_vec())
    }

    /// Values a crafted file might put where a size belongs.
    fn odd_number(rng: &mut crate::rng::Rng) -> serde_json::Value {
        let choices = [
            0u64,
            1,
            2,
            3,
            7,
            28,
            64,
            4097,
            65_536,
            1 << 31,
            1 << 40,
            1 << 62,
            u64::MAX,
        ];
        serde_json::json!(choices[rng.below(choices.len())])
    }

    /// One random edit of the header's JSON: a size, a name, an enum, a tensor entry.
    fn mutate_header(header: &mut serde_json::Value, rng: &mut crate::rng::Rng) {
        let n_tensors = header["tensors"].as_array().unwrap().len();
        let t = rng.below(n_tensors);
        match rng.below(14) {
            0 => header["model"]["widths"]["depth"] = odd_number(rng),
            1 => header["model"]["widths"]["w_in"] = odd_number(rng),
            2 => header["model"]["widths"]["w_out"] = odd_number(rng),
            3 => header["model"]["hidden"] = odd_number(rng),
            4 => header["model"]["image"]["size"] = odd_number(rng),
            5 => header["model"]["image"]["channels"] = odd_number(rng),
            6 => {
                let concepts = ["", "a", "b", "c", "a"];
                let k = rng.below(40);
                header["model"]["concepts"] = (0..k).map(|i| concepts[i % 5]).collect();
            }
            7 => {
                let values = [
                    "cm",
                    "base",
                    "conv3",
                    "simple64bn",
                    "q8",
                    "f16",
                    "f32",
                    "nope",
                ];
                let field = ["architecture", "method"][rng.below(2)];
                header["model"][field] = serde_json::json!(values[rng.below(values.len())]);
                header["precision"] = serde_json::json!(values[rng.below(values.len())]);
            }
            8 => header["has_encoder"] = serde_json::json!(rng.below(2) == 0),
            9 => {
                header["tensors"].as_array_mut().unwrap().remove(t);
            }
            10 => {
                let copy = header["tensors"][t].clone();
                header["tensors"].as_array_mut().unwrap().push(copy);
            }
            11 => {
                let dims = header["tensors"][t]["shape"].as_array().unwrap().len();
                header["tensors"][t]["shape"][rng.below(dims)] = odd_number(rng);
            }
            12 => header["tensors"][t]["shape"]
                .as_array_mut()
                .unwrap()
                .push(odd_number(rng)),
            _ => header["tensors"][t]["name"] = serde_json::json!("decoder.output.weight"),
        }
    }

    /// 10,000 files with a valid checksum and a crafted header, payload or length field:
    /// every one is loaded or refused with a one-line message, none panics.
    #[test]
    fn crafted_files_with_valid_checksums_are_refused_cleanly() {
        let device = Device::flex();
        let model = Model::new(&config(), &device);
        let originals: Vec<Vec<u8>> = [Precision::F32, Precision::F16, Precision::Q8]
            .into_iter()
            .flat_map(|p| {
                [model.clone(), model.clone().without_encoder()]
                    .map(|m| encode(&m, p, serde_json::json!({"dataset": "quad-dependent"})))
            })
            .collect();
        let mut rng = crate::rng::Rng::new(2026);
        let (mut loaded, mut refused) = (0, 0);
        for case in 0..10_000 {
            let (mut header, mut payload) = unframe(&originals[case % originals.len()]);
            let mut length_field = None;
            for _ in 0..1 + rng.below(3) {
                match rng.below(6) {
                    0..=2 => mutate_header(&mut header, &mut rng),
                    3 => {
                        // A non-finite value in place of an f32 (or two f16s, or q8 bytes).
                        let at = rng.below(payload.len() / 4) * 4;
                        let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.below(3)];
                        payload[at..at + 4].copy_from_slice(&bad.to_le_bytes());
                    }
                    4 => payload.truncate(rng.below(payload.len())),
                    _ => length_field = Some(rng.next_u64() >> rng.below(64)),
                }
            }
            let mut bytes = framed(&serde_json::to_vec(&header).unwrap(), &payload);
            if let Some(length) = length_field {
                bytes[12..20].copy_from_slice(&length.to_le_bytes());
                let body_end = bytes.len() - 4;
                let crc = crc32(&bytes[..body_end]);
                bytes[body_end..].copy_from_slice(&crc.to_le_bytes());
            }
            let outcome = std::panic::catch_unwind(|| decode(&bytes, &device).map(|_| ()));
            match outcome {
                Ok(Ok(())) => loaded += 1,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    assert!(!message.contains('\n'), "case {case}: {message}");
                    refused += 1;
                }
                Err(_) => panic!("case {case} panicked; header {header}"),
            }
        }
        // Most edits break the file; some (a harmless header field, a finite payload change
        // through f16 or q8) still load.
        assert!(
            refused > 9_000 && loaded > 0,
            "{refused} refused, {loaded} loaded"
        );
    }

    #[test]
    fn non_finite_weights_are_refused_by_name() {
        let device = Device::flex();
        let bytes = encode(
            &Model::new(&config(), &device),
            Precision::F32,
            serde_json::Value::Null,
        );
        let (header, mut payload) = unframe(&bytes);
        // The first tensor's first value.
        payload[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        let first = header["tensors"][0]["name"].as_str().unwrap().to_string();
        let message = match decode(
            &framed(&serde_json::to_vec(&header).unwrap(), &payload),
            &device,
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a NaN weight was accepted"),
        };
        assert!(
            message.contains(&first) && message.contains("not finite"),
            "{message}"
        );
    }

    #[test]
    fn oversized_models_are_refused_before_anything_is_built() {
        let device = Device::flex();
        let bytes = encode(
            &Model::new(&config(), &device),
            Precision::F32,
            serde_json::Value::Null,
        );
        let (mut header, payload) = unframe(&bytes);
        // Valid bounds, far over the parameter budget: 32 concepts of width 1024.
        header["model"]["concepts"] = (0..32).map(|i| format!("c{i}")).collect();
        header["model"]["widths"] = serde_json::json!({"depth": 2, "w_in": 1024, "w_out": 1024});
        let message = match decode(
            &framed(&serde_json::to_vec(&header).unwrap(), &payload),
            &device,
        ) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("an oversized model was accepted"),
        };
        assert!(message.contains("parameters"), "{message}");
    }
}
