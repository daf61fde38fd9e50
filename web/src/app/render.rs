//! Redrawing: samples, real images, the concept graph and the status line for the current view.
//!
//! Redraws never overlap: a change during a redraw marks the view dirty, and the running redraw
//! goes round once more with the newest view, so dragging a slider never queues stale frames.

use super::engine::Engine;
use super::page::{self, Page};
use super::{Shared, graph_view, now};
use crate::graph;
use crate::link::View;
use crate::picture::Picture;
use intervene::context::Context;
use wasm_bindgen_futures::spawn_local;

pub fn request_render(app: &Shared) {
    {
        let mut state = app.state.borrow_mut();
        if state.rendering {
            state.dirty = true;
            return;
        }
        state.rendering = true;
    }
    set_busy(&app.page, true);
    let app = app.clone();
    spawn_local(async move {
        loop {
            let (engine, view) = {
                let mut state = app.state.borrow_mut();
                state.dirty = false;
                (state.engine.clone(), state.view.clone())
            };
            if let (Some(engine), Some(view)) = (engine, view) {
                render(&app, &engine, &view).await;
            }
            let mut state = app.state.borrow_mut();
            if !state.dirty {
                state.rendering = false;
                set_busy(&app.page, false);
                break;
            }
        }
    });
}

/// `data-busy` on the body: whether a redraw is under way (the browser tests wait on it).
fn set_busy(page: &Page, busy: bool) {
    if let Some(body) = page.document.body() {
        let _ = body.set_attribute("data-busy", if busy { "1" } else { "0" });
    }
}

async fn render(app: &Shared, engine: &Engine, view: &View) {
    let page = &app.page;
    let context = engine.context(view);
    let context_name = context.name(engine.concepts());
    let start = now();
    let images = match engine.generate(view).await {
        Ok(images) => images,
        Err(e) => {
            page.set_note(&format!("Generating failed: {e}."));
            return;
        }
    };
    let elapsed = now() - start;
    let shape = engine.shape();
    let picture = Picture::grid(&images, shape, view.grid);
    let scale = display_scale(picture.width);
    page::draw(&page.samples, &picture, scale);
    let _ = page
        .samples
        .set_attribute("data-fingerprint", &picture.fingerprint());
    let seen = if context.len() >= 2 {
        "a composition never seen in training"
    } else {
        "a training context"
    };
    page.samples_caption.set_text_content(Some(&format!(
        "Generated: {context_name} ({seen}), seed {}",
        view.seed
    )));

    let key = (context, view.seed, view.grid);
    if app.state.borrow().real_key != Some(key) {
        match engine.real_images(view) {
            Ok(real) => {
                page::draw(&page.real, &Picture::grid(&real, shape, view.grid), scale);
                page.real_caption.set_text_content(Some(&format!(
                    "Real images of {context_name}, drawn from the dataset's causal model"
                )));
            }
            Err(why) => {
                page::clear(&page.real);
                page.real_caption
                    .set_text_content(Some(&format!("No real images: {why}.")));
            }
        }
        app.state.borrow_mut().real_key = Some(key);
    }
    draw_graphs(app, engine, context);

    let renders = {
        let mut state = app.state.borrow_mut();
        state.renders += 1;
        if state.renders == 1 {
            state.startup.push(("first grid", now()));
        }
        state.renders
    };
    page.set_status(&format!(
        "{} samples of {context_name} in {elapsed:.1} ms on {}.",
        view.grid * view.grid,
        app.backend.kind.label()
    ));
    if let Some(body) = page.document.body() {
        let _ = body.set_attribute("data-renders", &renders.to_string());
        let _ = body.set_attribute("data-ready", "1");
    }
}

/// Screen pixels per image pixel: grids are shown about 520 px wide.
fn display_scale(width: usize) -> usize {
    (520 / width.max(1)).clamp(1, 8)
}

/// The learned graph (its strongest edges, as many as the visitor asks for) and, where the
/// dataset has one, the true graph beside it; redrawn only when the context or the count changes.
pub fn draw_graphs(app: &Shared, engine: &Engine, context: Context) {
    let page = &app.page;
    let concepts = engine.concepts();
    let possible = graph::possible_edges(concepts.len());
    let shown = {
        let state = app.state.borrow();
        let shown = state
            .graph_edges
            .unwrap_or(graph::default_shown(concepts.len()))
            .min(possible);
        if state.graph_key == Some((context, shown)) {
            return;
        }
        shown
    };
    page.graph_edges.set_max(&possible.to_string());
    page.graph_edges.set_value_as_number(shown as f64);
    page.graph_edges_count
        .set_text_content(Some(&shown.to_string()));
    page.graph_edges.set_disabled(engine.graph.is_none());
    match &engine.graph {
        Some(learned) => {
            let edges = graph::strongest(learned, shown);
            graph_view::draw(&page.graph, concepts, &edges, context);
            page.graph_caption.set_text_content(Some(&format!(
                "Learned concept graph: the {} strongest of {possible} possible edges, each how much intervening on its source moves its target in the model (wider and darker: stronger; dashed: cut by the intervention)",
                edges.len()
            )));
        }
        None => {
            page::clear(&page.graph);
            page.graph_caption
                .set_text_content(Some("No concept graph: this model has no context module."));
        }
    }
    let truth = engine
        .dataset
        .filter(|d| d.concepts().len() == concepts.len())
        .and_then(graph::true_edges);
    page.true_graph_figure.set_hidden(truth.is_none());
    if let Some(edges) = truth {
        graph_view::draw(&page.true_graph, concepts, &edges, context);
    }
    app.state.borrow_mut().graph_key = Some((context, shown));
}
