//! The experiment's plots, each readable on its own. Training curves and concept-graph heatmaps
//! are SVG drawn with `plotters` (titles, axes with units, tick labels, legends, colour scales);
//! SVG leaves the text to the viewer, so nothing here needs a font. Image grids are PNG, pixel for
//! pixel what the data and the model give, each with an SVG beside it that embeds the same PNG and
//! names its rows and columns.

use super::Plan;
use crate::evaluation::metrics::{Metrics, generate};
use crate::evaluation::norm_statistics::{EditPopulation, NormStatistics, edit_decoder, sampler};
use crate::files::atomic_write;
use crate::image_grid::{grid_rgb, write_png};
use crate::model_source::Source;
use crate::training::run_folder::{EpochRow, RunFolder};
use anyhow::{Context as _, Result};
use base64::Engine as _;
use burn::module::Module;
use burn::tensor::Device;
use intervene::config::{ImageShape, Method};
use intervene::context::Context;
use intervene::data::Split;
use intervene::image_grid::GAP;
use intervene::model::Model;
use intervene::rng::Rng;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

const PER_SIDE: usize = 8;

/// Every plot for the first seed of each method: `samples-<method>.png`/`.svg`,
/// `reconstructions-<method>.png`/`.svg`, `counterfactuals-<method>.png`/`.svg`, `curves-<method>.svg` and `graph-<method>.svg`.
pub fn write_all(plan: &Plan, all: &[(Method, u64, Metrics)], out: &Path) -> Result<()> {
    let device = Device::flex();
    let seed = plan.seeds[0];
    let concepts = plan.dataset.concepts();
    for (method, _, metrics) in all.iter().filter(|(_, s, _)| *s == seed) {
        let dir = plan.run_dir(super::Run {
            point: 0,
            seed,
            method: *method,
        });
        let model = Source::open(&dir)?.load(&device)?.model.valid();
        let name = method.name();
        // Decoded as the runs were scored.
        let statistics = plan.eval_settings(seed).norm_statistics;
        samples(
            plan,
            (&model, seed, statistics),
            &out.join(format!("samples-{name}.png")),
            &device,
        )?;
        if model.has_encoder() {
            reconstructions(
                plan,
                &model,
                &out.join(format!("reconstructions-{name}.png")),
                &device,
            )?;
            counterfactuals(
                plan,
                (&model, statistics),
                &out.join(format!("counterfactuals-{name}.png")),
                &device,
            )?;
        }
        curves(
            &RunFolder::new(&dir),
            *method,
            &out.join(format!("curves-{name}.svg")),
        )?;
        if let Some(learned) = &metrics.learned_graph {
            // Where no true graph is known, its panel shows no edges (as MNIST's always has).
            let k = learned.len();
            let truth = metrics.true_graph.clone();
            graph(
                learned,
                &truth.unwrap_or_else(|| vec![vec![0.0; k]; k]),
                &concepts,
                method.label(),
                &out.join(format!("graph-{name}.svg")),
            )?;
        }
    }
    Ok(())
}

fn contexts(plan: &Plan) -> Vec<Context> {
    let k = plan.dataset.concepts().len();
    Context::training_contexts(k)
        .into_iter()
        .chain(plan.dataset.composed_contexts())
        .collect()
}

/// What an image plot's title says of the BatchNorm statistics it was decoded with.
fn titled(statistics: NormStatistics) -> &'static str {
    match statistics {
        NormStatistics::Trained => "",
        NormStatistics::Recomputed => " (BatchNorm statistics recomputed)",
    }
}

/// One row per context: real images, then generated ones, sampled as the run was scored.
fn samples(
    plan: &Plan,
    (model, seed, statistics): (&Model, u64, NormStatistics),
    path: &Path,
    device: &Device,
) -> Result<()> {
    let shape = model.config.image;
    let mut tiles = Vec::new();
    for context in contexts(plan) {
        let sampler = sampler(model, context, statistics, seed, device);
        tiles.extend(plan.dataset.images(
            context,
            PER_SIDE,
            shape.size,
            Split::HeldOut,
            &mut Rng::new(1),
        ));
        tiles.extend(generate(
            &sampler,
            context,
            PER_SIDE,
            &mut Rng::new(2),
            PER_SIDE,
            device,
        ));
    }
    let concepts = plan.dataset.concepts();
    labelled_grid(
        path,
        &tiles,
        (shape, 2 * PER_SIDE),
        &GridLabels {
            title: format!(
                "{}: real and generated images per context{}",
                model.config.method.label(),
                titled(statistics)
            ),
            tile: shape.size,
            rows: contexts(plan).iter().map(|c| c.name(&concepts)).collect(),
            column_groups: vec![
                (0, PER_SIDE, "real (held-out data)".into()),
                (PER_SIDE, PER_SIDE, "generated".into()),
            ],
        },
    )
}

/// Per training context: a row of real images, then a row of their reconstructions (`z = mu`).
fn reconstructions(plan: &Plan, model: &Model, path: &Path, device: &Device) -> Result<()> {
    let shape = model.config.image;
    let encoder = model.encoder.as_ref().expect("checked by the caller");
    let mut tiles = Vec::new();
    for context in Context::training_contexts(plan.dataset.concepts().len()) {
        let real = plan.dataset.images(
            context,
            PER_SIDE,
            shape.size,
            Split::HeldOut,
            &mut Rng::new(3),
        );
        let images = model.images(real.clone(), device);
        let (mu, _) = encoder.forward(images);
        let decode_in = if model.config.method.uses_context_labels() {
            context
        } else {
            Context::OBS
        };
        let recon: Vec<f32> = model
            .generate(mu, decode_in)
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 images");
        tiles.extend(real);
        tiles.extend(recon);
    }
    let concepts = plan.dataset.concepts();
    labelled_grid(
        path,
        &tiles,
        (shape, PER_SIDE),
        &GridLabels {
            title: format!(
                "{}: held-out images and their reconstructions (z = mean)",
                model.config.method.label()
            ),
            tile: shape.size,
            rows: Context::training_contexts(concepts.len())
                .iter()
                .flat_map(|c| {
                    let name = c.name(&concepts);
                    [format!("{name}: real"), format!("{name}: reconstructed")]
                })
                .collect(),
            column_groups: Vec::new(),
        },
    )
}

/// Images per group in a counterfactual row.
const CF_PER_GROUP: usize = 4;

/// Per single and composed context: held-out `obs` images, their true counterfactuals in that
/// context, and the model's. Nothing where the dataset knows no true counterfactuals.
fn counterfactuals(
    plan: &Plan,
    (model, statistics): (&Model, NormStatistics),
    path: &Path,
    device: &Device,
) -> Result<()> {
    let shape = model.config.image;
    let n = CF_PER_GROUP;
    if !plan.dataset.draws_share_noise() {
        return Ok(());
    }
    let population = EditPopulation::new(statistics, model, plan.dataset, Context::OBS, device)?;
    let factual = edit_decoder(model, population.as_ref(), Context::OBS, device);
    let edited: Vec<Context> = contexts(plan).into_iter().filter(|c| !c.is_obs()).collect();
    let mut tiles = Vec::new();
    for &context in &edited {
        let editor = intervene::counterfactual::Editor {
            factual: &factual,
            counterfactual: &edit_decoder(model, population.as_ref(), context, device),
        };
        let Some((factual, truth)) =
            plan.dataset
                .counterfactuals(Context::OBS, context, n, &mut Rng::new(4))
        else {
            return Ok(());
        };
        let image = factual.render(.., shape.size);
        let edit = intervene::counterfactual::Edit::intervening(context);
        let model_cf = intervene::counterfactual::edit(editor, image.clone(), &edit, device)?
            .counterfactual
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("f32 images");
        tiles.extend(image);
        tiles.extend(truth.render(.., shape.size));
        tiles.extend(model_cf);
    }
    let concepts = plan.dataset.concepts();
    labelled_grid(
        path,
        &tiles,
        (shape, 3 * n),
        &GridLabels {
            title: format!(
                "{}: held-out obs images edited into each context{}",
                model.config.method.label(),
                titled(statistics)
            ),
            tile: shape.size,
            rows: edited
                .iter()
                .map(|c| format!("do({})", c.name(&concepts)))
                .collect(),
            column_groups: vec![
                (0, n, "image (obs)".into()),
                (n, n, "true counterfactual".into()),
                (2 * n, n, "model's counterfactual".into()),
            ],
        },
    )
}

/// Names for the rows and column groups of a grid laid out by [`grid_rgb`].
struct GridLabels {
    title: String,
    /// Tile side in pixels.
    tile: usize,
    rows: Vec<String>,
    /// `(first column, columns, header)`.
    column_groups: Vec<(usize, usize, String)>,
}

/// Writes `tiles` as a PNG grid of `columns` (at `png_path`), and beside it an SVG that embeds
/// that same PNG (shown with its pixels kept sharp) and labels it.
fn labelled_grid(
    png_path: &Path,
    tiles: &[f32],
    (shape, columns): (ImageShape, usize),
    labels: &GridLabels,
) -> Result<()> {
    let (rgb, w, h) = grid_rgb(tiles, shape, columns);
    write_png(png_path, &rgb, w, h)?;
    let png = std::fs::read(png_path)
        .with_context(|| format!("cannot read back {}", png_path.display()))?;
    write_text(
        &png_path.with_extension("svg"),
        &grid_svg(&png, (w, h), labels),
    )
}

/// The SVG text of a labelled grid: a title, column-group headers above, a name left of each row.
fn grid_svg(png: &[u8], (w, h): (usize, usize), labels: &GridLabels) -> String {
    // Small tiles are shown twice as large, kept sharp by `image-rendering` (`pixelated` for
    // browsers, SVG 1.1's `optimizeSpeed` for the rest).
    let scale = if labels.tile <= 32 { 2 } else { 1 };
    let (gw, gh) = (w * scale, h * scale);
    let step = (labels.tile + GAP) * scale;
    // Text widths are not known without a font; 8 px a character is ample for 13 px sans-serif.
    let chars = |s: &str| s.chars().count();
    let left = 16 + 8 * labels.rows.iter().map(|r| chars(r)).max().unwrap_or(0);
    let top = if labels.column_groups.is_empty() {
        36
    } else {
        60
    };
    let width = (left + gw + 12).max(24 + 9 * chars(&labels.title));
    let height = top + gh + 12;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">
<rect width="{width}" height="{height}" fill="white"/>
<text x="12" y="22" font-size="16">{}</text>
"#,
        escape(&labels.title)
    );
    for (first, count, header) in &labels.column_groups {
        let x = left + GAP * scale + first * step + (count * step - GAP * scale) / 2;
        svg.push_str(&format!(
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            top - 10,
            escape(header)
        ));
    }
    for (r, name) in labels.rows.iter().enumerate() {
        let y = top + GAP * scale + r * step + labels.tile * scale / 2;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{y}\" dy=\"0.35em\" text-anchor=\"end\">{}</text>\n",
            left - 8,
            escape(name)
        ));
    }
    svg.push_str(&format!(
        "<image x=\"{left}\" y=\"{top}\" width=\"{gw}\" height=\"{gh}\" image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" preserveAspectRatio=\"none\" xlink:href=\"data:image/png;base64,{}\"/>\n</svg>\n",
        base64::engine::general_purpose::STANDARD.encode(png)
    ));
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Writes a text file, creating its folder.
fn write_text(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    atomic_write(path, text.as_bytes())
}

const TRAINING: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(255, 127, 14);
const VALIDATION_LABEL: &str = "validation negative ELBO (held-out images)";

/// What the curves of one run are called.
struct CurveText {
    title: String,
    /// The training series' legend entry.
    training: String,
    y_desc: String,
}

/// Training loss and validation negative ELBO per epoch, from the run's `metrics.csv`, named
/// after what its `config.json` says the training loss adds to the negative ELBO.
fn curves(run: &RunFolder, method: Method, path: &Path) -> Result<()> {
    let rows = run.read_metrics()?;
    let mut text = CurveText {
        title: format!("{}: training curves", method.label()),
        training: "training loss (mean over the epoch's batches)".into(),
        y_desc: "negative ELBO (nats per image)".into(),
    };
    if let Ok(config) = run.read_config() {
        let penalty = if method == Method::BetaTcvae && config.tc_beta != 1.0 {
            Some("total-correlation penalty")
        } else if method.has_context_module()
            && (config.group_sparsity > 0.0 || config.causal_l2 > 0.0)
        {
            Some("causal-layer penalties")
        } else {
            None
        };
        if let Some(penalty) = penalty {
            text.training =
                format!("training loss incl. {penalty} (mean over the epoch's batches)");
        }
        if config.beta != 1.0 {
            text.y_desc = format!(
                "negative ELBO, KL weighted by beta = {} (nats per image)",
                config.beta
            );
        }
    }
    draw_curves(&rows, &text, path)
}

/// Both series on one scale, epochs counted from 1 (as the training log does; `metrics.csv`
/// counts from 0). Non-finite values are left out, which breaks the line there; the lowest
/// validation value is circled.
fn draw_curves(rows: &[EpochRow], text: &CurveText, path: &Path) -> Result<()> {
    let series = |value: fn(&EpochRow) -> f64| -> Vec<Option<(i32, f64)>> {
        rows.iter()
            .map(|r| {
                let v = value(r);
                v.is_finite().then_some((r.epoch as i32 + 1, v))
            })
            .collect()
    };
    let training = series(|r| r.train_loss);
    let validation = series(|r| r.valid_negative_elbo);
    let values: Vec<f64> = training
        .iter()
        .chain(&validation)
        .flatten()
        .map(|p| p.1)
        .collect();
    let last_epoch = rows.iter().map(|r| r.epoch as i32 + 1).max().unwrap_or(1);
    let (lo, hi) = padded_range(&values);
    let decimals = tick_decimals(hi - lo);
    // The first of equal lowest values: training keeps weights only on a strict improvement.
    let best =
        validation
            .iter()
            .flatten()
            .fold(None, |best: Option<(i32, f64)>, &(e, v)| match best {
                Some((_, b)) if b <= v => best,
                _ => Some((e, v)),
            });

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 520)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&text.title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                // Whole epochs, with one spare on each side.
                (0..last_epoch + 1).with_key_points(epoch_ticks(last_epoch)),
                lo..hi,
            )?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(&text.y_desc)
            .y_label_formatter(&|v| format!("{v:.decimals$}"))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .draw()?;
        for (points, colour, label) in [
            (&training, TRAINING, text.training.as_str()),
            (&validation, VALIDATION, VALIDATION_LABEL),
        ] {
            let label = if !rows.is_empty() && points.iter().all(Option::is_none) {
                format!("{label}: no finite values")
            } else {
                label.to_string()
            };
            // The legend entry on its own, so that it shows whatever the data are.
            chart
                .draw_series(std::iter::empty::<Circle<(i32, f64), i32>>())?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                });
            for stretch in points.split(Option::is_none) {
                chart.draw_series(LineSeries::new(
                    stretch.iter().flatten().copied(),
                    colour.stroke_width(2),
                ))?;
            }
            chart.draw_series(
                points
                    .iter()
                    .flatten()
                    .map(|&p| Circle::new(p, 3, colour.filled())),
            )?;
        }
        if let Some((epoch, value)) = best {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (epoch, value),
                    8,
                    BLACK.stroke_width(2),
                )))?
                .label(format!("lowest validation: epoch {epoch}, {value:.2}"))
                .legend(|(x, y)| Circle::new((x + 12, y), 6, BLACK.stroke_width(2)));
        }
        if values.is_empty() {
            let note = if rows.is_empty() {
                "no epochs recorded yet"
            } else {
                "no finite values recorded"
            };
            centred_note(
                &mut chart,
                note,
                ((last_epoch + 1) / 2, (lo + hi) / 2.0),
                16,
            )?;
        }
        legend(&mut chart, 14)?;
        root.present()?;
    }
    write_text(path, &svg)
}

/// Training curves of several runs on shared axes, one colour per run: training loss,
/// validation negative ELBO and its two terms (reconstruction, KL), each against the epoch.
/// Runs whose `metrics.csv` predates the terms leave those panels without their line.
pub fn compare_runs(runs: &[(String, Vec<EpochRow>)], path: &Path) -> Result<()> {
    type Value = fn(&EpochRow) -> Option<f64>;
    let panels: [(&str, Value); 4] = [
        ("training loss (nats per image)", |r| Some(r.train_loss)),
        ("validation negative ELBO (nats per image)", |r| {
            Some(r.valid_negative_elbo)
        }),
        ("validation reconstruction (nats per image)", |r| {
            r.valid_reconstruction
        }),
        ("validation KL (nats per image)", |r| r.valid_kl),
    ];
    let last_epoch = runs
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.epoch as i32 + 1))
        .max()
        .unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 900)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("training curves of {} runs", runs.len()),
            ("sans-serif", 20),
        )?;
        for (area, (title, value)) in root.split_evenly((2, 2)).iter().zip(panels) {
            let series: Vec<Vec<(i32, f64)>> = runs
                .iter()
                .map(|(_, rows)| {
                    rows.iter()
                        .filter_map(|r| {
                            value(r)
                                .filter(|v| v.is_finite())
                                .map(|v| (r.epoch as i32 + 1, v))
                        })
                        .collect()
                })
                .collect();
            let values: Vec<f64> = series.iter().flatten().map(|p| p.1).collect();
            let (lo, hi) = padded_range(&values);
            let decimals = tick_decimals(hi - lo);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 15))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(
                    (0..last_epoch + 1).with_key_points(epoch_ticks(last_epoch)),
                    lo..hi,
                )?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_label_formatter(&|v| format!("{v:.decimals$}"))
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()?;
            for (i, ((label, _), points)) in runs.iter().zip(&series).enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        colour.stroke_width(2),
                    ))?
                    .label(label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(3))
                    });
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, colour.filled())))?;
            }
            if values.is_empty() {
                let middle = ((last_epoch + 1) / 2, (lo + hi) / 2.0);
                centred_note(&mut chart, "not recorded by these runs", middle, 15)?;
            }
            legend(&mut chart, 12)?;
        }
        root.present()?;
    }
    write_text(path, &svg)
}

/// `text` centred on `at`, for a chart with nothing to draw.
fn centred_note<'a, CT: CoordTranslate<From = (i32, f64)>>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    text: &str,
    at: (i32, f64),
    size: u32,
) -> Result<()> {
    chart.draw_series(std::iter::once(Text::new(
        text.to_string(),
        at,
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    )))?;
    Ok(())
}

/// The series' legend in a box at the upper right, as every chart here has it.
pub(super) fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    size: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin(12)
        .label_font(("sans-serif", size))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// The values' range, with room above for the legend; `0..1` when there are none.
fn padded_range(values: &[f64]) -> (f64, f64) {
    let Some(lo) = values.iter().copied().reduce(f64::min) else {
        return (0.0, 1.0);
    };
    let hi = values.iter().copied().fold(lo, f64::max);
    let span = if hi > lo {
        hi - lo
    } else {
        (hi.abs() * 0.1).max(1.0)
    };
    (lo - 0.08 * span, hi + 0.35 * span)
}

/// Decimals enough to tell apart the ticks of an axis spanning `span`.
fn tick_decimals(span: f64) -> usize {
    match span {
        s if s >= 20.0 => 0,
        s if s >= 2.0 => 1,
        s if s >= 0.2 => 2,
        _ => 3,
    }
}

/// Epoch ticks: 1, then multiples of a round step, at most about a dozen.
fn epoch_ticks(last: i32) -> Vec<i32> {
    let step = [1, 2, 5]
        .iter()
        .flat_map(|&m| (0..8).map(move |p| m * 10i32.pow(p)))
        .filter(|&s| last / s <= 12)
        .min()
        .unwrap_or(1);
    (1..=last).filter(|&e| e == 1 || e % step == 0).collect()
}

/// The learned graph beside the true one, as heatmaps with a row per parent and a column per
/// child. The learned one's colours span 0 to its own largest entry.
fn graph(
    learned: &[Vec<f32>],
    truth: &[Vec<f32>],
    concepts: &[String],
    method: &str,
    path: &Path,
) -> Result<()> {
    let k = learned.len().max(truth.len()).max(1);
    let names: Vec<String> = (0..k)
        .map(|i| concepts.get(i).cloned().unwrap_or_else(|| format!("#{i}")))
        .collect();
    let largest = learned
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0f32, f32::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1060, 640)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            &format!("{method}: concept graph (row = parent, column = child)"),
            ("sans-serif", 20),
        )?;
        let (left, right) = root.split_horizontally(530);
        heatmap(
            &left,
            &Heatmap {
                title: "learned",
                matrix: learned,
                names: &names,
                top: if largest > 0.0 { largest as f64 } else { 1.0 },
                decimals: 2,
                scale_desc: "mean |weight| of the causal block (0 to this graph's largest)",
                scale_ticks: 6,
                scale_decimals: 2,
            },
        )?;
        heatmap(
            &right,
            &Heatmap {
                title: "true",
                matrix: truth,
                names: &names,
                top: 1.0,
                decimals: 0,
                scale_desc: "edge in the generating graph (1) or none (0)",
                scale_ticks: 3,
                scale_decimals: 1,
            },
        )?;
        root.present()?;
    }
    write_text(path, &svg)
}

struct Heatmap<'a> {
    title: &'a str,
    /// `[parent][child]`.
    matrix: &'a [Vec<f32>],
    names: &'a [String],
    /// The value coloured darkest.
    top: f64,
    /// Decimals of the value written in each cell.
    decimals: usize,
    scale_desc: &'a str,
    /// About how many ticks the colour scale has, and their decimals.
    scale_ticks: usize,
    scale_decimals: usize,
}

/// Width of the heatmaps' row-label area, in pixels.
const LABELS: u32 = 110;

/// White (0) to dark blue (`top` and above); grey for a non-finite value.
fn shade(value: f64, top: f64) -> RGBColor {
    if !value.is_finite() {
        return RGBColor(190, 190, 190);
    }
    let t = (value / top).clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
    RGBColor(mix(247, 8), mix(251, 48), mix(255, 107))
}

/// One heatmap with its values written in the cells, and a colour scale below it.
fn heatmap(area: &DrawingArea<SVGBackend<'_>, Shift>, map: &Heatmap) -> Result<()> {
    let k = map.names.len() as i32;
    let (_, height) = area.dim_in_pixel();
    let (cells_area, scale_area) = area.split_vertically(height - 90);
    // Parent `p` is row `k - 1 - p` from the bottom, so the first concept's row is at the top.
    let name = |i: i32| map.names.get(i as usize).cloned().unwrap_or_default();
    let child_name = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(c) => name(*c),
        _ => String::new(),
    };
    let parent_name = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(y) => name(k - 1 - y),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(&cells_area)
        .caption(map.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(LABELS)
        // Integer ranges include their end: `0..k - 1` is the `k` concepts.
        .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(k as usize)
        .y_labels(k as usize)
        .x_desc("child")
        .y_desc("parent")
        .x_label_formatter(&child_name)
        .y_label_formatter(&parent_name)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;
    let cells: Vec<(i32, i32, f64)> = map
        .matrix
        .iter()
        .zip(0..)
        .flat_map(|(row, p)| {
            row.iter()
                .zip(0..)
                .map(move |(&v, c)| (k - 1 - p, c, v as f64))
        })
        .collect();
    chart.draw_series(cells.iter().map(|&(y, c, v)| {
        Rectangle::new(
            [
                (SegmentValue::Exact(c), SegmentValue::Exact(y)),
                (SegmentValue::Exact(c + 1), SegmentValue::Exact(y + 1)),
            ],
            shade(v, map.top).filled(),
        )
    }))?;
    chart.draw_series(cells.iter().map(|&(y, c, v)| {
        let dark = v.is_finite() && v / map.top > 0.55;
        let label = if v.is_finite() {
            format!("{v:.prec$}", prec = map.decimals)
        } else {
            "n/a".to_string()
        };
        Text::new(
            label,
            (SegmentValue::CenterOf(c), SegmentValue::CenterOf(y)),
            ("sans-serif", 13)
                .into_font()
                .color(if dark { &WHITE } else { &BLACK })
                .pos(Pos::new(HPos::Center, VPos::Center)),
        )
    }))?;

    // The colour scale, under the cells and as wide.
    let mut scale = ChartBuilder::on(&scale_area)
        .margin_left(12)
        .margin_right(12)
        .margin_bottom(8)
        .x_label_area_size(45)
        .y_label_area_size(LABELS)
        .build_cartesian_2d(0.0..map.top, 0.0..1.0)?;
    scale
        .configure_mesh()
        .disable_mesh()
        .disable_y_axis()
        .x_labels(map.scale_ticks)
        .y_labels(0)
        .x_desc(map.scale_desc)
        .x_label_formatter(&|v| format!("{v:.prec$}", prec = map.scale_decimals))
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()?;
    const STEPS: usize = 64;
    scale.draw_series((0..STEPS).map(|i| {
        let (a, b) = (i as f64 / STEPS as f64, (i + 1) as f64 / STEPS as f64);
        Rectangle::new(
            [(a * map.top, 0.0), (b * map.top, 1.0)],
            shade((a + b) / 2.0 * map.top, map.top).filled(),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contents of every `<text>` element, XML entities decoded.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                let body = body[..body.find("</text>")?].trim();
                Some(
                    [
                        ("&lt;", "<"),
                        ("&gt;", ">"),
                        ("&quot;", "\""),
                        ("&apos;", "'"),
                    ]
                    .iter()
                    .fold(body.to_string(), |t, (from, to)| t.replace(from, to))
                    .replace("&amp;", "&"),
                )
            })
            .collect()
    }

    fn row(epoch: usize, train_loss: f64, valid_negative_elbo: f64) -> EpochRow {
        EpochRow {
            epoch,
            train_loss,
            valid_negative_elbo,
            learning_rate: 1e-3,
            skipped_batches: 0,
            images_per_second: 100.0,
            seconds: 1.0,
            valid_reconstruction: None,
            valid_kl: None,
            valid_per_context: Vec::new(),
        }
    }

    fn text() -> CurveText {
        CurveText {
            title: "CM (end-to-end): training curves".into(),
            training: "training loss (mean over the epoch's batches)".into(),
            y_desc: "negative ELBO (nats per image)".into(),
        }
    }

    fn curves_texts(rows: &[EpochRow], name: &str) -> (String, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name).join("curves-cm.svg");
        draw_curves(rows, &text(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let texts = texts(&svg);
        for label in [
            "CM (end-to-end): training curves",
            "epoch",
            "negative ELBO (nats per image)",
        ] {
            assert!(
                texts.iter().any(|t| t == label),
                "no {label:?} in {texts:?}"
            );
        }
        (svg, texts)
    }

    #[test]
    fn curves_skip_non_finite_values_and_circle_the_lowest_validation_epoch() {
        let rows = [
            row(0, 900.0, 850.0),
            row(1, 700.0, f64::NAN),
            row(2, 650.0, 800.0),
            row(3, f64::INFINITY, 810.0),
        ];
        let (svg, texts) = curves_texts(&rows, "nan");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        for label in [
            "training loss (mean over the epoch's batches)",
            VALIDATION_LABEL,
            "lowest validation: epoch 3, 800.00",
            "1",
            "4",
        ] {
            assert!(
                texts.iter().any(|t| t == label),
                "no {label:?} in {texts:?}"
            );
        }
        assert!(
            !texts.iter().any(|t| t == "0" || t == "5"),
            "epoch ticks 1 to 4: {texts:?}"
        );
        // Four training points less one, four validation points less one, and the best's ring.
        assert_eq!(svg.matches("<circle").count(), 3 + 3 + 1 + 1, "{svg}");
    }

    #[test]
    fn curves_of_a_single_epoch_show_its_points() {
        let (svg, texts) = curves_texts(&[row(0, 500.0, 520.0)], "single");
        for label in [
            "training loss (mean over the epoch's batches)",
            VALIDATION_LABEL,
            "lowest validation: epoch 1, 520.00",
            "1",
        ] {
            assert!(
                texts.iter().any(|t| t == label),
                "no {label:?} in {texts:?}"
            );
        }
        assert!(!svg.contains("NaN"), "{svg}");
        assert!(svg.matches("<circle").count() >= 2, "{svg}");
    }

    #[test]
    fn curves_of_no_epochs_say_so() {
        let (_, texts) = curves_texts(&[], "empty");
        assert!(
            texts.iter().any(|t| t == "no epochs recorded yet"),
            "{texts:?}"
        );
        let (_, texts) = curves_texts(&[row(0, f64::NAN, f64::NAN)], "all-nan");
        assert!(
            texts.iter().any(|t| t == "no finite values recorded"),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t == &format!("{VALIDATION_LABEL}: no finite values")),
            "{texts:?}"
        );
    }

    #[test]
    fn epoch_ticks_start_at_one_and_stay_few() {
        assert_eq!(epoch_ticks(1), [1]);
        assert_eq!(epoch_ticks(4), [1, 2, 3, 4]);
        assert_eq!(epoch_ticks(30), [1, 5, 10, 15, 20, 25, 30]);
        assert!(epoch_ticks(1000).len() <= 13);
    }

    #[test]
    fn graph_names_the_concepts_and_scales_the_learned_one_to_its_largest() {
        let names: Vec<String> = ["quad1", "quad2", "size"].map(String::from).to_vec();
        let learned = vec![
            vec![0.0, 0.1, 0.2],
            vec![0.4, 0.0, f32::NAN],
            vec![0.05, 0.1, 0.0],
        ];
        let truth = vec![vec![0.0; 3], vec![1.0, 0.0, 0.0], vec![0.0; 3]];
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("graph-cm.svg");
        graph(&learned, &truth, &names, "CM (end-to-end)", &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let texts = texts(&svg);
        for name in &names {
            // A row and a column label in each of the two heatmaps.
            assert_eq!(
                texts.iter().filter(|t| *t == name).count(),
                4,
                "{name}: {texts:?}"
            );
        }
        for label in ["learned", "true", "parent", "child", "0.40", "n/a"] {
            assert!(
                texts.iter().any(|t| t == label),
                "no {label:?} in {texts:?}"
            );
        }
        assert!(!svg.contains("NaN"), "{svg}");
        // The learned 0.4 and the true edge are both the darkest colour.
        let darkest = "#08306B";
        assert!(
            svg.matches(&format!("fill=\"{darkest}\"")).count() >= 2,
            "{svg}"
        );
    }

    #[test]
    fn grid_svg_embeds_the_png_and_labels_rows_and_columns() {
        let png = b"\x89PNG fake bytes";
        let labels = GridLabels {
            title: "CM: samples".into(),
            tile: 32,
            rows: vec!["obs".into(), "quad1+quad2".into(), "a<b&c".into()],
            column_groups: vec![
                (0, 8, "real (held-out data)".into()),
                (8, 8, "generated".into()),
            ],
        };
        let svg = grid_svg(png, (546, 104), &labels);
        let texts = texts(&svg);
        for label in [
            "CM: samples",
            "obs",
            "quad1+quad2",
            "a<b&c",
            "real (held-out data)",
            "generated",
        ] {
            assert!(
                texts.iter().any(|t| t == label),
                "no {label:?} in {texts:?}"
            );
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(png);
        assert!(svg.contains(&format!("data:image/png;base64,{encoded}\"")));
        // Shown at twice the size, 32 px tiles being small.
        assert!(svg.contains("width=\"1092\" height=\"208\""), "{svg}");
    }
}
