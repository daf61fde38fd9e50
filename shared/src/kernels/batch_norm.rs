//! ReLU and BatchNorm fused over channels-last rows `[N, C]` (one row per pixel), forward and
//! backward: training mode (batch statistics) in two passes over the activations each way, and
//! inference mode, where the norm is a per-channel affine map.

use super::parallel;

/// Where BatchNorm sits relative to ReLU: the two architectures differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormOrder {
    /// Conv, ReLU, BN (simple64bn).
    ReluThenNorm,
    /// Conv, BN, ReLU (conv3).
    NormThenRelu,
}

/// The batch's per-channel statistics of the normalised input.
pub struct BatchStats {
    pub mean: Vec<f32>,
    /// Biased variance (divided by N), as burn's BatchNorm reports it.
    pub variance: Vec<f32>,
}

/// ReLU that lets NaN through (`f32::max` would turn it into 0), so a diverged batch still shows
/// up as a non-finite loss.
fn relu(v: f32) -> f32 {
    if v < 0.0 { 0.0 } else { v }
}

/// The value BatchNorm normalises: the ReLU of the input when ReLU comes first.
fn normalised_input(order: NormOrder, y: f32) -> f32 {
    match order {
        NormOrder::ReluThenNorm => relu(y),
        NormOrder::NormThenRelu => y,
    }
}

fn inverse_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance
        .iter()
        .map(|v| (1.0 / (*v as f64 + epsilon).sqrt()) as f32)
        .collect()
}

/// Training forward of `y [N, C]`: the output and the batch statistics.
pub fn forward(
    y: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    order: NormOrder,
) -> (Vec<f32>, BatchStats) {
    let n = (y.len() / c.max(1)).max(1) as f64;
    let mean: Vec<f32> = parallel::channel_sums(y, c, c, |_, row, sums| match order {
        NormOrder::ReluThenNorm => sums.iter_mut().zip(row).for_each(|(s, v)| *s += relu(*v)),
        NormOrder::NormThenRelu => sums.iter_mut().zip(row).for_each(|(s, v)| *s += v),
    })
    .into_iter()
    .map(|s| (s / n) as f32)
    .collect();
    let variance: Vec<f32> = parallel::channel_sums(y, c, c, |_, row, sums| {
        for ((s, v), m) in sums.iter_mut().zip(row).zip(&mean) {
            let d = normalised_input(order, *v) - m;
            *s += d * d;
        }
    })
    .into_iter()
    .map(|s| (s / n) as f32)
    .collect();
    let inv_std = inverse_std(&variance, epsilon);
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let out = affine_forward(y, c, &scale, &shift, order);
    (out, BatchStats { mean, variance })
}

/// Inference-mode BatchNorm (a per-channel affine map `scale * v + shift`) with its ReLU.
pub fn affine_forward(
    y: &[f32],
    c: usize,
    scale: &[f32],
    shift: &[f32],
    order: NormOrder,
) -> Vec<f32> {
    let (scale, shift) = (&scale[..c], &shift[..c]);
    let per_task = parallel::rows_per_task(y.len() / c.max(1));
    parallel::new_in_chunks(y.len(), per_task * c, &[0.0], |task, chunk| {
        let inputs = &y[task * per_task * c..][..chunk.len()];
        for (row, input) in chunk.chunks_mut(c).zip(inputs.chunks(c)) {
            for (((v, y), s), t) in row.iter_mut().zip(input).zip(scale).zip(shift) {
                *v = affine(order, *y, *s, *t);
            }
        }
    })
}

/// ReLU and the affine map `s v + t`, in `order`.
#[inline(always)]
fn affine(order: NormOrder, y: f32, s: f32, t: f32) -> f32 {
    match order {
        NormOrder::ReluThenNorm => relu(y) * s + t,
        NormOrder::NormThenRelu => relu(y * s + t),
    }
}

/// [`affine_forward`] overwriting its input: at inference nothing else needs the input.
pub fn affine_in_place(
    values: &mut [f32],
    c: usize,
    scale: &[f32],
    shift: &[f32],
    order: NormOrder,
) {
    let (scale, shift) = (&scale[..c], &shift[..c]);
    parallel::for_each_chunk(
        values,
        parallel::rows_per_task(values.len() / c.max(1)) * c,
        |_, chunk| {
            for row in chunk.chunks_mut(c) {
                for ((v, s), t) in row.iter_mut().zip(scale).zip(shift) {
                    *v = affine(order, *v, *s, *t);
                }
            }
        },
    );
}

/// Gradients of [`affine_forward`]: `d` holds the gradient reaching the output and is
/// overwritten with the input's; returns `(d scale, d shift)`.
pub fn affine_backward(
    y: &[f32],
    d: &mut [f32],
    c: usize,
    scale: &[f32],
    shift: &[f32],
    order: NormOrder,
) -> (Vec<f32>, Vec<f32>) {
    // (gradient reaching the affine map's output, the value it scaled)
    let parts = |ch: usize, v: f32, d: f32| match order {
        NormOrder::ReluThenNorm => (d, relu(v)),
        NormOrder::NormThenRelu if v * scale[ch] + shift[ch] > 0.0 => (d, v),
        NormOrder::NormThenRelu => (0.0, v),
    };
    let sums = parallel::channel_sums(y, c, 2 * c, |row_index, row, sums| {
        let d_row = &d[row_index * c..][..c];
        let (d_shift, d_scale) = sums.split_at_mut(c);
        for ch in 0..c {
            let (g, v) = parts(ch, row[ch], d_row[ch]);
            d_shift[ch] += g;
            d_scale[ch] += g * v;
        }
    });
    for_each_row_pair(y, d, c, |row, d_row| {
        for ch in 0..c {
            let (g, _) = parts(ch, row[ch], d_row[ch]);
            d_row[ch] = match order {
                NormOrder::ReluThenNorm if row[ch] <= 0.0 => 0.0,
                _ => g * scale[ch],
            };
        }
    });
    let to_f32 = |s: &[f64]| s.iter().map(|v| *v as f32).collect();
    (to_f32(&sums[c..]), to_f32(&sums[..c]))
}

/// Runs `f(row of y, row of d)` over all rows of two `[N, C]` arrays, in parallel.
fn for_each_row_pair(y: &[f32], d: &mut [f32], c: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    let per_task = parallel::rows_per_task(y.len() / c.max(1));
    parallel::for_each_chunk(d, per_task * c, |task, chunk| {
        let inputs = &y[task * per_task * c..][..chunk.len()];
        for (d_row, row) in chunk.chunks_mut(c).zip(inputs.chunks(c)) {
            f(&row[..c], &mut d_row[..c]);
        }
    });
}

/// Gradients of the training forward: `d` holds the gradient reaching the output and is
/// overwritten with the input's (no new buffer: this pass is memory-bound); returns
/// `(d gamma, d beta)`.
///
/// With `v` the normalised input and `g` the gradient reaching BatchNorm's output,
/// `d v = gamma inv_std (g - mean(g) - x_hat mean(g x_hat))`, which is `a g + b (v - mean) + k`
/// per channel: the loops below are then plain multiply-adds that vectorise.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    y: &[f32],
    d: &mut [f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    stats: &BatchStats,
    epsilon: f64,
    order: NormOrder,
) -> (Vec<f32>, Vec<f32>) {
    let rows = y.len() / c.max(1);
    let n = rows.max(1) as f32;
    let inv_std = inverse_std(&stats.variance, epsilon);
    let mean = &stats.mean[..c];
    // BatchNorm's output is `scale * v + shift`; after it a ReLU passes the gradient only where
    // that is positive.
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let (scale, shift) = (&scale[..c], &shift[..c]);
    let parts = |ch: usize, y: f32, d: f32| -> (f32, f32) {
        match order {
            NormOrder::ReluThenNorm => (relu(y), d),
            NormOrder::NormThenRelu => {
                let passes = y * scale[ch] + shift[ch] > 0.0;
                (y, if passes { d } else { 0.0 })
            }
        }
    };
    // One pass for both sums: sum(g) in the first c columns, sum(g (v - mean)) in the next c.
    let sums = parallel::channel_sums(y, c, 2 * c, |row_index, row, sums| {
        let (row, d_row) = (&row[..c], &d[row_index * c..][..c]);
        let (sum_g, sum_gv) = sums.split_at_mut(c);
        let (sum_g, sum_gv) = (&mut sum_g[..c], &mut sum_gv[..c]);
        for ch in 0..c {
            let (v, g) = parts(ch, row[ch], d_row[ch]);
            sum_g[ch] += g;
            sum_gv[ch] += g * (v - mean[ch]);
        }
    });
    let d_beta: Vec<f32> = sums[..c].iter().map(|s| *s as f32).collect();
    let d_gamma: Vec<f32> = (0..c)
        .map(|ch| (sums[c + ch] * inv_std[ch] as f64) as f32)
        .collect();
    let a = scale;
    let b: Vec<f32> = (0..c)
        .map(|ch| -a[ch] * inv_std[ch] * d_gamma[ch] / n)
        .collect();
    let k: Vec<f32> = (0..c).map(|ch| -a[ch] * d_beta[ch] / n).collect();
    let (b, k) = (&b[..c], &k[..c]);
    for_each_row_pair(y, d, c, |row, d_row| {
        for ch in 0..c {
            let (v, g) = parts(ch, row[ch], d_row[ch]);
            let d_v = a[ch] * g + b[ch] * (v - mean[ch]) + k[ch];
            // ReLU before the norm: nothing flows back where it cut the input off.
            d_row[ch] = match order {
                NormOrder::ReluThenNorm if row[ch] <= 0.0 => 0.0,
                _ => d_v,
            };
        }
    });
    (d_gamma, d_beta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_survives_both_orders() {
        for order in [NormOrder::ReluThenNorm, NormOrder::NormThenRelu] {
            let y = [1.0, f32::NAN, -1.0, 2.0];
            let (out, _) = forward(&y, 1, &[1.0], &[0.0], 1e-5, order);
            assert!(out.iter().all(|v| v.is_nan()), "{order:?}: {out:?}");
            let out = affine_forward(&y, 1, &[1.0], &[0.0], order);
            assert!(out[1].is_nan() && !out[0].is_nan(), "{order:?}: {out:?}");
        }
    }
}
