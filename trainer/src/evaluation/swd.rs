//! Sliced Wasserstein distance (p = 2): the evaluation metric comparing generated images with
//! real ones.
//!
//! Both sets are projected on random unit directions, where the 1-D optimal transport problem has
//! an exact closed form (match quantiles); averaging over directions gives a metric on the full
//! distributions that costs a matrix product and some sorting instead of a d-dimensional
//! transport problem.

use intervene::rng::Rng;
use std::thread;

/// f32 lanes per accumulator: enough independent sums to hide add latency and fill SIMD registers.
/// `LANES * DIRS_PER_PASS` accumulators must fit the register file (8 x 4 measured fastest on
/// baseline x86-64; larger tiles spill and run several times slower).
const LANES: usize = 8;
/// Directions handled together, so that each chunk of a point is loaded once for several of them.
const DIRS_PER_PASS: usize = 4;
/// Points handled together, so that a direction is reused from cache before it is evicted.
const POINTS_PER_BLOCK: usize = 8;

/// Sliced W_2 between the point sets `a` and `b` using `projections` random directions.
///
/// Points are stored row-major: `a.len() == n * dim`, `b.len() == m * dim`.
pub fn sliced_wasserstein(
    a: &[f32],
    b: &[f32],
    dim: usize,
    projections: usize,
    rng: &mut Rng,
) -> f64 {
    assert!(dim > 0, "sliced_wasserstein: dim must be positive");
    assert!(
        projections > 0,
        "sliced_wasserstein: need at least one projection"
    );
    for (name, set) in [("a", a), ("b", b)] {
        assert!(!set.is_empty(), "sliced_wasserstein: set {name} is empty");
        assert!(
            set.len() % dim == 0,
            "sliced_wasserstein: set {name} has {} values, not a multiple of dim {dim}",
            set.len()
        );
    }
    let directions = random_directions(dim, projections, rng);
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let pa = sorted_projections(a, dim, &directions, threads);
    let pb = sorted_projections(b, dim, &directions, threads);
    let total: f64 = pa
        .iter()
        .zip(&pb)
        .map(|(x, y)| wasserstein2_squared_1d(x, y))
        .sum();
    (total / projections as f64).sqrt()
}

/// The exact 1-D W_2^2 between two sorted samples (uniform weights, any sizes).
///
/// Both quantile functions are step functions, with steps at i/n and j/m; the squared difference
/// is integrated exactly over the merged steps. Breakpoints are compared as integers (i * m
/// against j * n) so that coinciding steps are never split by rounding.
pub fn wasserstein2_squared_1d(sorted_a: &[f64], sorted_b: &[f64]) -> f64 {
    let (n, m) = (sorted_a.len(), sorted_b.len());
    assert!(n > 0 && m > 0, "wasserstein2_squared_1d: empty sample");
    debug_assert!(
        sorted_a.is_sorted() && sorted_b.is_sorted(),
        "samples must be sorted"
    );
    // Positions on [0, 1] in units of 1 / (n * m).
    let (step_a, step_b) = (m as u128, n as u128);
    let (mut i, mut j, mut at) = (0, 0, 0u128);
    let mut sum = 0.0;
    while i < n && j < m {
        let end_a = (i as u128 + 1) * step_a;
        let end_b = (j as u128 + 1) * step_b;
        let end = end_a.min(end_b);
        let diff = sorted_a[i] - sorted_b[j];
        sum += (end - at) as f64 * diff * diff;
        at = end;
        i += usize::from(end_a == end);
        j += usize::from(end_b == end);
    }
    sum / (n as f64 * m as f64)
}

/// `count` directions uniform on the unit sphere of R^dim (normalised Gaussians), row-major.
fn random_directions(dim: usize, count: usize, rng: &mut Rng) -> Vec<f32> {
    let mut out = Vec::with_capacity(dim * count);
    let mut draw = vec![0.0f64; dim];
    for _ in 0..count {
        let norm = loop {
            draw.iter_mut().for_each(|v| *v = rng.normal());
            let norm = draw.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm > 0.0 {
                break norm;
            }
        };
        out.extend(draw.iter().map(|v| (v / norm) as f32));
    }
    out
}

/// Projections of `points` on each direction, one sorted vector per direction.
fn sorted_projections(
    points: &[f32],
    dim: usize,
    directions: &[f32],
    threads: usize,
) -> Vec<Vec<f64>> {
    let n = points.len() / dim;
    let count = directions.len() / dim;
    let projected = project(points, dim, directions, threads);
    (0..count)
        .map(|k| {
            let mut column: Vec<f64> = (0..n)
                .map(|p| f64::from(projected[p * count + k]))
                .collect();
            column.sort_unstable_by(f64::total_cmp);
            column
        })
        .collect()
}

/// Dot products of every point with every direction, point-major (`out[p * count + k]`).
///
/// Points are split into contiguous ranges, one per thread; each dot product is computed by the
/// same code whatever range it falls in, so the result does not depend on `threads`.
fn project(points: &[f32], dim: usize, directions: &[f32], threads: usize) -> Vec<f32> {
    let n = points.len() / dim;
    let count = directions.len() / dim;
    let mut out = vec![0.0f32; n * count];
    let per_thread = n.div_ceil(threads.clamp(1, n.max(1)));
    thread::scope(|scope| {
        for (rows, out) in points
            .chunks(per_thread * dim)
            .zip(out.chunks_mut(per_thread * count))
        {
            scope.spawn(move || project_rows(rows, dim, directions, out));
        }
    });
    out
}

/// Single-threaded body of [`project`]: blocks of points against groups of directions, so that
/// both stay in cache while they are reused.
fn project_rows(rows: &[f32], dim: usize, directions: &[f32], out: &mut [f32]) {
    let count = directions.len() / dim;
    let blocks = rows
        .chunks(POINTS_PER_BLOCK * dim)
        .zip(out.chunks_mut(POINTS_PER_BLOCK * count));
    for (block, out) in blocks {
        let mut k = 0;
        while k < count {
            let group = &directions[k * dim..(k + DIRS_PER_PASS).min(count) * dim];
            for (row, out) in block.chunks_exact(dim).zip(out.chunks_exact_mut(count)) {
                if group.len() == DIRS_PER_PASS * dim {
                    out[k..k + DIRS_PER_PASS].copy_from_slice(&dots::<DIRS_PER_PASS>(row, group));
                } else {
                    for (o, dir) in out[k..].iter_mut().zip(group.chunks_exact(dim)) {
                        *o = dots::<1>(row, dir)[0];
                    }
                }
            }
            k += DIRS_PER_PASS;
        }
    }
}

/// Dot products of `row` with the `K` consecutive directions in `dirs` (`K * row.len()` values).
///
/// Fixed-size chunks and `K * LANES` independent accumulators let the compiler vectorise the
/// loop; the summation order is fixed, so results are reproducible.
fn dots<const K: usize>(row: &[f32], dirs: &[f32]) -> [f32; K] {
    let dim = row.len();
    let dirs: [&[f32]; K] = std::array::from_fn(|k| &dirs[k * dim..(k + 1) * dim]);
    let mut acc = [[0.0f32; LANES]; K];
    let full = dim - dim % LANES;
    for start in (0..full).step_by(LANES) {
        let x: &[f32; LANES] = row[start..start + LANES].try_into().unwrap();
        for (acc, dir) in acc.iter_mut().zip(&dirs) {
            let y: &[f32; LANES] = dir[start..start + LANES].try_into().unwrap();
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
    }
    std::array::from_fn(|k| {
        let tail: f32 = (full..dim).map(|i| row[i] * dirs[k][i]).sum();
        acc[k].iter().sum::<f32>() + tail
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_points(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n * dim).map(|_| rng.uniform() as f32).collect()
    }

    fn gaussian_points(n: usize, dim: usize, scale: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n * dim).map(|_| scale * rng.normal() as f32).collect()
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        let a = uniform_points(37, 21, 1);
        assert_eq!(sliced_wasserstein(&a, &a, 21, 50, &mut Rng::new(2)), 0.0);
    }

    #[test]
    fn shifted_copy_is_at_norm_over_sqrt_dim() {
        let (n, dim, projections) = (40, 16, 2000);
        let a = uniform_points(n, dim, 3);
        let mut rng = Rng::new(4);
        let v: Vec<f32> = (0..dim).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = a.iter().enumerate().map(|(i, x)| x + v[i % dim]).collect();
        let v2: f64 = v.iter().map(|&x| f64::from(x).powi(2)).sum();
        // Each projection contributes (theta . v)^2 = |v|^2 u^2 with u^2 ~ Beta(1/2, (d-1)/2):
        // mean 1/d, variance 2(d-1) / (d^2 (d+2)). Allow 5 standard errors of the mean.
        let d = dim as f64;
        let sd = v2 * (2.0 * (d - 1.0) / (d * d * (d + 2.0)) / projections as f64).sqrt();
        let swd = sliced_wasserstein(&a, &b, dim, projections, &mut Rng::new(5));
        assert!(
            (swd * swd - v2 / d).abs() < 5.0 * sd,
            "swd^2 {} vs {}",
            swd * swd,
            v2 / d
        );
    }

    #[test]
    fn one_dimension_matches_exact_w2() {
        let (a, b) = (uniform_points(13, 1, 6), gaussian_points(29, 1, 2.0, 7));
        let sorted = |s: &[f32]| {
            let mut v: Vec<f64> = s.iter().map(|&x| f64::from(x)).collect();
            v.sort_unstable_by(f64::total_cmp);
            v
        };
        let exact = wasserstein2_squared_1d(&sorted(&a), &sorted(&b)).sqrt();
        let swd = sliced_wasserstein(&a, &b, 1, 7, &mut Rng::new(8));
        assert!((swd - exact).abs() < 1e-12 * exact, "{swd} vs {exact}");
    }

    #[test]
    fn exact_1d_matches_hand_computed_cases() {
        let cases: [(&[f64], &[f64], f64); 5] = [
            (&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0], 1.0),
            (&[0.0, 1.0], &[0.0, 0.5, 1.0], 1.0 / 12.0),
            (&[0.0], &[1.0, 3.0], 5.0),
            // Steps at 1/3, 1/2, 2/3: 1/6 * 1 + 1/6 * 4 + 1/3 * 1.
            (&[0.0, 1.0, 2.0], &[0.0, 3.0], 7.0 / 6.0),
            (&[-1.0, 5.0], &[-1.0, 5.0], 0.0),
        ];
        for (a, b, expected) in cases {
            for w in [wasserstein2_squared_1d(a, b), wasserstein2_squared_1d(b, a)] {
                assert!(
                    (w - expected).abs() < 1e-12,
                    "{a:?} vs {b:?}: {w}, expected {expected}"
                );
            }
        }
    }

    #[test]
    fn distance_is_symmetric() {
        let (a, b) = (uniform_points(31, 10, 9), uniform_points(17, 10, 10));
        let ab = sliced_wasserstein(&a, &b, 10, 20, &mut Rng::new(11));
        let ba = sliced_wasserstein(&b, &a, 10, 20, &mut Rng::new(11));
        assert!(ab > 0.0);
        assert!((ab - ba).abs() <= 1e-12 * ab, "{ab} vs {ba}");
    }

    #[test]
    fn isotropic_gaussians_differ_by_their_std() {
        // On every direction the projections are N(0, 1) and N(0, s^2), whose W_2 is |1 - s|.
        // With 4000 points the sample std on a direction is off by about s / sqrt(2n) ~ 0.017
        // and the sample covariance in d = 16 spreads it by ~ sqrt(d / n) ~ 6%; 0.04 covers both.
        let (n, dim, s) = (4000, 16, 1.5);
        let a = gaussian_points(n, dim, 1.0, 12);
        let b = gaussian_points(n, dim, s, 13);
        let swd = sliced_wasserstein(&a, &b, dim, 50, &mut Rng::new(14));
        assert!((swd - f64::from(s - 1.0)).abs() < 0.04, "swd {swd}");
    }

    #[test]
    fn projection_does_not_depend_on_thread_count() {
        // Sizes that are not multiples of the lane, direction or block sizes.
        let (n, dim, count) = (53, 37, 7);
        let points = uniform_points(n, dim, 15);
        let directions = random_directions(dim, count, &mut Rng::new(16));
        let bits = |t| {
            project(&points, dim, &directions, t)
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>()
        };
        let single = bits(1);
        for threads in [2, 3, 8, 100] {
            assert_eq!(single, bits(threads), "{threads} threads");
        }
        // And the kernel agrees with a plain f64 dot product.
        let (row, dir) = (&points[..dim], &directions[..dim]);
        let reference: f64 = row
            .iter()
            .zip(dir)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        assert!((f64::from(f32::from_bits(single[0])) - reference).abs() < 1e-5);
    }

    #[test]
    #[should_panic(expected = "set b is empty")]
    fn empty_set_panics() {
        sliced_wasserstein(&[0.0; 4], &[], 2, 5, &mut Rng::new(0));
    }

    #[test]
    #[should_panic(expected = "not a multiple of dim")]
    fn ragged_set_panics() {
        sliced_wasserstein(&[0.0; 5], &[0.0; 4], 2, 5, &mut Rng::new(0));
    }
}
