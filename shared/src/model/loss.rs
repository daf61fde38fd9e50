//! The VAE objective: Bernoulli reconstruction (BCE summed over pixels) plus `beta * KL`.

use burn::tensor::Tensor;
use burn::tensor::activation::softplus;

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
    logits: Tensor<4>,
    images: Tensor<4>,
    mu: Tensor<2>,
    logvar: Tensor<2>,
) -> ElboTerms {
    let logits = logits.clamp(-LOGIT_BOUND, LOGIT_BOUND);
    // BCE(x, sigmoid(l)) = softplus(l) - x * l, exactly.
    let bce = softplus(logits.clone(), 1.0) - images * logits;
    let reconstruction = bce.flatten::<2>(1, 3).sum_dim(1).squeeze_dim(1);
    let kl = (logvar.clone().exp() + mu.powi_scalar(2) - logvar - 1.0)
        .sum_dim(1)
        .squeeze_dim(1)
        * 0.5;
    ElboTerms { reconstruction, kl }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_hand_computed_bce_and_kl() {
        let d = Device::flex();
        let logits = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 2.0], [1, 1, 1, 2]), &d);
        let images = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 0.25], [1, 1, 1, 2]), &d);
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
            "{bce} vs {expect_bce}"
        );
        assert!((kl as f64 - expect_kl).abs() < 1e-5, "{kl} vs {expect_kl}");
    }

    #[test]
    fn extreme_logits_stay_finite() {
        let d = Device::flex();
        let logits = Tensor::<4>::from_data(TensorData::new(vec![1e6f32, -1e6], [1, 1, 1, 2]), &d);
        let images = Tensor::<4>::from_data(TensorData::new(vec![0.0f32, 1.0], [1, 1, 1, 2]), &d);
        let z = Tensor::<2>::zeros([1, 1], &d);
        let bce: f32 = elbo_terms(logits, images, z.clone(), z)
            .reconstruction
            .into_scalar();
        // Each pixel is capped at -ln(1e-7) ~ 16.12.
        assert!((bce - 2.0 * 16.118_095).abs() < 1e-2, "{bce}");
    }
}
