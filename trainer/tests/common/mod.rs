//! Helpers for the tests that run the `intervene` binary cargo built for them.
#![allow(dead_code, unused_imports)]

pub use intervene_e2e::{scratch, skip};
use std::path::Path;
use std::process::{Command, Output};

/// The binary cargo built for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_intervene");

/// The name of the first adapter wgpu finds (a GPU, or a software one such as lavapipe), as
/// `intervene --device wgpu` would use it.
pub fn wgpu_adapter() -> Option<String> {
    // Mesa's Vulkan drivers print an error line when this is unset (see the binary's main.rs).
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: tests set no other environment variable, and wgpu reads it only below.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    adapters.first().map(|adapter| adapter.get_info().name)
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.args(args);
    cmd
}

/// Runs `intervene args...` to completion.
pub fn run(args: &[&str]) -> Output {
    command(args).output().expect("intervene runs")
}

/// Runs and insists on success, showing stderr if not.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "intervene {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Flags for a model small enough to train in seconds on a CPU.
pub const TINY: &[&str] = &[
    "--preset",
    "quick",
    "--widths",
    "2.8.4",
    "--hidden",
    "32",
    "--per-context",
    "60",
    "--batch-size",
    "8",
    "--warmup-steps",
    "2",
    "--patience",
    "100",
];

/// `intervene train` arguments for a tiny model of `dataset` on `device`, written to `dir`.
pub fn tiny_train_args(dir: &Path, dataset: &str, device: &str, epochs: &str) -> Vec<String> {
    let fixed = [
        "train",
        "--out",
        dir.to_str().unwrap(),
        "--dataset",
        dataset,
        "--device",
        device,
        "--epochs",
        epochs,
    ];
    fixed.iter().chain(TINY).map(|s| s.to_string()).collect()
}

/// Trains a tiny model to completion.
pub fn train_tiny(dir: &Path, dataset: &str, device: &str, epochs: &str) {
    let args = tiny_train_args(dir, dataset, device, epochs);
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

/// `train_loss` per epoch from a run's metrics.csv.
pub fn train_losses(run: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// Asserts a failed run: non-zero exit, one line on stderr starting `error:`, no panic.
pub fn assert_clean_error(out: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains(expect),
        "unexpected message: {stderr}"
    );
}

/// What `intervene args... --print-config` prints.
pub fn printed_config(args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.push("--print-config");
    String::from_utf8(run_ok(&args).stdout).expect("UTF-8 settings")
}

/// Asserts that `text` holds every one of `lines`.
pub fn assert_has_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}
