//! `intervene experiment`: every method of the paper's table, over seeds, evaluated and
//! tabulated, with plots. Finished runs are skipped and interrupted ones resumed, so rerunning
//! an interrupted experiment picks up where it stopped.

pub mod plots;
pub mod slurm;
pub mod table;

use crate::data::DataSource;
use crate::device::DeviceChoice;
use crate::evaluation::metrics::{EvalSettings, Metrics, evaluate};
use crate::files::atomic_write;
use crate::model_source::Source;
use crate::progress::Progress;
use crate::training::config::{Overrides, Preset, TrainConfig};
use crate::training::{self, run_folder::RunFolder};
use anyhow::{Context as _, Result};
use burn::module::Module;
use intervene::config::Method;
use intervene::data::Dataset;
use std::path::{Path, PathBuf};

/// What to run and where.
pub struct Plan {
    /// Where the images come from, as the runs record it.
    pub source: DataSource,
    /// That dataset, opened.
    pub dataset: &'static dyn Dataset,
    pub budget: Preset,
    pub seeds: Vec<u64>,
    pub methods: Vec<Method>,
    pub device: DeviceChoice,
    /// Root of the run folders: `<runs>/<dataset>/<budget>/seed<k>/<method>`.
    pub runs: PathBuf,
    /// Where tables and plots go: `<results>/<dataset>/`.
    pub results: PathBuf,
    /// Evaluation samples per context, if not the budget's.
    pub eval_samples: Option<usize>,
    /// Settings that replace the budget's in every run.
    pub overrides: Overrides,
}

impl Plan {
    pub fn run_dir(&self, seed: u64, method: Method) -> PathBuf {
        self.runs
            .join(self.dataset.name())
            .join(budget_name(self.budget))
            .join(format!("seed{seed}"))
            .join(method.name())
    }

    pub fn results_dir(&self) -> PathBuf {
        self.results.join(self.dataset.name())
    }

    /// Methods in training order: base-pooled first, since cm-frozen and cm-finetune start from it.
    fn ordered_methods(&self) -> Vec<Method> {
        let mut methods = self.methods.clone();
        methods.sort_by_key(|&m| m != Method::BasePooled);
        methods
    }

    fn eval_settings(&self, seed: u64) -> EvalSettings {
        let samples = match self.budget {
            Preset::Quick => 1_000,
            Preset::Paper => 10_000,
        };
        EvalSettings {
            samples: self.eval_samples.unwrap_or(samples),
            seed,
            ..EvalSettings::default()
        }
    }
}

pub fn budget_name(budget: Preset) -> &'static str {
    match budget {
        Preset::Quick => "quick",
        Preset::Paper => "paper",
    }
}

/// Trains and evaluates whatever is not done yet.
pub fn run(plan: &Plan, progress: &Progress) -> Result<()> {
    for &seed in &plan.seeds {
        for method in plan.ordered_methods() {
            let dir = plan.run_dir(seed, method);
            progress.line(format!(
                "== {} seed {seed}: {}",
                method.name(),
                dir.display()
            ));
            train_if_needed(plan, seed, method, &dir)?;
            evaluate_if_needed(plan, seed, &dir, progress)?;
        }
    }
    Ok(())
}

fn train_if_needed(plan: &Plan, seed: u64, method: Method, dir: &Path) -> Result<()> {
    let run = RunFolder::new(dir);
    if run.exists() {
        let finished = run.checkpoints().read_state().is_ok_and(|s| s.finished);
        if !finished {
            training::resume(dir, training::Opening::Resume)?;
        }
        return Ok(());
    }
    let mut config =
        TrainConfig::preset(plan.budget, plan.source.clone(), method)?.with(&plan.overrides);
    config.seed = seed;
    config.device = plan.device;
    // A smaller --per-context (smoke tests) may leave fewer images than a batch.
    if plan.overrides.batch_size.is_none() {
        config.batch_size = config.batch_size.min(config.train_per_context());
    }
    if method.starts_from_base_pooled() {
        config.init_from = Some(plan.run_dir(seed, Method::BasePooled));
    }
    training::start(dir, config)?;
    Ok(())
}

fn evaluate_if_needed(plan: &Plan, seed: u64, dir: &Path, progress: &Progress) -> Result<()> {
    let run = RunFolder::new(dir);
    let _lock = run.lock()?;
    let metrics_path = run.scores_path();
    let best = run.best_path();
    let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if metrics_path.exists() && fresh(&metrics_path) >= fresh(&best) {
        return Ok(());
    }
    let device = plan.device.resolve().device;
    let model = Source::open(dir)?.load(&device)?.model.valid();
    let metrics = evaluate(
        &model,
        plan.dataset,
        &plan.eval_settings(seed),
        &device,
        progress,
    );
    atomic_write(
        &metrics_path,
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )
}

/// Reads every run's metrics (all must exist).
pub fn collect(plan: &Plan) -> Result<Vec<(Method, u64, Metrics)>> {
    let mut all = Vec::new();
    for method in &plan.methods {
        for &seed in &plan.seeds {
            let path = RunFolder::new(plan.run_dir(seed, *method)).scores_path();
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "{} is missing: run the experiment (or this method and seed) first",
                    path.display()
                )
            })?;
            all.push((
                *method,
                seed,
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid", path.display()))?,
            ));
        }
    }
    Ok(all)
}

/// Writes the tables and plots from finished runs.
pub fn report(plan: &Plan, progress: &Progress) -> Result<()> {
    let results = plan.results_dir();
    std::fs::create_dir_all(&results)
        .with_context(|| format!("cannot create {}", results.display()))?;
    let all = collect(plan)?;
    let tables = table::Tables::new(plan.dataset, &all);
    atomic_write(&results.join("table.md"), tables.markdown(plan).as_bytes())?;
    atomic_write(&results.join("table.csv"), tables.csv().as_bytes())?;
    atomic_write(
        &results.join("breakdown.csv"),
        tables.breakdown_csv().as_bytes(),
    )?;
    plots::write_all(plan, &all, &results.join("plots"))?;
    progress.line(format!(
        "wrote {}/table.md, table.csv, breakdown.csv and plots/",
        results.display()
    ));
    print!("{}", tables.markdown(plan));
    Ok(())
}
