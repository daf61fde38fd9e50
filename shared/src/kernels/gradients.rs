//! The kernels' backward passes on burn's CPU backend (`Flex`) tensors: each returns the
//! gradients of the inputs its caller asks for.

use super::batch_norm::{self, BatchStats, NormOrder};
use super::flex::{Values, tensor};
use super::matmul::{Matrix, column_sums, matmul};
use super::patches;
use burn::backend::flex::FlexTensor;

/// Which inputs need a gradient: `[x, weight, bias]`.
pub type Wanted = [bool; 3];

/// Gradients of [`super::flex::conv_forward`] for the inputs `wanted` says.
pub fn conv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    d_out: &FlexTensor,
    wanted: Wanted,
) -> [Option<FlexTensor>; 3] {
    let (x, weight, d_out) = (Values::of(x), Values::of(weight), Values::of(d_out));
    let grid = x.grid();
    let o = d_out.dims[3];
    let d_rows = Matrix::new(d_out.slice(), grid.patch_rows(), o);
    let d_x = wanted[0].then(|| {
        let mut d_patches = vec![0f32; grid.patch_rows() * grid.patch_width()];
        let w = Matrix::new(weight.slice(), grid.patch_width(), o);
        matmul(d_rows, w.t(), &mut d_patches, false);
        tensor(patches::scatter(&d_patches, grid), &x.dims)
    });
    let d_weight = wanted[1].then(|| {
        let patches = patches::gather(x.slice(), grid);
        let mut d_w = vec![0f32; grid.patch_width() * o];
        let p = Matrix::new(&patches, grid.patch_rows(), grid.patch_width());
        matmul(p.t(), d_rows, &mut d_w, false);
        tensor(d_w, &weight.dims)
    });
    let d_bias = wanted[2].then(|| tensor(column_sums(d_out.slice(), o), &[o]));
    [d_x, d_weight, d_bias]
}

/// Gradients of [`super::flex::deconv_forward`] for the inputs `wanted` says.
pub fn deconv_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    d_out: &FlexTensor,
    wanted: Wanted,
) -> [Option<FlexTensor>; 3] {
    let (x, weight, d_out) = (Values::of(x), Values::of(weight), Values::of(d_out));
    let [b, h, w, c] = x.grid().dims();
    let out_grid = d_out.grid();
    let o = out_grid.channels;
    // The gradient of a scatter is a gather.
    let d_contributions = (wanted[0] || wanted[1]).then(|| patches::gather(d_out.slice(), out_grid));
    let d_z = || Matrix::new(d_contributions.as_deref().unwrap_or(&[]), b * h * w, 16 * o);
    let d_x = wanted[0].then(|| {
        let mut d_x = vec![0f32; b * h * w * c];
        matmul(d_z(), Matrix::new(weight.slice(), c, 16 * o).t(), &mut d_x, false);
        tensor(d_x, &x.dims)
    });
    let d_weight = wanted[1].then(|| {
        let mut d_w = vec![0f32; c * 16 * o];
        matmul(Matrix::new(x.slice(), b * h * w, c).t(), d_z(), &mut d_w, false);
        tensor(d_w, &weight.dims)
    });
    let d_bias = wanted[2].then(|| tensor(column_sums(d_out.slice(), o), &[o]));
    [d_x, d_weight, d_bias]
}

/// Gradients of [`super::flex::norm_forward`]: `[d y, d gamma, d beta]`.
#[allow(clippy::too_many_arguments)]
pub fn norm_backward(
    y: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    d_out: &FlexTensor,
    epsilon: f64,
    order: NormOrder,
) -> [FlexTensor; 3] {
    let (y, gamma, beta, d_out) = (Values::of(y), Values::of(gamma), Values::of(beta), Values::of(d_out));
    let stats = BatchStats {
        mean: Values::of(mean).slice().to_vec(),
        variance: Values::of(variance).slice().to_vec(),
    };
    let c = gamma.dims[0];
    let (d_y, d_gamma, d_beta) = batch_norm::backward(
        y.slice(),
        d_out.slice(),
        c,
        gamma.slice(),
        beta.slice(),
        &stats,
        epsilon,
        order,
    );
    [tensor(d_y, &y.dims), tensor(d_gamma, &[c]), tensor(d_beta, &[c])]
}
