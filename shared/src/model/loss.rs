//! The VAE objective: Bernoulli reconstruction (BCE summed over pixels) plus `beta * KL`
//! (docs/method.md#loss).

use super::FeatureMap;
use burn::tensor::Tensor;

/// Logit bound equivalent to the reference's clamp of probabilities to `[1e-7, 1 - 1e-7]`:
/// sigmoid is monotonic, so clamping logits at `ln((1 - 1e-7) / 1e-7)` gives the same loss, and
/// working in logits avoids `ln(sigmoid(.))` underflow.
pub const LOGIT_BOUND: f64 = 16.118_095_596_4;

/// Per-image terms of the negative ELBO.
pub struct ElboTerms {
    /// BCE summed over all pixels and channels, `[B]`.
    pub reconstruction: Tensor<1>,
    /// `KL(q(z|x) || N(0, I))`, `[B]`.
    pub kl: Tensor<1>,
}

impl ElboTerms {
    /// `reconstruction + beta * kl`, per image.
    pub fn negative_elbo(&self, beta: f64) -> Tensor<1> {
        self.reconstruction.clone() + self.kl.clone() * beta
    }
}

/// `images` are targets in `[0, 1]`, `logits` the decoder's pre-sigmoid output.
pub fn elbo_terms(
    logits: FeatureMap,
    images: FeatureMap,
    mu: Tensor<2>,
    logvar: Tensor<2>,
) -> ElboTerms {
    let reconstruction = logits.bernoulli_nll(images, LOGIT_BOUND);
    let kl = (logvar.clone().exp() + mu.powi_scalar(2) - logvar - 1.0)
        .sum_dim(1)
        .squeeze_dim(1)
        * 0.5;
    ElboTerms { reconstruction, kl }
}

/// `log(sum(exp(x)))` along `dim`, kept as a size-1 dimension, without overflow.
fn log_sum_exp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().max_dim(dim).detach();
    (x - max.clone()).exp().sum_dim(dim).log() + max
}

/// Total correlation of the aggregate posterior, `E[log q(z) - sum_d log q(z_d)]`, estimated on
/// one batch with minibatch-weighted sampling (Chen et al., 2018). `dataset_size` is the number
/// of training images the batch stands for. beta-TCVAE adds `(beta - 1)` times this to the
/// negative ELBO, which (with the KL already in the ELBO) weighs the TC term by `beta`.
pub fn total_correlation(
    z: Tensor<2>,
    mu: Tensor<2>,
    logvar: Tensor<2>,
    dataset_size: usize,
) -> Tensor<1> {
    let [batch, _] = z.dims();
    // log q(z_i | x_j) per dimension: [B (i), B (j), D]
    let diff = z.unsqueeze_dim::<3>(1) - mu.unsqueeze_dim::<3>(0);
    let logvar = logvar.unsqueeze_dim::<3>(0);
    let log_density = (diff.powi_scalar(2) * logvar.clone().neg().exp()
        + logvar
        + (2.0 * std::f64::consts::PI).ln())
        * -0.5;
    let log_norm = ((batch * dataset_size) as f64).ln();
    let log_qz = log_sum_exp(log_density.clone().sum_dim(2), 1) - log_norm; // [B, 1, 1]
    let log_prod_qzd = (log_sum_exp(log_density, 1) - log_norm).sum_dim(2); // [B, 1, 1]
    (log_qz - log_prod_qzd).mean().reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StageKernels;
    use burn::tensor::{Device, TensorData};

    /// Channels-last values `[1, 1, 2, 1]` as maps for `kernels`.
    fn maps(values: [f32; 2], kernels: StageKernels, d: &Device) -> FeatureMap {
        let tensor = Tensor::<4>::from_data(TensorData::new(values.to_vec(), [1, 1, 2, 1]), d);
        FeatureMap::from_channels_last(tensor, kernels)
    }

    const BOTH: [StageKernels; 2] = [StageKernels::Burn, StageKernels::Cpu];

    #[test]
    fn matches_hand_computed_bce_and_kl() {
        let d = Device::flex();
        for kernels in BOTH {
            let logits = maps([0.0, 2.0], kernels, &d);
            let images = maps([1.0, 0.25], kernels, &d);
            let mu = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &d);
            let logvar = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 2]), &d);
            let terms = elbo_terms(logits, images, mu, logvar);
            let p1 = 1.0 / (1.0 + (-2.0f64).exp());
            let expect_bce = -(0.5f64).ln() - (0.25 * p1.ln() + 0.75 * (1.0 - p1).ln());
            let expect_kl = 0.5 * (1.0 + (1.0f64.exp() - 1.0 - 1.0));
            let bce: f32 = terms.reconstruction.into_scalar();
            let kl: f32 = terms.kl.into_scalar();
            assert!(
                (bce as f64 - expect_bce).abs() < 1e-5,
                "{kernels:?}: {bce} vs {expect_bce}"
            );
            assert!((kl as f64 - expect_kl).abs() < 1e-5, "{kl} vs {expect_kl}");
        }
    }

    #[test]
    fn total_correlation_is_larger_for_correlated_latents() {
        let d = Device::flex();
        let mut rng = crate::rng::Rng::new(3);
        let n = 256;
        let mut independent = vec![0f32; n * 2];
        rng.fill_normal(&mut independent);
        let correlated: Vec<f32> = (0..n)
            .flat_map(|i| [independent[2 * i], independent[2 * i]])
            .collect();
        let tc = |values: Vec<f32>| {
            let mu = Tensor::<2>::from_data(TensorData::new(values, [n, 2]), &d);
            let logvar = Tensor::<2>::full([n, 2], -4.0, &d);
            total_correlation(mu.clone(), mu, logvar, n).into_scalar::<f32>()
        };
        let (low, high) = (tc(independent), tc(correlated));
        assert!(high > low + 0.5, "correlated {high} vs independent {low}");
    }

    #[test]
    fn extreme_logits_stay_finite() {
        let d = Device::flex();
        for kernels in BOTH {
            let logits = maps([1e6, -1e6], kernels, &d);
            let images = maps([0.0, 1.0], kernels, &d);
            let z = Tensor::<2>::zeros([1, 1], &d);
            let bce: f32 = elbo_terms(logits, images, z.clone(), z)
                .reconstruction
                .into_scalar();
            // Each pixel is capped at -ln(1e-7) ~ 16.12.
            assert!((bce - 2.0 * 16.118_095).abs() < 1e-2, "{kernels:?}: {bce}");
        }
    }
}
