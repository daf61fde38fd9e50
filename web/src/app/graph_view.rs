//! A concept graph on a canvas: the concepts on a circle, an arrow parent -> child for each edge
//! given (`crate::graph` picks them), wider and darker for a stronger one. In the current
//! context an intervened concept is cut from its parents, so its incoming arrows are dashed.

use super::page::context_2d;
use crate::graph::Edge;
use intervene::context::Context;
use std::f64::consts::{FRAC_PI_2, TAU};
use wasm_bindgen::JsValue;
use web_sys::HtmlCanvasElement;

pub fn draw(canvas: &HtmlCanvasElement, concepts: &[String], edges: &[Edge], context: Context) {
    let ctx = context_2d(canvas);
    let (w, h) = (f64::from(canvas.width()), f64::from(canvas.height()));
    ctx.clear_rect(0.0, 0.0, w, h);
    let k = concepts.len();
    let radius = w.min(h) / 2.0 - 42.0;
    let node_r = 20.0;
    let position = |i: usize| {
        let angle = -FRAC_PI_2 + TAU * i as f64 / k as f64;
        (
            w / 2.0 + radius * angle.cos(),
            h / 2.0 + radius * angle.sin(),
        )
    };
    for &Edge {
        parent,
        child,
        strength,
    } in edges
    {
        let cut = context.contains(child);
        let (x0, y0) = position(parent);
        let (x1, y1) = position(child);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len = (dx * dx + dy * dy).sqrt();
        let (ux, uy) = (dx / len, dy / len);
        let (sx, sy) = (x0 + ux * node_r, y0 + uy * node_r);
        let (ex, ey) = (x1 - ux * (node_r + 2.0), y1 - uy * (node_r + 2.0));
        let alpha = 0.15 + 0.85 * f64::from(strength);
        let colour = format!("rgba(29, 35, 48, {alpha:.3})");
        ctx.set_stroke_style_str(&colour);
        ctx.set_fill_style_str(&colour);
        ctx.set_line_width(1.0 + 2.5 * f64::from(strength));
        let dash = if cut { vec![4.0, 4.0] } else { vec![] };
        let dash: js_sys::Array = dash.into_iter().map(JsValue::from).collect();
        let _ = ctx.set_line_dash(&dash);
        ctx.begin_path();
        ctx.move_to(sx, sy);
        ctx.line_to(ex, ey);
        ctx.stroke();
        let _ = ctx.set_line_dash(&js_sys::Array::new());
        ctx.begin_path();
        ctx.move_to(ex, ey);
        ctx.line_to(ex - 9.0 * ux + 4.5 * uy, ey - 9.0 * uy - 4.5 * ux);
        ctx.line_to(ex - 9.0 * ux - 4.5 * uy, ey - 9.0 * uy + 4.5 * ux);
        ctx.close_path();
        ctx.fill();
    }
    ctx.set_line_width(1.5);
    ctx.set_font("12px system-ui, sans-serif");
    ctx.set_text_align("center");
    ctx.set_text_baseline("middle");
    for (i, name) in concepts.iter().enumerate() {
        let (x, y) = position(i);
        let on = context.contains(i);
        ctx.begin_path();
        let _ = ctx.arc(x, y, node_r, 0.0, TAU);
        ctx.set_fill_style_str(if on { "#2f6fdf" } else { "#ffffff" });
        ctx.fill();
        ctx.set_stroke_style_str("#2f6fdf");
        ctx.stroke();
        ctx.set_fill_style_str(if on { "#ffffff" } else { "#1d2330" });
        let label: String = name.chars().take(5).collect();
        let _ = ctx.fill_text(&label, x, y);
    }
}
