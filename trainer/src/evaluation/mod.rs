//! Evaluation with the paper's metrics (spec section 7).

pub mod elbo;
pub mod metrics;
pub mod swd;
