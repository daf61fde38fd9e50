//! The kernels' backward passes on burn's CPU backend (`Flex`) tensors: each returns the
//! gradients of the inputs its caller asks for.

use super::batch_norm::{self, BatchStats, NormOrder};
use super::bernoulli;
use super::conv;
use super::flex::{Values, tensor, values_mut, writable};
use super::matmul::{Matrix, column_sums, transpose};
use burn::backend::flex::FlexTensor;

/// Which inputs need a gradient: `[x, weight, bias]`.
pub(crate) type Wanted = [bool; 3];

/// Gradients of [`super::flex::conv_forward`] for the inputs `wanted` says.
pub(crate) fn conv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    d_out: &FlexTensor,
    wanted: Wanted,
) -> [Option<FlexTensor>; 3] {
    let (x, weight, d_out) = (Values::of(x), Values::of(weight), Values::of(d_out));
    let grid = x.grid();
    let o = d_out.dims[3];
    let d_x = wanted[0].then(|| {
        let w_t = transpose(weight.slice(), grid.patch_width(), o);
        let w_t = Matrix::new(&w_t, o, grid.patch_width());
        tensor(
            conv::multiply_scatter(d_out.slice(), w_t, grid, None),
            &x.dims,
        )
    });
    let d_weight = wanted[1].then(|| {
        let d_w_t = conv::patch_outer_products(x.slice(), grid, d_out.slice());
        tensor(transpose(&d_w_t, o, grid.patch_width()), &weight.dims)
    });
    let d_bias = wanted[2].then(|| tensor(column_sums(d_out.slice(), o), &[o]));
    [d_x, d_weight, d_bias]
}

/// Gradients of [`super::flex::deconv_forward`] for the inputs `wanted` says.
pub(crate) fn deconv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    d_out: &FlexTensor,
    wanted: Wanted,
) -> [Option<FlexTensor>; 3] {
    let (x, weight, d_out) = (Values::of(x), Values::of(weight), Values::of(d_out));
    let out_grid = d_out.grid();
    let (c, o) = (x.grid().channels, out_grid.channels);
    // The gradient of a scatter is a gather.
    let d_x = wanted[0].then(|| {
        let w_t = transpose(weight.slice(), c, out_grid.patch_width());
        let w_t = Matrix::new(&w_t, out_grid.patch_width(), c);
        tensor(
            conv::gather_multiply(d_out.slice(), out_grid, w_t, None),
            &x.dims,
        )
    });
    let d_weight = wanted[1].then(|| {
        let d_w = conv::patch_outer_products(d_out.slice(), out_grid, x.slice());
        tensor(d_w, &weight.dims)
    });
    let d_bias = wanted[2].then(|| tensor(column_sums(d_out.slice(), o), &[o]));
    [d_x, d_weight, d_bias]
}

/// Gradients of [`super::flex::norm_forward`]: `[d y, d gamma, d beta]`. `d y` takes over the
/// buffer of `d_out` where nothing else holds it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_backward(
    y: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    d_out: FlexTensor,
    epsilon: f64,
    order: NormOrder,
) -> [FlexTensor; 3] {
    let (y, gamma, beta) = (Values::of(y), Values::of(gamma), Values::of(beta));
    let stats = BatchStats {
        mean: Values::of(mean).slice().to_vec(),
        variance: Values::of(variance).slice().to_vec(),
    };
    let mut d = writable(d_out);
    let (d_gamma, d_beta) = batch_norm::backward(
        y.slice(),
        values_mut(&mut d),
        gamma.dims[0],
        gamma.slice(),
        beta.slice(),
        &stats,
        epsilon,
        order,
    );
    [d, channel_tensor(d_gamma), channel_tensor(d_beta)]
}

/// Gradients of [`super::flex::affine_forward`]: `[d y, d scale, d shift]`, `d y` in the
/// buffer of `d_out` where nothing else holds it.
pub(crate) fn affine_backward(
    y: &FlexTensor,
    scale: &FlexTensor,
    shift: &FlexTensor,
    d_out: FlexTensor,
    order: NormOrder,
) -> [FlexTensor; 3] {
    let (y, scale, shift) = (Values::of(y), Values::of(scale), Values::of(shift));
    let mut d = writable(d_out);
    let (d_scale, d_shift) = batch_norm::affine_backward(
        y.slice(),
        values_mut(&mut d),
        scale.dims[0],
        scale.slice(),
        shift.slice(),
        order,
    );
    [d, channel_tensor(d_scale), channel_tensor(d_shift)]
}

/// A per-channel gradient `[C]`.
fn channel_tensor(values: Vec<f32>) -> FlexTensor {
    let c = values.len();
    tensor(values, &[c])
}

/// Gradients of [`super::flex::bernoulli_forward`] for `[logits, targets]`, as `wanted` says.
pub(crate) fn bernoulli_backward(
    logits: &FlexTensor,
    targets: &FlexTensor,
    d_out: &FlexTensor,
    bound: f64,
    wanted: [bool; 2],
) -> [Option<FlexTensor>; 2] {
    let (logits, targets, d_out) = (Values::of(logits), Values::of(targets), Values::of(d_out));
    let bound = bound as f32;
    let d_logits = wanted[0].then(|| {
        let d = bernoulli::d_logits(logits.slice(), targets.slice(), d_out.slice(), bound);
        tensor(d, &logits.dims)
    });
    let d_targets = wanted[1].then(|| {
        let d = bernoulli::d_targets(logits.slice(), d_out.slice(), bound);
        tensor(d, &targets.dims)
    });
    [d_logits, d_targets]
}
