//! Contexts: which concepts an experimenter intervened on.
//!
//! A context is a set of concept indices. The empty set is the observational context `obs`; a
//! training context holds one concept; a composed context (two or more) exists only at generation
//! and evaluation time. Names read as `obs`, `quad1` or `quad1+quad2`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Most concepts a model may have (the set is a bit mask).
pub const MAX_CONCEPTS: usize = 32;

/// A set of intervened concepts, as indices into the model's concept list.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Context {
    mask: u32,
}

/// A context name that does not parse against a concept list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown concept '{name}'; valid concepts are: {}", valid.join(", "))]
pub struct UnknownConcept {
    pub name: String,
    pub valid: Vec<String>,
}

impl Context {
    /// The observational context: nothing intervened.
    pub const OBS: Context = Context { mask: 0 };

    /// The context that intervenes on exactly one concept.
    pub fn single(concept: usize) -> Self {
        Self::from_indices([concept])
    }

    pub fn from_indices(concepts: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = 0u32;
        for k in concepts {
            assert!(k < MAX_CONCEPTS, "concept index {k} out of range");
            mask |= 1 << k;
        }
        Self { mask }
    }

    pub fn contains(self, concept: usize) -> bool {
        concept < MAX_CONCEPTS && self.mask & (1 << concept) != 0
    }

    pub fn is_obs(self) -> bool {
        self.mask == 0
    }

    /// Number of intervened concepts.
    pub fn len(self) -> usize {
        self.mask.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.is_obs()
    }

    /// The union of two contexts: both sets of interventions at once.
    pub fn compose(self, other: Context) -> Context {
        Context {
            mask: self.mask | other.mask,
        }
    }

    /// Intervened concept indices, ascending.
    pub fn indices(self) -> impl Iterator<Item = usize> {
        (0..MAX_CONCEPTS).filter(move |&k| self.contains(k))
    }

    /// `obs`, or the intervened concept names joined by `+`.
    pub fn name(self, concepts: &[String]) -> String {
        if self.is_obs() {
            return "obs".to_string();
        }
        self.indices()
            .map(|k| concepts.get(k).cloned().unwrap_or_else(|| format!("#{k}")))
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Parses `obs`, `quad1`, `quad1+quad2` or `quad1,quad2` against a concept list. An empty
    /// string is `obs` too, so "intervene on nothing" needs no special spelling.
    pub fn parse(text: &str, concepts: &[String]) -> Result<Context, UnknownConcept> {
        let mut context = Context::OBS;
        for part in text
            .split(['+', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if part == "obs" {
                continue;
            }
            match concepts.iter().position(|c| c == part) {
                Some(k) => context = context.compose(Context::single(k)),
                None => {
                    return Err(UnknownConcept {
                        name: part.to_string(),
                        valid: concepts.to_vec(),
                    });
                }
            }
        }
        Ok(context)
    }

    /// `obs` followed by every single-concept context: the training contexts.
    pub fn training_contexts(num_concepts: usize) -> Vec<Context> {
        std::iter::once(Context::OBS)
            .chain((0..num_concepts).map(Context::single))
            .collect()
    }
}

/// Refuses a concept name that [`Context::parse`] and `--shift name=value` could not address:
/// empty, `obs`, with `+`, `,` or `=`, with surrounding spaces or control characters.
pub fn check_concept_name(name: &str) -> Result<(), String> {
    let addressable = !name.is_empty()
        && name != "obs"
        && name.trim() == name
        && !name.contains(['+', ',', '='])
        && !name.chars().any(char::is_control);
    match addressable {
        true => Ok(()),
        false => Err(format!(
            "concept name {name:?} cannot be addressed: names are non-empty, not \"obs\", \
             without '+', ',', '=', control characters or surrounding spaces"
        )),
    }
}

impl fmt::Display for Context {
    /// Index form (`{0,2}`), for logs where names are not at hand.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.indices().map(|k| k.to_string()).collect();
        write!(f, "{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["quad1", "quad2", "size"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn parse_and_name_round_trip() {
        let c = Context::parse("quad1+size", &names()).unwrap();
        assert!(c.contains(0) && c.contains(2) && !c.contains(1));
        assert_eq!(c.name(&names()), "quad1+size");
        assert_eq!(Context::parse("size,quad1", &names()).unwrap(), c);
        assert_eq!(Context::parse("obs", &names()).unwrap(), Context::OBS);
        assert_eq!(Context::OBS.name(&names()), "obs");
    }

    #[test]
    fn unknown_concept_lists_the_valid_ones() {
        let err = Context::parse("quad1+colour", &names()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("colour") && msg.contains("quad1, quad2, size"),
            "{msg}"
        );
    }

    #[test]
    fn training_contexts_are_obs_then_singles() {
        let cs = Context::training_contexts(3);
        assert_eq!(cs.len(), 4);
        assert!(cs[0].is_obs());
        assert!(
            cs[1..]
                .iter()
                .enumerate()
                .all(|(k, c)| c.len() == 1 && c.contains(k))
        );
    }
}
