//! The stages' operations on channels-last maps `[B, H, W, C]` in burn's own tensor ops, for
//! devices without this project's CPU kernels (GPUs). Each convolution is one patch gather and
//! one large matrix product, the decomposition the CPU kernels use (docs/method.md#backbones),
//! so a GPU spends its time in its matrix-product kernel; autodiff derives the backward passes,
//! which are matrix products and the gather's transpose (slices and pads), never a convolution
//! with a feature-map-sized kernel.
//!
//! A kernel 4, stride 2, padding 1 convolution is a 2x2, stride 1 convolution of the padded map
//! folded 2x2 into channels ("space to depth"): output `(i, j)` reads padded rows `2i + ky`,
//! and with `ky = 2 ay + by` that is block row `i + ay`, sub-row `by`. So its patches are four
//! shifted slices of the folded map, side by side; the transposed convolution scatters its
//! product's columns back through the same four shifts and unfolds.

use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::ops::PadMode;
use burn::tensor::{Tensor, activation::relu};
use intervene_kernels::NormOrder;

/// Kernel 4, stride 2, padding 1 convolution: `x [B, H, W, C]` (H, W even), burn's `Conv2d`
/// weight `[O, C, 4, 4]`, `bias [O]` -> `[B, H/2, W/2, O]`.
pub fn conv_halve(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let [o, ..] = weight.dims();
    let (h2, w2) = (h / 2, w / 2);
    let folded = space_to_depth(x.pad([(1, 1), (1, 1), (0, 0)], PadMode::Constant(0.0)));
    let patches: Vec<Tensor<4>> = SHIFTS
        .iter()
        .map(|&(ay, ax)| {
            folded
                .clone()
                .slice([0..b, ay..ay + h2, ax..ax + w2, 0..4 * c])
        })
        .collect();
    let patches = Tensor::cat(patches, 3).reshape([b * h2 * w2, 16 * c]);
    // [O, C, ay, by, ax, bx] -> rows [ay][ax][by][bx][c], the patches' order.
    let weight = weight
        .reshape([o, c, 2, 2, 2, 2])
        .permute([2, 4, 3, 5, 1, 0])
        .reshape([16 * c, o]);
    (row_blocks_times(patches, weight) + bias.unsqueeze_dim(0)).reshape([b, h2, w2, o])
}

/// Its transpose: `x [B, H, W, C]`, burn's `ConvTranspose2d` weight `[C, O, 4, 4]`, `bias [O]`
/// -> `[B, 2H, 2W, O]`.
pub fn deconv_double(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let [_, o, ..] = weight.dims();
    // [C, O, ay, by, ax, bx] -> columns [ay][ax][by][bx][o].
    let weight = weight
        .reshape([c, o, 2, 2, 2, 2])
        .permute([0, 2, 4, 3, 5, 1])
        .reshape([c, 16 * o]);
    let columns = row_blocks_times(x.reshape([b * h * w, c]), weight).reshape([b, h, w, 16 * o]);
    // Each shift's block lands `(ay, ax)` blocks down and right on the padded output.
    let folded = SHIFTS
        .iter()
        .enumerate()
        .map(|(s, &(ay, ax))| {
            columns
                .clone()
                .slice([0..b, 0..h, 0..w, s * 4 * o..(s + 1) * 4 * o])
                .pad([(ay, 1 - ay), (ax, 1 - ax), (0, 0)], PadMode::Constant(0.0))
        })
        .reduce(|sum, part| sum + part)
        .expect("four shifts");
    let padded = depth_to_space(folded, o);
    padded.slice([0..b, 1..2 * h + 1, 1..2 * w + 1, 0..o]) + bias.reshape([1, 1, 1, o])
}

/// burn's `Conv2d` weight `[O, C, k, k]` as the matrix `[k k C, O]` (rows `[ky][kx][c]`) that
/// multiplies a flattened channels-last `k x k` patch.
pub fn flat_conv_weight(weight: Tensor<4>) -> Tensor<2> {
    let [o, c, kh, kw] = weight.dims();
    weight.permute([2, 3, 1, 0]).reshape([kh * kw * c, o])
}

/// burn's `ConvTranspose2d` weight `[C, O, k, k]` as the matrix `[C, k k O]` (columns
/// `[ky][kx][o]`) whose product with a pixel is a channels-last `k x k` patch.
pub fn flat_deconv_weight(weight: Tensor<4>) -> Tensor<2> {
    let [c, o, kh, kw] = weight.dims();
    weight.permute([0, 2, 3, 1]).reshape([c, kh * kw * o])
}

/// ReLU and training-mode BatchNorm (in `order`) of rows `y [N, C]`: the output and the batch's
/// mean and (biased) variance, as the CPU kernel returns them.
pub fn relu_batch_norm(
    y: Tensor<2>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
    order: NormOrder,
) -> (Tensor<2>, Tensor<1>, Tensor<1>) {
    let y = match order {
        NormOrder::ReluThenNorm => relu(y),
        NormOrder::NormThenRelu => y,
    };
    let result = batch_norm_train(y, gamma, beta, epsilon);
    let out = match order {
        NormOrder::ReluThenNorm => result.output,
        NormOrder::NormThenRelu => relu(result.output),
    };
    (out, result.mean, result.variance)
}

/// ReLU and inference-mode BatchNorm (in `order`) of rows `y [N, C]` with the running
/// statistics.
pub fn relu_norm_inference(
    y: Tensor<2>,
    [gamma, beta, mean, variance]: [Tensor<1>; 4],
    epsilon: f64,
    order: NormOrder,
) -> Tensor<2> {
    match order {
        NormOrder::ReluThenNorm => batch_norm(relu(y), gamma, beta, mean, variance, epsilon),
        NormOrder::NormThenRelu => relu(batch_norm(y, gamma, beta, mean, variance, epsilon)),
    }
}

/// Rows per matrix product. A GPU launches at most 65,535 workgroups along a dimension, and some
/// of burn's matrix-product kernels give each workgroup only a few rows: a batch of 512 at 64 px
/// has 524,288 patch rows, too many for them (lavapipe fails to launch it). Blocks of this many
/// rows fit every kernel and are still large products.
const MAX_ROWS: usize = 1 << 16;

/// `a [M, K] x b [K, N]`, in blocks of at most [`MAX_ROWS`] rows of `a`.
fn row_blocks_times(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    let [m, _] = a.dims();
    if m <= MAX_ROWS {
        return a.matmul(b);
    }
    let blocks = m.div_ceil(MAX_ROWS);
    let products = a
        .chunk(blocks, 0)
        .into_iter()
        .map(|rows| rows.matmul(b.clone()))
        .collect();
    Tensor::cat(products, 0)
}

/// The four block offsets `(ay, ax)` of a 2x2 kernel, in the patches' order.
const SHIFTS: [(usize, usize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];

/// `[B, 2H, 2W, C]` -> `[B, H, W, 4C]`, each 2x2 block's pixels side by side (`[by][bx][c]`).
fn space_to_depth(x: Tensor<4>) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let (h, w) = (h / 2, w / 2);
    x.reshape([b, h, 2, w, 2, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h, w, 4 * c])
}

/// The inverse of [`space_to_depth`] for `c` channels.
fn depth_to_space(x: Tensor<4>, c: usize) -> Tensor<4> {
    let [b, h, w, _] = x.dims();
    x.reshape([b, h, w, 2, 2, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, 2 * h, 2 * w, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::{conv_transpose2d, conv2d};
    use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
    use burn::tensor::{Device, Distribution, Tolerance};

    /// burn's channels-first op on the channels-last input, its output back to channels-last.
    fn via_burn(x: &Tensor<4>, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
        f(x.clone().permute([0, 3, 1, 2])).permute([0, 2, 3, 1])
    }

    /// Output, input gradient and weight gradient of ours and burn's, for a random output
    /// weighting (so every output element matters).
    fn compare(
        [x_dims, w_dims, y_dims]: [[usize; 4]; 3],
        ours: impl Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
        theirs: impl Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
    ) {
        let device = Device::flex().autodiff();
        let random = |dims: [usize; 4]| Tensor::<4>::random(dims, Distribution::Default, &device);
        let (x, w) = (random(x_dims).require_grad(), random(w_dims).require_grad());
        let bias = Tensor::<1>::random([y_dims[3]], Distribution::Default, &device);
        let weighting = random(y_dims);
        let run = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>| {
            let y = f(x.clone(), w.clone(), bias.clone());
            let grads = (y.clone() * weighting.clone()).sum().backward();
            [
                y.into_data(),
                x.grad(&grads).unwrap().into_data(),
                w.grad(&grads).unwrap().into_data(),
            ]
        };
        for (a, b) in run(&ours).iter().zip(&run(&theirs)) {
            a.assert_approx_eq::<f32>(b, Tolerance::permissive());
        }
    }

    #[test]
    fn conv_halve_matches_burns_conv2d_and_its_gradients() {
        let options = ConvOptions::new([2, 2], [1, 1], [1, 1], 1);
        compare(
            [[2, 8, 6, 3], [5, 3, 4, 4], [2, 4, 3, 5]],
            conv_halve,
            |x, w, b| via_burn(&x, |x| conv2d(x, w, Some(b), options.clone())),
        );
    }

    #[test]
    fn products_in_row_blocks_equal_one_product() {
        let device = Device::flex();
        let a = Tensor::<2>::random([MAX_ROWS * 2 + 3, 5], Distribution::Default, &device);
        let b = Tensor::<2>::random([5, 4], Distribution::Default, &device);
        row_blocks_times(a.clone(), b.clone())
            .into_data()
            .assert_approx_eq::<f32>(&a.matmul(b).into_data(), Tolerance::default());
    }

    #[test]
    fn deconv_double_matches_burns_conv_transpose2d_and_its_gradients() {
        let options = ConvTransposeOptions::new([2, 2], [1, 1], [0, 0], [1, 1], 1);
        compare(
            [[2, 3, 4, 5], [5, 3, 4, 4], [2, 6, 8, 3]],
            deconv_double,
            |x, w, b| via_burn(&x, |x| conv_transpose2d(x, w, Some(b), options.clone())),
        );
    }
}
