//! ReLU and BatchNorm fused over channels-last rows `[N, C]` (one row per pixel), forward and
//! backward: training mode (batch statistics) in two passes over the activations each way, and
//! inference mode, where the norm is a per-channel affine map.

#[cfg(any(test, feature = "train"))]
use super::parallel::RowUpdate;
use super::parallel::{self, RowSums};
use super::simd::wide_fn;

/// Where BatchNorm sits relative to ReLU: the two architectures differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormOrder {
    /// Conv, ReLU, BN (simple64bn).
    ReluThenNorm,
    /// Conv, BN, ReLU (conv3).
    NormThenRelu,
}

/// The batch's per-channel statistics of the normalised input.
pub(crate) struct BatchStats {
    pub(crate) mean: Vec<f32>,
    /// Biased variance (divided by N), as burn's BatchNorm reports it.
    pub(crate) variance: Vec<f32>,
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
pub(crate) fn forward(
    y: &[f32],
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    order: NormOrder,
) -> (Vec<f32>, BatchStats) {
    let n = (y.len() / c.max(1)).max(1) as f64;
    let mean: Vec<f32> = parallel::channel_sums(y, c, c, &InputSums(order))
        .into_iter()
        .map(|s| (s / n) as f32)
        .collect();
    let deviations = SquaredDeviations {
        order,
        mean: &mean[..c],
    };
    let variance: Vec<f32> = parallel::channel_sums(y, c, c, &deviations)
        .into_iter()
        .map(|s| (s / n) as f32)
        .collect();
    let inv_std = inverse_std(&variance, epsilon);
    let scale: Vec<f32> = gamma.iter().zip(&inv_std).map(|(g, s)| g * s).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let out = affine_forward(y, c, &scale, &shift, order);
    (out, BatchStats { mean, variance })
}

/// Per channel: the sum of the normalised input.
struct InputSums(NormOrder);

impl RowSums for InputSums {
    #[inline(always)]
    fn add(&self, _: usize, row: &[f32], sums: &mut [f32]) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += normalised_input(self.0, *v);
        }
    }
}

/// Per channel: the sum of squared deviations of the normalised input from its mean.
struct SquaredDeviations<'a> {
    order: NormOrder,
    mean: &'a [f32],
}

impl RowSums for SquaredDeviations<'_> {
    #[inline(always)]
    fn add(&self, _: usize, row: &[f32], sums: &mut [f32]) {
        for ((s, v), m) in sums.iter_mut().zip(row).zip(self.mean) {
            let d = normalised_input(self.order, *v) - m;
            *s += d * d;
        }
    }
}

/// Inference-mode BatchNorm (a per-channel affine map `scale * v + shift`) with its ReLU.
pub(crate) fn affine_forward(
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
        affine_rows(inputs, chunk, scale, shift, order);
    })
}

wide_fn! {
    /// [`affine`] of every row of `inputs` (rows as long as `scale`) into `out`.
    fn affine_rows(inputs: &[f32], out: &mut [f32], scale: &[f32], shift: &[f32], order: NormOrder) {
        let c = scale.len();
        for (row, input) in out.chunks_mut(c).zip(inputs.chunks(c)) {
            for (((v, y), s), t) in row.iter_mut().zip(input).zip(scale).zip(shift) {
                *v = affine(order, *y, *s, *t);
            }
        }
    }
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
pub(crate) fn affine_in_place(
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
        |_, chunk| affine_rows_in_place(chunk, scale, shift, order),
    );
}

wide_fn! {
    /// [`affine_rows`] overwriting its input.
    fn affine_rows_in_place(values: &mut [f32], scale: &[f32], shift: &[f32], order: NormOrder) {
        for row in values.chunks_mut(scale.len()) {
            for ((v, s), t) in row.iter_mut().zip(scale).zip(shift) {
                *v = affine(order, *v, *s, *t);
            }
        }
    }
}

/// Gradients of [`affine_forward`]: `d` holds the gradient reaching the output and is
/// overwritten with the input's; returns `(d scale, d shift)`.
#[cfg(any(test, feature = "train"))]
pub(crate) fn affine_backward(
    y: &[f32],
    d: &mut [f32],
    c: usize,
    scale: &[f32],
    shift: &[f32],
    order: NormOrder,
) -> (Vec<f32>, Vec<f32>) {
    let map = AffineMap {
        order,
        scale: &scale[..c],
        shift: &shift[..c],
    };
    let sums = parallel::channel_sums(y, c, 2 * c, &AffineGradientSums { map, d });
    parallel::for_each_row_pair(y, d, c, &map);
    let to_f32 = |s: &[f64]| s.iter().map(|v| *v as f32).collect();
    (to_f32(&sums[c..]), to_f32(&sums[..c]))
}

/// Inference-mode BatchNorm's per-channel map, for its backward pass.
#[cfg(any(test, feature = "train"))]
#[derive(Clone, Copy)]
struct AffineMap<'a> {
    order: NormOrder,
    scale: &'a [f32],
    shift: &'a [f32],
}

#[cfg(any(test, feature = "train"))]
impl AffineMap<'_> {
    /// For input `v` of channel `ch` and gradient `d` reaching the output: the gradient reaching
    /// the affine map's output and the value it scaled.
    #[inline(always)]
    fn parts(&self, ch: usize, v: f32, d: f32) -> (f32, f32) {
        match self.order {
            NormOrder::ReluThenNorm => (d, relu(v)),
            NormOrder::NormThenRelu if v * self.scale[ch] + self.shift[ch] > 0.0 => (d, v),
            NormOrder::NormThenRelu => (0.0, v),
        }
    }
}

/// Per channel: `d shift` in the first `C` sums, `d scale` in the next `C`.
#[cfg(any(test, feature = "train"))]
struct AffineGradientSums<'a> {
    map: AffineMap<'a>,
    /// The gradient reaching the output, `[N, C]`.
    d: &'a [f32],
}

#[cfg(any(test, feature = "train"))]
impl RowSums for AffineGradientSums<'_> {
    #[inline(always)]
    fn add(&self, index: usize, row: &[f32], sums: &mut [f32]) {
        let c = row.len();
        let d_row = &self.d[index * c..][..c];
        let (d_shift, d_scale) = sums.split_at_mut(c);
        for ch in 0..c {
            let (g, v) = self.map.parts(ch, row[ch], d_row[ch]);
            d_shift[ch] += g;
            d_scale[ch] += g * v;
        }
    }
}

/// The input's gradient, over the output's.
#[cfg(any(test, feature = "train"))]
impl RowUpdate for AffineMap<'_> {
    #[inline(always)]
    fn update(&self, row: &[f32], d_row: &mut [f32]) {
        for ch in 0..row.len() {
            let (g, _) = self.parts(ch, row[ch], d_row[ch]);
            d_row[ch] = match self.order {
                NormOrder::ReluThenNorm if row[ch] <= 0.0 => 0.0,
                _ => g * self.scale[ch],
            };
        }
    }
}

/// Gradients of the training forward: `d` holds the gradient reaching the output and is
/// overwritten with the input's (no new buffer: this pass is memory-bound); returns
/// `(d gamma, d beta)`.
///
/// With `v` the normalised input and `g` the gradient reaching BatchNorm's output,
/// `d v = gamma inv_std (g - mean(g) - x_hat mean(g x_hat))`, which is `a g + b (v - mean) + k`
/// per channel: the loops below are then plain multiply-adds that vectorise.
#[cfg(any(test, feature = "train"))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
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
    let norm = NormMap {
        order,
        scale: &scale[..c],
        shift: &shift[..c],
        mean,
    };
    // One pass for both sums: sum(g) in the first c columns, sum(g (v - mean)) in the next c.
    let sums = parallel::channel_sums(y, c, 2 * c, &NormGradientSums { norm, d });
    let d_beta: Vec<f32> = sums[..c].iter().map(|s| *s as f32).collect();
    let d_gamma: Vec<f32> = (0..c)
        .map(|ch| (sums[c + ch] * inv_std[ch] as f64) as f32)
        .collect();
    let a = norm.scale;
    let b: Vec<f32> = (0..c)
        .map(|ch| -a[ch] * inv_std[ch] * d_gamma[ch] / n)
        .collect();
    let k: Vec<f32> = (0..c).map(|ch| -a[ch] * d_beta[ch] / n).collect();
    let input_gradient = NormInputGradient {
        norm,
        b: &b[..c],
        k: &k[..c],
    };
    parallel::for_each_row_pair(y, d, c, &input_gradient);
    (d_gamma, d_beta)
}

/// Training-mode BatchNorm as the per-channel map `scale * v + shift` of the normalised input
/// `v` (the batch statistics folded in), for its backward pass.
#[cfg(any(test, feature = "train"))]
#[derive(Clone, Copy)]
struct NormMap<'a> {
    order: NormOrder,
    scale: &'a [f32],
    shift: &'a [f32],
    mean: &'a [f32],
}

#[cfg(any(test, feature = "train"))]
impl NormMap<'_> {
    /// For input `y` of channel `ch` and gradient `d` reaching the output: the normalised input
    /// and the gradient reaching BatchNorm's output (a ReLU after the norm passes it only where
    /// the norm's output is positive).
    #[inline(always)]
    fn parts(&self, ch: usize, y: f32, d: f32) -> (f32, f32) {
        match self.order {
            NormOrder::ReluThenNorm => (relu(y), d),
            NormOrder::NormThenRelu => {
                let passes = y * self.scale[ch] + self.shift[ch] > 0.0;
                (y, if passes { d } else { 0.0 })
            }
        }
    }
}

/// Per channel: `sum(g)` in the first `C` sums, `sum(g (v - mean))` in the next `C`.
#[cfg(any(test, feature = "train"))]
struct NormGradientSums<'a> {
    norm: NormMap<'a>,
    /// The gradient reaching the output, `[N, C]`.
    d: &'a [f32],
}

#[cfg(any(test, feature = "train"))]
impl RowSums for NormGradientSums<'_> {
    #[inline(always)]
    fn add(&self, index: usize, row: &[f32], sums: &mut [f32]) {
        let c = row.len();
        let d_row = &self.d[index * c..][..c];
        let (sum_g, sum_gv) = sums.split_at_mut(c);
        let (sum_g, sum_gv, mean) = (&mut sum_g[..c], &mut sum_gv[..c], &self.norm.mean[..c]);
        for ch in 0..c {
            let (v, g) = self.norm.parts(ch, row[ch], d_row[ch]);
            sum_g[ch] += g;
            sum_gv[ch] += g * (v - mean[ch]);
        }
    }
}

/// The input's gradient `d v = a g + b (v - mean) + k` per channel, `a` being the norm's scale.
#[cfg(any(test, feature = "train"))]
struct NormInputGradient<'a> {
    norm: NormMap<'a>,
    b: &'a [f32],
    k: &'a [f32],
}

#[cfg(any(test, feature = "train"))]
impl RowUpdate for NormInputGradient<'_> {
    #[inline(always)]
    fn update(&self, row: &[f32], d_row: &mut [f32]) {
        let c = row.len();
        let (a, b, k) = (&self.norm.scale[..c], &self.b[..c], &self.k[..c]);
        let mean = &self.norm.mean[..c];
        for ch in 0..c {
            let (v, g) = self.norm.parts(ch, row[ch], d_row[ch]);
            let d_v = a[ch] * g + b[ch] * (v - mean[ch]) + k[ch];
            // ReLU before the norm: nothing flows back where it cut the input off.
            d_row[ch] = match self.norm.order {
                NormOrder::ReluThenNorm if row[ch] <= 0.0 => 0.0,
                _ => d_v,
            };
        }
    }
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
