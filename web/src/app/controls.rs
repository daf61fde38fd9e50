//! The controls: the static ones (model picker, file and drop, seed, grid, link, PNG, the edit
//! panel), the per-concept ones a model brings (intervention chips, noise sliders), and keeping
//! all of them in step with the view.

use super::page::{self, Page};
use super::{Encoder, Shared, fetch_bytes, install, open_view, render, update};
use crate::catalog;
use crate::link::{self, EDIT_CHOICES, GRID_SIDES, ModelRef, SHIFT_LIMIT, View};
use crate::picture::tile_at;
use crate::protocol::{Preference, Reply, Request};
use gloo::events::{EventListener, EventListenerOptions};
use intervene::sampling::has_concept_noise;
use js_sys::Uint8Array;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{HtmlAnchorElement, HtmlCanvasElement, HtmlInputElement, HtmlOptionElement};

/// Options that do not depend on the model: the model picker and grid sizes.
pub fn fill_static_controls(page: &Page) {
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

pub fn wire_static_controls(app: &Shared) {
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
    // Dropping a file anywhere on the page loads it (an image: to edit); the browser must not
    // open it instead.
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
        match file {
            Some(file) if file.type_().starts_with("image/") => edit_own_image(&a, file),
            Some(file) => load_local_file(&a, file),
            None => {}
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
    listen(&page.graph_edges, "input", move |_| {
        let shown = a.page.graph_edges.value_as_number();
        if shown.is_finite() && shown >= 0.0 {
            a.state.borrow_mut().graph_edges = Some(shown as usize);
        }
        let (model, view) = {
            let state = a.state.borrow();
            (state.model.clone(), state.view.clone())
        };
        if let (Some(model), Some(view)) = (model, view) {
            render::draw_graphs(&a, &model, model.context(&view));
        }
    });
    wire_edit_controls(app);
    let a = app.clone();
    listen(&page.copy_link, "click", move |_| copy_link(&a));
    let a = app.clone();
    listen(&page.download, "click", move |_| download_png(&a));
}

/// The edit panel: opening it fetches the model's encoder, closing it ends the edit; a click on
/// the choices picks an image, the file input takes the visitor's own.
fn wire_edit_controls(app: &Shared) {
    let page = &app.page;
    let a = app.clone();
    listen(&page.edit_panel, "toggle", move |_| {
        if a.page.edit_panel.open() {
            load_encoder(&a);
            super::render::request_render(&a);
        } else {
            a.state.borrow_mut().own_image = None;
            update(&a, |v| v.edit = None);
        }
    });
    let a = app.clone();
    listen(&page.edit_choices, "click", move |e| {
        let Some(event) = e.dyn_ref::<web_sys::MouseEvent>() else {
            return;
        };
        let Some(size) = a.state.borrow().model.as_ref().map(|m| m.shape().size) else {
            return;
        };
        let canvas: &HtmlCanvasElement = &a.page.edit_choices;
        let shown = f64::from(canvas.client_width().max(1));
        let x = f64::from(event.offset_x()) * f64::from(canvas.width()) / shown;
        if let Some(i) = tile_at(x, size, EDIT_CHOICES) {
            a.state.borrow_mut().own_image = None;
            update(&a, |v| v.edit = Some(i));
        }
    });
    let a = app.clone();
    listen(&page.edit_file, "change", move |_| {
        if let Some(file) = a.page.edit_file.files().and_then(|f| f.get(0)) {
            edit_own_image(&a, file);
        }
    });
}

/// Fetches and installs the encoder of the model on screen, unless it has one or is fetching
/// it; redraws when done. A model loaded from disk without its encoder cannot edit.
pub fn load_encoder(app: &Shared) {
    let (model, view) = {
        let mut state = app.state.borrow_mut();
        if state.encoder != Encoder::Missing {
            return;
        }
        let (Some(model), Some(view)) = (state.model.clone(), state.view.clone()) else {
            return;
        };
        state.encoder = Encoder::Loading;
        (model, view)
    };
    let url = match &view.model {
        ModelRef::Shipped(id) => catalog::find(id).and_then(|m| m.encoder_url()),
        ModelRef::SameOrigin(path) => Some(encoder_path(path)),
        ModelRef::Local(_) => None,
    };
    let app = app.clone();
    spawn_local(async move {
        let outcome = match url {
            None if matches!(view.model, ModelRef::Shipped(_)) => {
                Err("it is shipped without an encoder file".to_string())
            }
            None => Err(
                "this weights file carries no encoder (export it without --decoder-only to edit with it)"
                    .to_string(),
            ),
            Some(url) => match fetch_bytes(&url).await {
                Err(e) => Err(format!("its encoder file could not be loaded: {e}")),
                Ok(bytes) => {
                    let data = Some(Uint8Array::from(bytes.as_slice()));
                    match app.worker.call(&Request::LoadEncoder, data).await {
                        Ok(answer) => match answer.reply {
                            Reply::EncoderLoaded => Ok(()),
                            Reply::Failed(e) => Err(format!("its encoder file was refused: {e}")),
                            other => Err(format!("the model's worker answered {other:?}")),
                        },
                        Err(e) => Err(e),
                    }
                }
            },
        };
        {
            let mut state = app.state.borrow_mut();
            // A model loaded meanwhile has an encoder state of its own.
            if !state.model.as_ref().is_some_and(|m| Rc::ptr_eq(m, &model)) {
                return;
            }
            state.encoder = match outcome {
                Ok(()) => Encoder::Ready,
                Err(why) => Encoder::Unavailable(why),
            };
        }
        super::render::request_render(&app);
    });
}

/// Where a weights file on this site keeps its encoder: `x.bin` -> `x.encoder.bin`.
fn encoder_path(path: &str) -> String {
    format!("{}.encoder.bin", path.strip_suffix(".bin").unwrap_or(path))
}

/// Reads the visitor's image at the model's size and edits it (it never leaves the page).
fn edit_own_image(app: &Shared, file: web_sys::File) {
    let Some(size) = app.state.borrow().model.as_ref().map(|m| m.shape().size) else {
        return;
    };
    let app = app.clone();
    spawn_local(async move {
        let name = file.name();
        match image_rgba(&file, size).await {
            Ok(rgba) => {
                app.state.borrow_mut().own_image = Some((name, rgba));
                if !app.page.edit_panel.open() {
                    app.page.edit_panel.set_open(true);
                }
                load_encoder(&app);
                update(&app, |v| v.edit = None);
            }
            Err(e) => app.page.set_note(&format!("Could not read {name}: {e}.")),
        }
    });
}

/// An image file decoded by the browser and drawn at `size` x `size` px: its RGBA.
async fn image_rgba(file: &web_sys::File, size: usize) -> Result<Vec<u8>, String> {
    let window = gloo::utils::window();
    let decoding = window
        .create_image_bitmap_with_blob(file)
        .map_err(|_| "this browser cannot decode images here".to_string())?;
    let bitmap: web_sys::ImageBitmap = JsFuture::from(decoding)
        .await
        .map_err(|_| "not an image this browser can read".to_string())?
        .unchecked_into();
    let canvas: HtmlCanvasElement = gloo::utils::document()
        .create_element("canvas")
        .map_err(|_| "no canvas".to_string())?
        .unchecked_into();
    canvas.set_width(size as u32);
    canvas.set_height(size as u32);
    let context = page::context_2d(&canvas);
    let side = size as f64;
    context
        .draw_image_with_image_bitmap_and_dw_and_dh(&bitmap, 0.0, 0.0, side, side)
        .map_err(|_| "the image could not be drawn".to_string())?;
    let data = context
        .get_image_data(0.0, 0.0, side, side)
        .map_err(|_| "the image's pixels could not be read".to_string())?;
    Ok(data.data().0)
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
pub fn build_concept_controls(app: &Shared) {
    let page = &app.page;
    let model = app.state.borrow().model.clone().expect("a model is loaded");
    page.concepts.set_inner_html("");
    page.sliders.set_inner_html("");
    let shiftable = has_concept_noise(&model.config);
    let mut listeners = Vec::new();
    for (k, name) in model.concepts().iter().enumerate() {
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
        let all = model.concepts().to_vec();
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
        let k_concepts = model.concepts().len();
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
pub fn sync_controls(app: &Shared) {
    let state = app.state.borrow();
    let (Some(view), Some(model)) = (state.view.as_ref(), state.model.as_ref()) else {
        return;
    };
    let page = &app.page;
    page.seed.set_value(&view.seed.to_string());
    page.grid.set_value(&view.grid.to_string());
    let shifts = view.shifts_for(model.concepts().len());
    for (k, name) in model.concepts().iter().enumerate() {
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
    if !matches!(view.model, ModelRef::Local(_)) {
        super::remember_view(view);
    }
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
        match (state.view.as_ref(), state.model.as_ref()) {
            (Some(view), Some(model)) => format!(
                "intervene-{}-seed{}.png",
                model.context(view).name(model.concepts()),
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

fn listen(
    target: &web_sys::EventTarget,
    event: &'static str,
    f: impl FnMut(&web_sys::Event) + 'static,
) {
    EventListener::new(target, event, f).forget();
}
