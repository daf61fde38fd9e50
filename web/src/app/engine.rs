//! A loaded model on a device, in the model worker: turns a [`View`] into images.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use intervene::data::Split;
use intervene::model::Model;
use intervene::model::context_module::graph_from_weights;
use intervene::rng::Rng;
use intervene::sampling::latents;
use intervene::weights;

use crate::link::View;
use crate::protocol::ModelInfo;

/// Real images use their own stream of the view's seed, so they never share draws with the noise.
const REAL_IMAGES_STREAM: u64 = 0x0EA1;

pub struct Engine {
    pub model: Model,
    /// What the page is told of the model.
    pub info: ModelInfo,
    pub device: Device,
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
            bytes: bytes.len(),
        };
        Ok(Engine {
            model: loaded.model.valid(),
            info,
            device: device.clone(),
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

    /// Real images of the view's context, when the dataset can be drawn in the browser: the
    /// built-in datasets made from code alone (quad and the 3D scenes, from their causal models
    /// in `shared/`); MNIST's digits and datasets read from disk are not shipped with the page.
    pub fn real_images(&self, view: &View) -> Result<Vec<f32>, String> {
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
        let mut rng = Rng::derive(view.seed, REAL_IMAGES_STREAM);
        let n = view.grid * view.grid;
        let size = self.info.shape().size;
        Ok(dataset.images(self.info.context(view), n, size, Split::HeldOut, &mut rng))
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
