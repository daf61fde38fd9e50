//! `intervene import-torch` against the paper's reference code: `tests/data/torch-reference` holds
//! one of its checkpoints and what it computed from it (written by
//! `scripts/make-torch-fixture.py`); the imported model must compute the same.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_clean_error, run, run_ok, scratch};
use intervene::context::Context;
use intervene::data::DatasetKind;
use intervene::weights;
use intervene_trainer::import_torch::{Request, import};
use std::path::{Path, PathBuf};

/// Largest difference allowed between the reference's values and ours (pixels in [0, 1]).
const TOLERANCE: f32 = 1e-4;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/torch-reference")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One of the reference's arrays, as written: little-endian f32, row-major.
fn array(name: &str) -> (Vec<usize>, Vec<f32>) {
    let shape: Vec<usize> = serde_json::from_value(manifest()["arrays"][name].clone()).unwrap();
    let bytes = std::fs::read(fixture().join(format!("{name}.f32"))).unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
    (shape, values)
}

/// A `[B, K*w]` array of the reference's, its concept blocks moved to our order (`ours` names our
/// concepts; the manifest, the reference's).
fn in_our_order(name: &str, ours: &[String]) -> (Vec<usize>, Vec<f32>) {
    let (shape, values) = array(name);
    let theirs: Vec<String> = serde_json::from_value(manifest()["concepts"].clone()).unwrap();
    let width = shape[1] / theirs.len();
    let mut moved = vec![0f32; values.len()];
    for row in 0..shape[0] {
        for (block, concept) in theirs.iter().enumerate() {
            let to = ours.iter().position(|c| c == concept).unwrap();
            for u in 0..width {
                moved[row * shape[1] + to * width + u] = values[row * shape[1] + block * width + u];
            }
        }
    }
    (shape, moved)
}

fn max_difference(ours: Vec<f32>, theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn imported(dir: &Path) -> PathBuf {
    let out = dir.join("reference.bin");
    let request = Request {
        checkpoint: &fixture().join("vae.pth"),
        dataset: DatasetKind::Mnist,
        method: intervene::config::Method::Cm,
        architecture: None,
        concepts: None,
    };
    import(&request, &out).unwrap();
    out
}

/// The encoder's means and variances and the decoded images of `obs`, every single
/// intervention and two composed pairs match the reference's, concepts matched by name.
#[test]
fn an_imported_checkpoint_computes_the_references_images() {
    let device = Device::flex();
    let scratch_dir = scratch("import-same");
    let file = imported(scratch_dir.path());
    let model = weights::decode(&std::fs::read(file).unwrap(), &device)
        .unwrap()
        .model;
    let (shape, images) = array("images");
    // One channel: the reference's [B, 1, H, W] is already channels-last.
    assert_eq!(shape[1], 1);
    let (mu, logvar) = model
        .encoder
        .as_ref()
        .unwrap()
        .forward(model.images(images, &device));
    let ours_concepts = model.config.concepts.clone();
    for (name, ours) in [("mu", mu), ("logvar", logvar)] {
        let theirs = in_our_order(name, &ours_concepts).1;
        let diff = max_difference(ours.into_data().try_to_vec::<f32>().unwrap(), &theirs);
        eprintln!("{name}: largest difference {diff:.2e}");
        assert!(diff <= TOLERANCE, "{name} differs by {diff}");
    }
    let (shape, z) = in_our_order("z", &ours_concepts);
    let z = Tensor::<2>::from_data(TensorData::new(z, [shape[0], shape[1]]), &device);
    let mut contexts = 0;
    for name in manifest()["arrays"].as_object().unwrap().keys() {
        let Some(labels) = name.strip_prefix("decoded-") else {
            continue;
        };
        let indices: Vec<usize> = labels
            .split('+')
            .filter(|l| *l != "obs")
            .map(|l| ours_concepts.iter().position(|c| c == l).unwrap())
            .collect();
        let context = Context::from_indices(indices);
        let ours = model
            .generate(z.clone(), context)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let diff = max_difference(ours, &array(name).1);
        eprintln!("context {labels}: largest pixel difference {diff:.2e}");
        assert!(
            diff <= TOLERANCE,
            "context {labels}: pixels differ by {diff}"
        );
        contexts += 1;
    }
    assert_eq!(
        contexts,
        1 + 6 + 2,
        "obs, six single interventions, two pairs"
    );
}

/// The imported file is an ordinary weights file: `sample` and `eval` take it.
#[test]
fn sample_and_eval_take_an_imported_checkpoint() {
    let scratch_dir = scratch("import-cli");
    let dir = scratch_dir.path();
    let out = dir.join("reference.bin");
    let checkpoint = fixture().join("vae.pth");
    run_ok(&[
        "import-torch",
        checkpoint.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--out",
        out.to_str().unwrap(),
    ]);
    let grid = dir.join("thin+shear.png");
    run_ok(&[
        "sample",
        out.to_str().unwrap(),
        "--intervene",
        "thin+shear",
        "--n",
        "4",
        "--device",
        "flex",
        "--out",
        grid.to_str().unwrap(),
    ]);
    assert!(grid.is_file());
    let scored = run_ok(&[
        "eval",
        out.to_str().unwrap(),
        "--samples",
        "20",
        "--device",
        "flex",
    ]);
    let text = String::from_utf8_lossy(&scored.stdout);
    assert!(text.contains("Compo"), "eval printed: {text}");
}

fn import_cli(checkpoint: &Path, dataset: &str, out: &Path) -> std::process::Output {
    run(&[
        "import-torch",
        checkpoint.to_str().unwrap(),
        "--dataset",
        dataset,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// A damaged, cut or foreign file, or a checkpoint of another model, is refused in one line
/// and writes nothing.
#[test]
fn broken_and_foreign_checkpoints_are_one_line_errors() {
    let scratch_dir = scratch("import-broken");
    let dir = scratch_dir.path();
    let out = dir.join("never.bin");
    let bytes = std::fs::read(fixture().join("vae.pth")).unwrap();
    let broken = dir.join("broken.pth");

    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_error(
        &import_cli(&broken, "mnist", &out),
        "not a PyTorch checkpoint",
    );

    let mut corrupt = bytes.clone();
    let middle = corrupt.len() / 2;
    for b in &mut corrupt[middle..middle + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(&broken, &corrupt).unwrap();
    assert_clean_error(&import_cli(&broken, "mnist", &out), "cannot read");

    std::fs::write(&broken, b"not a checkpoint\n").unwrap();
    assert_clean_error(
        &import_cli(&broken, "mnist", &out),
        "not a PyTorch checkpoint",
    );

    // A bare state dict is read as one: this one holds one tensor, and the first it lacks is
    // named.
    assert_clean_error(
        &import_cli(&fixture().join("bare-partial.pth"), "mnist", &out),
        "the checkpoint lacks ivn_eps.obs_weight",
    );

    // A conv3 checkpoint of six concepts is not a model of quad's six concepts at 64 px.
    let checkpoint = fixture().join("vae.pth");
    assert_clean_error(
        &import_cli(&checkpoint, "quad-dependent", &out),
        "encoder.0.weight has shape [32, 1, 4, 4]; a simple64bn model",
    );
    let wrong_arch = run(&[
        "import-torch",
        checkpoint.to_str().unwrap(),
        "--dataset",
        "mnist",
        "--arch",
        "simple64bn",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(
        &wrong_arch,
        "--arch simple64bn does not fit --dataset mnist",
    );
    assert!(!out.exists(), "a refused import wrote {}", out.display());
}
