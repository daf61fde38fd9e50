//! What an adversarial user or an unlucky machine does to a run: bad flags, two writers on one
//! folder, damaged, edited or deleted checkpoints, kill -9 at random moments, a full disk, weights
//! that fit no dataset or draw nothing.

mod common;

use common::{
    assert_clean_error, command, run, run_ok, scratch, tiny_train_args, train_losses, train_tiny,
};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn train_args(dir: &Path, epochs: &str) -> Vec<String> {
    let mut args = tiny_train_args(dir, "quad-dependent", "flex", epochs);
    args.extend(["--checkpoint-every", "2"].map(String::from));
    args
}

fn spawn(args: &[String]) -> Child {
    command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn resume(dir: &Path) -> std::process::Output {
    run(&["train", "--resume", dir.to_str().unwrap()])
}

/// Epochs listed in metrics.csv, in file order.
fn epochs(dir: &Path) -> Vec<usize> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_flags_and_files_get_one_line_and_a_failing_status() {
    let scratch_dir = scratch("bad-flags");
    let dir = scratch_dir.path();
    let out = dir.join("x").to_str().unwrap().to_string();
    // Nine digits in IDX files: too few to partition.
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend([0u8; 9 * 784]);
    std::fs::write(mnist.join("train-images-idx3-ubyte"), images).unwrap();
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 9];
    labels.extend(0..9u8);
    std::fs::write(mnist.join("train-labels-idx1-ubyte"), labels).unwrap();
    let mnist = mnist.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["sample", "run", "--n", "0", "--out", &out], "1..=1024"),
        (
            &["sample", "run", "--n", "100000", "--out", &out],
            "1..=1024",
        ),
        (&["eval", "run", "--samples", "0"], "2..=20000"),
        (
            &["data", "preview", "--n", "100000", "--out", &out],
            "1..=1024",
        ),
        (
            &["train", "--out", &out, "--widths", "2.100000.8"],
            "widths",
        ),
        (&["train", "--out", &out, "--hidden", "100000"], "1..=4096"),
        (&["train", "--out", &out, "--tc-beta", "nan"], "[0, 1e6]"),
        (
            &["train", "--out", &out, "--group-sparsity", "nan"],
            "[0, 1e6]",
        ),
        (
            &["train", "--out", &out, "--min-improvement", "nan"],
            "[0, 1e6]",
        ),
        (&["train", "--out", &out, "--lr", "inf"], "--lr"),
        (&["train", "--out", &out, "--epochs", "-1"], "1..=100000"),
        (&["experiment", "--eval-samples", "-5"], "2..=20000"),
        (&["bench", "--batch-sizes", "64,0"], "1..=4096"),
        (&["bench", "--batch-sizes", "64,,512"], "--batch-sizes"),
        (
            &["train", "--resume", &out, "--restart", "--out", &out],
            "cannot be used",
        ),
        (
            &["--mnist-dir", mnist, "data", "preview", "--out", &out],
            "9 digits",
        ),
    ];
    for (args, expect) in cases {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(if args[0] == "--mnist-dir" { 1 } else { 2 }),
            "{args:?}"
        );
        assert_clean_error(&output, expect);
    }
    assert!(!dir.join("x").exists(), "a refused command wrote something");
}

#[test]
fn a_second_writer_is_refused_and_no_epoch_is_listed_twice() {
    let scratch_dir = scratch("lock");
    let dir = scratch_dir.path().join("run");
    let mut first = spawn(&train_args(&dir, "6"));
    wait_for("the run to start", || dir.join("config.json").exists());
    let again = run(&train_args(&dir, "6")
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    // The holder wrote its pid before its config: the message names it (never "(pid )").
    assert_clean_error(
        &again,
        &format!("in use by another intervene process (pid {})", first.id()),
    );
    let resumed = resume(&dir);
    assert_clean_error(&resumed, "in use by another intervene process");
    assert!(first.wait().unwrap().success());
    assert_eq!(epochs(&dir), [0, 1, 2, 3, 4, 5]);
    // Once the first has finished the folder is free again.
    let finished = resume(&dir);
    assert!(finished.status.success());
}

#[test]
fn damaged_and_deleted_checkpoints() {
    let scratch_dir = scratch("damaged-checkpoint");
    let dir = scratch_dir.path().join("run");
    run_ok(
        &train_args(&dir, "2")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let before = train_losses(&dir);
    // Damage the last checkpoint (epoch 2 done): resume says so and redoes epoch 2 from the
    // previous one.
    let latest = dir.join("checkpoint.bin");
    let mut bytes = std::fs::read(&latest).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x04;
    std::fs::write(&latest, bytes).unwrap();
    let out = resume(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains("using the previous checkpoint"),
        "{stderr}"
    );
    assert_eq!(epochs(&dir), [0, 1]);
    assert_eq!(train_losses(&dir)[0], before[0]);

    // Both gone: an error that names --restart, and nothing is touched.
    std::fs::remove_file(dir.join("checkpoint.bin")).unwrap();
    std::fs::remove_file(dir.join("checkpoint.prev.bin")).unwrap();
    assert_clean_error(&resume(&dir), "--restart");
    assert_eq!(epochs(&dir), [0, 1]);
    let out = run_ok(&["train", "--resume", dir.to_str().unwrap(), "--restart"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("restarting"));
    assert_eq!(epochs(&dir), [0, 1]);
    assert_eq!(
        train_losses(&dir),
        before,
        "a restart retrains the same run"
    );
}

/// A copy of run folder `from` (its files, not its lock) at `to`.
fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "lock" {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// `checkpoint` with the first `key` of its optimizer record (the third section) renamed to
/// `renamed` (as long), and its checksum recomputed: a file whose CRC is valid but whose record
/// burn cannot read.
fn rename_in_optimizer_record(checkpoint: &[u8], key: &str, renamed: &str) -> Vec<u8> {
    assert_eq!(key.len(), renamed.len());
    let mut at = 8;
    for _ in 0..2 {
        at += 8 + u64::from_le_bytes(checkpoint[at..at + 8].try_into().unwrap()) as usize;
    }
    let optimizer = at + 8;
    let mut edited = checkpoint.to_vec();
    let found = edited[optimizer..]
        .windows(key.len())
        .position(|w| w == key.as_bytes())
        .expect("the optimizer record names the key");
    edited[optimizer + found..optimizer + found + key.len()].copy_from_slice(renamed.as_bytes());
    let body = edited.len() - 4;
    let crc = crc32fast::hash(&edited[..body]);
    edited[body..].copy_from_slice(&crc.to_le_bytes());
    edited
}

#[test]
fn a_latest_checkpoint_that_burn_cannot_read_or_of_the_old_format_falls_back() {
    let scratch_dir = scratch("edited-checkpoint");
    let base = scratch_dir.path().join("base");
    let args = train_args(&base, "2");
    run_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let latest = std::fs::read(base.join("checkpoint.bin")).unwrap();
    let mut old_format = b"INTVCKPT".to_vec();
    old_format.extend_from_slice(&latest[8..latest.len() - 4]);
    for (case, bytes, why) in [
        (
            "param-id",
            rename_in_optimizer_record(&latest, "param_id", "param_ie"),
            "has no parameter id",
        ),
        ("old-format", old_format, "old checkpoint format"),
    ] {
        let dir = scratch_dir.path().join(case);
        copy_run(&base, &dir);
        std::fs::write(dir.join("checkpoint.bin"), bytes).unwrap();
        let out = resume(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{case}: {stderr}"
        );
        assert!(
            stderr.contains(why) && stderr.contains("using the previous checkpoint"),
            "{case}: {stderr}"
        );
        assert_eq!(
            epochs(&dir),
            [0, 1],
            "{case}: epoch 2 is trained again, once"
        );
    }
}

#[test]
fn kill_nine_at_random_moments_always_resumes() {
    let scratch_dir = scratch("kill-nine");
    let dir = scratch_dir.path().join("run");
    let args = train_args(&dir, "4");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut started = false;
    for trial in 0..6 {
        let mut child = match started {
            false => spawn(&args),
            true => spawn(&["train", "--resume", dir.to_str().unwrap()].map(String::from)),
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(200 + rng % 2_500));
        let _ = child.kill();
        child.wait().unwrap();
        started |= dir.join("config.json").exists();
        eprintln!(
            "trial {trial}: killed at epochs {:?}",
            dir.join("metrics.csv").exists().then(|| epochs(&dir))
        );
    }
    assert!(started, "no run was created in six tries");
    run_ok(&["train", "--resume", dir.to_str().unwrap()]);
    assert_eq!(epochs(&dir), [0, 1, 2, 3]);
    assert!(train_losses(&dir).iter().all(|l| l.is_finite()));
}

#[test]
fn a_full_disk_stops_the_run_cleanly_and_resume_finishes_it() {
    let scratch_dir = scratch("full-disk");
    let dir = scratch_dir.path().join("run");
    // Files larger than the limit cannot be written: the checkpoints (not config.json or
    // metrics.csv) hit it, as on a disk that fills up mid-run.
    let limited = |args: &[String]| {
        let mut shell = std::process::Command::new("bash");
        shell
            .arg("-c")
            .arg(r#"trap "" XFSZ; ulimit -f 64; exec "$@""#)
            .arg("intervene")
            .arg(common::BINARY)
            .args(args);
        shell.output().unwrap()
    };
    let mut child = spawn(&train_args(&dir, "3"));
    wait_for("the first epoch", || {
        dir.join("metrics.csv").exists() && !epochs(&dir).is_empty()
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // (The kill may have come between the two renames of a checkpoint: either may be missing.)
    let checkpoints =
        || ["checkpoint.bin", "checkpoint.prev.bin"].map(|f| std::fs::read(dir.join(f)).ok());
    let before = checkpoints();
    let out = limited(&["train", "--resume", dir.to_str().unwrap()].map(String::from));
    // Progress lines first, then one error line. (A warning that the newest checkpoint is
    // missing, when the kill came between its renames, may quote an OS error: not an error line.)
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("error: cannot write") && errors[0].contains("is intact"),
        "{stderr}"
    );
    assert!(checkpoints() == before, "the checkpoints changed");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    run_ok(&["train", "--resume", dir.to_str().unwrap()]);
    assert_eq!(epochs(&dir), [0, 1, 2]);
}

/// A run refused before it exists (here: `--init-from` names a cm run, not a base-pooled one)
/// leaves no folder behind; exports to one file at once each succeed and say so truthfully, and
/// the file is one of theirs, whole.
#[test]
fn refused_runs_leave_nothing_and_concurrent_exports_all_succeed() {
    let scratch_dir = scratch("refused-init");
    let dir = scratch_dir.path();
    let cm = dir.join("cm");
    train_tiny(&cm, "quad-dependent", "flex", "1");
    let frozen = dir.join("frozen");
    let mut args = tiny_train_args(&frozen, "quad-dependent", "flex", "1");
    args.extend(["--method", "cm-frozen", "--init-from", cm.to_str().unwrap()].map(String::from));
    let refused = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_clean_error(&refused, "base-pooled");
    assert!(!frozen.exists(), "a refused run left its folder behind");

    let same = dir.join("same.bin");
    let exports: Vec<(Child, &str)> = ["f32", "q8", "f16", "q8", "f32", "f16"]
        .into_iter()
        .map(|precision| {
            let child = command(&[
                "export",
                cm.to_str().unwrap(),
                "--out",
                same.to_str().unwrap(),
                "--precision",
                precision,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
            (child, precision)
        })
        .collect();
    for (child, precision) in exports {
        let out = child.wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a concurrent {precision} export failed: {said}"
        );
        assert!(said.contains("wrote"), "{said}");
    }
    run_ok(&[
        "sample",
        same.to_str().unwrap(),
        "--n",
        "4",
        "--out",
        dir.join("g.png").to_str().unwrap(),
    ]);
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter()
            .all(|name| !name.to_string_lossy().ends_with(".tmp")),
        "staged files left: {left:?}"
    );
}

/// A tiny quad model trained for one epoch in `dir/run`, read back from its best weights.
fn tiny_weights(dir: &Path) -> intervene::weights::LoadedWeights {
    let run_dir = dir.join("run");
    train_tiny(&run_dir, "quad-dependent", "flex", "1");
    let best = std::fs::read(run_dir.join("best.bin")).unwrap();
    intervene::weights::decode(&best, &burn::tensor::Device::flex()).unwrap()
}

/// A weights file whose metadata names a dataset that does not fit the model, or whose concepts
/// carry names the context syntax cannot address (edited, checksum recomputed): refused in one
/// line instead of a panic or a silent misreading.
#[test]
fn weights_that_do_not_fit_their_dataset_or_name_unaddressable_concepts_are_refused() {
    let scratch_dir = scratch("other-dataset");
    let dir = scratch_dir.path();
    let loaded = tiny_weights(dir);
    for dataset in ["mnist", "scenes"] {
        let mut metadata = loaded.metadata.clone();
        metadata["dataset"] = dataset.into();
        let file = dir.join(format!("{dataset}.bin"));
        let bytes = intervene::weights::encode(&loaded.model, loaded.precision, metadata);
        std::fs::write(&file, bytes).unwrap();
        let refused = run(&["eval", file.to_str().unwrap(), "--samples", "20"]);
        assert_clean_error(&refused, &format!("dataset {dataset}, whose concepts"));
    }
    // Concept names the context syntax cannot address (`--intervene obs` would silently mean no
    // intervention): refused when the file is read.
    for name in ["a+b", "c,d", " pad", "obs", "size=1"] {
        let mut model = loaded.model.clone();
        model.config.concepts[0] = name.into();
        let file = dir.join("renamed.bin");
        let bytes = intervene::weights::encode(&model, loaded.precision, loaded.metadata.clone());
        std::fs::write(&file, bytes).unwrap();
        let out = dir.join("grid.png");
        let refused = run(&[
            "sample",
            file.to_str().unwrap(),
            "--intervene",
            "obs",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_error(&refused, "cannot be addressed");
        assert!(!out.exists(), "a refused model drew a grid");
    }
}

/// Sets every float tensor whose path contains `part` (all of them for "") to `value`.
struct SetTensors {
    part: &'static str,
    value: f32,
    path: Vec<String>,
    changed: usize,
}

impl burn::module::ModuleMapper for SetTensors {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<burn::tensor::Tensor<D>>,
    ) -> burn::module::Param<burn::tensor::Tensor<D>> {
        if !self.path.join(".").contains(self.part) {
            return param;
        }
        self.changed += 1;
        let value = self.value;
        param.map(|t| t.ones_like() * value)
    }
}

#[test]
fn weights_out_of_range_sample_with_a_warning_and_are_not_scored() {
    use burn::module::Module;
    let scratch_dir = scratch("out-of-range");
    let dir = scratch_dir.path();
    let loaded = tiny_weights(dir);
    for (part, value, said) in [
        ("running_var", -1.0, "not numbers"),
        ("", 3e38, "not numbers"),
        ("", 0.0, "one flat colour"),
    ] {
        let mut set = SetTensors {
            part,
            value,
            path: Vec::new(),
            changed: 0,
        };
        let model = loaded.model.clone().map(&mut set);
        assert!(set.changed > 0, "no tensor path contains {part}");
        let file = dir.join("out-of-range.bin");
        let bytes = intervene::weights::encode(&model, loaded.precision, loaded.metadata.clone());
        std::fs::write(&file, bytes).unwrap();
        let grid = dir.join("grid.png");
        let file = file.to_str().unwrap();
        let out = run_ok(&["sample", file, "--n", "4", "--out", grid.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().any(|l| l.starts_with("warning:")
                && l.contains(said)
                && l.contains("out of range")),
            "{stderr}"
        );
        assert!(grid.exists(), "the grid is written all the same");
        assert_clean_error(&run(&["eval", file, "--samples", "20"]), said);
        assert!(!dir.join("out-of-range.metrics.json").exists());
    }
}
