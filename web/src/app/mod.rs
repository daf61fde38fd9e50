//! The page's controller: reads the link, starts the model worker (`model_worker.rs`), which
//! picks a backend and holds the model, and hands over to the controls (`controls.rs`), which
//! change the view, and the redraw (`render.rs`), which asks the worker for pixels and paints
//! them. The same module, started in the worker, runs `worker.rs` instead.

mod backend;
mod bench;
mod controls;
mod engine;
mod graph_view;
mod model_worker;
mod page;
mod render;
mod worker;

use crate::catalog::{self, DEFAULT_MODEL};
use crate::link::{self, ModelRef, View};
use crate::protocol::{BackendKind, ModelInfo, Preference, Reply, Request};
use controls::{build_concept_controls, fill_static_controls, sync_controls, wire_static_controls};
use gloo::events::EventListener;
use intervene::context::Context;
use js_sys::{Reflect, Uint8Array};
use model_worker::ModelWorker;
use page::Page;
use render::request_render;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::DedicatedWorkerGlobalScope;

struct App {
    page: Page,
    worker: Rc<ModelWorker>,
    backend: BackendKind,
    /// `?backend=` as the link gave it; share links keep it, so they pick the same backend.
    preference: Preference,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    model: Option<Rc<ModelInfo>>,
    view: Option<View>,
    rendering: bool,
    dirty: bool,
    renders: u32,
    /// What the real images were last drawn for: (context, seed, grid).
    real_key: Option<(Context, u64, usize)>,
    /// What the concept graphs were last drawn for: (context, edges shown).
    graph_key: Option<(Context, usize)>,
    /// Edges of the learned graph to show; `None`: the model's default (`graph::default_shown`).
    graph_edges: Option<usize>,
    /// Listeners of the per-concept controls, dropped when a new model replaces them.
    concept_listeners: Vec<EventListener>,
    /// Milestones of the page's start, in ms since navigation began (shown by `?bench=1`).
    startup: Vec<(&'static str, f64)>,
    /// Whether the loaded model can edit images yet.
    encoder: Encoder,
    /// The visitor's own image to edit: its name and RGBA at the model's size. Never in a link.
    own_image: Option<(String, Vec<u8>)>,
}

/// The encoder of the model on screen, which editing needs: shipped models come without it and
/// fetch it the first time the edit panel opens.
#[derive(Clone, Debug, Default, PartialEq)]
enum Encoder {
    #[default]
    Missing,
    Loading,
    Ready,
    /// Why this model cannot edit.
    Unavailable(String),
}

type Shared = Rc<App>;

#[wasm_bindgen(start)]
pub fn start() {
    run_constructors();
    if let Some(scope) = js_sys::global().dyn_ref::<DedicatedWorkerGlobalScope>() {
        worker::start(scope.clone());
        return;
    }
    // A panic stops the module for good: say so on the page, not only in the console.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        if let Ok(page) = Page::bind() {
            page.set_status("The page stopped on an internal error.");
            page.set_note(&format!(
                "Internal error: {info}. Reloading may help; adding backend=cpu to the link avoids the GPU."
            ));
        }
    }));
    spawn_local(async {
        if let Err(e) = run().await {
            gloo::console::error!(e.clone());
            if let Ok(page) = Page::bind() {
                page.set_status("The page could not start.");
                page.set_note(&e);
            }
        }
    });
}

/// Runs the static constructors (burn's GPU compiler registers its parts in them), once. Without
/// a call to them anywhere in the module, the linker takes it for a command run once and makes
/// every exported function run them again first; everything JavaScript calls in, closures and
/// value handles included, then cost about a millisecond: 30-60 ms for one slider move.
#[allow(unsafe_code)]
fn run_constructors() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    // SAFETY: called once, first thing in `start`, before any code that reads what the
    // constructors register.
    unsafe { __wasm_call_ctors() }
}

async fn run() -> Result<(), String> {
    let wasm_ready = now();
    let page = Page::bind()?;
    let query = gloo::utils::window()
        .location()
        .search()
        .unwrap_or_default();
    page.set_status("Starting the backend…");
    let preference = Preference::from_option(link::page_option(&query, "backend").as_deref());
    let worker = ModelWorker::spawn().await?;
    let worker_ready = now();
    let (backend, explanation) = match worker
        .call(&Request::Start { preference }, None)
        .await?
        .reply
    {
        Reply::Started {
            backend,
            explanation,
        } => (backend, explanation),
        other => {
            return Err(format!(
                "the model's worker answered {other:?} to its start"
            ));
        }
    };
    let backend_ready = now();
    page.backend
        .set_text_content(Some(&format!("Backend: {explanation}.")));
    let kind = match backend {
        BackendKind::WebGpu => "webgpu",
        BackendKind::Cpu => "cpu",
    };
    let _ = page.backend.set_attribute("data-backend", kind);

    let default_view = View::default_for(ModelRef::Shipped(DEFAULT_MODEL.into()));
    let view = match View::from_query(&query, DEFAULT_MODEL) {
        Ok(Some(view)) => view,
        // A plain visit reopens the last view (offline too, if its model was cached).
        Ok(None) => last_view().unwrap_or_else(|| default_view.clone()),
        Err(problems) => {
            page.set_note(&format!(
                "This link could not be read: {}. Showing the default view instead.",
                problems.join("; ")
            ));
            default_view.clone()
        }
    };
    fill_static_controls(&page);
    let app: Shared = Rc::new(App {
        page,
        worker,
        backend,
        preference,
        state: RefCell::new(State {
            startup: vec![
                ("wasm started", wasm_ready),
                ("worker ready", worker_ready),
                ("backend ready", backend_ready),
            ],
            ..State::default()
        }),
    });
    wire_static_controls(&app);
    if !open_view(&app, view.clone()).await && view.model != default_view.model {
        app.page.add_note("Showing the default model instead.");
        open_view(&app, default_view).await;
    }
    if link::page_option(&query, "bench").as_deref() == Some("1") {
        bench::run(&app).await;
    }
    Ok(())
}

/// Where the last view shown is kept between visits.
const LAST_VIEW_KEY: &str = "intervene-last-view";

/// Keeps `view` (as its link's query) for the next plain visit; without storage, nothing.
fn remember_view(view: &View) {
    if let Ok(Some(storage)) = gloo::utils::window().local_storage() {
        let _ = storage.set_item(LAST_VIEW_KEY, &view.to_query());
    }
}

/// The view a previous visit last showed, if one was kept and still reads as a link.
fn last_view() -> Option<View> {
    let storage = gloo::utils::window().local_storage().ok()??;
    let query = storage.get_item(LAST_VIEW_KEY).ok()??;
    View::from_query(&query, DEFAULT_MODEL).ok()?
}

/// Fetches the view's model and shows the view; false (with a note) if the model did not load.
async fn open_view(app: &Shared, view: View) -> bool {
    let (name, url) = match &view.model {
        ModelRef::Shipped(id) => match catalog::find(id) {
            Some(m) => (m.title.clone(), m.url()),
            None => {
                app.page
                    .add_note(&format!("There is no shipped model called \"{id}\"."));
                return false;
            }
        },
        ModelRef::SameOrigin(path) => (path.clone(), path.clone()),
        ModelRef::Local(_) => unreachable!("links never name local files"),
    };
    app.page.set_status(&format!("Loading {name}…"));
    let bytes = match fetch_bytes(&url).await {
        Ok(bytes) => {
            app.state
                .borrow_mut()
                .startup
                .push(("model fetched", now()));
            bytes
        }
        Err(e) => {
            app.page.add_note(&format!("Could not load {name}: {e}."));
            return false;
        }
    };
    match install(app, view, &bytes).await {
        Ok(()) => true,
        Err(e) => {
            app.page.add_note(&format!("Could not load {name}: {e}."));
            false
        }
    }
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let response = gloo::net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| format!("the request failed ({e})"))?;
    if !response.ok() {
        return Err(format!(
            "the server answered {} for {url}",
            response.status()
        ));
    }
    response
        .binary()
        .await
        .map_err(|e| format!("the download broke off ({e})"))
}

/// Loads weights and shows `view` with them. On error nothing changes: the previous model and
/// view stay on screen (the worker keeps its model too).
async fn install(app: &Shared, view: View, bytes: &[u8]) -> Result<(), String> {
    let answer = app
        .worker
        .call(&Request::Load, Some(Uint8Array::from(bytes)))
        .await?;
    let model = match answer.reply {
        Reply::Loaded(model) => model,
        Reply::Failed(e) => return Err(e),
        other => return Err(format!("the model's worker answered {other:?} to a load")),
    };
    app.state.borrow_mut().startup.push(("model loaded", now()));
    let view = match view.clone().fit_to(model.concepts()) {
        Ok(view) => view,
        Err(problems) => {
            app.page.add_note(&format!(
                "This link does not fit the model: {}. Showing the model's default view.",
                problems.join("; ")
            ));
            View {
                grid: view.grid,
                ..View::default_for(view.model)
            }
        }
    };
    let info = describe(&model, &view.model);
    let model_has_encoder = model.has_encoder;
    let editing = view.edit.is_some();
    app.page.model_info.set_text_content(Some(&info));
    if let ModelRef::Shipped(id) = &view.model {
        app.page.model_picker.set_value(id);
    }
    {
        let mut state = app.state.borrow_mut();
        state.model = Some(Rc::new(model));
        state.view = Some(view);
        state.real_key = None;
        state.graph_key = None;
        state.graph_edges = None;
        state.own_image = None;
        state.encoder = match model_has_encoder {
            true => Encoder::Ready,
            false => Encoder::Missing,
        };
    }
    build_concept_controls(app);
    sync_controls(app);
    if editing && !app.page.edit_panel.open() {
        // Opening the panel fetches the encoder (its toggle event), then redraws.
        app.page.edit_panel.set_open(true);
    } else if app.page.edit_panel.open() {
        controls::load_encoder(app);
    }
    request_render(app);
    Ok(())
}

fn describe(model: &ModelInfo, source: &ModelRef) -> String {
    let config = &model.config;
    let about = match source {
        ModelRef::Shipped(id) => catalog::find(id).map(|m| m.about).unwrap_or_default(),
        ModelRef::SameOrigin(path) => format!("Loaded from {path}."),
        ModelRef::Local(name) => format!("Loaded from your disk ({name})."),
    };
    format!(
        "{} on {}, {} px, {} concepts, {:.1} MB. {about}",
        config.method.label(),
        model
            .dataset_name
            .as_deref()
            .unwrap_or("an unnamed dataset"),
        config.image.size,
        config.num_concepts(),
        model.bytes as f64 / 1e6
    )
}

/// Applies `change` to the view and redraws.
fn update(app: &Shared, change: impl FnOnce(&mut View)) {
    {
        let mut state = app.state.borrow_mut();
        let Some(view) = state.view.as_mut() else {
            return;
        };
        change(view);
    }
    sync_controls(app);
    request_render(app);
}

/// Milliseconds since the page (or the worker) started.
fn now() -> f64 {
    let performance =
        Reflect::get(&js_sys::global(), &JsValue::from_str("performance")).unwrap_or_default();
    Reflect::get(&performance, &JsValue::from_str("now"))
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|now| now.call0(&performance).ok())
        .and_then(|ms| ms.as_f64())
        .unwrap_or(0.0)
}
