//! Sweeps: the experiment at every value (or grid of values) of some training settings, with a
//! table and a plot of the scores against the values. `--ablation` names the paper's sweeps.

use super::table::Stat;
use super::{Plan, Run, budget_name};
use crate::cli::Ablation;
use crate::evaluation::metrics::Metrics;
use crate::files::atomic_write;
use crate::training::config::Overrides;
use anyhow::{Result, bail};
use intervene::config::Method;
use plotters::prelude::*;
use std::path::Path;

/// The points an experiment trains at: one (the shared settings) without a sweep.
pub struct Sweep {
    /// The results subfolder, `sweep-<settings>` or `ablation-<name>`; `None` without a sweep.
    pub name: Option<String>,
    /// The swept settings' names, in the order given.
    pub axes: Vec<String>,
    pub points: Vec<Point>,
}

pub struct Point {
    /// `beta=0.5`, `beta=0.5 widths=4.32.8`; empty without a sweep.
    pub label: String,
    /// The point's values, one per axis.
    pub values: Vec<String>,
    /// Every run's training settings with the point's on top.
    pub train: Overrides,
}

/// The paper's batch holds 512 images and its loss is their sum; ours is the mean per image, so
/// a penalty weight of the paper's is this many times smaller here.
const PAPER_BATCH: f64 = 512.0;

impl Sweep {
    /// `SETTING=V1,V2,...` axes, the grid of their values, each point's settings checked by the
    /// setting's flag parser.
    pub fn parse(axes: &[String], train: &Overrides) -> Result<Self> {
        if axes.is_empty() {
            return Ok(Sweep {
                name: None,
                axes: Vec::new(),
                points: vec![Point {
                    label: String::new(),
                    values: Vec::new(),
                    train: train.clone(),
                }],
            });
        }
        let mut parsed: Vec<(String, Vec<String>)> = Vec::new();
        for axis in axes {
            let Some((name, values)) = axis.split_once('=') else {
                bail!("--sweep {axis}: write SETTING=V1,V2,... (e.g. beta=0.5,1,2)");
            };
            let field = Overrides::field_name(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "--sweep {axis}: no training setting is named '{}'",
                    name.trim()
                )
            })?;
            if parsed.iter().any(|(f, _)| *f == field) {
                bail!("--sweep names {field} twice");
            }
            let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
            if values.iter().any(String::is_empty) {
                bail!("--sweep {axis}: a value is empty");
            }
            parsed.push((field, values));
        }
        let name = format!(
            "sweep-{}",
            parsed
                .iter()
                .map(|(f, _)| f.replace('_', "-"))
                .collect::<Vec<_>>()
                .join("-")
        );
        Self::grid(name, parsed, train)
    }

    /// One of the paper's ablations, at its values.
    pub fn ablation(ablation: Ablation, train: &Overrides) -> Result<Self> {
        let per_batch = |weights: [f64; 4]| weights.map(|w| (w / PAPER_BATCH).to_string()).to_vec();
        let (name, field, values): (&str, &str, Vec<String>) = match ablation {
            Ablation::Expressivity => (
                "expressivity",
                "widths",
                [2, 4]
                    .iter()
                    .flat_map(|d| {
                        [16, 32].iter().flat_map(move |i| {
                            [8, 16, 32].iter().map(move |o| format!("{d}.{i}.{o}"))
                        })
                    })
                    .collect(),
            ),
            Ablation::Beta => (
                "beta",
                "beta",
                ["0.5", "1", "2", "4"].map(String::from).to_vec(),
            ),
            Ablation::L2 => ("l2", "causal_l2", per_batch([0.0, 1.0, 10.0, 100.0])),
            Ablation::GroupSparsity => (
                "group-sparsity",
                "group_sparsity",
                per_batch([0.0, 1.0, 10.0, 100.0]),
            ),
        };
        Self::grid(
            format!("ablation-{name}"),
            vec![(field.to_string(), values)],
            train,
        )
    }

    fn grid(name: String, axes: Vec<(String, Vec<String>)>, train: &Overrides) -> Result<Self> {
        let mut combos: Vec<Vec<String>> = vec![Vec::new()];
        for (_, values) in &axes {
            combos = combos
                .into_iter()
                .flat_map(|combo| {
                    values.iter().map(move |v| {
                        let mut c = combo.clone();
                        c.push(v.clone());
                        c
                    })
                })
                .collect();
        }
        let points = combos
            .into_iter()
            .map(|values| {
                let pairs = axes
                    .iter()
                    .zip(&values)
                    .map(|((f, _), v)| (f.as_str(), v.as_str()));
                let point =
                    Overrides::parse_pairs(pairs).map_err(|e| anyhow::anyhow!("--sweep: {e}"))?;
                let label = axes
                    .iter()
                    .zip(&values)
                    .map(|((f, _), v)| format!("{f}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                Ok(Point {
                    label,
                    values,
                    train: train.and(&point),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Sweep {
            name: Some(name),
            axes: axes.into_iter().map(|(f, _)| f).collect(),
            points,
        })
    }
}

/// One row of a sweep's table: a method at a point, over seeds.
struct Row {
    point: usize,
    method: Method,
    seeds: usize,
    concept: Stat,
    compo: Stat,
    recon: Option<Stat>,
    cf_single: Option<Stat>,
    cf_composed: Option<Stat>,
}

fn rows(plan: &Plan, all: &[(Run, Metrics)]) -> Vec<Row> {
    let mut rows = Vec::new();
    for point in 0..plan.sweep.points.len() {
        for &method in &plan.methods {
            let runs: Vec<&Metrics> = all
                .iter()
                .filter(|(r, _)| r.point == point && r.method == method)
                .map(|(_, m)| m)
                .collect();
            let stat = |f: &dyn Fn(&Metrics) -> Option<f64>| {
                let v: Vec<f64> = runs.iter().filter_map(|m| f(m)).collect();
                (!v.is_empty()).then(|| Stat::of(&v))
            };
            rows.push(Row {
                point,
                method,
                seeds: runs.len(),
                concept: stat(&|m| Some(m.concept.mean)).expect("every run is scored"),
                compo: stat(&|m| Some(m.compo.mean)).expect("every run is scored"),
                recon: stat(&|m| m.recon.as_ref().map(|r| r.in_distribution_bpd)),
                cf_single: stat(&|m| m.counterfactual.as_ref().map(|c| c.single.error)),
                cf_composed: stat(&|m| m.counterfactual.as_ref().map(|c| c.composed.error)),
            });
        }
    }
    rows
}

/// Writes `table.md`, `table.csv` and `plot.svg` into `dir`; returns the markdown.
pub fn write_report(plan: &Plan, all: &[(Run, Metrics)], dir: &Path) -> Result<String> {
    let rows = rows(plan, all);
    let sweep = &plan.sweep;
    let seeds: Vec<String> = plan.seeds.iter().map(u64::to_string).collect();
    let mut md = format!(
        "# {}: {} ({} budget, seeds {})\n\nLower is better: Concept and Compo are sliced Wasserstein distances, Recon is held-out negative ELBO in bits per pixel, cf error the mean absolute pixel error of counterfactual edits (docs/method.md#counterfactual-scores). Every other setting is the budget's{}.\n\n| {} | method | Concept | Compo | Recon | cf error (single) | cf error (composed) |\n|{}---|---|---|---|---|---|\n",
        plan.dataset.name(),
        sweep.name.as_deref().unwrap_or_default(),
        budget_name(plan.budget),
        seeds.join(","),
        match plan.settings.train == Overrides::default() {
            true => String::new(),
            false => format!(" with {}", settings_text(&plan.settings.train)),
        },
        sweep.axes.join(" | "),
        "---|".repeat(sweep.axes.len())
    );
    let opt = |s: Option<Stat>| s.map_or("n/a".to_string(), |s| s.text());
    let mut csv = format!(
        "{},method,seeds,concept_mean,concept_std,compo_mean,compo_std,recon_mean,recon_std,cf_single_mean,cf_single_std,cf_composed_mean,cf_composed_std\n",
        sweep.axes.join(",")
    );
    let num = |s: Option<Stat>| match s {
        Some(s) => format!("{:.6},{:.6}", s.mean, s.std),
        None => ",".to_string(),
    };
    for r in &rows {
        let values = &sweep.points[r.point].values;
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            values.join(" | "),
            r.method.label(),
            r.concept.text(),
            r.compo.text(),
            opt(r.recon),
            opt(r.cf_single),
            opt(r.cf_composed)
        ));
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            values.join(","),
            r.method.name(),
            r.seeds,
            num(Some(r.concept)),
            num(Some(r.compo)),
            num(r.recon),
            num(r.cf_single),
            num(r.cf_composed)
        ));
    }
    md.push_str("\n`plot.svg`: Concept and Compo at each point, one line per method (mean over seeds; bars: one standard deviation when there are several).\n");
    atomic_write(&dir.join("table.md"), md.as_bytes())?;
    atomic_write(&dir.join("table.csv"), csv.as_bytes())?;
    atomic_write(&dir.join("plot.svg"), plot(plan, &rows)?.as_bytes())?;
    Ok(md)
}

fn settings_text(train: &Overrides) -> String {
    let serde_json::Value::Object(map) = serde_json::to_value(train).expect("settings serialise")
    else {
        unreachable!("a struct serialises to an object")
    };
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
        .collect::<Vec<_>>()
        .join(", ")
}

const COLOURS: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// Two panels, Concept and Compo, against the points (in the order swept).
fn plot(plan: &Plan, rows: &[Row]) -> Result<String> {
    let points = &plan.sweep.points;
    let labels: Vec<String> = points.iter().map(|p| p.values.join(" ")).collect();
    let axis = plan.sweep.axes.join(" x ");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 480)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!(
                "{}: {} ({} budget)",
                plan.dataset.name(),
                plan.sweep.name.as_deref().unwrap_or_default(),
                budget_name(plan.budget)
            ),
            ("sans-serif", 20),
        )?;
        let panels = root.split_evenly((1, 2));
        type Pick = fn(&Row) -> Stat;
        let metrics: [(&str, Pick); 2] = [
            ("Concept (SWD, lower is better)", |r| r.concept),
            ("Compo (SWD, lower is better)", |r| r.compo),
        ];
        for (panel, (title, pick)) in panels.iter().zip(metrics) {
            let values: Vec<f64> = rows
                .iter()
                .flat_map(|r| {
                    let s = pick(r);
                    [s.mean - s.std, s.mean + s.std]
                })
                .collect();
            let lo = values
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .max(0.0);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.15).max(0.005);
            let last = points.len() as f64 - 0.5;
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 16))
                .margin(14)
                .x_label_area_size(50)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..last, (lo - pad).max(0.0)..hi + pad * 2.0)?;
            let label_of = |x: &f64| {
                let i = x.round();
                match (x - i).abs() < 1e-6 && i >= 0.0 {
                    true => labels.get(i as usize).cloned().unwrap_or_default(),
                    false => String::new(),
                }
            };
            chart
                .configure_mesh()
                .x_desc(&axis)
                .x_labels(points.len() * 2 + 1)
                .x_label_formatter(&label_of)
                .y_label_formatter(&|v| format!("{v:.3}"))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 14))
                .draw()?;
            for (m, &method) in plan.methods.iter().enumerate() {
                let colour = COLOURS[m % COLOURS.len()];
                let series: Vec<(f64, Stat)> = rows
                    .iter()
                    .filter(|r| r.method == method)
                    .map(|r| (r.point as f64, pick(r)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(
                        series.iter().map(|(x, s)| (*x, s.mean)),
                        colour.stroke_width(2),
                    ))?
                    .label(method.label())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                    });
                chart.draw_series(
                    series
                        .iter()
                        .map(|(x, s)| Circle::new((*x, s.mean), 4, colour.filled())),
                )?;
                chart.draw_series(series.iter().filter(|(_, s)| s.n > 1).map(|(x, s)| {
                    ErrorBar::new_vertical(
                        *x,
                        s.mean - s.std,
                        s.mean,
                        s.mean + s.std,
                        colour.stroke_width(1),
                        8,
                    )
                }))?;
            }
            super::plots::legend(&mut chart, 13)?;
        }
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_is_the_grid_of_its_axes() {
        let train = Overrides::parse_pairs([("epochs", "3")]).unwrap();
        let axes = [
            "beta=0.5,1".to_string(),
            "widths=2.32.8, 4.32.8".to_string(),
        ];
        let sweep = Sweep::parse(&axes, &train).unwrap();
        assert_eq!(sweep.name.as_deref(), Some("sweep-beta-widths"));
        let labels: Vec<&str> = sweep.points.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "beta=0.5 widths=2.32.8",
                "beta=0.5 widths=4.32.8",
                "beta=1 widths=2.32.8",
                "beta=1 widths=4.32.8"
            ]
        );
        let last = &sweep.points[3].train;
        assert_eq!((last.beta, last.max_epochs), (Some(1.0), Some(3)));
        assert_eq!(
            last.widths.map(|w| w.to_string()).as_deref(),
            Some("4.32.8")
        );
    }

    #[test]
    fn a_bad_axis_is_named() {
        let train = Overrides::default();
        for (axis, says) in [
            ("beta", "SETTING=V1"),
            ("bta=1", "no training setting"),
            ("beta=1,x", "--beta"),
            ("beta=-1", "--beta"),
            ("beta=1,", "empty"),
        ] {
            let err = Sweep::parse(&[axis.to_string()], &train)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(says), "{axis}: {err}");
        }
    }

    #[test]
    fn ablations_use_the_papers_values() {
        let sweep = Sweep::ablation(Ablation::GroupSparsity, &Overrides::default()).unwrap();
        let weights: Vec<f64> = sweep
            .points
            .iter()
            .map(|p| p.train.group_sparsity.unwrap())
            .collect();
        assert_eq!(weights, [0.0, 1.0 / 512.0, 10.0 / 512.0, 100.0 / 512.0]);
        assert_eq!(
            Sweep::ablation(Ablation::Expressivity, &Overrides::default())
                .unwrap()
                .points
                .len(),
            12
        );
    }
}
