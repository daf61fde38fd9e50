//! The stages' operations on channels-last maps `[B, H, W, C]`, taking burn's layers and their
//! weights as they are stored: through `intervene-kernels` on burn's CPU backend
//! ([`StageKernels::Cpu`]), or as patch gathers and matrix products in burn's tensor ops on any
//! other device ([`StageKernels::PatchGemm`], `patch_gemm.rs`).
//!
//! The kernels cover the two geometries the backbones use:
//! - kernel 4, stride 2, padding 1: a convolution halves the side, a transposed one doubles it;
//! - a `k x k` valid convolution of a `k x k` map down to `1 x 1` (conv3's last stage), and its
//!   transpose: a dense linear map of the flattened patch, one matrix product.

use super::patch_gemm;
use super::stage_kernels::StageKernels;
use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;
use intervene_kernels::{NormOrder, WeightOf};

/// Which of the two supported geometries a layer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Geometry {
    /// Kernel 4, stride 2, padding 1.
    Halve,
    /// Kernel `k`, stride 1, no padding, on a `k x k` map (or to one, transposed).
    Collapse(usize),
}

impl Geometry {
    fn of(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Self {
        match (kernel, stride, padding) {
            ([4, 4], [2, 2], [1, 1]) => Geometry::Halve,
            ([k, k2], [1, 1], [0, 0]) if k == k2 => Geometry::Collapse(k),
            _ => panic!(
                "the CPU kernels take kernel 4 stride 2 padding 1, or a square valid kernel; got kernel {kernel:?}, stride {stride:?}, padding {padding:?}"
            ),
        }
    }
}

/// A stage's bias (every stage is built with one).
fn bias_of(bias: &Option<Param<Tensor<1>>>) -> Tensor<1> {
    bias.as_ref().expect("stages are built with a bias").val()
}

/// `layer` applied to `x [B, H, W, C]`.
pub(super) fn conv(x: Tensor<4>, layer: &Conv2d, kernels: StageKernels) -> Tensor<4> {
    let padding = match layer.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) if (top, left) == (bottom, right) => {
            [top, left]
        }
        PaddingConfig2d::Valid => [0, 0],
        ref other => panic!("the CPU kernels take symmetric explicit padding, got {other:?}"),
    };
    let geometry = Geometry::of(layer.kernel_size, layer.stride, padding);
    let bias = bias_of(&layer.bias);
    let [b, h, w, c] = x.dims();
    let [o, ..] = layer.weight.dims();
    if kernels == StageKernels::PatchGemm && geometry == Geometry::Halve {
        return patch_gemm::conv_halve(x, layer.weight.val(), bias);
    }
    // Weight rows in patch order (ky, kx, c).
    let weight = match kernels {
        StageKernels::PatchGemm => patch_gemm::flat_conv_weight(layer.weight.val()),
        _ => intervene_kernels::patch_ordered_weight(layer.weight.val(), WeightOf::Conv2d),
    };
    match geometry {
        Geometry::Halve => intervene_kernels::conv_halve(x, weight, bias),
        Geometry::Collapse(k) => {
            assert_eq!(
                [h, w],
                [k, k],
                "a collapsing convolution takes a {k}x{k} map"
            );
            let y = x.reshape([b, k * k * c]).matmul(weight) + bias.unsqueeze_dim(0);
            y.reshape([b, 1, 1, o])
        }
    }
}

/// The transposed convolution `layer` applied to `x [B, H, W, C]`.
pub(super) fn conv_transpose(
    x: Tensor<4>,
    layer: &ConvTranspose2d,
    kernels: StageKernels,
) -> Tensor<4> {
    assert_eq!(
        layer.padding_out,
        [0, 0],
        "the CPU kernels take no output padding"
    );
    let geometry = Geometry::of(layer.kernel_size, layer.stride, layer.padding);
    let bias = bias_of(&layer.bias);
    let [b, h, w, c] = x.dims();
    let [_, o, ..] = layer.weight.dims();
    if kernels == StageKernels::PatchGemm && geometry == Geometry::Halve {
        return patch_gemm::deconv_double(x, layer.weight.val(), bias);
    }
    // Weight columns in patch order (ky, kx, o).
    let weight = match kernels {
        StageKernels::PatchGemm => patch_gemm::flat_deconv_weight(layer.weight.val()),
        _ => intervene_kernels::patch_ordered_weight(layer.weight.val(), WeightOf::ConvTranspose2d),
    };
    match geometry {
        Geometry::Halve => intervene_kernels::deconv_double(x, weight, bias),
        Geometry::Collapse(k) => {
            assert_eq!(
                [h, w],
                [1, 1],
                "an expanding transposed convolution takes a 1x1 map"
            );
            let y = x.reshape([b, c]).matmul(weight).reshape([b, k * k, o]);
            (y + bias.reshape([1, 1, o])).reshape([b, k, k, o])
        }
    }
}

/// ReLU and BatchNorm of `y [B, H, W, C]`, one row per pixel, as burn's `BatchNorm::forward`
/// does it: batch statistics when the layer trains (on an autodiff device, not frozen), which
/// also move the running averages, otherwise the running statistics folded into a per-channel
/// affine map. The fused kernel hands back the batch statistics; the running averages are
/// blended from them here, with burn's formula.
pub(super) fn relu_norm(
    y: Tensor<4>,
    norm: &BatchNorm,
    order: NormOrder,
    kernels: StageKernels,
) -> Tensor<4> {
    let dims = y.dims();
    let [b, h, w, c] = dims;
    let rows = y.reshape([b * h * w, c]);
    let device = rows.device();
    let out = if device.is_autodiff() && norm.training.is_enabled() {
        let (gamma, beta) = (norm.gamma.val(), norm.beta.val());
        let (out, mean, variance) = match kernels {
            StageKernels::PatchGemm => {
                patch_gemm::relu_batch_norm(rows, gamma, beta, norm.epsilon, order)
            }
            _ => intervene_kernels::relu_batch_norm(rows, gamma, beta, norm.epsilon, order),
        };
        let momentum = norm.momentum;
        let blend = |running: Tensor<1>, batch: Tensor<1>| {
            (running.to_device(&device) * (1.0 - momentum) + batch * momentum).detach()
        };
        norm.running_mean
            .update(blend(norm.running_mean.value_sync(), mean));
        norm.running_var
            .update(blend(norm.running_var.value_sync(), variance));
        out
    } else {
        let mean = norm.running_mean.value().to_device(&device);
        let variance = norm.running_var.value().to_device(&device);
        if kernels == StageKernels::PatchGemm {
            let statistics = [norm.gamma.val(), norm.beta.val(), mean, variance];
            let out = patch_gemm::relu_norm_inference(rows, statistics, norm.epsilon, order);
            return out.reshape(dims);
        }
        let scale = norm.gamma.val() / (variance + norm.epsilon).sqrt();
        let shift = norm.beta.val() - mean * scale.clone();
        intervene_kernels::relu_affine(rows, scale, shift, order)
    };
    out.reshape(dims)
}
