//! Writing images as PNG files, one or a grid of them (the grid's layout is shared with the
//! browser).

use crate::files::atomic_write;
use anyhow::{Context as _, Result};
use image::ImageEncoder;
use intervene::config::ImageShape;
pub use intervene::image_grid::{grid_rgb, square_columns};
use std::path::Path;

/// Writes a grid of images to a PNG file.
pub fn write_grid(path: &Path, images: &[f32], shape: ImageShape, columns: usize) -> Result<()> {
    let (rgb, width, height) = grid_rgb(images, shape, columns);
    write_png(path, &rgb, width, height)
}

pub fn write_png(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, width as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    atomic_write(path, &png)
}

/// One channels-first image in `[0, 1]` as an 8-bit PNG, grey or RGB as it is.
pub fn write_image(path: &Path, chw: &[f32], shape: ImageShape) -> Result<()> {
    let pixels = shape.pixels();
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let interleaved: Vec<u8> = (0..shape.numel())
        .map(|i| byte(chw[(i % shape.channels) * pixels + i / shape.channels]))
        .collect();
    let colour = match shape.channels {
        1 => image::ExtendedColorType::L8,
        _ => image::ExtendedColorType::Rgb8,
    };
    let mut png = Vec::new();
    let side = shape.size as u32;
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&interleaved, side, side, colour)
        .with_context(|| format!("cannot encode {}", path.display()))?;
    atomic_write(path, &png)
}
