//! Linear Gaussian structural causal models, from which the synthetic datasets draw their latent
//! factors (docs/method.md#quad-causal-model, docs/method.md#scenes-causal-model).
//!
//! Each variable is a weighted sum of its parents plus Gaussian noise. Intervening on a variable
//! replaces its equation by a Gaussian of its own, which cuts its incoming edges: its parents'
//! distributions stay as they were, its children's move.

use crate::rng::Rng;

/// A linear Gaussian SCM over `N` variables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearGaussian<const N: usize> {
    /// `weights[i][j]` is the weight of parent `i` in the equation of child `j`; the graph must
    /// be acyclic.
    pub weights: [[f64; N]; N],
    /// Variances of the observational noise terms.
    pub obs_variances: [f64; N],
    /// Means of the Gaussians that replace intervened variables.
    pub intervention_means: [f64; N],
    /// Variances of the Gaussians that replace intervened variables.
    pub intervention_variances: [f64; N],
}

impl<const N: usize> LinearGaussian<N> {
    /// Observational covariance `A^T diag(v) A` with `A = (I - W)^{-1}`.
    ///
    /// The graph is acyclic, so `W` is nilpotent and `A = I + W + ... + W^(N-1)` exactly: no
    /// general matrix inverse is needed.
    pub fn obs_covariance(&self) -> [[f64; N]; N] {
        let mut a: [[f64; N]; N] = identity();
        let mut power: [[f64; N]; N] = identity();
        for _ in 1..N {
            power = mat_mul(&power, &self.weights);
            for (row_a, row_p) in a.iter_mut().zip(&power) {
                for (x, p) in row_a.iter_mut().zip(row_p) {
                    *x += p;
                }
            }
        }
        std::array::from_fn(|r| {
            std::array::from_fn(|c| {
                (0..N)
                    .map(|k| a[k][r] * self.obs_variances[k] * a[k][c])
                    .sum()
            })
        })
    }

    /// Observational standard deviations: the datasets standardise every draw (observational or
    /// not) with these, so that interventions show up as shifts.
    pub fn obs_std(&self) -> [f64; N] {
        let sigma = self.obs_covariance();
        std::array::from_fn(|i| sigma[i][i].sqrt())
    }

    /// A parents-before-children order (Kahn's algorithm on the non-zero weights, lowest index
    /// first).
    fn topological_order(&self) -> [usize; N] {
        let w = &self.weights;
        let mut n_parents: [usize; N] =
            std::array::from_fn(|j| (0..N).filter(|&i| w[i][j] != 0.0).count());
        let mut order = [0; N];
        let mut placed = [false; N];
        for slot in &mut order {
            let next = (0..N)
                .find(|&j| !placed[j] && n_parents[j] == 0)
                .expect("a causal graph must be acyclic");
            placed[next] = true;
            *slot = next;
            for (j, count) in n_parents.iter_mut().enumerate() {
                if w[next][j] != 0.0 {
                    *count -= 1;
                }
            }
        }
        order
    }

    /// `n` draws in the context that intervenes on the variables `intervened`. One normal is
    /// drawn per variable, in topological order, so a seed fixes every draw.
    pub fn sample(&self, intervened: &[usize], n: usize, rng: &mut Rng) -> Vec<[f64; N]> {
        assert!(
            intervened.iter().all(|&k| k < N),
            "intervened index out of range: {intervened:?}"
        );
        let order = self.topological_order();
        (0..n)
            .map(|_| {
                let mut x = [0.0; N];
                for &j in &order {
                    x[j] = if intervened.contains(&j) {
                        self.intervention_means[j]
                            + self.intervention_variances[j].sqrt() * rng.normal()
                    } else {
                        let parents: f64 = (0..N).map(|i| self.weights[i][j] * x[i]).sum();
                        parents + self.obs_variances[j].sqrt() * rng.normal()
                    };
                }
                x
            })
            .collect()
    }
}

fn identity<const N: usize>() -> [[f64; N]; N] {
    std::array::from_fn(|i| std::array::from_fn(|j| if i == j { 1.0 } else { 0.0 }))
}

fn mat_mul<const N: usize>(x: &[[f64; N]; N], y: &[[f64; N]; N]) -> [[f64; N]; N] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..N).map(|k| x[i][k] * y[k][j]).sum()))
}

/// Standard normal CDF, accurate to about 1e-15 absolute: maps a standardised latent into
/// `(0, 1)`, where the renderers read it.
///
/// Uses the all-positive series `erf(x) = 2/sqrt(pi) e^{-x^2} sum 2^n x^{2n+1} / (2n+1)!!`
/// (no cancellation) for small arguments and the continued fraction of `erfc` in the tails.
pub fn phi(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let upper_tail = if x < 3.0 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term > sum * 1e-17 {
            n += 1.0;
            term *= 2.0 * x * x / (2.0 * n + 1.0);
            sum += term;
        }
        let erf = 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp() * sum;
        0.5 * (1.0 - erf)
    } else {
        // erfc(x) = e^{-x^2}/sqrt(pi) / (x + (1/2)/(x + (2/2)/(x + (3/2)/(x + ...)))).
        let mut f = x;
        for k in (1..=60).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        0.5 * (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    if z >= 0.0 {
        1.0 - upper_tail
    } else {
        upper_tail
    }
}

/// Checks on samples, shared by the datasets' tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Sample mean and (population) covariance of the draws.
    pub(crate) fn moments<const N: usize>(xs: &[[f64; N]]) -> ([f64; N], [[f64; N]; N]) {
        let n = xs.len() as f64;
        let mean: [f64; N] = std::array::from_fn(|i| xs.iter().map(|x| x[i]).sum::<f64>() / n);
        let cov = std::array::from_fn(|a| {
            std::array::from_fn(|b| {
                let products = xs.iter().map(|x| (x[a] - mean[a]) * (x[b] - mean[b]));
                products.sum::<f64>() / n
            })
        });
        (mean, cov)
    }

    /// Fails unless `actual` is within five standard errors of `expected`.
    pub(crate) fn assert_within(actual: f64, expected: f64, std_error: f64, what: &str) {
        let gap = (actual - expected).abs();
        assert!(
            gap < 5.0 * std_error,
            "{what}: {actual} vs {expected} (se {std_error})"
        );
    }

    /// Fails unless the sample covariance of `xs` matches `sigma` entry by entry.
    pub(crate) fn assert_covariance<const N: usize>(xs: &[[f64; N]], sigma: &[[f64; N]; N]) {
        let n = xs.len() as f64;
        let (_, cov) = moments(xs);
        for a in 0..N {
            for b in 0..N {
                // Standard error of a Gaussian sample covariance.
                let se = ((sigma[a][a] * sigma[b][b] + sigma[a][b].powi(2)) / n).sqrt();
                assert_within(cov[a][b], sigma[a][b], se, &format!("cov[{a}][{b}]"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_matches_known_values() {
        let known = [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (1.96, 0.975_002_104_851_779_5),
            (-2.5, 0.006_209_665_325_776_139),
            (5.0, 0.999_999_713_348_428_1),
            (-6.0, 9.865_876_450_377_012e-10),
        ];
        for (z, p) in known {
            assert!((phi(z) - p).abs() < 1e-13, "phi({z}) = {} vs {p}", phi(z));
            // Relative accuracy matters in the far tails.
            assert!((phi(z) / p - 1.0).abs() < 1e-10, "phi({z}) relative");
        }
        for z in [0.3, 1.7, 3.0, 4.2, 4.25, 8.0] {
            assert!((phi(z) + phi(-z) - 1.0).abs() < 1e-15, "symmetry at {z}");
        }
        // The two branches agree where they meet (x = 3, z = 3 sqrt 2).
        let z = 3.0 * std::f64::consts::SQRT_2;
        assert!((phi(z - 1e-12) - phi(z + 1e-12)).abs() < 1e-14);
    }

    /// A child listed before its parent (`2 -> 1`): the draws still take the parent first, and
    /// match the closed form.
    #[test]
    fn a_chain_is_drawn_parents_first() {
        let scm = LinearGaussian::<3> {
            weights: [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]],
            obs_variances: [1.0, 0.5, 1.0],
            intervention_means: [0.0; 3],
            intervention_variances: [1.0; 3],
        };
        // var(x1) = 0.5 + 2^2 * 1.
        assert_eq!(scm.topological_order(), [0, 2, 1]);
        assert_eq!(scm.obs_covariance()[1][1], 4.5);
        let xs = scm.sample(&[], 100_000, &mut Rng::new(3));
        testing::assert_covariance(&xs, &scm.obs_covariance());
    }
}
