//! What a seed and the per-concept shifts mean: the latent noise fed to the model when sampling.
//!
//! The trainer's `sample` command and the browser both build their noise here, so one seed gives
//! the same noise everywhere, and a share link names the noise exactly.

use crate::config::ModelConfig;
use crate::rng::Rng;

/// The stream from which each concept's shift direction is drawn: fixed for all seeds, so moving
/// a slider means the same thing whatever the seed.
const DIRECTION_STREAM: u64 = 0x5117_DE00;

/// The largest shift, in standard deviations, the page's sliders and `intervene edit` offer:
/// beyond it the noise lies where training almost never put any.
pub const SHIFT_LIMIT: f32 = 3.0;

/// Whether `config`'s latent splits into one noise block per concept (a context module's input).
/// Shifting a concept's noise only means something then.
pub fn has_concept_noise(config: &ModelConfig) -> bool {
    config.method.has_context_module()
}

/// Standard normal noise `[n, latent]` drawn from `seed`, with concept `k`'s block moved by
/// `shifts[k]` standard deviations along that concept's fixed unit direction ([`shift`]).
pub fn latents(config: &ModelConfig, n: usize, seed: u64, shifts: &[f32]) -> Vec<f32> {
    let mut z = vec![0f32; n * config.latent_size()];
    Rng::new(seed).fill_normal(&mut z);
    shift(config, &mut z, shifts);
    z
}

/// Moves concept `k`'s noise block of every latent in `z` (`[n, latent]`) by `shifts[k]`
/// standard deviations along the concept's fixed direction: a seed's noise for sampling, or an
/// image's abducted noise for an edit (`crate::counterfactual`).
///
/// `shifts` may be empty (no shift); otherwise it has one entry per concept, and it is ignored
/// for models without per-concept noise.
pub fn shift(config: &ModelConfig, z: &mut [f32], shifts: &[f32]) {
    if shifts.iter().all(|&s| s == 0.0) || !has_concept_noise(config) {
        return;
    }
    assert_eq!(shifts.len(), config.num_concepts(), "one shift per concept");
    let (latent, width) = (config.latent_size(), config.widths.w_in);
    for (k, &shift) in shifts.iter().enumerate() {
        if shift == 0.0 {
            continue;
        }
        let direction = direction(k, width);
        for sample in z.chunks_exact_mut(latent) {
            let block = &mut sample[k * width..(k + 1) * width];
            for (v, d) in block.iter_mut().zip(&direction) {
                *v += shift * d;
            }
        }
    }
}

/// Concept `k`'s unit direction in its noise block of `width` values.
fn direction(k: usize, width: usize) -> Vec<f32> {
    let mut d = vec![0f32; width];
    Rng::derive(DIRECTION_STREAM, k as u64).fill_normal(&mut d);
    let norm = d
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    d.iter().map(|v| v / norm).collect()
}

/// Why generated images (CHW, `numel` values each, concatenated) cannot be what a trained
/// model draws: values that are not numbers, or every image one flat colour. Training never
/// leaves weights like that (it skips non-finite steps); weights out of range do, such as a
/// negative BatchNorm variance or values near f32's limit.
pub fn degenerate(images: &[f32], numel: usize) -> Option<String> {
    let numel = numel.max(1);
    let count = images.len() / numel;
    let cause = "the weights are likely out of range (a negative BatchNorm variance, values near f32's limit)";
    let broken = images
        .chunks(numel)
        .filter(|image| image.iter().any(|v| !v.is_finite()))
        .count();
    if broken > 0 {
        return Some(format!(
            "{broken} of {count} generated images hold values that are not numbers: {cause}"
        ));
    }
    let flat = |image: &[f32]| {
        let (lo, hi) = image
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        hi - lo < 1.0 / 255.0
    };
    (count > 0 && images.chunks(numel).all(flat))
        .then(|| format!("all {count} generated images are one flat colour: {cause}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Method;
    use crate::data::DatasetKind;

    fn config(method: Method) -> ModelConfig {
        let dataset = DatasetKind::QuadDependent.dataset();
        ModelConfig {
            architecture: dataset.architecture(),
            image: dataset.image_shape(32).unwrap(),
            concepts: dataset.concepts(),
            widths: dataset.default_widths(),
            hidden: 16,
            method,
            noise_layer: Default::default(),
        }
    }

    #[test]
    fn same_seed_same_noise_and_shift_moves_only_its_block() {
        let c = config(Method::Cm);
        let plain = latents(&c, 3, 9, &[]);
        assert_eq!(plain, latents(&c, 3, 9, &[0.0; 6]));
        assert_ne!(plain, latents(&c, 3, 10, &[]));
        let mut shifts = vec![0.0; c.num_concepts()];
        shifts[2] = 1.5;
        let moved = latents(&c, 3, 9, &shifts);
        let (w, latent) = (c.widths.w_in, c.latent_size());
        for i in 0..3 {
            let delta: Vec<f32> = (0..latent)
                .map(|j| moved[i * latent + j] - plain[i * latent + j])
                .collect();
            let inside: f32 = delta[2 * w..3 * w].iter().map(|d| d * d).sum();
            let outside: f32 = delta.iter().map(|d| d * d).sum::<f32>() - inside;
            assert!(
                (inside.sqrt() - 1.5).abs() < 1e-4,
                "moved by {}",
                inside.sqrt()
            );
            assert_eq!(outside, 0.0);
        }
    }

    #[test]
    fn models_without_concept_noise_ignore_shifts() {
        let c = config(Method::Base);
        assert_eq!(latents(&c, 2, 1, &[1.0; 6]), latents(&c, 2, 1, &[]));
    }

    #[test]
    fn images_with_non_numbers_or_all_flat_are_degenerate() {
        let numel = 4;
        let fine = [0.1, 0.9, 0.5, 0.5, 0.2, 0.2, 0.2, 0.2];
        assert_eq!(
            degenerate(&fine, numel),
            None,
            "one flat image among others is fine"
        );
        let mut nan = fine;
        nan[6] = f32::NAN;
        let why = degenerate(&nan, numel).unwrap();
        assert!(
            why.starts_with("1 of 2 generated images") && why.contains("out of range"),
            "{why}"
        );
        let flat = [0.3, 0.3, 0.3, 0.3, 1.0, 1.0, 1.0, 1.0];
        assert!(
            degenerate(&flat, numel)
                .unwrap()
                .contains("all 2 generated images are one flat colour")
        );
    }
}
