//! Fuzz target: a dataset folder given to `--data`, in any layout it may be read as (image
//! folders, the paper's MNIST CSVs, quad npz archives, the 3DIdent download). The input packs
//! the folder's files (`intervene_fuzz::unpack`); each run opens it, decodes it into a fresh
//! cache as training would, and renders an image of every context and split it has.
use intervene::context::Context;
use intervene::data::Split;
use intervene::rng::Rng;
use intervene_trainer::data::folder::FolderDataset;
use intervene_trainer::data::readers;

fn main() {
    readers::limit_image_pixels(intervene_fuzz::MAX_IMAGE_PIXELS);
    let scratch = std::env::temp_dir().join(format!("intervene-fuzz-{}", std::process::id()));
    let (root, cache) = (scratch.join("data"), scratch.join("cache"));
    afl::fuzz!(|bytes: &[u8]| {
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&root).unwrap();
        intervene_fuzz::unpack(bytes, &root);
        let Ok(dataset) = FolderDataset::open_with_cache(&root, &cache) else {
            return;
        };
        let dataset: &dyn intervene::data::Dataset = &dataset;
        let shape = dataset.native_shape();
        if dataset.prepare(shape.size).is_err() {
            return;
        }
        let concepts = dataset.concepts();
        let contexts = std::iter::once(Context::OBS)
            .chain((0..concepts.len()).map(Context::single))
            .chain(dataset.composed_contexts());
        let mut rng = Rng::new(7);
        for context in contexts {
            for split in [Split::Training, Split::HeldOut] {
                if dataset.available(context, split).is_some_and(|n| n > 0) {
                    let images = dataset
                        .draw(context, 2, split, &mut rng)
                        .render(.., shape.size);
                    assert_eq!(images.len(), 2 * shape.numel());
                }
            }
        }
    });
}
