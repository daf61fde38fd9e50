//! Morpho-MNIST-style perturbations of 28x28 grey digit images.
//!
//! Each perturbation is one concept: a context of the dataset is a set of perturbations applied to
//! real digits. Images are row-major, 784 values in `[0, 1]`; pixel `(x, y)` sits at coordinate
//! `(x, y)`, so the image centre is `(13.5, 13.5)`. All randomness comes from the caller's [`Rng`],
//! so a seed fixes the output exactly on every machine.

use std::f64::consts::TAU;

use crate::rng::Rng;

pub const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
/// The image centre in pixel coordinates; the affine warps act about it.
const CENTRE: f32 = (SIDE as f32 - 1.0) / 2.0;
/// Grey level above which a pixel counts as ink.
const INK: f32 = 0.5;
/// Radius in pixels of the neighbourhood that [`Perturbation::Swell`] magnifies.
const SWELL_RADIUS: f32 = 7.0;
/// Exponent of the swell's radial map; below 1 it magnifies the centre.
const SWELL_GAMMA: f32 = 0.5;

/// The six perturbations; each one is a concept of the MNIST dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Perturbation {
    /// Thins strokes by about 0.5 px on each side: grey-level erosion with a disk of radius 1 at
    /// twice the resolution. No random parameters.
    Thin,
    /// Thickens strokes by 1 to 1.5 px on each side: grey-level dilation at twice the resolution
    /// with a disk whose radius is drawn uniformly from {2, 3} (at 56 px).
    Thick,
    /// Locally magnifies the digit around a uniformly chosen ink pixel `c`: output pixel `p` at
    /// distance `d < 7` px from `c` samples the input at `c + (p - c) * (d / 7)^0.5`.
    Swell,
    /// Shrinks the digit about the image centre by a factor drawn uniformly from [0.6, 0.8].
    Scale,
    /// Shears horizontally about the centre, `src.x = x + k * (y - 13.5)`, with `|k|` drawn
    /// uniformly from [0.35, 0.6] and a random sign.
    Shear,
    /// Translates by a vector of length uniform in [3, 5] px pointing in a uniform direction.
    Shift,
}

impl Perturbation {
    /// Every perturbation, in the canonical order of [`apply_all`].
    pub const ALL: [Perturbation; 6] = [
        Perturbation::Thin,
        Perturbation::Thick,
        Perturbation::Swell,
        Perturbation::Scale,
        Perturbation::Shear,
        Perturbation::Shift,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Perturbation::Thin => "thin",
            Perturbation::Thick => "thic",
            Perturbation::Swell => "swel",
            Perturbation::Scale => "scaled",
            Perturbation::Shear => "shear",
            Perturbation::Shift => "shift",
        }
    }

    /// Applies the perturbation with its random parameters drawn from `rng`.
    pub fn apply(self, image: &[f32], rng: &mut Rng) -> Vec<f32> {
        assert_eq!(image.len(), PIXELS, "morpho images are {SIDE}x{SIDE}");
        let mut out = match self {
            Perturbation::Thin => morph(image, 1, f32::min),
            Perturbation::Thick => morph(image, 2 + rng.below(2) as isize, f32::max),
            Perturbation::Swell => swell(image, rng),
            Perturbation::Scale => {
                let s = uniform(rng, 0.6, 0.8);
                warp(image, |x, y| {
                    (CENTRE + (x - CENTRE) / s, CENTRE + (y - CENTRE) / s)
                })
            }
            Perturbation::Shear => {
                let k = uniform(rng, 0.35, 0.6);
                let k = if rng.uniform() < 0.5 { -k } else { k };
                warp(image, |x, y| (x + k * (y - CENTRE), y))
            }
            Perturbation::Shift => {
                let length = uniform(rng, 3.0, 5.0);
                let angle = rng.uniform() * TAU;
                let (dx, dy) = (length * angle.cos() as f32, length * angle.sin() as f32);
                warp(image, |x, y| (x - dx, y - dy))
            }
        };
        // Inputs slightly outside [0, 1] must not leak out of the documented range.
        out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        out
    }
}

/// Applies several perturbations in a fixed canonical order (morphological ones first: thin,
/// thick, swell; then the affine ones: scale, shear, shift), whatever order they are given in.
///
/// A context is a *set* of concepts, so a perturbation listed twice is applied once; the canonical
/// order also fixes which draws of `rng` each perturbation gets.
pub fn apply_all(perturbations: &[Perturbation], image: &[f32], rng: &mut Rng) -> Vec<f32> {
    let mut out = image.to_vec();
    for p in Perturbation::ALL {
        if perturbations.contains(&p) {
            out = p.apply(&out, rng);
        }
    }
    out
}

/// Stroke thickness estimate in pixels: 2 * area / perimeter of the binarised digit (threshold
/// 0.5): area = pixels above threshold, perimeter = 4-neighbour edges between an inked pixel and a
/// non-inked one (outside the image counts as non-inked). For a long stroke of width w this is ~w.
pub fn thickness(image: &[f32]) -> f64 {
    let inked = |x, y| pixel(image, SIDE, x, y) > INK;
    let (mut area, mut perimeter) = (0usize, 0usize);
    for y in 0..SIDE as isize {
        for x in 0..SIDE as isize {
            if inked(x, y) {
                area += 1;
                perimeter += [(1, 0), (-1, 0), (0, 1), (0, -1)]
                    .iter()
                    .filter(|&&(dx, dy)| !inked(x + dx, y + dy))
                    .count();
            }
        }
    }
    if perimeter == 0 {
        0.0
    } else {
        2.0 * area as f64 / perimeter as f64
    }
}

fn uniform(rng: &mut Rng, low: f64, high: f64) -> f32 {
    (low + (high - low) * rng.uniform()) as f32
}

/// Pixel `(x, y)` of a `side`x`side` image; everything outside is background (0).
fn pixel(image: &[f32], side: usize, x: isize, y: isize) -> f32 {
    let inside = |v: isize| (0..side as isize).contains(&v);
    if inside(x) && inside(y) {
        image[y as usize * side + x as usize]
    } else {
        0.0
    }
}

/// Bilinear sample of a `side`x`side` image at `(x, y)`, with background outside.
fn sample(image: &[f32], side: usize, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |dx: isize, dy: isize| pixel(image, side, x0 as isize + dx, y0 as isize + dy);
    let top = (1.0 - fx) * at(0, 0) + fx * at(1, 0);
    let bottom = (1.0 - fx) * at(0, 1) + fx * at(1, 1);
    (1.0 - fy) * top + fy * bottom
}

/// Inverse warp: output pixel `(x, y)` takes the input's bilinear sample at `source(x, y)`, so
/// every output pixel is defined (no holes, unlike pushing input pixels forward).
fn warp(image: &[f32], source: impl Fn(f32, f32) -> (f32, f32)) -> Vec<f32> {
    (0..PIXELS)
        .map(|i| {
            let (x, y) = source((i % SIDE) as f32, (i / SIDE) as f32);
            sample(image, SIDE, x, y)
        })
        .collect()
}

/// Grey-level erosion (`f32::min`) or dilation (`f32::max`) with a disk of `radius` pixels,
/// done at twice the resolution: a disk of radius 1 at 28 px would remove a whole pixel per side,
/// which erases thin digits, while at 56 px it takes half a pixel.
fn morph(image: &[f32], radius: isize, combine: fn(f32, f32) -> f32) -> Vec<f32> {
    const HI: usize = 2 * SIDE;
    // Hi-res pixel j's centre lies at (j + 0.5) / 2 - 0.5 in low-res coordinates.
    let hi: Vec<f32> = (0..HI * HI)
        .map(|i| {
            let (x, y) = ((i % HI) as f32, (i / HI) as f32);
            sample(image, SIDE, x / 2.0 - 0.25, y / 2.0 - 0.25)
        })
        .collect();
    let morphed: Vec<f32> = (0..HI * HI)
        .map(|i| {
            let (x, y) = ((i % HI) as isize, (i / HI) as isize);
            let mut acc = hi[i];
            for dy in -radius..=radius {
                for dx in -radius..=radius {
                    if dx * dx + dy * dy <= radius * radius {
                        acc = combine(acc, pixel(&hi, HI, x + dx, y + dy));
                    }
                }
            }
            acc
        })
        .collect();
    (0..PIXELS)
        .map(|i| {
            let (x, y) = (2 * (i % SIDE), 2 * (i / SIDE));
            let at = |dx: usize, dy: usize| morphed[(y + dy) * HI + x + dx];
            (at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4.0
        })
        .collect()
}

/// See [`Perturbation::Swell`]. A digit without ink is returned unchanged.
fn swell(image: &[f32], rng: &mut Rng) -> Vec<f32> {
    let inked = || image.iter().enumerate().filter(|&(_, &v)| v > INK);
    let count = inked().count();
    if count == 0 {
        return image.to_vec();
    }
    let (centre, _) = inked()
        .nth(rng.below(count))
        .expect("index below the ink count");
    let (cx, cy) = ((centre % SIDE) as f32, (centre / SIDE) as f32);
    warp(image, |x, y| {
        let (dx, dy) = (x - cx, y - cy);
        let d = dx.hypot(dy);
        if d >= SWELL_RADIUS {
            return (x, y);
        }
        let f = (d / SWELL_RADIUS).powf(SWELL_GAMMA);
        (cx + dx * f, cy + dy * f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGITS: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/mnist/digits.bin"
    ));

    /// The first `n` real digits, as images in [0, 1].
    fn digits(n: usize) -> Vec<Vec<f32>> {
        assert_eq!(&DIGITS[..8], b"MNISTU8\0");
        let word = |i: usize| u32::from_le_bytes(DIGITS[i..i + 4].try_into().unwrap()) as usize;
        let (count, rows, cols) = (word(8), word(12), word(16));
        assert_eq!((rows, cols), (SIDE, SIDE));
        let pixels = &DIGITS[20 + count..];
        (0..n.min(count))
            .map(|k| {
                let px = &pixels[k * PIXELS..(k + 1) * PIXELS];
                px.iter().map(|&b| f32::from(b) / 255.0).collect()
            })
            .collect()
    }

    fn ink(image: &[f32]) -> f64 {
        image.iter().map(|&v| f64::from(v)).sum()
    }

    /// Ink-weighted centre of mass `(x, y)`.
    fn centroid(image: &[f32]) -> (f64, f64) {
        let (mut sx, mut sy) = (0.0, 0.0);
        for (i, &v) in image.iter().enumerate() {
            sx += f64::from(v) * (i % SIDE) as f64;
            sy += f64::from(v) * (i / SIDE) as f64;
        }
        let m = ink(image);
        (sx / m, sy / m)
    }

    /// Width and height of the box around pixels above the ink threshold.
    fn ink_box(image: &[f32]) -> (usize, usize) {
        let pixels = image.iter().enumerate().filter(|&(_, &v)| v > INK);
        let (xs, ys): (Vec<_>, Vec<_>) = pixels.map(|(i, _)| (i % SIDE, i / SIDE)).unzip();
        let span = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap() + 1;
        (span(&xs), span(&ys))
    }

    /// Least-squares slope of column on row over the ink: how far the digit leans.
    fn slant(image: &[f32]) -> f64 {
        let (cx, cy) = centroid(image);
        let (mut sxy, mut syy) = (0.0, 0.0);
        for (i, &v) in image.iter().enumerate() {
            let (dx, dy) = ((i % SIDE) as f64 - cx, (i / SIDE) as f64 - cy);
            sxy += f64::from(v) * dx * dy;
            syy += f64::from(v) * dy * dy;
        }
        sxy / syy
    }

    fn mean(values: impl Iterator<Item = f64>) -> f64 {
        let (sum, n) = values.fold((0.0, 0), |(s, n), v| (s + v, n + 1));
        sum / n as f64
    }

    /// Each digit perturbed by `p`, with one generator for the whole run.
    fn perturbed(p: Perturbation, images: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(42);
        images.iter().map(|im| p.apply(im, &mut rng)).collect()
    }

    #[test]
    fn thickness_of_long_bars_is_their_width() {
        for width in [2, 4] {
            let image: Vec<f32> = (0..PIXELS)
                .map(|i| f32::from((10..10 + width).contains(&(i % SIDE))))
                .collect();
            let t = thickness(&image);
            // The bar's two end caps add 2w to a perimeter of 2 * 28, hence the 15% margin.
            assert!(
                (t - width as f64).abs() < 0.15 * width as f64,
                "w={width}: {t}"
            );
        }
        assert_eq!(thickness(&[0.0; PIXELS]), 0.0);
    }

    #[test]
    fn thin_and_thick_change_thickness_and_ink_but_thin_keeps_ink() {
        let images = digits(200);
        let (thin, thick) = (
            perturbed(Perturbation::Thin, &images),
            perturbed(Perturbation::Thick, &images),
        );
        let t = |set: &[Vec<f32>]| mean(set.iter().map(|im| thickness(im)));
        let m = |set: &[Vec<f32>]| mean(set.iter().map(|im| ink(im)));
        let (t0, t_thin, t_thick) = (t(&images), t(&thin), t(&thick));
        println!("mean thickness: original {t0:.3}, thin {t_thin:.3}, thick {t_thick:.3}");
        assert!(t_thin < 0.85 * t0, "thin {t_thin} vs {t0}");
        assert!(t_thick > 1.15 * t0, "thick {t_thick} vs {t0}");
        let (m0, m_thin, m_thick) = (m(&images), m(&thin), m(&thick));
        println!("mean ink: original {m0:.1}, thin {m_thin:.1}, thick {m_thick:.1}");
        assert!(m_thin < 0.85 * m0 && m_thick > 1.15 * m0);
        for (k, im) in thin.iter().enumerate() {
            assert!(im.iter().any(|&v| v > INK), "thin erased digit {k}");
        }
    }

    #[test]
    fn swell_adds_ink_only_near_one_point() {
        let images = digits(200);
        let swollen = perturbed(Perturbation::Swell, &images);
        let gain = mean(images.iter().zip(&swollen).map(|(a, b)| ink(b) / ink(a)));
        println!("swell ink ratio {gain:.3}");
        assert!(gain > 1.03, "ink ratio {gain}");
        let limit = 2 * SWELL_RADIUS as usize + 2;
        for (a, b) in images.iter().zip(&swollen) {
            let diff: Vec<f32> = a
                .iter()
                .zip(b)
                .map(|(x, y)| f32::from((x - y).abs() > 1e-6))
                .collect();
            if diff.iter().any(|&d| d > 0.0) {
                let (w, h) = ink_box(&diff);
                assert!(w <= limit && h <= limit, "changed box {w}x{h}");
            }
        }
    }

    #[test]
    fn scale_shrinks_the_digit_towards_the_centre() {
        let images = digits(200);
        let scaled = perturbed(Perturbation::Scale, &images);
        let area = |im: &[f32]| {
            let (w, h) = ink_box(im);
            (w * h) as f64
        };
        let ratio = mean(images.iter().zip(&scaled).map(|(a, b)| area(b) / area(a)));
        println!("scale box area ratio {ratio:.3}");
        assert!(ratio < 0.7, "box area ratio {ratio}");
        let c = f64::from(CENTRE);
        for (a, b) in images.iter().zip(&scaled) {
            let ((ax, ay), (bx, by)) = (centroid(a), centroid(b));
            // The factor is at most 0.8, so the centroid's offset from the centre shrinks.
            let before = (ax - c).hypot(ay - c);
            let after = (bx - c).hypot(by - c);
            assert!(
                after <= 0.8 * before + 1.5,
                "centroid offset {before} -> {after}"
            );
        }
    }

    #[test]
    fn shear_changes_slant_and_keeps_rows() {
        let images = digits(200);
        let sheared = perturbed(Perturbation::Shear, &images);
        let change = mean(
            images
                .iter()
                .zip(&sheared)
                .map(|(a, b)| (slant(b) - slant(a)).abs()),
        );
        println!("shear mean |slant change| {change:.3}");
        assert!((0.3..0.65).contains(&change), "slant change {change}");
        let row_error = mean(images.iter().zip(&sheared).map(|(a, b)| {
            let rows = |im: &[f32]| im.chunks(SIDE).map(ink).collect::<Vec<_>>();
            let moved: f64 = rows(a)
                .iter()
                .zip(rows(b))
                .map(|(x, y)| (x - y).abs())
                .sum();
            moved / ink(a)
        }));
        assert!(row_error < 0.05, "row ink error {row_error}");
    }

    #[test]
    fn shift_moves_the_centroid_and_keeps_ink() {
        let images = digits(200);
        let shifted = perturbed(Perturbation::Shift, &images);
        let moved = mean(images.iter().zip(&shifted).map(|(a, b)| {
            let ((ax, ay), (bx, by)) = (centroid(a), centroid(b));
            (bx - ax).hypot(by - ay)
        }));
        let kept = mean(images.iter().zip(&shifted).map(|(a, b)| ink(b) / ink(a)));
        println!("shift mean centroid move {moved:.3}, ink ratio {kept:.3}");
        assert!((2.5..5.5).contains(&moved), "centroid moved {moved}");
        assert!(kept > 0.9, "ink ratio {kept}");
    }

    #[test]
    fn apply_all_ignores_order_and_follows_the_seed() {
        let image = &digits(1)[0];
        let forward = [
            Perturbation::Thick,
            Perturbation::Shear,
            Perturbation::Shift,
        ];
        let backward = [
            Perturbation::Shift,
            Perturbation::Shear,
            Perturbation::Thick,
        ];
        let run = |ps: &[Perturbation], seed| apply_all(ps, image, &mut Rng::new(seed));
        let a = run(&forward, 7);
        assert_eq!(a, run(&backward, 7));
        assert_eq!(a, run(&forward, 7));
        assert_ne!(a, run(&forward, 8));
        assert_ne!(&a, image);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(run(&[], 7), *image);
    }

    #[test]
    fn names_are_distinct_and_all_is_canonical() {
        let names: std::collections::HashSet<_> =
            Perturbation::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), 6);
        assert_eq!(Perturbation::ALL[0], Perturbation::Thin);
        assert_eq!(Perturbation::ALL[5], Perturbation::Shift);
    }
}
