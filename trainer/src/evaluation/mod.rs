//! Evaluation with the paper's metrics (docs/method.md#metrics) and counterfactual scores
//! (docs/method.md#counterfactual-scores).

pub mod counterfactual;
pub mod elbo;
pub mod metrics;
pub mod norm_statistics;
pub mod swd;
