//! Fuzz target: the weights-file reader (`intervene::weights::decode`).
fn main() {
    let device = burn::tensor::Device::flex();
    afl::fuzz!(|bytes: &[u8]| {
        let _ = intervene::weights::decode(bytes, &device);
        let _ = intervene::weights::decode(&intervene_fuzz::with_valid_checksum(bytes), &device);
    });
}
