//! The kernels' forward passes on burn's CPU backend (`Flex`) tensors.

use super::batch_norm::{self, NormOrder};
use super::bernoulli;
use super::conv;
use super::matmul::Matrix;
use super::patches::Grid;
use super::weight_layout::{self, WeightOf};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};

/// A float tensor's values in row-major order (copied only if it was not contiguous).
pub(crate) struct Values {
    tensor: FlexTensor,
    pub(crate) dims: Vec<usize>,
}

impl Values {
    pub(crate) fn of(tensor: &FlexTensor) -> Self {
        assert_eq!(
            tensor.dtype(),
            DType::F32,
            "the model's CPU kernels run in f32"
        );
        let tensor = tensor.to_contiguous();
        let dims = tensor.layout().shape().to_vec();
        Self { tensor, dims }
    }

    pub(crate) fn slice(&self) -> &[f32] {
        let start = self.tensor.layout().start_offset();
        let len: usize = self.dims.iter().product();
        &self.tensor.storage::<f32>()[start..start + len]
    }

    pub(crate) fn grid(&self) -> Grid {
        let [batch, height, width, channels] = self.dims[..] else {
            panic!("expected a [B, H, W, C] map, got {:?}", self.dims);
        };
        Grid {
            batch,
            height,
            width,
            channels,
        }
    }
}

/// A CPU tensor of `dims` holding `values` (row-major).
pub(crate) fn tensor(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims.to_vec()))
}

/// Halving convolution: `x [B, H, W, C]`, `weight [16 C, O]` (rows `[ky][kx][c]`), `bias [O]`.
pub(crate) fn conv_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (Values::of(x), Values::of(weight), Values::of(bias));
    let grid = x.grid();
    let o = bias.dims[0];
    let weight = Matrix::new(weight.slice(), grid.patch_width(), o);
    let out = conv::gather_multiply(x.slice(), grid, weight, Some(bias.slice()));
    tensor(out, &[grid.batch, grid.height / 2, grid.width / 2, o])
}

/// Doubling transposed convolution: `x [B, H, W, C]`, `weight [C, 16 O]` (columns
/// `[ky][kx][o]`), `bias [O]`.
pub(crate) fn deconv_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (Values::of(x), Values::of(weight), Values::of(bias));
    let out_grid = doubled(x.grid(), bias.dims[0]);
    let weight = Matrix::new(weight.slice(), x.grid().channels, out_grid.patch_width());
    let out = conv::multiply_scatter(x.slice(), weight, out_grid, Some(bias.slice()));
    tensor(out, &out_grid.dims())
}

/// The output grid of a doubling transposed convolution of `input` to `channels` channels.
pub(crate) fn doubled(input: Grid, channels: usize) -> Grid {
    Grid {
        batch: input.batch,
        height: 2 * input.height,
        width: 2 * input.width,
        channels,
    }
}

/// Fused ReLU + training BatchNorm of rows `y [N, C]`: `(output, mean [C], variance [C])`.
pub(crate) fn norm_forward(
    y: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    order: NormOrder,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (y, gamma, beta) = (Values::of(y), Values::of(gamma), Values::of(beta));
    let c = gamma.dims[0];
    let (out, stats) =
        batch_norm::forward(y.slice(), c, gamma.slice(), beta.slice(), epsilon, order);
    (
        tensor(out, &y.dims),
        tensor(stats.mean, &[c]),
        tensor(stats.variance, &[c]),
    )
}

/// ReLU + inference BatchNorm as `scale * v + shift` of rows `y [N, C]`. Works in place when
/// `y` is the only handle on its values (inference, where nothing keeps the input for later).
pub(crate) fn affine_forward(
    y: FlexTensor,
    scale: &FlexTensor,
    shift: &FlexTensor,
    order: NormOrder,
) -> FlexTensor {
    let (scale, shift) = (Values::of(scale), Values::of(shift));
    let c = scale.dims[0];
    let mut y = if y.is_contiguous() {
        y
    } else {
        y.to_contiguous()
    };
    if let Some(values) = sole_values(&mut y) {
        batch_norm::affine_in_place(values, c, scale.slice(), shift.slice(), order);
        return y;
    }
    let y = Values::of(&y);
    let out = batch_norm::affine_forward(y.slice(), c, scale.slice(), shift.slice(), order);
    tensor(out, &y.dims)
}

/// Bernoulli negative log-likelihood per row of `logits`/`targets` `[B, P]` -> `[B]`.
pub(crate) fn bernoulli_forward(
    logits: &FlexTensor,
    targets: &FlexTensor,
    bound: f64,
) -> FlexTensor {
    let (logits, targets) = (Values::of(logits), Values::of(targets));
    let images = logits.dims[0];
    let loss = bernoulli::forward(logits.slice(), targets.slice(), images, bound as f32);
    tensor(loss, &[images])
}

/// Pixel means of channels-last logits `[B, H, W, C]`, channels-first `[B, C, H, W]`.
pub(crate) fn pixel_means(logits: &FlexTensor) -> FlexTensor {
    let logits = Values::of(logits);
    let grid = logits.grid();
    let means = bernoulli::means_channels_first(logits.slice(), grid.dims());
    tensor(means, &[grid.batch, grid.channels, grid.height, grid.width])
}

/// burn's convolution weight in the kernels' patch order.
pub(crate) fn patch_ordered_weight(weight: &FlexTensor, of: WeightOf) -> FlexTensor {
    let weight = Values::of(weight);
    let dims = four_dims(&weight.dims);
    tensor(
        weight_layout::to_patch_order(weight.slice(), dims, of),
        &of.patch_dims(dims),
    )
}

/// `dims` of a convolution weight, which has four.
pub(crate) fn four_dims(dims: &[usize]) -> [usize; 4] {
    dims.try_into()
        .unwrap_or_else(|_| panic!("expected a 4-D convolution weight, got {dims:?}"))
}

#[cfg(any(test, feature = "train"))]
/// `tensor` itself when its values can be changed in place (nothing else holds them and they
/// are laid out plainly), otherwise a contiguous copy of them.
pub(crate) fn writable(mut tensor: FlexTensor) -> FlexTensor {
    if sole_values(&mut tensor).is_some() {
        return tensor;
    }
    let values = Values::of(&tensor);
    self::tensor(values.slice().to_vec(), &values.dims)
}

#[cfg(any(test, feature = "train"))]
/// The values of a tensor made by [`writable`].
pub(crate) fn values_mut(tensor: &mut FlexTensor) -> &mut [f32] {
    sole_values(tensor).expect("a writable tensor owns its values")
}

/// The values of `tensor` to change in place, if they are laid out plainly and nothing else
/// holds them.
fn sole_values(tensor: &mut FlexTensor) -> Option<&mut [f32]> {
    let len = tensor.layout().shape().num_elements();
    if tensor.layout().contiguous_offsets() != Some((0, len)) {
        return None;
    }
    tensor
        .try_storage_mut::<f32>()
        .filter(|values| values.len() == len)
}
