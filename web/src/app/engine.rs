//! A loaded model on a device, in the model worker: turns a [`View`] into images.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use intervene::context::Context;
use intervene::counterfactual::{self, Edit};
use intervene::data::{Dataset, Split};
use intervene::model::Model;
use intervene::model::context_module::graph_from_weights;
use intervene::rng::Rng;
use intervene::sampling::latents;
use intervene::weights;

use crate::link::{EDIT_CHOICES, View};
use crate::picture::Picture;
use crate::protocol::{EditedPicture, ModelInfo};

/// Real images use their own stream of the view's seed, so they never share draws with the noise.
const REAL_IMAGES_STREAM: u64 = 0x0EA1;
/// The images offered for editing, another stream of the seed.
const EDIT_STREAM: u64 = 0x0ED17;

pub struct Engine {
    pub model: Model,
    /// What the page is told of the model.
    pub info: ModelInfo,
    pub device: Device,
    /// The weights file, which an encoder file must have been written for.
    file: Vec<u8>,
}

/// What an edit request gets: the images one may pick, and the edit itself when there is an
/// image to edit (its tiles' pixels and names).
pub struct Edited {
    pub choices: Result<Picture, String>,
    pub result: Option<(Picture, EditedPicture)>,
}

impl Engine {
    /// Checks and loads an exported weights file (any problem is a sentence for the page).
    pub async fn load(bytes: &[u8], device: &Device) -> Result<Engine, String> {
        // Built on the CPU, then moved: building on WebGPU would first compile and run the random
        // initialisers' kernels for weights that are overwritten at once.
        let mut loaded = weights::decode(bytes, &Device::flex()).map_err(|e| e.to_string())?;
        loaded.model = loaded.model.to_device(device);
        let dataset_name = loaded.metadata["dataset"].as_str().map(String::from);
        let dataset = dataset_name.as_deref().and_then(|name| name.parse().ok());
        let graph = match (&loaded.model.context_module, loaded.model.graph_weights()) {
            (Some(cm), Some(weights)) => {
                let values = read_back(weights).await?;
                Some(graph_from_weights(
                    &values,
                    cm.causal.blocks,
                    cm.causal.width,
                ))
            }
            _ => None,
        };
        let info = ModelInfo {
            config: loaded.model.config.clone(),
            dataset,
            dataset_name,
            graph,
            has_encoder: loaded.model.has_encoder(),
            bytes: bytes.len(),
        };
        Ok(Engine {
            model: loaded.model.valid(),
            info,
            device: device.clone(),
            file: bytes.to_vec(),
        })
    }

    /// This engine's model with the encoder of `encoder_file`, which must belong to its file.
    pub fn with_encoder(&self, encoder_file: &[u8]) -> Result<Engine, String> {
        let model = weights::attach_encoder(encoder_file, self.model.clone(), &self.file)
            .map_err(|e| e.to_string())?;
        Ok(Engine {
            model: model.valid(),
            info: ModelInfo {
                has_encoder: true,
                ..self.info.clone()
            },
            device: self.device.clone(),
            file: self.file.clone(),
        })
    }

    /// The view's `grid x grid` samples, CHW floats in `[0, 1]`.
    pub async fn generate(&self, view: &View) -> Result<Vec<f32>, String> {
        let n = view.grid * view.grid;
        let config = &self.model.config;
        let z = latents(
            config,
            n,
            view.seed,
            &view.shifts_for(config.num_concepts()),
        );
        let z = Tensor::<2>::from_data(TensorData::new(z, [n, config.latent_size()]), &self.device);
        read_back(self.model.generate(z, self.info.context(view))).await
    }

    /// Real images of the view's context, when the dataset can be drawn in the browser.
    pub fn real_images(&self, view: &View) -> Result<Vec<f32>, String> {
        let dataset = self.drawable_dataset()?;
        let mut rng = Rng::derive(view.seed, REAL_IMAGES_STREAM);
        let n = view.grid * view.grid;
        let size = self.info.shape().size;
        Ok(dataset.images(self.info.context(view), n, size, Split::HeldOut, &mut rng))
    }

    /// Edits the visitor's image (`own`, channels-first values at the model's size) or the
    /// view's chosen real image into the view's context, with its shifts. Beside the chosen
    /// real image, where no shift moves the noise, the true counterfactual its dataset knows.
    pub async fn edit(&self, view: &View, own: Option<Vec<f32>>) -> Result<Edited, String> {
        let shape = self.info.shape();
        let context = self.info.context(view);
        let choices = self.drawable_dataset().and_then(|dataset| {
            dataset
                .counterfactuals(
                    Context::OBS,
                    context,
                    EDIT_CHOICES,
                    &mut Rng::derive(view.seed, EDIT_STREAM),
                )
                .ok_or_else(|| format!("{} has no generator to draw images from", dataset.name()))
        });
        // Each choice is rendered once: for the strip, and the picked one for its edit.
        let numel = shape.numel();
        let choices = choices.map(|(factual, truth)| (factual.render(.., shape.size), truth));
        let picked = match (own, view.edit, &choices) {
            (Some(image), _, _) => Some((image, None)),
            (None, Some(i), Ok((factual, truth))) => Some((
                factual[i * numel..(i + 1) * numel].to_vec(),
                Some(truth.render(i..=i, shape.size)),
            )),
            _ => None,
        };
        let choices = choices.map(|(factual, _)| Picture::grid(&factual, shape, EDIT_CHOICES));
        let Some((image, truth)) = picked else {
            return Ok(Edited {
                choices,
                result: None,
            });
        };
        let shifts = view.shifts_for(self.info.concepts().len());
        let request = Edit {
            intervene: context,
            shifts,
            ..Edit::default()
        };
        let edited = counterfactual::edit(&self.model, image.clone(), &request, &self.device)
            .map_err(|e| e.to_string())?;
        let reconstructed = read_back(edited.reconstruction).await?;
        let edited = read_back(edited.counterfactual).await?;
        let warning = counterfactual::degenerate(&reconstructed, &edited, numel);
        let mut tiles = image;
        tiles.extend(reconstructed);
        tiles.extend(edited);
        let mut names = vec![
            "image".to_string(),
            "reconstruction".into(),
            format!("counterfactual: {}", context.name(self.info.concepts())),
        ];
        if let Some(truth) = truth.filter(|_| request.shifts.iter().all(|&s| s == 0.0)) {
            tiles.extend(truth);
            names.push("true counterfactual".into());
        }
        let picture = Picture::grid(&tiles, shape, names.len());
        let described = EditedPicture {
            size: picture.size(),
            tiles: names,
            fingerprint: picture.fingerprint(),
            warning,
        };
        Ok(Edited {
            choices,
            result: Some((picture, described)),
        })
    }

    /// The dataset whose real images the page can draw: the built-in datasets made from code
    /// alone (quad and the 3D scenes, from their causal models in `shared/`); MNIST's digits and
    /// datasets read from disk are not shipped with the page.
    fn drawable_dataset(&self) -> Result<&'static dyn Dataset, String> {
        let dataset = match (self.info.dataset, &self.info.dataset_name) {
            (Some(kind), _) => kind.dataset(),
            (None, Some(name)) => {
                return Err(format!(
                    "real images are drawn only for the built-in datasets; this model was trained on {name}, read from disk"
                ));
            }
            (None, None) => {
                return Err("these weights do not say which dataset they came from".into());
            }
        };
        if !dataset.self_contained() {
            return Err(format!(
                "{}'s images are not shipped with the page, so no real images here",
                dataset.name()
            ));
        }
        Ok(dataset)
    }
}

/// A tensor's values on the host; asynchronous, as WebGPU requires.
async fn read_back<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, String> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| format!("reading from the device failed: {e:?}"))?
        .try_into_vec_as::<f32>()
        .map_err(|e| format!("the device returned non-f32 values: {e:?}"))
}
