//! Fuzz target: the readers of datasets on disk (`--data`). The input's first byte picks the
//! format (PNG or JPEG image, MNIST CSV, npz archive); the rest is the file, written to a
//! scratch folder and read as `intervene train --data` would read it.
use intervene_trainer::data::readers::read_file;

fn main() {
    let dir = std::env::temp_dir().join(format!("intervene-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    afl::fuzz!(|bytes: &[u8]| {
        let Some((&format, file)) = bytes.split_first() else {
            return;
        };
        let (name, size) = match format % 4 {
            0 => ("input.png", 32),
            1 => ("input.jpg", 28),
            2 => ("input.csv", 28),
            _ => ("input.npz", 64),
        };
        let path = dir.join(name);
        std::fs::write(&path, file).unwrap();
        let _ = read_file(&path, size);
    });
}
