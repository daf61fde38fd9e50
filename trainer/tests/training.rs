//! Training end to end on both devices, and kill -9 followed by --resume.

mod common;

use common::{command, run_ok, scratch, skip, tiny_train_args, train_losses, train_tiny};
use std::time::{Duration, Instant};

fn loss_goes_down_on(device: &str) {
    let scratch_dir = scratch(&format!("train-{device}"));
    let dir = scratch_dir.path().join("run");
    train_tiny(&dir, "quad-dependent", device, "3");
    let losses = train_losses(&dir);
    assert_eq!(losses.len(), 3, "one metrics row per epoch");
    assert!(
        losses[2] < losses[0],
        "{device}: loss did not go down: {losses:?}"
    );
    for file in ["config.json", "metrics.csv", "best.bin", "checkpoint.bin"] {
        assert!(
            dir.join(file).exists(),
            "{file} missing from the run folder"
        );
    }
}

#[test]
fn training_lowers_the_loss_on_flex() {
    loss_goes_down_on("flex");
}

#[test]
fn training_lowers_the_loss_on_wgpu() {
    match common::wgpu_adapter() {
        Some(_) => loss_goes_down_on("wgpu"),
        None => skip("wgpu finds no GPU adapter (install mesa-vulkan-drivers for lavapipe)"),
    }
}

/// burn's backends each have their own random generator; the model's weights are drawn on the
/// CPU, so a seed names one model on every device and runs on both start from it.
#[test]
fn a_seed_gives_the_same_initial_weights_on_wgpu_and_flex() {
    use burn::module::Module;
    use intervene::config::Method;
    use intervene::data::DatasetKind;
    use intervene::weights::{Precision, encode};
    use intervene_trainer::device::DeviceChoice;
    use intervene_trainer::training::Learner;
    use intervene_trainer::training::config::{Preset, TrainConfig};
    if common::wgpu_adapter().is_none() {
        return skip("wgpu finds no GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    }
    let mut config =
        TrainConfig::preset(Preset::Quick, DatasetKind::QuadDependent, Method::Cm).unwrap();
    config.image_size = 32;
    config.seed = 3;
    let weights = |choice: DeviceChoice| {
        let device = choice.resolve().device.autodiff();
        let learner = Learner::new(config.clone(), device).unwrap();
        encode(
            &learner.model.valid(),
            Precision::F32,
            serde_json::Value::Null,
        )
    };
    assert!(
        weights(DeviceChoice::Wgpu) == weights(DeviceChoice::Flex),
        "the same seed drew different weights on wgpu and flex"
    );
}

#[test]
fn kill_nine_then_resume_continues_from_the_checkpoint() {
    let scratch_dir = scratch("resume");
    let dir = scratch_dir.path().join("run");
    let args = tiny_train_args(&dir, "quad-dependent", "flex", "8");
    let mut child = command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for two finished epochs, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(300);
    while train_losses_or_empty(&dir).len() < 2 {
        assert!(Instant::now() < deadline, "training made no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "training ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let before = train_losses(&dir);
    assert!(before.len() < 8, "the run finished before the kill");

    let out = run_ok(&["train", "--resume", dir.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resuming"),
        "resume did not load the checkpoint: {stderr}"
    );
    assert!(
        !stderr.contains("from epoch 1 batch 0"),
        "resume restarted from scratch: {stderr}"
    );
    let after = train_losses(&dir);
    assert_eq!(after.len(), 8, "every epoch exactly once after resuming");
    assert_eq!(
        after[..2],
        before[..2],
        "epochs finished before the kill were kept, not redone"
    );
}

fn train_losses_or_empty(dir: &std::path::Path) -> Vec<f64> {
    if dir.join("metrics.csv").exists() {
        train_losses(dir)
    } else {
        Vec::new()
    }
}
