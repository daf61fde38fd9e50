//! The "scenes" dataset, our 3DIdent: a teapot lit by a coloured spotlight in front of a coloured
//! background, rendered on the fly by our own rasteriser (`render.rs`). Ten latent factors,
//! drawn from a linear Gaussian causal model, make up three concepts: the background (`bg`: its
//! hue), the object (`obj`: position, rotation, hue) and the spotlight (`sl`: its place on a
//! ring above the object, its hue). docs/method.md#scenes-causal-model writes the model out.

mod render;
mod teapot;
mod teapot_data;

pub use render::{Look, render, rotation};

use super::quad::ramp;
use super::scm::{LinearGaussian, phi};
use super::{Dataset, Examples, QuickBudget, Recipes, Split};
use crate::config::ImageShape;
use crate::context::Context;
use crate::rng::Rng;

/// The scenes as a dataset: three concepts, every pair of them held out for composition.
pub struct Scenes;

impl Dataset for Scenes {
    fn name(&self) -> String {
        "scenes".into()
    }

    fn concepts(&self) -> Vec<String> {
        CONCEPTS.iter().map(|(name, _)| name.to_string()).collect()
    }

    /// Every pair of the three concepts.
    fn composed_contexts(&self) -> Vec<Context> {
        super::pairs(&[(0, 1), (0, 2), (1, 2)])
    }

    fn true_graph(&self) -> Option<Vec<Vec<f32>>> {
        Some(concept_graph())
    }

    fn native_shape(&self) -> ImageShape {
        ImageShape {
            channels: 3,
            size: 64,
        }
    }

    fn image_shape(&self, size: usize) -> Result<ImageShape, String> {
        super::colour_shape("scenes", size)
    }

    fn draw(&self, context: Context, n: usize, _split: Split, rng: &mut Rng) -> Examples {
        let intervened: Vec<usize> = context.indices().collect();
        Examples::new(sample_scenes(&intervened, n, rng))
    }

    fn self_contained(&self) -> bool {
        true
    }

    fn draws_share_noise(&self) -> bool {
        true
    }

    /// 64 px, so the teapot keeps its shape; four contexts instead of quad's seven.
    fn quick_budget(&self) -> QuickBudget {
        QuickBudget {
            image_size: 64,
            per_context: 4_000,
            max_epochs: 12,
            patience: 3,
        }
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
        render(&self[index].look(), size, out)
    }

    fn describe(&self, index: usize) -> Vec<(String, f64)> {
        VARIABLES
            .iter()
            .zip(self[index].unit)
            .map(|(name, v)| (name.to_string(), f64::from(v)))
            .collect()
    }
}

/// Latent factor names, in the order of every array in this module (parents before children).
#[rustfmt::skip]
pub const VARIABLES: [&str; 10] = [
    "bg_hue",
    "obj_x", "obj_y", "obj_z", "obj_yaw", "obj_pitch", "obj_roll", "obj_hue",
    "sl_angle", "sl_hue",
];

const N_VARS: usize = VARIABLES.len();

/// The concepts, in context-module order, and the latent factors each one is made of.
pub const CONCEPTS: [(&str, std::ops::Range<usize>); 3] =
    [("bg", 0..1), ("obj", 1..8), ("sl", 8..10)];

/// Edges `(parent, child, weight)` between latent factors. Across concepts they give
/// `bg -> obj`, `bg -> sl` and `obj -> sl`: the background's hue pulls the object's hue and how
/// it turns, and the spotlight's hue; the object's place and turn pull where the spotlight
/// stands, its hue the spotlight's hue. Within the object, its height tilts it.
#[rustfmt::skip]
const EDGES: [(usize, usize, f64); 7] = [
    (0, 7, 0.6), (0, 4, -0.7), (0, 9, -0.8),
    (1, 8, 1.1), (4, 8, -0.6), (7, 9, 0.7),
    (2, 5, 0.5),
];

/// The causal model over [`VARIABLES`].
pub const SCM: LinearGaussian<N_VARS> = LinearGaussian {
    weights: weights(),
    obs_variances: [1.2, 1.0, 0.9, 1.1, 0.8, 1.0, 0.9, 0.7, 0.6, 0.5],
    intervention_means: [1.3, -1.0, 0.8, 0.9, 1.2, -0.8, 0.6, -1.4, 1.5, 1.3],
    intervention_variances: [0.6, 0.5, 0.5, 0.6, 0.7, 0.5, 0.6, 0.5, 0.6, 0.5],
};

const fn weights() -> [[f64; N_VARS]; N_VARS] {
    let mut w = [[0.0; N_VARS]; N_VARS];
    let mut e = 0;
    while e < EDGES.len() {
        let (parent, child, weight) = EDGES[e];
        w[parent][child] = weight;
        e += 1;
    }
    w
}

/// One scene: its latent factors standardised and mapped into `(0, 1)` (see [`Scene::look`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scene {
    pub unit: [f32; N_VARS],
}

/// Half-ranges of the object's place (x, y, z) in world units, its turn (yaw, pitch, roll) and
/// the spotlight's angle around the ring, in radians.
const POSITION_RANGE: [f32; 3] = [0.7, 0.4, 1.0];
const TURN_RANGE: [f32; 3] = [
    0.8 * std::f32::consts::PI,
    0.25 * std::f32::consts::PI,
    0.2 * std::f32::consts::PI,
];
const LIGHT_ANGLE_RANGE: f32 = 0.45 * std::f32::consts::PI;
/// The spotlight's ring: its radius and height above the origin.
const RING: (f32, f32) = (4.0, 3.5);

impl Scene {
    /// What the factors mean on screen. Colours come from the hue ramp, mixed with white so that
    /// every object colour shows under every light colour.
    pub fn look(&self) -> Look {
        let u = self.unit;
        let centred = |i: usize, half_range: f32| (2.0 * u[i] - 1.0) * half_range;
        let hue =
            |i: usize, base: f32, weight: f32| ramp(f64::from(u[i])).map(|c| base + weight * c);
        let angle = centred(8, LIGHT_ANGLE_RANGE);
        let (radius, height) = RING;
        Look {
            background: hue(0, 0.1, 0.45),
            position: std::array::from_fn(|k| centred(1 + k, POSITION_RANGE[k])),
            rotation: rotation(
                centred(4, TURN_RANGE[0]),
                centred(5, TURN_RANGE[1]),
                centred(6, TURN_RANGE[2]),
            ),
            albedo: hue(7, 0.3, 0.7),
            light: [radius * angle.sin(), height, radius * angle.cos()],
            light_colour: hue(9, 0.5, 0.55),
        }
    }
}

/// `n` scenes drawn in the context that intervenes on the `intervened` concepts (indices into
/// [`CONCEPTS`]): each intervened concept's factors come from their own Gaussians.
pub fn sample_scenes(intervened: &[usize], n: usize, rng: &mut Rng) -> Vec<Scene> {
    let variables: Vec<usize> = intervened
        .iter()
        .flat_map(|&k| CONCEPTS[k].1.clone())
        .collect();
    let std = SCM.obs_std();
    SCM.sample(&variables, n, rng)
        .iter()
        .map(|raw| Scene {
            unit: std::array::from_fn(|i| phi(raw[i] / std[i]) as f32),
        })
        .collect()
}

/// Concept-level edges `[parent][child]`: 1 where some factor of the parent has an edge to some
/// factor of the child.
pub fn concept_graph() -> Vec<Vec<f32>> {
    CONCEPTS
        .iter()
        .map(|(_, parent)| {
            CONCEPTS
                .iter()
                .map(|(_, child)| {
                    let linked = EDGES.iter().any(|&(p, c, _)| {
                        parent.contains(&p) && child.contains(&c) && parent != child
                    });
                    f32::from(linked)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::scm::testing::{assert_covariance, assert_within, moments};

    #[test]
    fn obs_sample_covariance_matches_closed_form() {
        let xs = SCM.sample(&[], 200_000, &mut Rng::new(21));
        assert_covariance(&xs, &SCM.obs_covariance());
    }

    #[test]
    fn the_concept_graph_is_bg_to_obj_to_sl() {
        assert_eq!(
            concept_graph(),
            vec![
                vec![0.0, 1.0, 1.0],
                vec![0.0, 0.0, 1.0],
                vec![0.0, 0.0, 0.0]
            ]
        );
    }

    /// Intervening on `obj` leaves its parent `bg` as observed and moves its child `sl`.
    #[test]
    fn intervening_on_obj_keeps_bg_and_moves_sl() {
        let n = 100_000;
        let variables: Vec<usize> = CONCEPTS[1].1.clone().collect();
        let xs = SCM.sample(&variables, n, &mut Rng::new(22));
        let (mean, cov) = moments(&xs);
        let obs = SCM.obs_covariance();
        let se = |var: f64| (var / n as f64).sqrt();
        assert_within(mean[0], 0.0, se(obs[0][0]), "bg_hue mean");
        assert_within(
            cov[0][0],
            obs[0][0],
            obs[0][0] * (2.0 / n as f64).sqrt(),
            "bg_hue var",
        );
        let m = SCM.intervention_means;
        // sl_angle = 1.1 obj_x - 0.6 obj_yaw + noise, with the object's factors intervened.
        let expected = 1.1 * m[1] - 0.6 * m[4];
        assert_within(mean[8], expected, se(cov[8][8]), "sl_angle mean");
        assert!(expected.abs() > 1.0);
    }

    /// Intervening on `sl` changes neither of its parents.
    #[test]
    fn intervening_on_sl_keeps_bg_and_obj() {
        let n = 100_000;
        let xs = SCM.sample(&[8, 9], n, &mut Rng::new(23));
        let (mean, cov) = moments(&xs);
        let obs = SCM.obs_covariance();
        for i in 0..8 {
            let se = (obs[i][i] / n as f64).sqrt();
            assert_within(mean[i], 0.0, se, VARIABLES[i]);
            assert_within(
                cov[i][i],
                obs[i][i],
                obs[i][i] * (2.0 / n as f64).sqrt(),
                VARIABLES[i],
            );
        }
        assert_within(
            mean[9],
            SCM.intervention_means[9],
            (cov[9][9] / n as f64).sqrt(),
            "sl_hue",
        );
    }

    #[test]
    fn same_seed_same_bytes() {
        let draw =
            |seed| Examples::new(sample_scenes(&[1, 2], 9, &mut Rng::new(seed))).render(.., 32);
        let a = draw(4);
        assert_eq!(a.len(), 9 * 3 * 32 * 32);
        assert_eq!(a, draw(4));
        assert_ne!(a, draw(5));
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
