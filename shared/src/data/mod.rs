//! Datasets: which concepts exist, which contexts they form, and real images of any context.

pub mod quad;

use crate::config::{Architecture, ImageShape};
use crate::context::Context;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// The datasets the trainer can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// quad with the causal graph of spec section 8.
    QuadDependent,
    /// quad with no edges between variables.
    QuadIndependent,
}

/// quad's concepts: the intervened variables, in context-module order.
const QUAD_CONCEPTS: [(&str, usize); 6] = [
    ("quad1", 0),
    ("quad2", 1),
    ("quad3", 2),
    ("quad4", 3),
    ("size", 4),
    ("orientation", 7),
];

/// quad's held-out composed pairs, as concept indices into [`QUAD_CONCEPTS`].
const QUAD_PAIRS: [(usize, usize); 9] = [
    (0, 1),
    (0, 2),
    (0, 3),
    (0, 4),
    (0, 5),
    (1, 2),
    (1, 3),
    (1, 4),
    (1, 5),
];

impl DatasetKind {
    pub const ALL: [DatasetKind; 2] = [DatasetKind::QuadDependent, DatasetKind::QuadIndependent];

    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::QuadDependent => "quad-dependent",
            DatasetKind::QuadIndependent => "quad-independent",
        }
    }

    pub fn concepts(self) -> Vec<String> {
        QUAD_CONCEPTS
            .iter()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    pub fn architecture(self) -> Architecture {
        Architecture::Simple64bn
    }

    /// Image sizes the dataset can be rendered at.
    pub fn image_shape(self, size: usize) -> Result<ImageShape, String> {
        match size {
            32 | 64 => Ok(ImageShape { channels: 3, size }),
            _ => Err(format!(
                "{} renders at 32 or 64 px, not {size}",
                self.name()
            )),
        }
    }

    /// The paper's `depth.w_in.w_out` for this dataset.
    pub fn default_widths(self) -> crate::config::Widths {
        crate::config::Widths {
            depth: 2,
            w_in: 32,
            w_out: 8,
        }
    }

    /// Contexts held out of training and used to score composition.
    pub fn composed_contexts(self) -> Vec<Context> {
        QUAD_PAIRS
            .iter()
            .map(|&(a, b)| Context::from_indices([a, b]))
            .collect()
    }

    fn graph(self) -> quad::QuadGraph {
        match self {
            DatasetKind::QuadDependent => quad::QuadGraph::Dependent,
            DatasetKind::QuadIndependent => quad::QuadGraph::Independent,
        }
    }

    /// The true concept graph `[parent][child]` (1 where an edge exists), for comparison with a
    /// learned one. Edges between concepts through non-concept variables are not counted.
    pub fn true_graph(self) -> Vec<Vec<f32>> {
        let w = self.graph().weights();
        QUAD_CONCEPTS
            .iter()
            .map(|&(_, p)| {
                QUAD_CONCEPTS
                    .iter()
                    .map(|&(_, c)| f32::from(w[p][c] != 0.0))
                    .collect()
            })
            .collect()
    }

    /// `n` real examples of `context`, cheap to keep and rendered on demand.
    pub fn draw(self, context: Context, n: usize, rng: &mut Rng) -> Examples {
        let intervened: Vec<usize> = context.indices().map(|k| QUAD_CONCEPTS[k].1).collect();
        Examples::Quad(quad::sample_scenes(self.graph(), &intervened, n, rng))
    }

    /// `n` real images of `context` at `size` px, CHW, values in `[0, 1]`.
    pub fn images(self, context: Context, n: usize, size: usize, rng: &mut Rng) -> Vec<f32> {
        self.draw(context, n, rng).render(.., size)
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatasetKind::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = DatasetKind::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "unknown dataset '{s}'; valid datasets are: {}",
                    valid.join(", ")
                )
            })
    }
}

/// Examples of one context: the generating factors, from which images are rendered when a batch
/// needs them (50,000 quad images at 64 px would take 2.4 GB as floats; their scenes take 2 MB).
#[derive(Clone, Debug)]
pub enum Examples {
    Quad(Vec<quad::Scene>),
}

impl Examples {
    pub fn len(&self) -> usize {
        match self {
            Examples::Quad(scenes) => scenes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits off the examples from `at` on (e.g. a validation split).
    pub fn split_off(&mut self, at: usize) -> Examples {
        match self {
            Examples::Quad(scenes) => Examples::Quad(scenes.split_off(at)),
        }
    }

    /// Renders a range of examples.
    pub fn render(&self, range: impl std::ops::RangeBounds<usize>, size: usize) -> Vec<f32> {
        match self {
            Examples::Quad(scenes) => {
                let range = (range.start_bound().cloned(), range.end_bound().cloned());
                quad::render_all(&scenes[range], size)
            }
        }
    }

    /// Renders the examples at `indices`, in that order.
    pub fn render_indices(&self, indices: &[usize], size: usize) -> Vec<f32> {
        match self {
            Examples::Quad(scenes) => {
                let picked: Vec<quad::Scene> = indices.iter().map(|&i| scenes[i]).collect();
                quad::render_all(&picked, size)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_has_six_concepts_and_nine_pairs() {
        let d = DatasetKind::QuadDependent;
        assert_eq!(d.concepts().len(), 6);
        let pairs = d.composed_contexts();
        assert_eq!(pairs.len(), 9);
        assert!(pairs.iter().all(|c| c.len() == 2));
        assert_eq!(pairs[0].name(&d.concepts()), "quad1+quad2");
    }

    #[test]
    fn true_graph_has_the_quad2_to_quad1_edge_only_when_dependent() {
        let g = DatasetKind::QuadDependent.true_graph();
        assert_eq!(g[1][0], 1.0, "quad2 -> quad1");
        assert_eq!(g[0][1], 0.0);
        let g = DatasetKind::QuadIndependent.true_graph();
        assert!(g.iter().flatten().all(|&e| e == 0.0));
    }

    #[test]
    fn rendering_indices_matches_rendering_ranges() {
        let d = DatasetKind::QuadDependent;
        let examples = d.draw(Context::single(0), 5, &mut Rng::new(1));
        let all = examples.render(.., 32);
        let picked = examples.render_indices(&[3], 32);
        let len = 3 * 32 * 32;
        assert_eq!(picked, all[3 * len..4 * len]);
    }
}
