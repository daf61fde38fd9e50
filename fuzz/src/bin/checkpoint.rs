//! Fuzz target: the checkpoint reader, restoring into a fresh tiny model and optimizer.
use intervene_trainer::training::checkpoint;
use std::panic::AssertUnwindSafe;

fn main() {
    let device = burn::tensor::Device::flex().autodiff();
    // The model is restored on the plain CPU device; the reading is the same on every device, but
    // on the autodiff one burn keeps about 32 KB of every load (measured over 2,500 loads with no
    // training step between), so after 140,000 runs in one process AFL++ saw an out-of-memory
    // abort.
    let model = intervene_fuzz::checkpoint_model(&burn::tensor::Device::flex());
    // Each input restores into clones; a panic fails the run, so nothing is observed half-done.
    let fresh = AssertUnwindSafe((model, intervene_fuzz::checkpoint_optimizer(&device)));
    afl::fuzz!(|bytes: &[u8]| {
        let (model, optimizer) = &*fresh;
        for input in [bytes.to_vec(), intervene_fuzz::with_valid_checksum(bytes)] {
            let _ = checkpoint::decode(&input, model.clone(), optimizer.clone());
        }
    });
}
