//! This project's CPU kernels for burn's CPU backend (`Flex`): channels-last convolutions as
//! single large matrix products, ReLU fused with BatchNorm, the Bernoulli reconstruction loss and
//! Adam's update, each with a hand-written backward pass where training needs one.
//!
//! burn's CPU backend convolves one image at a time with small matrix products, derives the
//! weight gradient from a convolution with a huge kernel, and builds BatchNorm out of a dozen
//! tensor ops; on the intervene model that left most of a training step outside the
//! matrix-product kernel. These kernels plug into burn as a backend extension for `Flex` and its
//! autodiff wrapper, so callers write plain tensor code. They run only where [`supports`] says
//! so; every function below panics on tensors of another device.
//!
//! Feature `train`: the backward passes (burn's autodiff) and the optimizer kernel. Inference
//! builds (the web page) leave it off.

#[cfg(any(test, feature = "train"))]
mod adam;
mod autodiff;
mod batch_norm;
mod bernoulli;
mod conv;
mod exp_log;
mod flex;
#[cfg(any(test, feature = "train"))]
mod gradients;
mod matmul;
mod parallel;
mod patches;
mod simd;
#[cfg(test)]
mod tests;
mod weight_layout;

#[cfg(any(test, feature = "train"))]
pub use adam::{AdamStep, adam_update};
pub use batch_norm::NormOrder;
pub use weight_layout::WeightOf;

use burn::backend::{Dispatch, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{Device, Tensor};

#[backend_extension(Flex, Autodiff: cfg(any(test, feature = "train")))]
pub trait CpuKernels: burn::backend::Backend {
    /// Kernel 4, stride 2, padding 1 convolution: `x [B, H, W, C]`, `weight [16 C, O]` (rows
    /// `[ky][kx][c]`), `bias [O]` -> `[B, H/2, W/2, O]`.
    fn conv_halve(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Its transpose: `x [B, H, W, C]`, `weight [C, 16 O]` (columns `[ky][kx][o]`), `bias [O]`
    /// -> `[B, 2H, 2W, O]`.
    fn deconv_double(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// ReLU and training-mode BatchNorm (in `order`) of rows `y [N, C]`: the output and the
    /// batch's mean and (biased) variance, for the running statistics.
    fn relu_batch_norm(
        y: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        order: NormOrder,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// ReLU and inference-mode BatchNorm (in `order`) of rows `y [N, C]`, the norm given as the
    /// per-channel affine map `scale [C] * v + shift [C]` it reduces to.
    fn relu_affine(
        y: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        order: NormOrder,
    ) -> FloatTensor<Self>;

    /// Bernoulli negative log-likelihood per image: `logits` and `targets` `[B, P]`, logits
    /// clamped to `[-bound, bound]` -> `[B]` (`sum_p softplus(l) - x l`).
    fn bernoulli_nll(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        bound: f64,
    ) -> FloatTensor<Self>;

    /// Pixel values `sigmoid(l)` of channels-last logits `[B, H, W, C]`, channels-first
    /// `[B, C, H, W]`. For sampling: no gradient flows through it.
    fn pixel_means(logits: FloatTensor<Self>) -> FloatTensor<Self>;

    /// burn's 4-D convolution weight (`of` says which layer's) as the patch-ordered matrix the
    /// convolutions take: `[k k C, O]` for `Conv2d`, `[C, k k O]` for `ConvTranspose2d`.
    fn patch_ordered_weight(weight: FloatTensor<Self>, of: WeightOf) -> FloatTensor<Self>;
}

impl CpuKernels for Flex {
    fn conv_halve(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        flex::conv_forward(&x, &weight, &bias)
    }

    fn deconv_double(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        flex::deconv_forward(&x, &weight, &bias)
    }

    fn relu_batch_norm(
        y: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        order: NormOrder,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        flex::norm_forward(&y, &gamma, &beta, epsilon, order)
    }

    fn relu_affine(
        y: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        order: NormOrder,
    ) -> FloatTensor<Self> {
        flex::affine_forward(y, &scale, &shift, order)
    }

    fn bernoulli_nll(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        bound: f64,
    ) -> FloatTensor<Self> {
        flex::bernoulli_forward(&logits, &targets, bound)
    }

    fn pixel_means(logits: FloatTensor<Self>) -> FloatTensor<Self> {
        flex::pixel_means(&logits)
    }

    fn patch_ordered_weight(weight: FloatTensor<Self>, of: WeightOf) -> FloatTensor<Self> {
        flex::patch_ordered_weight(&weight, of)
    }
}

/// Whether tensors on `device` can run these kernels: burn's CPU backend, with or without
/// autodiff.
pub fn supports(device: &Device) -> bool {
    *device == Device::flex()
}

/// See [`CpuKernels::conv_halve`].
pub fn conv_halve(x: Tensor<4>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::conv_halve(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// See [`CpuKernels::deconv_double`].
pub fn deconv_double(x: Tensor<4>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::deconv_double(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// See [`CpuKernels::relu_batch_norm`].
pub fn relu_batch_norm(
    y: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    order: NormOrder,
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let (out, mean, variance) = <Dispatch as CpuKernels>::relu_batch_norm(
        y.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
        order,
    );
    (
        Tensor::from_dispatch(out),
        Tensor::from_dispatch(mean),
        Tensor::from_dispatch(variance),
    )
}

/// See [`CpuKernels::relu_affine`].
pub fn relu_affine(
    y: Tensor<2>,
    scale: Tensor<1>,
    shift: Tensor<1>,
    order: NormOrder,
) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::relu_affine(
        y.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
        order,
    ))
}

/// See [`CpuKernels::bernoulli_nll`].
pub fn bernoulli_nll(logits: Tensor<2>, targets: Tensor<2>, bound: f64) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::bernoulli_nll(
        logits.into_dispatch(),
        targets.into_dispatch(),
        bound,
    ))
}

/// See [`CpuKernels::pixel_means`].
pub fn pixel_means(logits: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::pixel_means(
        logits.into_dispatch(),
    ))
}

/// See [`CpuKernels::patch_ordered_weight`].
pub fn patch_ordered_weight(weight: Tensor<4>, of: WeightOf) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as CpuKernels>::patch_ordered_weight(
        weight.into_dispatch(),
        of,
    ))
}
