//! Convolution weights between burn's layout and the patch order the kernels multiply with.
//!
//! burn keeps the kernel position last: `Conv2d` weights are `[O, C, kk]` and `ConvTranspose2d`
//! weights `[C, O, kk]` (`kk` = the `k x k` positions). The channels-last kernels want a
//! `Conv2d` weight as patch rows `[kk, C, O]` and a `ConvTranspose2d` weight as columns
//! `[C, kk, O]`. burn's own permuted copy of these (forward, and again for every gradient
//! before Adam) walked one index at a time: 4% of a training step. Here both directions are
//! transposes and row moves.

use super::matmul::{transpose, transpose_into};

/// Which burn layer a weight belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightOf {
    Conv2d,
    ConvTranspose2d,
}

impl WeightOf {
    /// The patch-ordered matrix of burn's 4-D weight `dims`: `[kk C, O]` or `[C, kk O]`.
    pub(crate) fn patch_dims(self, dims: [usize; 4]) -> [usize; 2] {
        let [a, b, k, _] = dims;
        let kk = k * k;
        match self {
            WeightOf::Conv2d => [kk * b, a],
            WeightOf::ConvTranspose2d => [a, kk * b],
        }
    }
}

/// burn's weight of `dims` in patch order.
pub(crate) fn to_patch_order(weight: &[f32], dims: [usize; 4], of: WeightOf) -> Vec<f32> {
    let [a, b, k, _] = dims;
    let kk = k * k;
    match of {
        // [O, (C, kk)] -> [(C, kk), O] -> [kk, C, O]
        WeightOf::Conv2d => swap_outer_axes(&transpose(weight, a, b * kk), b, kk),
        // [C, O, kk] -> [C, kk, O]
        WeightOf::ConvTranspose2d => transpose_each(weight, a, b, kk),
    }
}

/// The inverse of [`to_patch_order`]: a patch-ordered weight's gradient in burn's layout.
#[cfg(any(test, feature = "train"))]
pub(crate) fn from_patch_order(values: &[f32], dims: [usize; 4], of: WeightOf) -> Vec<f32> {
    let [a, b, k, _] = dims;
    let kk = k * k;
    match of {
        // [kk, C, O] -> [C, kk, O] -> [O, (C, kk)]
        WeightOf::Conv2d => transpose(&swap_outer_axes(values, kk, b), b * kk, a),
        // [C, kk, O] -> [C, O, kk]
        WeightOf::ConvTranspose2d => transpose_each(values, a, kk, b),
    }
}

/// `[A, B, R]` -> `[B, A, R]` for `values` of `A B` rows: whole rows move.
fn swap_outer_axes(values: &[f32], a: usize, b: usize) -> Vec<f32> {
    let r = values.len() / (a * b).max(1);
    let mut out = vec![0f32; values.len()];
    for (index, row) in values.chunks(r.max(1)).enumerate() {
        let (i, j) = (index / b, index % b);
        out[(j * a + i) * r..][..r].copy_from_slice(row);
    }
    out
}

/// Each of `count` consecutive `[rows, cols]` matrices transposed in place of itself.
fn transpose_each(values: &[f32], count: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    let size = rows * cols;
    assert_eq!(values.len(), count * size, "transpose_each: sizes");
    for (from, to) in values.chunks(size.max(1)).zip(out.chunks_mut(size.max(1))) {
        transpose_into(from, rows, cols, to);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(dims: [usize; 4], [i, j, y, x]: [usize; 4]) -> usize {
        ((i * dims[1] + j) * dims[2] + y) * dims[3] + x
    }

    /// Every value lands where the patch order says, and the inverse (built for training) brings
    /// it back; sizes not multiples of four reach the transposes' ragged edges.
    #[test]
    fn patch_order_places_every_value_and_inverts() {
        let (o, c, k) = (6, 5, 3);
        let kk = k * k;
        for of in [WeightOf::Conv2d, WeightOf::ConvTranspose2d] {
            let dims = match of {
                WeightOf::Conv2d => [o, c, k, k],
                WeightOf::ConvTranspose2d => [c, o, k, k],
            };
            let weight: Vec<f32> = (0..o * c * kk).map(|v| v as f32).collect();
            let patched = to_patch_order(&weight, dims, of);
            let [rows, cols] = of.patch_dims(dims);
            assert_eq!(rows * cols, weight.len());
            for (oi, ci, y, x) in (0..o).flat_map(|oi| {
                (0..c).flat_map(move |ci| {
                    (0..k).flat_map(move |y| (0..k).map(move |x| (oi, ci, y, x)))
                })
            }) {
                let p = y * k + x;
                let (burn, ours) = match of {
                    WeightOf::Conv2d => (index(dims, [oi, ci, y, x]), (p * c + ci) * o + oi),
                    WeightOf::ConvTranspose2d => {
                        (index(dims, [ci, oi, y, x]), (ci * kk + p) * o + oi)
                    }
                };
                assert_eq!(
                    patched[ours], weight[burn],
                    "{of:?} o {oi} c {ci} at ({y}, {x})"
                );
            }
            #[cfg(any(test, feature = "train"))]
            assert_eq!(
                from_patch_order(&patched, dims, of),
                weight,
                "{of:?} round trip"
            );
        }
    }
}
