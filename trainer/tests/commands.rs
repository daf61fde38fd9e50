//! The other commands end to end, and the errors a user sees for bad input.

mod common;

use common::{
    assert_clean_error, assert_has_lines, printed_config, run, run_ok, scratch, train_tiny,
};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One tiny trained run shared by the tests of this file. It outlives every test, so it lives in
/// cargo's folder for integration tests' files and is trained afresh by each test process.
fn trained() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("commands-run");
        let _ = std::fs::remove_dir_all(&dir);
        train_tiny(&dir, "quad-dependent", "flex", "1");
        dir
    })
}

/// Exports the shared run to `file` with extra flags.
fn export_trained(file: &Path, extra: &[&str]) {
    let mut args = vec![
        "export",
        trained().to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
}

/// Runs `eval` on flex, with `extra` flags, and reads the metrics file it writes.
fn evaluate(model: &Path, samples: &str, written: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval",
        model.to_str().unwrap(),
        "--samples",
        samples,
        "--device",
        "flex",
    ];
    args.extend_from_slice(extra);
    run_ok(&args);
    serde_json::from_slice(&std::fs::read(written).unwrap()).unwrap()
}

/// Samples 4 images of `model` with the interventions `intervene` into the PNG `out`.
fn sample_grid(model: &Path, intervene: &str, out: &Path) {
    run_ok(&[
        "sample",
        model.to_str().unwrap(),
        "--intervene",
        intervene,
        "--n",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "flex",
    ]);
    assert!(is_png(out));
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn data_preview_writes_real_images_of_composed_contexts() {
    let scratch_dir = scratch("preview");
    let out = scratch_dir.path().join("grid.png");
    run_ok(&[
        "data",
        "preview",
        "--dataset",
        "quad-dependent",
        "--context",
        "quad1+quad2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(is_png(&out));
}

#[test]
fn sample_writes_a_grid_for_composed_interventions() {
    let scratch_dir = scratch("sample");
    let out = scratch_dir.path().join("grid.png");
    run_ok(&[
        "sample",
        trained().to_str().unwrap(),
        "--intervene",
        "quad1,quad2",
        "--n",
        "4",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
        "--device",
        "flex",
    ]);
    assert!(is_png(&out));
}

#[test]
fn eval_writes_every_metric() {
    let scratch_dir = scratch("eval");
    let dir = scratch_dir.path();
    let file = dir.join("model.bin");
    export_trained(&file, &[]);
    let metrics = evaluate(&file, "40", &dir.join("model.metrics.json"), &[]);
    assert!(metrics["concept"]["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(
        metrics["concept"]["per_context"].as_object().unwrap().len(),
        7
    );
    assert_eq!(metrics["compo"]["per_pair"].as_object().unwrap().len(), 9);
    assert!(
        metrics["compo"]["per_pair"]["quad1+quad2"]
            .as_f64()
            .is_some()
    );
    assert!(metrics["recon"]["in_distribution_bpd"].as_f64().unwrap() > 0.0);
    assert!(metrics["recon"]["ood_bpd"].as_f64().unwrap() > 0.0);
    let cf = &metrics["counterfactual"];
    assert_eq!(cf["per_context"].as_object().unwrap().len(), 6 + 9);
    for context in ["quad1", "quad1+quad2"] {
        for score in ["error", "do_nothing", "ignore_image", "reversibility"] {
            let v = cf["per_context"][context][score].as_f64().unwrap();
            assert!(v > 0.0 && v < 1.0, "{context} {score}: {v}");
        }
    }
    assert!(cf["composition"].as_f64().unwrap() > 0.0);
}

/// Recomputing BatchNorm statistics per context changes the samples (Concept, Compo, `sample`'s
/// grid) and the edits (the counterfactual scores, `edit`'s images), and not the ELBO, which
/// decodes in training's own way; metrics.json says which were used.
#[test]
fn recomputed_norm_statistics_change_samples_and_edits_only() {
    let scratch_dir = scratch("norm-statistics");
    let dir = scratch_dir.path();
    let file = dir.join("model.bin");
    export_trained(&file, &[]);
    let written = dir.join("model.metrics.json");
    let trained = evaluate(&file, "40", &written, &[]);
    let recomputed = evaluate(&file, "40", &written, &["--norm-statistics", "recomputed"]);
    assert_eq!(trained["settings"]["norm_statistics"], "trained");
    assert_eq!(recomputed["settings"]["norm_statistics"], "recomputed");
    for score in ["concept", "compo"] {
        assert_ne!(trained[score]["mean"], recomputed[score]["mean"], "{score}");
    }
    assert_eq!(trained["recon"], recomputed["recon"]);
    for score in ["error", "do_nothing", "ignore_image"] {
        let [a, b] = [&trained, &recomputed].map(|m| &m["counterfactual"]["single"][score]);
        assert!(a.is_f64() && a != b, "{score}: {a} and {b}");
    }
    let with_statistics = |args: &[&str], statistics: &str, out: &Path| {
        let mut args = args.to_vec();
        args.extend([
            "--norm-statistics",
            statistics,
            "--out",
            out.to_str().unwrap(),
        ]);
        args.extend(["--device", "flex"]);
        run_ok(&args);
    };
    // `prior`, the name before edits had recomputed statistics too, still reads.
    let grids = ["trained", "prior"].map(|statistics| {
        let out = dir.join(format!("{statistics}.png"));
        with_statistics(
            &["sample", file.to_str().unwrap(), "--n", "4"],
            statistics,
            &out,
        );
        std::fs::read(out).unwrap()
    });
    assert_ne!(grids[0], grids[1]);
    let input = dir.join("input.png");
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(8 * x) as u8, (8 * y) as u8, 90])
    })
    .save(&input)
    .unwrap();
    let edits = ["trained", "recomputed"].map(|statistics| {
        let out = dir.join(format!("edit-{statistics}"));
        let edit = ["edit", file.to_str().unwrap(), input.to_str().unwrap()];
        with_statistics(
            &[&edit[..], &["--intervene", "quad1"]].concat(),
            statistics,
            &out,
        );
        ["input.png", "input.recon.png"].map(|name| std::fs::read(out.join(name)).unwrap())
    });
    assert_ne!(edits[0][0], edits[1][0], "counterfactuals");
    assert_ne!(edits[0][1], edits[1][1], "reconstructions");
}

/// True counterfactual pairs from the generator, then the model's edits of the factual images:
/// one file per input and kind, a grid, and the CLI's refusals, each before anything is written.
#[test]
fn edit_writes_counterfactuals_and_refuses_bad_images_writing_nothing() {
    let scratch_dir = scratch("edit");
    let dir = scratch_dir.path();
    let pairs = dir.join("pairs");
    run_ok(&[
        "data",
        "counterfactuals",
        "--intervene",
        "quad1",
        "--n",
        "3",
        "--image-size",
        "64",
        "--out",
        pairs.to_str().unwrap(),
    ]);
    for context in ["obs", "quad1"] {
        let files = intervene_e2e::files_under(&pairs.join(context));
        assert_eq!(
            files.len(),
            3 + 1,
            "{context}: three images and latents.csv"
        );
    }
    // 64 px inputs for a 32 px model: resized.
    let inputs: Vec<String> = (0..3)
        .map(|i| pairs.join(format!("obs/0000{i}.png")).display().to_string())
        .collect();
    let out = dir.join("edits");
    let grid = dir.join("grid.png");
    let mut args = vec!["edit", trained().to_str().unwrap()];
    args.extend(inputs.iter().map(String::as_str));
    args.extend([
        "--intervene",
        "quad1",
        "--shift",
        "size=1",
        "--out",
        out.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
        "--device",
        "flex",
    ]);
    run_ok(&args);
    for i in 0..3 {
        assert!(is_png(&out.join(format!("0000{i}.png"))));
        assert!(is_png(&out.join(format!("0000{i}.recon.png"))));
    }
    assert!(is_png(&grid));

    // A decoder-only file with its encoder file edits as the run does.
    let (model, encoder) = (dir.join("model.bin"), dir.join("model.encoder.bin"));
    export_trained(
        &model,
        &[
            "--decoder-only",
            "--precision",
            "f32",
            "--encoder-out",
            encoder.to_str().unwrap(),
        ],
    );
    let again = dir.join("again");
    run_ok(&[
        "edit",
        model.to_str().unwrap(),
        inputs[0].as_str(),
        "--encoder",
        encoder.to_str().unwrap(),
        "--intervene",
        "quad1",
        "--shift",
        "size=1",
        "--out",
        again.to_str().unwrap(),
        "--device",
        "flex",
    ]);
    assert_eq!(
        std::fs::read(again.join("00000.png")).unwrap(),
        std::fs::read(out.join("00000.png")).unwrap()
    );

    let grey = dir.join("grey.png");
    image::GrayImage::new(32, 32).save(&grey).unwrap();
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(&inputs[0]).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = dir.join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let decoder_only = dir.join("decoder.bin");
    export_trained(&decoder_only, &["--decoder-only"]);
    let refused = dir.join("refused");
    for (model, input, expect) in [
        (
            trained(),
            &grey,
            "a grey image, but this model was trained on colour images",
        ),
        (trained(), &truncated, "not a readable image"),
        (trained(), &text, "not a readable image"),
        (decoder_only.as_path(), &grey, "carry the decoder only"),
    ] {
        let result = run(&[
            "edit",
            model.to_str().unwrap(),
            inputs[0].as_str(),
            input.to_str().unwrap(),
            "--intervene",
            "quad1",
            "--out",
            refused.to_str().unwrap(),
            "--device",
            "flex",
        ]);
        assert_clean_error(&result, expect);
        assert!(!refused.exists(), "{expect}: nothing is written");
    }
}

#[test]
fn f32_export_samples_identically_to_its_run() {
    let scratch_dir = scratch("export");
    let dir = scratch_dir.path();
    let file = dir.join("model.bin");
    export_trained(&file, &["--precision", "f32"]);
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    run_ok(&[
        "sample",
        trained().to_str().unwrap(),
        "--intervene",
        "size",
        "--n",
        "4",
        "--out",
        a.to_str().unwrap(),
        "--device",
        "flex",
    ]);
    run_ok(&[
        "sample",
        file.to_str().unwrap(),
        "--intervene",
        "size",
        "--n",
        "4",
        "--out",
        b.to_str().unwrap(),
        "--device",
        "flex",
    ]);
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "an f32 export must sample identically"
    );
}

#[test]
fn corrupt_export_is_refused_with_one_line() {
    let scratch_dir = scratch("corrupt");
    let dir = scratch_dir.path();
    let file = dir.join("model.bin");
    export_trained(&file, &[]);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();
    let out = run(&[
        "sample",
        file.to_str().unwrap(),
        "--out",
        dir.join("x.png").to_str().unwrap(),
    ]);
    assert_clean_error(&out, "corrupt");
    std::fs::write(&file, &bytes[..100]).unwrap();
    let out = run(&["eval", file.to_str().unwrap()]);
    assert_clean_error(&out, "truncated");
}

#[test]
fn unknown_concept_lists_the_valid_ones() {
    let out = run(&[
        "sample",
        trained().to_str().unwrap(),
        "--intervene",
        "quad1,colour",
        "--out",
        "/tmp/never.png",
        "--device",
        "flex",
    ]);
    assert_clean_error(
        &out,
        "unknown concept 'colour'; valid concepts are: quad1, quad2, quad3, quad4, size, orientation",
    );
}

#[test]
fn missing_run_folder_is_a_clean_error() {
    let out = run(&["eval", "/nonexistent/runs/nothing"]);
    assert_clean_error(
        &out,
        "no run folder or weights file at /nonexistent/runs/nothing",
    );
    let out = run(&["train", "--resume", "/nonexistent/runs/nothing"]);
    assert_clean_error(&out, "no run folder at /nonexistent/runs/nothing");
}

#[test]
fn mnist_trains_evaluates_and_samples_perturbed_digits() {
    let scratch_dir = scratch("mnist");
    let dir = scratch_dir.path();
    let run_dir = dir.join("run");
    train_tiny(&run_dir, "mnist", "flex", "1");
    let metrics = evaluate(&run_dir, "30", &run_dir.join("metrics.json"), &[]);
    assert_eq!(
        metrics["concept"]["per_context"].as_object().unwrap().len(),
        7
    );
    assert!(
        metrics["compo"]["per_pair"]["thic+shear"]
            .as_f64()
            .is_some()
    );
    assert!(metrics["recon"]["ood_bpd"].as_f64().unwrap() > 0.0);
    sample_grid(&run_dir, "thin+shift", &dir.join("grid.png"));
}

/// Every command on the 3D scenes: preview (by the dataset's alias), train, eval over the three
/// composed pairs, sample a composed pair, export.
#[test]
fn scenes_go_through_every_command() {
    let scratch_dir = scratch("scenes");
    let dir = scratch_dir.path();
    let preview = dir.join("real.png");
    run_ok(&[
        "data",
        "preview",
        "--dataset",
        "3dident",
        "--context",
        "bg+sl",
        "--out",
        preview.to_str().unwrap(),
    ]);
    assert!(is_png(&preview));
    let run_dir = dir.join("run");
    train_tiny(&run_dir, "scenes", "flex", "1");
    let metrics = evaluate(&run_dir, "30", &run_dir.join("metrics.json"), &[]);
    let per_context = metrics["concept"]["per_context"].as_object().unwrap();
    let names: Vec<&str> = per_context.keys().map(String::as_str).collect();
    assert_eq!(names, ["bg", "obj", "obs", "sl"]);
    let per_pair = metrics["compo"]["per_pair"].as_object().unwrap();
    let pairs: Vec<&str> = per_pair.keys().map(String::as_str).collect();
    assert_eq!(pairs, ["bg+obj", "bg+sl", "obj+sl"]);
    sample_grid(&run_dir, "obj,sl", &dir.join("grid.png"));
    let exported = dir.join("scenes.bin");
    run_ok(&[
        "export",
        run_dir.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(exported.exists());
}

#[test]
fn plot_draws_several_runs_and_metrics_csv_has_the_terms_per_context() {
    let header = std::fs::read_to_string(trained().join("metrics.csv")).unwrap();
    let header = header.lines().next().unwrap();
    for column in [
        "valid_reconstruction",
        "valid_kl",
        "valid_obs",
        "valid_quad1",
        "valid_orientation",
    ] {
        assert!(
            header.split(',').any(|c| c == column),
            "{column} missing: {header}"
        );
    }
    let scratch_dir = scratch("plot");
    let out = scratch_dir.path().join("curves.svg");
    run_ok(&[
        "plot",
        trained().to_str().unwrap(),
        trained().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let svg = std::fs::read_to_string(&out).unwrap();
    for text in ["training curves of 2 runs", "validation KL", "epoch"] {
        assert!(svg.contains(text), "{text} missing from the plot");
    }
    let missing = run(&["plot", "/nonexistent/run", "--out", out.to_str().unwrap()]);
    assert_clean_error(&missing, "no run folder");
}

/// `train --print-config` writes a settings file that `train --config` reads back to the same
/// settings, with flags still on top.
#[test]
fn train_settings_round_trip_through_a_file() {
    let scratch_dir = scratch("train-config");
    let dir = scratch_dir.path();
    let text = printed_config(&[
        "train",
        "--preset",
        "quick",
        "--dataset",
        "mnist",
        "--beta",
        "2",
        "--widths",
        "3.16.4",
    ]);
    assert_has_lines(
        &text,
        &[
            "dataset = \"mnist\"",
            "preset = \"quick\"",
            "beta = 2.0",
            "widths = \"3.16.4\"",
        ],
    );
    let file = dir.join("run.toml");
    std::fs::write(&file, &text).unwrap();
    let again = run_ok(&[
        "train",
        "--config",
        file.to_str().unwrap(),
        "--print-config",
    ]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
    let flag_wins = run_ok(&[
        "train",
        "--config",
        file.to_str().unwrap(),
        "--beta",
        "0.5",
        "--print-config",
    ]);
    assert!(
        String::from_utf8(flag_wins.stdout)
            .unwrap()
            .contains("beta = 0.5")
    );
    std::fs::write(&file, text.replace("beta = 2.0", "beta = -1.0")).unwrap();
    let out = run(&[
        "train",
        "--config",
        file.to_str().unwrap(),
        "--out",
        dir.join("r").to_str().unwrap(),
    ]);
    assert_clean_error(&out, "--beta");
    assert!(
        !dir.join("r").exists(),
        "a refused config created its run folder"
    );
}
