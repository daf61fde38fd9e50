//! `intervene experiment`: tables, plots, skipping finished runs, runs keyed by their settings,
//! settings files, sweeps, and the emitted Slurm scripts.

mod common;

use common::{assert_clean_error, assert_has_lines, printed_config, run, run_ok, scratch};
use std::path::{Path, PathBuf};

fn tiny_experiment(root: &Path, methods: &str) -> String {
    tiny_experiment_with(root, methods, &[])
}

/// The tiny experiment with `extra` flags; its stderr.
fn tiny_experiment_with(root: &Path, methods: &str, extra: &[&str]) -> String {
    let out = run_ok(
        &tiny_args(root, methods, extra)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `intervene experiment` arguments of the tiny experiment, `extra` flags last.
fn tiny_args(root: &Path, methods: &str, extra: &[&str]) -> Vec<String> {
    let runs = root.join("runs");
    let results = root.join("results");
    let args = [
        "experiment",
        "--budget",
        "quick",
        "--seeds",
        "0",
        "--methods",
        methods,
        "--device",
        "flex",
        "--epochs",
        "1",
        "--per-context",
        "100",
        "--eval-samples",
        "24",
        "--runs",
        runs.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ];
    args.iter().chain(extra).map(|a| a.to_string()).collect()
}

/// The settings-keyed folders under `<runs>/quad-dependent`.
fn settings_folders(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("runs/quad-dependent"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn experiment_writes_tables_and_plots_and_skips_finished_runs() {
    let scratch_dir = scratch("experiment");
    let root = scratch_dir.path();
    let first = tiny_experiment(root, "base-pooled,cm-frozen,cm");
    assert!(first.contains("training cm-frozen"), "{first}");
    let results = root.join("results/quad-dependent");
    let table = std::fs::read_to_string(results.join("table.md")).unwrap();
    for label in [
        "CM (end-to-end)",
        "CM (frozen)",
        "base pooled",
        "quad1+quad2",
    ] {
        assert!(table.contains(label), "table.md lacks {label}:\n{table}");
    }
    let csv = std::fs::read_to_string(results.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and three methods:\n{csv}");
    assert!(
        std::fs::read_to_string(results.join("breakdown.csv"))
            .unwrap()
            .contains("cm,0,pair,quad1+quad2,")
    );
    for plot in [
        "samples-cm.png",
        "samples-cm.svg",
        "reconstructions-cm.png",
        "curves-cm.svg",
        "graph-cm.svg",
        "samples-base-pooled.png",
    ] {
        assert!(results.join("plots").join(plot).exists(), "{plot} missing");
    }

    // An interrupted experiment: one run lost its evaluation. Rerunning trains nothing.
    // --per-context and --epochs differ from the budget's: the runs are keyed by them.
    let keyed = settings_folders(root);
    assert_eq!(keyed.len(), 1, "{keyed:?}");
    let name = keyed[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("quick-") && name.len() == 14, "{name}");
    let cm_run = keyed[0].join("seed0/cm");
    let checkpoint_before = std::fs::metadata(cm_run.join("checkpoint.bin"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::remove_file(cm_run.join("metrics.json")).unwrap();
    let second = tiny_experiment(root, "base-pooled,cm-frozen,cm");
    assert!(
        !second.contains("training "),
        "finished runs were retrained:\n{second}"
    );
    assert!(
        cm_run.join("metrics.json").exists(),
        "the missing evaluation was redone"
    );
    let checkpoint_after = std::fs::metadata(cm_run.join("checkpoint.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(checkpoint_before, checkpoint_after);

    // Other BatchNorm statistics re-score the runs without training them, and the table and
    // the image plots say which statistics they show.
    let third = tiny_experiment_with(root, "cm", &["--norm-statistics", "recomputed"]);
    assert!(!third.contains("training "), "{third}");
    let scores = std::fs::read_to_string(cm_run.join("metrics.json")).unwrap();
    assert!(
        scores.contains("\"norm_statistics\": \"recomputed\""),
        "{scores}"
    );
    let table = std::fs::read_to_string(results.join("table.md")).unwrap();
    assert!(
        table.contains("statistics recomputed for each context"),
        "{table}"
    );
    for plot in ["samples-cm.svg", "counterfactuals-cm.svg"] {
        let svg = std::fs::read_to_string(results.join("plots").join(plot)).unwrap();
        assert!(svg.contains("(BatchNorm statistics recomputed)"), "{plot}");
    }
}

/// A rerun with another setting trains new runs in their own folder and reports them; the same
/// settings again, from a settings file this time, train nothing; a folder whose settings were
/// changed behind the experiment's back is refused, naming the setting.
#[test]
fn runs_are_keyed_by_their_settings() {
    let scratch_dir = scratch("experiment-keyed");
    let root = scratch_dir.path();
    tiny_experiment(root, "cm");
    let table = |root: &Path| {
        std::fs::read_to_string(root.join("results/quad-dependent/table.csv")).unwrap()
    };
    let first_table = table(root);

    let second = tiny_experiment_with(root, "cm", &["--beta", "2"]);
    assert!(
        second.contains("training cm"),
        "beta 2 trained nothing:\n{second}"
    );
    let folders = settings_folders(root);
    assert_eq!(folders.len(), 2, "{folders:?}");
    assert_ne!(
        table(root),
        first_table,
        "the table still reports the beta 1 runs"
    );
    let beta_two = folders
        .iter()
        .map(|f| f.join("seed0/cm/config.json"))
        .find(|c| {
            std::fs::read_to_string(c)
                .unwrap()
                .contains("\"beta\": 2.0")
        })
        .expect("a run trained with beta 2");

    let file = root.join("beta2.toml");
    std::fs::write(&file, "[train]\nbeta = 2.0\n").unwrap();
    let again = tiny_experiment_with(root, "cm", &["--config", file.to_str().unwrap()]);
    assert!(
        !again.contains("training "),
        "the same settings retrained:\n{again}"
    );

    let text = std::fs::read_to_string(&beta_two).unwrap();
    std::fs::write(&beta_two, text.replace("\"beta\": 2.0", "\"beta\": 3.0")).unwrap();
    let args = tiny_args(root, "cm", &["--beta", "2", "--no-report"]);
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(stderr.contains("beta: 3.0 there, 2.0 here"), "{stderr}");
}

#[test]
fn a_sweep_writes_its_table_and_plot() {
    let scratch_dir = scratch("experiment-sweep");
    let root = scratch_dir.path();
    let log = tiny_experiment_with(root, "cm", &["--sweep", "beta=0.5,2"]);
    assert!(
        log.contains("at beta=0.5") && log.contains("at beta=2"),
        "{log}"
    );
    let results = root.join("results/quad-dependent/sweep-beta");
    let table = std::fs::read_to_string(results.join("table.md")).unwrap();
    assert!(
        table.contains("| beta | method |") && table.contains("| 0.5 | CM (end-to-end) |"),
        "{table}"
    );
    let csv = std::fs::read_to_string(results.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("beta,method,seeds,concept_mean"), "{csv}");
    let plot = std::fs::read_to_string(results.join("plot.svg")).unwrap();
    assert!(
        plot.contains("Compo") && plot.contains("0.5"),
        "plot lacks its labels"
    );
    assert_eq!(settings_folders(root).len(), 2, "one folder per beta");
}

#[test]
fn flags_override_a_settings_file_and_print_config_reads_back() {
    let scratch_dir = scratch("experiment-config");
    let dir = scratch_dir.path();
    let file = dir.join("e.toml");
    std::fs::write(
        &file,
        "budget = \"quick\"\nseeds = [3, 4]\nmethods = [\"cm\"]\nruns = \"r\"\n[train]\nbeta = 2.0\nmax_epochs = 4\n",
    )
    .unwrap();
    let text = printed_config(&[
        "experiment",
        "--config",
        file.to_str().unwrap(),
        "--beta",
        "0.5",
    ]);
    assert_has_lines(
        &text,
        &[
            "seeds = [3, 4]",
            "beta = 0.5",
            "max_epochs = 4",
            "image_size = 32",
        ],
    );
    // Relative paths in a file are the file's folder's.
    assert!(
        text.contains(&format!("runs = \"{}", dir.join("r").display())),
        "{text}"
    );
    // What it printed is a settings file that resolves to the same.
    let again = dir.join("printed.toml");
    std::fs::write(&again, &text).unwrap();
    let reprinted = run_ok(&[
        "experiment",
        "--config",
        again.to_str().unwrap(),
        "--print-config",
    ]);
    assert_eq!(String::from_utf8(reprinted.stdout).unwrap(), text);

    std::fs::write(&file, "[train]\nbeat = 2.0\n").unwrap();
    let out = run(&[
        "experiment",
        "--config",
        file.to_str().unwrap(),
        "--print-config",
    ]);
    assert_clean_error(&out, "e.toml:2");
}

#[test]
fn emitted_slurm_jobs_forward_every_setting_and_wait_through_slurm() {
    let scratch_dir = scratch("slurm");
    let dir = scratch_dir.path();
    run_ok(&[
        "experiment",
        "--budget",
        "paper",
        "--seeds",
        "0,1,2",
        "--beta",
        "2",
        "--slurm-gpus",
        "0",
        "--slurm-cpus",
        "4",
        "--slurm-partition",
        "short",
        "--sbatch-arg=--qos=low",
        "--emit-slurm",
        dir.to_str().unwrap(),
    ]);
    for script in ["task.sbatch", "collect.sbatch", "submit.sh"] {
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(dir.join(script))
            .status()
            .unwrap();
        assert!(status.success(), "{script} does not parse");
    }
    let task = std::fs::read_to_string(dir.join("task.sbatch")).unwrap();
    for line in [
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --partition=short",
        "#SBATCH --qos=low",
    ] {
        assert!(task.contains(line), "{line} missing:\n{task}");
    }
    assert!(
        !task.contains("--gres"),
        "a CPU job asks for no GPU:\n{task}"
    );
    assert!(!task.contains("sleep"), "no task polls:\n{task}");
    let binary = std::path::absolute(common::BINARY).unwrap();
    assert!(
        task.contains(&format!(
            "'{}' experiment --config '{}'",
            binary.display(),
            dir.join("experiment.toml").display()
        )),
        "{task}"
    );

    // 7 methods x 3 seeds: base-pooled's 3 first, each dependent method's 3 after them task
    // for task, the other 12 on their own.
    let submit = std::fs::read_to_string(dir.join("submit.sh")).unwrap();
    let arrays: Vec<&str> = submit
        .lines()
        .filter(|l| l.contains("sbatch --parsable"))
        .collect();
    assert_eq!(arrays.len(), 4, "{submit}");
    assert!(
        arrays[0].starts_with("base_pooled=") && arrays[0].ends_with("task.sbatch 0 7 14)"),
        "{submit}"
    );
    for dependent in &arrays[1..3] {
        assert!(
            dependent.contains("--array=0-2 --dependency=aftercorr:$base_pooled"),
            "{submit}"
        );
    }
    assert!(arrays[3].contains("--array=0-11 task.sbatch"), "{submit}");
    assert!(submit.contains("--dependency=afterok:") && submit.contains("collect.sbatch"));

    // The settings travel in the file, read back as the same plan on the CPU.
    let text = printed_config(&[
        "experiment",
        "--config",
        dir.join("experiment.toml").to_str().unwrap(),
    ]);
    assert_has_lines(
        &text,
        &[
            "beta = 2.0",
            "device = \"flex\"",
            "seeds = [0, 1, 2]",
            "# 20: ",
        ],
    );
}
