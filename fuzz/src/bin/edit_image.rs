//! Fuzz target: an image given to `intervene edit`, read as the model's input (its format guessed
//! from its bytes, resized, made grey or refused when grey for a colour model). The input's first
//! byte picks the model's shape.
use intervene::config::ImageShape;
use intervene_trainer::data::readers::{self, read_image};

fn main() {
    readers::limit_image_pixels(intervene_fuzz::MAX_IMAGE_PIXELS);
    let path = std::env::temp_dir().join(format!("intervene-fuzz-{}.img", std::process::id()));
    afl::fuzz!(|bytes: &[u8]| {
        let Some((&pick, file)) = bytes.split_first() else {
            return;
        };
        let shape = match pick % 3 {
            0 => ImageShape {
                channels: 1,
                size: 28,
            },
            1 => ImageShape {
                channels: 3,
                size: 32,
            },
            _ => ImageShape {
                channels: 3,
                size: 64,
            },
        };
        std::fs::write(&path, file).unwrap();
        if let Ok(image) = read_image(&path, shape) {
            assert_eq!(image.len(), shape.numel());
            assert!(image.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    });
}
