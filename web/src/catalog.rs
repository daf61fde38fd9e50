//! The models shipped with the page (`www/models/models.json`), known at build time so that the
//! picker and the default need no request.

use serde::Deserialize;

/// The model a plain visit shows.
pub const DEFAULT_MODEL: &str = "quad-cm";

/// Where shipped weights are served from, relative to the page.
pub const MODELS_DIR: &str = "models";

#[derive(Clone, Debug, Deserialize)]
pub struct ShippedModel {
    pub id: String,
    pub file: String,
    pub title: String,
    pub about: String,
    /// Its encoder file, fetched only when a visitor edits an image.
    #[serde(default)]
    pub encoder: Option<String>,
}

impl ShippedModel {
    pub fn url(&self) -> String {
        format!("{MODELS_DIR}/{}", self.file)
    }

    pub fn encoder_url(&self) -> Option<String> {
        self.encoder.as_ref().map(|f| format!("{MODELS_DIR}/{f}"))
    }
}

pub fn shipped() -> Vec<ShippedModel> {
    serde_json::from_str(include_str!("../../www/models/models.json"))
        .expect("www/models/models.json is checked by the catalog test")
}

pub fn find(id: &str) -> Option<ShippedModel> {
    shipped().into_iter().find(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use intervene::weights::{encoder_fits, read_config};

    #[test]
    fn every_shipped_model_is_a_valid_weights_file_and_the_default_exists() {
        let models = shipped();
        assert!(find(DEFAULT_MODEL).is_some());
        let www = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../www");
        for m in &models {
            let bytes = std::fs::read(www.join(m.url())).unwrap();
            let (config, metadata) =
                read_config(&bytes).unwrap_or_else(|e| panic!("{}: {e}", m.id));
            assert!(config.validate().is_ok());
            assert!(metadata["dataset"].is_string(), "{} names no dataset", m.id);
            if let Some(url) = m.encoder_url() {
                let encoder = std::fs::read(www.join(url)).unwrap();
                let fits = encoder_fits(&encoder, &bytes);
                assert!(fits.is_ok(), "{}: its encoder file does not fit it", m.id);
            }
        }
    }
}
