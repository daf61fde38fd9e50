//! Writes each target's seed corpus into `fuzz/out/seeds/<target>/`: valid files of every kind the
//! readers accept (`scripts/fuzz.sh` runs it first).
use intervene::model::Model;
use intervene::weights::{self, Precision};
use intervene_trainer::training::checkpoint;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("out/seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let device = burn::tensor::Device::flex();
    let model = Model::new(&intervene_fuzz::tiny_config(), &device);
    // Every precision, with and without the encoder; AFL++ reads at most 1 MB of a seed, so the
    // 1.4 MB f32 file with an encoder is left out.
    for precision in [Precision::F32, Precision::F16, Precision::Q8] {
        let metadata = serde_json::json!({"dataset": "quad-dependent"});
        let name = format!("{precision:?}").to_lowercase();
        if precision != Precision::F32 {
            let bytes = weights::encode(&model, precision, metadata.clone());
            write("weights", &format!("{name}.bin"), &bytes);
        }
        let decoder = weights::encode(&model.clone().without_encoder(), precision, metadata);
        write("weights", &format!("{name}-decoder.bin"), &decoder);
    }

    let device = device.autodiff();
    let model = intervene_fuzz::checkpoint_model(&device);
    let state = checkpoint::LoopState::default();
    let bytes = checkpoint::encode(
        &state,
        &model,
        &intervene_fuzz::checkpoint_optimizer(&device),
    )
    .unwrap();
    write("checkpoint", "fresh.bin", &bytes);

    for (i, link) in [
        "?model=quad-cm&do=quad1,quad2&seed=7&shift=0.5,-1,0,2&grid=4",
        "model=%2Fmy%2Fweights.bin&do=&grid=8",
        "?do=quad3+quad4&seed=18446744073709551615&bench=1",
    ]
    .iter()
    .enumerate()
    {
        write("share_link", &format!("link{i}.txt"), link.as_bytes());
    }

    // 100 digits (the fewest accepted), images file then labels file.
    let count = 100u32;
    let mut images = vec![0, 0, 8, 3];
    for v in [count, 28, 28] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..count as usize * 784).map(|i| (i * 7 % 256) as u8));
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&count.to_be_bytes());
    labels.extend((0..count).map(|i| (i % 10) as u8));
    let mut input = (images.len() as u32).to_le_bytes().to_vec();
    input.extend(images);
    input.extend(labels);
    write("mnist_idx", "hundred.idx", &input);

    // The dataset readers' fixtures: every folder layout packed whole, and each file format and
    // image given to `edit` on its own (its first byte picks the model's shape: see
    // edit_image.rs).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/datasets");
    for layout in ["plain", "3dident", "mnist_csv", "quad_npz"] {
        let packed = intervene_fuzz::pack(&fixtures.join(layout));
        write("image_folder", &format!("{layout}.pack"), &packed);
    }
    let file = |name: &str| std::fs::read(fixtures.join(name)).unwrap();
    write(
        "npz",
        "holdout.npz",
        &file("quad_npz/holdout/quad1_size_holdout/dataset.npz"),
    );
    write(
        "csv",
        "holdout.csv",
        &file("mnist_csv/holdout_normalized_mnist_thin.csv"),
    );
    for (pick, name, image) in [
        (0u8, "grey-model.png", "plain/obs/0.png"),
        (1, "colour.jpg", "plain/a+b/nested/3.jpg"),
        (
            2,
            "scene.png",
            "3dident/3DIdent_Concepts/obs/images/000000.png",
        ),
    ] {
        let mut input = vec![pick];
        input.extend(file(image));
        write("edit_image", name, &input);
    }
}
