//! The decoder's Bernoulli pixels: the reconstruction loss (binary cross-entropy on logits),
//! summed per image in one pass each way, and the pixel means (sigmoid of the logits) written
//! channels-first in one pass. burn builds the loss from a clamp, a softplus, a product, a
//! difference and a sum, each a full pass over the decoder's output with its own backward.

use super::exp_log::{exp, ln_1p};
use super::matmul::transpose_into;
use super::parallel;
use super::simd::wide_fn;

/// `softplus(l) = ln(1 + e^l)`, written so that `e^l` cannot overflow.
#[inline(always)]
fn softplus(l: f32) -> f32 {
    l.max(0.0) + ln_1p(exp(-l.abs()))
}

#[inline(always)]
fn sigmoid(l: f32) -> f32 {
    1.0 / (1.0 + exp(-l))
}

/// Whether the clamp to `[-bound, bound]` passes `l` (and with it the gradient) unchanged.
/// NaN passes, so a diverged model still shows a non-finite loss.
#[cfg(any(test, feature = "train"))]
#[inline(always)]
fn inside(l: f32, bound: f32) -> bool {
    // `|`, not `||`: no branch, so loops that call it vectorise.
    !((l > bound) | (l < -bound))
}

/// Per image (row of `logits`/`targets`, both `[B, P]`): `sum_p softplus(l) - x l` with `l`
/// clamped to `[-bound, bound]`.
pub(crate) fn forward(logits: &[f32], targets: &[f32], images: usize, bound: f32) -> Vec<f32> {
    assert_eq!(
        logits.len(),
        targets.len(),
        "logits and targets differ in size"
    );
    let per_image = logits.len() / images.max(1);
    parallel::map_reduce_chunks(
        logits,
        per_image.max(1),
        |image, row| {
            let x = &targets[image * per_image..][..row.len()];
            vec![image_loss(row, x, bound) as f32]
        },
        |mut a: Vec<f32>, b| {
            a.extend(b);
            a
        },
    )
    .unwrap_or_default()
}

wide_fn! {
    /// One image's loss: `sum_p softplus(l) - x l` over its `logits` and `targets`.
    fn image_loss(logits: &[f32], targets: &[f32], bound: f32) -> f64 {
        let term = |l: f32, x: f32| {
            let l = l.clamp(-bound, bound);
            softplus(l) - x * l
        };
        // Eight running sums, so that the terms are computed (and added) eight at a time.
        const LANES: usize = 8;
        let mut sums = [0f64; LANES];
        let (l_chunks, x_chunks) = (logits.chunks_exact(LANES), targets.chunks_exact(LANES));
        let (l_rest, x_rest) = (l_chunks.remainder(), x_chunks.remainder());
        for (l, x) in l_chunks.zip(x_chunks) {
            for lane in 0..LANES {
                sums[lane] += f64::from(term(l[lane], x[lane]));
            }
        }
        let rest: f64 = l_rest
            .iter()
            .zip(x_rest)
            .map(|(&l, &x)| f64::from(term(l, x)))
            .sum();
        sums.iter().sum::<f64>() + rest
    }
}

/// Gradient of [`forward`] for the logits, given `d_images [B]`: `d (sigmoid(l) - x)` where the
/// clamp passed `l`, zero where it cut it.
#[cfg(any(test, feature = "train"))]
pub(crate) fn d_logits(logits: &[f32], targets: &[f32], d_images: &[f32], bound: f32) -> Vec<f32> {
    let per_image = logits.len() / d_images.len().max(1);
    parallel::new_in_chunks(logits.len(), per_image.max(1), &[0.0], |image, out| {
        let (l, x) = (&logits[image * per_image..], &targets[image * per_image..]);
        image_d_logits(out, l, x, d_images[image], bound);
    })
}

#[cfg(any(test, feature = "train"))]
wide_fn! {
    /// One image's [`d_logits`] into `out`, from its (at least as long) `logits` and `targets`.
    fn image_d_logits(out: &mut [f32], logits: &[f32], targets: &[f32], d: f32, bound: f32) {
        for ((o, &l), &x) in out.iter_mut().zip(logits).zip(targets) {
            // Computed everywhere, then selected: a loop without branches vectorises.
            let g = d * (sigmoid(l) - x);
            *o = if inside(l, bound) { g } else { 0.0 };
        }
    }
}

/// Gradient of [`forward`] for the targets: `-d l` (`l` clamped).
#[cfg(any(test, feature = "train"))]
pub(crate) fn d_targets(logits: &[f32], d_images: &[f32], bound: f32) -> Vec<f32> {
    let per_image = logits.len() / d_images.len().max(1);
    parallel::new_in_chunks(logits.len(), per_image.max(1), &[0.0], |image, out| {
        let d = d_images[image];
        for (o, &l) in out.iter_mut().zip(&logits[image * per_image..]) {
            *o = -d * l.clamp(-bound, bound);
        }
    })
}

/// Pixel means `sigmoid(l)` of channels-last logits `[B, H, W, C]` (`dims`), written
/// channels-first `[B, C, H, W]`.
pub(crate) fn means_channels_first(logits: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [_, h, w, c] = dims;
    let (pixels, image_len) = (h * w, h * w * c);
    assert_eq!(
        logits.len(),
        dims.iter().product::<usize>(),
        "logits and dims differ in size"
    );
    parallel::new_in_chunks(logits.len(), image_len.max(1), &[0.0], |image, out| {
        let source = &logits[image * image_len..][..image_len];
        // Sigmoids in place, then a transpose: a loop that reads every third value would not
        // vectorise.
        let mut means = source.to_vec();
        sigmoids(&mut means);
        transpose_into(&means, pixels, c, out);
    })
}

wide_fn! {
    /// `sigmoid(l)` in place of every `l`.
    fn sigmoids(values: &mut [f32]) {
        for v in values {
            *v = sigmoid(*v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(test, feature = "train"))]
    #[test]
    fn matches_the_definition_and_its_derivative() {
        let logits = [-20.0, -1.5, 0.0, 0.7, 3.0, 25.0];
        let targets = [0.0, 1.0, 0.5, 0.2, 1.0, 0.0];
        let bound = 16.0;
        let loss = forward(&logits, &targets, 2, bound);
        let direct = |l: f32, x: f32| {
            let l = l.clamp(-bound, bound) as f64;
            let p = 1.0 / (1.0 + (-l).exp());
            -(x as f64 * p.ln() + (1.0 - x as f64) * (1.0 - p).ln())
        };
        for (image, total) in loss.iter().enumerate() {
            let expected: f64 = (0..3)
                .map(|i| direct(logits[3 * image + i], targets[3 * image + i]))
                .sum();
            assert!(
                (*total as f64 - expected).abs() < 1e-4,
                "{total} vs {expected}"
            );
        }
        let d_logits = d_logits(&logits, &targets, &[1.0, 2.0], bound);
        // Clamped logits get no gradient; the others `d (sigmoid(l) - x)`.
        assert_eq!(d_logits[0], 0.0);
        assert_eq!(d_logits[5], 0.0);
        let h = 1e-3;
        for i in 1..5 {
            let mut moved = logits;
            moved[i] += h;
            let numeric = (forward(&moved, &targets, 2, bound)[i / 3] - loss[i / 3]) / h;
            let scale = [1.0, 2.0][i / 3];
            assert!(
                (d_logits[i] - scale * numeric).abs() < 1e-2,
                "{i}: {} vs {numeric}",
                d_logits[i]
            );
        }
    }

    #[test]
    fn means_are_sigmoids_moved_channels_first() {
        // [1, 2, 2, 3]: pixel p, channel ch holds 10 p + ch.
        let logits: Vec<f32> = (0..4)
            .flat_map(|p| (0..3).map(move |ch| (10 * p + ch) as f32 / 40.0))
            .collect();
        let means = means_channels_first(&logits, [1, 2, 2, 3]);
        for ch in 0..3 {
            for p in 0..4 {
                assert_eq!(means[ch * 4 + p], sigmoid((10 * p + ch) as f32 / 40.0));
            }
        }
    }

    #[test]
    fn nan_logits_give_a_nan_loss() {
        let loss = forward(&[f32::NAN, 0.0], &[0.0, 0.0], 1, 16.0);
        assert!(loss[0].is_nan());
    }
}
