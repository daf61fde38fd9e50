//! Datasets: which concepts exist, which contexts they form, and real images of any context.

pub mod mnist;
pub mod morpho;
pub mod quad;
pub mod scenes;
pub mod scm;

use crate::config::{Architecture, ImageShape, Widths};
use crate::context::Context;
use crate::rng::Rng;
use morpho::Perturbation;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::{fmt, str::FromStr};

/// Which examples a draw may use. quad and scenes draw fresh scenes either way; MNIST keeps the
/// digits it trains on apart from the digits it is evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Training,
    HeldOut,
}

/// The datasets the trainer can make.
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

/// quad's concepts: the intervened variables, in context-module order.
const QUAD_CONCEPTS: [(&str, usize); 6] = [
    ("quad1", 0),
    ("quad2", 1),
    ("quad3", 2),
    ("quad4", 3),
    ("size", 4),
    ("orientation", 7),
];

/// MNIST's held-out composed pairs, as concept indices into [`Perturbation::ALL`]: a
/// morphological perturbation with an affine one (two morphological ones could cancel out).
const MNIST_PAIRS: [(usize, usize); 6] = [(1, 4), (0, 5), (2, 3), (1, 3), (0, 4), (2, 5)];

/// The scenes' held-out composed pairs: every pair of its three concepts.
const SCENES_PAIRS: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];

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
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::QuadDependent,
        DatasetKind::QuadIndependent,
        DatasetKind::Mnist,
        DatasetKind::Scenes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::QuadDependent => "quad-dependent",
            DatasetKind::QuadIndependent => "quad-independent",
            DatasetKind::Mnist => "mnist",
            DatasetKind::Scenes => "scenes",
        }
    }

    pub fn concepts(self) -> Vec<String> {
        let names: Vec<&str> = match self {
            DatasetKind::QuadDependent | DatasetKind::QuadIndependent => {
                QUAD_CONCEPTS.iter().map(|(name, _)| *name).collect()
            }
            DatasetKind::Mnist => Perturbation::ALL.iter().map(|p| p.name()).collect(),
            DatasetKind::Scenes => scenes::CONCEPTS.iter().map(|(name, _)| *name).collect(),
        };
        names.into_iter().map(String::from).collect()
    }

    pub fn architecture(self) -> Architecture {
        match self {
            DatasetKind::Mnist => Architecture::Conv3,
            _ => Architecture::Simple64bn,
        }
    }

    /// The paper's image size for this dataset.
    pub fn native_size(self) -> usize {
        match self {
            DatasetKind::Mnist => 28,
            _ => 64,
        }
    }

    /// Image sizes the dataset can be rendered at.
    pub fn image_shape(self, size: usize) -> Result<ImageShape, String> {
        match (self, size) {
            (DatasetKind::Mnist, 28) => Ok(ImageShape { channels: 1, size }),
            (DatasetKind::Mnist, _) => Err(format!("mnist images are 28 px, not {size}")),
            (_, 32 | 64) => Ok(ImageShape { channels: 3, size }),
            _ => Err(format!(
                "{} renders at 32 or 64 px, not {size}",
                self.name()
            )),
        }
    }

    /// The paper's `depth.w_in.w_out` for this dataset.
    pub fn default_widths(self) -> Widths {
        match self {
            DatasetKind::Mnist => Widths {
                depth: 2,
                w_in: 15,
                w_out: 5,
            },
            _ => Widths {
                depth: 2,
                w_in: 32,
                w_out: 8,
            },
        }
    }

    /// Contexts held out of training and used to score composition.
    pub fn composed_contexts(self) -> Vec<Context> {
        let pairs: &[(usize, usize)] = match self {
            DatasetKind::Mnist => &MNIST_PAIRS,
            DatasetKind::Scenes => &SCENES_PAIRS,
            DatasetKind::QuadDependent | DatasetKind::QuadIndependent => &QUAD_PAIRS,
        };
        pairs
            .iter()
            .map(|&(a, b)| Context::from_indices([a, b]))
            .collect()
    }

    fn graph(self) -> Option<quad::QuadGraph> {
        match self {
            DatasetKind::QuadDependent => Some(quad::QuadGraph::Dependent),
            DatasetKind::QuadIndependent => Some(quad::QuadGraph::Independent),
            DatasetKind::Mnist | DatasetKind::Scenes => None,
        }
    }

    /// The true concept graph `[parent][child]` (1 where an edge exists), for comparison with a
    /// learned one. Edges between concepts through non-concept variables are not counted; MNIST's
    /// perturbations are independent.
    pub fn true_graph(self) -> Vec<Vec<f32>> {
        if self == DatasetKind::Scenes {
            return scenes::concept_graph();
        }
        let Some(graph) = self.graph() else {
            let k = self.concepts().len();
            return vec![vec![0.0; k]; k];
        };
        let w = graph.weights();
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
    pub fn draw(self, context: Context, n: usize, split: Split, rng: &mut Rng) -> Examples {
        if self == DatasetKind::Scenes {
            let intervened: Vec<usize> = context.indices().collect();
            return Examples::Scenes(scenes::sample_scenes(&intervened, n, rng));
        }
        match self.graph() {
            Some(graph) => {
                let intervened: Vec<usize> =
                    context.indices().map(|k| QUAD_CONCEPTS[k].1).collect();
                Examples::Quad(quad::sample_scenes(graph, &intervened, n, rng))
            }
            None => Examples::Mnist(MnistExamples::draw(context, n, split, rng)),
        }
    }

    /// `n` real images of `context` at `size` px, CHW, values in `[0, 1]`.
    pub fn images(
        self,
        context: Context,
        n: usize,
        size: usize,
        split: Split,
        rng: &mut Rng,
    ) -> Vec<f32> {
        self.draw(context, n, split, rng).render(.., size)
    }
}

/// Perturbed MNIST digits: which digit, under which perturbations, with which random parameters.
#[derive(Clone)]
pub struct MnistExamples {
    digits: Arc<mnist::Digits>,
    perturbations: Vec<Perturbation>,
    /// (digit index, seed of the perturbation parameters).
    items: Vec<(u32, u64)>,
}

impl fmt::Debug for MnistExamples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MnistExamples({:?}, {} items)",
            self.perturbations,
            self.items.len()
        )
    }
}

impl MnistExamples {
    /// Training draws of `obs` or one perturbation use that context's own digits; everything else
    /// (evaluation, composed contexts) uses the held-out digits.
    fn draw(context: Context, n: usize, split: Split, rng: &mut Rng) -> Self {
        let digits = mnist::digits();
        let pool = match (split, context.indices().next(), context.len()) {
            (Split::Training, None, _) => digits.training_partition(0),
            (Split::Training, Some(k), 1) => digits.training_partition(k + 1),
            _ => digits.held_out(),
        };
        // Without replacement while the pool lasts, then again in a fresh order.
        let mut order = pool.to_vec();
        let items = (0..n)
            .map(|i| {
                if i % order.len() == 0 {
                    rng.shuffle(&mut order);
                }
                (order[i % order.len()], rng.next_u64())
            })
            .collect();
        let perturbations = context.indices().map(|k| Perturbation::ALL[k]).collect();
        Self {
            digits,
            perturbations,
            items,
        }
    }

    fn render_one(&self, (digit, seed): (u32, u64), out: &mut Vec<f32>) {
        let image = self.digits.image(digit as usize);
        out.extend(morpho::apply_all(
            &self.perturbations,
            &image,
            &mut Rng::new(seed),
        ));
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

/// Examples of one context: the generating factors, from which images are rendered when a batch
/// needs them (50,000 quad images at 64 px would take 2.4 GB as floats; their scenes take 2 MB).
#[derive(Clone, Debug)]
pub enum Examples {
    Quad(Vec<quad::Scene>),
    Mnist(MnistExamples),
    Scenes(Vec<scenes::Scene>),
}

impl Examples {
    pub fn len(&self) -> usize {
        match self {
            Examples::Quad(scenes) => scenes.len(),
            Examples::Mnist(m) => m.items.len(),
            Examples::Scenes(scenes) => scenes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Splits off the examples from `at` on (e.g. a validation split).
    pub fn split_off(&mut self, at: usize) -> Examples {
        match self {
            Examples::Quad(scenes) => Examples::Quad(scenes.split_off(at)),
            Examples::Scenes(scenes) => Examples::Scenes(scenes.split_off(at)),
            Examples::Mnist(m) => Examples::Mnist(MnistExamples {
                items: m.items.split_off(at),
                ..m.clone()
            }),
        }
    }

    /// Renders a range of examples (`size` is the dataset's image size; MNIST's is always 28).
    pub fn render(&self, range: impl std::ops::RangeBounds<usize>, size: usize) -> Vec<f32> {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        let indices: Vec<usize> = (0..self.len()).collect();
        self.render_indices(&indices[range], size)
    }

    /// Renders the examples at `indices`, in that order.
    pub fn render_indices(&self, indices: &[usize], size: usize) -> Vec<f32> {
        match self {
            Examples::Quad(scenes) => {
                let picked: Vec<quad::Scene> = indices.iter().map(|&i| scenes[i]).collect();
                quad::render_all(&picked, size)
            }
            Examples::Scenes(all) => {
                let picked: Vec<scenes::Scene> = indices.iter().map(|&i| all[i]).collect();
                scenes::render_all(&picked, size)
            }
            Examples::Mnist(m) => {
                let mut out = Vec::with_capacity(indices.len() * mnist::SIDE * mnist::SIDE);
                for &i in indices {
                    m.render_one(m.items[i], &mut out);
                }
                out
            }
        }
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

/// Rendered images `[B, C, S, S]` rearranged channels-last, `[B, S, S, C]`: the layout the
/// model's CPU kernels work in (see `Model::images`).
pub fn channels_last(images: &[f32], shape: ImageShape) -> Vec<f32> {
    let (c, pixels) = (shape.channels, shape.pixels());
    if c == 1 {
        return images.to_vec();
    }
    let mut out = vec![0f32; images.len()];
    for (chw, hwc) in images
        .chunks(shape.numel())
        .zip(out.chunks_mut(shape.numel()))
    {
        for (channel, plane) in chw.chunks(pixels).enumerate() {
            for (pixel, &v) in plane.iter().enumerate() {
                hwc[pixel * c + channel] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_interleaves_each_image() {
        let shape = ImageShape {
            channels: 2,
            size: 2,
        };
        // Two images; values name (image, channel, pixel).
        let chw: Vec<f32> = (0..2)
            .flat_map(|b| {
                (0..2).flat_map(move |c| (0..4).map(move |p| (100 * b + 10 * c + p) as f32))
            })
            .collect();
        let hwc = channels_last(&chw, shape);
        assert_eq!(&hwc[..8], &[0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0]);
        assert_eq!(hwc[8], 100.0);
        assert_eq!(hwc[15], 113.0);
    }

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

    fn install_built_in_digits() {
        let bytes = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/mnist/digits.bin"
        ));
        mnist::install(mnist::Digits::from_compact(bytes, 7).unwrap());
    }

    #[test]
    fn mnist_keeps_training_and_held_out_digits_apart() {
        install_built_in_digits();
        let d = DatasetKind::Mnist;
        assert_eq!(
            d.concepts(),
            ["thin", "thic", "swel", "scaled", "shear", "shift"]
        );
        let digits = mnist::digits();
        let Examples::Mnist(train) =
            d.draw(Context::single(1), 50, Split::Training, &mut Rng::new(1))
        else {
            panic!("mnist draws mnist examples")
        };
        assert!(
            train
                .items
                .iter()
                .all(|(i, _)| digits.training_partition(2).contains(i))
        );
        let Examples::Mnist(pair) = d.draw(
            Context::from_indices([1, 4]),
            50,
            Split::Training,
            &mut Rng::new(1),
        ) else {
            panic!("mnist draws mnist examples")
        };
        assert!(
            pair.items
                .iter()
                .all(|(i, _)| digits.held_out().contains(i))
        );
        assert_eq!(
            pair.perturbations,
            [Perturbation::Thick, Perturbation::Shear]
        );
        let images = Examples::Mnist(pair).render(..3, 28);
        assert_eq!(images.len(), 3 * 784);
        assert!(images.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn rendering_indices_matches_rendering_ranges() {
        let d = DatasetKind::QuadDependent;
        let examples = d.draw(Context::single(0), 5, Split::Training, &mut Rng::new(1));
        let all = examples.render(.., 32);
        let picked = examples.render_indices(&[3], 32);
        let len = 3 * 32 * 32;
        assert_eq!(picked, all[3 * len..4 * len]);
    }
}
