//! The kernels on burn's CPU backend (`Flex`): tensors in, tensors out, forward and backward.

use super::batch_norm::{self, BatchStats, NormOrder};
use super::matmul::{Matrix, column_sums, matmul};
use super::patches::{self, Grid};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, TensorData};

/// A float tensor's values in row-major order (copied only if it was not contiguous).
pub struct Values {
    tensor: FlexTensor,
    pub dims: Vec<usize>,
}

impl Values {
    pub fn of(tensor: &FlexTensor) -> Self {
        assert_eq!(tensor.dtype(), DType::F32, "the model's CPU kernels run in f32");
        let tensor = tensor.to_contiguous();
        let dims = tensor.layout().shape().to_vec();
        Self { tensor, dims }
    }

    pub fn slice(&self) -> &[f32] {
        let start = self.tensor.layout().start_offset();
        let len: usize = self.dims.iter().product();
        &self.tensor.storage::<f32>()[start..start + len]
    }

    fn grid(&self) -> Grid {
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

pub fn tensor(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims.to_vec()))
}

/// Every row of `[rows, bias.len()]` starting at `bias`, ready to accumulate a product onto.
fn rows_of(bias: &[f32], rows: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * bias.len()];
    for row in out.chunks_mut(bias.len().max(1)) {
        row.copy_from_slice(bias);
    }
    out
}

/// Halving convolution: `x [B, H, W, C]`, `weight [16 C, O]` (rows `[ky][kx][c]`), `bias [O]`.
pub fn conv_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (Values::of(x), Values::of(weight), Values::of(bias));
    let grid = x.grid();
    let o = bias.dims[0];
    let patches = patches::gather(x.slice(), grid);
    let mut out = rows_of(bias.slice(), grid.patch_rows());
    matmul(
        Matrix::new(&patches, grid.patch_rows(), grid.patch_width()),
        Matrix::new(weight.slice(), grid.patch_width(), o),
        &mut out,
        true,
    );
    tensor(out, &[grid.batch, grid.height / 2, grid.width / 2, o])
}

/// Which inputs need a gradient: `[x, weight, bias]`.
pub type Wanted = [bool; 3];

/// Gradients of [`conv_forward`] for the inputs `wanted` says.
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

/// Doubling transposed convolution: `x [B, H, W, C]`, `weight [C, 16 O]` (columns
/// `[ky][kx][o]`), `bias [O]`.
pub fn deconv_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (x, weight, bias) = (Values::of(x), Values::of(weight), Values::of(bias));
    let [b, h, w, c] = x.grid().dims();
    let o = bias.dims[0];
    let out_grid = Grid {
        batch: b,
        height: 2 * h,
        width: 2 * w,
        channels: o,
    };
    let mut contributions = vec![0f32; b * h * w * 16 * o];
    matmul(
        Matrix::new(x.slice(), b * h * w, c),
        Matrix::new(weight.slice(), c, 16 * o),
        &mut contributions,
        false,
    );
    let mut out = patches::scatter(&contributions, out_grid);
    for row in out.chunks_mut(o) {
        row.iter_mut().zip(bias.slice()).for_each(|(v, b)| *v += b);
    }
    tensor(out, &[b, 2 * h, 2 * w, o])
}

/// Gradients of [`deconv_forward`] for the inputs `wanted` says.
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

/// Fused ReLU + training BatchNorm of rows `y [N, C]`: `(output, mean [C], variance [C])`.
pub fn norm_forward(
    y: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
    order: NormOrder,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (y, gamma, beta) = (Values::of(y), Values::of(gamma), Values::of(beta));
    let c = gamma.dims[0];
    let (out, stats) = batch_norm::forward(y.slice(), c, gamma.slice(), beta.slice(), epsilon, order);
    (
        tensor(out, &y.dims),
        tensor(stats.mean, &[c]),
        tensor(stats.variance, &[c]),
    )
}

/// Gradients of [`norm_forward`]: `[d y, d gamma, d beta]`.
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
