//! Plots as PNG, drawn with no plotting library: image grids (real beside generated, real above
//! reconstructed), training curves and concept-graph heatmaps. Labels live in `table.md`.

use super::Plan;
use crate::evaluation::metrics::{Metrics, generate};
use crate::image_grid::{grid_rgb, write_png};
use crate::model_source::Source;
use crate::training::run_folder::RunFolder;
use anyhow::Result;
use burn::module::Module;
use burn::tensor::Device;
use intervene::config::Method;
use intervene::context::Context;
use intervene::data::{Split, channels_last};
use intervene::model::Model;
use intervene::rng::Rng;
use std::path::Path;

const PER_SIDE: usize = 8;

/// Every plot for the first seed of each method.
pub fn write_all(plan: &Plan, all: &[(Method, u64, Metrics)], out: &Path) -> Result<()> {
    let device = Device::flex();
    let seed = plan.seeds[0];
    for (method, _, metrics) in all.iter().filter(|(_, s, _)| *s == seed) {
        let dir = plan.run_dir(seed, *method);
        let model = Source::open(&dir)?.load(&device)?.model.valid();
        let name = method.name();
        samples(
            plan,
            &model,
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
        }
        curves(
            &RunFolder::new(&dir),
            &out.join(format!("curves-{name}.png")),
        )?;
        if let Some(learned) = &metrics.learned_graph {
            graph(
                learned,
                &metrics.true_graph,
                &out.join(format!("graph-{name}.png")),
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

/// One row per context: real images, then generated ones.
fn samples(plan: &Plan, model: &Model, path: &Path, device: &Device) -> Result<()> {
    let shape = model.config.image;
    let mut tiles = Vec::new();
    for context in contexts(plan) {
        tiles.extend(plan.dataset.images(
            context,
            PER_SIDE,
            shape.size,
            Split::HeldOut,
            &mut Rng::new(1),
        ));
        tiles.extend(generate(
            model,
            context,
            PER_SIDE,
            &mut Rng::new(2),
            PER_SIDE,
            device,
        ));
    }
    let (rgb, w, h) = grid_rgb(&tiles, shape, 2 * PER_SIDE);
    write_png(path, &rgb, w, h)
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
        let images = model.images(channels_last(&real, shape), device);
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
    let (rgb, w, h) = grid_rgb(&tiles, shape, PER_SIDE);
    write_png(path, &rgb, w, h)
}

/// Training loss (blue) and validation negative ELBO (orange) per epoch on one shared scale.
fn curves(run: &RunFolder, path: &Path) -> Result<()> {
    let rows = run.read_metrics()?;
    let series: [(Vec<f64>, [u8; 3]); 2] = [
        (rows.iter().map(|r| r.train_loss).collect(), [31, 119, 180]),
        (
            rows.iter().map(|r| r.valid_negative_elbo).collect(),
            [255, 127, 14],
        ),
    ];
    let (w, h, margin) = (480usize, 300usize, 20usize);
    let mut canvas = Canvas::new(w, h);
    canvas.rect(margin, margin, w - margin, h - margin, [160, 160, 160]);
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(v, _)| v.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1e-9);
    for (values, colour) in &series {
        let n = values.len().max(2) - 1;
        let point = |i: usize, v: f64| {
            let x = margin as f64 + i as f64 / n as f64 * (w - 2 * margin) as f64;
            let y = (h - margin) as f64 - (v - lo) / span * (h - 2 * margin) as f64;
            (x, y)
        };
        for i in 1..values.len() {
            let (a, b) = (point(i - 1, values[i - 1]), point(i, values[i]));
            canvas.line(a, b, *colour);
        }
    }
    write_png(path, &canvas.rgb, w, h)
}

/// Learned graph (scaled to its largest edge) beside the true one, `CELL` pixels a cell.
fn graph(learned: &[Vec<f32>], truth: &[Vec<f32>], path: &Path) -> Result<()> {
    const CELL: usize = 24;
    let k = learned.len();
    let side = k * CELL;
    let (w, h) = (2 * side + 3 * CELL, side + 2 * CELL);
    let mut canvas = Canvas::new(w, h);
    let max = learned
        .iter()
        .flatten()
        .copied()
        .fold(f32::MIN_POSITIVE, f32::max);
    for (offset, matrix, scale) in [(CELL, learned, max), (2 * CELL + side, truth, 1.0)] {
        for (p, row) in matrix.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                let shade = 255.0 - (v / scale).clamp(0.0, 1.0) * 255.0;
                let colour = [shade as u8, shade as u8, 255];
                canvas.fill(
                    offset + c * CELL,
                    CELL + p * CELL,
                    CELL - 1,
                    CELL - 1,
                    colour,
                );
            }
        }
    }
    write_png(path, &canvas.rgb, w, h)
}

/// A white RGB canvas with the few drawing operations the plots need.
struct Canvas {
    rgb: Vec<u8>,
    w: usize,
    h: usize,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Self {
            rgb: vec![255; w * h * 3],
            w,
            h,
        }
    }

    fn set(&mut self, x: usize, y: usize, colour: [u8; 3]) {
        if x < self.w && y < self.h {
            let at = (y * self.w + x) * 3;
            self.rgb[at..at + 3].copy_from_slice(&colour);
        }
    }

    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, colour: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, colour);
            }
        }
    }

    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, colour: [u8; 3]) {
        for x in x0..=x1 {
            self.set(x, y0, colour);
            self.set(x, y1, colour);
        }
        for y in y0..=y1 {
            self.set(x0, y, colour);
            self.set(x1, y, colour);
        }
    }

    /// A 2-pixel-wide line, stepped densely enough to leave no gaps.
    fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: [u8; 3]) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                self.set(x as usize + dx, y as usize + dy, colour);
            }
        }
    }
}
