//! `intervene import-torch`: a model trained with the paper's reference code (PyTorch) as one of
//! our weights files, which `eval`, `sample`, `export` and the page then take. How each of the
//! reference's tensors lands in ours: docs/method.md#reference-checkpoints.

use crate::files::atomic_write;
use anyhow::{Context as _, Result, bail, ensure};
use burn::tensor::Device;
use burn_store::pytorch_reader::{DType, PytorchError, PytorchReader, Tensor as TorchTensor};
use intervene::config::{Architecture, Method, ModelConfig, NoiseLayer, Widths};
use intervene::data::{Dataset, DatasetKind};
use intervene::model::Model;
use intervene::weights::{self, Precision};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// How one of our tensors is laid out relative to the reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// The same values in the same shape (convolutions, BatchNorm, plain biases).
    Same,
    /// The same values, ours in rows: a per-concept bias `[K*w]` as our `[K, w]` (or `[1, n]`).
    Rows,
    /// PyTorch's `[out, in]` matrix as our `[in, out]` (or one block `[1, in, out]`): linear
    /// layers, the dense noise layer, and the causal layer's `[concept, noise]` as our
    /// `[noise, concept]`.
    Transposed,
    /// The `K` diagonal blocks of a block-masked `[K*out, K*in]` matrix as our `[K, in, out]`;
    /// the reference multiplies everything off them by zero.
    DiagonalBlocks,
}

impl Layout {
    /// The reference's shape of a tensor of ours with shape `ours`.
    fn their_shape(self, ours: &[usize]) -> Vec<usize> {
        match (self, ours) {
            (Layout::Same, _) => ours.to_vec(),
            (Layout::Rows, _) => vec![ours.iter().product()],
            (Layout::Transposed, [a, b] | [1, a, b]) => vec![*b, *a],
            (Layout::DiagonalBlocks, [k, a, b]) => vec![k * b, k * a],
            _ => unreachable!("layout {self:?} does not fit shape {ours:?}"),
        }
    }

    /// The reference's row-major values of a tensor of ours with shape `ours`, in our order.
    fn relayout(self, values: Vec<f32>, ours: &[usize]) -> Vec<f32> {
        match (self, ours) {
            (Layout::Same | Layout::Rows, _) => values,
            (Layout::Transposed, [a, b] | [1, a, b]) => {
                let (a, b) = (*a, *b);
                let mut out = vec![0f32; a * b];
                for i in 0..a {
                    for o in 0..b {
                        out[i * b + o] = values[o * a + i];
                    }
                }
                out
            }
            (Layout::DiagonalBlocks, [k, a, b]) => {
                let (k, a, b) = (*k, *a, *b);
                let mut out = vec![0f32; k * a * b];
                for block in 0..k {
                    for i in 0..a {
                        for o in 0..b {
                            out[(block * a + i) * b + o] =
                                values[(block * b + o) * (k * a) + block * a + i];
                        }
                    }
                }
                out
            }
            _ => unreachable!("layout {self:?} does not fit shape {ours:?}"),
        }
    }
}

/// One of our tensors and where it comes from.
struct Mapping {
    ours: String,
    our_shape: Vec<usize>,
    theirs: String,
    /// The shape the reference's tensor must have.
    their_shape: Vec<usize>,
    layout: Layout,
    /// The reference's axes laid out in concept blocks, whose order may differ from ours.
    concept_axes: &'static [usize],
}

/// What to import, as `intervene import-torch` takes it.
pub struct Request<'a> {
    /// The reference's `vae.pth` (whose `model_state_dict` is the VAE's state dict) or a bare
    /// state dict.
    pub checkpoint: &'a Path,
    pub dataset: DatasetKind,
    pub method: Method,
    /// The backbone the reference was told to use; must be the dataset's.
    pub architecture: Option<Architecture>,
    /// The reference's concept order (its labels without `obs`); its loader's order if `None`.
    pub concepts: Option<Vec<String>>,
}

/// What `import` wrote.
pub struct Imported {
    pub config: ModelConfig,
    pub tensors: usize,
}

/// Converts the reference's checkpoint into our weights file at `out`.
pub fn import(request: &Request, out: &Path) -> Result<Imported> {
    let dataset = request.dataset.dataset();
    if let Some(arch) = request.architecture {
        ensure!(
            arch == dataset.architecture(),
            "--arch {} does not fit --dataset {}, whose images the reference models with {}",
            arch_name(arch),
            dataset.name(),
            arch_name(dataset.architecture())
        );
    }
    let order = concept_order(dataset, request.concepts.as_deref())?;
    let tensors = open(request.checkpoint)?;
    let config = infer_config(&tensors, dataset, request.method)?;
    let mappings = mappings(&config);
    let model = convert(&tensors, &config, &mappings, &order)?;
    let metadata = serde_json::json!({
        "dataset": dataset.name(),
        "imported_from": request
            .checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
        "source": "the paper's PyTorch reference (github.com/Alex-Markham/context-module)",
    });
    atomic_write(out, &weights::encode(&model, Precision::F32, metadata))?;
    Ok(Imported {
        config,
        tensors: mappings.len(),
    })
}

/// For each of the reference's concept blocks, the index of our concept it holds. The
/// reference's loaders order MNIST's perturbations differently from ours; quad's and the scenes'
/// concepts come in our order.
fn concept_order(dataset: &dyn Dataset, theirs: Option<&[String]>) -> Result<Vec<usize>> {
    let ours = dataset.concepts();
    let theirs: Vec<String> = match theirs {
        Some(names) => names.to_vec(),
        None => dataset.reference_concepts(),
    };
    ensure!(
        theirs.len() == ours.len(),
        "--concepts names {} concepts; {} has {}: {}",
        theirs.len(),
        dataset.name(),
        ours.len(),
        ours.join(", ")
    );
    let mut order = Vec::with_capacity(ours.len());
    for name in &theirs {
        let index = ours.iter().position(|o| o == name).with_context(|| {
            format!(
                "--concepts: {} has no concept {name:?}; its concepts are {}",
                dataset.name(),
                ours.join(", ")
            )
        })?;
        ensure!(!order.contains(&index), "--concepts names {name:?} twice");
        order.push(index);
    }
    Ok(order)
}

fn arch_name(arch: Architecture) -> &'static str {
    match arch {
        Architecture::Conv3 => "conv3",
        Architecture::Simple64bn => "simple64bn",
    }
}

/// The state dict's tensors by name: under `model_state_dict` in a training checkpoint, or the
/// file's own dictionary.
fn open(path: &Path) -> Result<HashMap<String, TorchTensor>> {
    let fail = |err: PytorchError| {
        anyhow::anyhow!(
            "{} is not a PyTorch checkpoint this can read: {err}",
            path.display()
        )
    };
    ensure!(path.is_file(), "{} is not a file", path.display());
    let reader = match PytorchReader::with_top_level_key(path, "model_state_dict") {
        Ok(reader) => reader,
        Err(PytorchError::KeyNotFound(_)) => PytorchReader::new(path).map_err(fail)?,
        Err(err) => return Err(fail(err)),
    };
    ensure!(
        !reader.is_empty(),
        "{} holds no tensors: not a state dict of the reference's VAE",
        path.display()
    );
    Ok(reader.into_tensors())
}

/// The model the checkpoint holds: the dataset fixes concepts, backbone and image size (the
/// reference trains at the paper's sizes); the tensors' shapes give the rest.
fn infer_config(
    tensors: &HashMap<String, TorchTensor>,
    dataset: &dyn Dataset,
    method: Method,
) -> Result<ModelConfig> {
    let shape = |name: &str| -> Result<&[usize]> {
        Ok(tensors
            .get(name)
            .with_context(|| format!("the checkpoint lacks {name}: not the reference's VAE"))?
            .shape())
    };
    let k = dataset.concepts().len();
    let hidden = match shape("fc_mu.weight")? {
        [_, hidden] => *hidden,
        other => bail!("fc_mu.weight has shape {other:?}; a linear layer's is [out, in]"),
    };
    let per_concept = |name: &str, dim: usize| -> Result<usize> {
        let size = *shape(name)?
            .get(dim)
            .with_context(|| format!("{name} has shape {:?}, not a matrix", shape(name)))?;
        ensure!(
            size % k == 0 && size > 0,
            "{name} has shape {:?}, which does not split into the {k} concepts of {}",
            shape(name)?,
            dataset.name()
        );
        Ok(size / k)
    };
    // Every reference VAE carries a context module, used or not (a plain VAE ignores it).
    let w_in = per_concept("ivn_eps.obs_weight", 1)?;
    let w_out = per_concept("causal_layer.obs_weight", 1)?;
    let layers = (0..)
        .take_while(|j| tensors.contains_key(&format!("expressive_layer.{}.weight", 3 * j)))
        .count();
    let config = ModelConfig {
        architecture: dataset.architecture(),
        image: dataset
            .image_shape(dataset.native_shape().size)
            .map_err(anyhow::Error::msg)?,
        concepts: dataset.concepts(),
        widths: Widths {
            depth: layers + 1,
            w_in,
            w_out,
        },
        hidden,
        method,
        noise_layer: NoiseLayer::DenseObs,
    };
    config
        .validate()
        .map_err(|err| anyhow::anyhow!("the checkpoint's model cannot be ours: {err}"))?;
    weights::check_size(&config, true)
        .map_err(|err| anyhow::anyhow!("the checkpoint's model cannot be ours: {err}"))?;
    Ok(config)
}

/// Where each of our tensors comes from, in our parameter order. The reference's layers are
/// `nn.Sequential`s, so their names are positions: each backbone stage is a convolution, a
/// ReLU and a BatchNorm (in that order for simple64bn; BatchNorm before ReLU for conv3), and
/// each expressive layer a block linear map, a BatchNorm and a GELU.
fn mappings(config: &ModelConfig) -> Vec<Mapping> {
    use Layout::*;
    let norm_offset = match config.architecture {
        Architecture::Conv3 => 1,
        Architecture::Simple64bn => 2,
    };
    let stages = config.conv_channels().len();
    let context_module = config.method.has_context_module();
    let mut sources = Sources::default();
    for i in 0..stages {
        let (ours, theirs) = (format!("encoder.stages.{i}"), format!("encoder.{}", 3 * i));
        sources.layer(&format!("{ours}.conv"), &theirs, [Same, Same], NONE);
        let norm = format!("encoder.{}", 3 * i + norm_offset);
        sources.norm(&format!("{ours}.norm"), &norm, NONE);
    }
    // A Flatten, then the linear layer.
    let hidden = format!("encoder.{}", 3 * stages + 1);
    sources.layer("encoder.hidden", &hidden, [Transposed, Same], NONE);
    // With a context module the latent is laid out in concept blocks; a plain VAE's is not.
    let latent = if context_module { FIRST } else { NONE };
    sources.layer("encoder.mu", "fc_mu", [Transposed, Same], latent);
    sources.layer("encoder.logvar", "fc_var", [Transposed, Same], latent);
    sources.layer("decoder.input", "decoder.0", [Transposed, Same], NONE);
    sources.layer("decoder.expand", "decoder.2", [Transposed, Same], NONE);
    // Each linear layer's ReLU, a Reshape, then the stages.
    for i in 0..stages - 1 {
        let (ours, theirs) = (format!("decoder.stages.{i}"), 5 + 3 * i);
        sources.layer(
            &format!("{ours}.deconv"),
            &format!("decoder.{theirs}"),
            [Same, Same],
            NONE,
        );
        let norm = format!("decoder.{}", theirs + norm_offset);
        sources.norm(&format!("{ours}.norm"), &norm, NONE);
    }
    let output = format!("decoder.{}", 5 + 3 * (stages - 1));
    sources.layer("decoder.output", &output, [Same, Same], NONE);
    if context_module {
        let cm = "context_module";
        // One noise layer, with one bias in every context and its observational weights dense.
        sources.one(
            &format!("{cm}.noise_obs.weight"),
            "ivn_eps.obs_weight",
            Transposed,
            BOTH,
        );
        sources.one(&format!("{cm}.noise_obs.bias"), "ivn_eps.bias", Rows, FIRST);
        sources.one(
            &format!("{cm}.noise_ivn.weight"),
            "ivn_eps.ivn_weight",
            DiagonalBlocks,
            BOTH,
        );
        sources.one(&format!("{cm}.noise_ivn.bias"), "ivn_eps.bias", Rows, FIRST);
        for j in 0..config.widths.stack().len() - 1 {
            let ours = format!("{cm}.stack.{j}");
            let theirs = format!("expressive_layer.{}", 3 * j);
            sources.layer(
                &format!("{ours}.linear"),
                &theirs,
                [DiagonalBlocks, Rows],
                BOTH,
            );
            let norm = format!("expressive_layer.{}", 3 * j + 1);
            sources.norm(&format!("{ours}.norm"), &norm, FIRST);
        }
        sources.one(
            &format!("{cm}.causal.b_obs"),
            "causal_layer.obs_weight",
            Transposed,
            BOTH,
        );
        sources.one(
            &format!("{cm}.causal.b_ivn"),
            "causal_layer.ivn_weight",
            Transposed,
            BOTH,
        );
        sources.one(
            &format!("{cm}.causal.bias"),
            "causal_layer.bias",
            Same,
            FIRST,
        );
        // Its bias is the decoder's input, not in concept blocks.
        sources.one(
            &format!("{cm}.unpool.weight"),
            "unpool.weight",
            Transposed,
            SECOND,
        );
        sources.one(&format!("{cm}.unpool.bias"), "unpool.bias", Same, NONE);
    }
    Model::parameter_shapes(config, true)
        .into_iter()
        .map(|(ours, our_shape)| {
            let (theirs, layout, concept_axes) = sources
                .0
                .remove(&ours)
                .unwrap_or_else(|| panic!("no reference tensor is mapped to {ours}"));
            Mapping {
                their_shape: layout.their_shape(&our_shape),
                ours,
                our_shape,
                theirs,
                layout,
                concept_axes,
            }
        })
        .collect()
}

const NONE: &[usize] = &[];
const FIRST: &[usize] = &[0];
const SECOND: &[usize] = &[1];
const BOTH: &[usize] = &[0, 1];

/// Our tensor names -> the reference's name, layout and concept-blocked axes.
#[derive(Default)]
struct Sources(HashMap<String, (String, Layout, &'static [usize])>);

impl Sources {
    fn one(&mut self, ours: &str, theirs: &str, layout: Layout, concept_axes: &'static [usize]) {
        self.0
            .insert(ours.to_string(), (theirs.to_string(), layout, concept_axes));
    }

    /// A weight and its bias; `concept_axes` are the weight's, the bias takes the first.
    fn layer(
        &mut self,
        ours: &str,
        theirs: &str,
        [weight, bias]: [Layout; 2],
        concept_axes: &'static [usize],
    ) {
        self.one(
            &format!("{ours}.weight"),
            &format!("{theirs}.weight"),
            weight,
            concept_axes,
        );
        let bias_axes = if concept_axes.contains(&0) {
            FIRST
        } else {
            NONE
        };
        self.one(
            &format!("{ours}.bias"),
            &format!("{theirs}.bias"),
            bias,
            bias_axes,
        );
    }

    /// A BatchNorm: PyTorch's weight and bias are our gamma and beta.
    fn norm(&mut self, ours: &str, theirs: &str, concept_axes: &'static [usize]) {
        for (o, t) in [
            ("gamma", "weight"),
            ("beta", "bias"),
            ("running_mean", "running_mean"),
            ("running_var", "running_var"),
        ] {
            self.one(
                &format!("{ours}.{o}"),
                &format!("{theirs}.{t}"),
                Layout::Same,
                concept_axes,
            );
        }
    }
}

/// Reads every mapped tensor, checks it, and builds our model. The checkpoint must hold exactly
/// the reference VAE's tensors: a missing, misshapen or unknown one is named.
fn convert(
    tensors: &HashMap<String, TorchTensor>,
    config: &ModelConfig,
    mappings: &[Mapping],
    order: &[usize],
) -> Result<Model> {
    // Every name and shape is checked before any value is read.
    for m in mappings {
        let found = tensors
            .get(&m.theirs)
            .with_context(|| format!("the checkpoint lacks {} (our {})", m.theirs, m.ours))?
            .shape();
        ensure!(
            found == m.their_shape.as_slice(),
            "{} has shape {found:?}; a {} model with hidden size {}, widths {} and {} concepts needs {:?}{}",
            m.theirs,
            arch_name(config.architecture),
            config.hidden,
            config.widths,
            config.num_concepts(),
            m.their_shape,
            if m.theirs == "fc_mu.weight" {
                " (a plain VAE's, trained with a vanilla arch_flag, takes --method base)"
            } else {
                ""
            }
        );
    }
    let used: HashSet<&str> = mappings.iter().map(|m| m.theirs.as_str()).collect();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        ensure!(
            used.contains(name.as_str()) || derived(name, config.method),
            "the checkpoint has a tensor the reference's {} VAE for {} concepts lacks: {name}",
            arch_name(config.architecture),
            config.num_concepts()
        );
    }
    let mut ours = HashMap::new();
    for m in mappings {
        let mut values = read_f32(&tensors[&m.theirs])?;
        for &axis in m.concept_axes {
            values = reorder_blocks(values, &m.their_shape, axis, order);
        }
        let values = m.layout.relayout(values, &m.our_shape);
        ours.insert(m.ours.clone(), (m.our_shape.clone(), values));
    }
    weights::assemble(config, ours, &Device::flex()).context("the converted weights")
}

/// Tensors of the reference's state dict that hold nothing to import: masks it rebuilds from the
/// shapes, BatchNorm's step counter, and a plain VAE's unused context module.
fn derived(name: &str, method: Method) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let unused_module = !method.has_context_module()
        && ["ivn_eps.", "expressive_layer.", "causal_layer.", "unpool."]
            .iter()
            .any(|prefix| name.starts_with(prefix));
    matches!(
        last,
        "block_mask" | "block_mask_diag" | "num_batches_tracked"
    ) || unused_module
}

/// The tensor's values as f32 (the reference saves f32; f64 is narrowed).
fn read_f32(tensor: &TorchTensor) -> Result<Vec<f32>> {
    let bytes = tensor
        .read()
        .with_context(|| format!("cannot read {}", tensor.name))?;
    Ok(match tensor.dtype() {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => bail!(
            "{} holds {other:?} values; import takes f32 or f64",
            tensor.name
        ),
    })
}

/// Row-major `values` of `shape` with the concept blocks along `axis` moved to our order: the
/// reference's block `b` becomes our block `order[b]`.
fn reorder_blocks(values: Vec<f32>, shape: &[usize], axis: usize, order: &[usize]) -> Vec<f32> {
    if order.iter().enumerate().all(|(b, &o)| b == o) {
        return values;
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let width = shape[axis] / order.len();
    let mut out = vec![0f32; values.len()];
    for o in 0..outer {
        for (from, &to) in order.iter().enumerate() {
            for u in 0..width {
                let source = (o * shape[axis] + from * width + u) * inner;
                let target = (o * shape[axis] + to * width + u) * inner;
                out[target..target + inner].copy_from_slice(&values[source..source + inner]);
            }
        }
    }
    out
}
