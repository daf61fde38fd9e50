//! Redrawing: samples, real images, the concept graph, the edit and the status line for the
//! current view. The model worker makes the pixels; this thread only paints them.
//!
//! Redraws never overlap: a change during a redraw marks the view dirty, and the running redraw
//! goes round once more with the newest view, so dragging a slider never queues stale frames.

use super::page::{self, Page};
use super::{Encoder, Shared, graph_view, now};
use crate::graph;
use crate::link::View;
use crate::picture::Picture;
use crate::protocol::{EditedPicture, ModelInfo, PictureSize, Reply, Request};
use intervene::context::Context;
use js_sys::Uint8Array;
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
            let (model, view) = {
                let mut state = app.state.borrow_mut();
                state.dirty = false;
                (state.model.clone(), state.view.clone())
            };
            if let (Some(model), Some(view)) = (model, view) {
                render(&app, &model, &view).await;
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

async fn render(app: &Shared, model: &ModelInfo, view: &View) {
    let page = &app.page;
    let context = model.context(view);
    let context_name = context.name(model.concepts());
    let key = (context, view.seed, view.grid);
    let real = app.state.borrow().real_key != Some(key);
    let request = Request::Draw {
        view: view.clone(),
        real,
    };
    let drawn = match app.worker.call(&request, None).await {
        Ok(answer) => match answer.reply {
            Reply::Drawn {
                samples,
                fingerprint,
                elapsed_ms,
                real,
                warning,
            } => Ok((samples, fingerprint, elapsed_ms, real, warning, answer.data)),
            Reply::Failed(e) => Err(e),
            other => Err(format!("the model's worker answered {other:?} to a draw")),
        },
        Err(e) => Err(e),
    };
    let (samples, fingerprint, elapsed_ms, real, warning, pictures) = match drawn {
        Ok(drawn) => drawn,
        Err(e) => {
            page.set_note(&format!("Generating failed: {e}."));
            return;
        }
    };
    // The generated picture's pixels come first, then the real one's.
    let mut pictures = pictures.into_iter();
    let mut picture =
        |size: PictureSize| Picture::from_rgba(pictures.next().unwrap_or_default(), size);
    let samples = match picture(samples) {
        Ok(samples) => samples,
        Err(e) => {
            page.set_note(&format!("Generating failed: {e}."));
            return;
        }
    };
    let scale = display_scale(samples.width);
    page::draw(&page.samples, &samples, scale);
    if let Some(why) = warning {
        page.set_note(&format!("Warning: {why}."));
    }
    let _ = page.samples.set_attribute("data-fingerprint", &fingerprint);
    let seen = if context.len() >= 2 {
        "a composition never seen in training"
    } else {
        "a training context"
    };
    page.samples_caption.set_text_content(Some(&format!(
        "Generated: {context_name} ({seen}), seed {}",
        view.seed
    )));

    if let Some(real) = real {
        match real.and_then(&mut picture) {
            Ok(real) => {
                page::draw(&page.real, &real, scale);
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
    draw_graphs(app, model, context);
    if page.edit_panel.open() {
        render_edit(app, view).await;
    }

    let renders = {
        let mut state = app.state.borrow_mut();
        state.renders += 1;
        if state.renders == 1 {
            state.startup.push(("first grid", now()));
        }
        state.renders
    };
    page.set_status(&format!(
        "{} samples of {context_name} in {elapsed_ms:.1} ms on {}.",
        view.grid * view.grid,
        app.backend.label()
    ));
    if let Some(body) = page.document.body() {
        let _ = body.set_attribute("data-renders", &renders.to_string());
        let _ = body.set_attribute("data-ready", "1");
    }
}

/// The edit panel: the images to pick from, and the chosen (or the visitor's) image edited
/// into the view's context.
async fn render_edit(app: &Shared, view: &View) {
    let page = &app.page;
    let (encoder, own) = {
        let state = app.state.borrow();
        (state.encoder.clone(), state.own_image.clone())
    };
    let caption = |text: &str| page.edit_caption.set_text_content(Some(text));
    match encoder {
        Encoder::Ready => {}
        Encoder::Missing | Encoder::Loading => return caption("Fetching the model's encoder…"),
        Encoder::Unavailable(why) => {
            page::clear(&page.edit_choices);
            page::clear(&page.edit_result);
            return caption(&format!("This model cannot edit images: {why}."));
        }
    }
    let request = Request::Edit {
        view: view.clone(),
        own: own.is_some(),
    };
    let data = own
        .as_ref()
        .map(|(_, rgba)| Uint8Array::from(rgba.as_slice()));
    let answer = match app.worker.call(&request, data).await {
        Ok(answer) => answer,
        Err(e) => return caption(&format!("Editing failed: {e}.")),
    };
    let (choices, result) = match answer.reply {
        Reply::Edited { choices, result } => (choices, result),
        Reply::Failed(e) => return caption(&format!("Editing failed: {e}.")),
        other => {
            return caption(&format!(
                "The model's worker answered {other:?} to an edit."
            ));
        }
    };
    let mut pictures = answer.data.into_iter();
    let mut picture =
        |size: PictureSize| Picture::from_rgba(pictures.next().unwrap_or_default(), size);
    let mut lines = Vec::new();
    match choices.and_then(&mut picture) {
        Ok(choices) => {
            page::draw(&page.edit_choices, &choices, display_scale(choices.width));
            lines.push(format!(
                "Above: real images drawn with seed {}; click one to edit it.",
                view.seed
            ));
        }
        Err(why) => {
            page::clear(&page.edit_choices);
            lines.push(format!("No real images to pick ({why}); use your own."));
        }
    }
    match result.map(|r| picture(r.size).map(|p| (p, r))) {
        Some(Ok((
            edited,
            EditedPicture {
                tiles,
                fingerprint,
                warning,
                ..
            },
        ))) => {
            page::draw(&page.edit_result, &edited, display_scale(edited.width));
            let _ = page
                .edit_result
                .set_attribute("data-fingerprint", &fingerprint);
            let source = match (&own, view.edit) {
                (Some((name, _)), _) => format!("your image {name}"),
                (None, Some(i)) => format!("real image {} of seed {}", i + 1, view.seed),
                (None, None) => String::new(),
            };
            lines.push(format!("Below, {source}: {}.", tiles.join(" | ")));
            if let Some(why) = warning {
                lines.push(format!("Warning: {why}."));
            }
        }
        Some(Err(e)) => lines.push(format!("Editing failed: {e}.")),
        None => {
            page::clear(&page.edit_result);
            let _ = page.edit_result.remove_attribute("data-fingerprint");
        }
    }
    caption(&lines.join(" "));
}

/// Screen pixels per image pixel: grids are shown about 520 px wide.
fn display_scale(width: usize) -> usize {
    (520 / width.max(1)).clamp(1, 8)
}

/// The learned graph (its strongest edges, as many as the visitor asks for) and, where the
/// dataset has one, the true graph beside it; redrawn only when the context or the count changes.
pub fn draw_graphs(app: &Shared, model: &ModelInfo, context: Context) {
    let page = &app.page;
    let concepts = model.concepts();
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
    page.graph_edges.set_disabled(model.graph.is_none());
    match &model.graph {
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
    let truth = model
        .dataset
        .map(|kind| kind.dataset())
        .filter(|d| d.concepts().len() == concepts.len())
        .and_then(graph::true_edges);
    page.true_graph_figure.set_hidden(truth.is_none());
    if let Some(edges) = truth {
        graph_view::draw(&page.true_graph, concepts, &edges, context);
    }
    app.state.borrow_mut().graph_key = Some((context, shown));
}
