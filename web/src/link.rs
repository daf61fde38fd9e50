//! The page's whole state and its share link: `?model=quad-cm&do=quad1,quad2&seed=7&shift=...&grid=4`,
//! plus `&edit=2` while one of the seed's real images is being edited.
//!
//! Reading a link happens in two steps. [`View::from_query`] checks the link's syntax (numbers,
//! ranges, a safe model path) before anything is loaded; once the model is loaded,
//! [`View::fit_to`] checks what depends on it (concept names, one shift per concept). A link that
//! fails either step is replaced by the default view, and the page shows the reasons.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Grid sides a link may ask for (the grid is `grid x grid` samples).
pub const GRID_SIDES: std::ops::RangeInclusive<usize> = 1..=8;
pub const DEFAULT_GRID: usize = 4;
pub use intervene::sampling::SHIFT_LIMIT;
/// Real `obs` images offered for editing (the seed draws them; `edit=` picks one).
pub const EDIT_CHOICES: usize = 8;

/// Where the model comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelRef {
    /// One of the models shipped with the page, by id.
    Shipped(String),
    /// A weights file on the page's own origin, by path (`?model=/my/weights.bin`).
    SameOrigin(String),
    /// A file the visitor opened from their disk: it cannot travel in a link.
    Local(String),
}

/// Everything that decides the pixels on screen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub model: ModelRef,
    /// Names of the concepts intervened on (none: observational).
    pub intervened: Vec<String>,
    pub seed: u64,
    /// One per concept once fitted to a model; empty means no shift.
    pub shifts: Vec<f32>,
    pub grid: usize,
    /// Which of the seed's real images is edited (index below [`EDIT_CHOICES`]): the
    /// counterfactual under the view's interventions and shifts. A visitor's own image is not
    /// part of the view: it never leaves their page.
    #[serde(default)]
    pub edit: Option<usize>,
}

impl View {
    pub fn default_for(model: ModelRef) -> View {
        View {
            model,
            intervened: Vec::new(),
            seed: 0,
            shifts: Vec::new(),
            grid: DEFAULT_GRID,
            edit: None,
        }
    }

    /// Reads a link's query string (with or without the leading `?`). `Ok(None)` means the link
    /// names no view at all (a plain visit). Unknown keys are ignored, so page options such as
    /// `bench=1` can sit beside the view.
    pub fn from_query(query: &str, default_model: &str) -> Result<Option<View>, Vec<String>> {
        let pairs = parse_query(query)?;
        let get = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
        let keys = ["model", "do", "seed", "shift", "grid", "edit"];
        if !pairs.iter().any(|(k, _)| keys.contains(&k.as_str())) {
            return Ok(None);
        }
        let mut problems = Vec::new();
        let model = match get("model") {
            None => ModelRef::Shipped(default_model.to_string()),
            Some(m) => match model_ref(m) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(e);
                    ModelRef::Shipped(default_model.to_string())
                }
            },
        };
        let intervened = match get("do") {
            None => Vec::new(),
            Some(text) => split_list(text).map(str::to_string).collect(),
        };
        let seed = match get("seed") {
            None => 0,
            Some(s) => s.parse::<u64>().unwrap_or_else(|_| {
                problems.push(format!("seed \"{s}\" is not a whole number"));
                0
            }),
        };
        let shifts = match get("shift") {
            None => Vec::new(),
            Some(text) => split_list(text)
                .map(|s| match s.parse::<f32>() {
                    Ok(v) if v.is_finite() && v.abs() <= SHIFT_LIMIT => v,
                    _ => {
                        problems.push(format!(
                            "shift \"{s}\" is not a number between -{SHIFT_LIMIT} and {SHIFT_LIMIT}"
                        ));
                        0.0
                    }
                })
                .collect(),
        };
        let grid = match get("grid") {
            None => DEFAULT_GRID,
            Some(g) => match g.parse::<usize>() {
                Ok(n) if GRID_SIDES.contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "grid \"{g}\" is not a side from {} to {}",
                        GRID_SIDES.start(),
                        GRID_SIDES.end()
                    ));
                    DEFAULT_GRID
                }
            },
        };
        let edit = get("edit").and_then(|e| match e.parse::<usize>() {
            Ok(i) if i < EDIT_CHOICES => Some(i),
            _ => {
                problems.push(format!(
                    "edit \"{e}\" is not an image number from 0 to {}",
                    EDIT_CHOICES - 1
                ));
                None
            }
        });
        if problems.is_empty() {
            Ok(Some(View {
                model,
                intervened,
                seed,
                shifts,
                grid,
                edit,
            }))
        } else {
            Err(problems)
        }
    }

    /// Checks the parts that depend on the model: every intervened concept exists (each once),
    /// and there is one shift per concept (an all-zero list is stored as empty).
    pub fn fit_to(mut self, concepts: &[String]) -> Result<View, Vec<String>> {
        let mut problems = Vec::new();
        for (i, name) in self.intervened.iter().enumerate() {
            if !concepts.contains(name) {
                problems.push(format!(
                    "this model has no concept \"{name}\" (it has {})",
                    concepts.join(", ")
                ));
            } else if self.intervened[..i].contains(name) {
                problems.push(format!("concept \"{name}\" is listed twice"));
            }
        }
        if !self.shifts.is_empty() && self.shifts.len() != concepts.len() {
            problems.push(format!(
                "{} shifts given for {} concepts",
                self.shifts.len(),
                concepts.len()
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        // Keep concepts in the model's order, so one view has one link.
        self.intervened = concepts
            .iter()
            .filter(|c| self.intervened.contains(c))
            .cloned()
            .collect();
        if self.shifts.iter().all(|&s| s == 0.0) {
            self.shifts.clear();
        }
        Ok(self)
    }

    /// The shift of each of `k` concepts.
    pub fn shifts_for(&self, k: usize) -> Vec<f32> {
        if self.shifts.is_empty() {
            vec![0.0; k]
        } else {
            self.shifts.clone()
        }
    }

    /// The query string that reproduces this view (a local file is named but cannot be fetched).
    pub fn to_query(&self) -> String {
        let model = match &self.model {
            ModelRef::Shipped(id) => id.clone(),
            ModelRef::SameOrigin(path) => path.clone(),
            ModelRef::Local(name) => format!("local:{name}"),
        };
        let mut q = format!("?model={}", encode(&model));
        let _ = write!(q, "&do={}", encode(&self.intervened.join(",")));
        let _ = write!(q, "&seed={}&grid={}", self.seed, self.grid);
        if !self.shifts.is_empty() {
            // `{}` prints the shortest text that reads back as the same f32: bit-exact links.
            let shifts: Vec<String> = self.shifts.iter().map(|s| format!("{s}")).collect();
            let _ = write!(q, "&shift={}", encode(&shifts.join(",")));
        }
        if let Some(edit) = self.edit {
            let _ = write!(q, "&edit={edit}");
        }
        q
    }
}

/// A page option that is not part of the view (`bench=1`, `backend=cpu`), if the query has it.
pub fn page_option(query: &str, key: &str) -> Option<String> {
    parse_query(query)
        .ok()?
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// A shipped model id, or a path on this origin. Anything that could leave the origin (a scheme,
/// `//host`, `..`) is refused.
fn model_ref(text: &str) -> Result<ModelRef, String> {
    if let Some(name) = text.strip_prefix("local:") {
        return Err(format!(
            "the link names \"{name}\", a file opened from someone's disk; open it with \"Load your own\""
        ));
    }
    let is_id = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if is_id {
        return Ok(ModelRef::Shipped(text.to_string()));
    }
    let safe_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let escapes = text.starts_with("//") || text.split('/').any(|part| part == "..");
    if !text.is_empty() && safe_chars && !escapes {
        Ok(ModelRef::SameOrigin(text.to_string()))
    } else {
        Err(format!(
            "model \"{text}\" is neither a shipped model nor a file path on this site"
        ))
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `key=value` pairs of a query string, percent-decoded.
fn parse_query(query: &str) -> Result<Vec<(String, String)>, Vec<String>> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match (decode(k), decode(v)) {
            (Some(k), Some(v)) => pairs.push((k, v)),
            _ => return Err(vec![format!("\"{part}\" is not valid percent-encoding")]),
        }
    }
    Ok(pairs)
}

/// What a link leaves as it is: unreserved characters and the separators we use.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',')
    .remove(b':')
    .remove(b'/');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, KEPT).to_string()
}

/// A query value as text (`+` is a space); `None` for a `%` without two hex digits after it, or
/// bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    let spaced = text.replace('+', " ");
    well_formed
        .then(|| {
            percent_decode_str(&spaced)
                .decode_utf8()
                .ok()
                .map(String::from)
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concepts() -> Vec<String> {
        ["quad1", "quad2", "size"].map(String::from).to_vec()
    }

    #[test]
    fn a_view_survives_its_own_link_bit_for_bit() {
        let view = View {
            model: ModelRef::Shipped("quad-cm".into()),
            intervened: vec!["quad1".into(), "size".into()],
            seed: u64::MAX,
            shifts: vec![0.1, -2.95, 1.0 / 3.0],
            grid: 5,
            edit: Some(EDIT_CHOICES - 1),
        };
        let back = View::from_query(&view.to_query(), "x").unwrap().unwrap();
        assert_eq!(back, view);
        let bits = |v: &View| v.shifts.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&view));
        assert_eq!(back.fit_to(&concepts()).unwrap(), view);
    }

    #[test]
    fn plain_visit_names_no_view_and_page_options_are_ignored() {
        assert_eq!(View::from_query("", "quad-cm"), Ok(None));
        assert_eq!(View::from_query("?bench=1", "quad-cm"), Ok(None));
        let v = View::from_query("?bench=1&seed=3", "quad-cm")
            .unwrap()
            .unwrap();
        assert_eq!(v.seed, 3);
        assert_eq!(v.model, ModelRef::Shipped("quad-cm".into()));
        assert_eq!(
            page_option("?seed=1&bench=1", "bench").as_deref(),
            Some("1")
        );
        assert_eq!(page_option("?seed=1", "backend"), None);
    }

    #[test]
    fn broken_links_name_every_problem() {
        let err = View::from_query("?seed=abc&grid=99&shift=0,nan,7&edit=8", "m").unwrap_err();
        assert_eq!(err.len(), 5, "{err:?}");
        assert!(err[4].contains("edit \"8\""), "{err:?}");
        assert!(err[0].contains("seed \"abc\""));
        assert!(View::from_query("?do=%ZZ", "m").is_err());
        for evil in [
            "https://evil.example/w.bin",
            "//evil.example/w.bin",
            "../secret.bin",
        ] {
            let q = format!("?model={}", encode(evil));
            assert!(View::from_query(&q, "m").is_err(), "{evil} accepted");
        }
        assert!(View::from_query("?model=local:mine.bin", "m").is_err());
        assert_eq!(
            View::from_query("?model=models/mine.bin", "m")
                .unwrap()
                .unwrap()
                .model,
            ModelRef::SameOrigin("models/mine.bin".into())
        );
    }

    #[test]
    fn fitting_checks_concepts_and_shift_count() {
        let view = |q: &str| View::from_query(q, "m").unwrap().unwrap();
        let err = view("?do=quad1,quad9").fit_to(&concepts()).unwrap_err();
        assert!(err[0].contains("no concept \"quad9\""), "{err:?}");
        assert!(view("?do=quad1,quad1").fit_to(&concepts()).is_err());
        assert!(view("?shift=1,2").fit_to(&concepts()).is_err());
        let fitted = view("?do=size,quad1&shift=0,0,0")
            .fit_to(&concepts())
            .unwrap();
        assert_eq!(fitted.intervened, ["quad1", "size"]);
        assert!(fitted.shifts.is_empty());
    }
}
