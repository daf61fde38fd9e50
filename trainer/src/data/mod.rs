//! Training data: the examples of each context, and batches rendered ahead of the training loop.

pub mod loader;
