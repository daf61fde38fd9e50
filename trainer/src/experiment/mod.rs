//! `intervene experiment`: every method of the paper's table, over seeds (and over the values of
//! a sweep), evaluated and tabulated, with plots. A run folder is keyed by the settings that
//! change training, so a rerun with other settings trains new runs and one with the same
//! settings trains nothing; interrupted runs are resumed.

pub mod plots;
pub mod slurm;
pub mod sweep;
pub mod table;

use crate::cli::ExperimentSettings;
use crate::data::DataSource;
use crate::device::DeviceChoice;
use crate::evaluation::metrics::{EvalSettings, Metrics, evaluate};
use crate::files::atomic_write;
use crate::model_source::Source;
use crate::progress::Progress;
use crate::training::config::{Preset, TrainConfig};
use crate::training::{self, run_folder::RunFolder};
use anyhow::{Context as _, Result, bail};
use burn::module::Module;
use intervene::config::Method;
use intervene::data::{Dataset, DatasetKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use sweep::{Point, Sweep};

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
    /// Root of the run folders: `<runs>/<dataset>/<budget>[-<settings key>]/seed<k>/<method>`.
    pub runs: PathBuf,
    /// Where tables and plots go: `<results>/<dataset>/`.
    pub results: PathBuf,
    /// Evaluation samples per context, if not the budget's.
    pub eval_samples: Option<usize>,
    /// The settings every run's training takes from the budget's, then the sweep's point on top.
    pub sweep: Sweep,
    /// Each point's run-folder key (see [`Plan::run_dir`]).
    keys: Vec<String>,
    /// The resolved settings, as `--print-config` and the Slurm jobs write them.
    pub settings: ExperimentSettings,
}

/// One training run of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Index into the sweep's points.
    pub point: usize,
    pub seed: u64,
    pub method: Method,
}

impl Plan {
    /// The plan the settings describe, every run's training settings checked.
    pub fn new(settings: &ExperimentSettings) -> Result<Self> {
        let mut settings = settings.clone();
        let kind = settings.dataset.unwrap_or(DatasetKind::QuadDependent);
        let source = DataSource::choose(settings.data.as_deref(), kind)?;
        let budget = *settings.budget.get_or_insert(Preset::Quick);
        let ablation = settings.ablation;
        let methods = settings
            .methods
            .get_or_insert_with(|| match ablation {
                Some(_) => vec![Method::Cm],
                None => Method::ALL.to_vec(),
            })
            .clone();
        let seeds = settings.seeds.get_or_insert_with(|| vec![0]).clone();
        if seeds.is_empty() || methods.is_empty() {
            bail!("--seeds and --methods need at least one value each");
        }
        let device = *settings.device.get_or_insert(DeviceChoice::Auto);
        let runs = settings
            .runs
            .get_or_insert_with(|| "runs/experiments".into())
            .clone();
        let results = settings
            .results
            .get_or_insert_with(|| "results".into())
            .clone();
        let sweep = match ablation {
            Some(ablation) => Sweep::ablation(ablation, &settings.train)?,
            None => Sweep::parse(&settings.sweep, &settings.train)?,
        };
        let keys = Self::settings_keys(budget, &source, &sweep)?;
        let plan = Plan {
            dataset: source.open()?,
            source,
            budget,
            seeds,
            methods,
            device,
            runs,
            results,
            eval_samples: settings.eval_samples,
            sweep,
            keys,
            settings,
        };
        for run in plan.all_runs() {
            plan.config(run)?
                .validate()
                .map_err(|e| match &plan.sweep.name {
                    Some(_) => anyhow::anyhow!("{} at {}: {e}", run.method, plan.point(run).label),
                    None => anyhow::anyhow!("{}: {e}", run.method),
                })?;
        }
        Ok(plan)
    }

    /// Every run, in training order: by point and seed, base-pooled first (cm-frozen and
    /// cm-finetune start from it).
    pub fn all_runs(&self) -> Vec<Run> {
        let mut methods = self.methods.clone();
        methods.sort_by_key(|&m| m != Method::BasePooled);
        let mut runs = Vec::new();
        for point in 0..self.sweep.points.len() {
            for &seed in &self.seeds {
                for &method in &methods {
                    runs.push(Run {
                        point,
                        seed,
                        method,
                    });
                }
            }
        }
        runs
    }

    pub fn point(&self, run: Run) -> &Point {
        &self.sweep.points[run.point]
    }

    /// The run's training settings: the budget's, the shared and the point's settings on top.
    pub fn config(&self, run: Run) -> Result<TrainConfig> {
        let point = self.point(run);
        let mut config =
            TrainConfig::preset(self.budget, self.source.clone(), run.method)?.with(&point.train);
        config.seed = run.seed;
        config.device = self.device;
        // A smaller --per-context (smoke tests) may leave fewer images than a batch.
        if point.train.batch_size.is_none() {
            config.batch_size = config.batch_size.min(config.train_per_context());
        }
        if run.method.starts_from_base_pooled() {
            config.init_from = Some(self.run_dir(Run {
                method: Method::BasePooled,
                ..run
            }));
        }
        Ok(config)
    }

    /// `<runs>/<dataset>/<key>/seed<k>/<method>`, where the key is the budget's name, followed
    /// by a hash of the settings that differ from the budget's when any do (so the runs of
    /// every setting get their own folders, and those of the budget's keep theirs).
    pub fn run_dir(&self, run: Run) -> PathBuf {
        self.runs
            .join(self.dataset.name())
            .join(&self.keys[run.point])
            .join(format!("seed{}", run.seed))
            .join(run.method.name())
    }

    /// Each point's folder key: the budget's name, with a CRC-32 of the settings that differ
    /// from the budget's when any do (the same for every method, seed and device).
    fn settings_keys(budget: Preset, source: &DataSource, sweep: &Sweep) -> Result<Vec<String>> {
        let preset = TrainConfig::preset(budget, source.clone(), Method::Cm)?;
        let before = preset.identity();
        let keys = sweep.points.iter().map(|point| {
            let after = preset.clone().with(&point.train).identity();
            let changed: BTreeMap<&String, &serde_json::Value> = after
                .iter()
                .filter(|(name, value)| before.get(*name) != Some(*value))
                .collect();
            match changed.is_empty() {
                true => budget_name(budget).to_string(),
                false => {
                    let text = serde_json::to_string(&changed).expect("settings serialise");
                    format!(
                        "{}-{:08x}",
                        budget_name(budget),
                        crc32fast::hash(text.as_bytes())
                    )
                }
            }
        });
        Ok(keys.collect())
    }

    pub fn results_dir(&self) -> PathBuf {
        let dir = self.results.join(self.dataset.name());
        match &self.sweep.name {
            Some(name) => dir.join(name),
            None => dir,
        }
    }

    fn eval_settings(&self, seed: u64) -> EvalSettings {
        let samples = match self.budget {
            Preset::Quick => 1_000,
            Preset::Paper => 10_000,
        };
        EvalSettings {
            samples: self.eval_samples.unwrap_or(samples),
            seed,
            norm_statistics: self.settings.norm_statistics.unwrap_or_default(),
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

/// Trains and evaluates whatever is not done yet: every run, or only the `only`-th.
pub fn run(plan: &Plan, only: Option<usize>, progress: &Progress) -> Result<()> {
    let all = plan.all_runs();
    let runs = match only {
        None => all,
        Some(n) => vec![*all.get(n).with_context(|| {
            format!(
                "--run {n}: the plan has {} runs (0..={})",
                all.len(),
                all.len().saturating_sub(1)
            )
        })?],
    };
    for run in runs {
        let dir = plan.run_dir(run);
        let at = match plan.sweep.name {
            Some(_) => format!(" at {}", plan.point(run).label),
            None => String::new(),
        };
        progress.line(format!(
            "== {} seed {}{at}: {}",
            run.method.name(),
            run.seed,
            dir.display()
        ));
        train_if_needed(plan, run, &dir)?;
        evaluate_if_needed(plan, run.seed, &dir, progress)?;
    }
    Ok(())
}

fn train_if_needed(plan: &Plan, run: Run, dir: &Path) -> Result<()> {
    let config = plan.config(run)?;
    let folder = RunFolder::new(dir);
    if !folder.exists() {
        training::start(dir, config)?;
        return Ok(());
    }
    let theirs = folder.read_config()?;
    let differences = differing_settings(&theirs, &config);
    if !differences.is_empty() {
        bail!(
            "{} holds a run trained with other settings ({}); move it away or pass --runs with another folder",
            dir.display(),
            differences.join(", ")
        );
    }
    let finished = folder.checkpoints().read_state().is_ok_and(|s| s.finished);
    if !finished {
        training::resume(dir, training::Opening::Resume)?;
    }
    Ok(())
}

/// `name: X there, Y here` for each setting that changes training and differs.
fn differing_settings(there: &TrainConfig, here: &TrainConfig) -> Vec<String> {
    let (a, b) = (there.identity(), here.identity());
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    let show = |v: Option<&serde_json::Value>| v.map_or("unset".into(), |v| v.to_string());
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| format!("{n}: {} there, {} here", show(a.get(n)), show(b.get(n))))
        .collect()
}

fn evaluate_if_needed(plan: &Plan, seed: u64, dir: &Path, progress: &Progress) -> Result<()> {
    let run = RunFolder::new(dir);
    let _lock = run.lock()?;
    let metrics_path = run.scores_path();
    let best = run.best_path();
    let settings = plan.eval_settings(seed);
    let fresh = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    // Scores of these weights with these evaluation settings are reused; any others redone.
    let scored_alike = std::fs::read_to_string(&metrics_path)
        .ok()
        .and_then(|text| serde_json::from_str::<Metrics>(&text).ok())
        .is_some_and(|m| m.settings == settings);
    if scored_alike && fresh(&metrics_path) >= fresh(&best) {
        return Ok(());
    }
    let device = plan.device.resolve().device;
    let model = Source::open(dir)?.load(&device)?.model.valid();
    let metrics = evaluate(&model, plan.dataset, &settings, &device, progress)
        .with_context(|| format!("{}", dir.display()))?;
    atomic_write(
        &metrics_path,
        serde_json::to_string_pretty(&metrics)?.as_bytes(),
    )
}

/// Every run's metrics (all must exist), in plan order.
pub fn collect(plan: &Plan) -> Result<Vec<(Run, Metrics)>> {
    let mut all = Vec::new();
    for run in plan.all_runs() {
        let path = RunFolder::new(plan.run_dir(run)).scores_path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing: run the experiment (or this method and seed) first",
                path.display()
            )
        })?;
        let metrics: Metrics = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid", path.display()))?;
        all.push((run, metrics));
    }
    Ok(all)
}

/// Writes the tables and plots from finished runs: the paper's table, or a sweep's.
pub fn report(plan: &Plan, progress: &Progress) -> Result<()> {
    let results = plan.results_dir();
    std::fs::create_dir_all(&results)
        .with_context(|| format!("cannot create {}", results.display()))?;
    let all = collect(plan)?;
    if plan.sweep.name.is_some() {
        let markdown = sweep::write_report(plan, &all, &results)?;
        progress.line(format!(
            "wrote {}/table.md, table.csv and plot.svg",
            results.display()
        ));
        print!("{markdown}");
        return Ok(());
    }
    // In the order methods were asked for, as the table has always listed them.
    let mut by_method: Vec<(Method, u64, Metrics)> = Vec::new();
    for method in &plan.methods {
        for (run, metrics) in &all {
            if run.method == *method {
                by_method.push((run.method, run.seed, metrics.clone()));
            }
        }
    }
    let tables = table::Tables::new(plan.dataset, &by_method);
    atomic_write(&results.join("table.md"), tables.markdown(plan).as_bytes())?;
    atomic_write(&results.join("table.csv"), tables.csv().as_bytes())?;
    atomic_write(
        &results.join("breakdown.csv"),
        tables.breakdown_csv().as_bytes(),
    )?;
    plots::write_all(plan, &by_method, &results.join("plots"))?;
    progress.line(format!(
        "wrote {}/table.md, table.csv, breakdown.csv and plots/",
        results.display()
    ));
    print!("{}", tables.markdown(plan));
    Ok(())
}
