//! The paper's table: methods x (Concept, Compo, Recon), mean +- std over seeds, plus the
//! per-context and per-pair breakdown and the graph-recovery score the paper does not report.

use super::{Plan, budget_name};
use crate::evaluation::counterfactual::CounterfactualScores;
use crate::evaluation::metrics::Metrics;
use crate::evaluation::norm_statistics::NormStatistics;
use intervene::config::Method;
use intervene::data::Dataset;
use std::collections::BTreeMap;

/// Mean and sample standard deviation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Stat {
            mean,
            std: var.sqrt(),
            n,
        }
    }

    pub fn text(self) -> String {
        if self.n > 1 {
            format!("{:.3} ± {:.3}", self.mean, self.std)
        } else {
            format!("{:.3}", self.mean)
        }
    }
}

/// The counterfactual scores the tables show, by column: means over the single-concept contexts
/// and over the composed ones (docs/method.md#counterfactual-scores).
type CfColumn = (&'static str, fn(&CounterfactualScores) -> f64);
const CF_COLUMNS: [CfColumn; 10] = [
    ("error (single)", |c| c.single.error),
    ("do-nothing (single)", |c| c.single.do_nothing),
    ("ignore-image (single)", |c| c.single.ignore_image),
    ("error (composed)", |c| c.composed.error),
    ("do-nothing (composed)", |c| c.composed.do_nothing),
    ("ignore-image (composed)", |c| c.composed.ignore_image),
    ("untouched change", |c| c.single.untouched_change),
    ("touched change", |c| c.single.touched_change),
    ("composition", |c| c.composition),
    ("reversibility", |c| c.single.reversibility),
];

struct Row {
    method: Method,
    /// One per [`CF_COLUMNS`], where the runs were scored on counterfactuals.
    counterfactual: Option<Vec<Stat>>,
    concept: Stat,
    compo: Stat,
    recon: Option<Stat>,
    graph_auroc: Option<Stat>,
    per_context: BTreeMap<String, Stat>,
    per_pair: BTreeMap<String, Stat>,
}

pub struct Tables {
    rows: Vec<Row>,
    runs: Vec<(Method, u64, Metrics)>,
}

impl Tables {
    pub fn new(dataset: &dyn Dataset, all: &[(Method, u64, Metrics)]) -> Self {
        let mut methods: Vec<Method> = all.iter().map(|(m, _, _)| *m).collect();
        methods.dedup();
        let rows = methods
            .into_iter()
            .map(|method| {
                let runs: Vec<&Metrics> = all
                    .iter()
                    .filter(|(m, _, _)| *m == method)
                    .map(|(_, _, r)| r)
                    .collect();
                let stat = |f: &dyn Fn(&Metrics) -> Option<f64>| {
                    let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
                    (!v.is_empty()).then(|| Stat::of(&v))
                };
                let keyed = |f: &dyn Fn(&Metrics) -> &BTreeMap<String, f64>| {
                    f(runs[0])
                        .keys()
                        .map(|k| {
                            (
                                k.clone(),
                                Stat::of(&runs.iter().map(|r| f(r)[k]).collect::<Vec<_>>()),
                            )
                        })
                        .collect()
                };
                let counterfactual = CF_COLUMNS
                    .iter()
                    .map(|(_, column)| stat(&|r| r.counterfactual.as_ref().map(column)))
                    .collect();
                Row {
                    method,
                    counterfactual,
                    concept: stat(&|r| Some(r.concept.mean)).expect("at least one run"),
                    compo: stat(&|r| Some(r.compo.mean)).expect("at least one run"),
                    recon: stat(&|r| r.recon.as_ref().map(|x| x.in_distribution_bpd)),
                    graph_auroc: stat(&|r| {
                        r.learned_graph
                            .as_ref()
                            .and_then(|g| graph_auroc(g, &dataset.true_graph()?))
                    }),
                    per_context: keyed(&|r| &r.concept.per_context),
                    per_pair: keyed(&|r| &r.compo.per_pair),
                }
            })
            .collect();
        Self {
            rows,
            runs: all.to_vec(),
        }
    }

    pub fn markdown(&self, plan: &Plan) -> String {
        let seeds: Vec<String> = plan.seeds.iter().map(u64::to_string).collect();
        let mut out = format!(
            "# {} ({} budget, seeds {})\n\nLower is better: Concept and Compo are sliced Wasserstein distances, Recon is held-out negative ELBO in bits per pixel. Graph AUROC (higher is better) scores the learned concept graph against the true edges.\n\n",
            plan.dataset.name(),
            budget_name(plan.budget),
            seeds.join(",")
        );
        // Said from the scores themselves: `--report-only` reports what the runs were scored with.
        let recomputed = self
            .runs
            .iter()
            .filter(|(_, _, m)| m.settings.norm_statistics == NormStatistics::Recomputed)
            .count();
        if recomputed == self.runs.len() {
            out.push_str("Samples and edits decode with BatchNorm statistics recomputed for each context (`--norm-statistics recomputed`: on prior draws for samples, on encoded training images for edits), not the trained ones the paper samples with.\n\n");
        } else if recomputed > 0 {
            out.push_str("The scores mix runs decoded with BatchNorm statistics recomputed for each context and runs decoded with the trained ones: rerun without `--report-only` to score them alike.\n\n");
        }
        out.push_str("| method | Concept | Compo | Recon | graph AUROC |\n|---|---|---|---|---|\n");
        for r in &self.rows {
            let opt = |s: Option<Stat>| s.map_or("n/a".to_string(), Stat::text);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.method.label(),
                r.concept.text(),
                r.compo.text(),
                opt(r.recon),
                opt(r.graph_auroc)
            ));
        }
        for (title, pick) in [
            ("Concept per context", true),
            ("Compo per composed pair", false),
        ] {
            let names: Vec<&String> = if pick {
                self.rows[0].per_context.keys().collect()
            } else {
                self.rows[0].per_pair.keys().collect()
            };
            out.push_str(&format!(
                "\n## {title} (mean over seeds)\n\n| method | {} |\n|---|{}\n",
                names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" | "),
                "---|".repeat(names.len())
            ));
            for r in &self.rows {
                let map = if pick { &r.per_context } else { &r.per_pair };
                let cells: Vec<String> = names
                    .iter()
                    .map(|n| format!("{:.3}", map[*n].mean))
                    .collect();
                out.push_str(&format!(
                    "| {} | {} |\n",
                    r.method.label(),
                    cells.join(" | ")
                ));
            }
        }
        if self.rows.iter().any(|r| r.counterfactual.is_some()) {
            out.push_str(&format!(
                "\n## Counterfactuals\n\nEdits of held-out `obs` images into each context against the true counterfactuals the generator knows, as mean absolute differences of pixel values (lower is better): the model's edit (error), its reconstruction (do-nothing) and a random sample of the context (ignore-image); how much the edit moves pixels the intervention leaves alone (untouched change, single contexts) and those it changes (touched change); the reconstruction's distance from the image (composition) and the edit undone (reversibility). Definitions: docs/method.md#counterfactual-scores.\n\n| method | {} |\n|---|{}\n",
                CF_COLUMNS.map(|(name, _)| name).join(" | "),
                "---|".repeat(CF_COLUMNS.len())
            ));
            for r in &self.rows {
                let cells: Vec<String> = match &r.counterfactual {
                    Some(stats) => stats.iter().map(|s| s.text()).collect(),
                    None => vec!["n/a".into(); CF_COLUMNS.len()],
                };
                out.push_str(&format!(
                    "| {} | {} |\n",
                    r.method.label(),
                    cells.join(" | ")
                ));
            }
        }
        out.push_str("\nPlots in `plots/`, each titled and labelled: `samples-<method>.svg` (each row a context: 8 real held-out images, then 8 generated), `reconstructions-<method>.svg` (per training context a row of real images, then a row of their reconstructions), both embedding the unlabelled `.png` of the same name; `curves-<method>.svg` (training loss and validation negative ELBO per epoch, in nats per image, the lowest validation epoch circled); `graph-<method>.svg` (learned concept graph beside the true one, row = parent, column = child, darker is stronger; the learned one's colours span 0 to its own largest entry); `counterfactuals-<method>.svg` (per context, held-out `obs` images, their true counterfactuals and the model's).\n");
        out
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(
            "method,seeds,concept_mean,concept_std,compo_mean,compo_std,recon_mean,recon_std,graph_auroc_mean,graph_auroc_std,cf_single_mean,cf_single_std,cf_composed_mean,cf_composed_std\n",
        );
        for r in &self.rows {
            let opt = |s: Option<Stat>| {
                s.map_or(",".to_string(), |s| format!("{:.5},{:.5}", s.mean, s.std))
            };
            let cf = |column: usize| opt(r.counterfactual.as_ref().map(|c| c[column]));
            out.push_str(&format!(
                "{},{},{:.5},{:.5},{:.5},{:.5},{},{},{},{}\n",
                r.method.name(),
                r.concept.n,
                r.concept.mean,
                r.concept.std,
                r.compo.mean,
                r.compo.std,
                opt(r.recon),
                opt(r.graph_auroc),
                cf(0),
                cf(3)
            ));
        }
        out
    }

    /// Long format: one line per method, seed and context or pair, with its SWD and, where
    /// scored, its counterfactual error.
    pub fn breakdown_csv(&self) -> String {
        let mut out = String::from("method,seed,kind,name,swd,counterfactual_error\n");
        for (method, seed, m) in &self.runs {
            for (kind, map) in [
                ("context", &m.concept.per_context),
                ("pair", &m.compo.per_pair),
            ] {
                for (name, v) in map {
                    let cf = m
                        .counterfactual
                        .as_ref()
                        .and_then(|c| c.per_context.get(name))
                        .map_or(String::new(), |c| format!("{:.5}", c.error));
                    out.push_str(&format!(
                        "{},{seed},{kind},{name},{v:.5},{cf}\n",
                        method.name()
                    ));
                }
            }
        }
        out
    }
}

/// Area under the ROC curve of off-diagonal edge weights against the true edges (ties count
/// half). `None` when the true graph has no edges or no non-edges.
pub fn graph_auroc(learned: &[Vec<f32>], truth: &[Vec<f32>]) -> Option<f64> {
    let mut positives = Vec::new();
    let mut negatives = Vec::new();
    for (p, row) in truth.iter().enumerate() {
        for (c, &edge) in row.iter().enumerate() {
            if p != c {
                if edge > 0.0 {
                    positives.push(learned[p][c])
                } else {
                    negatives.push(learned[p][c])
                }
            }
        }
    }
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let wins: f64 = positives
        .iter()
        .flat_map(|&p| {
            negatives.iter().map(move |&n| {
                if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    Some(wins / (positives.len() * negatives.len()) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::ExperimentSettings;

    /// Scores of one run that only their BatchNorm statistics tell apart.
    fn scored(statistics: &str) -> Metrics {
        serde_json::from_value(serde_json::json!({
            "concept": {"mean": 0.2, "per_context": {"obs": 0.2}},
            "compo": {"mean": 0.3, "per_pair": {"quad1+quad2": 0.3}},
            "recon": null,
            "method": "cm",
            "dataset": "quad-dependent",
            "settings": {"samples": 10, "projections": 5, "seed": 0, "batch_size": 4,
                "beta": 1.0, "norm_statistics": statistics},
            "learned_graph": null,
            "true_graph": null
        }))
        .unwrap()
    }

    /// The table says which statistics its samples used, from the scores rather than the flags.
    #[test]
    fn the_table_names_the_norm_statistics_its_runs_were_scored_with() {
        let plan = Plan::new(&ExperimentSettings::default()).unwrap();
        let dataset = plan.dataset;
        let markdown = |statistics: [&str; 2]| {
            let runs: Vec<(Method, u64, Metrics)> = (0..2)
                .map(|seed| (Method::Cm, seed, scored(statistics[seed as usize])))
                .collect();
            Tables::new(dataset, &runs).markdown(&plan)
        };
        let trained = markdown(["trained", "trained"]);
        assert!(!trained.contains("recomputed"));
        let recomputed = markdown(["recomputed", "recomputed"]);
        assert!(
            recomputed.contains("Samples and edits decode with BatchNorm statistics recomputed")
        );
        let mixed = markdown(["recomputed", "trained"]);
        assert!(mixed.contains("mix runs decoded"));
    }

    #[test]
    fn stat_uses_the_sample_standard_deviation() {
        let s = Stat::of(&[1.0, 2.0, 3.0]);
        assert_eq!((s.mean, s.std, s.n), (2.0, 1.0, 3));
        assert_eq!(Stat::of(&[5.0]).text(), "5.000");
    }

    /// What the graph score can say about quad (docs/method.md#graph-auroc): a causal layer
    /// whose `W_obs` blocks hold the true graph scores 1, one holding its transpose (every edge
    /// reversed) 0.375, since every quad edge runs from a later concept to an earlier one.
    #[test]
    fn the_true_quad_graph_scores_one_and_its_reversal_three_eighths() {
        use intervene::data::DatasetKind;
        use intervene::model::context_module::graph_from_weights;
        let truth = DatasetKind::QuadDependent.dataset().true_graph().unwrap();
        let (k, w) = (truth.len(), 2);
        let weights_of = |graph: &dyn Fn(usize, usize) -> f32| {
            let n = k * w;
            let mut weights = vec![0f32; n * n];
            for (at, value) in weights.iter_mut().enumerate() {
                let (row, column) = (at / n, at % n);
                *value = graph(row / w, column / w);
            }
            graph_from_weights(&weights, k, w)
        };
        let learned = weights_of(&|parent, child| truth[parent][child]);
        assert_eq!(graph_auroc(&learned, &truth), Some(1.0));
        let reversed = weights_of(&|parent, child| truth[child][parent]);
        assert_eq!(graph_auroc(&reversed, &truth), Some(0.375));
    }

    #[test]
    fn auroc_is_one_for_a_perfect_ranking_and_half_for_ties() {
        let truth = vec![
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 0.0],
            vec![1.0, 0.0, 0.0],
        ];
        let perfect = vec![
            vec![0.0, 0.9, 0.1],
            vec![0.2, 0.0, 0.1],
            vec![0.8, 0.3, 0.0],
        ];
        assert_eq!(graph_auroc(&perfect, &truth), Some(1.0));
        let flat = vec![vec![0.5; 3]; 3];
        assert_eq!(graph_auroc(&flat, &truth), Some(0.5));
        assert_eq!(graph_auroc(&flat, &vec![vec![0.0; 3]; 3]), None);
    }
}
