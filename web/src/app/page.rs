//! The page's elements (declared in `www/index.html`) and the few ways we change them.

use crate::picture::Picture;
use wasm_bindgen::{Clamped, JsCast};
use web_sys::{
    CanvasRenderingContext2d, Document, HtmlCanvasElement, HtmlDetailsElement, HtmlElement,
    HtmlInputElement, HtmlSelectElement, ImageData,
};

pub struct Page {
    pub document: Document,
    pub status: HtmlElement,
    pub backend: HtmlElement,
    pub note: HtmlElement,
    pub model_picker: HtmlSelectElement,
    pub model_file: HtmlInputElement,
    pub model_info: HtmlElement,
    pub concepts: HtmlElement,
    pub sliders: HtmlElement,
    pub seed: HtmlInputElement,
    pub resample: HtmlElement,
    pub grid: HtmlSelectElement,
    pub copy_link: HtmlElement,
    pub download: HtmlElement,
    pub share_link: HtmlInputElement,
    pub samples: HtmlCanvasElement,
    pub samples_caption: HtmlElement,
    pub real: HtmlCanvasElement,
    pub real_caption: HtmlElement,
    pub graph: HtmlCanvasElement,
    pub graph_caption: HtmlElement,
    pub graph_edges: HtmlInputElement,
    pub graph_edges_count: HtmlElement,
    pub true_graph: HtmlCanvasElement,
    pub true_graph_figure: HtmlElement,
    pub edit_panel: HtmlDetailsElement,
    pub edit_choices: HtmlCanvasElement,
    pub edit_file: HtmlInputElement,
    pub edit_result: HtmlCanvasElement,
    pub edit_caption: HtmlElement,
    pub bench: HtmlElement,
}

impl Page {
    /// Finds every element, or names the first one missing.
    pub fn bind() -> Result<Page, String> {
        let document = gloo::utils::document();
        fn get<T: JsCast>(document: &Document, id: &str) -> Result<T, String> {
            document
                .get_element_by_id(id)
                .and_then(|e| e.dyn_into::<T>().ok())
                .ok_or_else(|| format!("the page has no element #{id} of the expected kind"))
        }
        Ok(Page {
            status: get(&document, "status")?,
            backend: get(&document, "backend")?,
            note: get(&document, "note")?,
            model_picker: get(&document, "model-picker")?,
            model_file: get(&document, "model-file")?,
            model_info: get(&document, "model-info")?,
            concepts: get(&document, "concepts")?,
            sliders: get(&document, "sliders")?,
            seed: get(&document, "seed")?,
            resample: get(&document, "resample")?,
            grid: get(&document, "grid")?,
            copy_link: get(&document, "copy-link")?,
            download: get(&document, "download")?,
            share_link: get(&document, "share-link")?,
            samples: get(&document, "samples")?,
            samples_caption: get(&document, "samples-caption")?,
            real: get(&document, "real")?,
            real_caption: get(&document, "real-caption")?,
            graph: get(&document, "graph")?,
            graph_caption: get(&document, "graph-caption")?,
            graph_edges: get(&document, "graph-edges")?,
            graph_edges_count: get(&document, "graph-edges-count")?,
            true_graph: get(&document, "true-graph")?,
            true_graph_figure: get(&document, "true-graph-figure")?,
            edit_panel: get(&document, "edit-panel")?,
            edit_choices: get(&document, "edit-choices")?,
            edit_file: get(&document, "edit-file")?,
            edit_result: get(&document, "edit-result")?,
            edit_caption: get(&document, "edit-caption")?,
            bench: get(&document, "bench")?,
            document,
        })
    }

    pub fn set_status(&self, text: &str) {
        self.status.set_text_content(Some(text));
    }

    /// Shows a message that stays until the next one (or hides it when `text` is empty).
    pub fn set_note(&self, text: &str) {
        self.note.set_text_content(Some(text));
        self.note.set_hidden(text.is_empty());
    }

    /// Adds to the note without hiding what is already there.
    pub fn add_note(&self, text: &str) {
        let current = self.note.text_content().unwrap_or_default();
        if current.is_empty() || self.note.hidden() {
            self.set_note(text);
        } else {
            self.set_note(&format!("{current} {text}"));
        }
    }

    pub fn element(&self, tag: &str) -> HtmlElement {
        self.document
            .create_element(tag)
            .expect("valid tag")
            .unchecked_into()
    }
}

/// Draws `picture` on `canvas` at `scale` screen pixels per image pixel.
pub fn draw(canvas: &HtmlCanvasElement, picture: &Picture, scale: usize) {
    canvas.set_width(picture.width as u32);
    canvas.set_height(picture.height as u32);
    let style = canvas.style();
    let _ = style.set_property("width", &format!("{}px", picture.width * scale));
    let _ = style.set_property("height", &format!("{}px", picture.height * scale));
    let image = ImageData::new_with_u8_clamped_array_and_sh(
        Clamped(&picture.rgba),
        picture.width as u32,
        picture.height as u32,
    )
    .expect("rgba matches the size");
    let _ = context_2d(canvas).put_image_data(&image, 0.0, 0.0);
}

/// Greys out a canvas that has nothing to show.
pub fn clear(canvas: &HtmlCanvasElement) {
    canvas.set_width(1);
    canvas.set_height(1);
    let _ = canvas.style().set_property("width", "0px");
}

pub fn context_2d(canvas: &HtmlCanvasElement) -> CanvasRenderingContext2d {
    canvas
        .get_context("2d")
        .ok()
        .flatten()
        .expect("canvas has a 2d context")
        .unchecked_into()
}
