//! A small rasteriser for the scenes: the teapot mesh seen through a perspective camera, a depth
//! buffer, Blinn-Phong shading at the vertices from one coloured spotlight (a cone with a soft
//! edge) plus dim white ambient light, a uniform background, and supersampling against jagged
//! edges. Everything is plain `f32` arithmetic in a fixed order, so the same scene always gives
//! the same bytes on a machine.

use super::teapot::{dot, mesh};

/// What one image shows: world units (y up, the camera on the +z axis looking at the origin)
/// and linear colours in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Look {
    pub background: [f32; 3],
    /// The object's colour (its diffuse reflectance).
    pub albedo: [f32; 3],
    /// Where the object's centre is.
    pub position: [f32; 3],
    /// The object's orientation, a rotation matrix (rows).
    pub rotation: [[f32; 3]; 3],
    /// Where the spotlight is; it always aims at the origin.
    pub light: [f32; 3],
    pub light_colour: [f32; 3],
}

/// The camera sits this far from the origin, on the +z axis.
const CAMERA_DISTANCE: f32 = 7.0;
/// Focal length as a multiple of the image side: the teapot at the origin spans about half the
/// image.
const FOCAL: f32 = 1.6;
/// Samples per pixel along each axis.
const SUPERSAMPLE: usize = 3;
/// White light that reaches every surface.
const AMBIENT: f32 = 0.25;
/// Strength and sharpness of the spotlight's highlight.
const SPECULAR: f32 = 0.35;
const SHININESS: i32 = 24;
/// Cosines of the spotlight's full-strength cone and of the edge where it fades to nothing.
const CONE_INNER: f32 = 0.970_295_7; // cos 14 degrees
const CONE_OUTER: f32 = 0.866_025_4; // cos 30 degrees

/// A projected vertex: its position on the supersampled image, the inverse of its depth (which
/// interpolates linearly across the screen) and its shaded colour.
#[derive(Clone, Copy)]
struct Projected {
    x: f32,
    y: f32,
    inverse_depth: f32,
    colour: [f32; 3],
}

/// Draws `look` into `out`: CHW, 3 channels of `size x size`, values in `[0, 1]`.
pub fn render(look: &Look, size: usize, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        3 * size * size,
        "render buffer must hold 3 x {size} x {size}"
    );
    let side = size * SUPERSAMPLE;
    let mut colour = vec![look.background; side * side];
    let mut nearest = vec![0.0f32; side * side];
    let vertices = project(look, side);
    for triangle in &mesh().triangles {
        let [a, b, c] = triangle.map(|i| vertices[i as usize]);
        fill(a, b, c, side, &mut colour, &mut nearest);
    }
    downsample(&colour, size, out);
}

/// Every mesh vertex placed, shaded and projected.
fn project(look: &Look, side: usize) -> Vec<Projected> {
    let mesh = mesh();
    let camera = [0.0, 0.0, CAMERA_DISTANCE];
    let focal = FOCAL * side as f32;
    let half = side as f32 / 2.0;
    let axis = normalised(look.light.map(|c| -c));
    mesh.positions
        .iter()
        .zip(&mesh.normals)
        .map(|(&p, &n)| {
            let p = add(rotate(&look.rotation, p), look.position);
            let n = rotate(&look.rotation, n);
            let to_eye = normalised(sub(camera, p));
            // Two-sided: the side of the surface the camera sees is the lit one.
            let n = if dot(n, to_eye) < 0.0 {
                n.map(|c| -c)
            } else {
                n
            };
            let to_light = normalised(sub(look.light, p));
            let spot = smoothstep(CONE_OUTER, CONE_INNER, -dot(to_light, axis));
            let diffuse = dot(n, to_light).max(0.0) * spot;
            let halfway = normalised(add(to_light, to_eye));
            let specular = if diffuse > 0.0 {
                SPECULAR * dot(n, halfway).max(0.0).powi(SHININESS) * spot
            } else {
                0.0
            };
            let colour = std::array::from_fn(|k| {
                let lit = look.albedo[k] * (AMBIENT + look.light_colour[k] * diffuse);
                (lit + look.light_colour[k] * specular).min(1.0)
            });
            let depth = CAMERA_DISTANCE - p[2];
            Projected {
                x: half + focal * p[0] / depth,
                y: half - focal * p[1] / depth,
                inverse_depth: 1.0 / depth,
                colour,
            }
        })
        .collect()
}

/// Fills the samples of `side x side` whose centres lie in the triangle and are nearer than what
/// is there already, with colours interpolated from the corners.
fn fill(
    a: Projected,
    b: Projected,
    c: Projected,
    side: usize,
    colour: &mut [[f32; 3]],
    nearest: &mut [f32],
) {
    // Behind the camera (not reached by these scenes, but never drawn).
    if a.inverse_depth <= 0.0 || b.inverse_depth <= 0.0 || c.inverse_depth <= 0.0 {
        return;
    }
    let area = edge(a, b, c.x, c.y);
    if area.abs() < 1e-6 {
        return;
    }
    let limit = side as f32 - 1.0;
    let x0 = a.x.min(b.x).min(c.x).floor().clamp(0.0, limit) as usize;
    let x1 = a.x.max(b.x).max(c.x).ceil().clamp(0.0, limit) as usize;
    let y0 = a.y.min(b.y).min(c.y).floor().clamp(0.0, limit) as usize;
    let y1 = a.y.max(b.y).max(c.y).ceil().clamp(0.0, limit) as usize;
    let inverse_area = 1.0 / area;
    for y in y0..=y1 {
        let sy = y as f32 + 0.5;
        for x in x0..=x1 {
            let sx = x as f32 + 0.5;
            // Barycentric weights of the corners; all non-negative inside, whichever way round
            // the triangle winds.
            let wa = edge(b, c, sx, sy) * inverse_area;
            let wb = edge(c, a, sx, sy) * inverse_area;
            let wc = 1.0 - wa - wb;
            if wa < 0.0 || wb < 0.0 || wc < 0.0 {
                continue;
            }
            let at = y * side + x;
            let inverse_depth = wa * a.inverse_depth + wb * b.inverse_depth + wc * c.inverse_depth;
            if inverse_depth > nearest[at] {
                nearest[at] = inverse_depth;
                colour[at] =
                    std::array::from_fn(|k| wa * a.colour[k] + wb * b.colour[k] + wc * c.colour[k]);
            }
        }
    }
}

/// Twice the signed area of the triangle `(p, q, (x, y))`.
fn edge(p: Projected, q: Projected, x: f32, y: f32) -> f32 {
    (q.x - p.x) * (y - p.y) - (q.y - p.y) * (x - p.x)
}

/// Each pixel the mean of its `SUPERSAMPLE x SUPERSAMPLE` samples, written channels first.
fn downsample(colour: &[[f32; 3]], size: usize, out: &mut [f32]) {
    let side = size * SUPERSAMPLE;
    let scale = 1.0 / (SUPERSAMPLE * SUPERSAMPLE) as f32;
    let plane = size * size;
    for y in 0..size {
        for x in 0..size {
            let mut sum = [0.0f32; 3];
            for sy in 0..SUPERSAMPLE {
                let row = (y * SUPERSAMPLE + sy) * side + x * SUPERSAMPLE;
                for sample in &colour[row..row + SUPERSAMPLE] {
                    for k in 0..3 {
                        sum[k] += sample[k];
                    }
                }
            }
            for (k, value) in sum.iter().enumerate() {
                out[k * plane + y * size + x] = value * scale;
            }
        }
    }
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn rotate(m: &[[f32; 3]; 3], v: [f32; 3]) -> [f32; 3] {
    m.map(|row| dot(row, v))
}

fn add(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|k| a[k] + b[k])
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    std::array::from_fn(|k| a[k] - b[k])
}

fn normalised(v: [f32; 3]) -> [f32; 3] {
    let length = dot(v, v).sqrt();
    v.map(|c| c / length)
}

/// The rotation by `yaw` about the vertical axis after `pitch` about the horizontal one and
/// `roll` about the viewing axis.
pub fn rotation(yaw: f32, pitch: f32, roll: f32) -> [[f32; 3]; 3] {
    let (sy, cy) = yaw.sin_cos();
    let (sp, cp) = pitch.sin_cos();
    let (sr, cr) = roll.sin_cos();
    let about_y = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let about_x = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
    let about_z = [[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]];
    product(&about_y, &product(&about_x, &about_z))
}

fn product(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> [[f32; 3]; 3] {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: [f32; 3] = [0.9, 0.1, 0.1];
    const GREY: [f32; 3] = [0.2, 0.2, 0.2];

    /// The teapot at the origin facing the camera sideways, lit from `light`, in white light.
    fn look(light: [f32; 3], albedo: [f32; 3]) -> Look {
        Look {
            background: GREY,
            albedo,
            position: [0.0; 3],
            rotation: rotation(0.0, 0.0, 0.0),
            light,
            light_colour: [1.0; 3],
        }
    }

    fn draw(look: &Look, size: usize) -> Vec<f32> {
        let mut out = vec![0.0; 3 * size * size];
        render(look, size, &mut out);
        out
    }

    fn pixel(image: &[f32], size: usize, x: usize, y: usize) -> [f32; 3] {
        std::array::from_fn(|k| image[k * size * size + y * size + x])
    }

    /// Equal up to the rounding of averaging and interpolating.
    fn close(a: [f32; 3], b: [f32; 3]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    /// Left and right of the centre: how many pixels show the object (differ from the
    /// background) and their mean brightness.
    fn object_halves(image: &[f32], size: usize) -> [(usize, f32); 2] {
        let mut sums = [(0, 0.0); 2];
        for y in 0..size {
            for x in 0..size {
                let p = pixel(image, size, x, y);
                if !close(p, GREY) {
                    let half = &mut sums[usize::from(x >= size / 2)];
                    half.0 += 1;
                    half.1 += p.iter().sum::<f32>();
                }
            }
        }
        sums.map(|(n, sum)| (n, sum / n.max(1) as f32))
    }

    fn vertex(x: f32, y: f32, depth: f32, colour: [f32; 3]) -> Projected {
        Projected {
            x,
            y,
            inverse_depth: 1.0 / depth,
            colour,
        }
    }

    /// Of two overlapping triangles the nearer one shows, whichever is drawn first.
    #[test]
    fn nearer_surfaces_hide_farther_ones() {
        let side = 16;
        let near = [
            vertex(0.0, 0.0, 2.0, RED),
            vertex(16.0, 0.0, 2.0, RED),
            vertex(0.0, 16.0, 2.0, RED),
        ];
        let far = [
            vertex(0.0, 0.0, 5.0, GREY),
            vertex(16.0, 16.0, 5.0, GREY),
            vertex(0.0, 16.0, 5.0, GREY),
        ];
        for order in [[near, far], [far, near]] {
            let mut colour = vec![[0.0; 3]; side * side];
            let mut nearest = vec![0.0; side * side];
            for [a, b, c] in order {
                fill(a, b, c, side, &mut colour, &mut nearest);
            }
            // Inside both triangles: the near one's colour.
            assert!(close(colour[6 * side + 3], RED));
            // Inside the far one only.
            assert!(close(colour[14 * side + 3], GREY));
        }
    }

    /// The side of the teapot facing the light is the brighter one.
    #[test]
    fn surfaces_facing_the_light_are_brighter() {
        let size = 64;
        let from_right = draw(&look([4.0, 3.5, 2.0], [0.8; 3]), size);
        let [(_, left), (_, right)] = object_halves(&from_right, size);
        assert!(right > 1.2 * left, "right {right} vs left {left}");
        let from_left = draw(&look([-4.0, 3.5, 2.0], [0.8; 3]), size);
        let [(_, left), (_, right)] = object_halves(&from_left, size);
        assert!(left > 1.2 * right, "left {left} vs right {right}");
    }

    /// The background shows its colour exactly; a red object in white light looks red.
    #[test]
    fn hue_in_gives_that_hue_out() {
        let size = 32;
        let image = draw(&look([0.0, 3.5, 4.0], RED), size);
        assert!(close(pixel(&image, size, 0, 0), GREY));
        let centre = pixel(&image, size, size / 2, size / 2);
        assert!(
            centre[0] > 2.0 * centre[1] && centre[0] > 2.0 * centre[2],
            "{centre:?}"
        );
    }

    /// The object sits in the middle, well inside the frame, and moves with its position.
    #[test]
    fn the_object_is_framed_and_follows_its_position() {
        let size = 64;
        let base = look([0.0, 3.5, 4.0], RED);
        let image = draw(&base, size);
        assert!(!close(pixel(&image, size, 32, 32), GREY));
        for (x, y) in [(0, 0), (63, 0), (0, 63), (63, 63), (32, 2), (2, 32)] {
            assert!(close(pixel(&image, size, x, y), GREY), "({x}, {y})");
        }
        let [(left, _), (right, _)] = object_halves(&image, size);
        let moved = draw(
            &Look {
                position: [1.0, 0.0, 0.0],
                ..base
            },
            size,
        );
        let [(moved_left, _), (moved_right, _)] = object_halves(&moved, size);
        assert!(
            moved_right > right && moved_left < left,
            "{left} {right} -> {moved_left} {moved_right}"
        );
    }
}
