//! Fuzz target: the MNIST IDX reader. The input's first four bytes say where the images file
//! ends and the labels file begins.
use intervene::data::mnist::Digits;

fn main() {
    afl::fuzz!(|bytes: &[u8]| {
        let Some((split, rest)) = bytes.split_first_chunk::<4>() else {
            return;
        };
        let at = (u32::from_le_bytes(*split) as usize).min(rest.len());
        let (images, labels) = rest.split_at(at);
        if let Ok(digits) = Digits::from_idx(images, labels, 7) {
            let _ = digits.image(digits.held_out()[0] as usize);
        }
    });
}
