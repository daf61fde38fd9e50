//! What the page and its model worker say to each other. The model runs in a Web Worker (the
//! page's own wasm module, started a second time), so the page's thread only handles input, the
//! link and painting. Each message is one of these types as JSON text; weights files and pixels
//! travel beside it as transferred byte arrays, never as JSON.

use crate::link::View;
use intervene::config::{ImageShape, ModelConfig};
use intervene::context::Context;
use intervene::data::DatasetKind;
use serde::{Deserialize, Serialize};

/// What the page asks of the worker. The worker answers each request with one [`Reply`], in the
/// order the requests came.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Start a backend; answered by [`Reply::Started`].
    Start { preference: Preference },
    /// Load the weights file sent beside this message; answered by [`Reply::Loaded`]. On error
    /// the worker keeps the model it had.
    Load,
    /// Generate the view's grid and, when `real` is set, real images of its context; answered by
    /// [`Reply::Drawn`], with the generated picture's RGBA beside it, then the real one's.
    Draw { view: View, real: bool },
    /// `?bench=1`: time generating the view's grid; answered by [`Reply::Benched`].
    Bench { view: View },
    /// Give the loaded model the encoder file sent beside this message; answered by
    /// [`Reply::EncoderLoaded`]. On error the model stays as it was.
    LoadEncoder,
    /// Edit an image into the view's context with its shifts: the view's chosen real image, or,
    /// with `own`, the visitor's image sent beside as RGBA at the model's size. Answered by
    /// [`Reply::Edited`], with the choices' RGBA beside it (when there are some), then the
    /// result's.
    Edit { view: View, own: bool },
}

/// The worker's answer to one [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The worker has started its module and listens; sent once, unasked.
    Ready,
    Started {
        backend: BackendKind,
        /// One line for the page: what runs, and why.
        explanation: String,
    },
    Loaded(ModelInfo),
    Drawn {
        samples: PictureSize,
        /// The generated picture's fingerprint (see `Picture::fingerprint`).
        fingerprint: String,
        /// Generation and read-back, in ms, as the worker measured it.
        elapsed_ms: f64,
        /// Present when real images were asked for: their size, or why there are none.
        real: Option<Result<PictureSize, String>>,
        /// Why the samples cannot be a trained model's, if they cannot
        /// (`intervene::sampling::degenerate`).
        warning: Option<String>,
    },
    Benched(BenchFigures),
    EncoderLoaded,
    Edited {
        /// The real `obs` images that may be picked, or why there are none.
        choices: Result<PictureSize, String>,
        /// The edit, when an image was given or picked.
        result: Option<EditedPicture>,
    },
    /// The request could not be done; a sentence for the page.
    Failed(String),
    /// The worker stopped on an internal error and answers nothing more; sent unasked.
    Crashed(String),
}

/// One edit as a row of tiles: the image, its reconstruction, its counterfactual and, where
/// the dataset knows it, the true counterfactual.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EditedPicture {
    pub size: PictureSize,
    /// What each tile shows, left to right.
    pub tiles: Vec<String>,
    /// See `Picture::fingerprint`.
    pub fingerprint: String,
    /// Why the reconstruction and counterfactual cannot be a trained model's, if they cannot
    /// (`intervene::counterfactual::degenerate`).
    pub warning: Option<String>,
}

/// Width and height of an RGBA picture sent beside a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PictureSize {
    pub width: usize,
    pub height: usize,
}

impl PictureSize {
    pub fn rgba_len(self) -> usize {
        self.width * self.height * 4
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchFigures {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// What `?backend=` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Preference {
    /// WebGPU on a hardware adapter, else the CPU.
    Auto,
    Cpu,
    /// WebGPU even on a software adapter.
    WebGpu,
}

impl Preference {
    pub fn from_option(value: Option<&str>) -> Preference {
        match value {
            Some("cpu") => Preference::Cpu,
            Some("webgpu") => Preference::WebGpu,
            _ => Preference::Auto,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendKind {
    WebGpu,
    Cpu,
}

impl BackendKind {
    pub fn label(self) -> &'static str {
        match self {
            BackendKind::WebGpu => "WebGPU",
            BackendKind::Cpu => "CPU (wasm SIMD)",
        }
    }
}

/// What the page knows of the loaded model: enough to build its controls, name its contexts and
/// draw its graph; the weights stay in the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub config: ModelConfig,
    /// The built-in dataset the weights were trained on, if their metadata names one.
    pub dataset: Option<DatasetKind>,
    /// The dataset's name as the metadata gives it (a folder's name for data read from disk).
    #[serde(default)]
    pub dataset_name: Option<String>,
    /// The learned concept graph `[parent][child]`, if the model has a context module.
    pub graph: Option<Vec<Vec<f32>>>,
    /// Whether the weights came with their encoder (else editing fetches its encoder file).
    #[serde(default)]
    pub has_encoder: bool,
    /// Size of the weights file, in bytes.
    pub bytes: usize,
}

impl ModelInfo {
    pub fn concepts(&self) -> &[String] {
        &self.config.concepts
    }

    pub fn shape(&self) -> ImageShape {
        self.config.image
    }

    /// The view's intervened concepts as a context of this model (unknown names are dropped:
    /// views are fitted to the model before they are drawn).
    pub fn context(&self, view: &View) -> Context {
        Context::from_indices(
            view.intervened
                .iter()
                .filter_map(|name| self.concepts().iter().position(|c| c == name)),
        )
    }
}

/// A message as JSON text (what travels beside it is up to the caller).
pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("protocol messages serialise")
}

/// Reads a message; a malformed one is a sentence, not a panic.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("a malformed message from the worker ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::ModelRef;

    #[test]
    fn requests_and_replies_read_back_as_sent() {
        let view = View {
            shifts: vec![0.1, -2.95, 1.0 / 3.0],
            intervened: vec!["quad1".into(), "quad3".into()],
            seed: u64::MAX,
            ..View::default_for(ModelRef::Local("my weights.bin".into()))
        };
        for request in [
            Request::Start {
                preference: Preference::WebGpu,
            },
            Request::Load,
            Request::Draw {
                view: view.clone(),
                real: true,
            },
            Request::Bench { view: view.clone() },
            Request::LoadEncoder,
            Request::Edit { view, own: true },
        ] {
            assert_eq!(decode::<Request>(&encode(&request)), Ok(request));
        }
        let drawn = Reply::Drawn {
            samples: PictureSize {
                width: 258,
                height: 258,
            },
            fingerprint: "00ff".into(),
            elapsed_ms: 12.5,
            real: Some(Err("no real images".into())),
            warning: Some("all 4 generated images are one flat colour".into()),
        };
        assert_eq!(decode::<Reply>(&encode(&drawn)), Ok(drawn));
        let edited = Reply::Edited {
            choices: Err("not shipped".into()),
            result: Some(EditedPicture {
                size: PictureSize {
                    width: 100,
                    height: 36,
                },
                tiles: vec!["image".into(), "counterfactual".into()],
                fingerprint: "01".into(),
                warning: Some("1 of 1 generated images hold values that are not numbers".into()),
            }),
        };
        assert_eq!(decode::<Reply>(&encode(&edited)), Ok(edited));
    }

    #[test]
    fn shifts_cross_bit_exact() {
        // Share links promise the same pixels, so a shift must reach the worker unrounded.
        let shifts: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.7301).sin() * 3.0).collect();
        let view = View {
            shifts: shifts.clone(),
            ..View::default_for(ModelRef::Shipped("quad-cm".into()))
        };
        let Ok(Request::Draw { view, .. }) =
            decode::<Request>(&encode(&Request::Draw { view, real: false }))
        else {
            panic!("a draw request reads back")
        };
        assert!(
            view.shifts
                .iter()
                .zip(&shifts)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }

    #[test]
    fn a_malformed_message_is_an_error() {
        assert!(decode::<Reply>("{\"Drawn\":").is_err());
        assert!(decode::<Reply>("\"Unknown\"").is_err());
    }
}
