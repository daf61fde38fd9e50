//! intervene in the browser: pick concepts, compose interventions, watch samples change live.
//!
//! Data flow: a share link ([`link`]) names the view; [`catalog`] names the shipped models;
//! the browser side ([`app`]) hands the view to its model worker ([`protocol`]), which picks a
//! backend, loads weights through `shared/`, generates with the shared model and turns the result
//! into pixels ([`picture`]); the page paints them and the concept graph ([`graph`]). Everything
//! outside `app` is plain Rust and unit-tested natively.

// The one exception: running the module's static constructors once (`app::run_constructors`).
#![deny(unsafe_code)]

pub mod catalog;
pub mod graph;
pub mod link;
pub mod picture;
pub mod protocol;

#[cfg(target_arch = "wasm32")]
mod app;
