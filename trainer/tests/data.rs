//! Datasets read from disk end to end: export a built-in dataset as image folders, train on it
//! with `--data`, evaluate the run without naming the data again; and bad folders refused
//! before anything is written.

mod common;

use common::{BINARY, TINY, assert_clean_error, scratch};
use intervene_e2e::files_under as walk;
use std::path::Path;
use std::process::{Command, Output};

/// `intervene args...` with its decoded-image cache in `cache`.
fn run_with_cache(cache: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env("INTERVENE_CACHE", cache)
        .output()
        .expect("intervene runs")
}

fn run_ok_with_cache(cache: &Path, args: &[&str]) -> Output {
    let out = run_with_cache(cache, args);
    assert!(
        out.status.success(),
        "intervene {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn an_exported_dataset_trains_and_evaluates_with_data() {
    let scratch_dir = scratch("data-round-trip");
    let dir = scratch_dir.path();
    let (data, run, cache) = (dir.join("quad"), dir.join("run"), dir.join("cache"));
    let path = |p: &Path| p.to_str().unwrap().to_string();
    run_ok_with_cache(
        &cache,
        &[
            "data",
            "export",
            "--per-context",
            "80",
            "--image-size",
            "32",
            "--out",
            &path(&data),
        ],
    );
    for context in ["obs", "quad1", "orientation", "quad1+quad2"] {
        let folder = data.join(context);
        assert!(folder.join("00000.png").is_file(), "{context}");
        let latents = std::fs::read_to_string(folder.join("latents.csv")).unwrap();
        assert!(latents.starts_with("file,quad1,quad2,quad3,quad4,size,color,shape,orientation"));
        assert_eq!(latents.lines().count(), 81);
    }
    let mut args = vec![
        "train".to_string(),
        "--data".into(),
        path(&data),
        "--out".into(),
        path(&run),
        "--device".into(),
        "flex".into(),
        "--epochs".into(),
        "1".into(),
    ];
    args.extend(TINY.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_ok_with_cache(&cache, &args);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["dataset"]["folder"], path(&data));
    // Concepts come from the folders, in name order.
    let concepts = ["orientation", "quad1", "quad2", "quad3", "quad4", "size"];
    let cached: Vec<_> = walk(&cache);
    assert_eq!(cached.len(), 1, "one cache file: {cached:?}");

    run_ok_with_cache(
        &cache,
        &["eval", &path(&run), "--samples", "16", "--device", "flex"],
    );
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["dataset"], "quad");
    assert!(metrics["true_graph"].is_null());
    let pairs = metrics["compo"]["per_pair"].as_object().unwrap();
    assert_eq!(pairs.len(), 9);
    assert!(pairs.contains_key("quad1+quad2"));
    for concept in concepts {
        assert!(
            metrics["concept"]["per_context"].get(concept).is_some(),
            "{concept}"
        );
    }
    assert!(metrics["compo"]["mean"].as_f64().unwrap().is_finite());
    assert_eq!(
        walk(&cache),
        cached,
        "eval read the cache, decoding nothing again"
    );

    let preview = dir.join("preview.png");
    run_ok_with_cache(
        &cache,
        &[
            "data",
            "preview",
            "--data",
            &path(&data),
            "--context",
            "quad1+quad2",
            "--image-size",
            "32",
            "--out",
            &path(&preview),
        ],
    );
    assert!(preview.is_file());
}

#[test]
fn a_bad_image_stops_training_before_the_run_folder_exists() {
    let scratch_dir = scratch("data-bad-image");
    let dir = scratch_dir.path();
    let data = dir.join("data");
    for context in ["obs", "a"] {
        std::fs::create_dir_all(data.join(context)).unwrap();
        for i in 0..4 {
            let png = data.join(context).join(format!("{i}.png"));
            std::fs::copy(fixture_png(), &png).unwrap();
        }
    }
    std::fs::write(data.join("a/3.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let run = dir.join("run");
    let out = run_with_cache(
        &dir.join("cache"),
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--preset",
            "quick",
            "--batch-size",
            "1",
        ],
    );
    assert_clean_error(&out, "3.png: not a readable image");
    assert!(!run.exists(), "a run folder was created");
    assert!(walk(&dir.join("cache")).is_empty(), "a cache file was left");

    let out = run_with_cache(
        &dir.join("cache"),
        &[
            "train",
            "--data",
            dir.join("nowhere").to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ],
    );
    assert_clean_error(&out, "is not a folder");
}

fn fixture_png() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/datasets/plain/obs/0.png")
}
