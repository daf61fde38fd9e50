//! Laying generated or real images out as one picture, for PNG files and the browser's canvas.

use crate::config::ImageShape;

/// Gap between tiles, in pixels.
pub const GAP: usize = 2;

/// Lays out `images` (CHW floats in `[0, 1]`, one after another) in rows of `columns` tiles and
/// returns RGB8 pixels with the grid's width and height.
pub fn grid_rgb(images: &[f32], shape: ImageShape, columns: usize) -> (Vec<u8>, usize, usize) {
    let n = images.len() / shape.numel();
    let columns = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(columns).max(1);
    let s = shape.size;
    let width = columns * s + (columns + 1) * GAP;
    let height = rows * s + (rows + 1) * GAP;
    let mut rgb = vec![255u8; width * height * 3];
    for (i, image) in images.chunks_exact(shape.numel()).enumerate() {
        let (x0, y0) = (
            GAP + (i % columns) * (s + GAP),
            GAP + (i / columns) * (s + GAP),
        );
        for y in 0..s {
            for x in 0..s {
                for c in 0..3 {
                    let channel = if shape.channels == 1 { 0 } else { c };
                    let v = image[channel * s * s + y * s + x];
                    rgb[((y0 + y) * width + x0 + x) * 3 + c] =
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
    }
    (rgb, width, height)
}

/// Columns for a near-square grid of `n` tiles.
pub fn square_columns(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_land_where_expected() {
        let shape = ImageShape {
            channels: 3,
            size: 2,
        };
        let mut images = vec![0f32; 2 * shape.numel()];
        images[shape.numel()..].fill(1.0); // second tile white, first black
        let (rgb, w, h) = grid_rgb(&images, shape, 2);
        assert_eq!((w, h), (2 * 2 + 3 * GAP, 2 + 2 * GAP));
        let px = |x: usize, y: usize| rgb[(y * w + x) * 3];
        assert_eq!(px(GAP, GAP), 0);
        assert_eq!(px(GAP + 2 + GAP, GAP), 255);
    }
}
