//! The teapot as a triangle mesh: every Bezier patch evaluated on a grid, with the surface
//! normal at each grid point. Built once and shared by every render.

use super::teapot_data::{CONTROL_POINTS, PATCHES};
use std::sync::OnceLock;

/// Grid cells per patch side: 32 patches of 6 x 6 cells give 2,304 triangles, enough for a
/// smooth silhouette at 64 px.
const CELLS: usize = 6;

/// The teapot in its own frame: y up, centred on the origin, about 2.3 units from spout tip to
/// handle and 1.1 high.
pub(super) struct Mesh {
    pub positions: Vec<[f32; 3]>,
    /// Unit normals, oriented arbitrarily (the renderer turns them towards the viewer).
    pub normals: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

/// Scale from the published coordinates to the mesh's.
const SCALE: f32 = 0.35;

/// The shared mesh.
pub(super) fn mesh() -> &'static Mesh {
    static MESH: OnceLock<Mesh> = OnceLock::new();
    MESH.get_or_init(tessellate)
}

fn tessellate() -> Mesh {
    let side = CELLS + 1;
    let mut mesh = Mesh {
        positions: Vec::with_capacity(PATCHES.len() * side * side),
        normals: Vec::with_capacity(PATCHES.len() * side * side),
        triangles: Vec::with_capacity(PATCHES.len() * CELLS * CELLS * 2),
    };
    for patch in &PATCHES {
        let points: [[f32; 3]; 16] =
            std::array::from_fn(|i| CONTROL_POINTS[usize::from(patch[i]) - 1]);
        let first = mesh.positions.len() as u32;
        for i in 0..side {
            for j in 0..side {
                let (u, v) = (i as f32 / CELLS as f32, j as f32 / CELLS as f32);
                let (position, normal) = surface_point(&points, u, v);
                mesh.positions
                    .push(to_mesh_frame(position).map(|c| c * SCALE));
                mesh.normals.push(to_mesh_frame(normal));
            }
        }
        for i in 0..CELLS {
            for j in 0..CELLS {
                let corner = |di: usize, dj: usize| first + ((i + di) * side + j + dj) as u32;
                mesh.triangles
                    .push([corner(0, 0), corner(1, 0), corner(1, 1)]);
                mesh.triangles
                    .push([corner(0, 0), corner(1, 1), corner(0, 1)]);
            }
        }
    }
    // Centre the box around the teapot on the origin, so that it turns about its middle.
    let (lo, hi) = bounds(&mesh.positions);
    let centre: [f32; 3] = std::array::from_fn(|k| (lo[k] + hi[k]) / 2.0);
    for p in &mut mesh.positions {
        *p = std::array::from_fn(|k| p[k] - centre[k]);
    }
    mesh
}

/// The smallest and largest coordinates along each axis.
fn bounds(points: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    points
        .iter()
        .fold(([f32::MAX; 3], [f32::MIN; 3]), |(lo, hi), p| {
            (
                std::array::from_fn(|k| lo[k].min(p[k])),
                std::array::from_fn(|k| hi[k].max(p[k])),
            )
        })
}

/// A point or direction from the published frame (z up) to the mesh's (y up, z towards the
/// viewer).
fn to_mesh_frame([x, y, z]: [f32; 3]) -> [f32; 3] {
    [x, z, -y]
}

/// Cubic Bernstein weights at `t` and their derivatives.
fn bernstein(t: f32) -> ([f32; 4], [f32; 4]) {
    let s = 1.0 - t;
    (
        [s * s * s, 3.0 * t * s * s, 3.0 * t * t * s, t * t * t],
        [
            -3.0 * s * s,
            3.0 * s * s - 6.0 * t * s,
            6.0 * t * s - 3.0 * t * t,
            3.0 * t * t,
        ],
    )
}

/// The patch's point at `(u, v)` and its unit normal. Where the patch degenerates (the lid's
/// knob and the base's centre pinch a whole row of control points into one) the normal is taken
/// a little way inside the patch.
fn surface_point(points: &[[f32; 3]; 16], u: f32, v: f32) -> ([f32; 3], [f32; 3]) {
    let position = evaluate(points, u, v).0;
    let mut normal = [0.0; 3];
    for inset in [0.0, 1e-3, 1e-2] {
        let inward = |t: f32| t + inset * (0.5 - t).signum();
        let (_, du, dv) = evaluate(points, inward(u), inward(v));
        let n = cross(du, dv);
        let length = dot(n, n).sqrt();
        if length > 1e-6 {
            normal = n.map(|c| c / length);
            break;
        }
    }
    (position, normal)
}

/// The point at `(u, v)` and its derivatives along `u` and `v`.
fn evaluate(points: &[[f32; 3]; 16], u: f32, v: f32) -> ([f32; 3], [f32; 3], [f32; 3]) {
    let ((bu, du), (bv, dv)) = (bernstein(u), bernstein(v));
    let mut out = [[0.0f32; 3]; 3];
    for i in 0..4 {
        for j in 0..4 {
            let weights = [bu[i] * bv[j], du[i] * bv[j], bu[i] * dv[j]];
            for (sum, w) in out.iter_mut().zip(weights) {
                for (c, p) in sum.iter_mut().zip(points[i * 4 + j]) {
                    *c += w * p;
                }
            }
        }
    }
    (out[0], out[1], out[2])
}

pub(super) fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_is_centred_with_unit_normals() {
        let mesh = mesh();
        assert_eq!(mesh.triangles.len(), 32 * CELLS * CELLS * 2);
        let (lo, hi) = bounds(&mesh.positions);
        for k in 0..3 {
            assert!((lo[k] + hi[k]).abs() < 1e-5, "axis {k}: {lo:?} {hi:?}");
        }
        // Handle to spout tip along x (the surface stops short of the spout's outer control
        // points), base to knob along y, the body's diameter along z.
        let size: [f32; 3] = std::array::from_fn(|k| (hi[k] - lo[k]) / SCALE);
        assert!((6.3..6.6).contains(&size[0]), "{size:?}");
        assert!((size[1] - 3.15).abs() < 1e-3, "{size:?}");
        assert!((size[2] - 4.0).abs() < 1e-3, "{size:?}");
        for n in &mesh.normals {
            assert!((dot(*n, *n) - 1.0).abs() < 1e-4, "{n:?}");
        }
    }

    /// Where the body crosses the x axis, the normal (up to sign) has no part around the axis
    /// and points mostly away from it.
    #[test]
    fn body_normals_point_out_from_the_axis() {
        let points: [[f32; 3]; 16] =
            std::array::from_fn(|i| CONTROL_POINTS[usize::from(PATCHES[4][i]) - 1]);
        let (position, normal) = surface_point(&points, 0.5, 0.0);
        assert!(
            position[0] > 1.7 && position[1].abs() < 1e-6,
            "{position:?}"
        );
        assert!(normal[1].abs() < 1e-4, "{normal:?}");
        assert!(normal[0].abs() > 0.7, "{normal:?}");
    }
}
