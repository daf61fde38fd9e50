//! Fuzz target: an npz archive as `--data` reads the paper's quad datasets (its `images` array's
//! header checked, then every image decoded at 64 px as training would).
use intervene_trainer::data::readers::read_file;

fn main() {
    let path = std::env::temp_dir().join(format!("intervene-fuzz-{}.npz", std::process::id()));
    afl::fuzz!(|bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        let _ = read_file(&path, 64);
    });
}
