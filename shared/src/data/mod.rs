//! Datasets behind one interface, [`Dataset`]: which concepts exist, which contexts they form,
//! what is known of their causal graph, and real images of any context. Each dataset is one
//! module (`quad`, `mnist`, `scenes`; the trainer adds datasets read from disk); [`DatasetKind`]
//! names the built-in ones.

pub mod mnist;
pub mod morpho;
pub mod quad;
pub mod scenes;
pub mod scm;

use crate::config::{Architecture, ImageShape, Widths};
use crate::context::Context;
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;
use std::{fmt, str::FromStr};

/// Which examples a draw may use. The generated datasets draw fresh scenes either way; MNIST and
/// datasets read from disk keep the images they train on apart from those they are evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Training,
    HeldOut,
}

/// A dataset of interventional images: what the trainer, the evaluation and the page need to know
/// of one, and nothing they need to know beyond it.
pub trait Dataset: Send + Sync {
    /// The name run folders, tables and weights files record.
    fn name(&self) -> String;

    /// The intervened concepts, in context-module order.
    fn concepts(&self) -> Vec<String>;

    /// Contexts held out of training and used to score composition.
    fn composed_contexts(&self) -> Vec<Context>;

    /// The true concept graph `[parent][child]` (1 where an edge exists), where one is known.
    fn true_graph(&self) -> Option<Vec<Vec<f32>>>;

    /// The channels and side the images come in.
    fn native_shape(&self) -> ImageShape;

    /// The shape of its images when drawn at `size` px, or why it cannot be.
    fn image_shape(&self, size: usize) -> Result<ImageShape, String>;

    /// `n` examples of `context`, cheap to keep and rendered on demand. A dataset read from disk
    /// must have been [`prepared`](Dataset::prepare) at the size they are rendered at.
    fn draw(&self, context: Context, n: usize, split: Split, rng: &mut Rng) -> Examples;

    /// Whether every draw consumes the same exogenous noise whatever the context (one normal per
    /// latent variable in a fixed order; MNIST's digit and perturbation seed): then one
    /// generator state drawn in two contexts pushes the same noise through the observational and
    /// the intervened equations, which is a true counterfactual. True for the built-in
    /// generators; data read from disk have none.
    fn draws_share_noise(&self) -> bool {
        false
    }

    /// True counterfactuals: `n` held-out examples of `factual`, and what each would have been
    /// in `counterfactual`, from the same exogenous draws; `None` unless
    /// [`draws_share_noise`](Dataset::draws_share_noise).
    fn counterfactuals(
        &self,
        factual: Context,
        counterfactual: Context,
        n: usize,
        rng: &mut Rng,
    ) -> Option<(Examples, Examples)> {
        if !self.draws_share_noise() {
            return None;
        }
        let mut twin = rng.clone();
        let factual = self.draw(factual, n, Split::HeldOut, rng);
        Some((
            factual,
            self.draw(counterfactual, n, Split::HeldOut, &mut twin),
        ))
    }

    /// Makes images of `size` px ready to draw (a dataset on disk decodes its files once); the
    /// generated datasets need nothing.
    fn prepare(&self, size: usize) -> Result<(), String> {
        self.image_shape(size).map(|_| ())
    }

    /// How many distinct images of `context` the split holds; `None` when they are generated
    /// without limit.
    fn available(&self, _context: Context, _split: Split) -> Option<usize> {
        None
    }

    /// Whether its images are made from code alone, without files, so that the page can draw
    /// them too (quad and the scenes; MNIST's digits are not shipped with the page).
    fn self_contained(&self) -> bool {
        false
    }

    /// The backbone the paper uses for images of this kind.
    fn architecture(&self) -> Architecture {
        match self.native_shape().channels {
            1 => Architecture::Conv3,
            _ => Architecture::Simple64bn,
        }
    }

    /// The paper's `depth.w_in.w_out` for this kind of dataset.
    fn default_widths(&self) -> Widths {
        match self.architecture() {
            Architecture::Conv3 => Widths {
                depth: 2,
                w_in: 15,
                w_out: 5,
            },
            Architecture::Simple64bn => Widths {
                depth: 2,
                w_in: 32,
                w_out: 8,
            },
        }
    }

    /// The concepts in the order the paper's reference code gives them (its loaders sort some
    /// datasets' contexts by name), for importing its checkpoints.
    fn reference_concepts(&self) -> Vec<String> {
        self.concepts()
    }

    /// Images per training context at the paper's budget (before the validation split).
    fn paper_per_context(&self) -> usize {
        50_000
    }

    /// What the quick preset trains on: minutes on 2 CPU cores, still meaningful.
    fn quick_budget(&self) -> QuickBudget {
        match self.architecture() {
            Architecture::Conv3 => QuickBudget {
                image_size: 28,
                per_context: 1_000,
                max_epochs: 30,
                patience: 5,
            },
            Architecture::Simple64bn => QuickBudget {
                image_size: 32,
                per_context: 3_000,
                max_epochs: 6,
                patience: 3,
            },
        }
    }

    /// `n` real images of `context` at `size` px, CHW, values in `[0, 1]`.
    fn images(
        &self,
        context: Context,
        n: usize,
        size: usize,
        split: Split,
        rng: &mut Rng,
    ) -> Vec<f32> {
        self.draw(context, n, split, rng).render(.., size)
    }
}

/// The quick preset's settings that depend on the dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuickBudget {
    pub image_size: usize,
    /// Images per training context, before the validation split.
    pub per_context: usize,
    pub max_epochs: usize,
    pub patience: usize,
}

/// The built-in datasets, generated in code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// quad with the causal graph of docs/method.md#quad-causal-model.
    QuadDependent,
    /// quad with no edges between variables.
    QuadIndependent,
    /// Real MNIST digits under Morpho-MNIST-style perturbations.
    Mnist,
    /// A teapot, a spotlight and a background, rendered in 3D (our 3DIdent).
    #[cfg_attr(feature = "clap", value(alias = "3dident"))]
    Scenes,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::QuadDependent,
        DatasetKind::QuadIndependent,
        DatasetKind::Mnist,
        DatasetKind::Scenes,
    ];

    /// The dataset this names.
    pub fn dataset(self) -> &'static dyn Dataset {
        match self {
            DatasetKind::QuadDependent => &quad::Quad::DEPENDENT,
            DatasetKind::QuadIndependent => &quad::Quad::INDEPENDENT,
            DatasetKind::Mnist => &mnist::Mnist,
            DatasetKind::Scenes => &scenes::Scenes,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::QuadDependent => "quad-dependent",
            DatasetKind::QuadIndependent => "quad-independent",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Scenes => "scenes",
        }
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
        match s {
            "3dident" => Ok(DatasetKind::Scenes),
            _ => crate::config::parse_by_name(s, &DatasetKind::ALL, |d| d.name(), "dataset"),
        }
    }
}

/// Contexts that compose two concepts each, from their indices.
pub(crate) fn pairs(pairs: &[(usize, usize)]) -> Vec<Context> {
    pairs
        .iter()
        .map(|&(a, b)| Context::from_indices([a, b]))
        .collect()
}

/// The image shape of a dataset whose images are 3-channel and drawn at 32 or 64 px.
pub(crate) fn colour_shape(name: &str, size: usize) -> Result<ImageShape, String> {
    match size {
        32 | 64 => Ok(ImageShape { channels: 3, size }),
        _ => Err(format!("{name} renders at 32 or 64 px, not {size}")),
    }
}

/// What a dataset keeps of drawn examples: enough to render each one when a batch needs it
/// (50,000 quad images at 64 px would take 2.4 GB as floats; their scenes take 2 MB).
pub trait Recipes: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values one image takes at `size` px.
    fn image_len(&self, size: usize) -> usize;

    /// Renders example `index` at `size` px, CHW, into `out` (zeroed, [`Recipes::image_len`]
    /// values).
    fn render(&self, index: usize, size: usize, out: &mut [f32]);

    /// What generated example `index`, by name (its latent factors), for export.
    fn describe(&self, _index: usize) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// Examples of one context: a range of a dataset's drawn recipes.
#[derive(Clone)]
pub struct Examples {
    recipes: Arc<dyn Recipes>,
    range: Range<usize>,
}

impl fmt::Debug for Examples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Examples({:?})", self.range)
    }
}

impl Examples {
    pub fn new(recipes: impl Recipes + 'static) -> Self {
        let range = 0..recipes.len();
        Self {
            recipes: Arc::new(recipes),
            range,
        }
    }

    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Splits off the examples from `at` on (e.g. a validation split).
    pub fn split_off(&mut self, at: usize) -> Examples {
        let at = (self.range.start + at).min(self.range.end);
        let tail = Examples {
            recipes: self.recipes.clone(),
            range: at..self.range.end,
        };
        self.range.end = at;
        tail
    }

    /// What generated example `index` (its latent factors, by name).
    pub fn describe(&self, index: usize) -> Vec<(String, f64)> {
        self.recipes.describe(self.range.start + index)
    }

    /// Renders a range of examples at `size` px, CHW each.
    pub fn render(&self, range: impl std::ops::RangeBounds<usize>, size: usize) -> Vec<f32> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        let indices: Vec<usize> = (0..self.len()).collect();
        self.render_indices(&indices[range], size)
    }

    /// Renders the examples at `indices`, in that order.
    pub fn render_indices(&self, indices: &[usize], size: usize) -> Vec<f32> {
        let start = self.range.start;
        assert!(
            indices.iter().all(|&i| i < self.len()),
            "example index out of range"
        );
        render_parallel(indices, self.recipes.image_len(size), |&i, out| {
            self.recipes.render(start + i, size, out)
        })
    }
}

/// Renders `items` into one buffer of `image_len` values each, in parallel across the machine's
/// cores (on the calling thread where there is one core, or no threads at all, as in a browser).
/// Each image depends only on its item, so the output does not depend on the thread count.
pub(crate) fn render_parallel<T: Sync>(
    items: &[T],
    image_len: usize,
    render: impl Fn(&T, &mut [f32]) + Sync,
) -> Vec<f32> {
    let n = items.len();
    let mut out = vec![0.0f32; n * image_len];
    if n == 0 || image_len == 0 {
        return out;
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    if threads == 1 {
        for (item, image) in items.iter().zip(out.chunks_exact_mut(image_len)) {
            render(item, image);
        }
        return out;
    }
    let per_thread = n.div_ceil(threads);
    let render = &render;
    std::thread::scope(|scope| {
        for (batch, buffer) in items
            .chunks(per_thread)
            .zip(out.chunks_mut(per_thread * image_len))
        {
            scope.spawn(move || {
                for (item, image) in batch.iter().zip(buffer.chunks_exact_mut(image_len)) {
                    render(item, image);
                }
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_indices_matches_rendering_ranges_and_splits() {
        let d = DatasetKind::QuadDependent.dataset();
        let mut examples = d.draw(Context::single(0), 5, Split::Training, &mut Rng::new(1));
        let all = examples.render(.., 32);
        let picked = examples.render_indices(&[3], 32);
        let len = 3 * 32 * 32;
        assert_eq!(picked, all[3 * len..4 * len]);
        let tail = examples.split_off(3);
        assert_eq!((examples.len(), tail.len()), (3, 2));
        assert_eq!(tail.render(..1, 32), all[3 * len..4 * len]);
    }

    /// The same draws in their own context are the factual images; in another context they keep
    /// what the intervention does not reach: for quad's `quad1` (no children), every pixel outside
    /// the bottom-left quadrant (MNIST's are tested beside its digits).
    #[test]
    fn true_counterfactuals_change_only_what_the_intervention_reaches() {
        for kind in DatasetKind::ALL
            .into_iter()
            .filter(|&k| k != DatasetKind::Mnist)
        {
            let d = kind.dataset();
            let size = d.native_shape().size;
            let c = Context::single(0);
            let (a, b) = d.counterfactuals(c, c, 3, &mut Rng::new(4)).unwrap();
            assert_eq!(a.render(.., size), b.render(.., size), "{kind}");
            let (obs, edited) = d
                .counterfactuals(Context::OBS, Context::single(1), 3, &mut Rng::new(4))
                .unwrap();
            assert_ne!(obs.render(.., size), edited.render(.., size), "{kind}");
        }
        let quad = DatasetKind::QuadDependent.dataset();
        let (obs, edited) = quad
            .counterfactuals(Context::OBS, Context::single(0), 20, &mut Rng::new(5))
            .unwrap();
        let s = 32;
        let (before, after) = (obs.render(.., s), edited.render(.., s));
        // quad1 is the bottom-left quadrant; the shape in the centre overlaps every quadrant.
        let in_quad1 = |i: usize| {
            let (y, x) = ((i % (s * s)) / s, i % s);
            y >= s / 2 && x < s / 2
        };
        let changed = |pick: &dyn Fn(usize) -> bool| {
            (0..before.len())
                .filter(|&i| pick(i % (3 * s * s)) && before[i] != after[i])
                .count()
        };
        assert_eq!(changed(&|i| !in_quad1(i)), 0, "only quadrant 1 changes");
        assert!(changed(&in_quad1) > 20 * s * s / 8, "quadrant 1 changes");
    }

    #[test]
    fn every_built_in_dataset_names_itself_and_parses_back() {
        for kind in DatasetKind::ALL {
            assert_eq!(kind.dataset().name(), kind.name());
            assert_eq!(kind.name().parse::<DatasetKind>(), Ok(kind));
            let with_page = kind != DatasetKind::Mnist;
            assert_eq!(kind.dataset().self_contained(), with_page);
        }
        assert_eq!("3dident".parse::<DatasetKind>(), Ok(DatasetKind::Scenes));
    }
}
