//! The VAEs' convolutions over channels-last feature maps (`[B, H, W, C]`), taking burn's
//! `Conv2d` / `ConvTranspose2d` weights as they are stored.
//!
//! Only the two geometries the architectures use are supported:
//! - [`Geometry::Halve`]: kernel 4, stride 2, padding 1 (a convolution halves the side, a
//!   transposed convolution doubles it), run by the CPU kernels in `crate::kernels`;
//! - [`Geometry::Collapse`]: a `k x k` valid convolution of a `k x k` map down to `1 x 1` (and its
//!   transpose), which is a dense linear map of the flattened patch: one matrix product.

use crate::kernels;
use burn::tensor::Tensor;

/// Kernel geometry of one convolution stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Geometry {
    /// Kernel 4, stride 2, padding 1.
    Halve,
    /// A `k x k` kernel, stride 1, no padding, applied to a `k x k` map.
    Collapse(usize),
}

impl Geometry {
    /// `(kernel, stride, padding)` as burn's layer configs take them.
    pub fn kernel_stride_padding(self) -> (usize, usize, usize) {
        match self {
            Geometry::Halve => (4, 2, 1),
            Geometry::Collapse(k) => (k, 1, 0),
        }
    }
}

/// Convolution of `x [B, H, W, C]` with a burn `Conv2d` weight `[O, C, k, k]` and bias `[O]`.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, geometry: Geometry) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let [o, _, k, _] = weight.dims();
    // Weight rows in patch order (ky, kx, c).
    let weight = kernels::patch_ordered_weight(weight, kernels::WeightOf::Conv2d);
    match geometry {
        Geometry::Halve => kernels::conv_halve(x, weight, bias),
        Geometry::Collapse(_) => {
            debug_assert_eq!([h, w], [k, k]);
            let y = x.reshape([b, k * k * c]).matmul(weight) + bias.unsqueeze_dim(0);
            y.reshape([b, 1, 1, o])
        }
    }
}

/// Transposed convolution of `x [B, H, W, C]` with a burn `ConvTranspose2d` weight
/// `[C, O, k, k]` and bias `[O]`.
pub fn conv_transpose2d(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    geometry: Geometry,
) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let [_, o, k, _] = weight.dims();
    // Weight columns in patch order (ky, kx, o).
    let weight = kernels::patch_ordered_weight(weight, kernels::WeightOf::ConvTranspose2d);
    match geometry {
        Geometry::Halve => kernels::deconv_double(x, weight, bias),
        Geometry::Collapse(_) => {
            debug_assert_eq!([h, w], [1, 1]);
            let y = x.reshape([b, c]).matmul(weight).reshape([b, k * k, o]);
            (y + bias.reshape([1, 1, o])).reshape([b, k, k, o])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use burn::tensor::{Device, Distribution, Tolerance};

    fn nchw_to_nhwc(x: Tensor<4>) -> Tensor<4> {
        x.permute([0, 2, 3, 1])
    }

    fn check_conv(geometry: Geometry, [c, o, side]: [usize; 3]) {
        let device = Device::flex();
        let (k, s, p) = geometry.kernel_stride_padding();
        let layer = Conv2dConfig::new([c, o], [k, k])
            .with_stride([s, s])
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .init(&device);
        let x = Tensor::<4>::random([3, c, side, side], Distribution::Default, &device);
        let expected = nchw_to_nhwc(layer.forward(x.clone()));
        let bias = layer.bias.as_ref().expect("bias").val();
        let actual = conv2d(nchw_to_nhwc(x), layer.weight.val(), bias, geometry);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::permissive());
    }

    fn check_conv_transpose(geometry: Geometry, [c, o, side]: [usize; 3]) {
        let device = Device::flex();
        let (k, s, p) = geometry.kernel_stride_padding();
        let layer = ConvTranspose2dConfig::new([c, o], [k, k])
            .with_stride([s, s])
            .with_padding([p, p])
            .init(&device);
        let x = Tensor::<4>::random([3, c, side, side], Distribution::Default, &device);
        let expected = nchw_to_nhwc(layer.forward(x.clone()));
        let bias = layer.bias.as_ref().expect("bias").val();
        let actual = conv_transpose2d(nchw_to_nhwc(x), layer.weight.val(), bias, geometry);
        actual
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::permissive());
    }

    /// Gradients of `sum(layer(x) * r)` for a fixed random `r`, burn's layer against ours.
    #[cfg(feature = "train")]
    fn check_gradients(transposed: bool, [c, o, side]: [usize; 3]) {
        let device = Device::flex().autodiff();
        let (k, s, p) = Geometry::Halve.kernel_stride_padding();
        let x = Tensor::<4>::random([2, c, side, side], Distribution::Default, &device);
        let (weight, bias, expected_out) = if transposed {
            let layer = ConvTranspose2dConfig::new([c, o], [k, k])
                .with_stride([s, s])
                .with_padding([p, p])
                .init(&device);
            let bias = layer.bias.as_ref().expect("bias").val();
            (
                layer.weight.val(),
                bias,
                layer.forward(x.clone().require_grad()),
            )
        } else {
            let layer = Conv2dConfig::new([c, o], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(&device);
            let bias = layer.bias.as_ref().expect("bias").val();
            (
                layer.weight.val(),
                bias,
                layer.forward(x.clone().require_grad()),
            )
        };
        let r = Tensor::<4>::random(expected_out.dims(), Distribution::Default, &device);
        let grads_of = |ours: bool| {
            let (x, w, b) = (
                x.clone().detach().require_grad(),
                weight.clone().detach().require_grad(),
                bias.clone().detach().require_grad(),
            );
            let out = match (ours, transposed) {
                (false, false) => burn::tensor::module::conv2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    burn::tensor::ops::ConvOptions::new([s, s], [p, p], [1, 1], 1),
                ),
                (false, true) => burn::tensor::module::conv_transpose2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    burn::tensor::ops::ConvTransposeOptions::new([s, s], [p, p], [0, 0], [1, 1], 1),
                ),
                (true, false) => nhwc_to_nchw(conv2d(
                    nchw_to_nhwc(x.clone()),
                    w.clone(),
                    b.clone(),
                    Geometry::Halve,
                )),
                (true, true) => nhwc_to_nchw(conv_transpose2d(
                    nchw_to_nhwc(x.clone()),
                    w.clone(),
                    b.clone(),
                    Geometry::Halve,
                )),
            };
            let grads = (out * r.clone()).sum().backward();
            [
                x.grad(&grads).unwrap().into_data(),
                w.grad(&grads).unwrap().into_data(),
                b.grad(&grads).unwrap().into_data(),
            ]
        };
        for (ours, theirs) in grads_of(true).iter().zip(grads_of(false)) {
            ours.assert_approx_eq::<f32>(&theirs, Tolerance::permissive());
        }
    }

    fn nhwc_to_nchw(x: Tensor<4>) -> Tensor<4> {
        x.permute([0, 3, 1, 2])
    }

    #[cfg(feature = "train")]
    #[test]
    fn convolution_gradients_match_burn() {
        check_gradients(false, [3, 4, 6]);
        check_gradients(false, [5, 2, 4]);
    }

    #[cfg(feature = "train")]
    #[test]
    fn transposed_convolution_gradients_match_burn() {
        check_gradients(true, [4, 3, 3]);
        check_gradients(true, [2, 5, 2]);
    }

    #[test]
    fn halving_convolution_matches_burn() {
        check_conv(Geometry::Halve, [3, 5, 8]);
        check_conv(Geometry::Halve, [4, 2, 6]);
    }

    #[test]
    fn collapsing_convolution_matches_burn() {
        check_conv(Geometry::Collapse(7), [4, 6, 7]);
    }

    #[test]
    fn doubling_transposed_convolution_matches_burn() {
        check_conv_transpose(Geometry::Halve, [5, 3, 4]);
        check_conv_transpose(Geometry::Halve, [2, 4, 3]);
    }

    #[test]
    fn expanding_transposed_convolution_matches_burn() {
        check_conv_transpose(Geometry::Collapse(7), [6, 4, 1]);
    }
}
