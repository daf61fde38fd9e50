//! intervene in the browser: pick concepts, compose interventions, watch samples change live.
//!
//! Data flow: a share link ([`link`]) names the view; [`catalog`] names the shipped models;
//! the browser side ([`app`]) picks a backend, loads weights through `shared/`, generates with
//! the shared model and draws ([`picture`]) the result, and the concept graph ([`graph`]). Everything outside `app` is plain Rust
//! and unit-tested natively.

#![forbid(unsafe_code)]

pub mod catalog;
pub mod graph;
pub mod link;
pub mod picture;

#[cfg(target_arch = "wasm32")]
mod app;
