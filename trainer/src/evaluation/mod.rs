//! Evaluation with the paper's metrics (docs/method.md#metrics).

pub mod elbo;
pub mod metrics;
pub mod swd;
