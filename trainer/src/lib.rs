//! The `intervene` command line's work, one module per job, data to export; `main.rs` only
//! parses flags and dispatches.

pub mod bench;
pub mod cli;
pub mod data;
pub mod demo;
pub mod device;
pub mod edit;
pub mod evaluation;
pub mod experiment;
pub mod export;
pub mod files;
pub mod flags;
pub mod image_grid;
pub mod import_torch;
pub mod memory;
pub mod mnist_source;
pub mod model_source;
pub mod progress;
pub mod sample;
pub mod settings;
pub mod training;
