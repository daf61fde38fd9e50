//! Fuzz target: an MNIST CSV as `--data` reads the paper's MNIST datasets (rows counted, then
//! every row decoded at 28 px as training would).
use intervene_trainer::data::readers::read_file;

fn main() {
    let path = std::env::temp_dir().join(format!("intervene-fuzz-{}.csv", std::process::id()));
    afl::fuzz!(|bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let _ = read_file(&path, 28);
    });
}
