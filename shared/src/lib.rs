//! intervene: generative models whose concepts can be intervened on and composed.
//!
//! This crate is what the trainer and the browser share: the model definition (context module
//! and VAEs), the datasets, the seeded RNG, and the weights file format.

#![forbid(unsafe_code)]

pub mod config;
pub mod context;
pub mod counterfactual;
pub mod data;
pub mod image_grid;
pub mod model;
pub mod rng;
pub mod sampling;
pub mod weights;
