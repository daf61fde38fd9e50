//! The page's controller: reads the link, picks a backend, loads a model, wires the controls and
//! redraws on every change.
//!
//! Redraws never overlap: a change during a redraw marks the view dirty, and the running redraw
//! goes round once more with the newest view, so dragging a slider never queues stale frames.

mod backend;
mod bench;
mod engine;
mod graph_view;
mod page;

use crate::catalog::{self, DEFAULT_MODEL};
use crate::link::{self, GRID_SIDES, ModelRef, SHIFT_LIMIT, View};
use crate::picture::Picture;
use backend::{Backend, BackendKind, Preference};
use engine::Engine;
use gloo::events::{EventListener, EventListenerOptions};
use intervene::context::Context;
use intervene::sampling::has_concept_noise;
use page::Page;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{HtmlAnchorElement, HtmlInputElement, HtmlOptionElement};

struct App {
    page: Page,
    backend: Backend,
    /// `?backend=` as the link gave it; share links keep it, so they pick the same backend.
    preference: Preference,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    engine: Option<Rc<Engine>>,
    view: Option<View>,
    rendering: bool,
    dirty: bool,
    renders: u32,
    /// What the real-image panel last showed: (context, seed, grid).
    real_key: Option<(Context, u64, usize)>,
    /// Listeners of the per-concept controls, dropped when a new model replaces them.
    concept_listeners: Vec<EventListener>,
    /// Milestones of the page's start, in ms since navigation began (shown by `?bench=1`).
    startup: Vec<(&'static str, f64)>,
}

type Shared = Rc<App>;

#[wasm_bindgen(start)]
pub fn start() {
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

async fn run() -> Result<(), String> {
    let wasm_ready = now();
    let page = Page::bind()?;
    let query = gloo::utils::window()
        .location()
        .search()
        .unwrap_or_default();
    page.set_status("Starting the backend…");
    let preference = Preference::from_option(link::page_option(&query, "backend").as_deref());
    let backend = backend::choose(preference).await;
    let backend_ready = now();
    page.backend
        .set_text_content(Some(&format!("Backend: {}.", backend.explanation)));
    let kind = match backend.kind {
        BackendKind::WebGpu => "webgpu",
        BackendKind::Cpu => "cpu",
    };
    let _ = page.backend.set_attribute("data-backend", kind);

    let default_view = View::default_for(ModelRef::Shipped(DEFAULT_MODEL.into()));
    let view = match View::from_query(&query, DEFAULT_MODEL) {
        Ok(view) => view.unwrap_or_else(|| default_view.clone()),
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
        backend,
        preference,
        state: RefCell::new(State {
            startup: vec![
                ("wasm started", wasm_ready),
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
/// view stay on screen.
async fn install(app: &Shared, view: View, bytes: &[u8]) -> Result<(), String> {
    let engine = Engine::load(bytes, &app.backend.device).await?;
    app.state.borrow_mut().startup.push(("model loaded", now()));
    let view = match view.clone().fit_to(engine.concepts()) {
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
    let info = describe(&engine, &view.model, bytes.len());
    app.page.model_info.set_text_content(Some(&info));
    if let ModelRef::Shipped(id) = &view.model {
        app.page.model_picker.set_value(id);
    }
    {
        let mut state = app.state.borrow_mut();
        state.engine = Some(Rc::new(engine));
        state.view = Some(view);
        state.real_key = None;
    }
    build_concept_controls(app);
    sync_controls(app);
    request_render(app);
    Ok(())
}

fn describe(engine: &Engine, model: &ModelRef, bytes: usize) -> String {
    let config = &engine.model.config;
    let about = match model {
        ModelRef::Shipped(id) => catalog::find(id).map(|m| m.about).unwrap_or_default(),
        ModelRef::SameOrigin(path) => format!("Loaded from {path}."),
        ModelRef::Local(name) => format!("Loaded from your disk ({name})."),
    };
    format!(
        "{} on {}, {} px, {} concepts, {:.1} MB. {about}",
        config.method.label(),
        engine
            .dataset
            .map_or("an unnamed dataset".into(), |d| d.to_string()),
        config.image.size,
        config.num_concepts(),
        bytes as f64 / 1e6
    )
}

/// Options that do not depend on the model: the model picker and grid sizes.
fn fill_static_controls(page: &Page) {
    for model in catalog::shipped() {
        let option =
            HtmlOptionElement::new_with_text_and_value(&model.title, &model.id).expect("option");
        let _ = page.model_picker.append_child(&option);
    }
    for side in GRID_SIDES {
        let label = format!("{side} x {side}");
        let option =
            HtmlOptionElement::new_with_text_and_value(&label, &side.to_string()).expect("option");
        let _ = page.grid.append_child(&option);
    }
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

fn listen(
    target: &web_sys::EventTarget,
    event: &'static str,
    f: impl FnMut(&web_sys::Event) + 'static,
) {
    EventListener::new(target, event, f).forget();
}

fn wire_static_controls(app: &Shared) {
    let page = &app.page;
    let a = app.clone();
    listen(&page.model_picker, "change", move |_| {
        let view = view_for_new_model(&a, ModelRef::Shipped(a.page.model_picker.value()));
        let a = a.clone();
        spawn_local(async move {
            a.page.set_note("");
            open_view(&a, view).await;
        });
    });
    let a = app.clone();
    listen(&page.model_file, "change", move |_| {
        if let Some(file) = a.page.model_file.files().and_then(|f| f.get(0)) {
            load_local_file(&a, file);
        }
    });
    // Dropping a file anywhere on the page loads it; the browser must not open it instead.
    let body = page.document.body().expect("body");
    let options = EventListenerOptions::enable_prevent_default();
    EventListener::new_with_options(&body, "dragover", options, |e| e.prevent_default()).forget();
    let a = app.clone();
    EventListener::new_with_options(&body, "drop", options, move |e| {
        e.prevent_default();
        let file = e
            .dyn_ref::<web_sys::DragEvent>()
            .and_then(|d| d.data_transfer())
            .and_then(|t| t.files())
            .and_then(|f| f.get(0));
        if let Some(file) = file {
            load_local_file(&a, file);
        }
    })
    .forget();
    let a = app.clone();
    listen(&page.seed, "change", move |_| {
        let text = a.page.seed.value();
        match text.trim().parse::<u64>() {
            Ok(seed) => update(&a, |v| v.seed = seed),
            Err(_) => {
                a.page.set_note(&format!(
                    "Seed \"{text}\" is not a whole number; kept the old seed."
                ));
                sync_controls(&a);
            }
        }
    });
    let a = app.clone();
    listen(&page.resample, "click", move |_| {
        let seed = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        update(&a, |v| v.seed = seed);
    });
    let a = app.clone();
    listen(&page.grid, "change", move |_| {
        if let Ok(side) = a.page.grid.value().parse::<usize>() {
            update(&a, |v| v.grid = side);
        }
    });
    let a = app.clone();
    listen(&page.copy_link, "click", move |_| copy_link(&a));
    let a = app.clone();
    listen(&page.download, "click", move |_| download_png(&a));
}

/// Switching models keeps the seed and grid size; interventions and shifts belong to the old
/// model's concepts, so they start afresh.
fn view_for_new_model(app: &Shared, model: ModelRef) -> View {
    let state = app.state.borrow();
    let current = state.view.as_ref();
    View {
        seed: current.map_or(0, |v| v.seed),
        grid: current.map_or(link::DEFAULT_GRID, |v| v.grid),
        ..View::default_for(model)
    }
}

fn load_local_file(app: &Shared, file: web_sys::File) {
    let app = app.clone();
    spawn_local(async move {
        let name = file.name();
        app.page.set_status(&format!("Reading {name}…"));
        let blob = gloo::file::Blob::from(file);
        let bytes = match gloo::file::futures::read_as_bytes(&blob).await {
            Ok(bytes) => bytes,
            Err(e) => {
                app.page.set_note(&format!("Could not read {name}: {e}."));
                return;
            }
        };
        let view = view_for_new_model(&app, ModelRef::Local(name.clone()));
        app.page.set_note("");
        if let Err(e) = install(&app, view, &bytes).await {
            app.page.set_note(&format!(
                "Could not load {name}: {e}. The previous model is still shown."
            ));
            app.page.set_status("Ready.");
        }
    });
}

/// One chip per concept (toggle an intervention) and one slider per concept (shift its noise).
fn build_concept_controls(app: &Shared) {
    let page = &app.page;
    let engine = app
        .state
        .borrow()
        .engine
        .clone()
        .expect("a model is loaded");
    page.concepts.set_inner_html("");
    page.sliders.set_inner_html("");
    let shiftable = has_concept_noise(&engine.model.config);
    let mut listeners = Vec::new();
    for (k, name) in engine.concepts().iter().enumerate() {
        let chip = page.element("label");
        let toggle: HtmlInputElement = page.element("input").unchecked_into();
        toggle.set_type("checkbox");
        toggle.set_id(&format!("do-{name}"));
        toggle.set_value(name);
        let _ = chip.append_child(&toggle);
        let _ = chip.append_with_str_1(name);
        let _ = page.concepts.append_child(&chip);
        let a = app.clone();
        let concept = name.clone();
        let all = engine.concepts().to_vec();
        listeners.push(EventListener::new(&toggle, "change", move |e| {
            let on = e
                .target()
                .and_then(|t| t.dyn_into::<HtmlInputElement>().ok())
                .is_some_and(|t| t.checked());
            update(&a, |v| {
                let mut chosen: Vec<String> = v.intervened.clone();
                chosen.retain(|c| c != &concept);
                if on {
                    chosen.push(concept.clone());
                }
                v.intervened = all.iter().filter(|c| chosen.contains(c)).cloned().collect();
            });
        }));

        let row = page.element("label");
        let _ = row.append_with_str_1(name);
        let slider: HtmlInputElement = page.element("input").unchecked_into();
        slider.set_type("range");
        slider.set_id(&format!("shift-{name}"));
        slider.set_min(&format!("-{SHIFT_LIMIT}"));
        slider.set_max(&format!("{SHIFT_LIMIT}"));
        slider.set_step("0.05");
        slider.set_disabled(!shiftable);
        if !shiftable {
            slider.set_title(
                "This model has no context module, so its noise has no per-concept blocks.",
            );
        }
        let _ = row.append_child(&slider);
        let value = page.element("output");
        let _ = row.append_child(&value);
        let _ = page.sliders.append_child(&row);
        let a = app.clone();
        let k_concepts = engine.concepts().len();
        listeners.push(EventListener::new(&slider, "input", move |e| {
            let Some(input) = e
                .target()
                .and_then(|t| t.dyn_into::<HtmlInputElement>().ok())
            else {
                return;
            };
            let Ok(shift) = input.value().parse::<f32>() else {
                return;
            };
            update(&a, |v| {
                let mut shifts = v.shifts_for(k_concepts);
                shifts[k] = shift.clamp(-SHIFT_LIMIT, SHIFT_LIMIT);
                v.shifts = if shifts.iter().all(|&s| s == 0.0) {
                    Vec::new()
                } else {
                    shifts
                };
            });
        }));
    }
    if !shiftable {
        let note = page.element("p");
        note.set_class_name("hint");
        note.set_text_content(Some(
            "This model has no context module: its noise has no per-concept blocks to move.",
        ));
        let _ = page.sliders.append_child(&note);
    }
    app.state.borrow_mut().concept_listeners = listeners;
}

/// Makes every control show the current view.
fn sync_controls(app: &Shared) {
    let state = app.state.borrow();
    let (Some(view), Some(engine)) = (state.view.as_ref(), state.engine.as_ref()) else {
        return;
    };
    let page = &app.page;
    page.seed.set_value(&view.seed.to_string());
    page.grid.set_value(&view.grid.to_string());
    let shifts = view.shifts_for(engine.concepts().len());
    for (k, name) in engine.concepts().iter().enumerate() {
        let on = view.intervened.contains(name);
        if let Some(toggle) = input(page, &format!("do-{name}")) {
            toggle.set_checked(on);
            if let Some(chip) = toggle.parent_element() {
                chip.set_class_name(if on { "on" } else { "" });
            }
        }
        if let Some(slider) = input(page, &format!("shift-{name}")) {
            slider.set_value(&format!("{}", shifts[k]));
            if let Some(out) = slider.next_element_sibling() {
                out.set_text_content(Some(&format!("{:+.2}", shifts[k])));
            }
        }
    }
    let link = share_url(view, app.preference);
    page.share_link.set_value(&link);
    let _ = gloo::utils::window()
        .history()
        .and_then(|h| h.replace_state_with_url(&JsValue::NULL, "", Some(&link)));
}

fn input(page: &Page, id: &str) -> Option<HtmlInputElement> {
    page.document
        .get_element_by_id(id)
        .and_then(|e| e.dyn_into().ok())
}

fn share_url(view: &View, preference: Preference) -> String {
    let location = gloo::utils::window().location();
    let backend = match preference {
        Preference::Auto => "",
        Preference::Cpu => "&backend=cpu",
        Preference::WebGpu => "&backend=webgpu",
    };
    format!(
        "{}{}{}{backend}",
        location.origin().unwrap_or_default(),
        location.pathname().unwrap_or_default(),
        view.to_query()
    )
}

fn request_render(app: &Shared) {
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

/// Milliseconds since the page started.
fn now() -> f64 {
    gloo::utils::window().performance().map_or(0.0, |p| p.now())
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
        match &engine.graph {
            Some(graph) => {
                graph_view::draw(&page.graph, engine.concepts(), graph, context);
                page.graph_caption.set_text_content(Some(
                    "Learned concept graph (darker: stronger; dashed: cut by the intervention)",
                ));
            }
            None => {
                page::clear(&page.graph);
                page.graph_caption
                    .set_text_content(Some("No concept graph: this model has no context module."));
            }
        }
        app.state.borrow_mut().real_key = Some(key);
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

fn copy_link(app: &Shared) {
    let link = app.page.share_link.value();
    let clipboard = gloo::utils::window().navigator().clipboard();
    let app = app.clone();
    spawn_local(async move {
        let copied = JsFuture::from(clipboard.write_text(&link)).await.is_ok();
        app.page.set_status(if copied {
            "Link copied: opening it shows exactly these samples."
        } else {
            "The browser refused the clipboard: copy the link from the box below the buttons."
        });
    });
}

fn download_png(app: &Shared) {
    let Ok(url) = app.page.samples.to_data_url() else {
        app.page
            .set_note("The browser refused to export the canvas.");
        return;
    };
    let name = {
        let state = app.state.borrow();
        match (state.view.as_ref(), state.engine.as_ref()) {
            (Some(view), Some(engine)) => format!(
                "intervene-{}-seed{}.png",
                engine.context(view).name(engine.concepts()),
                view.seed
            ),
            _ => "intervene.png".into(),
        }
    };
    let anchor: HtmlAnchorElement = app.page.element("a").unchecked_into();
    anchor.set_href(&url);
    anchor.set_download(&name);
    anchor.click();
}
