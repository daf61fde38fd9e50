//! Fuzz target: the checkpoint reader, restoring into a fresh tiny model and optimizer.
use intervene_trainer::training::{adam, checkpoint};
use std::panic::AssertUnwindSafe;

fn main() {
    let device = burn::tensor::Device::flex().autodiff();
    let model = intervene_fuzz::checkpoint_model(&device);
    // Each input restores into clones; a panic fails the run, so nothing is observed half-done.
    let fresh = AssertUnwindSafe((model, adam::for_device(&device)));
    afl::fuzz!(|bytes: &[u8]| {
        let (model, optimizer) = &*fresh;
        for input in [bytes.to_vec(), intervene_fuzz::with_valid_checksum(bytes)] {
            let _ = checkpoint::decode(&input, model.clone(), optimizer.clone());
        }
    });
}
