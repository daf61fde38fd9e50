//! The "quad" synthetic dataset: eight latent factors drawn from a linear Gaussian causal model
//! (or its edgeless twin), rendered as four coloured quadrants with a rotated shape on top.
//!
//! Latents are drawn sequentially from the project's [`Rng`] and only the rendering runs in
//! parallel, so a seed fixes the images exactly, whatever the machine's thread count.

use serde::{Deserialize, Serialize};

use super::scm::{LinearGaussian, phi};
use super::{Dataset, Examples, Recipes, Split};
use crate::config::ImageShape;
use crate::context::Context;
use crate::rng::Rng;

/// quad as a dataset: six of its variables are concepts an experimenter intervenes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quad {
    pub graph: QuadGraph,
}

/// The concepts, in context-module order, and the variable each one intervenes on (colour and
/// shape are never intervened on).
const CONCEPTS: [(&str, usize); 6] = [
    ("quad1", 0),
    ("quad2", 1),
    ("quad3", 2),
    ("quad4", 3),
    ("size", 4),
    ("orientation", 7),
];

/// The composed pairs held out of training, as indices into [`CONCEPTS`]: quad1 and quad2 each
/// with every other concept.
const COMPOSED_PAIRS: [(usize, usize); 9] = [
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

impl Quad {
    pub const DEPENDENT: Quad = Quad {
        graph: QuadGraph::Dependent,
    };
    pub const INDEPENDENT: Quad = Quad {
        graph: QuadGraph::Independent,
    };
}

impl Dataset for Quad {
    fn name(&self) -> String {
        match self.graph {
            QuadGraph::Dependent => "quad-dependent",
            QuadGraph::Independent => "quad-independent",
        }
        .into()
    }

    fn concepts(&self) -> Vec<String> {
        CONCEPTS.iter().map(|(name, _)| name.to_string()).collect()
    }

    fn composed_contexts(&self) -> Vec<Context> {
        super::pairs(&COMPOSED_PAIRS)
    }

    /// Edges between concepts; paths through colour and shape (never intervened on) are not
    /// counted.
    fn true_graph(&self) -> Option<Vec<Vec<f32>>> {
        let w = self.graph.weights();
        let edge = |p: usize, c: usize| f32::from(w[p][c] != 0.0);
        Some(
            CONCEPTS
                .iter()
                .map(|&(_, p)| CONCEPTS.iter().map(|&(_, c)| edge(p, c)).collect())
                .collect(),
        )
    }

    fn native_shape(&self) -> ImageShape {
        ImageShape {
            channels: 3,
            size: 64,
        }
    }

    fn image_shape(&self, size: usize) -> Result<ImageShape, String> {
        super::colour_shape(&self.name(), size)
    }

    fn draw(&self, context: Context, n: usize, _split: Split, rng: &mut Rng) -> Examples {
        let intervened: Vec<usize> = context.indices().map(|k| CONCEPTS[k].1).collect();
        Examples::new(sample_scenes(self.graph, &intervened, n, rng))
    }

    fn self_contained(&self) -> bool {
        true
    }

    fn draws_share_noise(&self) -> bool {
        true
    }
}

impl Recipes for Vec<Scene> {
    fn len(&self) -> usize {
        self.len()
    }

    fn image_len(&self, size: usize) -> usize {
        3 * size * size
    }

    fn render(&self, index: usize, size: usize, out: &mut [f32]) {
        render(&self[index], size, out)
    }

    /// The scene's values after Phi (size and shape as drawn).
    fn describe(&self, index: usize) -> Vec<(String, f64)> {
        let s = &self[index];
        let values = [
            s.quads[0],
            s.quads[1],
            s.quads[2],
            s.quads[3],
            s.size,
            s.color,
            s.shape as usize as f64,
            s.orientation,
        ];
        VARIABLES
            .iter()
            .zip(values)
            .map(|(name, v)| (name.to_string(), v))
            .collect()
    }
}

/// Latent variable names, in the order used by every array in this module.
#[rustfmt::skip]
pub const VARIABLES: [&str; 8] =
    ["quad1", "quad2", "quad3", "quad4", "size", "color", "shape", "orientation"];

const N_VARS: usize = VARIABLES.len();

/// `DEPENDENT_WEIGHTS[i][j]` is the weight of parent `i` in the equation of child `j`.
const DEPENDENT_WEIGHTS: [[f64; N_VARS]; N_VARS] = [
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [-1.23, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 1.56, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.34, 0.0, -0.72, 0.0, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [-0.95, 0.0, 0.0, 0.0, 1.67, 0.0, 0.0, 0.0],
    [0.0, 0.58, 0.0, 0.0, 0.0, -1.34, 0.0, 0.0],
    [1.12, 0.0, 0.0, 0.0, -0.81, 0.0, 1.45, 0.0],
];

/// Variances of the observational noise terms `e_j`.
pub const OBS_VARIANCES: [f64; N_VARS] = [
    1.3855493, 1.16426732, 1.00502177, 1.95646855, 1.27482347, 1.42, 1.31, 1.18,
];

/// Means of the Gaussians that replace intervened variables.
#[rustfmt::skip]
pub const INTERVENTION_MEANS: [f64; N_VARS] =
    [1.16920556, 1.47496736, -1.60596209, -1.96578519, 1.0117071, -0.85, 1.23, -0.67];

/// Variances of the Gaussians that replace intervened variables.
pub const INTERVENTION_VARIANCES: [f64; N_VARS] = [
    1.94878138, 1.35886756, 1.57343313, 1.1021785, 1.30511067, 1.52, 1.41, 1.26,
];

/// Which causal graph links the latents: the paper's DAG, or none at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuadGraph {
    Dependent,
    Independent,
}

impl QuadGraph {
    /// Edge weights, row = parent, column = child.
    pub fn weights(self) -> [[f64; N_VARS]; N_VARS] {
        match self {
            QuadGraph::Dependent => DEPENDENT_WEIGHTS,
            QuadGraph::Independent => [[0.0; N_VARS]; N_VARS],
        }
    }

    /// The causal model the latents are drawn from.
    pub fn scm(self) -> LinearGaussian<N_VARS> {
        LinearGaussian {
            weights: self.weights(),
            obs_variances: OBS_VARIANCES,
            intervention_means: INTERVENTION_MEANS,
            intervention_variances: INTERVENTION_VARIANCES,
        }
    }

    /// Observational covariance of the raw latents.
    pub fn obs_covariance(self) -> [[f64; N_VARS]; N_VARS] {
        self.scm().obs_covariance()
    }

    /// Observational standard deviations, used to standardise every sample (observational or
    /// not) so that interventions show up as shifts in the images. The reference standardises
    /// with the mean and std of its finite obs sample; the closed form (mean 0, these stds) is
    /// what that sample estimates, and keeps every draw independent of how many were made.
    pub fn obs_std(self) -> [f64; N_VARS] {
        self.scm().obs_std()
    }
}

/// Raw SCM draws; `intervened` holds variable indices (0..8) whose equations are replaced by
/// their intervention Gaussians.
pub fn sample_latents(
    graph: QuadGraph,
    intervened: &[usize],
    n: usize,
    rng: &mut Rng,
) -> Vec<[f64; N_VARS]> {
    graph.scm().sample(intervened, n, rng)
}

/// The shape drawn in the centre, in the order of its latent index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Ellipse,
}

impl Shape {
    /// Shape for a latent index 0..=3 (`round(3 * Phi)`).
    pub fn from_index(index: usize) -> Shape {
        match index {
            0 => Shape::Circle,
            1 => Shape::Square,
            2 => Shape::Triangle,
            3 => Shape::Ellipse,
            _ => panic!("shape index {index} out of range 0..=3"),
        }
    }
}

/// Everything needed to draw one image, with all values already mapped to their visual range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scene {
    pub quads: [f64; 4],
    pub size: f64,
    pub color: f64,
    pub shape: Shape,
    pub orientation: f64,
}

impl Scene {
    /// Standardises raw latents with the observational std, then maps them through Phi.
    pub fn from_latents(graph: QuadGraph, raw: &[f64; N_VARS]) -> Scene {
        Scene::from_standardised(raw, &graph.obs_std())
    }

    /// Builds a scene from the latents' values in [0, 1] (after Phi).
    pub fn from_unit(u: &[f64; N_VARS]) -> Scene {
        Scene {
            quads: [u[0], u[1], u[2], u[3]],
            size: 0.2 + 0.8 * u[4],
            color: u[5],
            shape: Shape::from_index((3.0 * u[6]).round().clamp(0.0, 3.0) as usize),
            orientation: u[7],
        }
    }

    /// Like [`Scene::from_latents`], with the std passed in so batches compute it once.
    fn from_standardised(raw: &[f64; N_VARS], std: &[f64; N_VARS]) -> Scene {
        Scene::from_unit(&std::array::from_fn(|i| phi(raw[i] / std[i])))
    }
}

/// The 6-stop hue ramp red -> yellow -> green -> cyan -> blue -> magenta, linear between stops.
pub fn ramp(t: f64) -> [f32; 3] {
    const STOPS: [[f64; 3]; 6] = [
        [1.0, 0.0, 0.0],
        [1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 1.0, 1.0],
        [0.0, 0.0, 1.0],
        [1.0, 0.0, 1.0],
    ];
    let s = t.clamp(0.0, 1.0) * 5.0;
    let i = (s.floor() as usize).min(4);
    let f = s - i as f64;
    std::array::from_fn(|c| (STOPS[i][c] + f * (STOPS[i + 1][c] - STOPS[i][c])) as f32)
}

/// A shape placed in the image: rotation and half-sizes precomputed once per image, so the
/// per-pixel test is a few multiplies.
struct PlacedShape {
    shape: Shape,
    centre: f64,
    cos: f64,
    sin: f64,
    /// Half the nominal size (radius, half-side, circumradius or major semi-axis), in pixels.
    half: f64,
}

impl PlacedShape {
    fn new(scene: &Scene, image_size: usize) -> PlacedShape {
        let angle = scene.orientation * std::f64::consts::TAU;
        PlacedShape {
            shape: scene.shape,
            centre: image_size as f64 / 2.0,
            cos: angle.cos(),
            sin: angle.sin(),
            half: scene.size * 0.75 * image_size as f64 / 2.0,
        }
    }

    /// Radius of a circle around the centre that contains the whole shape.
    fn bound(&self) -> f64 {
        match self.shape {
            Shape::Square => self.half * std::f64::consts::SQRT_2,
            _ => self.half,
        }
    }

    /// Whether the pixel centre `(px, py)` lies inside the shape.
    fn contains(&self, px: f64, py: f64) -> bool {
        let (dx, dy) = (px - self.centre, py - self.centre);
        // Rotate the point back into the shape's own frame.
        let u = self.cos * dx + self.sin * dy;
        let v = -self.sin * dx + self.cos * dy;
        let h = self.half;
        match self.shape {
            Shape::Circle => u * u + v * v <= h * h,
            Shape::Square => u.abs() <= h && v.abs() <= h,
            Shape::Ellipse => (u / h).powi(2) + (2.0 * v / h).powi(2) <= 1.0,
            Shape::Triangle => {
                // Equilateral triangle with circumradius h: three half-planes at the inradius
                // h/2, outward normals (0, 1) and (±sqrt(3)/2, -1/2), i.e. apex at -v (image up).
                const S3: f64 = 0.866_025_403_784_438_6;
                let r = h / 2.0;
                v <= r && S3 * u - 0.5 * v <= r && -S3 * u - 0.5 * v <= r
            }
        }
    }
}

/// Draws `scene` into `out` (CHW, 3 channels, values in [0, 1]; `out.len() == 3 * S * S`).
pub fn render(scene: &Scene, image_size: usize, out: &mut [f32]) {
    let s = image_size;
    assert_eq!(
        out.len(),
        3 * s * s,
        "render buffer must hold 3 * {s} * {s} floats"
    );
    let half = s / 2;
    // Row 0 is the top: quad3 | quad4 above, quad1 | quad2 below.
    let colours = scene.quads.map(ramp);
    for (c, plane) in out.chunks_exact_mut(s * s).enumerate() {
        for (y, row) in plane.chunks_exact_mut(s).enumerate() {
            let (left, right) = if y < half { (2, 3) } else { (0, 1) };
            row[..half].fill(colours[left][c]);
            row[half..].fill(colours[right][c]);
        }
    }

    let placed = PlacedShape::new(scene, s);
    let colour = ramp(scene.color);
    let lo = (placed.centre - placed.bound()).floor().max(0.0) as usize;
    let hi = ((placed.centre + placed.bound()).ceil() as usize).min(s);
    for y in lo..hi {
        for x in lo..hi {
            if placed.contains(x as f64 + 0.5, y as f64 + 0.5) {
                for (c, value) in colour.iter().enumerate() {
                    out[c * s * s + y * s + x] = *value;
                }
            }
        }
    }
}

/// `n` scenes drawn in the context that intervenes on the `intervened` variables.
pub fn sample_scenes(
    graph: QuadGraph,
    intervened: &[usize],
    n: usize,
    rng: &mut Rng,
) -> Vec<Scene> {
    let std = graph.obs_std();
    sample_latents(graph, intervened, n, rng)
        .iter()
        .map(|raw| Scene::from_standardised(raw, &std))
        .collect()
}

/// `n` images (`n * 3 * S * S` floats, CHW each), fixed by `rng`'s state.
///
/// All latents are drawn first, sequentially, and only rendering is split across threads, so the
/// output does not depend on how many threads the machine offers.
pub fn generate(
    graph: QuadGraph,
    intervened: &[usize],
    n: usize,
    image_size: usize,
    rng: &mut Rng,
) -> Vec<f32> {
    Examples::new(sample_scenes(graph, intervened, n, rng)).render(.., image_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quad_has_six_concepts_and_nine_pairs() {
        let d = Quad::DEPENDENT;
        assert_eq!(d.concepts().len(), 6);
        let pairs = d.composed_contexts();
        assert_eq!(pairs.len(), 9);
        assert!(pairs.iter().all(|c| c.len() == 2));
        assert_eq!(pairs[0].name(&d.concepts()), "quad1+quad2");
    }

    #[test]
    fn true_graph_has_the_quad2_to_quad1_edge_only_when_dependent() {
        let g = Quad::DEPENDENT.true_graph().unwrap();
        assert_eq!(g[1][0], 1.0, "quad2 -> quad1");
        assert_eq!(g[0][1], 0.0);
        let g = Quad::INDEPENDENT.true_graph().unwrap();
        assert!(g.iter().flatten().all(|&e| e == 0.0));
    }
    use crate::data::scm::testing::{assert_covariance, assert_within, moments};

    #[test]
    fn dependent_obs_sample_covariance_matches_closed_form() {
        let xs = sample_latents(QuadGraph::Dependent, &[], 200_000, &mut Rng::new(11));
        let sigma = QuadGraph::Dependent.obs_covariance();
        assert_covariance(&xs, &sigma);
        // The graph really couples variables (quad1 <- quad2 etc.).
        assert!(sigma[0][1].abs() > 0.5);
    }

    #[test]
    fn intervening_on_quad2_shifts_quad1() {
        let n = 100_000;
        let xs = sample_latents(QuadGraph::Dependent, &[1], n, &mut Rng::new(12));
        let (mean, cov) = moments(&xs);
        let se = |var: f64| (var / n as f64).sqrt();
        assert_within(
            mean[0],
            -1.23 * INTERVENTION_MEANS[1],
            se(cov[0][0]),
            "quad1 mean",
        );
        assert_within(mean[1], INTERVENTION_MEANS[1], se(cov[1][1]), "quad2 mean");
        let int_var = INTERVENTION_VARIANCES[1];
        assert_within(
            cov[1][1],
            int_var,
            int_var * (2.0 / n as f64).sqrt(),
            "quad2 var",
        );
    }

    #[test]
    fn intervening_on_quad1_leaves_quad2_unchanged() {
        let n = 100_000;
        let xs = sample_latents(QuadGraph::Dependent, &[0], n, &mut Rng::new(13));
        let (mean, cov) = moments(&xs);
        let obs_var = QuadGraph::Dependent.obs_covariance()[1][1];
        assert_within(mean[1], 0.0, (obs_var / n as f64).sqrt(), "quad2 mean");
        assert_within(
            cov[1][1],
            obs_var,
            obs_var * (2.0 / n as f64).sqrt(),
            "quad2 var",
        );
        let se = (cov[0][0] / n as f64).sqrt();
        assert_within(mean[0], INTERVENTION_MEANS[0], se, "quad1 mean");
    }

    #[test]
    fn independent_obs_covariance_is_diagonal_noise() {
        let sigma = QuadGraph::Independent.obs_covariance();
        for (a, row) in sigma.iter().enumerate() {
            for (b, &entry) in row.iter().enumerate() {
                let expected = if a == b { OBS_VARIANCES[a] } else { 0.0 };
                assert_eq!(entry, expected, "sigma[{a}][{b}]");
            }
        }
    }

    fn pixel(img: &[f32], s: usize, x: usize, y: usize) -> [f32; 3] {
        std::array::from_fn(|c| img[c * s * s + y * s + x])
    }

    /// Quads red, yellow, cyan, magenta; shape green.
    fn scene(shape: Shape, size: f64, orientation: f64) -> Scene {
        let quads = [0.0, 0.2, 0.6, 1.0];
        Scene {
            quads,
            size,
            color: 0.4,
            shape,
            orientation,
        }
    }

    fn draw(scene: &Scene, s: usize) -> Vec<f32> {
        let mut img = vec![0.0; 3 * s * s];
        render(scene, s, &mut img);
        img
    }

    const GREEN: [f32; 3] = [0.0, 1.0, 0.0];

    #[test]
    fn quadrant_corners_have_their_ramp_colour() {
        for s in [32, 64] {
            let img = draw(&scene(Shape::Circle, 0.2, 0.0), s);
            let last = s - 1;
            let corners = [
                ((0, last), [1.0, 0.0, 0.0], "quad1 bottom-left red"),
                ((last, last), [1.0, 1.0, 0.0], "quad2 bottom-right yellow"),
                ((0, 0), [0.0, 1.0, 1.0], "quad3 top-left cyan"),
                ((last, 0), [1.0, 0.0, 1.0], "quad4 top-right magenta"),
            ];
            for ((x, y), colour, what) in corners {
                assert_eq!(pixel(&img, s, x, y), colour, "{what}, S={s}");
            }
            assert!(img.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn shapes_cover_the_centre_and_miss_the_corners() {
        for s in [32, 64] {
            for index in 0..4 {
                let shape = Shape::from_index(index);
                for orientation in [0.0, 0.1, 0.37, 0.8] {
                    let img = draw(&scene(shape, 1.0, orientation), s);
                    assert_eq!(
                        pixel(&img, s, s / 2, s / 2),
                        GREEN,
                        "{shape:?} centre, S={s}"
                    );
                    for (x, y) in [(0, 0), (s - 1, 0), (0, s - 1), (s - 1, s - 1)] {
                        assert_ne!(pixel(&img, s, x, y), GREEN, "{shape:?} corner, S={s}");
                    }
                }
            }
        }
    }

    #[test]
    fn circle_diameter_scales_with_image_size() {
        for s in [32, 64] {
            let img = draw(&scene(Shape::Circle, 1.0, 0.0), s);
            let covered = (0..s)
                .filter(|&x| pixel(&img, s, x, s / 2) == GREEN)
                .count();
            assert_eq!(
                covered,
                3 * s / 4,
                "S={s}: a full-size circle spans 0.75 S pixels"
            );
        }
    }

    #[test]
    fn rotation_changes_a_square_but_not_a_circle() {
        let image = |shape, orientation| draw(&scene(shape, 0.8, orientation), 64);
        assert_ne!(image(Shape::Square, 0.0), image(Shape::Square, 0.125));
        assert_eq!(image(Shape::Square, 0.0), image(Shape::Square, 1.0));
        assert_eq!(image(Shape::Circle, 0.0), image(Shape::Circle, 0.3));
    }

    #[test]
    fn shape_index_follows_rounded_phi() {
        let unit = |shape_u| [0.5, 0.5, 0.5, 0.5, 0.0, 0.5, shape_u, 0.5];
        let cases = [
            (0.0, Shape::Circle),
            (0.16, Shape::Circle),
            (0.17, Shape::Square),
            (0.5, Shape::Triangle),
            (0.84, Shape::Ellipse),
            (1.0, Shape::Ellipse),
        ];
        for (u, shape) in cases {
            assert_eq!(Scene::from_unit(&unit(u)).shape, shape, "u = {u}");
        }
        assert_eq!(Scene::from_unit(&unit(0.0)).size, 0.2);
        // A raw latent of 0 is the observational mean, so it maps to Phi = 0.5.
        let scene = Scene::from_latents(QuadGraph::Dependent, &[0.0; N_VARS]);
        assert_eq!(scene.shape, Shape::Triangle);
        assert_eq!(scene.quads, [0.5; 4]);
    }

    #[test]
    fn generate_is_deterministic_and_thread_independent() {
        let (n, s, graph) = (37, 32, QuadGraph::Dependent);
        let a = generate(graph, &[2, 5], n, s, &mut Rng::new(5));
        assert_eq!(a.len(), n * 3 * s * s);
        assert_eq!(a, generate(graph, &[2, 5], n, s, &mut Rng::new(5)));
        assert_ne!(a, generate(graph, &[2, 5], n, s, &mut Rng::new(6)));
        // Rendering the same scenes one by one on this thread gives the same bits.
        let raws = sample_latents(graph, &[2, 5], n, &mut Rng::new(5));
        let sequential: Vec<f32> = raws
            .iter()
            .flat_map(|raw| draw(&Scene::from_latents(graph, raw), s))
            .collect();
        assert_eq!(a, sequential);
        assert!(generate(QuadGraph::Independent, &[], 0, 64, &mut Rng::new(1)).is_empty());
    }
}
