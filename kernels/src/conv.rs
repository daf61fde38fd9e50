//! The halving convolution (kernel 4, stride 2, padding 1) and its transpose, forward and
//! backward, on channels-last slices.
//!
//! Each is a matrix product next to a patch `gather` or `scatter` (see `patches`). Rather than
//! materialise the whole patch matrix (16 times the feature map), the batch is split into groups
//! of images and each core gathers, multiplies and scatters one group at a time, so the patch
//! rows stay in its cache.

#[cfg(any(test, feature = "train"))]
use super::matmul::transpose_into;
use super::matmul::{Matrix, matmul, matmul_strided};
use super::parallel;
use super::patches::{self, Grid, Window};
use std::cell::RefCell;

/// Images handled by one task: about four tasks per core, and patch buffers of at most 1 MB
/// (2^18 values), so that a task's patch rows stay in its core's L2 cache between the gather
/// (or product) that writes them and the product (or scatter) that reads them. Measured here:
/// 4 MB buffers made generation ~15% slower.
fn images_per_task(grid: Grid) -> usize {
    let per_image = (grid.patch_rows() / grid.batch.max(1)) * grid.patch_width();
    let by_cores = grid.batch.div_ceil(4 * parallel::threads());
    let by_memory = (1 << 18) / per_image.max(1);
    by_cores.min(by_memory).max(1)
}

thread_local! {
    /// Each thread's buffer for the patch rows of its current task. Reused rather than
    /// allocated per task: a fresh multi-megabyte buffer costs a zeroing pass (or page faults)
    /// as large as the gather itself.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer cut to `len` values, whose contents are left over
/// from earlier use: `f` must write before it reads. `f` must not start parallel work (the
/// thread could pick up another task that wants the buffer).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        f(&mut scratch[..len])
    })
}

/// `grid` with only `count` of its images (a task's share).
fn part(grid: Grid, count: usize) -> Grid {
    Grid {
        batch: count,
        ..grid
    }
}

/// `patches(values) * matrix (+ bias)`: the patches of `values [B, H, W, C]` (patch rows
/// `[B * H/2 * W/2, 16 C]`) times `matrix [16 C, N]`, plus `bias [N]` on every row if given.
pub(crate) fn gather_multiply(
    values: &[f32],
    grid: Grid,
    matrix: Matrix,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let per_task = images_per_task(grid);
    let rows_per_image = grid.patch_rows() / grid.batch.max(1);
    let n = matrix.data.len() / grid.patch_width().max(1);
    let image_len = grid.len() / grid.batch.max(1);
    let start = bias.unwrap_or(&[0.0]);
    let len = grid.patch_rows() * n;
    let windows = grid.windows();
    parallel::new_in_chunks(len, per_task * rows_per_image * n, start, |task, out| {
        let images = part(grid, out.len() / (rows_per_image * n));
        let source = &values[task * per_task * image_len..][..images.len()];
        for (window, pixels) in &windows {
            let rows = images.batch * pixels.len();
            let width = window.taps() * grid.channels;
            with_scratch(rows * (width + n), |scratch| {
                let (patch_rows, products) = scratch.split_at_mut(rows * width);
                patches::gather_window(source, images, *window, pixels, patch_rows);
                let patch_rows = Matrix::new(patch_rows, rows, width);
                multiply_window_taps(patch_rows, matrix, *window, grid.channels, products);
                patches::add_picked_rows(products, images, pixels, n, out);
            });
        }
    })
}

/// `patch_rows [n, taps * C]` (the taps of `window`) times the rows of `matrix [16 C, N]` (rows
/// `[ky][kx][c]`) for those taps, into `out [n, N]`.
fn multiply_window_taps(
    patch_rows: Matrix,
    matrix: Matrix,
    window: Window,
    c: usize,
    out: &mut [f32],
) {
    for (i, (taps, rows)) in window.runs(c).into_iter().enumerate() {
        let (taps, rows) = (patch_rows.column_block(taps), matrix.row_block(rows));
        matmul(taps, rows, out, i > 0);
    }
}

/// `scatter(rows * matrix) (+ bias)`: `rows [B * H/2 * W/2, K]` times `matrix [K, 16 C]` gives
/// patch rows of `grid [B, H, W, C]`, which are added up onto a grid of zeros, or of `bias [C]`
/// on every pixel if given.
///
/// The product is taken one window of taps at a time (see `patches::Window`): the columns of
/// taps that padding puts outside the grid are never computed, which is 23% of the work on a
/// 4x4 map and 12% on an 8x8 one.
pub(crate) fn multiply_scatter(
    rows: &[f32],
    matrix: Matrix,
    grid: Grid,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let per_task = images_per_task(grid);
    let rows_per_image = grid.patch_rows() / grid.batch.max(1);
    let k = rows.len() / grid.patch_rows().max(1);
    let image_len = grid.len() / grid.batch.max(1);
    let start = bias.unwrap_or(&[0.0]);
    let windows = grid.windows();
    parallel::new_in_chunks(grid.len(), per_task * image_len, start, |task, out| {
        let images = part(grid, out.len() / image_len);
        let rows = &rows[task * per_task * rows_per_image * k..][..images.patch_rows() * k];
        for (window, pixels) in &windows {
            let n = images.batch * pixels.len();
            let width = window.taps() * grid.channels;
            with_scratch(n * (k + width), |scratch| {
                let (window_rows, patch_rows) = scratch.split_at_mut(n * k);
                patches::pick_rows(rows, images, pixels, k, window_rows);
                let window_rows = Matrix::new(window_rows, n, k);
                multiply_window(window_rows, matrix, *window, grid.channels, patch_rows);
                patches::scatter_add_window(patch_rows, images, *window, pixels, out);
            });
        }
    })
}

/// `rows [n, K]` times the columns of `matrix [K, 16 C]` (columns `[ky][kx][c]`) for the taps of
/// `window`, into `patch_rows [n, taps * C]`.
fn multiply_window(rows: Matrix, matrix: Matrix, window: Window, c: usize, patch_rows: &mut [f32]) {
    let width = window.taps() * c;
    for (taps, columns) in window.runs(c) {
        let (out, columns) = (&mut patch_rows[taps.start..], matrix.column_block(columns));
        matmul_strided(rows, columns, out, width, false);
    }
}

/// `rows^T * patches(values)` (`[K, 16 C]`): the sum over patch rows `p` of the outer product of
/// `rows[p]` and patch row `p`. Both operands are laid out so that gemm reads them with unit
/// stride (see `matmul`).
///
/// Each core sums the products of a run of consecutive tasks into one partial result, rather
/// than every task into its own: a partial is as large as the weight (up to 2 MB here), and
/// writing, zeroing and adding one per task cost more than the products of the small layers.
/// The runs depend only on the batch and the number of cores, so the sum is the same on every
/// run of one machine.
#[cfg(any(test, feature = "train"))]
pub(crate) fn patch_outer_products(values: &[f32], grid: Grid, rows: &[f32]) -> Vec<f32> {
    let per_task = images_per_task(grid);
    let tasks_per_run = grid.batch.div_ceil(per_task).div_ceil(parallel::threads());
    let rows_per_image = grid.patch_rows() / grid.batch.max(1);
    let k = rows.len() / grid.patch_rows().max(1);
    let image_len = grid.len() / grid.batch.max(1);
    let size = grid.patch_width() * k;
    let windows = grid.windows();
    parallel::map_reduce_chunks(
        values,
        tasks_per_run * per_task * image_len,
        |run, sources| {
            let mut partial = vec![0f32; size];
            for (i, source) in sources.chunks(per_task * image_len).enumerate() {
                let images = part(grid, source.len() / image_len);
                let first_image = (run * tasks_per_run + i) * per_task;
                let rows = &rows[first_image * rows_per_image * k..][..images.patch_rows() * k];
                for (window, pixels) in &windows {
                    let n = images.batch * pixels.len();
                    let width = window.taps() * grid.channels;
                    with_scratch(n * (width + 2 * k), |scratch| {
                        let (patch_rows, scratch) = scratch.split_at_mut(n * width);
                        let (window_rows, rows_t) = scratch.split_at_mut(n * k);
                        patches::gather_window(source, images, *window, pixels, patch_rows);
                        patches::pick_rows(rows, images, pixels, k, window_rows);
                        transpose_into(window_rows, n, k, rows_t);
                        let rows_t = Matrix::new(rows_t, k, n);
                        let patch_rows = Matrix::new(patch_rows, n, width);
                        add_window_products(rows_t, patch_rows, *window, grid, &mut partial);
                    });
                }
            }
            partial
        },
        parallel::add_elementwise,
    )
    .unwrap_or_else(|| vec![0.0; size])
}

/// Adds `rows_t [K, n]` times `patch_rows [n, taps * C]` (the taps of `window`) onto the columns
/// of those taps in `partial [K, 16 C]` (columns `[ky][kx][c]`).
#[cfg(any(test, feature = "train"))]
fn add_window_products(
    rows_t: Matrix,
    patch_rows: Matrix,
    window: Window,
    grid: Grid,
    partial: &mut [f32],
) {
    for (taps, columns) in window.runs(grid.channels) {
        let (taps, out) = (patch_rows.column_block(taps), &mut partial[columns.start..]);
        matmul_strided(rows_t, taps, out, grid.patch_width(), true);
    }
}
