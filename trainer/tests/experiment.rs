//! `intervene experiment`: tables, plots, skipping finished runs, and the emitted Slurm scripts.

mod common;

use common::{run_ok, scratch};
use std::path::Path;

fn tiny_experiment(root: &Path, methods: &str) -> String {
    let out = run_ok(&[
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
        root.join("runs").to_str().unwrap(),
        "--results",
        root.join("results").to_str().unwrap(),
    ]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn experiment_writes_tables_and_plots_and_skips_finished_runs() {
    let root = scratch("experiment");
    let first = tiny_experiment(&root, "base-pooled,cm-frozen,cm");
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
    let cm_run = root.join("runs/quad-dependent/quick/seed0/cm");
    let checkpoint_before = std::fs::metadata(cm_run.join("checkpoint.bin"))
        .unwrap()
        .modified()
        .unwrap();
    std::fs::remove_file(cm_run.join("metrics.json")).unwrap();
    let second = tiny_experiment(&root, "base-pooled,cm-frozen,cm");
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
}

#[test]
fn emitted_slurm_scripts_are_valid_bash_with_one_task_per_method_and_seed() {
    let dir = scratch("slurm");
    run_ok(&[
        "experiment",
        "--budget",
        "paper",
        "--seeds",
        "0,1,2",
        "--emit-slurm",
        dir.to_str().unwrap(),
    ]);
    for script in ["experiment.sbatch", "collect.sbatch", "submit.sh"] {
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(dir.join(script))
            .status()
            .unwrap();
        assert!(status.success(), "{script} does not parse");
    }
    let array = std::fs::read_to_string(dir.join("experiment.sbatch")).unwrap();
    assert!(
        array.contains("#SBATCH --array=0-20"),
        "7 methods x 3 seeds:\n{array}"
    );
    let methods_line = array.lines().find(|l| l.starts_with("METHODS=(")).unwrap();
    assert_eq!(methods_line.split_whitespace().count(), 21);
    assert_eq!(methods_line.matches("cm-finetune").count(), 3);
}
