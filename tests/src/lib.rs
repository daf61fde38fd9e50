//! Helpers for the end-to-end tests: find the built `intervene` binary, run it, make scratch
//! folders. The binary is built by the test command (`scripts/test.sh`) before the tests run.

pub mod static_server;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>/intervene`, next to this test executable's `deps` folder, unless
/// `INTERVENE_BIN` names another.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("INTERVENE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("intervene");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build --release --bin intervene`, as scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(binary());
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

/// A fresh empty folder under the system temp dir, in this test process's own
/// `intervene-e2e-<pid>` folder. Tests keep their folders (a failure can be inspected), so the
/// first call also removes the folders of earlier test processes that have exited.
pub fn scratch(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_folders_of_exited_runs);
    let dir = std::env::temp_dir()
        .join(format!("intervene-e2e-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `intervene-e2e-...-<pid>` folders whose process is gone (Linux: no `/proc/<pid>`).
fn remove_folders_of_exited_runs() {
    let proc = Path::new("/proc");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    if !proc.join("self").exists() {
        return;
    }
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("intervene-e2e-")
            .and_then(|rest| rest.rsplit('-').next())
            .filter(|pid| pid.parse::<u32>().is_ok())
        else {
            continue;
        };
        if !proc.join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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
